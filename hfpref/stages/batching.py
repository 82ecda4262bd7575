"""How the CLI's jobs map a stage over a dataset: a gate per map call, stage batches grouped per map batch.

``datasets``' async map starts up to :func:`~hfpref.stages.datasets_internals.async_map_window` batches
(1000) at once, and a map call of that many batches or more keeps the results of its last ones until it
ends. :func:`map_stage` therefore lets the stage's batches in through a :class:`Gate` and, for a large
dataset, hands the stage several of its batches per map batch (:func:`in_parts`): the same rows, record
batches and files as one map batch per stage batch, and a failing row is still named by its row in the
input.
"""

from __future__ import annotations

import asyncio
import functools
import math
from collections.abc import Iterator, Mapping
from typing import Any

from hfpref.stages.base import join_columns
from hfpref.stages.concurrency import map_call
from hfpref.stages.datasets_internals import async_map_window
from hfpref.stages.io import release_arrow_memory
from hfpref.wire.tasks import gather_all

GATE_ROWS = 4096  # rows let into a stage at once (or 16 per request of concurrency, if more)
RUN_MAP_ROWS = 1024  # rows per map batch of `run`'s own (unsaved) datasets


class Gate:
    """Lets at most ``limit`` batches into a stage at once (one gate per ``map`` call).

    ``datasets``' async map starts up to 1000 batches together, and each would read its rows and build
    its requests before the client's backlog admits it: at 100k rows, the whole dataset. Behind the
    gate they wait unread. A batch leaves the gate with its last row, so the gate holds ``GATE_ROWS``
    rows, at least 16 per request of concurrency: the backlog (2 per request) stays full even while
    most batches in the stage wait for one straggling request (a retry, a timeout).
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._semaphore: asyncio.Semaphore | None = None

    @classmethod
    def for_stage(cls, concurrency: int, batch_size: int) -> Gate:
        return cls(math.ceil(max(GATE_ROWS, 16 * concurrency) / batch_size))

    def __reduce__(self) -> tuple[Any, ...]:  # pickled (num_proc, datasets' fingerprint) by its limit
        return (Gate, (self.limit,))

    def semaphore(self) -> asyncio.Semaphore:
        if self._semaphore is None:
            self._semaphore = asyncio.Semaphore(self.limit)
        return self._semaphore


class _Part(Mapping[str, Any]):
    """Rows ``start:stop`` of a map batch; a column is read (from the batch) when the stage reads it."""

    def __init__(self, batch: Mapping[str, Any], start: int, stop: int) -> None:
        self.batch, self.start, self.stop = batch, start, stop

    def __getitem__(self, key: str) -> Any:
        return self.batch[key][self.start : self.stop]

    def __contains__(self, key: object) -> bool:
        return key in self.batch

    def __iter__(self) -> Iterator[str]:
        return iter(self.batch)

    def __len__(self) -> int:
        return len(self.batch)


async def _gated(stage: Any, gate: Gate, batch: Mapping[str, Any], indices: list[int]) -> dict[str, Any]:
    async with gate.semaphore():
        return await stage(batch, indices)


@map_call
async def in_parts(
    stage: Any, gate: Gate, size: int, batch: Mapping[str, Any], indices: list[int]
) -> dict[str, Any]:
    """The stage on each ``size``-row part of a map batch (each through the gate), results joined; the
    first failing part (in row order) raises, the others are cancelled."""
    if len(indices) <= size:
        return await _gated(stage, gate, batch, indices)
    results = await gather_all(
        *(
            _gated(stage, gate, _Part(batch, a, a + size), indices[a : a + size])
            for a in range(0, len(indices), size)
        ),
        in_order=True,
    )
    return join_columns(results)


def map_stage(
    ds: Any, stage: Any, concurrency: int, batch_size: int, *, saved: bool = True, **options: Any
) -> Any:
    """``ds.map(stage)`` in stage batches of ``batch_size`` rows through a :class:`Gate`; errors name
    rows by their index in ``ds``.

    A map call of 1000 batches or more (:func:`~hfpref.stages.datasets_internals.async_map_window`) keeps
    the results of its last 1000 until it ends (datasets' last ``asyncio.wait`` holds their tasks), so a
    map batch holds as many stage batches as it takes to stay below. A ``saved`` result (generate,
    judge) is written in stage-batch record batches, as one map batch per stage batch writes it; ``run``'s
    own datasets take ``RUN_MAP_ROWS`` rows per map batch in datasets' default record batches: fewer
    tasks and record batches to hold.
    """
    per_map = math.ceil(len(ds) / ((async_map_window() - 1) * batch_size))
    if saved:
        options["writer_batch_size"] = batch_size
    else:
        per_map = max(per_map, RUN_MAP_ROWS // batch_size)
    out = ds.map(
        functools.partial(in_parts, stage, Gate.for_stage(concurrency, batch_size), batch_size),
        batched=True,
        with_indices=True,
        batch_size=batch_size * max(1, per_map),
        load_from_cache_file=False,
        **options,
    )
    release_arrow_memory()  # what writing the batches freed
    return out
