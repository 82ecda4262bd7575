"""Async OpenAI-compatible chat client on aiohttp, shared by generation and judging.

``datasets.map`` runs every call on a new event loop, so a :class:`ChatClient` keeps one aiohttp
session, one global semaphore and one :class:`~hfpref.ratelimit.ModelLimiter` per model *per
loop*, opens them on first use and closes them when the last request of that loop is done.
The request cache, the budget ledger and the statistics live at process level.

Transport failures are mapped onto :mod:`hfpref.errors` here (:func:`_map_transport_errors`);
HTTP answers are mapped by :func:`hfpref.errors.provider_error`, and the bodies of 200 answers are
read by :mod:`hfpref.answers`. Retryable errors (429, 5xx, timeouts, dropped connections, malformed
bodies, empty answers) are retried by tenacity with jittered exponential backoff, or ``Retry-After``
plus up to 20% jitter when the provider sends one, for at most ``max_retries`` attempts and
``max_retry_time_s`` seconds; the rest fail fast, and the first 401/403/404 stops every other request
of the client too. An endpoint that refused every connection for ``UNREACHABLE_AFTER_S`` seconds and
never answered is given up on (:class:`~hfpref.errors.EndpointUnreachable`).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt, stop_after_delay
from tenacity.wait import wait_base, wait_random_exponential

from hfpref.config import ModelSpec, ProviderConfig, env_api_key
from hfpref.errors import (
    BadRequestError,
    BudgetExhausted,
    ConfigError,
    EmptyAnswerError,
    EndpointUnreachable,
    MalformedResponseError,
    ProviderConnectionError,
    ProviderError,
    ProviderTimeoutError,
    error_status_from_body,
    provider_error,
)
from hfpref.wire import answers
from hfpref.wire.budget import Ledger
from hfpref.wire.cache import RequestCache, request_key
from hfpref.wire.progress import Stats
from hfpref.wire.ratelimit import Backlog, Clock, ModelLimiter, Sleep
from hfpref.wire.tasks import gather_all

SessionFactory = Callable[[ProviderConfig, int], aiohttp.ClientSession]
MAX_RETRY_AFTER_S = 600.0
RETRY_AFTER_JITTER = 0.2  # a Retry-After wait is stretched by up to this share, so waiters spread out
UNREACHABLE_AFTER_S = 3.0  # connections refused for this long, with no answer ever: the endpoint is down
PROMPT_BYTES_PER_TOKEN = 3  # a request body's size over this bounds its prompt tokens (for the budget)


def default_session(provider: ProviderConfig, concurrency: int) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=0, ttl_dns_cache=300)
    timeout = aiohttp.ClientTimeout(
        total=provider.timeout_s,
        sock_connect=provider.connect_timeout_s,
        sock_read=provider.read_timeout_s,
    )
    return aiohttp.ClientSession(
        connector=connector,
        timeout=timeout,
        headers={"Content-Type": "application/json", "X-Title": "hfpref"},
        json_serialize=lambda obj: orjson.dumps(obj).decode(),
    )


class wait_retry_after(wait_base):
    """Wait what the provider asked for (``Retry-After``) plus jitter, else jittered exponential backoff."""

    def __init__(self, fallback: wait_base, jitter: Callable[[], float] = random.random) -> None:
        self.fallback = fallback
        self.jitter = jitter

    def __call__(self, retry_state: RetryCallState) -> float:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:
            wait = float(retry_after) * (1.0 + RETRY_AFTER_JITTER * self.jitter())
            return min(wait, MAX_RETRY_AFTER_S)
        return self.fallback(retry_state)


def _is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, ProviderError) and exc.retryable


@contextlib.contextmanager
def _map_transport_errors(model: str) -> Iterator[None]:
    try:
        yield
    except TimeoutError:
        raise ProviderTimeoutError("no answer before the timeout", model=model) from None
    except aiohttp.ClientConnectorError as exc:
        raise _Refused(f"cannot connect: {exc.os_error.strerror or exc}", model=model) from None
    except (
        aiohttp.ClientPayloadError,
        aiohttp.ServerDisconnectedError,
        aiohttp.ClientConnectionError,
    ) as exc:
        raise ProviderConnectionError(
            f"connection failed: {type(exc).__name__}: {exc}", model=model
        ) from None


class _Refused(ProviderConnectionError):
    """No connection could be made (refused, no route, unknown host): retried until the endpoint is
    judged unreachable."""


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
    sending: int = 0  # requests between their budget reservation and their answer
    idle: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class _Endpoint:
    """Whether an endpoint ever answered, and since when every connection to it has been refused."""

    answered: bool = False
    refused_since: float | None = None


@dataclass
class ChatClient:
    """Sends chat completions for one Generator or Judge, with cache, limits, retries and accounting.

    ``budget``: the job's :class:`~hfpref.budget.Ledger` (``max_cost``), or None. When it refuses a
    request, ``budget_nulls`` decides: False raises :class:`~hfpref.errors.BudgetExhausted` once
    every request in flight on the loop has been answered (and cached); True records the completion
    as failed (null) with the reason, so that a caller can keep the finished rows (the CLI).
    """

    provider: ProviderConfig
    models: list[ModelSpec]
    concurrency: int
    cache: RequestCache
    stats: Stats
    budget: Ledger | None = None
    budget_nulls: bool = False
    session_factory: SessionFactory = default_session
    clock: Clock | None = None
    sleep: Sleep = asyncio.sleep
    jitter: Callable[[], float] = random.random
    backoff: wait_base = field(default_factory=lambda: wait_random_exponential(multiplier=0.5, max=60))
    _loops: dict[asyncio.AbstractEventLoop, _LoopState] = field(default_factory=dict)
    _fatal: ProviderError | None = None
    _no_n: set[str] = field(default_factory=set)  # models whose endpoint refuses `n` > 1
    _no_format: set[str] = field(default_factory=set)  # models whose endpoint refuses `response_format`
    _unpriced: ConfigError | None = None  # a budget that answers without a cost cannot keep

    def __post_init__(self) -> None:
        self._specs = {spec.id: spec for spec in self.models}
        self._urls = {
            spec.id: "local" if spec.is_local else self.provider.endpoint(spec) + "/chat/completions"
            for spec in self.models
        }
        self._endpoints = {url: _Endpoint() for url in self._urls.values()}
        self._now = self.clock or time.monotonic
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
                session=self.session_factory(self.provider, self.concurrency),
                semaphore=asyncio.Semaphore(self.concurrency),
                limiters={
                    s.id: ModelLimiter(
                        self.concurrency, s.rpm, s.tpm, sleep=self.sleep, jitter=self.jitter, **limiter_args
                    )
                    for s in self.models
                },
                backlog=Backlog(2 * self.concurrency),
            )
            state.idle.set()
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
        ``cost`` (None when unknown), ``reasoning``, ``refusal``, ``cached`` and ``error`` (None, or
        why ``text`` is None): see :mod:`hfpref.answers`.
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
            if key in found:  # an answer, or a final failure (a refusal): both are paid for once
                records[sample] = {**answers.EMPTY_RECORD, **found[key], "cached": True}
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
        """Request ``missing`` samples (one request with ``n`` where the model takes it) into ``records``;
        the answers that stand (final failures included) go to the cache."""
        if not missing:
            return
        spec = self._specs[model]
        store: list[int] = []
        if len(missing) == 1 or (spec.n_param is not False and model not in self._no_n):
            await self._request(state, spec, messages, params, missing, records, store)
        else:
            await gather_all(
                *(self._request(state, spec, messages, params, [s], records, store) for s in missing)
            )
        self.cache.put_soon(
            [(key_of[s], {k: v for k, v in records[s].items() if k != "cached"}) for s in store]
        )
        if self._unpriced is not None:
            raise self._unpriced

    def keys(
        self, model: str, messages: list[dict[str, Any]], params: dict[str, Any], samples: list[int]
    ) -> list[str]:
        """The cache keys of ``samples`` of one prompt to ``model``."""
        endpoint = self._urls[model]
        return [request_key(endpoint, model, messages, params, i) for i in samples]

    def lookup(self, keys: list[str]) -> dict[str, dict[str, Any]]:
        """The cached answers among ``keys``, in one read: pass it to :meth:`complete` as ``found``."""
        return self.cache.get_many(keys)

    # -- the requests of one prompt's samples, until each has its record -----------------------
    async def _request(
        self,
        state: _LoopState,
        spec: ModelSpec,
        messages: list[dict[str, Any]],
        params: dict[str, Any],
        samples: list[int],
        records: dict[int, dict[str, Any]],
        store: list[int],
    ) -> None:
        """Ask for ``samples`` (in one request with ``n`` while the endpoint takes it) until each has a
        record; the samples whose record should be cached are added to ``store``.

        A 400 may refuse an optional feature rather than the request: ``n`` (llama.cpp) or
        ``response_format`` (endpoints without structured output). The request is asked once without
        it; if that is answered the model does without it from now on, else the 400 stands. An answer
        with fewer choices than asked leaves the rest for the next request; a choice whose failure
        another attempt may mend (:mod:`hfpref.answers`) is asked again, ``max_retries`` times at most.
        """
        todo = list(samples)
        mended = 0
        probing_n = probing_format = False
        while todo:
            if spec.id in self._no_format and "response_format" in params:
                params = {k: v for k, v in params.items() if k != "response_format"}
            one_by_one = probing_n or spec.n_param is False or spec.id in self._no_n
            batch = todo[:1] if one_by_one else list(todo)
            try:
                outcome = await self._exchange(state, spec, messages, params, len(batch))
            except BadRequestError as exc:
                if len(batch) > 1 and spec.n_param is None:
                    probing_n = True
                    continue
                if "response_format" in params and not probing_format:
                    params = {k: v for k, v in params.items() if k != "response_format"}
                    probing_format = True
                    continue
                self._fatal = self._fatal or exc
                raise
            except EmptyAnswerError as exc:  # retries ran out: the last answer's failures stand, uncached
                for sample, record in zip(batch, exc.records, strict=False):
                    records[sample] = record
                    todo.remove(sample)
                continue
            except BudgetExhausted as exc:
                if not self.budget_nulls:
                    await state.idle.wait()  # what is in flight arrives and is cached first
                    raise
                for sample in todo:
                    records[sample] = answers.failed_record(spec.id, str(exc))
                return
            except ProviderError as exc:
                if not exc.retryable:
                    self._fatal = self._fatal or exc
                    raise
                for sample in batch:  # retries ran out: failed for good in this run, tried again in the next
                    records[sample] = answers.failed_record(spec.id, str(exc))
                    todo.remove(sample)
                continue
            if probing_n:
                self._no_n.add(spec.id)
                probing_n = False
            if probing_format:
                self._no_format.add(spec.id)
                probing_format = False
            again = bool(outcome.retry) and mended < self.provider.max_retries
            mended += bool(outcome.retry)
            for i, (sample, record) in enumerate(zip(batch, outcome.records, strict=False)):
                if i in outcome.retry and again:
                    continue
                records[sample] = record
                todo.remove(sample)
                if i not in outcome.retry:
                    store.append(sample)

    # -- one HTTP exchange (with n completions), retried --------------------------------------
    async def _exchange(
        self,
        state: _LoopState,
        spec: ModelSpec,
        messages: list[dict[str, Any]],
        params: dict[str, Any],
        n: int,
    ) -> answers.Outcome:
        body: dict[str, Any] = {"model": spec.id, "messages": messages, **params}
        if n > 1:
            body["n"] = n
        payload = orjson.dumps(body)
        max_tokens = int(params.get("max_tokens") or 0)
        try:  # the common case, without tenacity's per-call cost
            return await self._send(state, spec, payload, n, max_tokens)
        except ProviderError as first:
            if not first.retryable:
                raise
            return await self._retry(first, state, spec, payload, n, max_tokens)

    async def _retry(
        self,
        first: ProviderError,
        state: _LoopState,
        spec: ModelSpec,
        payload: bytes,
        n: int,
        max_tokens: int,
    ) -> answers.Outcome:
        """Retry with tenacity; attempt 1 replays ``first`` so backoff and Retry-After apply as usual."""
        replay: list[ProviderError] = [first]
        retrying = AsyncRetrying(
            retry=retry_if_exception(_is_retryable),
            wait=wait_retry_after(self.backoff, self.jitter),
            stop=stop_after_attempt(self.provider.max_retries + 1)
            | stop_after_delay(self.provider.max_retry_time_s),
            sleep=self.sleep,
            reraise=True,
            before_sleep=self._count_retry,
        )
        async for attempt in retrying:
            with attempt:
                if replay:
                    raise replay.pop()
                return await self._send(state, spec, payload, n, max_tokens)
        raise AssertionError("unreachable: tenacity either returns or re-raises")

    def _count_retry(self, retry_state: RetryCallState) -> None:
        self.stats.retries += 1

    async def _send(
        self, state: _LoopState, spec: ModelSpec, payload: bytes, n: int, max_tokens: int
    ) -> answers.Outcome:
        if self._fatal is not None:
            raise self._fatal
        limiter = state.limiters[spec.id]
        tokens = len(payload) // 4 + max_tokens * n  # what the tokens-per-minute bucket is charged first
        async with state.semaphore, limiter.slot(tokens):
            if n > 1 and spec.id in self._no_n:  # refused by an answer that came while this one waited
                raise BadRequestError("the endpoint refuses n > 1", model=spec.id)
            if self._unpriced is not None:
                raise self._unpriced
            ledger = None if spec.is_local else self.budget  # a local model costs nothing
            reserved = 0.0
            if ledger is not None:
                bound = len(payload) // PROMPT_BYTES_PER_TOKEN + max_tokens * n
                reserved = await ledger.reserve(
                    spec.id, bound, n, self._priced(spec, bound, max_tokens, n), self.sleep
                )
                if self._unpriced is not None:  # learnt while this request waited for its reservation
                    ledger.release(reserved)
                    raise self._unpriced
            state.sending += 1
            state.idle.clear()
            settled = False
            try:
                self.stats.requests += 1
                data = await self._post(state, spec, payload, limiter)
                usage = answers.usage_of(data)
                cost = usage.cost
                if cost is None:
                    cost = self._cost(spec, usage)
                if ledger is not None:
                    if cost is None and reserved == 0.0:
                        self._unpriced = ConfigError(
                            f"model {spec.id}: its answers report no cost (usage.cost), so --max-cost cannot "
                            "be kept; set price_in and price_out for it in hfpref.toml"
                        )
                    ledger.settle(reserved, cost, spec.id, usage.tokens, n)
                settled = True
            finally:
                if ledger is not None and not settled:
                    ledger.release(reserved)
                state.sending -= 1
                if state.sending == 0:
                    state.idle.set()
        self.stats.answer(usage.prompt_tokens, usage.completion_tokens, cost)
        limiter.settle(tokens, usage.tokens or tokens)
        outcome = answers.records_of(data, spec.id, n, cost, usage)
        if len(outcome.retry) == len(outcome.records):  # nothing usable: another attempt, after backoff
            raise EmptyAnswerError(outcome.records[0]["error"], model=spec.id, records=outcome.records)
        return outcome

    async def _post(
        self, state: _LoopState, spec: ModelSpec, payload: bytes, limiter: ModelLimiter
    ) -> dict[str, Any]:
        """One request to the endpoint (or the in-process model): the answer's JSON, with choices."""
        if spec.is_local:  # in-process transformers: answers in the same shape as an endpoint's
            from hfpref.wire.local import local_chat

            data = await local_chat(spec.id.removeprefix("local:"), orjson.loads(payload))
            limiter.on_success()
            return data
        url = self._urls[spec.id]
        endpoint = self._endpoints[url]
        try:
            with _map_transport_errors(spec.id):
                async with state.session.post(url, data=payload, headers=self._headers[spec.id]) as resp:
                    raw = await resp.read()
                    status, headers = resp.status, resp.headers
        except _Refused as exc:
            self._check_reachable(url, endpoint, exc)
            raise
        endpoint.answered = True
        endpoint.refused_since = None
        if status >= 400:
            error = provider_error(status, headers, raw, spec.id)
            if status == 429:
                limiter.on_rate_limited(error.retry_after)
            raise error
        data = answers.parse_body(raw, spec.id)
        if not isinstance(data, dict) or not isinstance(data.get("choices"), list) or not data["choices"]:
            if isinstance(data, dict) and "error" in data:
                error = provider_error(error_status_from_body(data), headers, raw, spec.id)
                if error.status == 429:
                    limiter.on_rate_limited(error.retry_after)
                raise error
            raise MalformedResponseError(f"answer has no choices: {raw[:80]!r}", model=spec.id)
        limiter.on_success()
        return data

    def _check_reachable(self, url: str, endpoint: _Endpoint, exc: _Refused) -> None:
        """Give up on an endpoint that never answered once its connections were refused for a while."""
        if endpoint.answered:
            return
        now = self._now()
        if endpoint.refused_since is None:
            endpoint.refused_since = now
        elif now - endpoint.refused_since >= UNREACHABLE_AFTER_S:
            reason = str(exc).split(": ", 1)[-1]
            raise EndpointUnreachable(
                f"{url}: {reason} for {now - endpoint.refused_since:.0f} s and never answered; "
                "is the server running, and is base_url right?",
                model=exc.model,
            )

    @staticmethod
    def _priced(spec: ModelSpec, prompt_tokens: int, max_tokens: int, n: int) -> float | None:
        """The most a request can cost at the configured prices (None without them)."""
        if spec.price_in is None or spec.price_out is None:
            return None
        return (prompt_tokens * spec.price_in + max_tokens * n * spec.price_out) / 1e6

    @staticmethod
    def _cost(spec: ModelSpec, usage: answers.Usage) -> float | None:
        """An answer's cost at the configured prices, when the provider reported none."""
        if None in (spec.price_in, spec.price_out, usage.prompt_tokens, usage.completion_tokens):
            return None
        return (usage.prompt_tokens * spec.price_in + usage.completion_tokens * spec.price_out) / 1e6  # type: ignore[operator]
