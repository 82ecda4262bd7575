"""Per-model admission control, used as ``async with limiter.slot(tokens):``, and how long a retry waits
(:class:`wait_retry_after`, tenacity's wait strategy for the client).

A :class:`ModelLimiter` combines three things for one model on one event loop:

* an adaptive concurrency cap (AIMD): a 429 halves the number of requests the model may have in
  flight, every success raises it again by ``1/cap`` up to the configured ceiling;
* token buckets for requests per minute and tokens per minute (``rpm``/``tpm``), refilled
  continuously, never bursting more than one second's worth of requests;
* a pause: after a 429 with ``Retry-After`` no request of that model is sent until it has passed;
  each request waiting on the pause waits up to ``PAUSE_JITTER`` of it longer, drawn at random, so
  that the waiters do not all return in one burst.

The clock, the sleep function and the jitter source are injectable so that tests control time instead
of sleeping.
"""

from __future__ import annotations

import asyncio
import collections
import random
import time
from collections.abc import Awaitable, Callable
from types import TracebackType

from tenacity import RetryCallState
from tenacity.wait import wait_base

from hfpref.errors import ProviderError

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]
PAUSE_JITTER = 0.2


class _Bucket:
    def __init__(self, per_minute: float, capacity: float, now: float) -> None:
        self.rate = per_minute / 60.0
        self.capacity = capacity
        self.level = capacity
        self.stamp = now

    def refill(self, now: float) -> None:
        self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
        self.stamp = now

    def wait_for(self, amount: float) -> float:
        """Seconds until ``min(amount, capacity)`` is available (0 when it is now)."""
        need = min(amount, self.capacity)
        return 0.0 if self.level >= need else (need - self.level) / self.rate


