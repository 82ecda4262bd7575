"""The OpenAI-format Files and Batches endpoints, as :mod:`hfpref.wire.batch` uses them.

* A request is one JSONL line, ``{"custom_id", "method": "POST", "url": "/v1/chat/completions", "body"}``
  (:func:`line`): the input format of OpenAI's Batch API and of vLLM's offline ``run-batch``. The
  ``custom_id`` is a hash of the request's URL and body (:func:`custom_id`), so the same request has the
  same id in every run.
* :class:`BatchAPI`, one endpoint and key: upload a file (``POST /files``, multipart, purpose ``batch``),
  create a batch of it (``POST /batches``), look at a batch (``GET /batches/{id}``) until it ends
  (:meth:`BatchAPI.wait`: tenacity's exponential wait, at most ``batch_poll_s``), find the batch made of
  a file (``GET /batches``, newest first), read a file (``GET /files/{id}/content``).
* :func:`results`: the lines of the output and error files, by ``custom_id``.

A call that fails with a retryable error is tried again (jittered backoff, ``max_retries``); a batch
creation whose answer was lost is looked up before it is tried again, so no batch is created twice.
What an error answer means is :func:`hfpref.wire.failures.batch_api_error`'s business.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    retry_if_result,
    stop_after_attempt,
    stop_never,
    wait_exponential,
    wait_random_exponential,
)

from hfpref.config import ProviderConfig
from hfpref.errors import MalformedResponseError, ProviderError
from hfpref.wire.answers import parse_body
from hfpref.wire.failures import batch_api_error, map_transport_errors
from hfpref.wire.ratelimit import Sleep
from hfpref.wire.transport import Request

CHAT_URL = "/v1/chat/completions"
TERMINAL = frozenset({"completed", "expired", "cancelled", "failed"})
LIST_PAGE = 100  # batches per page of GET /batches
LIST_PAGES = 20  # pages looked through for the batch of a file (the newest 2,000 batches)
WHO = "batch API"  # the "model" named by the errors of these calls


def custom_id(request: Request) -> str:
    """The request's id in a batch: the same request (URL and body) has the same id in every run."""
    return hashlib.sha256(request.url.encode() + b"\0" + request.body).hexdigest()


def line(custom_id: str, body: bytes) -> bytes:
    """One line of an input file (``body``: the request's JSON, as sent online)."""
    head = b'{"custom_id":"' + custom_id.encode() + b'","method":"POST","url":"' + CHAT_URL.encode()
    return head + b'","body":' + body + b"}\n"


@dataclass(frozen=True, slots=True)
class LineResult:
    """The result of one request of a batch: the status and body of its response, or ``status`` 0 and an
    ``{"error": {code, message}}`` body when it has none."""

    status: int
    body: bytes


def results(content: bytes) -> dict[str, LineResult]:
    """The result lines of an output or error file, by ``custom_id`` (a line that is not a result is
    skipped: its request counts as unanswered)."""
    found: dict[str, LineResult] = {}
    for raw in content.splitlines():
        try:
            item = orjson.loads(raw)
        except orjson.JSONDecodeError:
            continue
        if not isinstance(item, dict) or not isinstance(item.get("custom_id"), str):
            continue
        response = item.get("response")
        if isinstance(response, dict) and isinstance(response.get("status_code"), int):
            found[item["custom_id"]] = LineResult(response["status_code"], orjson.dumps(response.get("body")))
        else:
            error = item.get("error") if isinstance(item.get("error"), dict) else {"message": "no response"}
            found[item["custom_id"]] = LineResult(0, orjson.dumps({"error": error}))
    return found


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, ProviderError) and exc.retryable


def _batch(data: Any) -> dict[str, Any]:
    """``data`` checked to be a batch object (an ``id`` and a ``status``)."""
    if (
        not isinstance(data, dict)
        or not isinstance(data.get("id"), str)
        or not isinstance(data.get("status"), str)
    ):
        raise MalformedResponseError(f"not a batch object: {data!r:.80}", model=WHO)
    return data


