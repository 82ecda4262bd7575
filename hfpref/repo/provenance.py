"""What a dataset folder records about how its data was made: ``hfpref.json``, read by the card and the hub.

:class:`Provenance` is built here, each step adding what one part knows:

- :meth:`Provenance.of_run`: ``hfpref run``'s generation and judge settings (what only the settings
  know: sampling parameters, the judge prompt …);
- :meth:`Provenance.of_source`: an importer's source, conversion, records read and skipped, notes;
- :meth:`Provenance.completed`: the generation, judge and usage the input's columns tell
  (:meth:`hfpref.stages.scored.ScoredInput.made`), completing the caller's sections, so that a folder
  curated from a judged file records the same models, usage and judge statistics as ``hfpref run``'s;
- :meth:`Provenance.curated` and :meth:`Provenance.with_configs`: the curation settings, the input's
  statistics, each config's statistics and the configs left out;
- :meth:`Provenance.written`: what writing the folder adds (version, name, license, tags, default
  config, each config's splits, columns and content hash), every secret taken out.

:meth:`Provenance.to_json` is the content of ``hfpref.json``, in a fixed key order; a section that is
not known is left out. :meth:`Provenance.from_json` reads one back, an older one (keys missing) too.
The generation and judge sections are dicts (:class:`GenerationSection`, :class:`JudgeSection`): which
settings they hold is part of what they say (recorded as null, or not recorded at all).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Required, TypedDict, TypeVar

import orjson

from hfpref.errors import ConfigError, InputError, redact

if TYPE_CHECKING:
    from hfpref.config import CurateConfig, RunConfig

PROVENANCE_FILE = "hfpref.json"
SECRET_KEYS = {"api_key", "token", "hf_token", "authorization", "password", "secret"}


class ModelEntry(TypedDict, total=False):
    """A model that wrote or judged completions: its id, its routing weight (settings) and, from the
    data, how many completions it wrote, how many were scored, their mean score and histogram
    (:data:`hfpref.repo.measures.SCORE_BINS` bins), and its tokens and cost (None: unknown)."""

    id: Required[str]
    completions: int
    weight: float
    scored: int
    mean_score: float
    score_histogram: list[int]
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float | None


class GenerationSection(TypedDict, total=False):
    """How the completions were generated. ``inferred``: read from the data's columns only, the
    settings (sampling, system prompt) were not recorded."""

    models: list[ModelEntry]
    n: int
    temperature: float | None
    top_p: float | None
    max_tokens: int | None
    system_prompt: str | None
    seed: int | None
    completions: int  # requests recorded in the `generation` column
    failed: int
    inferred: bool


class JudgeSection(TypedDict, total=False):
    """How the completions were judged; ``statistics`` as :func:`hfpref.stages.judge.judge_statistics`
    gives them, ``totals`` the counts behind its rates (verdicts, parse failures, pairs, inconsistent
    pairs; pairwise: first-position wins and decisive verdicts; panels: the rows with an agreement and
    its spread and, pairwise, ``panel_judges`` and the summed ``panel_table``). ``inferred``: read from
    the data's ``judge`` column only."""

    models: list[ModelEntry]
    mode: str
    prompt: str
    scale: int
    swap: bool
    aggregate: str
    reasoning: bool
    statistics: dict[str, Any]
    totals: dict[str, Any]
    inferred: bool


_Section = TypeVar("_Section", bound="_Record")


