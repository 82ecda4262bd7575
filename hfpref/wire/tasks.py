"""Awaiting several coroutines so that none outlives a failure (used by the client and the stages)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


async def gather_all(*aws: Awaitable[T], in_order: bool = False) -> list[T]:
    """``asyncio.gather`` that leaves nothing running: the first failure (or our cancellation)
    cancels the others and waits for them to end before it is raised as itself (not wrapped in an
    ExceptionGroup as by ``TaskGroup``, so callers and the CLI see the provider's error).
    ``in_order``: the failure raised is that of the first failing awaitable in argument order (a
    stable row in the message), at the cost of noticing it only once those before it are done.
    """
    tasks = [asyncio.ensure_future(aw) for aw in aws]
    try:
        if in_order:
            return [await task for task in tasks]
        return await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
