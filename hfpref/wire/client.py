"""Async OpenAI-compatible chat client, shared by generation and judging.

``datasets.map`` runs every call on a new event loop, so a :class:`ChatClient` keeps one global
semaphore and one :class:`~hfpref.wire.ratelimit.ModelLimiter` per model *per loop*, in a
:class:`~hfpref.wire.session.Session` (``async with client.open() as session``) opened on first use
and closed when the last user of that loop leaves. The request cache, the budget ledger and the
statistics live at process level.

Requests go through a transport (:mod:`hfpref.wire.transport`): HTTP to the endpoint, or the
in-process ``local:`` model. Failures are mapped onto :mod:`hfpref.errors` by
:mod:`hfpref.wire.failures`, and the bodies of 200 answers are read by :mod:`hfpref.wire.answers`.
Retryable errors (429, 5xx, timeouts, dropped connections, malformed bodies, empty answers) are
retried by tenacity with jittered exponential backoff, or ``Retry-After`` plus up to 20% jitter when
the provider sends one, for at most ``max_retries`` attempts and ``max_retry_time_s`` seconds; the
rest fail fast, and the first 401/403/404 stops every other request of the client too.

With ``batch_api`` the endpoint models go through :class:`~hfpref.wire.batch.BatchTransport`, and only
what a batch changes differs: no concurrency, rpm or tpm limit (up to ``batch_in_flight`` requests wait in
batches), retries without backoff or ``max_retry_time_s``, prices times ``batch_discount``, ``batch_id``.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt, stop_after_delay
from tenacity.wait import wait_base, wait_random_exponential

from hfpref.config import ModelSpec, ProviderConfig, env_api_key
from hfpref.errors import (
    BadRequestError,
    BudgetExhausted,
    ConfigError,
    EmptyAnswerError,
    ProviderError,
    RateLimitError,
)
from hfpref.wire import answers
from hfpref.wire.batch import BatchAnswer, batch_transport
from hfpref.wire.budget import Ledger
from hfpref.wire.cache import RequestCache, request_key
from hfpref.wire.local import LocalTransport
from hfpref.wire.progress import Stats
from hfpref.wire.ratelimit import Clock, ModelLimiter, Sleep, is_retryable, wait_retry_after
from hfpref.wire.session import Session
from hfpref.wire.tasks import gather_all
from hfpref.wire.transport import HTTPTransport, Request, Transport

PROMPT_BYTES_PER_TOKEN = 3  # a request body's size over this bounds its prompt tokens (for the budget)


@dataclass
class ChatClient:
    """Sends chat completions for one Generator or Judge, with cache, limits, retries and accounting.

    ``budget``: the job's :class:`~hfpref.wire.budget.Ledger` (``max_cost``), or None. When it refuses a
    request, ``budget_nulls`` decides: False raises :class:`~hfpref.errors.BudgetExhausted` once
    every request in flight on the loop has been answered (and cached); True records the completion
    as failed (null) with the reason, so that a caller can keep the finished rows (the CLI).
    ``transport``: what answers the endpoint models (default: :class:`~hfpref.wire.transport.HTTPTransport`);
    ``local:`` models are answered in-process (:class:`~hfpref.wire.local.LocalTransport`).
    ``batch_api``: the endpoint models' requests go through the Batch API (see the module doc).
    """

    provider: ProviderConfig
    models: list[ModelSpec]
    concurrency: int
    cache: RequestCache
    stats: Stats
    budget: Ledger | None = None
    budget_nulls: bool = False
    transport: Transport | None = None
    clock: Clock | None = None
    sleep: Sleep = asyncio.sleep
    jitter: Callable[[], float] = random.random
    backoff: wait_base = field(default_factory=lambda: wait_random_exponential(multiplier=0.5, max=60))
    batch_api: bool = False
    _sessions: dict[asyncio.AbstractEventLoop, Session] = field(default_factory=dict)
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
        # requests that may wait at once: a batch holds many, and its API has no rate limit
        self.in_flight = self.provider.batch_in_flight if self.batch_api else self.concurrency
        self._discount = self.provider.batch_discount if self.batch_api else 1.0
        endpoint = self.transport or self._endpoint_transport()
        local = LocalTransport()
        self._transport_of: dict[str, Transport] = {
            s.id: local if s.is_local else endpoint for s in self.models
        }
        # a local model costs nothing: no budget
        self._ledger_of = {s.id: None if s.is_local else self.budget for s in self.models}
        self._transports = list({id(t): t for t in self._transport_of.values()}.values())
        self._headers: dict[str, dict[str, str]] = {}
        for spec in self.models:
            if spec.is_local:  # no key: the model runs in this process
                self._headers[spec.id] = {}
                continue
            named = self.provider.key_env(spec)
            key = env_api_key(named)
            if named and key is None:
                raise ConfigError(f"model {spec.id}: environment variable {named} is not set")
            self._headers[spec.id] = {"Authorization": f"Bearer {key}"} if key else {}

    def _endpoint_transport(self) -> Transport:
        """HTTP to the endpoint, or its Batch API (with HTTP for the online fallback when asked)."""
        http = HTTPTransport(self.provider, self.concurrency, clock=self.clock or time.monotonic)
        if not self.batch_api:
            return http
        budget = self.budget is not None
        return batch_transport(
            self.provider, self.models, self.stats, self.cache.path, budget, http, self.sleep
        )

    # -- per-loop resources -------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def open(self) -> AsyncIterator[Session]:
        """This loop's :class:`~hfpref.wire.session.Session`, held for one ``map`` call's work."""
        loop = asyncio.get_running_loop()
        session = self._sessions.get(loop)
        if session is None:
            limiter_args = {"clock": self.clock} if self.clock else {}
            limiters = {
                s.id: ModelLimiter(
                    self.in_flight,
                    None if self.batch_api else s.rpm,
                    None if self.batch_api else s.tpm,
                    sleep=self.sleep,
                    jitter=self.jitter,
                    **limiter_args,
                )
                for s in self.models
            }
            session = self._sessions[loop] = Session(self.in_flight, limiters)
        session.users += 1
        try:
            yield session
        finally:
            self.cache.flush()  # this batch's answers are saved before datasets takes its rows
            session.users -= 1
            if session.users == 0:
                self.cache.merge()  # the map's work on this loop is done: other processes see it now
                del self._sessions[loop]
                for transport in self._transports:
                    await transport.aclose()
                self.stats.close()

    # -- public entry point ---------------------------------------------------------------------
    async def complete(
        self,
        session: Session,
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
        why ``text`` is None): see :mod:`hfpref.wire.answers`. ``session``: this loop's, from :meth:`open`.
        ``keys`` (:meth:`keys`) and ``found`` (:meth:`lookup`) let a caller read the cache for a whole
        batch at once.
        """
        if keys is None:
            keys = self.keys(model, messages, params, samples)
        if found is None:
            found = self.cache.get_many(keys)
        # Plain loops, not comprehensions, on this path: on Python 3.11 a comprehension is a function
        # object and a cell per captured variable, and everything a request holds while it waits is
        # promoted to the collector's oldest generation (see benchmarks/README.md, issue 18).
        records: dict[int, dict[str, Any]] = {}
        shared: dict[int, asyncio.Future[dict[str, Any]]] | None = None
        missing: list[int] = []
        missing_keys: list[str] = []
        pending = session.pending
        for key, sample in zip(keys, samples, strict=True):
            hit = found.get(key)
            if hit is not None:  # an answer, or a final failure (a refusal): both are paid for once
                records[sample] = {**answers.EMPTY_RECORD, **hit, "cached": True}
            elif key in pending:
                if shared is None:
                    shared = {}
                shared[sample] = session.waiter(key)
            else:
                missing.append(sample)
                missing_keys.append(key)
        if missing:
            await self._send_missing(session, model, messages, params, missing, missing_keys, records)
        if shared is not None:
            for sample, future in shared.items():
                records[sample] = await self._shared(session, future, model, messages, params, sample)
        out = []
        for sample in samples:
            record = records[sample]
            self.stats.record(record)
            out.append(record)
        return out

    async def _shared(
        self,
        session: Session,
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
            return (await self.complete(session, model, messages, params, [sample]))[0]
        return {**record, "cached": True} if record["error"] is None else record

    async def _send_missing(
        self,
        session: Session,
        model: str,
        messages: list[dict[str, Any]],
        params: dict[str, Any],
        missing: list[int],
        keys: list[str],
        records: dict[int, dict[str, Any]],
    ) -> None:
        """Request ``missing`` samples (cache ``keys``; one request with ``n`` where the model takes it)
        into ``records``; the answers that stand (final failures included) go to the cache. Identical
        requests made meanwhile wait for these (:class:`~hfpref.wire.session.Session`)."""
        spec = self._specs[model]
        store: list[int] = []
        caching = self.cache.path is not None
        if caching:
            session.own(keys)
        try:
            if len(missing) == 1 or (spec.n_param is not False and model not in self._no_n):
                await self._request(session, spec, messages, params, missing, records, store)
            else:
                await gather_all(
                    *[self._request(session, spec, messages, params, [s], records, store) for s in missing]
                )
        finally:
            if caching:  # waiters get the same record (answer or failure); if we raised, send their own
                for sample, key in zip(missing, keys, strict=True):
                    session.settle(key, records.get(sample))
        if store and caching:
            items = []
            for sample, key in zip(missing, keys, strict=True):
                if sample in store:
                    record = dict(records[sample])
                    del record["cached"]
                    items.append((key, record))
            self.cache.put_soon(items)
        if self._unpriced is not None:
            raise self._unpriced

    def keys(
        self, model: str, messages: list[dict[str, Any]], params: dict[str, Any], samples: list[int]
    ) -> list[str]:
        """The cache keys of ``samples`` of one prompt to ``model``."""
        endpoint = self._urls[model]
        keys = []
        for i in samples:
            keys.append(request_key(endpoint, model, messages, params, i))
        return keys

    def lookup(self, keys: list[str]) -> dict[str, dict[str, Any]]:
        """The cached answers among ``keys``, in one read: pass it to :meth:`complete` as ``found``."""
        return self.cache.get_many(keys)

    # -- the requests of one prompt's samples, until each has its record -----------------------
    async def _request(
        self,
        session: Session,
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
            n = len(batch)
            request = self._build(spec, messages, params, n)
            max_tokens = int(params.get("max_tokens") or 0)
            try:
                try:  # the common case, without tenacity's per-call cost
                    outcome = await self._send(session, spec, request, n, max_tokens)
                except ProviderError as first:
                    if not first.retryable:
                        raise
                    outcome = await self._retry(first, session, spec, request, n, max_tokens)
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
                    await session.quiet()  # what is in flight arrives and is cached first
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

    # -- one exchange through the transport (with n completions), retried ---------------------
    def _build(
        self, spec: ModelSpec, messages: list[dict[str, Any]], params: dict[str, Any], n: int
    ) -> Request:
        body: dict[str, Any] = {"model": spec.id, "messages": messages, **params}
        if n > 1:
            body["n"] = n
        return Request(spec.id, self._urls[spec.id], self._headers[spec.id], orjson.dumps(body))

    async def _retry(
        self,
        first: ProviderError,
        session: Session,
        spec: ModelSpec,
        request: Request,
        n: int,
        max_tokens: int,
    ) -> answers.Outcome:
        """Retry with tenacity; attempt 1 replays ``first`` so backoff and Retry-After apply as usual."""
        replay: list[ProviderError] = [first]
        stop = stop_after_attempt(self.provider.max_retries + 1)
        retrying = AsyncRetrying(
            retry=retry_if_exception(is_retryable),
            wait=wait_retry_after(self.backoff, self.jitter),
            # a batch can take a day: only the attempts bound its retries
            stop=stop if self.batch_api else stop | stop_after_delay(self.provider.max_retry_time_s),
            sleep=self.sleep,
            reraise=True,
            before_sleep=self._count_retry,
        )
        async for attempt in retrying:
            with attempt:
                if replay:
                    raise replay.pop()
                return await self._send(session, spec, request, n, max_tokens)
        raise AssertionError("unreachable: tenacity either returns or re-raises")

    def _count_retry(self, retry_state: RetryCallState) -> None:
        self.stats.retries += 1

    async def _send(
        self, session: Session, spec: ModelSpec, request: Request, n: int, max_tokens: int
    ) -> answers.Outcome:
        if self._fatal is not None:
            raise self._fatal
        limiter = session.limiters[spec.id]
        tokens = len(request.body) // 4 + max_tokens * n  # what the tokens-per-minute bucket is charged first
        async with session.semaphore, limiter.slot(tokens):
            if n > 1 and spec.id in self._no_n:  # refused by an answer that came while this one waited
                raise BadRequestError("the endpoint refuses n > 1", model=spec.id)
            if self._unpriced is not None:
                raise self._unpriced
            ledger = self._ledger_of[spec.id]
            reserved = 0.0
            if ledger is not None:
                prompt_bound = len(request.body) // PROMPT_BYTES_PER_TOKEN
                bound = prompt_bound + max_tokens * n
                priced = self._priced(spec, prompt_bound, max_tokens, n)
                reserved = await ledger.reserve(
                    spec.id, bound, n, None if priced is None else priced * self._discount, self.sleep
                )
                if self._unpriced is not None:  # learnt while this request waited for its reservation
                    ledger.release(reserved)
                    raise self._unpriced
            session.sending()
            settled = False
            try:
                self.stats.requests += 1
                try:
                    data = await self._transport_of[spec.id].send(request)
                except RateLimitError as exc:
                    if not self.batch_api:  # a batch line's 429 says nothing of the collection's pace
                        limiter.on_rate_limited(exc.retry_after)
                    raise
                limiter.on_success()
                batch_id = data.batch_id if isinstance(data, BatchAnswer) else None
                usage = answers.usage_of(data)
                cost = usage.cost
                if cost is None:
                    cost = self._cost(spec, usage, self._discount if batch_id else 1.0)
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
                session.sent()
        self.stats.answer(usage.prompt_tokens, usage.completion_tokens, cost)
        limiter.settle(tokens, usage.tokens or tokens)
        outcome = answers.records_of(data, spec.id, n, cost, usage, batch_id)
        if len(outcome.retry) == len(outcome.records):  # nothing usable: another attempt, after backoff
            empty = EmptyAnswerError(outcome.records[0]["error"], model=spec.id, records=outcome.records)
            empty.retry_after = 0.0 if batch_id else None  # a batch's: the next batch is the wait
            raise empty
        return outcome

    @staticmethod
    def _priced(spec: ModelSpec, prompt_tokens: int, max_tokens: int, n: int) -> float | None:
        """The most a request can cost at the configured prices (None without them)."""
        if spec.price_in is None or spec.price_out is None:
            return None
        return (prompt_tokens * spec.price_in + max_tokens * n * spec.price_out) / 1e6

    @staticmethod
    def _cost(spec: ModelSpec, usage: answers.Usage, discount: float) -> float | None:
        """An answer's cost at the configured prices (times ``discount``: a batch's), when the provider
        reported none."""
        if None in (spec.price_in, spec.price_out, usage.prompt_tokens, usage.completion_tokens):
            return None
        full = (usage.prompt_tokens * spec.price_in + usage.completion_tokens * spec.price_out) / 1e6  # type: ignore[operator]
        return full * discount
