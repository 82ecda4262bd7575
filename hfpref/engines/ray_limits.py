"""The Ray engine's limits for the whole cluster: requests in flight, per-model rpm/tpm and 429 pauses.

One :class:`Permits` actor (on the driver's node, no CPU) holds them for a job:

* ``concurrency`` permits: a request is sent only with one, so the endpoint never sees more than
  ``concurrency`` requests at once from the whole job. Each actor process has one acquire call (for all
  its waiting requests) and one release call (for all the permits freed meanwhile) under way at a time
  (:class:`PermitPool`), so the calls grow larger, not more numerous, as the rate grows.
  Permits are counted per node: those held on a node that has died are taken back (looked for when a
  request has waited ``SWEEP_S`` for one), so a lost worker costs its requests in flight, never the job's concurrency.
* a :class:`~hfpref.wire.ratelimit.ModelLimiter` per model with ``rpm``/``tpm``: each request of such a
  model is admitted by the actor, so the buckets are the cluster's, not one per actor;
* the 429 pauses: a 429 anywhere pauses its model everywhere for its ``Retry-After`` (``PAUSE_S`` without
  one). The pauses ride back with every grant of permits; a process waits them out before it sends.

Each actor's client sends through a :class:`PermitTransport` (installed by the engine's client hooks);
the client's own per-process limiter still halves its concurrency on a 429 (AIMD), as on one machine.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from typing import Any

import orjson

from hfpref.config import ModelSpec
from hfpref.errors import RateLimitError
from hfpref.wire.answers import usage_of
from hfpref.wire.ratelimit import PAUSE_JITTER, ModelLimiter
from hfpref.wire.transport import Request, Transport

SWEEP_S = 1.0  # how often the Permits actor looks for dead nodes holding permits
PAUSE_S = 1.0  # the cluster-wide pause after a 429 that names no Retry-After


def node_id() -> str:
    """This process's Ray node (the holder of its permits)."""
    import ray

    return str(ray.get_runtime_context().get_node_id())


def alive_nodes() -> set[str]:
    """The ids of the cluster's live nodes."""
    import ray

    return {str(node["NodeID"]) for node in ray.nodes() if node["Alive"]}


class Permits:
    """A Ray async actor: the job's in-flight permits, per-model rate buckets and 429 pauses."""

    def __init__(self, limit: int, models: list[ModelSpec] | None = None) -> None:
        self.limit = limit
        self.free = limit
        self._changed = asyncio.Condition()
        self.held: dict[str, int] = {}  # node id -> permits held there
        self.granted = self.calls = self.max_held = self.reclaimed = 0
        self.limiters = {
            spec.id: ModelLimiter(1 << 30, spec.rpm, spec.tpm)
            for spec in models or []
            if spec.rpm or spec.tpm
        }
        self.paused_until: dict[str, float] = {}  # model -> time.monotonic() here

    async def acquire(self, n: int = 1, holder: str = "") -> tuple[int, dict[str, float]]:
        """Wait for a free permit, take up to ``n``; with them, the models paused now (seconds left).
        A wait of ``SWEEP_S`` looks for dead nodes holding permits, and takes theirs back."""
        async with self._changed:
            while self.free <= 0:
                try:
                    await asyncio.wait_for(self._changed.wait(), SWEEP_S)
                except TimeoutError:
                    self._sweep()
            got = min(n, self.free)
            self.free -= got
            self.held[holder] = self.held.get(holder, 0) + got
            self.granted += got
            self.calls += 1
            self.max_held = max(self.max_held, self.limit - self.free)
        return got, self.pauses()

    async def release(self, n: int = 1, holder: str = "") -> None:
        async with self._changed:
            n = min(n, self.held.get(holder, 0))  # a node swept as dead gave its permits back already
            if not n:
                return
            self.held[holder] -= n
            self.free += n
            self._changed.notify(n)

    def pauses(self) -> dict[str, float]:
        now = time.monotonic()
        return {model: until - now for model, until in self.paused_until.items() if until > now}

    async def pause(self, model: str, retry_after: float | None) -> None:
        """A 429 for ``model``: every process waits ``retry_after`` (or ``PAUSE_S``) before its next one."""
        wait = retry_after if retry_after else PAUSE_S
        self.paused_until[model] = max(self.paused_until.get(model, 0.0), time.monotonic() + wait)
        limiter = self.limiters.get(model)
        if limiter is not None:
            limiter.on_rate_limited(wait)

    async def admit(self, model: str, tokens: int) -> None:
        """Wait for ``model``'s rpm/tpm buckets (cluster-wide) to let one request of ``tokens`` through."""
        async with self.limiters[model].slot(tokens):
            pass

    async def settle(self, model: str, estimated: int, actual: int) -> None:
        self.limiters[model].settle(estimated, actual)

    def _sweep(self) -> None:
        """Take back the permits held on nodes that died (their requests will never end); under the lock."""
        alive = alive_nodes()
        for holder in [h for h in self.held if h and h not in alive]:
            lost = self.held.pop(holder)
            self.reclaimed += lost
            self.free += lost
            self._changed.notify(lost)

    async def stats(self) -> dict[str, int]:
        return {
            "limit": self.limit,
            "granted": self.granted,
            "calls": self.calls,
            "held": self.limit - self.free,
            "max_held": self.max_held,
            "reclaimed": self.reclaimed,
        }