class ModelLimiter:
    """Concurrency cap, rpm/tpm buckets and 429 pauses for one model on one event loop."""

    def __init__(
        self,
        max_concurrency: int,
        rpm: float | None = None,
        tpm: float | None = None,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.max_concurrency = max_concurrency
        self.cap = float(max_concurrency)
        self.in_flight = 0
        self.clock = clock
        self.sleep = sleep
        self.jitter = jitter
        now = clock()
        self._requests = _Bucket(rpm, max(1.0, rpm / 60.0), now) if rpm else None
        self._tokens = _Bucket(tpm, max(1.0, tpm / 60.0), now) if tpm else None
        self._paused_until = 0.0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    def slot(self, tokens: int = 0) -> _Slot:
        """Hold one request slot; ``tokens`` is the request's estimated token count for ``tpm``."""
        return _Slot(self, tokens)

    async def _enter(self) -> None:
        if self.in_flight < int(self.cap) and not self._waiters:
            self.in_flight += 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter  # _wake() hands the slot over: in_flight already counts us
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._leave()
            elif waiter in self._waiters:
                self._waiters.remove(waiter)
            raise

    def _leave(self) -> None:
        self.in_flight -= 1
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self.in_flight < int(self.cap):
            waiter = self._waiters.popleft()
            if not waiter.done():
                self.in_flight += 1
                waiter.set_result(None)

    async def _admit(self, tokens: int) -> None:
        if self._requests is None and self._tokens is None and self._paused_until == 0.0:
            return
        while True:
            now = self.clock()
            paused = self._paused_until - now
            wait = paused
            if self._requests is not None:
                self._requests.refill(now)
                wait = max(wait, self._requests.wait_for(1))
            if self._tokens is not None:
                self._tokens.refill(now)
                wait = max(wait, self._tokens.wait_for(tokens))
            if wait <= 0:
                if self._requests is not None:
                    self._requests.level -= 1
                if self._tokens is not None:
                    self._tokens.level -= tokens
                return
            if wait == paused:  # the 429 pause, not a bucket, holds this request: spread the returns
                wait += paused * PAUSE_JITTER * self.jitter()
            await self.sleep(wait)

    def settle(self, estimated: int, actual: int) -> None:
        """Correct the token bucket once the real token count of a request is known."""
        if self._tokens is not None:
            self._tokens.level += estimated - actual

    def on_success(self) -> None:
        if self.cap < self.max_concurrency:
            self.cap = min(float(self.max_concurrency), self.cap + 1.0 / self.cap)
            self._wake()

    def on_rate_limited(self, retry_after: float | None) -> None:
        """A 429: halve the concurrency cap and pause the model for ``retry_after`` seconds."""
        self.cap = max(1.0, min(self.cap, float(self.in_flight)) / 2.0)
        if retry_after:
            self._paused_until = max(self._paused_until, self.clock() + retry_after)


class _Slot:
    """``async with limiter.slot(tokens):`` (a plain class: this runs once per request)."""

    __slots__ = ("limiter", "tokens")

    def __init__(self, limiter: ModelLimiter, tokens: int) -> None:
        self.limiter = limiter
        self.tokens = tokens

    async def __aenter__(self) -> None:
        limiter = self.limiter
        if limiter.in_flight < int(limiter.cap) and not limiter._waiters:
            limiter.in_flight += 1  # a free slot (the common case): taken without a coroutine
        else:
            await limiter._enter()
        if limiter._requests is None and limiter._tokens is None and limiter._paused_until == 0.0:
            return  # no rpm/tpm and never paused: nothing to wait for
        try:
            await limiter._admit(self.tokens)
        except BaseException:
            limiter._leave()
            raise

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.limiter._leave()


class Backlog:
    """How many prompts may be in progress on one event loop: batches are admitted in arrival order
    while fewer than ``limit`` admitted prompts are unfinished (a batch is never split).

    ``datasets.map`` starts every batch of a shard at once (up to 1000); without this, each would
    build its requests and queue them on the semaphore together, holding the whole shard in memory.
    With it, work in progress stays near ``limit`` (twice the concurrency keeps the semaphore full).
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open = 0
        self._waiters: collections.deque[tuple[int, asyncio.Future[None]]] = collections.deque()

    def batch(self, size: int) -> Admission:
        """``async with backlog.batch(n) as admitted:`` waits for the batch's turn; call
        ``admitted.done()`` per finished prompt; leaving releases the rest (exactly once)."""
        return Admission(self, size)

    async def admit(self, size: int) -> None:
        """Wait until a batch of ``size`` prompts may start; :meth:`release` each prompt when done."""
        if not self._waiters and self.open < self.limit:
            self.open += size
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (size, waiter)
        self._waiters.append(entry)
        try:
            await waiter  # _wake() admitted us: open already counts our size
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release(size)
            elif entry in self._waiters:
                self._waiters.remove(entry)
            raise

    def release(self, count: int = 1) -> None:
        self.open -= count
        while self._waiters and self.open < self.limit:
            size, waiter = self._waiters.popleft()
            if not waiter.done():
                self.open += size
                waiter.set_result(None)


class Admission:
    """One admitted batch of a :class:`Backlog`: a prompt released twice is released once."""

    def __init__(self, backlog: Backlog, size: int) -> None:
        self.backlog = backlog
        self.left = size

    async def __aenter__(self) -> Admission:
        await self.backlog.admit(self.left)
        return self

    def done(self) -> None:
        """One prompt finished; after the ``async with`` block (a sibling row failed) a no-op."""
        if self.left > 0:
            self.left -= 1
            self.backlog.release()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        left, self.left = self.left, 0
        self.backlog.release(left)


# -- how long a retry waits (tenacity's wait strategy for the client) ---------------------------
MAX_RETRY_AFTER_S = 600.0
RETRY_AFTER_JITTER = 0.2  # a Retry-After wait is stretched by up to this share, so waiters spread out


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


def is_retryable(exc: BaseException) -> bool:
    """What tenacity retries: the provider errors another attempt may mend."""
    return isinstance(exc, ProviderError) and exc.retryable
