"""Every error hfpref raises, and the one place where provider answers become errors.

Exception tree (the CLI prints ``str(error)`` on one line and exits with ``exit_code``)::

    HfprefError                      exit 1
    ├── ConfigError                  exit 2  bad option, config file, or unknown key
    ├── InputError                   exit 2  bad input file, column or row
    ├── ProviderError                exit 1  an OpenAI-compatible endpoint failed
    │   ├── AuthenticationError              401/403: fail fast, never retried
    │   ├── ModelNotFoundError               404: fail fast
    │   ├── BadRequestError                  400/422 and other 4xx: fail fast
    │   ├── RateLimitError                   429: retried, honouring Retry-After
    │   ├── ServerError                      5xx: retried
    │   ├── ProviderTimeoutError             no answer in time: retried
    │   ├── ProviderConnectionError          connection refused or dropped: retried
    │   │   └── EndpointUnreachable          every connection so far refused: fail fast
    │   ├── MalformedResponseError           an answer that is not the expected JSON: retried
    │   └── EmptyAnswerError                 a 200 without a usable answer (``""``, finish_reason error): retried
    ├── BudgetExhausted              exit 1  ``max_cost`` reached; finished rows are kept
    ├── HubError                     exit 1  pushing to or reading from the Hub failed
    │   └── RepoIdError              exit 2  a repo id that is not NAMESPACE/NAME
    └── TrainError                   exit 1  training could not start or failed

Secrets: every API key hfpref reads is registered with :func:`register_secret`, and every error
message passes through :func:`redact`, so a key echoed back by a provider never reaches a log line.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping
from typing import Any

import orjson

_SECRETS: set[str] = set()


def register_secret(value: str | None) -> None:
    """Remember a secret so that :func:`redact` masks it wherever it shows up."""
    if value and len(value) >= 6:
        _SECRETS.add(value)


def redact(text: str) -> str:
    """Mask every registered secret (and any 8-char fragment of one) in ``text``."""
    for secret in _SECRETS:
        if secret in text:
            text = text.replace(secret, "***")
        elif len(secret) >= 16:
            # Providers echo keys partially ("sk-abc...wxyz"): mask long fragments too.
            for start in range(0, len(secret) - 8):
                fragment = secret[start : start + 12]
                if fragment in text:
                    text = text.replace(fragment, "***")
    return text


class HfprefError(Exception):
    """Base class of all hfpref errors; ``str()`` is one line, secrets redacted."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(redact(" ".join(str(message).split())))


class ConfigError(HfprefError):
    exit_code = 2


class InputError(HfprefError):
    exit_code = 2


class BudgetExhausted(HfprefError):
    """``max_cost`` is reached: no further request is sent. Answers that arrived are cached, so a rerun
    with a higher budget pays only for what is missing. ``spent`` and ``limit`` are in USD."""

    def __init__(self, message: str, *, spent: float, limit: float) -> None:
        super().__init__(message)
        self.spent = spent
        self.limit = limit


class HubError(HfprefError):
    pass


class RepoIdError(HubError):
    exit_code = 2


class TrainError(HfprefError):
    pass


class ProviderError(HfprefError):
    """An endpoint failed. ``retryable`` says whether the client tries again."""

    retryable = False

    def __init__(
        self, message: str, *, model: str = "", status: int | None = None, retry_after: float | None = None
    ) -> None:
        prefix = f"{model}: " if model else ""
        code = f"HTTP {status}: " if status else ""
        super().__init__(f"{prefix}{code}{message}")
        self.model = model
        self.status = status
        self.retry_after = retry_after
        self.row: str | None = None

    def at_row(self, where: str) -> None:
        """Name the row whose request this is (once: the same fatal error then stops every row)."""
        if self.row is None:
            self.row = where
            self.args = (f"{where}: {self.args[0]}",)


class AuthenticationError(ProviderError):
    pass


class ModelNotFoundError(ProviderError):
    pass


class BadRequestError(ProviderError):
    pass


class RateLimitError(ProviderError):
    retryable = True


class ServerError(ProviderError):
    retryable = True


class ProviderTimeoutError(ProviderError):
    retryable = True


class ProviderConnectionError(ProviderError):
    retryable = True


class EndpointUnreachable(ProviderConnectionError):
    """Every connection to an endpoint so far was refused (nothing listens there): not worth retrying."""

    retryable = False


class MalformedResponseError(ProviderError):
    retryable = True


class EmptyAnswerError(ProviderError):
    """A paid 200 answer without a usable completion (empty, or ``finish_reason`` error): retried.

    ``records`` are the completion records of that answer (with its cost), kept when retries run out.
    """

    retryable = True

    def __init__(self, message: str, *, model: str, records: list[dict[str, Any]]) -> None:
        super().__init__(message, model=model)
        self.records = records


def parse_retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``retry-after`` (seconds or an HTTP date)."""
    value = headers.get("retry-after-ms")
    if value is not None:
        try:
            return max(0.0, float(value) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value) if value.strip() else None
        if parsed is None:
            return None
        return max(0.0, parsed.timestamp() - (time.time() if now is None else now))


def _error_message(body: bytes) -> str:
    """The human part of an error body: OpenAI/OpenRouter/vLLM JSON, or the start of an HTML page."""
    try:
        data: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        text = body.decode("utf-8", "replace").strip()
        if text.lstrip().startswith("<"):
            return "the endpoint answered with an HTML page instead of JSON"
        return text[:200] or "empty body"
    if isinstance(data, dict):
        err = data.get("error", data)
        if isinstance(err, dict):
            message = err.get("message") or err.get("detail") or ""
            metadata = err.get("metadata")
            if isinstance(metadata, dict) and metadata.get("raw"):
                message = f"{message} ({str(metadata['raw'])[:200]})"
            return str(message or err)[:300]
        if isinstance(err, str):
            return err[:300]
        if "detail" in data:
            return str(data["detail"])[:300]
    return str(data)[:300]


def provider_error(
    status: int, headers: Mapping[str, str], body: bytes, model: str, *, hint: str = ""
) -> ProviderError:
    """Map one non-2xx answer (or a 2xx whose body is an ``{"error": ...}``) onto the tree above."""
    message = _error_message(body)
    if hint:
        message = f"{message}; {hint}"
    if status in (401, 403):
        return AuthenticationError(
            f"{message} (check the API key in the variable named by api_key_env)", model=model, status=status
        )
    if status == 404:
        return ModelNotFoundError(
            f"{message} (is the model id right for this endpoint?)", model=model, status=status
        )
    if status == 429:
        return RateLimitError(message, model=model, status=status, retry_after=parse_retry_after(headers))
    if status in (408, 409) or status >= 500:
        return ServerError(message, model=model, status=status, retry_after=parse_retry_after(headers))
    return BadRequestError(message, model=model, status=status)


def error_status_from_body(data: Mapping[str, Any]) -> int:
    """OpenRouter can answer 200 with ``{"error": {"code": 429 | "429" | "rate_limited", ...}}``."""
    err = data.get("error")
    code = err.get("code") if isinstance(err, dict) else None
    if isinstance(code, int):
        return code
    if isinstance(code, str):
        if code.isdigit():
            return int(code)
        lowered = code.lower()
        if "rate" in lowered:
            return 429
        if "auth" in lowered or "key" in lowered:
            return 401
        if "not_found" in lowered or "model" in lowered:
            return 404
    return 502
