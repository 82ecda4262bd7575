"""The Batch API as a transport: requests are collected into files, submitted as batches, and each waits
for its line of the result, behind the same seam as :class:`~hfpref.wire.transport.HTTPTransport`.

:meth:`BatchTransport.send` does not post the request: it adds it as one JSONL line to the file being
collected for its endpoint and key (:mod:`hfpref.wire.batch_api`), and awaits that line's result. A file
is submitted once no request joined it for ``batch_quiet_s`` seconds, or at once when it is full
(``batch_max_requests`` lines, ``batch_max_bytes`` bytes): uploaded, made a batch, recorded
(:mod:`hfpref.wire.batch_store`), and looked at until it ends; then every waiting request gets its line's
response, read as an online answer is (:func:`hfpref.wire.failures.batch_line`). So the client's
retries, records, cache, budget and cost work as online, and every answer goes to the request cache.

* Identical requests waiting together share one line (a batch refuses a ``custom_id`` twice).
* Resume: a request recorded in an earlier run's batch waits for that batch (polls it, reads its
  output) instead of being submitted again; one whose file was recorded but whose batch never got an
  id is looked up among the endpoint's batches; one that failed there is submitted again.
* A request sent again in the same process (the client retries it: an error, an empty answer, a batch
  that expired or was cancelled) goes into a new batch, or online with ``batch_fallback = "online"``.
* An endpoint that refuses the upload or the creation with 404/405 has no batch API: every request of
  it fails with :class:`~hfpref.errors.BatchUnsupported` (one line, exit 2); so does OpenRouter, at once.

What must not cross event loops (``datasets.map`` runs each call on a new one) is kept per loop: the
HTTP session, the files being collected, the background tasks; :meth:`aclose` ends them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from hfpref.config import ModelSpec, ProviderConfig
from hfpref.errors import BatchUnsupported, ConfigError, HfprefError
from hfpref.wire.batch_api import BatchAPI, LineResult, custom_id, line, results
from hfpref.wire.batch_store import BatchStore, Recorded
from hfpref.wire.failures import batch_failed, batch_line
from hfpref.wire.progress import Stats
from hfpref.wire.ratelimit import Sleep
from hfpref.wire.transport import Request, Transport

NO_BATCH_HOSTS = ("openrouter.ai",)  # OpenAI-compatible endpoints known to have no batch API

Outcome = tuple[LineResult, str] | BaseException  # a line's result and its batch id, or why none came


class BatchAnswer(dict[str, Any]):
    """The JSON of an answer that came in batch ``batch_id`` (recorded and priced as such by the client)."""

    def __init__(self, data: dict[str, Any], batch_id: str) -> None:
        super().__init__(data)
        self.batch_id = batch_id


def check_batch_endpoint(url: str) -> None:
    """Fail at once for an endpoint known to have no batch API."""
    if any(host in url for host in NO_BATCH_HOSTS):
        raise BatchUnsupported(
            f"{url} (OpenRouter) has no Batch API: drop --batch-api (batch_api = true), or use an endpoint "
            "that has one (OpenAI https://api.openai.com/v1, or a server with Files + Batches endpoints)"
        )


def batch_transport(
    provider: ProviderConfig,
    models: list[ModelSpec],
    stats: Stats,
    cache_path: Path | None,
    budget: bool,
    online: Transport,
    sleep: Sleep,
) -> BatchTransport:
    """The client's transport with ``batch_api``: its records beside the request cache at ``cache_path``,
    ``online`` for ``batch_fallback = "online"``. Fails at once for an endpoint known to have no batch
    API, and for a ``budget`` without prices (a batch's answers arrive together: none teaches the price)."""
    for spec in models:
        if spec.is_local:
            continue
        check_batch_endpoint(provider.endpoint(spec))
        if budget and (spec.price_in is None or spec.price_out is None):
            raise ConfigError(
                f"model {spec.id}: --max-cost with --batch-api needs price_in and price_out in hfpref.toml "
                "(a batch's answers arrive together: no first answer teaches the price)"
            )
    fallback = online if provider.batch_fallback == "online" else None
    return BatchTransport(provider, stats, BatchStore(cache_path), online=fallback, sleep=sleep)


def batch_session(provider: ProviderConfig) -> aiohttp.ClientSession:
    """No overall timeout (an upload or an output file can be large); connect and read timeouts apply."""
    timeout = aiohttp.ClientTimeout(
        total=None, sock_connect=provider.connect_timeout_s, sock_read=provider.read_timeout_s
    )
    return aiohttp.ClientSession(timeout=timeout, headers={"X-Title": "hfpref"})


@dataclass(eq=False)
class _Waiter:
    """A request waiting for its line's result."""

    line: bytes
    future: asyncio.Future[Outcome]


@dataclass(eq=False)
class _File:
    """The input file being collected for one endpoint."""

    waiters: dict[str, _Waiter] = field(default_factory=dict)
    size: int = 0
    sealed: bool = False


@dataclass(eq=False)
class _Watch:
    """A batch of an earlier run that requests of this one wait for."""

    waiters: dict[str, _Waiter] = field(default_factory=dict)
    ended: tuple[dict[str, Any], dict[str, LineResult]] | None = None  # the batch as it ended, its results
    lost: bool = False  # its batch was never created: its requests are submitted anew


@dataclass(eq=False)
class _Endpoint:
    """One endpoint and key on one event loop."""

    api: BatchAPI
    waiting: dict[str, _Waiter] = field(default_factory=dict)  # custom_id -> the waiter of its line
    collecting: _File | None = None
    watches: dict[str, _Watch] = field(default_factory=dict)  # file id -> the earlier run's batch


@dataclass(eq=False)
class _Loop:
    session: aiohttp.ClientSession
    endpoints: dict[tuple[str, str], _Endpoint] = field(default_factory=dict)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)


