"""One event loop's hold on a :class:`~hfpref.wire.client.ChatClient`: ``async with client.open() as session``.

``datasets.map`` runs every call on a new event loop, and a semaphore, a limiter or a future made on
one loop fails on the next; so what must not cross loops lives in a :class:`Session`, opened by the
first caller on a loop and closed when the last one leaves. A caller uses ``session.backlog`` to
queue its batch (``async with session.backlog.batch(len(prompts)) as admitted``) and passes the
session to :meth:`~hfpref.wire.client.ChatClient.complete`; the other attributes are the client's.
"""

from __future__ import annotations

import asyncio
from typing import Any

from hfpref.wire.ratelimit import Backlog, ModelLimiter


class Session:
    """What one event loop holds of a client: the backlog of batches, the global semaphore, one
    limiter per model, and the requests in flight by cache key."""

    def __init__(self, concurrency: int, limiters: dict[str, ModelLimiter]) -> None:
        self.backlog = Backlog(2 * concurrency)  # twice the concurrency keeps the semaphore full
        self.semaphore = asyncio.Semaphore(concurrency)
        self.limiters = limiters
        self.users = 0  # open() calls on this loop not yet left
        # cache key -> the requests in flight: the same prompt twice in a dataset waits for the first
        # request's answer instead of paying for a second (not with --no-cache). The future is made
        # only when a second caller asks (None until then): most requests are never waited for twice.
        self.pending: dict[str, asyncio.Future[dict[str, Any]] | None] = {}
        self._sending = 0  # requests between their budget reservation and their answer
        self._idle = asyncio.Event()
        self._idle.set()

    def own(self, keys: list[str]) -> None:
        """Announce the requests about to be sent, by cache key (:meth:`settle` each when it ends)."""
        for key in keys:
            self.pending[key] = None

    def waiter(self, key: str) -> asyncio.Future[dict[str, Any]]:
        """The future of the answer to the request in flight for ``key`` (made by the first to wait)."""
        future = self.pending[key]
        if future is None:
            future = self.pending[key] = asyncio.get_running_loop().create_future()
        return future

    def settle(self, key: str, record: dict[str, Any] | None) -> None:
        """The request for ``key`` ended: its waiters get ``record``, or (None: it raised) send their own."""
        future = self.pending.pop(key, None)
        if future is not None:
            if record is not None:
                future.set_result(record)
            else:
                future.cancel()

    def sending(self) -> None:
        """A request has reserved its budget and is about to be sent."""
        self._sending += 1
        self._idle.clear()

    def sent(self) -> None:
        """That request's answer came back (or it failed)."""
        self._sending -= 1
        if self._sending == 0:
            self._idle.set()

    async def quiet(self) -> None:
        """Wait until every request of this loop that was sent has its answer (and is cached)."""
        await self._idle.wait()
