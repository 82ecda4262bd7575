"""The Ray Data engine: a stage mapped over a Ray cluster's actors, with a cluster-wide in-flight limit.

``ray`` is imported only when the engine is used (``pip install 'hfpref[ray]'``). :func:`map_stage` has
the signature of :func:`hfpref.stages.batching.map_stage`, so the CLI's jobs take it as their mapper:

* the dataset's rows, with their row number in a column of their own (:data:`ROW`), become Ray blocks
  of one stage batch each (``ray.data.from_arrow``);
* ``map_batches`` runs :class:`StageActor` on a pool of actors; its async ``__call__`` awaits the stage
  (a Generator or Judge: an async function of a batch dict) on the actor's event loop, and returns the
  new columns with the row numbers;
* the driver sorts the results by row number and joins them to the input: the same rows, in the same
  order, as the single-machine map.

Every actor's client sends through a :class:`PermitTransport`: HTTP behind one permit of the
:class:`Permits` actor, a semaphore of ``concurrency``, so the endpoint never sees more than
``concurrency`` requests in flight from the whole job. The wire knows nothing of it: the transport is
installed with :func:`hfpref.stages.base.set_transport_factory` in each actor's process.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections import deque
from typing import Any

import pyarrow as pa

from hfpref.config import ProviderConfig
from hfpref.errors import ConfigError
from hfpref.stages.base import set_transport_factory
from hfpref.wire.transport import HTTPTransport, Request, Transport

ROW = "__hfpref_row"
BATCHES_PER_ACTOR = 16
INSTALL = "pip install 'hfpref[ray]'"


def import_ray() -> Any:
    """``ray`` with ``ray.data``, or one line saying how to install it."""
    try:
        import ray
        import ray.data
    except ImportError:
        raise ConfigError(f"--engine ray needs Ray, which is not installed: {INSTALL}") from None
    return ray


def connect(address: str | None = None) -> Any:
    """``ray.init()`` (``RAY_ADDRESS`` when set, else a new local Ray), unless already connected."""
    ray = import_ray()
    if ray.is_initialized():
        return ray
    check_reachable(address or os.environ.get("RAY_ADDRESS"))
    try:
        ray.init(address=address, log_to_driver=False, logging_level="ERROR")
    except Exception as exc:  # Ray raises ConnectionError, RuntimeError, ValueError...
        where = address or os.environ.get("RAY_ADDRESS") or "a new local Ray"
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ConfigError(f"--engine ray: cannot connect to {where}: {reason}") from None
    return ray


def check_reachable(address: str | None, timeout_s: float = 3.0) -> None:
    """A ``host:port`` address that takes no connection fails in one line now (``ray.init`` would retry
    for a minute, printing its own warnings)."""
    if not address or address == "auto" or "://" in address or ":" not in address:
        return
    host, _, port = address.rpartition(":")
    if not port.isdigit():
        return
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise ConfigError(
            f"--engine ray: cannot connect to Ray at {address}: {exc.strerror or exc}"
        ) from None


class Permits:
    """A Ray async actor holding the job's ``limit`` in-flight permits. ``acquire(n)`` waits for one and
    takes up to ``n`` at once (a process asks for all its waiting requests in one call)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.free = limit
        self._changed = asyncio.Condition()
        self.granted = 0
        self.calls = 0
        self.max_held = 0

    async def acquire(self, n: int = 1) -> int:
        async with self._changed:
            await self._changed.wait_for(lambda: self.free > 0)
            got = min(n, self.free)
            self.free -= got
            self.granted += got
            self.calls += 1
            self.max_held = max(self.max_held, self.limit - self.free)
            return got

    async def release(self, n: int = 1) -> None:
        async with self._changed:
            self.free += n
            self._changed.notify(n)

    async def stats(self) -> dict[str, int]:
        held = self.limit - self.free
        return {
            "limit": self.limit,
            "granted": self.granted,
            "calls": self.calls,
            "held": held,
            "max_held": self.max_held,
        }


def permits_actor(limit: int) -> Any:
    """A new :class:`Permits` actor (no CPU: it may live on a head without any)."""
    ray = import_ray()
    return ray.remote(num_cpus=0, max_concurrency=100_000)(Permits).remote(limit)


