"""A fake OpenAI-compatible chat-completions server for hfpref's client tests, soak tests and benchmarks.

Routes: ``POST /v1/chat/completions``, ``GET /v1/models``, ``GET /stats[?detail=1]`` (counters as JSON;
detail adds the ``paid`` map), ``POST /script`` (a JSON list of ``Behaviour`` dicts), ``POST /reset``.

In-process (own event loop in a background thread; every option is an attribute read per request)::

    from tests.fake_openai import FakeOpenAI, fake_openai, ok, status, drop   # fake_openai: pytest fixture
    with FakeOpenAI(api_key="sk-test", models={"m/a"}, reject_n=True, latency_s=0.05) as fake:
        fake.base_url                       # "http://127.0.0.1:PORT/v1"
        fake.script(status(429, retry_after=2), drop(), ok("[[8]]"))   # consumed in arrival order
        fake.responder = lambda body: ok("[[A]]") if "x" in str(body["messages"]) else None
        fake.faults(rate=0.2, seed=1)       # random faults of the kinds in DEFAULT_FAULT_KINDS
        fake.score_models = {"judge/m"}     # default answers of these models are "[[k]]" judge scores
        fake.requests, fake.ok, fake.by_status[429], fake.duplicates(), fake.stats(), fake.received

Subprocess: ``python -m tests.fake_openai --port 0 --latency-ms 200 [--fault-rate 0.2 --seed 1]
[--score-models judge/m] [--cpu 0]``
prints ``fake_openai ready http://127.0.0.1:PORT/v1`` once listening and its final stats JSON line at
SIGTERM/SIGINT; it outlives a SIGKILLed client. ``with spawn("--latency-ms", "200") as proc:`` runs one
(``proc.base_url``, ``proc.stats()``, ``proc.script(drop())``, ``proc.reset()``).

A chat request is answered by the first that applies: 401 when ``api_key`` is set and ``Authorization``
is not ``Bearer <api_key>``; 400 for a body without a ``model`` string and ``messages`` list or a bad
``n``; 404 ``model_not_found`` when ``models`` is set and lacks the model; 400 when ``reject_n`` and
``n != 1`` (llama.cpp); then the next scripted behaviour, else ``responder(body)`` (None falls through),
else a random fault, else ``ok()``. Every answer waits ``latency_s`` + the behaviour's ``delay_s``.

Behaviours:
  ``ok(content=None, finish_reason="stop", cost=None, usage=True)``: content is a str for every choice, a
      list (choice i gets ``content[i % len]``) or None: ``default_content`` = ``"answer {h} #{i}"`` with
      ``h`` a hash of (model, messages, seed) and ``i`` the choice index, the same on every retry; for
      a model in ``score_models`` it is ``default_score`` = ``"[[k]]"``, k in 1..10 from the same hash
      (a pointwise judge verdict that differs from completion to completion).
  ``status(code, message=None, headers=None, retry_after=None, retry_after_ms=None, error_code=None)``:
      an OpenAI error body; ``html(code=502)``: an HTML page; ``raw(code, body, headers, content_type)``.
  ``openrouter_error(code=429, message, http_status=200, metadata=None)``: ``{"error": {code, message,
      metadata}}``, ``code`` an int, ``"429"`` or ``"rate_limited"``, with HTTP 200 as OpenRouter does.
  ``truncated()``: HTTP 200 with half the answer's JSON. ``drop()``: close without answering.
  ``cut()``: headers and half the body, then close. ``slow(seconds, then=ok())``: answer late.

Random faults (``faults(rate, seed)``, ``--fault-rate``): each request that reaches that step gets, with
probability ``rate``, one of ``DEFAULT_FAULT_KINDS`` drawn uniformly: a 429 with ``Retry-After`` and
``retry-after-ms``, a 500, a 502 HTML page, an OpenRouter error with HTTP 200, truncated JSON, a
dropped connection, a cut body, and a stall of ``slow_s`` seconds (default 30: past any short client
timeout; the client gives up first, so the stall is never paid).

Counters (``stats()`` = ``GET /stats``: the same with string keys): ``requests`` chat requests received;
``ok`` complete 200 answers (= paid; truncated, cut and OpenRouter-200 errors are not); ``paid[key]``
complete answers per request, ``key = request_key(body)`` (model + hash of the whole body), so a key
paid twice means an answered request was re-sent (``duplicates()``); ``sent[key]`` chat requests per
key (``distinct_requests`` keys, ``retried`` of them sent more than once); ``by_status`` statuses sent
(drop/cut: none); ``by_kind`` (ok, raw, truncated, drop, cut); ``by_model``; ``abandoned`` requests
the client hung up on before the answer; ``in_flight``/``max_in_flight``; ``prompt_tokens``/
``completion_tokens`` (word counts) and ``cost`` (``usage.cost``, reported when ``cost_per_token`` is
set) of paid answers; in-process with ``record``: ``received``, every chat request as RecordedRequest.

Fixture: ``pytest_plugins = ["tests.fake_openai"]`` (PYTEST_DONT_REWRITE: modules import it and load it).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import hashlib
import math
import os
import random
import select
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODELS = ("fake/model-a", "fake/model-b")


@dataclass(frozen=True)
class Behaviour:
    """What the server does with one request; JSON-compatible, so ``POST /script`` takes its dicts."""

    kind: str = "ok"  # ok | raw | truncated | drop | cut
    status: int = 200
    content: str | list[str] | None = None
    finish_reason: str = "stop"
    cost: float | None = None
    usage: bool = True
    headers: dict[str, str] = field(default_factory=dict)
    body: str | None = None
    content_type: str = "application/json"
    delay_s: float = 0.0


def ok(
    content: str | list[str] | None = None,
    *,
    finish_reason: str = "stop",
    cost: float | None = None,
    usage: bool = True,
) -> Behaviour:
    return Behaviour(content=content, finish_reason=finish_reason, cost=cost, usage=usage)


def status(
    code: int,
    message: str | None = None,
    *,
    headers: dict[str, str] | None = None,
    retry_after: float | str | None = None,
    retry_after_ms: float | None = None,
    error_code: str | int | None = None,
) -> Behaviour:
    """An OpenAI-style ``{"error": {message, type, param, code}}`` answer with HTTP ``code``."""
    all_headers = dict(headers or {})
    if retry_after is not None:
        all_headers["Retry-After"] = str(retry_after)
    if retry_after_ms is not None:
        all_headers["retry-after-ms"] = str(retry_after_ms)
    err_type = "invalid_request_error" if code < 500 and code != 429 else "server_error"
    error = {"message": message or f"fake error {code}", "type": err_type, "param": None, "code": error_code}
    return raw(code, orjson.dumps({"error": error}).decode(), all_headers)


def html(code: int = 502) -> Behaviour:
    page = f"<html><head><title>{code} Bad Gateway</title></head><body><h1>{code}</h1></body></html>"
    return Behaviour(kind="raw", status=code, body=page, content_type="text/html")


def openrouter_error(
    code: int | str = 429,
    message: str = "Rate limit exceeded: free-models-per-min",
    *,
    http_status: int = 200,
    metadata: dict[str, Any] | None = None,
) -> Behaviour:
    meta = {"provider_name": "FakeProvider", "raw": message} if metadata is None else metadata
    body = orjson.dumps({"error": {"code": code, "message": message, "metadata": meta}}).decode()
    return Behaviour(kind="raw", status=http_status, body=body)


def truncated() -> Behaviour:
    return Behaviour(kind="truncated")


def drop() -> Behaviour:
    return Behaviour(kind="drop")


def cut() -> Behaviour:
    return Behaviour(kind="cut")


def slow(seconds: float, then: Behaviour | None = None) -> Behaviour:
    return dataclasses.replace(then or ok(), delay_s=seconds)


def raw(
    code: int, body: str, headers: dict[str, str] | None = None, content_type: str = "application/json"
) -> Behaviour:
    return Behaviour(
        kind="raw", status=code, body=body, headers=dict(headers or {}), content_type=content_type
    )


#: Random-fault kinds (``faults(kinds=...)`` / ``--fault-kinds``).
FAULT_KINDS: dict[str, Callable[[FakeOpenAI], Behaviour]] = {
    "429": lambda s: status(
        429, retry_after=math.ceil(s.retry_after_ms / 1000), retry_after_ms=s.retry_after_ms
    ),
    "500": lambda s: status(500),
    "502": lambda s: html(502),
    "or200": lambda s: openrouter_error("rate_limited"),
    "truncated": lambda s: truncated(),
    "drop": lambda s: drop(),
    "cut": lambda s: cut(),
    "slow": lambda s: slow(s.slow_s),
}
DEFAULT_FAULT_KINDS = ("429", "500", "502", "or200", "truncated", "drop", "cut", "slow")


@dataclass(frozen=True)
class RecordedRequest:
    time: float
    headers: dict[str, str]
    body: Any


def request_key(body: dict[str, Any]) -> str:
    """The ``paid`` key of a request: its model and a hash of its whole body, keys sorted."""
    digest = hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]
    return f"{body.get('model')}:{digest}"


def _answer_hash(body: dict[str, Any]) -> str:
    seed = orjson.dumps(body.get("seed"))
    messages = orjson.dumps(body["messages"], option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(b"\0".join((body["model"].encode(), messages, seed))).hexdigest()[:8]


def default_content(body: dict[str, Any], index: int) -> str:
    """``"answer {h} #{index}"`` with ``h`` a hash of (model, messages, seed): stable across retries."""
    return f"answer {_answer_hash(body)} #{index}"


def default_score(body: dict[str, Any], index: int) -> str:
    """``"[[k]]"``, k in 1..10 from the hash of (model, messages, seed) and ``index``: a judge verdict."""
    return f"[[{1 + (int(_answer_hash(body), 16) + index) % 10}]]"


def _words(messages: list[Any]) -> int:
    count = 0
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            count += len(content.split())
        elif isinstance(content, list):
            count += sum(len(str(p.get("text", "")).split()) for p in content if isinstance(p, dict))
    return count


def _reply(b: Behaviour) -> web.Response:
    body = (b.body or "").encode()
    return web.Response(status=b.status, body=body, headers=b.headers, content_type=b.content_type)


def _json(code: int, data: Any) -> web.Response:
    return web.Response(status=code, body=orjson.dumps(data), content_type="application/json")


class FakeOpenAI:
    """The server: state, counters and the request handler; ``start()`` runs it in a thread."""

    def __init__(
        self,
        *,
        latency_s: float = 0.0,
        api_key: str | None = None,
        models: set[str] | None = None,
        reject_n: bool = False,
        cost_per_token: float | None = None,
        retry_after_ms: float = 100.0,
        slow_s: float = 30.0,
        score_models: set[str] | None = None,
        record: bool = True,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.latency_s = latency_s
        self.api_key = api_key
        self.models = models
        self.reject_n = reject_n
        self.cost_per_token = cost_per_token
        self.retry_after_ms = retry_after_ms
        self.slow_s = slow_s
        self.score_models = score_models or set()
        self.record = record
        self.host = host
        self.port = port
        self.responder: Callable[[dict[str, Any]], Behaviour | None] | None = None
        self.fault_rate = 0.0
        self.fault_kinds: tuple[str, ...] = DEFAULT_FAULT_KINDS
        self._rng = random.Random(0)
        self._script: deque[Behaviour] = deque()
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: web.Server | None = None
        self._listener: asyncio.Server | None = None
        self.reset()

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def script(self, *behaviours: Behaviour) -> None:
        """Queue behaviours; each chat request that passes the checks takes the next one."""
        self._script.extend(behaviours)

    def faults(self, rate: float, seed: int = 0, kinds: tuple[str, ...] = DEFAULT_FAULT_KINDS) -> None:
        """Give a random fault (kind drawn uniformly from ``kinds``) to a ``rate`` share of requests."""
        unknown = set(kinds) - set(FAULT_KINDS)
        if unknown or not 0 <= rate <= 1:
            raise ValueError(f"fault rate must be in [0, 1] and kinds in {sorted(FAULT_KINDS)}")
        self.fault_rate, self.fault_kinds, self._rng = rate, tuple(kinds), random.Random(seed)

    def reset(self) -> None:
        """Zero every counter, forget recorded requests and drop the script."""
        with self._lock:
            self._script.clear()
            self.requests = self.ok = self.abandoned = self.in_flight = self.max_in_flight = 0
            self.prompt_tokens = self.completion_tokens = 0
            self.cost = 0.0
            self.paid: Counter[str] = Counter()
            self.sent: Counter[str] = Counter()
            self.by_status: Counter[int] = Counter()
            self.by_kind: Counter[str] = Counter()
            self.by_model: Counter[str] = Counter()
            self.received: list[RecordedRequest] = []

    def duplicates(self) -> dict[str, int]:
        """Requests answered 200 more than once (the client re-sent an answered request)."""
        with self._lock:
            return {key: count for key, count in self.paid.items() if count > 1}

    def stats(self, detail: bool = False) -> dict[str, Any]:
        with self._lock:
            data: dict[str, Any] = {
                "requests": self.requests,
                "ok": self.ok,
                "abandoned": self.abandoned,
                "in_flight": self.in_flight,
                "max_in_flight": self.max_in_flight,
                "distinct_paid": len(self.paid),
                "duplicates": sum(1 for count in self.paid.values() if count > 1),
                "distinct_requests": len(self.sent),
                "retried": sum(1 for count in self.sent.values() if count > 1),
                "by_status": {str(code): count for code, count in self.by_status.items()},
                "by_kind": dict(self.by_kind),
                "by_model": dict(self.by_model),
                "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens,
                "cost": self.cost,
                "pending": len(self._script),
            }
            if detail:
                data["paid"] = dict(self.paid)
        return data

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        route = (request.method, request.path)
        if route == ("POST", "/v1/chat/completions"):
            return await self._chat(request)
        if route == ("GET", "/v1/models"):
            if not self._authorised(request):
                return _reply(status(401, "Incorrect API key provided.", error_code="invalid_api_key"))
            ids = sorted(self.models) if self.models is not None else DEFAULT_MODELS
            return _json(200, {"object": "list", "data": [{"id": m, "object": "model"} for m in ids]})
        if route == ("GET", "/stats"):
            return _json(200, self.stats(detail=request.query.get("detail") == "1"))
        if route == ("POST", "/script"):
            try:
                self.script(*(Behaviour(**item) for item in orjson.loads(await request.read())))
            except (orjson.JSONDecodeError, TypeError) as exc:
                return _json(400, {"error": {"message": f"bad script: {exc}"}})
            return _json(200, {"pending": len(self._script)})
        if route == ("POST", "/reset"):
            self.reset()
            return _json(200, {"ok": True})
        return _json(404, {"error": {"message": f"no route {request.method} {request.path}"}})

    async def _chat(self, request: web.BaseRequest) -> web.StreamResponse:
        raw_body = await request.read()
        try:
            body: Any = orjson.loads(raw_body)
        except orjson.JSONDecodeError:
            body = None
        with self._lock:
            self.requests += 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            if isinstance(body, dict):
                self.by_model[str(body.get("model"))] += 1
                self.sent[request_key(body)] += 1
            if self.record:
                self.received.append(RecordedRequest(time.monotonic(), dict(request.headers), body))
        try:
            behaviour = self._choose(request, body)
            delay = self.latency_s + behaviour.delay_s
            if delay > 0:
                await asyncio.sleep(delay)
            return await self._perform(request, behaviour, body)
        except asyncio.CancelledError:
            with self._lock:
                self.abandoned += 1
            raise
        finally:
            with self._lock:
                self.in_flight -= 1

    def _authorised(self, request: web.BaseRequest) -> bool:
        return self.api_key is None or request.headers.get("Authorization") == f"Bearer {self.api_key}"

    def _choose(self, request: web.BaseRequest, body: Any) -> Behaviour:
        if not self._authorised(request):
            return status(401, "Incorrect API key provided.", error_code="invalid_api_key")
        if (
            not isinstance(body, dict)
            or not isinstance(body.get("model"), str)
            or not isinstance(body.get("messages"), list)
        ):
            return status(400, "a JSON body with 'model' and 'messages' is required")
        n = body.get("n", 1)
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            return status(400, f"n must be an integer >= 1, got {n!r}")
        if self.models is not None and body["model"] not in self.models:
            return status(404, f"The model `{body['model']}` does not exist.", error_code="model_not_found")
        if self.reject_n and n != 1:
            return status(400, "Only one completion choice is allowed")
        with contextlib.suppress(IndexError):
            return self._script.popleft()
        if self.responder is not None:
            chosen = self.responder(body)
            if chosen is not None:
                return chosen
        if self.fault_rate and self._rng.random() < self.fault_rate:
            return FAULT_KINDS[self._rng.choice(self.fault_kinds)](self)
        return ok()

    def _answer(self, behaviour: Behaviour, body: dict[str, Any]) -> tuple[bytes, int, int, float | None]:
        n = body.get("n", 1)
        content = behaviour.content
        if content is None:
            make = default_score if body["model"] in self.score_models else default_content
            texts = [make(body, i) for i in range(n)]
        elif isinstance(content, str):
            texts = [content] * n
        else:
            texts = [content[i % len(content)] for i in range(n)]
        prompt_tokens = _words(body["messages"])
        completion_tokens = sum(len(t.split()) for t in texts)
        cost = behaviour.cost
        if cost is None and self.cost_per_token is not None:
            cost = (prompt_tokens + completion_tokens) * self.cost_per_token
        data: dict[str, Any] = {
            "id": f"chatcmpl-{self.requests}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body["model"],
            "choices": [
                {
                    "index": i,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": behaviour.finish_reason,
                }
                for i, text in enumerate(texts)
            ],
        }
        if behaviour.usage:
            usage = {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            }
            data["usage"] = usage if cost is None else {**usage, "cost": cost}
        return orjson.dumps(data), prompt_tokens, completion_tokens, cost

    async def _perform(self, request: web.BaseRequest, behaviour: Behaviour, body: Any) -> web.StreamResponse:
        kind = behaviour.kind
        transport = request.transport
        with self._lock:
            self.by_kind[kind] += 1
            if kind not in ("drop", "cut"):
                self.by_status[behaviour.status] += 1
        if kind == "drop":
            if transport is not None:
                transport.abort()
            return web.Response()
        if kind == "raw":
            return _reply(behaviour)
        payload, prompt_tokens, completion_tokens, cost = self._answer(behaviour, body)
        if kind == "truncated":
            return web.Response(body=payload[: len(payload) // 2], content_type="application/json")
        if kind == "cut":
            response = web.StreamResponse(headers={"Content-Type": "application/json"})
            response.content_length = len(payload)
            await response.prepare(request)
            await response.write(payload[: len(payload) // 2])
            if transport is not None:
                transport.abort()
            return response
        if transport is None or transport.is_closing():
            with self._lock:
                self.abandoned += 1
            return web.Response()
        with self._lock:
            self.ok += 1
            self.paid[request_key(body)] += 1
            self.prompt_tokens += prompt_tokens
            self.completion_tokens += completion_tokens
            self.cost += cost or 0.0
        return web.Response(body=payload, content_type="application/json")

    async def serve(self) -> None:
        """Start listening on the running loop (sets ``port`` when it was 0)."""
        self._server = web.Server(self._handle, handler_cancellation=True, access_log=None)
        self._listener = await asyncio.get_running_loop().create_server(
            self._server, self.host, self.port, backlog=4096
        )
        self.port = self._listener.sockets[0].getsockname()[1]

    async def aclose(self) -> None:
        if self._listener is not None:
            self._listener.close()
        if self._server is not None:
            await self._server.shutdown(timeout=1.0)
        if self._listener is not None:
            await self._listener.wait_closed()

    def start(self) -> FakeOpenAI:
        """Serve from a background thread with its own event loop."""
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fake-openai", daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.serve(), self._loop).result(timeout=10)
        return self

    def stop(self) -> None:
        if self._loop is None or self._thread is None:
            return
        asyncio.run_coroutine_threadsafe(self.aclose(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()
        self._loop = self._thread = None

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAI]:
    """A started in-process server with default options (set attributes to configure it)."""
    with FakeOpenAI() as server:
        yield server


class FakeOpenAIProcess:
    """Handle on a server started by :func:`spawn`."""

    def __init__(self, proc: subprocess.Popen[str], base_url: str) -> None:
        self.proc = proc
        self.base_url = base_url
        self.root_url = base_url.removesuffix("/v1")

    def _call(self, path: str, data: bytes | None = None) -> Any:
        request = urllib.request.Request(self.root_url + path, data=data, method="POST" if data else "GET")
        with urllib.request.urlopen(request, timeout=10) as response:
            return orjson.loads(response.read())

    def stats(self, detail: bool = False) -> dict[str, Any]:
        return self._call("/stats?detail=1" if detail else "/stats")

    def script(self, *behaviours: Behaviour) -> None:
        self._call("/script", orjson.dumps([dataclasses.asdict(b) for b in behaviours]))

    def reset(self) -> None:
        self._call("/reset", b"{}")


@contextlib.contextmanager
def spawn(*args: str, timeout: float = 30.0) -> Iterator[FakeOpenAIProcess]:
    """Run ``python -m tests.fake_openai --port 0 *args`` until the block ends (then SIGTERM)."""
    command = [sys.executable, "-m", "tests.fake_openai", "--port", "0", *args]
    proc = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], timeout)
        line = proc.stdout.readline() if ready else ""
        if not line.startswith("fake_openai ready "):
            raise RuntimeError(f"fake_openai did not start: {line!r} (exit code {proc.poll()})")
        yield FakeOpenAIProcess(proc, line.split()[-1])
    finally:
        proc.terminate()
        proc.communicate(timeout=10)


async def _main(args: argparse.Namespace) -> None:
    server = FakeOpenAI(
        latency_s=args.latency_ms / 1000,
        api_key=args.api_key,
        models=set(args.models.split(",")) if args.models else None,
        reject_n=args.reject_n,
        cost_per_token=args.cost_per_token,
        retry_after_ms=args.retry_after_ms,
        slow_s=args.slow_s,
        score_models=set(args.score_models.split(",")) if args.score_models else None,
        record=False,
        port=args.port,
    )
    server.faults(args.fault_rate, args.seed, tuple(args.fault_kinds.split(",")))
    await server.serve()
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopped.set)
    print(f"fake_openai ready {server.base_url}", flush=True)
    await stopped.wait()
    await server.aclose()
    print(orjson.dumps(server.stats()).decode(), flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.fake_openai", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="0: a free port (printed in the ready line)")
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--fault-rate", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fault-kinds", default=",".join(DEFAULT_FAULT_KINDS), help=", ".join(FAULT_KINDS))
    parser.add_argument("--retry-after-ms", type=float, default=100.0, help="Sent with random 429s")
    parser.add_argument("--slow-s", type=float, default=30.0, help="Delay of random 'slow' faults")
    parser.add_argument(
        "--score-models", default=None, help="Comma-separated models whose answers are [[k]] judge scores"
    )
    parser.add_argument("--api-key", default=None, help="Require 'Authorization: Bearer KEY'")
    parser.add_argument("--models", default=None, help="Comma-separated allowed models (others: 404)")
    parser.add_argument("--reject-n", action="store_true", help="400 on n != 1, like llama.cpp")
    parser.add_argument("--cost-per-token", type=float, default=None, help="Report usage.cost")
    parser.add_argument("--cpu", type=int, default=None, help="Pin this process to one CPU core")
    args = parser.parse_args(argv)
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    asyncio.run(_main(args))


if __name__ == "__main__":
    main()
