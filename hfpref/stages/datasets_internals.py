"""The one place where hfpref uses ``datasets`` beyond its documented API.

Each function below says what hfpref needs, why no public API gives it, and what it touches;
``tests/test_datasets_internals.py`` checks every one of them against the installed datasets and
fails, naming the use, when a release changes it (pyproject pins the tested range, ``datasets>=5.2,<5.3``).
Everything else in hfpref goes through datasets' public API: ``hfpref/repo`` cannot import this
module (the layers), and writes its parquet with pyarrow's public writer.

Behaviours of datasets that hfpref builds on without touching anything private are tested there
too: a ``functools.partial`` of an ``async def`` is mapped with the async map (the stage objects,
``hfpref.stages.base``), a column object with ``__arrow_array__`` keeps its Arrow type when map writes
it (``TypedColumn``), and the async map keeps at most :func:`async_map_window` calls in flight.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa
    from datasets import Dataset


def async_map_window() -> int:
    """How many calls datasets' async map keeps in flight at once (1000 in datasets 5.2).

    ``datasets.config.MAX_NUM_RUNNING_ASYNC_MAP_FUNCTIONS_IN_PARALLEL``, read at each call as datasets
    reads it: a map call of that many batches or more holds the results of the last ones until it
    ends, so ``hfpref.stages.batching`` groups stage batches to stay below it. No public API states it.
    """
    from datasets import config

    return int(config.MAX_NUM_RUNNING_ASYNC_MAP_FUNCTIONS_IN_PARALLEL)


@dataclass(frozen=True)
class MappedFile:
    """The one Arrow file a dataset reads, and the changes datasets replays on its table."""

    path: str
    replays: list[Any]

    def replay(self, table: pa.Table) -> pa.Table:
        """``table`` (the file's) with the recorded changes (renamed or removed columns, casts) applied
        by datasets' own code (``MemoryMappedTable._apply_replays``), so that it is the table datasets
        gives for the dataset."""
        from datasets.table import MemoryMappedTable

        return MemoryMappedTable._apply_replays(table, self.replays)


def mapped_file(ds: Dataset) -> MappedFile | None:
    """The Arrow file behind ``ds`` when ``ds`` is exactly that file's rows (a ``map`` result, a loaded
    dataset, with columns renamed, removed or cast), else None (in memory, concatenated, or with an
    indices mapping: ``select``, ``shuffle``).

    ``hfpref.stages.io.arrow_pages`` maps the file again to hand its pages back to the kernel after each
    pass (datasets' own map of it keeps every page read in the RSS). The public API names the cache
    files (``Dataset.cache_files``) but neither whether an indices mapping reorders the rows
    (``Dataset._indices``) nor the changes recorded on the table (``MemoryMappedTable.replays``).
    """
    from datasets.table import MemoryMappedTable

    data = ds.data
    if isinstance(data, MemoryMappedTable) and ds._indices is None:
        return MappedFile(data.path, data.replays)
    return None


def dataset_from_table(table: pa.Table) -> Dataset:
    """An in-memory ``Dataset`` of ``table``, zero-copy, under a random fingerprint.

    ``Dataset(table)`` would fingerprint it by hashing its state, which pickles every buffer of the
    table: a copy of the whole table and more time than building it. The fingerprint is 16 random
    hex digits, the form of datasets' own random fingerprints. ``InMemoryTable`` is the table class
    datasets wraps a pyarrow table in (documented among its "Table Classes", not re-exported).
    """
    from datasets import Dataset
    from datasets.table import InMemoryTable

    return Dataset(InMemoryTable(table), fingerprint=secrets.token_hex(8))


def hub_settings() -> tuple[bool, str]:
    """(offline, endpoint): the ``HF_HUB_OFFLINE`` and ``HF_ENDPOINT`` that datasets read when it was
    imported, which are those its failed load used (``datasets.config``; huggingface_hub's copies may
    be set otherwise). ``hfpref.stages.io`` says from them why the Hub could not be reached, as
    datasets raises a bare ``ConnectionError`` for either."""
    from datasets import config

    return bool(config.HF_HUB_OFFLINE), str(config.HF_ENDPOINT)


def empty_dataset_error() -> type[Exception]:
    """The error ``load_dataset`` raises for a repo or folder without data files it can read
    (``datasets.data_files.EmptyDatasetError``, exported nowhere public; it subclasses
    ``FileNotFoundError``, which is too wide to catch in its place)."""
    from datasets.data_files import EmptyDatasetError

    return EmptyDatasetError
