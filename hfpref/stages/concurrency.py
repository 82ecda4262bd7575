"""How the stages' coroutines end inside ``datasets.map``: together, and none left behind.

datasets' async map runs each batch as a task on an event loop of its own. When one batch fails,
its clean-up cancels the other batches and runs the loop only until the first failure is seen, then
never again. Whatever was still unwinding then is stranded: it never finishes, and when the garbage
collector meets it, asyncio prints "Task was destroyed but it is pending!" or "Task exception was
never retrieved" below the one-line error the user was shown. Two rules keep a stopped map clean:

* :func:`gather_all`, within a batch: the first failure cancels the sibling coroutines and waits for
  them to end before it is raised (``asyncio.gather`` would return with them still running);
* :func:`map_call`, across the batches of one map on a loop (the calls with the same first argument:
  a stage's spec, ``run``'s gate): the first batch to fail cancels the others, and a batch that leaves
  with an exception waits until none of them is running any more, so that all end in the same loop
  iteration and datasets finds every task done. A batch cancelled because
  another failed raises that failure: whichever task datasets looks at, the user sees the same error.
"""

from __future__ import annotations

import asyncio
import functools
import weakref
from collections.abc import Callable, Coroutine
from contextvars import ContextVar
from typing import Any, ParamSpec, TypeVar

T = TypeVar("T")
P = ParamSpec("P")

#: Set inside a map call: a stage called by another map call (``run``'s parts) is part of it.
_IN_MAP_CALL: ContextVar[bool] = ContextVar("hfpref_in_map_call", default=False)


class _MapCalls:
    """The running calls of one map function on one event loop, and the first failure among them."""

    def __init__(self, loop: asyncio.AbstractEventLoop, key: int) -> None:
        self.loop, self.key = loop, key
        self.running: set[asyncio.Task[Any]] = set()
        self.failure: BaseException | None = None
        self.settled = asyncio.Event()

    @classmethod
    def of(cls, key: object) -> _MapCalls:
        loop = asyncio.get_running_loop()
        groups = _CALLS.setdefault(loop, {})
        calls = groups.get(id(key))
        if calls is None:
            calls = groups[id(key)] = cls(loop, id(key))
        return calls

    def fail(self, task: asyncio.Task[Any], exc: BaseException) -> None:
        """The first failure stops every other call."""
        if self.failure is None and not isinstance(exc, asyncio.CancelledError):
            self.failure = exc
            for other in self.running - {task}:
                other.cancel()

    def leave(self, task: asyncio.Task[Any]) -> None:
        self.running.discard(task)
        if not self.running:
            self.settled.set()
            groups = _CALLS.get(self.loop, {})
            if groups.get(self.key) is self:  # the next map of the function starts afresh
                del groups[self.key]

    async def settle(self) -> None:
        """Wait for the other calls to end; datasets' clean-up cancelling us does not cut it short."""
        while not self.settled.is_set():
            try:
                await self.settled.wait()
            except asyncio.CancelledError:
                continue


#: Per event loop: the id of a map function's first argument -> its running calls.
_CALLS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[int, _MapCalls]] = (
    weakref.WeakKeyDictionary()
)


def map_call(function: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, Coroutine[Any, Any, T]]:
    """Make the calls of an ``async def`` map function on a loop end as one (see above); calls
    with another first argument (another stage object, a user's own concurrent map) are not
    touched."""

    @functools.wraps(function)
    async def call(*args: P.args, **kwargs: P.kwargs) -> T:
        if _IN_MAP_CALL.get():
            return await function(*args, **kwargs)
        calls = _MapCalls.of(args[0])
        if calls.failure is not None:
            raise calls.failure
        task = asyncio.current_task()
        assert task is not None  # datasets runs each call as a task
        calls.running.add(task)
        token = _IN_MAP_CALL.set(True)
        try:
            return await function(*args, **kwargs)
        except BaseException as exc:
            calls.fail(task, exc)
            calls.leave(task)
            await calls.settle()
            if isinstance(exc, asyncio.CancelledError) and calls.failure is not None:
                raise calls.failure from None
            raise
        finally:
            _IN_MAP_CALL.reset(token)
            calls.leave(task)

    return call
