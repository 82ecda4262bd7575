"""The one place where what an endpoint did becomes an :mod:`hfpref.errors` exception.

As httpx maps its transport's exceptions and huggingface_hub's ``hf_raise_for_status`` maps a status:

* :func:`transport_error` (and the block form :func:`map_transport_errors`): aiohttp's failures
  (timeouts, refused or dropped connections);
* :func:`json_or_raise`: an answer (status, headers, body) becomes its JSON with choices, or the
  :class:`~hfpref.errors.ProviderError` it stands for (:func:`provider_error`), an ``{"error": ...}``
  body with status 200 included (OpenRouter sends those);
* :func:`parse_retry_after`: how long a provider asked us to wait;
* :func:`batch_line`: one result line of a batch (:mod:`hfpref.wire.batch`) as an answer or an error,
  :func:`batch_failed`: a batch that failed as a whole, and :func:`batch_api_error`: what an error
  answer of the Files or Batches endpoints means.

What a 200 answer's choices hold is :mod:`hfpref.wire.answers`' business.
"""

from __future__ import annotations

import contextlib
import email.utils
import os
import time
from collections.abc import Iterator, Mapping
from typing import Any

import aiohttp
import orjson

from hfpref.errors import (
    AuthenticationError,
    BadRequestError,
    BatchFailed,
    BatchUnsupported,
    HfprefError,
    MalformedResponseError,
    ModelNotFoundError,
    ProviderConnectionError,
    ProviderError,
    ProviderTimeoutError,
    RateLimitError,
    ServerError,
)
from hfpref.wire.answers import parse_body


class ConnectionRefused(ProviderConnectionError):
    """No connection could be made (refused, no route, unknown host): retried until the endpoint is
    judged unreachable."""


TRANSPORT_ERRORS = (TimeoutError, aiohttp.ClientConnectionError, aiohttp.ClientPayloadError)
"""What aiohttp raises for a request that got no answer (:func:`transport_error` maps them)."""


def transport_error(exc: BaseException, model: str) -> ProviderError:
    """One of :data:`TRANSPORT_ERRORS` as the retryable error of the tree it stands for."""
    if isinstance(exc, TimeoutError):
        return ProviderTimeoutError("no answer before the timeout", model=model)
    if isinstance(exc, aiohttp.ClientConnectorError):
        errno = exc.os_error.errno
        reason = os.strerror(errno).lower() if errno else str(exc.os_error)  # "connection refused"
        return ConnectionRefused(f"cannot connect: {reason}", model=model)
    return ProviderConnectionError(f"connection failed: {type(exc).__name__}: {exc}", model=model)


@contextlib.contextmanager
def map_transport_errors(model: str) -> Iterator[None]:
    """Raise aiohttp's failures inside the block as the retryable errors of the tree."""
    try:
        yield
    except TRANSPORT_ERRORS as exc:
        raise transport_error(exc, model) from None


def json_or_raise(status: int, headers: Mapping[str, str], raw: bytes, model: str) -> dict[str, Any]:
    """The JSON of an answer that has choices; else the error it stands for, raised."""
    if status >= 400:
        raise provider_error(status, headers, raw, model)
    data = parse_body(raw, model)
    if not isinstance(data, dict) or not isinstance(data.get("choices"), list) or not data["choices"]:
        if isinstance(data, dict) and "error" in data:
            raise provider_error(error_status_from_body(data), headers, raw, model)
        raise MalformedResponseError(f"answer has no choices: {raw[:80]!r}", model=model)
    return data


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


def provider_error(status: int, headers: Mapping[str, str], body: bytes, model: str) -> ProviderError:
    """Map one non-2xx answer (or a 2xx whose body is an ``{"error": ...}``) onto the exception tree."""
    message = _error_message(body)
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


def batch_line(status: int, body: bytes, model: str) -> dict[str, Any]:
    """One result line of a batch as an answer: the JSON of its response, or the error it stands for.

    ``status`` 0: a line without a response, only an error object (``{"error": {code, message}}``, as an
    expired or cancelled batch gives its unanswered lines), read by its code (unknown codes: 502, retried).
    A failed line is tried again at once (``retry_after`` 0): the next batch is the wait, and a batch API
    has no rate limit to back off from.
    """
    if status == 0:
        data = parse_body(body, model)
        status = error_status_from_body(data) if isinstance(data, dict) else 502
    try:
        return json_or_raise(status, {}, body, model)
    except ProviderError as exc:
        if exc.retryable:
            exc.retry_after = 0.0
        raise


def batch_failed(batch: Mapping[str, Any]) -> BatchFailed:
    """A batch whose ``status`` is ``failed``, with the first of its ``errors`` (the provider's reason)."""
    errors = batch.get("errors")
    data = errors.get("data") if isinstance(errors, Mapping) else None
    first = data[0] if isinstance(data, list) and data and isinstance(data[0], Mapping) else {}
    reason = f"{first.get('code') or 'failed'}: {first.get('message') or 'no reason given'}"
    return BatchFailed(f"batch {batch.get('id')} failed: {reason}; rerun to submit its requests again")


def batch_api_error(
    status: int, headers: Mapping[str, str], body: bytes, base: str, what: str
) -> HfprefError:
    """An error answer of the Files or Batches endpoints to ``what`` (``POST /files``, ...). 404 or 405
    to an upload or a batch creation: the endpoint has no batch API (llama.cpp, a plain vLLM server)."""
    if status in (404, 405) and what.startswith("POST"):
        return BatchUnsupported(
            f"{base} has no Batch API ({what} answered HTTP {status}): drop --batch-api "
            "(batch_api = true) for this endpoint"
        )
    return provider_error(status, headers, body, f"batch API {what}")
