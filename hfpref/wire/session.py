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
        # cache key -> the answer of a request in flight for it: the same prompt twice in a dataset
        # waits for the first request's answer instead of paying for a second (not with --no-cache)
        self.pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._sending = 0  # requests between their budget reservation and their answer
        self._idle = asyncio.Event()
        self._idle.set()

    def own(self, keys: dict[int, str]) -> dict[int, asyncio.Future[dict[str, Any]]]:
        """Announce the requests about to be sent (sample -> cache key): sample -> the future of its answer."""
        loop = asyncio.get_running_loop()
        owned = {sample: loop.create_future() for sample in keys}
        for sample, key in keys.items():
            self.pending[key] = owned[sample]
        return owned

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
