"""Import public preference data into a dataset folder: the shared half of ``builder_scripts/``.

A script in ``builder_scripts/`` knows one source format (NeMo Gym, HelpSteer3, UltraFeedback, PRM800K,
dpogen); the rest is here, so that every importer reads, checks, reports, writes and pushes alike.
:func:`read_records` yields each record of a local ``.jsonl``/``.json`` file, or of anything
:func:`hfpref.io.load_rows` reads (a Hub dataset id included), as a :class:`Field` that names its line
or row (1-based) and fails with one line saying which field was not what was expected. An
:class:`Importer` counts the records read and skipped (and why) and either collects the rows of an
already paired source (:meth:`Importer.add`, :meth:`Importer.write`: split by prompt as
:func:`hfpref.curate.curate` splits) or hands scored completions per prompt to
:func:`hfpref.curate.curate` (:meth:`Importer.curate`), so that pairing follows hfpref's own rules.
Both write the folder with :func:`hfpref.folder.write_folder`, report, and push with
:func:`hfpref.hub.push`. :func:`import_command` adds the options every script shares; :func:`run` runs
a script as ``hfpref`` runs its commands: an error is one line on stderr and an exit code.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import statistics
import sys
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NoReturn, overload

import click
import orjson

from hfpref.config import CurateConfig, help_for
from hfpref.errors import InputError
from hfpref.repo.folder import assign_test, prompt_key

if TYPE_CHECKING:
    import pyarrow as pa
    from datasets import DatasetDict

Message = dict[str, str]
TEXT_PARTS = ("text", "input_text", "output_text")  # content parts holding text (chat and Responses API)
ROLES = {"developer": "system"}  # Responses API roles that chat templates know under another name
TEXT_COLUMNS = ("chosen", "rejected", "completion")  # wrapped as one assistant message when conversational
STEP_CONFIGS = ("step_dpo", "stepwise")  # always plain strings, as hfpref.curate writes them
MISSING: Any = object()  # the value of a field the record does not have


def _describe(value: Any) -> str:
    """A short description of a value for an error message."""
    if value is MISSING:
        return "nothing (the field is missing)"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return f"the string {value if len(value) <= 40 else value[:37] + '...'!r}"
    if isinstance(value, Mapping):
        keys = ", ".join(str(k) for k in list(value)[:8])
        return f"an object with keys [{keys}]"
    if isinstance(value, list | tuple):
        return f"a list of {len(value)}"
    return repr(value)[:40]


@dataclass(frozen=True, slots=True)
class Field:
    """A value of a source record, with its ``where`` (``file.jsonl line 3``) and ``path`` (``a.b[2].c``):
    ``field["key"]`` is a child; readers (:meth:`text`, ...) fail with one line naming both."""

    where: str
    path: str
    value: Any

    def __getitem__(self, key: str) -> Field:
        if not isinstance(self.value, Mapping):
            self.fail("an object")
        return Field(self.where, f"{self.path}.{key}" if self.path else key, self.value.get(key, MISSING))

    @property
    def null(self) -> bool:
        """Whether the value is null or missing."""
        return self.value is None or self.value is MISSING

    def fail(self, expected: str) -> NoReturn:
        """Raise the one-line :class:`InputError` for this field: where, which field, what was expected."""
        name = f"`{self.path}`" if self.path else "the record"
        raise InputError(f"{self.where}: {name}: expected {expected}, got {_describe(self.value)}")

    def items(self, *, optional: bool = False) -> list[Field]:
        """The entries of a list (``optional``: null or missing reads as an empty list)."""
        if optional and self.null:
            return []
        if not isinstance(self.value, list | tuple):
            self.fail("a list" + (" or null" if optional else ""))
        return [Field(self.where, f"{self.path}[{i}]", v) for i, v in enumerate(self.value)]

    @overload
    def text(self, *, optional: Literal[False] = False) -> str: ...
    @overload
    def text(self, *, optional: bool) -> str | None: ...
    def text(self, *, optional: bool = False) -> str | None:
        """A string (``optional``: None when null or missing)."""
        if optional and self.null:
            return None
        if not isinstance(self.value, str):
            self.fail("a string" + (" or null" if optional else ""))
        return self.value

    @overload
    def number(self, *, optional: Literal[False] = False) -> float: ...
    @overload
    def number(self, *, optional: bool) -> float | None: ...
    def number(self, *, optional: bool = False) -> float | None:
        """A finite number (``optional``: None when null or missing)."""
        if optional and self.null:
            return None
        value = self.value
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            self.fail("a number" + (" or null" if optional else ""))
        return float(value)

    @overload
    def integer(self, *, choices: Sequence[int], optional: Literal[False] = False) -> int: ...
    @overload
    def integer(self, *, choices: Sequence[int], optional: bool) -> int | None: ...
    def integer(self, *, choices: Sequence[int], optional: bool = False) -> int | None:
        """An integer among ``choices`` (``optional``: None when null or missing)."""
        if optional and self.null:
            return None
        value = self.value
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or value not in choices:
            allowed = f"{min(choices)}..{max(choices)}" if choices else "none"
            self.fail(f"an integer in {allowed}" + (" or null" if optional else ""))
        return value

    def message(self) -> Message:
        """One chat message as ``{"role", "content"}``: a list of content parts is joined (text parts
        only), and the Responses API role ``developer`` becomes ``system``."""
        role = self["role"].text()
        content = self["content"]
        if isinstance(content.value, list):
            texts = []
            for part in content.items():
                if part["type"].text() not in TEXT_PARTS:
                    part["type"].fail(f"a text content part ({', '.join(TEXT_PARTS)})")
                texts.append(part["text"].text())
            text = "".join(texts)
        else:
            text = content.text()
        return {"role": ROLES.get(role, role), "content": text}

    def messages(self, *, allow_text: bool = False) -> list[Message]:
        """A non-empty chat as a list of messages (``allow_text``: a string is one user message)."""
        if allow_text and isinstance(self.value, str):
            return [{"role": "user", "content": self.value}]
        items = self.items()
        if not items:
            self.fail("a non-empty list of messages")
        return [item.message() for item in items]


def _json_records(source: str, path: Path) -> Iterator[tuple[str, Any]]:
    """``(where, value)`` per record of a JSON Lines file, or of a ``.json`` file holding one array."""
    if path.suffix.lower() == ".json":
        try:
            data = orjson.loads(path.read_bytes())
        except orjson.JSONDecodeError:
            data = None  # not one JSON document: read it as JSON Lines, as datasets does
        if isinstance(data, list):
            yield from ((f"{source} record {i}", value) for i, value in enumerate(data, start=1))
            return
        if data is not None:
            raise InputError(f"{source}: expected a JSON array of records or JSON Lines, got one JSON value")
    with path.open("rb") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                yield f"{source} line {number}", orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise InputError(f"{source} line {number}: not valid JSON ({exc})") from None


def read_records(source: str, *, split: str = "train", limit: int | None = None) -> Iterator[Field]:
    """The records of ``source``, each a :class:`Field` naming its line (JSON Lines), record (a JSON
    array) or row (anything else :func:`hfpref.io.load_rows` reads: ``.parquet``, ``.csv``,
    ``save_to_disk`` folders, Hub dataset ids, of which ``split`` is read). ``limit``: the first N only.

    Local JSON is parsed here, record by record, rather than by ``datasets``: a record of the wrong
    shape then fails naming its line instead of the whole file failing Arrow's type inference.
    """
    path = Path(source)
    if path.is_file() and path.suffix.lower() in (".jsonl", ".json"):
        records: Iterator[tuple[str, Any]] = _json_records(source, path)
    else:
        from hfpref.stages.io import load_rows

        ds = load_rows(source, split=split)
        if limit is not None:
            ds = ds.select(range(min(limit, ds.num_rows)))
        records = ((f"{source} row {i}", row) for i, row in enumerate(ds, start=1))
    for count, (where, value) in enumerate(records, start=1):
        record = Field(where, "", value)
        if not isinstance(value, Mapping):
            record.fail("a JSON object")
        yield record
        if limit is not None and count >= limit:
            return


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


def _mean(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return round(statistics.fmean(known), 4) if known else None


def _config_statistics(name: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The statistics hfpref.curate records per config, for rows built here."""

    def column(key: str) -> list[Any]:
        return [row[key] for row in rows]

    if name == "dpo":
        return {
            "mean_score_chosen": _mean(column("score_chosen")),
            "mean_score_rejected": _mean(column("score_rejected")),
            "mean_margin": _mean(column("margin")),
        }
    if name == "sft":
        return {"mean_score": _mean(column("score"))}
    if name == "kto":
        desirable = sum(column("label"))
        return {"desirable": desirable, "undesirable": len(rows) - desirable}
    if name == "stepwise":
        labels = [float(label) for group in column("labels") for label in group]
        return {"steps": len(labels), "correct_steps": _mean(labels)}
    if name == "step_dpo":
        return {"mean_step_index": _mean(column("step_index"))}
    return {}


