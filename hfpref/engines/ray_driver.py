"""What the Ray engine keeps on the driver's node: the request cache, the ``max_cost`` ledger, the tally.

The request cache and the budget ledger stay SQLite files on the driver's disk, as on one machine; the
stage actors on the other nodes reach them through actors pinned to the driver's node:

* :class:`CacheServer` owns the :class:`~hfpref.wire.cache.RequestCache`; each stage actor's client
  holds a :class:`RemoteCache` with the same methods. A batch's lookups are one call; its answers are
  sent in the event-loop turn they arrive in (as ``put_soon`` commits them on one machine), so a worker
  node that dies costs only the requests it had in flight, and a retried block finds the rest again;
* :class:`LedgerServer` owns the :class:`~hfpref.wire.budget.Ledger`; a :class:`RemoteLedger` reserves,
  settles and releases through it, so ``max_cost`` holds for the whole cluster (one request's cost
  above the cap at most, as on one machine). Reservations are counted per node, and those of a node that
  died are released (its requests' answers never came);
* :class:`Tally` adds up the counters of every actor's :class:`TallyStats`: the driver prints one
  summary line for the job.

No shared filesystem is needed, and a killed driver takes these actors with it: its rerun finds the
cache and ledger files where a single-machine rerun would.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from hfpref.engines.ray_limits import SWEEP_S, alive_nodes
from hfpref.errors import BudgetExhausted
from hfpref.wire.budget import Ledger, Sleep
from hfpref.wire.cache import RequestCache
from hfpref.wire.progress import Stats

#: the Stats counters summed over the actors (the rest of Stats is the driver's own)
COUNTERS = (
    "requests",
    "completions",
    "cached",
    "failed",
    "retries",
    "prompt_tokens",
    "completion_tokens",
    "cost_usd",
    "unknown_cost",
)


def on_driver_node(cls: type, *args: Any) -> Any:
    """A new actor of ``cls`` (no CPU, async) on the node of this driver."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    return ray.remote(num_cpus=0, max_concurrency=100_000, scheduling_strategy=here)(cls).remote(*args)


class CacheServer:
    """A Ray async actor owning the job's request cache file (its methods run one at a time, on the
    actor's event loop)."""

    def __init__(self, path: str) -> None:
        self.cache = RequestCache(Path(path))

    async def get_many(self, keys: list[str]) -> dict[str, dict[str, Any]]:
        return self.cache.get_many(keys)

    async def put(self, items: list[tuple[str, dict[str, Any]]]) -> None:
        """Save ``items`` now: on disk (as a process's own answers are) before the call returns."""
        self.cache.put_soon(items)
        self.cache.flush()


class RemoteCache:
    """A stage actor's request cache: RequestCache's methods, through a :class:`CacheServer`."""

    def __init__(self, server: Any, path: Path) -> None:
        self.server, self.path = server, path
        self._pending: list[tuple[str, dict[str, Any]]] = []
        self._sent: list[Any] = []  # ObjectRefs of puts not yet known to be committed
        self._send_soon: asyncio.Handle | None = None

    def get(self, key: str) -> dict[str, Any] | None:
        return self.get_many([key]).get(key)

    def get_many(self, keys: list[str]) -> dict[str, dict[str, Any]]:
        import ray

        return ray.get(self.server.get_many.remote(keys)) if keys else {}

    def put_soon(self, items: list[tuple[str, dict[str, Any]]]) -> None:
        """Send ``items`` at the end of this event-loop turn, with the other answers of the turn."""
        if not items:
            return
        self._pending.extend(items)
        if self._send_soon is None:
            self._send_soon = asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        """Send what :meth:`put_soon` holds (:meth:`drain` waits until it is committed)."""
        if self._send_soon is not None:
            self._send_soon.cancel()
            self._send_soon = None
        items, self._pending = self._pending, []
        if items:
            self._sent.append(self.server.put.remote(items))

    def merge(self) -> None:
        """A map's work on this loop is done: what it holds is sent (the server saves it on arrival)."""
        self.flush()

    async def drain(self) -> None:
        """Wait until every answer sent so far is saved on the driver's disk."""
        self.flush()
        sent, self._sent = self._sent, []
        for ref in sent:
            await ref

    def close(self) -> None:
        import ray

        self.flush()
        ray.get(self._sent)
        self._sent = []


