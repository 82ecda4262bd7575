"""The dataset folder, which is the Hub repo: ``CONFIG/SPLIT-0000i-of-0000N.parquet``, ``README.md``, ``hfpref.json``.

:class:`FolderWriter` is the one writer: ``hfpref curate`` streams each config into it slice by slice,
and every importer (``hfpref.importers``) calls :func:`write_folder` (a wrapper over it) with its own
configs and provenance. :func:`folder_configs` and :func:`hfpref.repo.provenance.read_provenance` read
a folder back (export, validate, push).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict, Unpack

import numpy as np
import orjson
import pyarrow as pa

from hfpref.errors import ConfigError, InputError
from hfpref.repo.card import check_license, render_card
from hfpref.repo.figure_data import figure_statistics
from hfpref.repo.figures import draw_figures
from hfpref.repo.provenance import (
    PROVENANCE_FILE,
    ConfigEntry,
    Provenance,
    provenance_of,
    read_provenance,
    write_provenance,
)

if TYPE_CHECKING:
    from datasets import Dataset, DatasetDict

CARD_FILE = "README.md"
CONFIG_NAME = re.compile(r"^[A-Za-z0-9][\w-]*$")
SPLIT_NAME = re.compile(r"^\w+$")
SHARD_FILE = re.compile(r"^\w+-\d{5}-of-\d{5}\.parquet$")
PARTIAL_FILE = re.compile(r"^\.\w+-\d+\.parquet\.partial$")  # a shard still being written
SLICE_ROWS = 8192  # rows written at a time, each slice a parquet row group


def prompt_key(prompt: str | list[dict[str, Any]]) -> str:
    """The key that groups rows by prompt: the text itself, or the messages as canonical JSON."""
    return prompt if isinstance(prompt, str) else orjson.dumps(prompt, option=orjson.OPT_SORT_KEYS).decode()


def split_hash(seed: int, key: str) -> int:
    """The number that ranks a prompt for the test split: its seeded 8-byte blake2b, big-endian."""
    return int.from_bytes(hashlib.blake2b(f"{seed}\0{key}".encode(), digest_size=8).digest(), "big")


def in_test_split(hashes: np.ndarray, test_size: float) -> pa.Array:
    """Whether each distinct prompt is in the test split, from their :func:`split_hash` in order of
    first appearance: the ``ceil(test_size × prompts)`` lowest (at least one, never all)."""
    n = len(hashes)
    is_test = np.zeros(n, dtype=bool)
    if test_size > 0 and n >= 2:
        n_test = min(n - 1, max(1, math.ceil(test_size * n)))
        is_test[np.argsort(hashes, kind="stable")[:n_test]] = True
    return pa.array(is_test)


def assign_test(keys: Sequence[str], test_size: float, seed: int) -> set[str]:
    """The prompt keys of the test split (see :func:`in_test_split`)."""
    unique = list(dict.fromkeys(keys))
    hashes = np.fromiter((split_hash(seed, key) for key in unique), dtype=np.uint64, count=len(unique))
    return {
        key for key, test in zip(unique, in_test_split(hashes, test_size).to_pylist(), strict=True) if test
    }


def _clear_old_shards(folder: Path, names: set[str]) -> None:
    for name in names:
        directory = folder / name
        if not directory.is_dir():
            continue
        for path in directory.iterdir():
            if path.is_file() and (SHARD_FILE.match(path.name) or PARTIAL_FILE.match(path.name)):
                path.unlink()
        if not any(directory.iterdir()):
            directory.rmdir()


def check_folder(folder: str | Path) -> Provenance | None:
    """Refuse a ``folder`` that :func:`write_folder` would refuse (before any work is paid for);
    return the provenance of a folder hfpref wrote before, None for a new or empty one."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{folder}: exists and is not a folder")
    if not folder.exists():
        return None
    old = read_provenance(folder)
    if old is None and any(folder.iterdir()):
        raise InputError(f"{folder}: not empty and not an hfpref dataset folder (no {PROVENANCE_FILE})")
    return old


