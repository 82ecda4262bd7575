"""What hfpref relies on in datasets beyond its documented API (hfpref.stages.datasets_internals).

Each test checks one use against the installed datasets and says, when it fails, what changed and what
in hfpref depends on it: read the message before raising the pinned range of datasets in pyproject.
"""

from __future__ import annotations

import asyncio
import functools
import re
from pathlib import Path
from typing import Any

import datasets
import pyarrow as pa
import pytest
from datasets import Dataset, Value, concatenate_datasets

from hfpref.repo.folder import CDC_OPTIONS
from hfpref.stages import datasets_internals as internals
from hfpref.stages.base import TypedColumn


def on_disk(ds: Dataset, path: Path) -> Dataset:
    """``ds`` as a ``map`` result: one memory-mapped Arrow file."""
    return ds.map(lambda batch: batch, batched=True, cache_file_name=str(path))


# --- the async map's window -------------------------------------------------------------------------------

IN_FLIGHT = {"now": 0, "most": 0}


async def one_at_a_time(batch: dict[str, list[Any]], pause: float) -> dict[str, list[Any]]:
    IN_FLIGHT["now"] += 1
    IN_FLIGHT["most"] = max(IN_FLIGHT["most"], IN_FLIGHT["now"])
    await asyncio.sleep(pause)
    IN_FLIGHT["now"] -= 1
    return {"y": [2 * x for x in batch["x"]]}


def test_the_async_map_keeps_at_most_the_window_in_flight(monkeypatch: pytest.MonkeyPatch) -> None:
    assert isinstance(datasets.config.MAX_NUM_RUNNING_ASYNC_MAP_FUNCTIONS_IN_PARALLEL, int), (
        "datasets.config.MAX_NUM_RUNNING_ASYNC_MAP_FUNCTIONS_IN_PARALLEL is gone: "
        "hfpref.stages.batching.map_stage sizes its map batches by it (async_map_window)"
    )
    assert internals.async_map_window() == datasets.config.MAX_NUM_RUNNING_ASYNC_MAP_FUNCTIONS_IN_PARALLEL
    monkeypatch.setattr(datasets.config, "MAX_NUM_RUNNING_ASYNC_MAP_FUNCTIONS_IN_PARALLEL", 3)
    assert internals.async_map_window() == 3  # read at each call, as datasets reads it
    IN_FLIGHT["most"] = 0
    # a partial of an async def is mapped with the async map: what makes the stage objects work
    stage = functools.partial(one_at_a_time, pause=0.01)
    out = Dataset.from_dict({"x": list(range(12))}).map(stage, batched=True, batch_size=1)
    assert out["y"] == [2 * x for x in range(12)]
    assert IN_FLIGHT["most"] == 3, "datasets' async map no longer keeps its window of calls in flight"


# --- the Arrow file behind a dataset ----------------------------------------------------------------------


def test_a_mapped_dataset_names_its_file_and_the_changes_to_replay(tmp_path: Path) -> None:
    ds = on_disk(
        Dataset.from_dict({"a": [1, 2, 3], "b": ["x", "y", "z"], "c": [0.5, 1.0, 0.0]}), tmp_path / "d.arrow"
    )
    versions = {
        "map result": ds,
        "renamed": ds.rename_column("a", "id"),
        "removed": ds.remove_columns("c"),
        "selected": ds.select_columns(["c", "b"]),
        "cast": ds.cast_column("a", Value("float64")),
    }
    for what, version in versions.items():
        source = internals.mapped_file(version)
        assert source is not None, f"{what}: no longer one MemoryMappedTable without an indices mapping"
        assert source.path == version.cache_files[0]["filename"]
        with pa.OSFile(source.path) as file:
            table = pa.ipc.open_stream(file).read_all()  # the file as written
        assert source.replay(table).equals(version.with_format("arrow")[:]), (
            f"{what}: MemoryMappedTable._apply_replays no longer gives the table datasets reads: "
            "hfpref.stages.io.arrow_pages would read other columns than the dataset has"
        )
    renamed = internals.mapped_file(versions["renamed"])
    assert renamed is not None and renamed.path == ds.cache_files[0]["filename"]  # the same file, no copy


def test_datasets_not_exactly_one_file_are_read_as_datasets_gives_them(tmp_path: Path) -> None:
    ds = on_disk(Dataset.from_dict({"a": list(range(10))}), tmp_path / "d.arrow")
    others = {
        "indices mapping (select)": ds.select([2, 0]),
        "indices mapping (shuffle)": ds.shuffle(seed=1),
        "in memory": Dataset.from_dict({"a": [1]}),
        "concatenated": concatenate_datasets([ds, ds]),
    }
    for what, version in others.items():
        assert internals.mapped_file(version) is None, (
            f"{what}: taken for one mapped file (Dataset._indices?)"
        )


# --- a dataset from a table -------------------------------------------------------------------------------


def test_a_dataset_from_a_table_shares_its_buffers_under_a_random_fingerprint() -> None:
    table = pa.table({"text": [f"row {i}" for i in range(1000)], "n": list(range(1000))})
    first, second = internals.dataset_from_table(table), internals.dataset_from_table(table)
    assert first.data.table.equals(table) and first.cache_files == []
    data = first.data.table.column("text").chunk(0).buffers()[2]
    assert data.address == table.column("text").chunk(0).buffers()[2].address, "the table was copied"
    # the form of datasets' own random fingerprints (no public property names it)
    assert re.fullmatch(r"[0-9a-f]{16}", first._fingerprint) and first._fingerprint != second._fingerprint
    assert first.map(lambda row: {"m": row["n"] + 1})["m"] == list(range(1, 1001))  # an ordinary dataset


# --- the Hub settings datasets used, and its error for no data ---------------------------------------------


def test_the_hub_settings_are_those_datasets_read() -> None:
    assert internals.hub_settings() == (
        bool(datasets.config.HF_HUB_OFFLINE),
        str(datasets.config.HF_ENDPOINT),
    ), (
        "datasets.config no longer holds HF_HUB_OFFLINE / HF_ENDPOINT: hfpref.stages.io explains Hub failures by them"
    )


def test_a_folder_without_data_raises_the_empty_dataset_error(tmp_path: Path) -> None:
    error = internals.empty_dataset_error()
    assert issubclass(error, Exception)
    with pytest.raises(error):  # hfpref.stages.io turns it into one line, exit 2
        datasets.load_dataset(str(tmp_path))


# --- what hfpref's own writers and columns rely on -------------------------------------------------------


def test_parquet_is_chunked_as_datasets_chunks_it() -> None:
    assert datasets.config.DEFAULT_CDC_OPTIONS == CDC_OPTIONS, (
        "datasets writes parquet with other content-defined chunking options: hfpref.repo.folder.CDC_OPTIONS "
        "must follow, so that shards stay what Dataset.to_parquet and push_to_hub write"
    )


async def typed(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
    errors = [None if x < 4 else f"error {x}" for x in batch["x"]]
    return {"error": TypedColumn(errors, pa.string())}


def test_a_typed_column_keeps_its_type_from_a_first_batch_of_nulls() -> None:
    out = Dataset.from_dict({"x": list(range(8))}).map(typed, batched=True, batch_size=4)
    assert out.features["error"] == Value("string"), "datasets' writer no longer builds columns with pa.array"
    assert out["error"] == [None] * 4 + [f"error {x}" for x in range(4, 8)]
