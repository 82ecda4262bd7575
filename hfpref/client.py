"""Async OpenAI-compatible chat client on aiohttp, shared by generation and judging.

``datasets.map`` runs every call on a new event loop, so a :class:`ChatClient` keeps one aiohttp
session, one global semaphore and one :class:`~hfpref.ratelimit.ModelLimiter` per model *per
loop*, opens them on first use and closes them when the last request of that loop is done.
The request cache, the budget and the statistics live at process level.

Transport failures are mapped onto :mod:`hfpref.errors` here (:func:`_map_transport_errors`);
HTTP answers are mapped by :func:`hfpref.errors.provider_error`. Retryable errors (429, 5xx,
timeouts, dropped connections, malformed bodies) are retried by tenacity with jittered exponential
backoff, or exactly ``Retry-After`` when the provider sends one; the rest fail fast, and the first
401/403/404 stops every other request of the client too.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt
from tenacity.wait import wait_base, wait_random_exponential

from hfpref.cache import Budget, RequestCache, request_key
from hfpref.concurrency import gather_all
from hfpref.config import ModelSpec, ProviderConfig, env_api_key
from hfpref.errors import (
    BadRequestError,
    BudgetExceededError,
    ConfigError,
    MalformedResponseError,
    ProviderConnectionError,
    ProviderError,
    ProviderTimeoutError,
    error_status_from_body,
    provider_error,
)
from hfpref.progress import Stats
from hfpref.ratelimit import Backlog, Clock, ModelLimiter, Sleep

SessionFactory = Callable[[int, float], aiohttp.ClientSession]
MAX_RETRY_AFTER_S = 600.0


def default_session(concurrency: int, timeout_s: float) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=0, ttl_dns_cache=300)
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=timeout_s, sock_connect=min(30.0, timeout_s)),
        headers={"Content-Type": "application/json", "X-Title": "hfpref"},
        json_serialize=lambda obj: orjson.dumps(obj).decode(),
    )


class wait_retry_after(wait_base):
    """Wait what the provider asked for (``Retry-After``), else jittered exponential backoff."""

    def __init__(self, fallback: wait_base) -> None:
        self.fallback = fallback

    def __call__(self, retry_state: RetryCallState) -> float:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:
            return min(float(retry_after), MAX_RETRY_AFTER_S)
        return self.fallback(retry_state)


def _is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, ProviderError) and exc.retryable


@contextlib.contextmanager
def _map_transport_errors(model: str) -> Iterator[None]:
    try:
        yield
    except TimeoutError:
        raise ProviderTimeoutError("no answer before the timeout", model=model) from None
    except (
        aiohttp.ClientPayloadError,
        aiohttp.ServerDisconnectedError,
        aiohttp.ClientConnectionError,
    ) as exc:
        raise ProviderConnectionError(
            f"connection failed: {type(exc).__name__}: {exc}", model=model
        ) from None


@dataclass
class _LoopState:
    """What must not cross event loops: the HTTP session, the semaphore and the limiters."""

    session: aiohttp.ClientSession
    semaphore: asyncio.Semaphore
    limiters: dict[str, ModelLimiter]
    backlog: Backlog
    users: int = 0
    # cache key -> the answer of a request in flight for it: the same prompt twice in a dataset
    # waits for the first request's answer instead of paying for a second (not with --no-cache)
    pending: dict[str, asyncio.Future[dict[str, Any]]] = field(default_factory=dict)


@dataclass
class ChatClient:
    """Sends chat completions for one Generator or Judge, with cache, limits, retries and accounting."""

    provider: ProviderConfig
    models: list[ModelSpec]
    concurrency: int
    cache: RequestCache
    stats: Stats
    budget: Budget | None = None
    session_factory: SessionFactory = default_session
    clock: Clock | None = None
    sleep: Sleep = asyncio.sleep
    backoff: wait_base = field(default_factory=lambda: wait_random_exponential(multiplier=0.5, max=60))
    _loops: dict[asyncio.AbstractEventLoop, _LoopState] = field(default_factory=dict)
    _fatal: ProviderError | None = None
    _no_n: set[str] = field(default_factory=set)  # models whose endpoint refuses `n` > 1
    _no_format: set[str] = field(default_factory=set)  # models whose endpoint refuses `response_format`

    def __post_init__(self) -> None:
        self._specs = {spec.id: spec for spec in self.models}
        self._urls = {
            spec.id: "local" if spec.is_local else self.provider.endpoint(spec) + "/chat/completions"
            for spec in self.models
        }
        self._headers: dict[str, dict[str, str]] = {}
        for spec in self.models:
            if spec.is_local:
                continue
            named = self.provider.key_env(spec)
            key = env_api_key(named)
            if named and key is None:
                raise ConfigError(f"model {spec.id}: environment variable {named} is not set")
            self._headers[spec.id] = {"Authorization": f"Bearer {key}"} if key else {}

    # -- per-loop resources -------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def open(self) -> Any:
        """Hold this loop's session and limiters for the duration of one ``map`` call's work."""
        loop = asyncio.get_running_loop()
        state = self._loops.get(loop)
        if state is None:
            limiter_args = {"clock": self.clock} if self.clock else {}
            state = _LoopState(
                session=self.session_factory(self.concurrency, self.provider.timeout_s),
                semaphore=asyncio.Semaphore(self.concurrency),
                limiters={
                    s.id: ModelLimiter(self.concurrency, s.rpm, s.tpm, sleep=self.sleep, **limiter_args)
                    for s in self.models
                },
                backlog=Backlog(2 * self.concurrency),
            )
            self._loops[loop] = state
        state.users += 1
        try:
            yield state
        finally:
            self.cache.flush()  # this batch's answers are committed before datasets takes its rows
            state.users -= 1
            if state.users == 0:
                del self._loops[loop]
                await state.session.close()
                self.stats.close()

    # -- public entry point ---------------------------------------------------------------------
    async def complete(
        self,
        state: _LoopState,
        model: str,
        messages: list[dict[str, Any]],
        params: dict[str, Any],
        samples: list[int],
        keys: list[str] | None = None,
        found: Mapping[str, dict[str, Any]] | None = None,
    ) -> list[dict[str, Any]]:
        """Completion records for ``samples`` (sample indices) of one prompt, from cache or the endpoint.

        A record has ``text``, ``model``, ``finish_reason``, ``prompt_tokens``, ``completion_tokens``,
        ``cost`` (None when unknown), ``cached`` and ``error`` (None, or why ``text`` is None).
        ``keys`` (:meth:`keys`) and ``found`` (:meth:`lookup`) let a caller read the cache for a whole
        batch at once.
        """
        if keys is None:
            keys = self.keys(model, messages, params, samples)
        if found is None:
            found = self.cache.get_many(keys)
        records: dict[int, dict[str, Any]] = {}
        shared: dict[int, asyncio.Future[dict[str, Any]]] = {}
        for key, sample in zip(keys, samples, strict=True):
            if key in found:
                records[sample] = {**found[key], "cached": True, "error": None}
            elif key in state.pending:
                shared[sample] = state.pending[key]
        missing = [s for s in samples if s not in records and s not in shared]
        key_of = dict(zip(samples, keys, strict=True))
        owned = self._own(state, {s: key_of[s] for s in missing}) if self.cache.path is not None else {}
        try:
            await self._send_missing(state, model, messages, params, missing, key_of, records)
        finally:
            for sample, future in owned.items():
                del state.pending[key_of[sample]]
                if sample in records:  # an answer, or a failure record: waiters get the same
                    future.set_result(records[sample])
                else:  # raised (a fatal error, or cancelled): whoever waited sends its own
                    future.cancel()
        for sample, future in shared.items():
            records[sample] = await self._shared(state, future, model, messages, params, sample)
        out = [records[s] for s in samples]
        for record in out:
            self.stats.record(record)
        return out

    @staticmethod
    def _own(state: _LoopState, keys: dict[int, str]) -> dict[int, asyncio.Future[dict[str, Any]]]:
        """Announce the requests we are about to send: sample -> the future of its answer."""
        loop = asyncio.get_running_loop()
        owned = {sample: loop.create_future() for sample in keys}
        for sample, key in keys.items():
            state.pending[key] = owned[sample]
        return owned

    async def _shared(
        self,
        state: _LoopState,
        future: asyncio.Future[dict[str, Any]],
        model: str,
        messages: list[dict[str, Any]],
        params: dict[str, Any],
        sample: int,
    ) -> dict[str, Any]:
        """The answer of an identical request in flight (not paid twice), or our own if that one failed."""
        try:
            record = await asyncio.shield(future)
        except asyncio.CancelledError:
            if not future.cancelled():
                raise  # we are being cancelled, not the request we waited for
            return (await self.complete(state, model, messages, params, [sample]))[0]
        return {**record, "cached": True} if record["error"] is None else record

    async def _send_missing(
        self,
        state: _LoopState,
        model: str,
        messages: list[dict[str, Any]],
        params: dict[str, Any],
        missing: list[int],
        key_of: dict[int, str],
        records: dict[int, dict[str, Any]],
    ) -> None:
        """Request ``missing`` samples (one request with ``n`` where the model takes it) into ``records``."""
        if not missing:
            return
        spec = self._specs[model]
        if len(missing) > 1 and spec.n_param is not False and model not in self._no_n:
            batches = [missing]
        else:
            batches = [[s] for s in missing]
        if len(batches) == 1:
            results = [await self._request(state, spec, messages, params, batches[0])]
        else:
            results = await gather_all(*(self._request(state, spec, messages, params, b) for b in batches))
        fresh: list[tuple[str, dict[str, Any]]] = []
        for batch, got in zip(batches, results, strict=True):
            for sample, record in zip(batch, got, strict=True):
                records[sample] = record
                if record["error"] is None:
                    fresh.append(
                        (key_of[sample], {k: v for k, v in record.items() if k not in ("cached", "error")})
                    )
        self.cache.put_soon(fresh)

    def keys(
        self, model: str, messages: list[dict[str, Any]], params: dict[str, Any], samples: list[int]
    ) -> list[str]:
        """The cache keys of ``samples`` of one prompt to ``model``."""
        endpoint = self._urls[model]
        return [request_key(endpoint, model, messages, params, i) for i in samples]

    def lookup(self, keys: list[str]) -> dict[str, dict[str, Any]]:
        """The cached answers among ``keys``, in one read: pass it to :meth:`complete` as ``found``."""
        return self.cache.get_many(keys)

    # -- one HTTP request (with n = len(samples)), retried ----------------------------------------
    async def _request(
        self,
        state: _LoopState,
        spec: ModelSpec,
        messages: list[dict[str, Any]],
        params: dict[str, Any],
        samples: list[int],
    ) -> list[dict[str, Any]]:
        if spec.id in self._no_format and "response_format" in params:
            params = {k: v for k, v in params.items() if k != "response_format"}
        body: dict[str, Any] = {"model": spec.id, "messages": messages, **params}
        if len(samples) > 1:
            body["n"] = len(samples)
        payload = orjson.dumps(body)
        estimate = len(payload) // 4 + int(params.get("max_tokens") or 0) * len(samples)
        n = len(samples)
        try:
            try:  # the common case, without tenacity's per-call cost
                data = await self._send(state, spec, payload, estimate, n)
            except ProviderError as first:
                if not first.retryable:
                    raise
                data = await self._retry(first, state, spec, payload, estimate, n)
        except BadRequestError as exc:
            # A 400 may refuse an optional feature rather than the request: `n` (llama.cpp) or
            # `response_format` (endpoints without structured output). Ask once without it; if that
            # is answered, do without it for this model from now on, else the 400 stands.
            if len(samples) > 1 and spec.n_param is None:
                first = await self._request(state, spec, messages, params, samples[:1])
                self._no_n.add(spec.id)
                return first + [
                    r for s in samples[1:] for r in await self._request(state, spec, messages, params, [s])
                ]
            if "response_format" in params:
                plain = {k: v for k, v in params.items() if k != "response_format"}
                records = await self._request(state, spec, messages, plain, samples)
                self._no_format.add(spec.id)
                return records
            self._fatal = self._fatal or exc
            raise
        except (ProviderError, BudgetExceededError) as exc:
            if not _is_retryable(exc) and not isinstance(exc, BudgetExceededError):
                self._fatal = self._fatal or exc
                raise
            return [self._failed(spec.id, str(exc)) for _ in samples]
        records = self._records(spec, data, len(samples))
        for sample in samples[len(records) :]:  # the endpoint sent fewer choices than `n` asked for
            records += await self._request(state, spec, messages, params, [sample])
        return records

    async def _retry(
        self, first: ProviderError, state: _LoopState, spec: ModelSpec, payload: bytes, estimate: int, n: int
    ) -> dict[str, Any]:
        """Retry with tenacity; attempt 1 replays ``first`` so backoff and Retry-After apply as usual."""
        replay: list[ProviderError] = [first]
        retrying = AsyncRetrying(
            retry=retry_if_exception(_is_retryable),
            wait=wait_retry_after(self.backoff),
            stop=stop_after_attempt(self.provider.max_retries + 1),
            sleep=self.sleep,
            reraise=True,
            before_sleep=self._count_retry,
        )
        async for attempt in retrying:
            with attempt:
                if replay:
                    raise replay.pop()
                return await self._send(state, spec, payload, estimate, n)
        raise AssertionError("unreachable: tenacity either returns or re-raises")

    def _count_retry(self, retry_state: RetryCallState) -> None:
        self.stats.retries += 1

    async def _send(
        self, state: _LoopState, spec: ModelSpec, payload: bytes, estimate: int, n: int
    ) -> dict[str, Any]:
        if self._fatal is not None:
            raise self._fatal
        limiter = state.limiters[spec.id]
        async with state.semaphore, limiter.slot(estimate):
            if self.budget is not None:
                self.budget.check()  # here, not before the wait for a slot: spend may have grown since
            if n > 1 and spec.id in self._no_n:  # refused by an answer that came while this one waited
                raise BadRequestError("the endpoint refuses n > 1", model=spec.id)
            self.stats.requests += 1
            if spec.is_local:  # in-process transformers: answers in the same shape as an endpoint's
                from hfpref.local import local_chat

                data = await local_chat(spec.id.removeprefix("local:"), orjson.loads(payload))
                limiter.on_success()
                return data
            with _map_transport_errors(spec.id):
                async with state.session.post(
                    self._urls[spec.id], data=payload, headers=self._headers[spec.id]
                ) as resp:
                    raw = await resp.read()
                    status, headers = resp.status, resp.headers
            if status >= 400:
                error = provider_error(status, headers, raw, spec.id)
                if status == 429:
                    limiter.on_rate_limited(error.retry_after)
                raise error
            try:
                data = orjson.loads(raw)
            except orjson.JSONDecodeError:
                raise MalformedResponseError(f"answer is not JSON: {raw[:80]!r}", model=spec.id) from None
            if not isinstance(data, dict) or not isinstance(data.get("choices"), list) or not data["choices"]:
                if isinstance(data, dict) and "error" in data:
                    error = provider_error(error_status_from_body(data), headers, raw, spec.id)
                    if error.status == 429:
                        limiter.on_rate_limited(error.retry_after)
                    raise error
                raise MalformedResponseError(f"answer has no choices: {raw[:80]!r}", model=spec.id)
            limiter.on_success()
            usage = data.get("usage") or {}
            limiter.settle(estimate, int(usage.get("total_tokens") or estimate))
            return data

    def _records(self, spec: ModelSpec, data: dict[str, Any], n: int) -> list[dict[str, Any]]:
        usage = data.get("usage") or {}
        choices = sorted(data["choices"], key=lambda c: c.get("index", 0))[:n]
        k = len(choices)
        prompt_tokens = usage.get("prompt_tokens")
        completion_tokens = usage.get("completion_tokens")
        cost = usage.get("cost")
        if cost is None and None not in (spec.price_in, spec.price_out, prompt_tokens, completion_tokens):
            cost = (prompt_tokens * spec.price_in + completion_tokens * spec.price_out) / 1e6  # type: ignore[operator]
        if cost is not None and self.budget is not None:
            self.budget.add(float(cost))
        records = []
        for choice in choices:
            message = choice.get("message") or {}
            text = message.get("content")
            records.append(
                {
                    "text": text,
                    "model": spec.id,
                    "finish_reason": choice.get("finish_reason"),
                    "prompt_tokens": None if prompt_tokens is None else round(prompt_tokens / k),
                    "completion_tokens": None if completion_tokens is None else round(completion_tokens / k),
                    "cost": None if cost is None else float(cost) / k,
                    "cached": False,
                    "error": None
                    if isinstance(text, str)
                    else f"no text in the answer (finish_reason={choice.get('finish_reason')})",
                }
            )
        return records

    @staticmethod
    def _failed(model: str, error: str) -> dict[str, Any]:
        return {
            "text": None,
            "model": model,
            "finish_reason": None,
            "prompt_tokens": None,
            "completion_tokens": None,
            "cost": None,
            "cached": False,
            "error": error,
        }