class PermitPool:
    """One process's (one event loop's) side of the :class:`Permits` actor: the requests waiting here
    are asked for in one call, and the permits given back in one call; one acquire and one release call
    at a time, so each carries what gathered while the last was under way. A permit is never kept after
    its request: every one goes back to the actor, which shares them out."""

    def __init__(self, permits: Any, holder: str) -> None:
        self.permits, self.holder = permits, holder
        self.waiters: deque[asyncio.Future[None]] = deque()
        self.asking: asyncio.Future[None] | None = None  # the acquire call under way
        self.releasing: asyncio.Future[None] | None = None  # the release calls under way
        self.returning = 0
        self.paused_until: dict[str, float] = {}  # model -> this loop's time

    async def acquire(self) -> None:
        waiter = asyncio.get_running_loop().create_future()
        self.waiters.append(waiter)
        self._ask()
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():  # granted, then cancelled: give it back
                self.release()
            raise

    def paused(self, model: str) -> float:
        """Seconds ``model`` stays paused by a 429 somewhere in the cluster, as last heard."""
        return self.paused_until.get(model, 0.0) - asyncio.get_running_loop().time()

    def _ask(self) -> None:
        while self.waiters and self.waiters[0].done():
            self.waiters.popleft()
        if self.asking is None and self.waiters:
            self.asking = asyncio.ensure_future(self._take(len(self.waiters)))

    async def _take(self, n: int) -> None:
        try:
            got, pauses = await self.permits.acquire.remote(n, self.holder)
        except Exception as exc:  # the actor is gone (a RayActorError): every waiter fails with it
            self.asking = None
            while self.waiters:
                waiter = self.waiters.popleft()
                if not waiter.done():
                    waiter.set_exception(exc)
            return
        self.asking = None
        now = asyncio.get_running_loop().time()
        self.paused_until = {model: now + left for model, left in pauses.items()}
        while got and self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                got -= 1
        if got:
            self.release(got)
        self._ask()

    def release(self, n: int = 1) -> None:
        """Give ``n`` permits back: those of this loop turn in one call, and while a call is under way
        the next ones wait for it (one call in flight per process, as for acquiring): however many
        answers arrive, a process sends the actor no more calls than it can answer."""
        self.returning += n
        if self.releasing is None:
            self.releasing = asyncio.ensure_future(self._give_back())

    async def _give_back(self) -> None:
        from ray.exceptions import RayError

        try:
            while self.returning:
                n, self.returning = self.returning, 0
                await self.permits.release.remote(n, self.holder)
        except RayError:  # the actor is gone: the next acquire fails with it, and says why
            pass
        finally:
            self.releasing = None


class PermitTransport:
    """``inner`` behind a permit of the cluster's :class:`Permits` actor (held from before the request is
    sent until its answer or failure is back), after the model's cluster-wide 429 pause and, for a model
    with rpm/tpm (``rated``), the actor's admission."""

    def __init__(self, permits: Any, inner: Transport, rated: frozenset[str] = frozenset()) -> None:
        self.permits, self.inner, self.rated = permits, inner, rated
        self._pools: dict[asyncio.AbstractEventLoop, PermitPool] = {}
        self._holder = node_id() if permits is not None else ""

    def _pool(self) -> PermitPool:
        loop = asyncio.get_running_loop()
        pool = self._pools.get(loop)
        if pool is None:
            pool = self._pools[loop] = PermitPool(self.permits, self._holder)
        return pool

    async def send(self, request: Request) -> dict[str, Any]:
        pool = self._pool()
        while True:
            wait = pool.paused(request.model)
            if wait > 0:  # spread the returns, as the client's own pause does
                await asyncio.sleep(wait * (1.0 + PAUSE_JITTER * random.random()))
            await pool.acquire()
            if pool.paused(request.model) <= 0:
                break
            pool.release()  # a pause was heard while this request waited for its permit
        try:
            tokens = 0
            if request.model in self.rated:
                tokens = estimate_tokens(request.body)
                await self.permits.admit.remote(request.model, tokens)
            try:
                data = await self.inner.send(request)
            except RateLimitError as exc:
                self.permits.pause.remote(request.model, exc.retry_after)
                raise
            if request.model in self.rated:
                used = usage_of(data).tokens
                self.permits.settle.remote(request.model, tokens, used if used is not None else tokens)
            return data
        finally:
            pool.release()

    async def aclose(self) -> None:
        self._pools.pop(asyncio.get_running_loop(), None)
        await self.inner.aclose()


def estimate_tokens(body: bytes) -> int:
    """A request's tokens as the client's tpm bucket first charges them: body bytes / 4 + max_tokens × n."""
    parsed = orjson.loads(body)
    return len(body) // 4 + int(parsed.get("max_tokens") or 0) * int(parsed.get("n") or 1)