@dataclass
class ImportOptions:
    """The options every builder script takes (see :func:`import_command`)."""

    source: str
    output: str
    push: str | None = None
    limit: int | None = None
    split: str = "train"
    test_size: float = 0.1
    seed: int = 0
    style: str = "conversational"
    license: str | None = None


def scored_config(options: ImportOptions, formats: str, **overrides: Any) -> CurateConfig:
    """The :class:`CurateConfig` for :meth:`Importer.curate`: ``formats`` (of dpo, sft, kto, grpo; scored
    rows have no step scores) and ``overrides`` (None: the default), with the split and style options."""
    from hfpref.stages.curate import curate_config

    split = {"test_size": options.test_size, "seed": options.seed, "style": options.style}
    config = curate_config(formats=formats, **split, **overrides)
    if set(config.formats) & set(STEP_CONFIGS):
        raise click.BadParameter("choose among dpo, sft, kto, grpo", param_hint="--formats")
    return config


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
        """Add one row to ``config`` (columns as in :data:`hfpref.curate.COLUMN_ORDER`; completions as
        plain strings, wrapped as assistant messages on writing when the prompt is a chat).

        ``group`` (default: the prompt) keeps rows together in one split. A row with an empty
        completion, identical chosen and rejected, or repeating an earlier row is dropped (and
        counted); returns whether the row was added.
        """
        from hfpref.stages.curate import COLUMN_ORDER

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

    def _provenance(self) -> dict[str, Any]:
        opts = self.options
        source: dict[str, Any] = {"format": self.name, "source": opts.source}
        if not Path(opts.source).is_file():
            source["split"] = opts.split
        if opts.limit is not None:
            source["limit"] = f"first {opts.limit:,} records"
        source["conversion"] = self.conversion
        source.update(self.facts)
        return {
            "summary": self.summary,
            "source": source,
            "source_statistics": {
                "records": self.read,
                "used": self.read - sum(self.skipped.values()),
                "skipped": dict(self.skipped.most_common()),
                "distributions": self.distributions,
            },
            "limitations": list(self.limitations),
            "tags": list(self.tags),
        }

    def _no_rows(self) -> NoReturn:
        reasons = "; ".join(f"{n:,} × {reason}" for reason, n in self.skipped.most_common())
        raise InputError(
            f"{self.options.source}: no usable records out of {self.read:,} ({reasons or 'none read'})"
        )

    def _styled(self, config: str, row: dict[str, Any]) -> dict[str, Any]:
        """Chat prompts get assistant-message completions; ``standard``: contents joined, as curate does."""
        from hfpref.stages.curate import STEP_SEPARATOR

        if config in STEP_CONFIGS or isinstance(row["prompt"], str):
            return row
        if self.options.style == "standard":
            return {**row, "prompt": STEP_SEPARATOR.join(m["content"] for m in row["prompt"])}
        return {k: [{"role": "assistant", "content": v}] if k in TEXT_COLUMNS else v for k, v in row.items()}

    def _table(self, config: str, rows: list[dict[str, Any]]) -> pa.Table:
        import pyarrow as pa

        from hfpref.stages.curate import COLUMN_ORDER, TYPES

        chat = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
        arrays = {}
        for name in COLUMN_ORDER[config]:
            values = [row[name] for row in rows]
            if name == "prompt" or (name in TEXT_COLUMNS and config not in STEP_CONFIGS):
                kind = chat if isinstance(values[0], list) else pa.string()
            else:
                kind = TYPES[name]
            arrays[name] = pa.array(values, kind)
        return pa.table(arrays)

    def configs(self) -> dict[str, DatasetDict]:
        """Config → train/test ``DatasetDict`` of the rows added, split by group as hfpref.curate splits by
        prompt (one test set over every config, so a prompt is in the same split everywhere)."""
        from datasets import Dataset, DatasetDict
        from datasets.fingerprint import generate_random_fingerprint
        from datasets.table import InMemoryTable

        from hfpref.stages.curate import COLUMN_ORDER

        keys = [key for name in COLUMN_ORDER for key in self.groups.get(name, [])]
        test = assign_test(keys, self.options.test_size, self.options.seed)
        result = {}
        for name in COLUMN_ORDER:
            rows = self.rows.get(name)
            if not rows:
                continue
            table = self._table(name, [self._styled(name, row) for row in rows])
            in_test = [key in test for key in self.groups[name]]
            parts = {
                "train": [i for i, t in enumerate(in_test) if not t],
                "test": [i for i, t in enumerate(in_test) if t],
            }
            result[name] = DatasetDict(
                {
                    split: Dataset(InMemoryTable(table.take(idx)), fingerprint=generate_random_fingerprint())
                    for split, idx in parts.items()
                    if idx
                }
            )
        return result

    def write(self) -> Path:
        """Write the rows added as the folder ``-o`` (card and ``hfpref.json`` included), report, push."""
        from hfpref.repo.folder import write_folder
        from hfpref.stages.curate import COLUMN_ORDER

        configs = self.configs()
        if not configs:
            if not any(self.dropped.values()):
                self._no_rows()
            summary = "; ".join(f"{n}: {', '.join(c)}" for n, c in self.dropped.items())
            raise InputError(f"{self.options.source}: no config has any rows ({summary})")
        prov = self._provenance()
        prov["configs"] = {
            name: {
                "statistics": {
                    "rows": len(self.rows[name]),
                    "prompts": len(set(self.groups[name])),
                    **_config_statistics(name, self.rows[name]),
                    "dropped": dict(self.dropped[name].most_common()),
                }
            }
            for name in configs
        }
        prov["skipped_configs"] = {n: dict(c) for n, c in self.dropped.items() if n not in configs}
        folder = write_folder(
            self.options.output,
            configs,
            provenance=prov,
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
        with :func:`hfpref.curate.curate` into the folder ``-o``, with this source in its provenance."""
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


def import_command(
    name: str, *, default_split: str = "train"
) -> Callable[[Callable[..., Any]], click.Command]:
    """The click command of a builder script ``fn(options: ImportOptions, **own_options)`` (its docstring
    is the help), with the shared options: ``--source``, ``-o``, ``--push``, ``--limit``, ``--split``
    (default ``default_split``), ``--test-size``, ``--seed``, ``--style`` and ``--license``."""
    from hfpref.config import HubConfig

    source_help = "A .jsonl/.json/.parquet/.csv file, a save_to_disk folder, or a Hub dataset id (user/name)."
    shared = [
        click.option("--source", required=True, metavar="PATH_OR_HUB_ID", help=source_help),
        click.option("-o", "--output", required=True, metavar="FOLDER", help="Dataset folder to write."),
        click.option("--push", metavar="REPO_ID", help="Push the written folder to this Hub dataset repo."),
        click.option("--limit", type=click.IntRange(min=1), metavar="N", help="Read the first N records."),
        click.option("--split", default=default_split, show_default=True, help="Split to read (Hub ids)."),
        click.option(
            "--test-size",
            type=click.FloatRange(0, 1, max_open=True),
            default=0.1,
            show_default=True,
            help=help_for(CurateConfig, "test_size"),
        ),
        click.option("--seed", type=int, default=0, show_default=True, help=help_for(CurateConfig, "seed")),
        click.option(
            "--style",
            type=click.Choice(["conversational", "standard"]),
            default="conversational",
            show_default=True,
            help=help_for(CurateConfig, "style"),
        ),
        click.option("--license", metavar="ID", help=help_for(HubConfig, "license")),
    ]

    def decorate(fn: Callable[..., Any]) -> click.Command:
        @functools.wraps(fn)
        def command(**values: Any) -> Any:
            from hfpref.repo.card import check_license

            options = ImportOptions(**{f.name: values.pop(f.name) for f in dataclasses.fields(ImportOptions)})
            options.license = check_license(options.license)
            return fn(options, **values)

        for option in reversed(shared):
            command = option(command)
        return click.command(name=name, context_settings={"help_option_names": ["-h", "--help"]})(command)

    return decorate


def run(command: click.Command, args: Sequence[str] | None = None) -> None:
    """Run a builder script's command (``args``: default ``sys.argv[1:]``) as ``hfpref`` runs its own
    (:func:`hfpref.cli.one_line_errors`): a usage error or an hfpref error is one line on stderr and
    exit code 2 (bad option, bad record) or 1 (other failures); the traceback is not shown."""
    from hfpref.cli import OneLineError, one_line_errors

    prog = command.name or "builder"
    try:
        with one_line_errors(prog, interrupted=f"{prog}: interrupted"):
            command.main(args=list(args) if args is not None else None, prog_name=prog, standalone_mode=False)
    except OneLineError as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo(f"{prog}: interrupted", err=True)
        sys.exit(130)