@dataclass
class _Record:
    """A section of fixed fields: written with every field (but the ``_optional`` ones while None),
    read back from whichever it has."""

    _optional: ClassVar[frozenset[str]] = frozenset()

    def to_json(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        return {k: v for k, v in values.items() if v is not None or k not in self._optional}

    @classmethod
    def from_json(cls: type[_Section], data: Mapping[str, Any], *, strict: bool = False) -> _Section:
        names = [f.name for f in dataclasses.fields(cls)]
        _check_keys(f"provenance {cls.__name__}", data, names, strict)
        return cls(**{name: data[name] for name in names if name in data})


def _check_keys(what: str, data: Mapping[str, Any], names: Sequence[str], strict: bool) -> None:
    unknown = sorted(set(data) - set(names))
    if strict and unknown:
        raise ConfigError(f"{what}: unknown key(s) {unknown}; expected some of {list(names)}")


@dataclass
class TokenUsage(_Record):
    """Tokens and cost of the generation requests; ``cost_usd`` None: unknown (never a smaller number).
    ``batch_completions`` / ``batches``: how many completions came by the Batch API, in how many batches
    (written only when some did)."""

    _optional = frozenset({"batch_completions", "batches"})

    prompt_tokens: int = 0
    completion_tokens: int = 0
    truncated: int = 0  # stopped at the token limit
    failed: int = 0
    cost_usd: float | None = None
    batch_completions: int | None = None
    batches: int | None = None


@dataclass
class InputStatistics(_Record):
    """What curate read: rows, distinct prompts, completions and scores."""

    _optional = frozenset({"completions_with_reasoning"})

    rows: int = 0
    prompts: int = 0
    completions: int = 0
    max_completions: int = 0
    null_completions: int = 0
    null_scores: int = 0
    mean_score: float | None = None
    score_std: float | None = None
    tied_rows: int = 0
    completions_with_reasoning: int | None = None  # recorded with reasoning="inline"


@dataclass
class SourceStatistics(_Record):
    """An importer's source records: read, used, skipped (reason → count) and distributions of its values
    (name → :func:`hfpref.importers.base.distribution`)."""

    records: int = 0
    used: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    distributions: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class ConfigEntry(_Record):
    """One config: its statistics (:func:`hfpref.repo.schema.config_statistics`), and once written its
    rows per split, columns and the sha256 of its shards."""

    _optional = frozenset({"statistics", "splits", "columns", "sha256"})

    statistics: dict[str, Any] | None = None
    splits: dict[str, int] | None = None
    columns: list[str] | None = None
    sha256: str | None = None


def _scrub(value: Any) -> Any:
    """Drop secret-named keys and redact registered secrets anywhere in a JSON-like value."""
    if isinstance(value, Mapping):
        return {str(k): _scrub(v) for k, v in value.items() if str(k).lower() not in SECRET_KEYS}
    if isinstance(value, list | tuple):
        return [_scrub(v) for v in value]
    if isinstance(value, str):
        return redact(value)
    return value


def _completed(given: Mapping[str, Any], found: Mapping[str, Any]) -> dict[str, Any]:
    """A ``generation``/``judge`` section: the caller's keys, then those only the data gives; models by
    id, each with what the data tells of it (completions), then the models only the data names."""
    section = {**given, **{key: value for key, value in found.items() if key not in given}}
    known = {model["id"]: model for model in found.get("models", [])}
    models = [{**known.get(model["id"], {}), **model} for model in given.get("models") or []]
    listed = {model["id"] for model in models}
    section["models"] = models + [model for model in found.get("models", []) if model["id"] not in listed]
    return section


@dataclass
class Provenance:
    """The content of ``hfpref.json``; fields in the order they are written, None: not known."""

    hfpref_version: str | None = None  # set when the folder is written
    summary: str | None = None
    source: dict[str, Any] | None = None  # imported data: facts shown as a list, in order
    source_statistics: SourceStatistics | None = None
    limitations: list[str] | None = None
    generation: GenerationSection | None = None
    judge: JudgeSection | None = None
    calibration: dict[str, Any] | None = None  # the judge measured on human labels (hfpref judge --calibrate)
    usage: TokenUsage | None = None
    curate: dict[str, Any] | None = None  # the CurateConfig, field by field
    input: InputStatistics | None = None
    configs: dict[str, ConfigEntry] = field(default_factory=dict)
    skipped_configs: dict[str, dict[str, int]] | None = None  # config → why it got no rows
    figures: dict[str, Any] | None = None  # the statistics the card's figures show (hfpref.repo.figure_data)
    pretty_name: str | None = None
    license: str | None = None  # None: none chosen, written as null once the folder is (with its name)
    tags: list[str] | None = None
    default_config: str | None = None

    @classmethod
    def of_run(cls, run: RunConfig) -> Provenance:
        """What only ``hfpref run``'s settings know; curate adds what the columns tell."""
        gen, judge = run.generate, run.judge
        return cls(
            generation={
                "models": [{"id": m.id, "weight": m.weight} for m in gen.models],
                "n": gen.n,
                "temperature": gen.temperature,
                "top_p": gen.top_p,
                "max_tokens": gen.max_tokens,
                "system_prompt": gen.system_prompt,
                "seed": gen.seed,
            },
            judge={
                "models": [{"id": m.id} for m in judge.models],
                "mode": judge.mode,
                "prompt": judge.prompt or "default",
                "scale": judge.scale,
                "swap": judge.swap,
                "aggregate": judge.aggregate,
                "reasoning": judge.reasoning,
            },
        )

    @classmethod
    def of_source(
        cls,
        *,
        name: str,
        source: str,
        split: str | None,
        limit: int | None,
        conversion: str,
        facts: Mapping[str, Any],
        statistics: SourceStatistics,
        summary: str,
        limitations: Sequence[str],
        tags: Sequence[str],
    ) -> Provenance:
        """An imported dataset: the source format's ``name``, where it was read (``split``: of a dataset
        that has splits), the records read (``limit``: the first N only), the ``conversion`` of records
        to rows and ``facts`` (the source's license, a rescaling applied), shown in that order; the
        records read, used and skipped, and notes for the card."""
        shown: dict[str, Any] = {"format": name, "source": source}
        if split is not None:
            shown["split"] = split
        if limit is not None:
            shown["limit"] = f"first {limit:,} records"
        shown["conversion"] = conversion
        shown.update(facts)
        return cls(
            summary=summary,
            source=shown,
            source_statistics=statistics,
            limitations=list(limitations),
            tags=list(tags),
        )

    def completed(self, found: Provenance) -> Provenance:
        """These sections completed with ``found``, what the input's columns tell: ``generation`` and
        ``judge`` completed (:func:`_completed`) or, when only the data gives them, marked ``inferred``
        (the card then says their settings were not recorded); ``usage`` from the data unless given."""
        sections: dict[str, Any] = {}
        for name in ("generation", "judge"):
            given, data = getattr(self, name), getattr(found, name)
            if data:
                sections[name] = _completed(given, data) if given else {**data, "inferred": True}
        return dataclasses.replace(self, **sections, usage=self.usage or found.usage)

    def calibrated(self, calibration: Mapping[str, Any] | None) -> Provenance:
        """With the calibration of its judge (``hfpref judge --calibrate``); a :class:`ConfigError` when
        the calibration is of another judge (models or mode) than the one the data records."""
        if calibration is None:
            return self
        judge, measured = self.judge or {}, calibration.get("judge") or {}
        ours = (sorted(m["id"] for m in judge.get("models", [])), judge.get("mode"))
        theirs = (sorted(measured.get("models", [])), measured.get("mode"))
        if ours != theirs:
            raise ConfigError(
                f"the calibration is of the judge {theirs[0]} ({theirs[1]}), the data was judged by "
                f"{ours[0]} ({ours[1]})"
            )
        return dataclasses.replace(self, calibration=dict(calibration))

    def curated(self, config: CurateConfig, statistics: InputStatistics) -> Provenance:
        """With the curation settings and what curate read."""
        return dataclasses.replace(self, curate=dataclasses.asdict(config), input=statistics)

    def with_configs(
        self, statistics: Mapping[str, dict[str, Any]], skipped: Mapping[str, dict[str, int]]
    ) -> Provenance:
        """With the statistics of each config that has rows, and why the others (``skipped``) have none."""
        configs = {name: ConfigEntry(statistics=stats) for name, stats in statistics.items()}
        return dataclasses.replace(self, configs=configs, skipped_configs=dict(skipped))

    def written(
        self,
        configs: Mapping[str, ConfigEntry],
        *,
        pretty_name: str,
        license: str | None,
        tags: Sequence[str],
        default_config: str,
    ) -> Provenance:
        """What ``hfpref.json`` records for a folder with ``configs`` written (their splits, columns and
        sha256 added to what was said of them before), the card's name, license, tags (added to those
        given before) and default config; every secret-named key and registered secret taken out."""
        described = self.configs
        written = dataclasses.replace(
            self,
            hfpref_version=version("hfpref"),
            configs={
                name: dataclasses.replace(
                    described.get(name, ConfigEntry()),
                    splits=info.splits,
                    columns=info.columns,
                    sha256=info.sha256,
                )
                for name, info in configs.items()
            },
            pretty_name=pretty_name,
            license=license,
            tags=list(dict.fromkeys([*(self.tags or []), *tags])),
            default_config=default_config,
        )
        return Provenance.from_json(_scrub(written.to_json()))

    def to_json(self) -> dict[str, Any]:
        """The content of ``hfpref.json``: every known field, in order."""
        data: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None and not (f.name == "license" and self.pretty_name is not None):
                continue
            if isinstance(value, _Record):
                value = value.to_json()
            elif f.name == "configs":
                value = {name: entry.to_json() for name, entry in value.items()}
            data[f.name] = value
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any], *, strict: bool = False) -> Provenance:
        """A provenance from the content of an ``hfpref.json`` (missing keys: not known; unknown ones
        are left out) or, ``strict``, from a caller's mapping (unknown keys: a :class:`ConfigError`)."""
        names = [f.name for f in dataclasses.fields(cls)]
        _check_keys("provenance", data, names, strict)
        records = {
            "source_statistics": SourceStatistics,
            "usage": TokenUsage,
            "input": InputStatistics,
        }
        values: dict[str, Any] = {name: data[name] for name in names if data.get(name) is not None}
        for name, kind in records.items():
            if name in values:
                values[name] = kind.from_json(values[name], strict=strict)
        values["configs"] = {
            name: ConfigEntry.from_json(entry, strict=strict)
            for name, entry in values.get("configs", {}).items()
        }
        for name in ("generation", "judge", "calibration", "source", "curate", "skipped_configs", "figures"):
            if name in values:
                values[name] = dict(values[name])
        for name in ("limitations", "tags"):
            if name in values:
                values[name] = list(values[name])
        return cls(**values)


def provenance_of(given: Provenance | Mapping[str, Any] | None) -> Provenance:
    """A caller's provenance: a :class:`Provenance`, or a mapping with its keys (checked)."""
    if isinstance(given, Provenance):
        return given
    return Provenance.from_json(given or {}, strict=True)


def read_provenance(folder: str | Path) -> Provenance | None:
    """The ``hfpref.json`` of ``folder``; None when there is none."""
    path = Path(folder) / PROVENANCE_FILE
    if not path.is_file():
        return None
    try:
        data = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as exc:
        raise InputError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return Provenance.from_json(data)


def write_provenance(folder: Path, provenance: Provenance) -> None:
    """Write ``hfpref.json`` whole or not at all (a kill midway leaves the previous one)."""
    tmp = folder / f".{PROVENANCE_FILE}.tmp"
    tmp.write_bytes(orjson.dumps(provenance.to_json(), option=orjson.OPT_INDENT_2) + b"\n")
    os.replace(tmp, folder / PROVENANCE_FILE)