class LedgerServer:
    """A Ray async actor owning the job's ``max_cost`` ledger (the budget file on the driver's disk)."""

    def __init__(self, limit_usd: float, path: str, job: str) -> None:
        self.ledger = Ledger(limit_usd, Path(path), job)
        self.open: dict[str, list[float]] = {}  # node id -> reservations not settled or released yet
        self._swept = time.monotonic()

    async def reserve(
        self, model: str, tokens: int, completions: int, priced: float | None, holder: str
    ) -> tuple[float | None, str]:
        """(the reservation, "") or (None, why the cap refuses)."""
        if time.monotonic() - self._swept >= SWEEP_S:
            self._sweep()
        try:
            reserved = await self.ledger.reserve(model, tokens, completions, priced, asyncio.sleep)
        except BudgetExhausted as exc:  # sent back as a value: the caller raises its own
            return None, str(exc)
        self.open.setdefault(holder, []).append(reserved)
        return reserved, ""

    def _close(self, holder: str, reserved: float) -> bool:
        held = self.open.get(holder, [])
        if reserved not in held:
            return False  # its node was swept as dead: released already
        held.remove(reserved)
        return True

    async def settle(
        self,
        reserved: float,
        cost: float | None,
        model: str,
        tokens: int | None,
        completions: int,
        holder: str,
    ) -> None:
        self._close(holder, reserved)  # a late answer from a swept node is still paid for
        self.ledger.settle(reserved, cost, model, tokens, completions)

    async def release(self, reserved: float, holder: str) -> None:
        if self._close(holder, reserved):
            self.ledger.release(reserved)

    def _sweep(self) -> None:
        """Release the reservations held on nodes that died (their answers will never come)."""
        self._swept = time.monotonic()
        alive = alive_nodes()
        for holder in [h for h in self.open if h and h not in alive]:
            for reserved in self.open.pop(holder):
                self.ledger.release(reserved)

    async def totals(self) -> tuple[float, int]:
        return self.ledger.spent(), self.ledger.refused()


class RemoteLedger:
    """A stage actor's ``max_cost`` ledger: Ledger's methods, through a :class:`LedgerServer`."""

    def __init__(self, server: Any, limit_usd: float, job: str, holder: str) -> None:
        self.server, self.limit_usd, self.job, self.holder = server, limit_usd, job, holder
        self._sent: list[Any] = []

    async def reserve(
        self, model: str, tokens: int, completions: int, priced: float | None, sleep: Sleep
    ) -> float:
        reserved, refusal = await self.server.reserve.remote(model, tokens, completions, priced, self.holder)
        if reserved is None:
            spent, _ = await self.server.totals.remote()
            raise BudgetExhausted(refusal, spent=spent, limit=self.limit_usd)
        return float(reserved)

    def settle(
        self, reserved: float, cost: float | None, model: str, tokens: int | None, completions: int
    ) -> None:
        self._sent.append(self.server.settle.remote(reserved, cost, model, tokens, completions, self.holder))

    def release(self, reserved: float) -> None:
        self._sent.append(self.server.release.remote(reserved, self.holder))

    def spent(self) -> float:
        import ray

        return float(ray.get(self.server.totals.remote())[0])

    def refused(self) -> int:
        import ray

        return int(ray.get(self.server.totals.remote())[1])

    async def drain(self) -> None:
        """Wait until every settle and release sent so far is in the ledger."""
        sent, self._sent = self._sent, []
        for ref in sent:
            await ref


class TallyStats(Stats):
    """A stage actor's counters: no bar and no summary of its own (the driver prints the job's)."""

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def counters(self) -> dict[str, float]:
        return {name: getattr(self, name) for name in COUNTERS}


class Tally:
    """A Ray actor summing the counters that the stage actors send after each block, per stage label."""

    def __init__(self) -> None:
        self.totals: dict[str, dict[str, float]] = {}

    async def add(self, label: str, delta: dict[str, float]) -> None:
        totals = self.totals.setdefault(label, dict.fromkeys(COUNTERS, 0))
        for name, value in delta.items():
            totals[name] += value

    async def get(self) -> dict[str, dict[str, float]]:
        return self.totals


def summary_stats(label: str, totals: dict[str, float], started: float) -> Stats:
    """A Stats of the driver holding the job's counters (``summary()`` is the job's line)."""
    stats = Stats(label, started=started)
    for name, value in totals.items():
        setattr(stats, name, type(getattr(stats, name))(value))
    return stats


def counters_delta(now: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {name: now[name] - before.get(name, 0) for name in now if now[name] != before.get(name, 0)}