def _prepare(folder: Path, names: set[str]) -> None:
    """Refuse a non-empty folder that hfpref did not write; else clear what it wrote before.

    The card goes first and is written last: a folder whose rewrite was interrupted has no card,
    so it neither loads as a dataset nor looks complete, and a rerun may still rewrite it. A new
    folder gets a provisional ``hfpref.json`` before any shard, so that a first write killed midway
    is still recognised (and replaced) as hfpref's own.
    """
    old = check_folder(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if old is not None:
        (folder / CARD_FILE).unlink(missing_ok=True)
        _clear_old_shards(folder, names | set(old.configs))
    else:
        configs = {name: ConfigEntry() for name in names}
        write_provenance(folder, Provenance(hfpref_version=version("hfpref"), configs=configs))


def _slice_rows(ds: Dataset, limit: int) -> int:
    """Rows per written slice of ``ds``: ``SLICE_ROWS``, fewer when that would pass ``limit`` bytes
    (Arrow size), so that its shards stay near ``max_shard_size``."""
    nbytes = ds.data.nbytes * len(ds) // max(1, ds.data.num_rows)  # the rows of ds, not its whole table
    return max(1, min(SLICE_ROWS, limit * len(ds) // max(1, nbytes)))


def _slices(ds: Dataset, rows: int) -> Iterator[pa.Table]:
    """``ds`` as Arrow tables of ``rows`` rows (at least one table, for the schema of an empty split)."""
    arrow = ds.with_format("arrow")
    for start in range(0, max(1, len(ds)), rows):
        yield arrow[start : start + rows]


#: Content-defined chunking as datasets writes parquet (``datasets.config.DEFAULT_CDC_OPTIONS``): pages end
#: where the content says, so that a shard pushed again deduplicates on the Hub's Xet storage as
#: datasets' own do, and a config of one slice is byte for byte what ``Dataset.to_parquet`` writes (tested).
CDC_OPTIONS = {"min_chunk_size": 256 * 1024, "max_chunk_size": 1024 * 1024, "norm_level": 0}


def _parquet_writer(path: Path, schema: pa.Schema) -> tuple[Any, pa.Schema]:
    """A pyarrow parquet writer for tables of ``schema``, and the schema it writes: what datasets'
    writer gives a file (its features in the ``huggingface`` metadata, content-defined chunking, a page
    index), through datasets' and pyarrow's public API."""
    import pyarrow.parquet as pq
    from datasets import Features

    features = Features.from_arrow_schema(schema)
    schema = features.arrow_schema.with_metadata(
        {"huggingface": json.dumps({"info": {"features": features.to_dict()}})}
    )
    writer = pq.ParquetWriter(path, schema, use_content_defined_chunking=CDC_OPTIONS, write_page_index=True)
    writer.add_key_value_metadata({"content_defined_chunking": json.dumps(CDC_OPTIONS)})
    return writer, schema


def _write_split(
    directory: Path, split: str, tables: Iterable[pa.Table], limit: int
) -> tuple[list[Path], int, list[str]]:
    """Write ``tables`` in order, each a row group, into shards of ``split``: a new shard once one holds
    ``limit`` bytes (Arrow size). Shards are written under ``.partial`` names, then given their
    ``SPLIT-0000i-of-0000N.parquet`` names; returns them, the rows written and the columns."""
    import pyarrow.parquet as pq

    partial: list[Path] = []
    writer: pq.ParquetWriter | None = None
    schema = pa.schema([])
    size = rows = 0
    columns: list[str] = []
    for table in tables:
        if writer is None or size >= limit:
            if writer is not None:
                writer.close()
            partial.append(directory / f".{split}-{len(partial)}.parquet.partial")
            writer, schema = _parquet_writer(partial[-1], table.schema)
            size, columns = 0, table.column_names
        writer.write_table(table.combine_chunks().cast(schema), row_group_size=max(1, table.num_rows))
        size += table.nbytes
        rows += table.num_rows
    if writer is None:
        raise InputError(f"{directory.name}/{split}: nothing to write")
    writer.close()
    shards = [directory / f"{split}-{i:05d}-of-{len(partial):05d}.parquet" for i in range(len(partial))]
    for old, new in zip(partial, shards, strict=True):
        os.replace(old, new)
    return shards, rows, columns


def _check_names(names: Iterable[str]) -> None:
    for name in names:
        if not CONFIG_NAME.match(name):
            raise InputError(f"config name {name!r}: use letters, digits, '_' and '-'")


def _check_splits(name: str, splits: Iterable[str]) -> None:
    names = list(splits)
    if not names or any(not SPLIT_NAME.match(s) for s in names):
        raise InputError(f"config {name}: split names must be letters, digits or '_', got {names}")


_UNITS = {"KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30}


def size_in_bytes(size: int | str) -> int:
    """``500MB`` (10**6), ``2GiB`` (2**30) or a number of bytes, as datasets' ``max_shard_size`` reads it."""
    if isinstance(size, int):
        return size
    text = size.strip().upper()
    unit = next((u for u in sorted(_UNITS, key=len, reverse=True) if text.endswith(u)), None)
    number = text[: -len(unit)] if unit else text
    try:
        return int(float(number) * (_UNITS[unit] if unit else 1))
    except ValueError:
        raise ConfigError(f"max_shard_size: expected a size such as 500MB or 2GiB, got {size!r}") from None


class FolderWriter:
    """Writes a dataset folder one config at a time, so that a config's tables can go once written.

    ``FolderWriter(folder, names)`` checks and prepares the folder for the configs ``names`` (those
    that :meth:`add` may write); :meth:`finish` writes ``hfpref.json`` and the card. Until then the
    folder has no card: it neither loads as a dataset nor looks complete (see :func:`write_folder`).
    """

    def __init__(self, folder: str | Path, names: Sequence[str], max_shard_size: int | str = "500MB") -> None:
        _check_names(names)
        self.folder = Path(folder)
        self.limit = size_in_bytes(max_shard_size)  # bytes of Arrow data per shard
        self.written: dict[str, ConfigEntry] = {}  # config -> splits, columns, sha256
        _prepare(self.folder, set(names))

    def add(self, name: str, splits: Mapping[str, Iterable[pa.Table]]) -> None:
        """Write config ``name``: each split's tables in order, each table a row group, as
        ``CONFIG/SPLIT-0000i-of-0000N.parquet`` shards (a new shard once one holds ``max_shard_size``
        of Arrow data). Tables are read one at a time: a caller that builds them as they are asked for
        never holds the whole config."""
        _check_splits(name, splits)
        directory = self.folder / name
        directory.mkdir(exist_ok=True)
        digest = hashlib.sha256()
        rows: dict[str, int] = {}
        for split, tables in splits.items():
            shards, rows[split], columns = _write_split(directory, split, tables, self.limit)
            for path in shards:
                with path.open("rb") as fh:
                    digest.update(path.name.encode())
                    for block in iter(lambda: fh.read(1 << 20), b""):
                        digest.update(block)
        self.written[name] = ConfigEntry(splits=rows, columns=columns, sha256=digest.hexdigest())

    def finish(
        self,
        *,
        provenance: Provenance | Mapping[str, Any] | None = None,
        license: str | None = None,
        pretty_name: str | None = None,
        tags: Sequence[str] = (),
        repo_id: str | None = None,
        default_config: str | None = None,
    ) -> Path:
        """Write ``hfpref.json`` and the card ``README.md`` for the configs written (arguments as
        :func:`write_folder`'s) and return the folder."""
        if not self.written:
            raise InputError("write_folder: no configs to write")
        default = default_config or ("dpo" if "dpo" in self.written else next(iter(self.written)))
        if default not in self.written:
            raise InputError(f"default_config {default!r} is not one of the configs {list(self.written)}")
        given = provenance_of(provenance)
        prov = given.written(
            self.written,
            pretty_name=pretty_name or given.pretty_name or self.folder.resolve().name,
            license=check_license(license),
            tags=tags,
            default_config=default,
        )
        write_figures(self.folder, prov, repo_id=repo_id)
        return self.folder


def dpo_shards(folder: Path) -> list[Path]:
    """The parquet shards of a folder's ``dpo`` config, every split (none without one)."""
    directory = folder / "dpo"
    return (
        sorted(p for p in directory.glob("*.parquet") if SHARD_FILE.match(p.name))
        if directory.is_dir()
        else []
    )


def write_figures(folder: Path, provenance: Provenance, *, repo_id: str | None = None) -> Provenance:
    """Compute the figures' statistics from ``provenance`` and the folder's ``dpo`` shards, then write
    ``hfpref.json`` with them, the figures (``images/``) and the card that links them; returns what
    ``hfpref.json`` now says."""
    prov = dataclasses.replace(provenance, figures=figure_statistics(provenance, dpo_shards(folder)))
    write_provenance(folder, prov)
    draw_figures(folder, prov.figures or {})
    render_card(prov, repo_id=repo_id).save(folder / CARD_FILE)
    return prov


class CardOptions(TypedDict, total=False):
    """What a folder's ``hfpref.json`` and card say besides its configs (see :func:`write_folder`)."""

    provenance: Provenance | Mapping[str, Any] | None
    license: str | None
    pretty_name: str | None
    tags: Sequence[str]
    repo_id: str | None
    default_config: str | None


def write_folder(
    folder: str | Path,
    configs: Mapping[str, DatasetDict],
    *,
    max_shard_size: int | str = "500MB",
    **card: Unpack[CardOptions],
) -> Path:
    """Write ``configs`` (config name → ``DatasetDict`` of splits) as a Hub dataset folder and return its path.

    Each split becomes ``CONFIG/SPLIT-0000i-of-0000N.parquet`` shards of about ``max_shard_size``
    (in-memory Arrow size, as ``datasets.push_to_hub`` estimates it), in row groups of up to
    ``SLICE_ROWS`` rows. ``provenance`` (a :class:`~hfpref.repo.provenance.Provenance` or a mapping of
    its keys: models, prompts, parameters, statistics) is written, without secrets, to ``hfpref.json``;
    the card ``README.md`` is rendered from it (``pretty_name``, ``tags``; ``repo_id`` fills its usage
    snippets). ``license`` None writes ``other`` and claims no rights. ``default_config`` defaults to
    ``dpo`` when written, else the first config.
    Rewriting a folder hfpref wrote replaces its shards; any other non-empty folder is refused.
    Everything is checked before the folder is touched; :class:`FolderWriter` writes config by config.
    """
    if not configs:
        raise InputError("write_folder: no configs to write")
    _check_names(configs)
    for name, dd in configs.items():
        _check_splits(name, dd)
    default_config = card.get("default_config")
    if default_config is not None and default_config not in configs:
        raise InputError(f"default_config {default_config!r} is not one of the configs {list(configs)}")
    writer = FolderWriter(folder, list(configs), max_shard_size)
    for name, dd in configs.items():
        writer.add(name, {split: _slices(ds, _slice_rows(ds, writer.limit)) for split, ds in dd.items()})
    return writer.finish(**card)


def folder_configs(folder: str | Path) -> dict[str, dict[str, list[Path]]]:
    """Config → split → parquet files of a folder, as its card's ``configs:`` YAML declares them."""
    from huggingface_hub import DatasetCard

    folder = Path(folder)
    card_path = folder / CARD_FILE
    if not card_path.is_file():
        raise InputError(f"{folder}: no {CARD_FILE}; not a dataset folder (write one with hfpref curate)")
    entries = DatasetCard.load(card_path).data.to_dict().get("configs") or []
    if not entries:
        raise InputError(f"{card_path}: its YAML has no `configs:` list")
    found: dict[str, dict[str, list[Path]]] = {}
    for entry in entries:
        files = entry.get("data_files") or []
        files = [files] if isinstance(files, str) else files
        splits: dict[str, list[Path]] = {}
        for item in files:
            item = {"split": "train", "path": item} if isinstance(item, str) else item
            patterns = item["path"] if isinstance(item["path"], list) else [item["path"]]
            splits[item["split"]] = sorted(p for pattern in patterns for p in folder.glob(pattern))
        found[entry["config_name"]] = splits
    return found


def read_shards(files: Sequence[Path]) -> pa.Table:
    """The rows of parquet ``files`` (a split's shards, in order) as one table; :class:`InputError`
    naming the first shard that is not readable parquet, or shards whose columns differ."""
    import pyarrow.parquet as pq

    tables = []
    for path in files:
        try:
            tables.append(pq.read_table(path))
        except (pa.ArrowException, OSError) as exc:
            reason = str(exc).splitlines()[0].rsplit("': ", 1)[-1]  # without "Could not open '{path}': "
            raise InputError(
                f"{path}: not a readable parquet shard ({reason}); rewrite it with hfpref curate"
            ) from None
    try:
        return pa.concat_tables(tables)
    except pa.ArrowInvalid as exc:
        raise InputError(f"{files[0].parent}: its shards have different columns ({exc})") from None
