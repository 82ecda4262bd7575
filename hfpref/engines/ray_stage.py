"""A stage in Ray Data's actors: the job's coordinating actors (:class:`Services`) and the callable class
that ``map_batches`` runs (:class:`StageActor`).

:meth:`Services.start` (on the driver) starts the actors that make a job's limits and state the
cluster's: the :class:`~hfpref.engines.ray_limits.Permits` actor, and on the driver's node the request
cache, the ``max_cost`` ledger and the tally (:mod:`hfpref.engines.ray_driver`). Each
:class:`StageActor` installs them under its process's clients (:func:`hfpref.stages.base.set_client_hooks`)
and, after each batch, waits until the batch's answers and spend are recorded on the driver's node before
it hands the batch back: a block that Ray retries after a node is lost finds its answers in the cache.
"""

from __future__ import annotations

import pickle
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from hfpref.config import ModelSpec, ProviderConfig, cache_root
from hfpref.engines.ray_driver import (
    CacheServer,
    LedgerServer,
    RemoteCache,
    RemoteLedger,
    Tally,
    TallyStats,
    counters_delta,
    on_driver_node,
    summary_stats,
)
from hfpref.engines.ray_limits import Permits, PermitTransport, node_id
from hfpref.errors import ConfigError, HfprefError
from hfpref.stages.base import Access, ClientHooks, Stage, set_client_hooks
from hfpref.wire.transport import HTTPTransport, Transport

ROW = "__hfpref_row"  # the input row number of each row the CLI's engine sends
ERROR = "__hfpref_error"  # a block of the CLI's engine whose stage failed: the pickled HfprefError


def raise_failure(part: pa.Table) -> None:
    """A block of the CLI's engine that carries its stage's failure: raise it here, on the driver."""
    if ERROR not in part.column_names:
        return
    data = part.column(ERROR)[0].as_py()
    try:
        failure = pickle.loads(data)
    except (TypeError, pickle.UnpicklingError):  # an error class whose arguments do not round-trip
        failure = HfprefError("a stage failed on Ray: its error could not be read back")
    raise failure


def stage_parts(stage: Any) -> tuple[Access, list[ModelSpec]]:
    """A Generator's or Judge's access and models; anything else, or the Batch API, is a ConfigError."""
    spec = getattr(stage, "spec", None) if isinstance(stage, Stage) else None
    access, config = getattr(spec, "access", None), getattr(spec, "config", None)
    if not isinstance(access, Access) or config is None:
        raise ConfigError(f"the Ray engine maps a hfpref.Generator or hfpref.Judge, got {stage!r:.80}")
    if getattr(config, "batch_api", False):
        raise ConfigError(
            "--engine ray does not run the Batch API (a batch needs no cluster): drop --batch-api"
        )
    return access, list(config.models)


@dataclass
class Services:
    """The job's coordinating actors, handed to every :class:`StageActor` (picklable: actor handles)."""

    permits: Any
    rated: frozenset[str]  # models with rpm/tpm: admitted one by one by the permits actor
    cache: Any | None  # CacheServer, None with the cache off
    cache_path: Path | None
    ledger: Any | None  # LedgerServer, None without max_cost
    tally: Any

    @classmethod
    def start(cls, stage: Any, concurrency: int) -> Services:
        """The actors of one stage's map, on this driver's node."""
        access, models = stage_parts(stage)
        root = Path(access.cache_dir).expanduser() if access.cache_dir else cache_root()
        root = root.resolve()
        cache_path = root / "requests.sqlite" if access.use_cache else None
        ledger = None
        if access.max_cost is not None:
            job = access.budget_id or access.run_id
            ledger = on_driver_node(LedgerServer, access.max_cost, str(root / "budget.sqlite"), job)
        return cls(
            permits=on_driver_node(Permits, concurrency, models),
            rated=frozenset(spec.id for spec in models if spec.rpm or spec.tpm),
            cache=on_driver_node(CacheServer, str(cache_path)) if cache_path else None,
            cache_path=cache_path,
            ledger=ledger,
            tally=on_driver_node(Tally),
        )

    def install(self) -> Local:
        """In a stage actor's process: its new clients use these actors (:class:`Local` keeps track)."""
        local = Local(self)
        set_client_hooks(
            ClientHooks(
                transport=local.transport,
                cache=local.cache if self.cache is not None else None,
                ledger=local.ledger if self.ledger is not None else None,
                stats=local.stats,
            )
        )
        return local

    def summary(self, started: float) -> list[str]:
        """The job's summary line per stage label (what one machine's map prints at its end)."""
        import ray

        totals = ray.get(self.tally.get.remote())
        return [summary_stats(label, counts, started).summary() for label, counts in totals.items()]

    def stop(self) -> None:
        import ray

        for actor in (self.permits, self.cache, self.ledger, self.tally):
            if actor is not None:
                ray.kill(actor)


class Local:
    """A stage actor's side of the :class:`Services`: the clients' hooks, and what they sent."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.holder = node_id()
        self.remotes: list[RemoteCache | RemoteLedger] = []
        self.stats_of: list[TallyStats] = []
        self.reported: dict[int, dict[str, float]] = {}

    def transport(self, provider: ProviderConfig, concurrency: int) -> Transport:
        return PermitTransport(
            self.services.permits, HTTPTransport(provider, concurrency), self.services.rated
        )

    def cache(self, path: Path) -> RemoteCache:  # the driver's file, whatever this node calls it
        remote = RemoteCache(self.services.cache, self.services.cache_path or path)
        self.remotes.append(remote)
        return remote

    def ledger(self, limit_usd: float, path: Path, job: str) -> RemoteLedger:
        remote = RemoteLedger(self.services.ledger, limit_usd, job, self.holder)
        self.remotes.append(remote)
        return remote

    def stats(self, label: str) -> TallyStats:
        stats = TallyStats(label)
        self.stats_of.append(stats)
        return stats

    async def settle(self) -> None:
        """Wait until what the clients sent is recorded on the driver's node; send the counters' news."""
        for remote in self.remotes:
            await remote.drain()
        for stats in self.stats_of:
            now = stats.counters()
            delta = counters_delta(now, self.reported.get(id(stats), {}))
            if delta:  # counted before the block is handed back: the driver's summary has it
                self.reported[id(stats)] = now
                await self.services.tally.add.remote(stats.label, delta)


class StageActor:
    """One Ray Data actor: maps batches with the stage, on the actor's event loop.

    ``rows``: the batches carry their row numbers in column :data:`ROW` (the CLI's engine), and only the
    row numbers and the new columns come back; else the batch comes back with the new columns added."""

    def __init__(self, stage: Any, services: Services, rows: bool = False) -> None:
        self.stage, self.rows = stage, rows
        self.local = services.install()
        self.started = time.monotonic()

    async def __call__(self, table: pa.Table) -> pa.Table:
        if self.rows:
            rows = table.column(ROW).to_pylist()
            try:
                out = await self.stage(table.drop_columns([ROW]).to_pydict(), rows)
            except HfprefError as exc:  # Ray Data would hand the driver its own error, without this one
                await self.local.settle()
                return pa.table({ERROR: pa.array([pickle.dumps(exc)], pa.binary())})
            kept = pa.table({ROW: pa.array(rows, pa.int64())})
        else:
            out = await self.stage(table.to_pydict())
            kept = table.drop_columns([name for name in out if name in table.column_names])
        await self.local.settle()
        for name, values in out.items():
            kept = kept.append_column(name, pa.array(values))
        return kept
