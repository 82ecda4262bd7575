"""The Ray Data engine: a stage mapped over a Ray cluster's actors, with the job's limits held cluster-wide.

``ray`` is imported only when the engine is used (``pip install 'hfpref[ray]'``); importing this module
imports no Ray. Two ways in:

* :func:`map_stage`, the CLI's ``--engine ray``: it has the signature of
  :func:`hfpref.stages.batching.map_stage`, so the CLI's jobs take it as their mapper. The dataset's
  rows, with their row number in a column of their own, become Ray blocks of one stage batch each;
  ``map_batches`` runs :class:`~hfpref.engines.ray_stage.StageActor` on a pool of actors; the driver
  takes the blocks as they are done, sorts them by row number and joins them to the input: the same
  rows, in the same order, as the single-machine map. It prints one summary line for the job.
* :func:`map_batches`, for users who hold a ``ray.data.Dataset``: ``map_batches(ray_ds, gen)`` is
  ``ray_ds.map_batches(StageActor, ...)`` with the stage's columns added to each batch.

Either way the job's actors (:class:`~hfpref.engines.ray_stage.Services`) hold ``concurrency``, per-model
rpm/tpm and 429 pauses (:mod:`hfpref.engines.ray_limits`) and keep the request cache and the ``max_cost``
ledger on the driver's node (:mod:`hfpref.engines.ray_driver`). Ray Data retries the blocks of an actor
lost with its node (its actors restart, ``max_restarts=-1``, and their tasks are retried,
``max_task_retries=-1``: Ray Data's defaults for an actor pool); answers already received are in the cache.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
import time
import warnings
from collections.abc import Iterator
from typing import Any

import pyarrow as pa

from hfpref.engines.ray_limits import Permits
from hfpref.engines.ray_stage import ROW, Services, StageActor, raise_failure, stage_parts
from hfpref.errors import ConfigError

BATCHES_PER_ACTOR = 16  # batches in flight per actor: a straggling request holds its batch, not the actor
INSTALL = "pip install 'hfpref[ray]'"
BATCH_SIZE = 256
ACTORS_START_S = 600  # the actor pool's start (an autoscaler may add nodes for it)

__all__ = ["StageActor", "connect", "map_batches", "map_stage", "permits_actor"]


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
    # Ray's C++ parts log to the driver's stderr at ERROR what is no error of the job (Ray Data puts every
    # actor pool's constructor arguments in the object store, and says so per actor); a user's own
    # setting wins, and the actors' logs stay in Ray's session folder.
    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
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


def quiet(ray: Any) -> None:
    """Ray Data's progress bars and start-of-execution lines off (the engine shows its own progress), and
    the actor pool started in full before any block is handed out, each block to the least busy actor
    (else the first actor up, or the one nearest the blocks, takes ``BATCHES_PER_ACTOR`` of them while
    the others idle)."""
    context = ray.data.DataContext.get_current()
    context.wait_for_min_actors_s = ACTORS_START_S
    # blocks to the least busy actor, wherever its node: an actor's work is waiting on the network (Ray
    # 2.60 calls the setting deprecated, and honours it: without it one actor takes most blocks)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        context.execution_options.actor_locality_enabled = False
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    context.enable_auto_log_stats = False
    logging.getLogger("ray.data").setLevel(logging.ERROR)


@contextlib.contextmanager
def _starting(ray: Any) -> Iterator[None]:
    try:
        yield
    except ray.exceptions.GetTimeoutError as exc:  # Ray Data's one line, as ours
        raise ConfigError(
            f"--engine ray: the actors did not start in {ACTORS_START_S} s: {exc}; is the cluster big "
            "enough for them (one CPU each)?"
        ) from None


def permits_actor(limit: int) -> Any:
    """A new :class:`~hfpref.engines.ray_limits.Permits` actor on this driver's node (no CPU)."""
    from hfpref.engines.ray_driver import on_driver_node

    import_ray()
    return on_driver_node(Permits, limit)


def _pool(ray: Any, actors: int | None, blocks: int) -> Any:
    if actors is None:
        actors = max(1, int(ray.cluster_resources().get("CPU", 1)))
    return ray.data.ActorPoolStrategy(
        size=max(1, min(actors, blocks)),
        max_tasks_in_flight_per_actor=BATCHES_PER_ACTOR,
        max_concurrent_calls_per_actor=BATCHES_PER_ACTOR,
    )


