"""One import of a public source into a dataset folder: what every importer shares.

A module per source (:mod:`hfpref.importers.nemo_gym`, ``helpsteer3``, ``ultrafeedback``, ``prm800k``,
``dpogen``) reads its records (:mod:`hfpref.importers.records`) and hands them to an :class:`Importer`,
which counts the records read and skipped (and why), and either collects the rows of an already
paired source (:meth:`Importer.add`, :meth:`Importer.write`: split by prompt as
:func:`hfpref.stages.curate.curate` splits, with curate's statistics) or hands scored completions
per prompt to :func:`hfpref.stages.curate.curate` (:meth:`Importer.curate`), so that pairing follows
hfpref's own rules. Both write the folder (:func:`hfpref.repo.folder.write_folder`, the source in its
:class:`~hfpref.repo.provenance.Provenance`), report, and push with :func:`hfpref.repo.hub.push`.
``builder_scripts/`` are the command lines (:mod:`hfpref.cli.importers`).
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click
import orjson
import pyarrow as pa

from hfpref.config import CurateConfig
from hfpref.errors import InputError
from hfpref.importers.records import Field, Message, read_records
from hfpref.repo.card import check_license
from hfpref.repo.folder import assign_test, prompt_key
from hfpref.repo.provenance import Provenance, SourceStatistics
from hfpref.repo.schema import (
    COLUMN_ORDER,
    MESSAGES,
    STEP_CONFIGS,
    STEP_SEPARATOR,
    TEXT_COLUMNS,
    TYPES,
    config_statistics,
)

if TYPE_CHECKING:
    from datasets import DatasetDict


def distribution(values: Sequence[float], *, bins: int = 10) -> dict[str, Any]:
    """Count, mean, standard deviation, min, max and a histogram of ``values``: one bar per value when
    there are at most ``bins`` distinct values (rewards of 0 and 1, ratings), else ``bins`` equal bins."""
    if not values:
        return {"count": 0}
    low, high = min(values), max(values)
    distinct = Counter(values)
    if len(distinct) <= bins:
        histogram = [[f"{value:g}", distinct[value]] for value in sorted(distinct)]
    else:
        width = (high - low) / bins
        counts = [0] * bins
        for value in values:
            counts[min(bins - 1, int((value - low) / width))] += 1
        histogram = [
            [f"[{low + i * width:.3g}, {low + (i + 1) * width:.3g}{']' if i == bins - 1 else ')'}", n]
            for i, n in enumerate(counts)
        ]
    return {
        "count": len(values),
        "mean": round(statistics.fmean(values), 4),
        "std": round(statistics.pstdev(values), 4),
        "min": low,
        "max": high,
        "histogram": histogram,
    }


@dataclass
class ImportOptions:
    """The options every importer takes (the shared options of ``builder_scripts/``)."""

    source: str
    output: str
    push: str | None = None
    limit: int | None = None
    split: str = "train"
    test_size: float = 0.1
    seed: int = 0
    style: str = "conversational"
    license: str | None = None

    def __post_init__(self) -> None:
        self.license = check_license(self.license)


def scored_config(options: ImportOptions, formats: str, **overrides: Any) -> CurateConfig:
    """The :class:`CurateConfig` for :meth:`Importer.curate`: ``formats`` (of dpo, sft, kto, grpo; scored
    rows have no step scores) and ``overrides`` (None: the default), with the split and style options."""
    from hfpref.stages.curate import curate_config

    split = {"test_size": options.test_size, "seed": options.seed, "style": options.style}
    return curate_config(formats=formats, **split, **overrides)


@dataclass
class Importer:
    """One import: reads the source, counts what it skips, and writes (and pushes) the folder.

    ``name`` (the source format), ``summary`` and ``conversion`` (one line on how records became rows),
    ``tags`` and ``limitations`` go into the card and ``hfpref.json``; ``facts`` adds source facts
    (the source's license, a rescaling applied); ``distributions`` holds :func:`distribution`
    results (rewards, preference strengths) shown in the card.
    """

    options: ImportOptions
    name: str
    summary: str
    conversion: str
    tags: Sequence[str] = ()
    limitations: Sequence[str] = ()
    facts: dict[str, Any] = field(default_factory=dict)
    distributions: dict[str, dict[str, Any]] = field(default_factory=dict)
    read: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    rows: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    groups: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    dropped: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    _seen: dict[str, set[bytes]] = field(default_factory=lambda: defaultdict(set))

    def records(self) -> Iterator[Field]:
        """The source's records (``--source``, ``--split``, ``--limit``), counted as read."""
        for record in read_records(self.options.source, split=self.options.split, limit=self.options.limit):
            self.read += 1
            yield record

    def skip(self, reason: str) -> None:
        """Count one source record left out, and why."""
        self.skipped[reason] += 1

    def drop(self, config: str, reason: str) -> None:
        """Count one record that gave ``config`` no row, and why."""
        self.dropped[config][reason] += 1

    def add(
        self, config: str, prompt: str | list[Message], *, group: str | None = None, **columns: Any
    ) -> bool:
        """Add one row to ``config`` (columns as in :data:`hfpref.repo.schema.COLUMN_ORDER`; completions as
        plain strings, wrapped as assistant messages on writing when the prompt is a chat).

        ``group`` (default: the prompt) keeps rows together in one split. A row with an empty
        completion, identical chosen and rejected, or repeating an earlier row is dropped (and
        counted); returns whether the row was added.
        """
        unknown = set(columns) - set(COLUMN_ORDER[config])
        if unknown:
            raise ValueError(f"{config}: unknown columns {sorted(unknown)}")
        row = {"prompt": prompt, **{name: columns.get(name) for name in COLUMN_ORDER[config][1:]}}
        texts = [row[name] for name in TEXT_COLUMNS if name in row]
        if any(not isinstance(text, str) or not text.strip() for text in texts):
            self.drop(config, "empty completion")
            return False
        if "chosen" in row and row["chosen"].strip() == row["rejected"].strip():
            self.drop(config, "chosen and rejected identical")
            return False
        key = orjson.dumps(row, option=orjson.OPT_SORT_KEYS)
        if key in self._seen[config]:
            self.drop(config, "duplicate row")
            return False
        self._seen[config].add(key)
        self.rows[config].append(row)
        self.groups[config].append(group if group is not None else prompt_key(prompt))
        return True

    # --- writing ---

    def _provenance(self) -> Provenance:
        opts = self.options
        used = self.read - sum(self.skipped.values())
        return Provenance.of_source(
            name=self.name,
            source=opts.source,
            split=None if Path(opts.source).is_file() else opts.split,
            limit=opts.limit,
            conversion=self.conversion,
            facts=self.facts,
            statistics=SourceStatistics(
                self.read, used, dict(self.skipped.most_common()), self.distributions
            ),
            summary=self.summary,
            limitations=self.limitations,
            tags=self.tags,
        )

    def _no_rows(self) -> NoReturn:
        reasons = "; ".join(f"{n:,} × {reason}" for reason, n in self.skipped.most_common())
        raise InputError(
            f"{self.options.source}: no usable records out of {self.read:,} ({reasons or 'none read'})"
        )

    def _styled(self, config: str, row: dict[str, Any]) -> dict[str, Any]:
        """Chat prompts get assistant-message completions; ``standard``: contents joined, as curate does."""
        if config in STEP_CONFIGS or isinstance(row["prompt"], str):
            return row
        if self.options.style == "standard":
            return {**row, "prompt": STEP_SEPARATOR.join(m["content"] for m in row["prompt"])}
        return {k: [{"role": "assistant", "content": v}] if k in TEXT_COLUMNS else v for k, v in row.items()}

    def _table(self, config: str, rows: list[dict[str, Any]]) -> pa.Table:
        arrays = {}
        for name in COLUMN_ORDER[config]:
            values = [row[name] for row in rows]
            if name == "prompt" or (name in TEXT_COLUMNS and config not in STEP_CONFIGS):
                kind = MESSAGES if isinstance(values[0], list) else pa.string()
            else:
                kind = TYPES[name]
            arrays[name] = pa.array(values, kind)
        return pa.table(arrays)

    def _split(self, tables: Mapping[str, pa.Table]) -> dict[str, DatasetDict]:
        """Config → train/test ``DatasetDict`` of its table, split by group as curate splits by prompt (one
        test set over every config, so a prompt is in the same split everywhere)."""
        from datasets import DatasetDict

        from hfpref.stages.datasets_internals import dataset_from_table

        keys = [key for name in tables for key in self.groups[name]]
        test = assign_test(keys, self.options.test_size, self.options.seed)
        result = {}
        for name, table in tables.items():
            in_test = [key in test for key in self.groups[name]]
            parts = {
                "train": [i for i, t in enumerate(in_test) if not t],
                "test": [i for i, t in enumerate(in_test) if t],
            }
            result[name] = DatasetDict(
                {split: dataset_from_table(table.take(idx)) for split, idx in parts.items() if idx}
            )
        return result

    def write(self) -> Path:
        """Write the rows added as the folder ``-o`` (card and ``hfpref.json`` included), report, push."""
        from hfpref.repo.folder import write_folder

        tables = {
            name: self._table(name, [self._styled(name, row) for row in self.rows[name]])
            for name in COLUMN_ORDER
            if self.rows.get(name)
        }
        if not tables:
            if not any(self.dropped.values()):
                self._no_rows()
            summary = "; ".join(f"{n}: {', '.join(c)}" for n, c in self.dropped.items())
            raise InputError(f"{self.options.source}: no config has any rows ({summary})")
        statistics = {
            name: config_statistics(name, [table], len(set(self.groups[name])), self.dropped[name])
            for name, table in tables.items()
        }
        skipped = {n: dict(c) for n, c in self.dropped.items() if n not in tables}
        configs = self._split(tables)
        folder = write_folder(
            self.options.output,
            configs,
            provenance=self._provenance().with_configs(statistics, skipped),
            license=self.options.license,
            repo_id=self.options.push,
            tags=list(self.tags),
        )
        names = [name for name in COLUMN_ORDER if name in configs or self.dropped.get(name)]
        self._report(
            {
                name: (
                    configs[name].num_rows if name in configs else {},
                    dict(self.dropped[name].most_common()),
                )
                for name in names
            }
        )
        return self._push(folder)

    def curate(self, rows: list[dict[str, Any]], config: CurateConfig) -> Path:
        """Curate scored rows (``prompt``, ``completions``, ``scores``, optional ``completion_models``)
        with :func:`hfpref.stages.curate.curate` into the folder ``-o``, this source in its provenance."""
        from hfpref.stages.curate import curate

        if not rows:
            self._no_rows()
        result = curate(
            rows,
            self.options.output,
            config,
            provenance=self._provenance(),
            license=self.options.license,
            repo_id=self.options.push,
        )
        self._report(
            {name: (result.num_rows.get(name, {}), s["dropped"]) for name, s in result.statistics.items()}
        )
        return self._push(Path(self.options.output))

    def _report(self, configs: Mapping[str, tuple[Mapping[str, int], Mapping[str, int]]]) -> None:
        """Print what was read, skipped (one line per reason), and written per config (rows per split)."""
        click.echo(f"read {self.read:,} records from {self.options.source}")
        for reason, n in self.skipped.most_common():
            click.echo(f"  skipped {n:,} × {reason}")
        click.echo(f"wrote {self.options.output}")
        for name, (splits, dropped) in configs.items():
            sizes = ", ".join(f"{n:,} {split}" for split, n in splits.items()) or "no rows"
            left = "; ".join(f"{n:,} × {reason}" for reason, n in dropped.items())
            click.echo(f"  {name}: {sizes}" + (f" (left out: {left})" if left else ""))

    def _push(self, folder: Path) -> Path:
        if self.options.push:
            from hfpref.repo.hub import push

            click.echo(f"pushed {folder} to {push(folder, self.options.push)}")
        return folder
