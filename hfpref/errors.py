"""Every error hfpref raises: the one exception tree, and the redaction of secrets from its messages.

Exception tree (the CLI prints ``str(error)`` on one line and exits with ``exit_code``)::

    HfprefError                      exit 1
    ├── ConfigError                  exit 2  bad option, config file, or unknown key
    │   └── BatchUnsupported                 ``--batch-api`` to an endpoint without Files + Batches endpoints
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
    │   ├── BatchFailed                      a whole batch refused (validation, a token limit): fail fast
    │   └── EmptyAnswerError                 a 200 without a usable answer (``""``, finish_reason error): retried
    ├── BudgetExhausted              exit 1  ``max_cost`` reached; finished rows are kept
    ├── HubError                     exit 1  pushing to or reading from the Hub failed
    │   └── RepoIdError              exit 2  a repo id that is not NAMESPACE/NAME
    └── TrainError                   exit 1  training could not start or failed

Which endpoint failure becomes which error is decided in one place, :mod:`hfpref.wire.failures`.

Secrets: every API key hfpref reads is registered with :func:`register_secret`, and every error
message passes through :func:`redact`, so a key echoed back by a provider never reaches a log line.
"""

from __future__ import annotations

from typing import Any

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


class BatchUnsupported(ConfigError):
    """``--batch-api`` was asked of an endpoint that has no OpenAI-format Batch API (OpenRouter; a server
    answering 404/405 to ``/files`` or ``/batches``, such as llama.cpp): a setting to change, so exit 2."""


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


class BatchFailed(ProviderError):
    """A Batch API batch failed as a whole (its file refused at validation, an enqueued-token limit):
    not a refusal of one request, so nothing is probed or retried; a rerun submits its requests again."""


class EmptyAnswerError(ProviderError):
    """A paid 200 answer without a usable completion (empty, or ``finish_reason`` error): retried.

    ``records`` are the completion records of that answer (with its cost), kept when retries run out.
    """

    retryable = True

    def __init__(self, message: str, *, model: str, records: list[dict[str, Any]]) -> None:
        super().__init__(message, model=model)
        self.records = records