class BatchAPI:
    """The Files and Batches endpoints under ``base`` (``https://api.openai.com/v1``), with ``headers``
    (the key) on ``session``."""

    def __init__(
        self,
        base: str,
        headers: Mapping[str, str],
        session: aiohttp.ClientSession,
        provider: ProviderConfig,
        sleep: Sleep,
    ) -> None:
        self.base = base
        self.headers = dict(headers)
        self.session = session
        self.provider = provider
        self.sleep = sleep

    def _retrying(self) -> AsyncRetrying:
        return AsyncRetrying(
            retry=retry_if_exception(_retryable),
            wait=wait_random_exponential(multiplier=0.5, max=30),
            stop=stop_after_attempt(self.provider.max_retries + 1),
            sleep=self.sleep,
            reraise=True,
        )

    async def _once(
        self, method: str, path: str, form: Callable[[], Any] | None = None, **kwargs: Any
    ) -> bytes:
        what = f"{method} {path.split('?')[0]}"
        with map_transport_errors(WHO):
            data = form() if form is not None else None  # a form is consumed by its request: one per attempt
            async with self.session.request(
                method, self.base + path, headers=self.headers, data=data, **kwargs
            ) as resp:
                raw = await resp.read()
                status, headers = resp.status, resp.headers
        if status >= 400:
            raise batch_api_error(status, headers, raw, self.base, what)
        return raw

    async def _call(
        self, method: str, path: str, form: Callable[[], Any] | None = None, **kwargs: Any
    ) -> bytes:
        return await self._retrying()(self._once, method, path, form, **kwargs)

    async def upload(self, content: bytes) -> str:
        """Upload an input file; its id."""

        def form() -> aiohttp.FormData:
            data = aiohttp.FormData()
            data.add_field("purpose", "batch")
            data.add_field("file", content, filename="hfpref-batch.jsonl", content_type="application/jsonl")
            return data

        answer = parse_body(await self._call("POST", "/files", form), WHO)
        if not isinstance(answer, dict) or not isinstance(answer.get("id"), str):
            raise MalformedResponseError(f"not a file object: {answer!r:.80}", model=WHO)
        return answer["id"]

    async def create(self, file_id: str) -> dict[str, Any]:
        """Create the batch of ``file_id``, once: after a failed attempt, a batch of the file that exists
        (the answer was lost, not the batch) is the one."""
        body = {
            "input_file_id": file_id,
            "endpoint": CHAT_URL,
            "completion_window": self.provider.batch_window,
        }
        async for attempt in self._retrying():
            with attempt:
                if attempt.retry_state.attempt_number > 1:
                    existing = await self.find(file_id)
                    if existing is not None:
                        return existing
                return _batch(parse_body(await self._once("POST", "/batches", json=body), WHO))
        raise AssertionError("unreachable: tenacity either returns or re-raises")

    async def get(self, batch_id: str) -> dict[str, Any] | None:
        """The batch ``batch_id`` as it is now; None when the endpoint knows no such batch (deleted, or
        made with another key)."""
        try:
            return _batch(parse_body(await self._call("GET", f"/batches/{batch_id}"), WHO))
        except ProviderError as exc:
            if exc.status == 404:
                return None
            raise

    async def find(self, file_id: str) -> dict[str, Any] | None:
        """The newest batch made of ``file_id``, or None."""
        after: str | None = None
        for _ in range(LIST_PAGES):
            query = f"?limit={LIST_PAGE}" + (f"&after={after}" if after else "")
            page = parse_body(await self._call("GET", "/batches" + query), WHO)
            data = page.get("data") if isinstance(page, dict) else None
            if not isinstance(data, list):
                raise MalformedResponseError(f"not a list of batches: {page!r:.80}", model=WHO)
            for batch in data:
                if isinstance(batch, dict) and batch.get("input_file_id") == file_id:
                    return _batch(batch)
            if not data or not page.get("has_more"):
                return None
            after = str(data[-1].get("id"))
        return None

    async def read(self, file_id: str) -> bytes:
        """The content of a file (an output or error file of a batch)."""
        return await self._call("GET", f"/files/{file_id}/content")

    async def wait(self, batch: dict[str, Any], seen: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        """Look at ``batch`` until it has ended (``TERMINAL``); ``seen`` is told every state it is found in."""
        seen(batch)
        if batch["status"] in TERMINAL:
            return batch

        async def look() -> dict[str, Any]:
            now = await self.get(batch["id"])
            if now is None:
                raise MalformedResponseError(f"batch {batch['id']} is gone from {self.base}", model=WHO)
            seen(now)
            return now

        polling = AsyncRetrying(
            retry=retry_if_result(lambda now: now["status"] not in TERMINAL),
            wait=wait_exponential(multiplier=0.5, max=self.provider.batch_poll_s),
            stop=stop_never,
            sleep=self.sleep,
        )
        return await polling(look)