def _unanswered(batch: dict[str, Any]) -> LineResult:
    """The result of a request the ended ``batch`` has no line for (it expired or was cancelled first)."""
    status, name = batch["status"], batch["id"]
    error = {"code": f"batch_{status}", "message": f"batch {name} ended {status} without answering it"}
    return LineResult(0, orjson.dumps({"error": error}))


class BatchTransport:
    """Sends chat completions through the endpoint's Files + Batches endpoints (see the module doc).

    ``store``: the batch records (in the request cache's file; in memory with ``--no-cache``).
    ``online``: where a request that failed in a batch is sent again (``batch_fallback = "online"``), or
    None (the next batch). ``sleep``: the quiet period's and the polling's (tests pass their own).
    """

    def __init__(
        self,
        provider: ProviderConfig,
        stats: Stats,
        store: BatchStore,
        *,
        online: Transport | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.provider = provider
        self.stats = stats
        self.store = store
        self.online = online
        self.sleep = sleep
        self._loops: dict[asyncio.AbstractEventLoop, _Loop] = {}
        self._unsupported: dict[str, BatchUnsupported] = {}  # endpoint -> why it has no batch API
        self._delivered: set[str] = set()  # requests whose result this process handed over

    # -- the seam -------------------------------------------------------------------------------
    async def send(self, request: Request) -> dict[str, Any]:
        base = request.url.removesuffix("/chat/completions")
        if base in self._unsupported:
            raise self._unsupported[base]
        endpoint = self._endpoint(base, request)
        cid = custom_id(request)
        waiter = endpoint.waiting.get(cid)
        if waiter is None:  # else: the same request waits already; its line answers both
            again = cid in self._delivered  # the client tries it again: a new batch, not the old result
            recorded = None if again else self.store.lookup(cid)
            failed = again or (recorded is not None and recorded.failed)
            if failed and self.online is not None:
                return await self.online.send(request)
            future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
            waiter = endpoint.waiting[cid] = _Waiter(line(cid, request.body), future)
            if recorded is None or recorded.failed:
                self._collect(endpoint, cid, waiter)
            else:
                self._attach(endpoint, recorded, cid, waiter)
        outcome = await asyncio.shield(waiter.future)
        if isinstance(outcome, BaseException):
            raise outcome
        result, batch_id = outcome
        return BatchAnswer(batch_line(result.status, result.body, request.model), batch_id)

    async def aclose(self) -> None:
        state = self._loops.pop(asyncio.get_running_loop(), None)
        if state is not None:
            for task in state.tasks:
                task.cancel()
            await asyncio.gather(*state.tasks, return_exceptions=True)
            await state.session.close()
        if self.online is not None:
            await self.online.aclose()

    # -- per loop -------------------------------------------------------------------------------
    def _endpoint(self, base: str, request: Request) -> _Endpoint:
        loop = asyncio.get_running_loop()
        state = self._loops.get(loop)
        if state is None:
            state = self._loops[loop] = _Loop(batch_session(self.provider))
        key = (base, request.headers.get("Authorization", ""))
        endpoint = state.endpoints.get(key)
        if endpoint is None:
            api = BatchAPI(base, request.headers, state.session, self.provider, self.sleep)
            endpoint = state.endpoints[key] = _Endpoint(api)
        return endpoint

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        state = self._loops[asyncio.get_running_loop()]
        task = asyncio.get_running_loop().create_task(work)
        state.tasks.add(task)
        task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task[None]) -> None:
        """A background task ended. One that raised (a bug, not an endpoint's failure: those are
        results) must not leave requests waiting forever: they all get its exception."""
        state = self._loops.get(task.get_loop())
        if state is not None:
            state.tasks.discard(task)
        if task.cancelled() or task.exception() is None or state is None:
            return
        for endpoint in state.endpoints.values():
            self._settle(endpoint, dict(endpoint.waiting), task.exception())

    # -- collecting and submitting --------------------------------------------------------------
    def _collect(self, endpoint: _Endpoint, cid: str, waiter: _Waiter) -> None:
        file = endpoint.collecting
        full = file is not None and (
            len(file.waiters) >= self.provider.batch_max_requests
            or file.size + len(waiter.line) > self.provider.batch_max_bytes
        )
        if file is None or full:
            if file is not None:
                self._seal(endpoint)
            file = endpoint.collecting = _File()
            self._spawn(self._linger(endpoint, file))
        file.waiters[cid] = waiter
        file.size += len(waiter.line)

    async def _linger(self, endpoint: _Endpoint, file: _File) -> None:
        """Submit ``file`` once no request joined it for ``batch_quiet_s`` (unless it filled up first)."""
        seen = -1
        while not file.sealed and len(file.waiters) != seen:
            seen = len(file.waiters)
            await self.sleep(self.provider.batch_quiet_s)
        if not file.sealed:
            self._seal(endpoint)

    def _seal(self, endpoint: _Endpoint) -> None:
        file = endpoint.collecting
        assert file is not None
        endpoint.collecting = None
        file.sealed = True
        self._spawn(self._submit(endpoint, file.waiters))

    async def _submit(self, endpoint: _Endpoint, waiters: dict[str, _Waiter]) -> None:
        api = endpoint.api
        try:
            file_id = await api.upload(b"".join(w.line for w in waiters.values()))
            self.store.add_file(file_id, api.base, list(waiters))  # before the batch exists: see batch_store
            batch = await api.create(file_id)
            self.store.set_batch(file_id, batch["id"])
            ended = await self._wait(api, batch)
        except BatchUnsupported as exc:
            self._unsupported[api.base] = exc
            self._settle(endpoint, waiters, exc)
            return
        except HfprefError as exc:  # tried again by the client: a recorded batch is waited for again
            self._settle(endpoint, waiters, exc)
            return
        self._deliver(endpoint, file_id, ended, waiters)

    async def _wait(
        self, api: BatchAPI, batch: dict[str, Any]
    ) -> tuple[dict[str, Any], dict[str, LineResult]]:
        """``batch`` as it ended, and its results (the error file's, then the output file's)."""
        final = await api.wait(batch, self.stats.batch)
        found: dict[str, LineResult] = {}
        for name in ("error_file_id", "output_file_id"):
            if isinstance(final.get(name), str):
                found.update(results(await api.read(final[name])))
        return final, found

    # -- requests of an earlier run's batch -----------------------------------------------------
    def _attach(self, endpoint: _Endpoint, recorded: Recorded, cid: str, waiter: _Waiter) -> None:
        watch = endpoint.watches.get(recorded.file_id)
        if watch is None:
            watch = endpoint.watches[recorded.file_id] = _Watch()
            self._spawn(self._follow(endpoint, recorded, watch))
        if watch.lost:
            self._collect(endpoint, cid, waiter)
        elif watch.ended is not None:
            self._deliver(endpoint, recorded.file_id, watch.ended, {cid: waiter})
        else:
            watch.waiters[cid] = waiter

    async def _follow(self, endpoint: _Endpoint, recorded: Recorded, watch: _Watch) -> None:
        """Wait for the batch an earlier run recorded (found by its file when its id never was)."""
        api = endpoint.api
        try:
            if recorded.batch_id is not None:
                batch = await api.get(recorded.batch_id)
            else:
                batch = await api.find(recorded.file_id)
                if batch is not None:
                    self.store.set_batch(recorded.file_id, batch["id"])
            watch.ended = None if batch is None else await self._wait(api, batch)
        except HfprefError as exc:
            del endpoint.watches[recorded.file_id]  # the next request of it looks again
            self._settle(endpoint, watch.waiters, exc)
            return
        waiters, watch.waiters = watch.waiters, {}
        if watch.ended is not None:
            self._deliver(endpoint, recorded.file_id, watch.ended, waiters)
            return
        watch.lost = True  # never created, or gone: its requests are submitted now
        for cid, waiter in waiters.items():
            self._collect(endpoint, cid, waiter)

    # -- handing results over -------------------------------------------------------------------
    def _deliver(
        self,
        endpoint: _Endpoint,
        file_id: str,
        ended: tuple[dict[str, Any], dict[str, LineResult]],
        waiters: dict[str, _Waiter],
    ) -> None:
        """Each waiter gets its line's result; the failures are recorded first (a rerun submits them)."""
        batch, found = ended
        missing = _unanswered(batch)
        outcomes = {cid: found.get(cid, missing) for cid in waiters}
        self.store.failed(file_id, [cid for cid, result in outcomes.items() if result.status != 200])
        self._delivered.update(waiters)
        if batch["status"] == "failed":  # refused as a whole: not the answer of any one request
            self._settle(endpoint, waiters, batch_failed(batch))
            return
        for cid, waiter in waiters.items():
            self._resolve(endpoint, cid, waiter, (outcomes[cid], batch["id"]))

    def _settle(self, endpoint: _Endpoint, waiters: dict[str, _Waiter], error: BaseException) -> None:
        """No result came for ``waiters``: each raises ``error``."""
        for cid, waiter in waiters.items():
            self._resolve(endpoint, cid, waiter, error)

    @staticmethod
    def _resolve(endpoint: _Endpoint, cid: str, waiter: _Waiter, outcome: Outcome) -> None:
        if endpoint.waiting.get(cid) is waiter:
            del endpoint.waiting[cid]
        if not waiter.future.done():
            waiter.future.set_result(outcome)
