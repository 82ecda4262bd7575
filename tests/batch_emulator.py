"""A local emulation of OpenAI's Files and Batches endpoints, on top of :mod:`tests.fake_openai`.

:class:`FakeBatchAPI` is the fake chat server (every route, option and counter of
:class:`~tests.fake_openai.FakeOpenAI`) plus::

    POST /v1/files                  multipart: purpose=batch, file=JSONL     -> a file object
    GET  /v1/files/{id}/content                                              -> the file's bytes
    POST /v1/batches                {input_file_id, endpoint, completion_window} -> a batch (validating)
    GET  /v1/batches/{id}                                                    -> the batch as it is now
    GET  /v1/batches?limit=&after=  newest first, OpenAI's cursor pagination

A batch is ``validating`` for the first tenth of ``batch_delay_s`` (read at every look, so a test can
shorten it while a batch waits), ``in_progress`` until ``batch_delay_s`` has passed since its creation,
then ends at the next look: each line is answered as the chat route answers that body (the script, the
``responder``, ``score_models``, the default content: the same answer as online), the 200 answers go to
the output file and the others to the error file, and the batch is ``completed``. Set before it ends:

* ``expire_next = k``: the next batch to end answers only its first ``k`` lines and is ``expired``; the
  rest get ``batch_expired`` errors in the error file (as OpenAI writes them);
* ``fail_next = "code: message"``: the next batch to end is ``failed`` with that error and no file.

A batch whose file is missing, has a line that is not a POST to the batch's endpoint, or repeats a
``custom_id`` fails the same way at creation's validation.

Counters: ``files`` (id -> bytes), ``batches`` (id -> the batch object), ``lines_of(batch_id)`` (its
requests), ``batch_lines`` (lines answered 200 = paid), ``polls`` (``GET /v1/batches/{id}`` looks);
a line answered 200 counts in ``paid`` (``duplicates()``) as an online answer does, so a request paid
once by batch and once online shows up there. ``requests`` still counts online chat requests only.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from aiohttp import web

from tests.fake_openai import FakeOpenAI, _json, request_key, status

CHAT = "/v1/chat/completions"


@dataclass(frozen=True)
class _Auth:
    """What the chat route's checks read of a request: its headers (those of the batch's creation)."""

    headers: dict[str, str]


@dataclass
class _Batch:
    data: dict[str, Any]
    created: float
    auth: _Auth
    lines: list[dict[str, Any]] = field(default_factory=list)


class FakeBatchAPI(FakeOpenAI):
    """The fake chat server with Files and Batches endpoints (see the module doc)."""

    def __init__(self, *, batch_delay_s: float = 0.0, **options: Any) -> None:
        self.batch_delay_s = batch_delay_s
        self.expire_next: int | None = None
        self.fail_next: str | None = None
        self._ids = itertools.count(1)
        super().__init__(**options)

    def reset(self) -> None:
        super().reset()
        self.files: dict[str, bytes] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        self.batch_lines = 0
        self.polls = 0
        self._batches: dict[str, _Batch] = {}  # changed on the server's loop only

    def lines_of(self, batch_id: str) -> list[dict[str, Any]]:
        """The requests (input lines) of a batch."""
        return self._batches[batch_id].lines

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        path, method = request.path, request.method
        if not (path.startswith("/v1/files") or path.startswith("/v1/batches")):
            return await super()._handle(request)
        if not self._authorised(request):
            return _json(
                401, {"error": {"message": "Incorrect API key provided.", "code": "invalid_api_key"}}
            )
        parts = path.strip("/").split("/")  # v1, files|batches, [id], [content]
        if (method, len(parts)) == ("POST", 2) and parts[1] == "files":
            return await self._upload(request)
        if (method, len(parts), parts[-1]) == ("GET", 4, "content") and parts[2] in self.files:
            return web.Response(body=self.files[parts[2]], content_type="application/jsonl")
        if (method, len(parts), parts[1]) == ("POST", 2, "batches"):
            return self._create(orjson.loads(await request.read()), _Auth(dict(request.headers)))
        if (method, len(parts), parts[1]) == ("GET", 2, "batches"):
            return self._list(int(request.query.get("limit", 20)), request.query.get("after"))
        batch = self._batches.get(parts[2]) if len(parts) == 3 else None
        if batch is not None and method == "GET":
            self.polls += 1
            return _json(200, self._look(batch))
        return _json(404, {"error": {"message": f"no such object: {method} {path}"}})

    async def _upload(self, request: web.BaseRequest) -> web.Response:
        form = await request.post()
        upload = form.get("file")
        if form.get("purpose") != "batch" or not isinstance(upload, web.FileField):
            return _json(400, {"error": {"message": "expected purpose=batch and a file"}})
        file_id = f"file-{next(self._ids)}"
        self.files[file_id] = upload.file.read()
        return _json(
            200, {"id": file_id, "object": "file", "bytes": len(self.files[file_id]), "purpose": "batch"}
        )

    def _create(self, body: dict[str, Any], auth: _Auth) -> web.Response:
        if body.get("endpoint") != CHAT or body.get("completion_window") != "24h":
            return _json(400, {"error": {"message": f"bad endpoint or window: {body}"}})
        batch_id = f"batch_{next(self._ids)}"
        data: dict[str, Any] = {
            "id": batch_id,
            "object": "batch",
            "endpoint": CHAT,
            "input_file_id": body.get("input_file_id"),
            "completion_window": "24h",
            "status": "validating",
            "output_file_id": None,
            "error_file_id": None,
            "errors": None,
            "created_at": int(time.time()),
            "request_counts": {"total": 0, "completed": 0, "failed": 0},
        }
        batch = self._batches[batch_id] = _Batch(data, time.monotonic(), auth)
        self.batches[batch_id] = data
        problem = self._validate(batch)
        if problem:
            self._fail(batch, problem)
        return _json(200, data)

    def _validate(self, batch: _Batch) -> str | None:
        content = self.files.get(batch.data["input_file_id"])
        if content is None:
            return "invalid_file: no such input file"
        seen: set[str] = set()
        for raw in content.splitlines():
            item = orjson.loads(raw)
            if item.get("method") != "POST" or item.get("url") != CHAT or item.get("custom_id") in seen:
                return f"invalid_request: line {len(seen) + 1} is not a new POST to {CHAT}"
            seen.add(item["custom_id"])
            batch.lines.append(item)
        batch.data["request_counts"]["total"] = len(batch.lines)
        return None

    @staticmethod
    def _fail(batch: _Batch, problem: str) -> None:
        code, _, message = problem.partition(": ")
        batch.data["status"] = "failed"
        batch.data["errors"] = {"object": "list", "data": [{"code": code, "message": message, "line": None}]}

    def _list(self, limit: int, after: str | None) -> web.Response:
        newest = list(reversed(self.batches.values()))
        if after is not None:
            newest = newest[[b["id"] for b in newest].index(after) + 1 :]
        page = newest[:limit]
        return _json(200, {"object": "list", "data": page, "has_more": len(newest) > limit})

    def _look(self, batch: _Batch) -> dict[str, Any]:
        data = batch.data
        if data["status"] not in ("validating", "in_progress"):
            return data
        elapsed = time.monotonic() - batch.created
        if elapsed < self.batch_delay_s / 10:
            return data
        if elapsed < self.batch_delay_s:
            data["status"] = "in_progress"
            return data
        if self.fail_next is not None:
            problem, self.fail_next = self.fail_next, None
            self._fail(batch, problem)
            return data
        keep, self.expire_next = self.expire_next, None
        self._finish(batch, len(batch.lines) if keep is None else keep)
        return data

    def _finish(self, batch: _Batch, answered: int) -> None:
        output, errors = [], []
        for i, item in enumerate(batch.lines):
            cid = item["custom_id"]
            if i >= answered:
                error = {
                    "code": "batch_expired",
                    "message": "This request could not be executed before the completion window expired.",
                }
                errors.append({"id": f"batch_req_{i}", "custom_id": cid, "response": None, "error": error})
                continue
            code, body = self._answer_line(item["body"], batch.auth)
            response = {"status_code": code, "request_id": f"req_{i}", "body": body}
            result = {"id": f"batch_req_{i}", "custom_id": cid, "response": response, "error": None}
            (output if code == 200 else errors).append(result)
        data = batch.data
        for name, results in (("output_file_id", output), ("error_file_id", errors)):
            if results:
                data[name] = f"file-{next(self._ids)}"
                self.files[data[name]] = b"".join(orjson.dumps(r) + b"\n" for r in results)
        data["status"] = "completed" if answered >= len(batch.lines) else "expired"
        data["request_counts"] = {"total": len(batch.lines), "completed": len(output), "failed": len(errors)}

    def _answer_line(self, body: dict[str, Any], auth: _Auth) -> tuple[int, Any]:
        """A line's status and body, as the chat route would answer it."""
        behaviour = self._choose(auth, body)  # type: ignore[arg-type]  # the checks read only the headers
        if behaviour.kind == "raw":
            try:
                return behaviour.status, orjson.loads(behaviour.body or "")
            except orjson.JSONDecodeError:
                return behaviour.status, {"error": {"message": behaviour.body}}
        if behaviour.kind != "ok":  # drop, cut, truncated: no answer
            return 500, orjson.loads(status(500).body or "")
        payload, prompt_tokens, completion_tokens, cost = self._answer(behaviour, body)
        with self._lock:
            self.batch_lines += 1
            self.paid[request_key(body)] += 1
            self.prompt_tokens += prompt_tokens
            self.completion_tokens += completion_tokens
            self.cost += cost or 0.0
        return 200, orjson.loads(payload)


@pytest.fixture
def fake_batch_api() -> Iterator[FakeBatchAPI]:
    """A started in-process server with the batch endpoints (set attributes to configure it)."""
    with FakeBatchAPI() as server:
        yield server