def map_stage(
    ds: Any,
    stage: Any,
    concurrency: int,
    batch_size: int,
    *,
    num_proc: int | None = None,
    actors: int | None = None,
    desc: str | None = None,
    **_: Any,  # saved, writer_batch_size: the local map's options
) -> Any:
    """``stage`` over ``ds`` on Ray: the rows the single-machine map returns, in the same order."""
    from datasets import Dataset, concatenate_datasets
    from tqdm.auto import tqdm

    if num_proc:
        raise ConfigError("--engine ray runs the stage on Ray's actors: drop --num-proc")
    stage_parts(stage)
    ray = connect()
    quiet(ray)
    table = ds.with_format("arrow")[:]
    table = table.append_column(ROW, pa.array(range(table.num_rows), pa.int64()))
    blocks = [table.slice(a, batch_size) for a in range(0, table.num_rows, batch_size)] or [table]
    started = time.monotonic()
    services = Services.start(stage, concurrency)
    try:
        mapped = ray.data.from_arrow(blocks).map_batches(
            StageActor,
            fn_constructor_kwargs={"stage": stage, "services": services, "rows": True},
            batch_format="pyarrow",
            batch_size=batch_size,
            compute=_pool(ray, actors, len(blocks)),
            num_cpus=1,
            zero_copy_batch=True,
        )
        parts = []
        with (
            _starting(ray),
            tqdm(total=table.num_rows, desc=desc, unit="row", disable=None, file=sys.stderr) as bar,
        ):
            # blocks as they are done: the driver holds every finished row, whatever node is lost later
            for part in mapped.iter_batches(batch_size=None, batch_format="pyarrow", prefetch_batches=0):
                raise_failure(part)  # the first failing block stops the job, as the local map does
                parts.append(part)
                bar.update(part.num_rows)
        for line in services.summary(started):
            print(line, file=sys.stderr)
    finally:
        services.stop()
    result = pa.concat_tables([part for part in parts if part.num_rows]).sort_by(ROW)
    if result.num_rows != table.num_rows or result.column(ROW).to_pylist() != list(range(table.num_rows)):
        raise RuntimeError(f"Ray returned {result.num_rows} rows for {table.num_rows}")
    new = Dataset(result.drop_columns([ROW]))
    kept = ds.remove_columns([name for name in new.column_names if name in ds.column_names])
    return concatenate_datasets([kept, new], axis=1)


def map_batches(
    ray_ds: Any,
    stage: Any,
    *,
    concurrency: int | None = None,
    actors: int | None = None,
    batch_size: int = BATCH_SIZE,
    **map_batches_args: Any,
) -> Any:
    """``ray_ds.map_batches`` with a Generator or Judge: a lazy ``ray.data.Dataset`` whose batches have the
    stage's columns added, on a pool of up to ``actors`` (default: the cluster's CPUs) holding ``concurrency``
    (default: the stage's) requests in flight for the whole cluster. Other keyword arguments go to
    ``map_batches`` (``num_cpus``, ``num_gpus``, ``resources``...)."""
    _, _ = stage_parts(stage)
    ray = connect()
    if concurrency is None:
        concurrency = stage.spec.config.concurrency
    services = Services.start(stage, concurrency)
    if actors is None:
        actors = max(1, int(ray.cluster_resources().get("CPU", 1)))
    options: dict[str, Any] = {"num_cpus": 1, **map_batches_args}
    return ray_ds.map_batches(
        StageActor,
        fn_constructor_kwargs={"stage": stage, "services": services},
        batch_format="pyarrow",
        batch_size=batch_size,
        # from one actor up to ``actors``: Ray Data scales the pool within what the cluster has left (the
        # read before it, the next stage's pool after it)
        compute=ray.data.ActorPoolStrategy(
            min_size=1,
            max_size=actors,
            max_tasks_in_flight_per_actor=BATCHES_PER_ACTOR,
            max_concurrent_calls_per_actor=BATCHES_PER_ACTOR,
        ),
        **options,
    )