class PermitPool:
    """One process's (one event loop's) side of the :class:`Permits` actor: the requests waiting here
    are asked for in one call, and the permits given back in one call per loop iteration. A permit is
    never kept after its request: every one goes back to the actor, which shares them out."""

    def __init__(self, permits: Any) -> None:
        self.permits = permits
        self.waiters: deque[asyncio.Future[None]] = deque()
        self.asking: asyncio.Future[None] | None = None  # the call to the actor under way
        self.returning = 0

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

    def _ask(self) -> None:
        while self.waiters and self.waiters[0].done():
            self.waiters.popleft()
        if self.asking is None and self.waiters:
            self.asking = asyncio.ensure_future(self._take(len(self.waiters)))

    async def _take(self, n: int) -> None:
        try:
            got = await self.permits.acquire.remote(n)
        except Exception as exc:  # the actor is gone: every waiter fails with it
            self.asking = None
            while self.waiters:
                waiter = self.waiters.popleft()
                if not waiter.done():
                    waiter.set_exception(exc)
            return
        self.asking = None
        while got and self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                got -= 1
        if got:
            self.release(got)
        self._ask()

    def release(self, n: int = 1) -> None:
        if not self.returning:
            asyncio.get_running_loop().call_soon(self._flush)
        self.returning += n

    def _flush(self) -> None:
        n, self.returning = self.returning, 0
        self.permits.release.remote(n)


class PermitTransport:
    """``inner`` behind a permit of the cluster's :class:`Permits` actor: held from before the request
    is sent until its answer (or failure) is back."""

    def __init__(self, permits: Any, inner: Transport) -> None:
        self.permits, self.inner = permits, inner
        self._pools: dict[asyncio.AbstractEventLoop, PermitPool] = {}

    async def send(self, request: Request) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        pool = self._pools.get(loop)
        if pool is None:
            pool = self._pools[loop] = PermitPool(self.permits)
        await pool.acquire()
        try:
            return await self.inner.send(request)
        finally:
            pool.release()

    async def aclose(self) -> None:
        self._pools.pop(asyncio.get_running_loop(), None)
        await self.inner.aclose()


class StageActor:
    """One Ray Data actor: maps batches with the stage, on the actor's event loop."""

    def __init__(self, stage: Any, permits: Any) -> None:
        if permits is not None:

            def factory(provider: ProviderConfig, concurrency: int) -> Transport:
                return PermitTransport(permits, HTTPTransport(provider, concurrency))

            set_transport_factory(factory)
        self.stage = stage

    async def __call__(self, table: pa.Table) -> pa.Table:
        rows = table.column(ROW).to_pylist()
        out = await self.stage(table.drop_columns([ROW]).to_pydict(), rows)
        columns = {ROW: pa.array(rows, pa.int64())}
        columns.update({name: pa.array(values) for name, values in out.items()})
        return pa.table(columns)


def map_stage(
    ds: Any,
    stage: Any,
    concurrency: int,
    batch_size: int,
    *,
    num_proc: int | None = None,
    actors: int | None = None,
    permits: Any = None,
    **_: Any,  # saved, desc, writer_batch_size: the local map's options
) -> Any:
    """``stage`` over ``ds`` on Ray: the rows the single-machine map returns, in the same order."""
    from datasets import Dataset, concatenate_datasets

    if num_proc:
        raise ConfigError("--engine ray runs the stage on Ray's actors: drop --num-proc")
    ray = connect()
    table = ds.with_format("arrow")[:]
    table = table.append_column(ROW, pa.array(range(table.num_rows), pa.int64()))
    blocks = [table.slice(a, batch_size) for a in range(0, table.num_rows, batch_size)] or [table]
    if actors is None:
        actors = max(1, int(ray.cluster_resources().get("CPU", 1)))
    actors = max(1, min(actors, len(blocks)))
    permits = permits if permits is not None else permits_actor(concurrency)
    mapped = ray.data.from_arrow(blocks).map_batches(
        StageActor,
        fn_constructor_kwargs={"stage": stage, "permits": permits},
        batch_format="pyarrow",
        batch_size=batch_size,
        # batches in flight per actor, as the local map's gate lets several in: a straggling request
        # holds its batch, not the actor
        compute=ray.data.ActorPoolStrategy(size=actors, max_tasks_in_flight_per_actor=BATCHES_PER_ACTOR),
        num_cpus=1,
        zero_copy_batch=True,
    )
    parts = [part for part in ray.get(mapped.to_arrow_refs()) if part.num_rows]
    result = pa.concat_tables(parts).sort_by(ROW)
    if result.num_rows != table.num_rows or result.column(ROW).to_pylist() != list(range(table.num_rows)):
        raise RuntimeError(f"Ray returned {result.num_rows} rows for {table.num_rows}")
    new = Dataset(result.drop_columns([ROW]))
    kept = ds.remove_columns([name for name in new.column_names if name in ds.column_names])
    return concatenate_datasets([kept, new], axis=1)
