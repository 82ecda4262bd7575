"""Scored rows → preference configs (dpo, sft, kto, grpo, step_dpo, stepwise), split by prompt, written as a folder.

Rules (row numbers in messages are 0-based, as ``ds[i]``):

- A completion is *usable* when it is a non-blank string with a non-null score. Within a row, identical
  texts count once (the first); ``grpo`` keeps every usable completion, duplicates included.
- ``dpo``: ``best_worst`` pairs the highest with the lowest score (earliest completion on equal scores);
  ``all_pairs`` every pair with different scores; ``stratified`` pairs completions scoring ≥ ``high``
  with completions scoring ≤ ``low`` one to one (best with worst first). Ties are never paired, and a
  pair's margin must be ≥ ``min_margin``.
- ``sft``: every usable completion scoring ≥ ``threshold``; ``kto``: every usable completion, ``label``
  = score ≥ ``threshold``; ``grpo``: the usable completions and their scores.
- Step configs read ``step_scores`` (one list per completion) and the completion's steps: the ``steps``
  column when present, else the stepwise judge's own :func:`hfpref.verdicts.split_steps` (a completion
  whose step count differs from its scores is skipped). A step is correct when its score is at least
  ``step_threshold`` (default 0.5). ``stepwise`` = steps with ``labels``. ``step_dpo``: for each
  completion, its first wrong step is ``rejected``; ``chosen`` is the correct step at the same index of
  another completion with the same correct prefix, preferring one whose remaining steps are all
  correct, then the higher step score. The prompt is the prompt text plus the prefix steps, each
  followed by a blank line. Step configs are plain strings in both styles: a chat template cannot
  express "continue this assistant turn" as separate messages.
- Style: ``conversational`` keeps message-list prompts as they are and wraps completions as
  ``[{"role": "assistant", "content": ...}]``; string prompts stay strings. ``standard`` writes plain
  strings, message contents joined by blank lines.
- Reasoning (the optional ``reasoning`` column, parallel to ``completions``; none without it):
  ``drop`` writes the completions alone; ``inline`` writes a completion whose reasoning is non-blank
  text as ``<think>\\n{reasoning}\\n</think>\\n\\n{completion}`` (the R1/Qwen3 convention) wherever
  it is written (dpo, sft, kto, grpo; in conversational style, the assistant message's content).
  Pairing, thresholds and the removal of identical texts look at the completion alone, as judged.
  Step configs never carry reasoning: their steps are steps of the final answer.
- Provenance: the caller's ``generation``/``judge``/``usage`` sections (what only its settings know:
  sampling parameters, the judge prompt …) completed with what the input's ``completion_models``,
  ``generation`` and ``judge`` columns tell (:meth:`hfpref.scored.ScoredInput.made`), so that a folder
  curated from a judged file records the same models, usage and judge statistics as ``hfpref run``'s.
- Splits: prompts (not rows) are ranked by a seeded hash and the first ``ceil(test_size × prompts)``
  (at least one, never all) form ``test``, so a prompt never lands in two splits, the split does not
  depend on row order, and adding prompts moves few others. An empty split is not written.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from hfpref.config import CurateConfig
from hfpref.errors import ConfigError, InputError
from hfpref.repo.folder import SLICE_ROWS, FolderWriter, folder_configs, in_test_split, read_shards
from hfpref.stages.io import release_arrow_memory
from hfpref.stages.scored import STEP_SEPARATOR, Candidate, Chunk, ScoredInput, Steps, mean

if TYPE_CHECKING:
    from datasets import Dataset, DatasetDict

_EPS = 1e-9
THINK_OPEN, THINK_CLOSE = "<think>\n", "\n</think>\n\n"  # reasoning="inline": the R1/Qwen3 convention


@dataclass
class _Built:
    """One config before splitting, filled chunk by chunk: the input row of each output row (``src``),
    its values (in ``COLUMN_ORDER`` after ``prompt``) and, in step configs, its prompt. Each chunk's
    rows become one Arrow part (:meth:`flush`); completion texts stay flat indices until the end."""

    name: str
    src: list[int] = field(default_factory=list)
    values: list[tuple[Any, ...]] = field(default_factory=list)
    prompts: list[str] | None = None  # explicit prompts (step configs); else taken from the input
    parts: list[pa.Table] = field(default_factory=list)
    rows: int = 0
    dropped: Counter[str] = field(default_factory=Counter)

    def add(self, row: int, *values: Any) -> None:
        self.src.append(row)
        self.values.append(values)

    def _type(self, name: str) -> pa.DataType:
        if self.prompts is not None or name not in FLAT_TEXT:
            return TYPES[name]
        return pa.list_(pa.int64()) if name == "completions" else pa.int64()

    def flush(self) -> None:
        """The rows added since the last flush as one Arrow part."""
        if not self.src:
            return
        arrays = {"src": pa.array(self.src, pa.int64())}
        if self.prompts is not None:
            arrays["prompt"] = pa.array(self.prompts, pa.string())
            self.prompts = []
        for name, values in zip(COLUMN_ORDER[self.name][1:], zip(*self.values, strict=True), strict=True):
            arrays[name] = pa.array(values, self._type(name))
        self.parts.append(pa.table(arrays))
        self.rows += len(self.src)
        self.src, self.values = [], []

    def chunked(self, name: str) -> pa.ChunkedArray:
        kind = pa.int64() if name == "src" else pa.string() if name == "prompt" else self._type(name)
        return pa.chunked_array([chunk for part in self.parts for chunk in part.column(name).chunks], kind)

    def column(self, name: str) -> pa.Array:
        return self.chunked(name).combine_chunks()

    def values_of(self, name: str) -> Iterator[Any]:
        """The Python values of a column, in row order, one part at a time."""
        for part in self.parts:
            yield from part.column(name).to_pylist()


def _pairs(cands: list[Candidate], cfg: CurateConfig) -> tuple[list[tuple[Candidate, Candidate]], str]:
    """DPO pairs of one row, and the reason when there are none."""
    if len(cands) < 2:
        return [], "fewer than 2 usable completions"
    if cands[0].score == cands[-1].score:
        return [], "all usable completions tie"
    if cfg.strategy == "best_worst":
        worst = min(cands, key=lambda c: (c.score, c.index))
        candidates = [(cands[0], worst)]
    elif cfg.strategy == "all_pairs":
        candidates = [(a, b) for n, a in enumerate(cands) for b in cands[n + 1 :] if a.score > b.score]
    else:
        highs = [c for c in cands if c.score >= cfg.high - _EPS]
        lows = sorted((c for c in cands if c.score <= cfg.low + _EPS), key=lambda c: (c.score, c.index))
        if not highs:
            return [], "no completion scored >= high"
        if not lows:
            return [], "no completion scored <= low"
        candidates = [(a, b) for a, b in zip(highs, lows, strict=False) if a.score > b.score]
    pairs = [(a, b) for a, b in candidates if a.score - b.score >= cfg.min_margin - _EPS]
    return pairs, "" if pairs else "margin below min_margin"


def _build_dpo(rows: Chunk, cfg: CurateConfig, built: _Built) -> None:
    for i, cands in enumerate(rows.candidates, rows.start):
        pairs, reason = _pairs(cands, cfg)
        if not pairs:
            built.dropped[reason] += 1
        for a, b in pairs:
            margin = round(a.score - b.score, 9)
            built.add(i, a.flat, b.flat, a.score, b.score, margin, a.model, b.model)


def _dpo_stats(built: _Built) -> dict[str, Any]:
    return {
        "mean_score_chosen": mean(built.values_of("score_chosen"), built.rows),
        "mean_score_rejected": mean(built.values_of("score_rejected"), built.rows),
        "mean_margin": mean(built.values_of("margin"), built.rows),
    }


def _build_sft(rows: Chunk, cfg: CurateConfig, built: _Built) -> None:
    for i, cands in enumerate(rows.candidates, rows.start):
        approved = [c for c in cands if c.score >= cfg.threshold - _EPS]
        if not approved:
            built.dropped["no usable completion" if not cands else "no completion scored >= threshold"] += 1
        for c in approved:
            built.add(i, c.flat, c.score, c.model)


def _sft_stats(built: _Built) -> dict[str, Any]:
    return {"mean_score": mean(built.values_of("score"), built.rows)}


def _build_kto(rows: Chunk, cfg: CurateConfig, built: _Built) -> None:
    for i, cands in enumerate(rows.candidates, rows.start):
        if not cands:
            built.dropped["no usable completion"] += 1
        for c in cands:
            built.add(i, c.flat, c.score >= cfg.threshold - _EPS)


def _kto_stats(built: _Built) -> dict[str, Any]:
    desirable = sum(built.values_of("label"))
    return {"desirable": desirable, "undesirable": built.rows - desirable}


def _build_grpo(rows: Chunk, cfg: CurateConfig, built: _Built) -> None:
    for i, usable in enumerate(rows.scored, rows.start):
        if not usable:
            built.dropped["no usable completion"] += 1
            continue
        built.add(i, [c.flat for c in usable], [c.score for c in usable])


def _grpo_stats(built: _Built) -> dict[str, Any]:
    lengths = (len(scores) for scores in built.values_of("scores"))
    count = sum(pc.sum(pc.list_value_length(part.column("scores"))).as_py() or 0 for part in built.parts)
    return {
        "mean_completions": mean(lengths, built.rows),
        "mean_score": mean((s for scores in built.values_of("scores") for s in scores), count),
    }


def step_prompt(text: str, prefix: list[str]) -> str:
    """The prompt of a step_dpo row: the prompt text, then each correct prefix step, each followed by a blank line."""
    return text + STEP_SEPARATOR + "".join(step + STEP_SEPARATOR for step in prefix)


def _build_stepwise(rows: Chunk, cfg: CurateConfig, built: _Built) -> None:
    for i, (text, items) in enumerate(zip(rows.texts, rows.steps or [], strict=False), rows.start):
        if not items:
            built.dropped["no completion with matching step_scores"] += 1
        for item in items:
            built.prompts.append(text)  # type: ignore[union-attr]
            built.add(i, item.steps, [s >= cfg.step_threshold - _EPS for s in item.scores])


def _stepwise_stats(built: _Built) -> dict[str, Any]:
    labels = built.column("labels").flatten()
    return {"steps": len(labels), "correct_steps": mean((float(x) for x in labels.to_pylist()), len(labels))}


def _chosen_step(items: list[Steps], wrong: Steps, k: int, ok: float) -> str | None:
    """The correct step ``k`` of another completion with the same correct prefix as ``wrong``: one whose
    remaining steps are all correct first, then the higher step score, then the earlier completion."""
    best: tuple[tuple[bool, float, int], str] | None = None
    for other in items:
        if other.index == wrong.index or len(other.steps) <= k or other.steps[:k] != wrong.steps[:k]:
            continue
        if min(other.scores[: k + 1]) < ok or other.steps[k] == wrong.steps[k]:
            continue
        rank = (min(other.scores[k:]) >= ok, other.scores[k], -other.index)
        if best is None or rank > best[0]:
            best = (rank, other.steps[k])
    return None if best is None else best[1]


def _build_step_dpo(rows: Chunk, cfg: CurateConfig, built: _Built) -> None:
    ok = cfg.step_threshold - _EPS
    for i, (text, items) in enumerate(zip(rows.texts, rows.steps or [], strict=False), rows.start):
        firsts = [(item, next((k for k, s in enumerate(item.scores) if s < ok), -1)) for item in items]
        wrong = [(item, k) for item, k in firsts if k >= 0]
        seen: set[tuple[str, ...]] = set()
        for item, k in wrong:
            chosen = _chosen_step(items, item, k, ok)
            key = (*item.steps[:k], "", chosen or "", item.steps[k])
            if chosen is None or key in seen:
                continue
            seen.add(key)
            built.prompts.append(step_prompt(text, item.steps[:k]))  # type: ignore[union-attr]
            built.add(i, chosen, item.steps[k], k)
        if not seen:
            reason = (
                "no completion with matching step_scores"
                if not items
                else "no wrong step"
                if not wrong
                else "no correct step after the same prefix"
            )
            built.dropped[reason] += 1


def _step_dpo_stats(built: _Built) -> dict[str, Any]:
    return {"mean_step_index": mean((float(k) for k in built.values_of("step_index")), built.rows)}


BUILDERS = {
    "dpo": (_build_dpo, _dpo_stats),
    "sft": (_build_sft, _sft_stats),
    "kto": (_build_kto, _kto_stats),
    "grpo": (_build_grpo, _grpo_stats),
    "step_dpo": (_build_step_dpo, _step_dpo_stats),
    "stepwise": (_build_stepwise, _stepwise_stats),
}  # name -> (add one chunk's rows, statistics once every chunk is in)
STEP_CONFIGS = {"step_dpo", "stepwise"}  # explicit prompts: step texts, not completions of the input
COLUMN_ORDER = {
    "dpo": [
        "prompt",
        "chosen",
        "rejected",
        "score_chosen",
        "score_rejected",
        "margin",
        "chosen_model",
        "rejected_model",
    ],
    "sft": ["prompt", "completion", "score", "model"],
    "kto": ["prompt", "completion", "label"],
    "grpo": ["prompt", "completions", "scores"],
    "step_dpo": ["prompt", "chosen", "rejected", "step_index"],
    "stepwise": ["prompt", "completions", "labels"],
}
TYPES = {
    "scores": pa.list_(pa.float64()),
    "labels": pa.list_(pa.bool_()),
    "label": pa.bool_(),
    "step_index": pa.int64(),
    "completions": pa.list_(pa.string()),  # steps, in stepwise
    **dict.fromkeys(["chosen", "rejected", "completion"], pa.string()),  # steps, in step_dpo
    **dict.fromkeys(["score_chosen", "score_rejected", "margin", "score"], pa.float64()),
    **dict.fromkeys(["chosen_model", "rejected_model", "model"], pa.string()),
}
FLAT_TEXT = {"chosen", "rejected", "completion", "completions"}  # columns holding flat completion indices


def _take(values: pa.Array | pa.ChunkedArray, indices: pa.Array) -> pa.Array:
    """``values.take(indices)`` as one array, without joining the chunks of ``values`` (Arrow's take
    joins them all first, a copy of the whole column): each chunk gives its rows, then they are put
    back in the order of ``indices``."""
    if isinstance(values, pa.Array):
        return values.take(indices)
    positions = indices.to_numpy().astype(np.int64)
    starts = np.cumsum([0, *(len(chunk) for chunk in values.chunks)])
    which = np.searchsorted(starts, positions, side="right") - 1  # the chunk of each position
    by_chunk = np.argsort(which, kind="stable")
    groups = np.split(by_chunk, np.flatnonzero(np.diff(which[by_chunk])) + 1) if len(by_chunk) else []
    pieces = [
        values.chunk(int(which[g[0]])).take(pa.array(positions[g] - starts[which[g[0]]])) for g in groups
    ]
    gathered = pa.concat_arrays(pieces) if pieces else pa.array([], values.type)
    back = np.empty_like(by_chunk)
    back[by_chunk] = np.arange(len(by_chunk))
    return gathered.take(pa.array(back))


@dataclass
class _Completions:
    """Every completion of the input by flat index (``flat``, in the input's own buffers) and how they
    are written: ``conv``, as one-message assistant lists; ``thoughts`` (``reasoning="inline"``), the
    reasoning texts and each completion's index into them (-1: none), written before the completion."""

    flat: pa.ChunkedArray
    conv: bool
    thoughts: tuple[pa.ChunkedArray, np.ndarray] | None

    def texts(self, indices: pa.Array) -> pa.Array:
        """The completions at flat ``indices``, as written."""
        texts = _take(self.flat, indices).cast(pa.string())
        if self.thoughts is not None:
            texts = _inline_reasoning(texts, indices, *self.thoughts)
        if not self.conv:
            return texts
        messages = pa.StructArray.from_arrays(
            [pa.repeat("assistant", len(texts)), texts], names=["role", "content"]
        )
        return pa.ListArray.from_arrays(pa.array(range(len(texts) + 1), pa.int32()), messages)


def _inline_reasoning(
    texts: pa.Array, indices: pa.Array, thoughts: pa.ChunkedArray, where: np.ndarray
) -> pa.Array:
    """``texts``, the completions at flat ``indices``, each with its reasoning (``thoughts[where[i]]``;
    none where that is -1) before it: ``<think>\\n{reasoning}\\n</think>\\n\\n{completion}``."""
    at = where[indices.to_numpy()]
    has = at >= 0
    if not has.any():
        return texts
    found = _take(thoughts, pa.array(at[has])).cast(pa.string())  # only the reasoning that is written
    aligned = found.take(pa.array(np.cumsum(has) - 1, mask=~has))  # null where a text has none
    joined = pc.binary_join_element_wise(THINK_OPEN, aligned, THINK_CLOSE, texts, "")
    return pc.coalesce(joined, texts)


def _as_built(values: pa.Array) -> pa.Array:
    """``values`` as ``pa.array`` builds them: a validity bitmap only when there are nulls (``take``
    gives strings one), lists rebuilt from their items (lists are never null here)."""
    if pa.types.is_list(values.type):
        return pa.ListArray.from_arrays(
            pc.subtract(values.offsets, values.offsets[0]), _as_built(values.flatten())
        )
    if values.null_count or values.buffers()[0] is None:
        return values
    return pa.Array.from_buffers(values.type, len(values), [None, *values.buffers()[1:]], 0, values.offset)


def _column(completions: _Completions, built: _Built, name: str, values: pa.Array) -> pa.Array:
    """One output column from its ordered values (texts from their flat indices in ``completions``)."""
    if built.prompts is not None or name not in FLAT_TEXT:
        return _as_built(values)
    if name != "completions":
        return completions.texts(values)
    offsets = pc.subtract(values.offsets, values.offsets[0])
    return pa.ListArray.from_arrays(offsets, completions.texts(values.flatten()))


class _Rows:
    """One config's output rows, ordered train first so that each split is one run of rows, built
    ``SLICE_ROWS`` at a time: values from the config's parts, texts from the input (``prompts``: each
    input row's prompt as written; ``completions``: every completion). ``release`` gives back the
    input's pages after each column."""

    def __init__(
        self,
        built: _Built,
        prompts: pa.Array | pa.ChunkedArray,
        completions: _Completions,
        is_test: pa.Array,
        release: Callable[[], None],
    ) -> None:
        src = built.column("src")
        test = is_test.take(src)
        train = pc.indices_nonzero(pc.invert(test))
        self.order = pa.concat_arrays([train, pc.indices_nonzero(test)])  # each output row in the parts
        self.src = src.take(self.order)  # and in the input
        bounds = {"train": (0, len(train)), "test": (len(train), len(self.order))}
        self.splits = {split: (a, b) for split, (a, b) in bounds.items() if b > a}  # empty ones left out
        self.built, self.prompts, self.completions, self.release = built, prompts, completions, release

    def table(self, start: int, stop: int) -> pa.Table:
        """Output rows ``start`` to ``stop``."""
        built = self.built
        order, src = self.order.slice(start, stop - start), self.src.slice(start, stop - start)
        explicit = built.prompts is not None
        arrays = {
            "prompt": _as_built(_take(built.chunked("prompt"), order))
            if explicit
            else _take(self.prompts, src)
        }
        self.release()
        for name in COLUMN_ORDER[built.name][1:]:
            arrays[name] = _column(self.completions, built, name, _take(built.chunked(name), order))
            self.release()
        return pa.table(arrays)

    def slices(self, split: str) -> Iterator[pa.Table]:
        start, stop = self.splits[split]
        for a in range(start, stop, SLICE_ROWS):
            yield self.table(a, min(a + SLICE_ROWS, stop))
            release_arrow_memory()  # the slice and what writing it freed

    def num_rows(self) -> dict[str, int]:
        return {split: b - a for split, (a, b) in self.splits.items()}

    def dataset_dict(self) -> DatasetDict:
        """The whole config as a train/test ``DatasetDict`` (each split a zero-copy slice of one table)."""
        from datasets import Dataset, DatasetDict
        from datasets.fingerprint import generate_random_fingerprint
        from datasets.table import InMemoryTable

        table = self.table(0, len(self.order))
        # A random fingerprint: hashing the whole table (datasets' default) costs more than building it.
        return DatasetDict(
            {
                split: Dataset(
                    InMemoryTable(table.slice(a, b - a)), fingerprint=generate_random_fingerprint()
                )
                for split, (a, b) in self.splits.items()
            }
        )


def _statistics(built: _Built, prompt_ids: np.ndarray, prompts: int) -> dict[str, Any]:
    """A config's statistics; ``prompt_ids``: each input row's prompt, numbered below ``prompts``."""
    present = np.zeros(prompts, dtype=bool)
    for part in built.parts:
        present[prompt_ids[part.column("src").to_numpy()]] = True
    return {
        "rows": built.rows,
        "prompts": int(present.sum()),
        **BUILDERS[built.name][1](built),
        "dropped": dict(built.dropped.most_common()),
    }


def _configs(
    source: ScoredInput,
    builts: dict[str, _Built],
    cfg: CurateConfig,
    hashes: np.ndarray,
    prompt_ids: np.ndarray,
) -> Iterator[tuple[str, _Rows]]:
    """Each config with rows, one at a time, once every chunk is in; a config's parts go once the
    caller is done with it (and has dropped what it built), before the next."""
    is_test = in_test_split(hashes, cfg.test_size).take(pa.array(prompt_ids))
    release_arrow_memory()
    conv = source.conversational and cfg.style == "conversational"
    prompts = source.prompt_column if conv else source.texts()
    # every completion, by flat index: output texts are taken from here (in the input's own buffers)
    flat = pa.chunked_array(
        [chunk.flatten() for chunk in source.nested.chunks], source.nested.type.value_type
    )
    completions = _Completions(flat, conv, source.reasoning_texts())
    source.pages.release()  # each chunk's offsets were read
    for name, built in builts.items():
        if not built.rows:
            continue
        yield name, _Rows(built, prompts, completions, is_test, source.pages.release)
        built.parts.clear()
        release_arrow_memory()


def _completed(given: Mapping[str, Any], found: Mapping[str, Any]) -> dict[str, Any]:
    """A ``generation``/``judge`` section: the caller's keys, then those only the data gives; models by
    id, each with what the data tells of it (completions), then the models only the data names."""
    section = {**given, **{key: value for key, value in found.items() if key not in given}}
    known = {model["id"]: model for model in found.get("models", [])}
    models = [{**known.get(model["id"], {}), **model} for model in given.get("models") or []]
    listed = {model["id"] for model in models}
    section["models"] = models + [model for model in found.get("models", []) if model["id"] not in listed]
    return section


def made_provenance(given: Mapping[str, Any], found: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The provenance of a folder: the caller's (``given``: ``hfpref run`` passes its generation and judge
    settings) with its ``generation`` and ``judge`` sections completed from ``found``, what the input's
    columns tell (:meth:`hfpref.scored.ScoredInput.made`); ``usage`` from the data unless given. A
    section only the data gives is marked ``inferred``: the card says its settings were not recorded."""
    prov = dict(given)
    for name in ("generation", "judge"):
        if found.get(name):
            prov[name] = (
                _completed(given[name], found[name]) if given.get(name) else {**found[name], "inferred": True}
            )
    if "usage" not in prov and "usage" in found:
        prov["usage"] = found["usage"]
    return prov


def curate_config(config: CurateConfig | None = None, **overrides: Any) -> CurateConfig:
    """``config`` (default: the defaults) with the non-None ``overrides`` applied and checked."""
    base = config or CurateConfig()
    known = {f.name for f in dataclasses.fields(CurateConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ConfigError(f"curate: unknown option(s) {unknown}; expected some of {sorted(known)}")
    return dataclasses.replace(base, **{k: v for k, v in overrides.items() if v is not None})


class Curated(Mapping[str, "DatasetDict"]):
    """What :func:`curate` returns: config name → ``DatasetDict``, plus ``statistics`` (per config,
    including the rows left out and why), ``provenance`` (what ``hfpref.json`` records) and
    ``num_rows`` (config → split → rows).

    When :func:`curate` wrote a folder, each config was built and written slice by slice, and it is read
    back from its parquet shards the first time it is looked up: a large run never holds a whole
    config, and what is returned is what was written.
    """

    def __init__(
        self,
        configs: Mapping[str, DatasetDict | None],
        statistics: dict[str, Any],
        provenance: dict[str, Any],
        num_rows: dict[str, dict[str, int]],
        folder: Path | None = None,
    ) -> None:
        self._configs = dict(configs)
        self._folder = folder
        self.statistics = statistics
        self.provenance = provenance
        self.num_rows = num_rows

    def __getitem__(self, name: str) -> DatasetDict:
        dd = self._configs[name]
        if dd is None:
            dd = self._configs[name] = _read_config(self._folder, name)  # type: ignore[arg-type]
        return dd

    def __iter__(self) -> Iterator[str]:
        return iter(self._configs)

    def __len__(self) -> int:
        return len(self._configs)


def _read_config(folder: Path, name: str) -> DatasetDict:
    """Config ``name`` of a folder :func:`curate` wrote, read from its parquet shards into memory."""
    from datasets import Dataset, DatasetDict
    from datasets.fingerprint import generate_random_fingerprint
    from datasets.table import InMemoryTable

    parts = {}
    for split, shards in folder_configs(folder)[name].items():
        if not shards:
            raise InputError(f"{folder / name}: no {split} shards; the folder changed after curate wrote it")
        parts[split] = Dataset(InMemoryTable(read_shards(shards)), fingerprint=generate_random_fingerprint())
    return DatasetDict(parts)


def curate(
    ds: Dataset | list[dict[str, Any]],
    folder: str | Path | None = None,
    config: CurateConfig | None = None,
    *,
    provenance: Mapping[str, Any] | None = None,
    license: str | None = None,
    repo_id: str | None = None,
    **overrides: Any,
) -> Curated:
    """Turn scored rows into one ``DatasetDict`` (train/test) per config; write ``folder`` when given.

    ``config`` (or keyword overrides such as ``strategy="all_pairs"`` or ``reasoning="inline"``) chooses
    the configs and rules; ``provenance`` adds what the caller knows (``generation``, ``judge``,
    ``summary``, ``tags`` …) to what the input's columns tell (see :func:`made_provenance`) in the
    ``hfpref.json`` and card written to ``folder``; ``license`` goes into the card (none: ``other``, no
    rights claimed); ``repo_id`` fills the card's usage snippets. A config that gets no rows is left out
    (``statistics`` says why); no rows at all is an :class:`InputError`.
    """
    cfg = curate_config(config, **overrides)
    source = ScoredInput(ds, cfg.style, cfg.seed, reasoning=cfg.reasoning == "inline")
    steps_missing = not source.has_steps and bool(STEP_CONFIGS & set(cfg.formats))
    builts = {
        name: _Built(name, prompts=[] if name in STEP_CONFIGS else None)
        for name in ([] if steps_missing else cfg.formats)
    }
    for rows in source.read():  # every row is checked, even when the step formats cannot be built
        for built in builts.values():
            BUILDERS[built.name][0](rows, cfg, built)
            built.flush()
        release_arrow_memory()  # the chunk's Arrow copies: the pool would keep their pages
    if steps_missing:
        raise InputError("formats step_dpo/stepwise need a `step_scores` column (judge with --mode stepwise)")
    hashes, prompt_ids = source.prompt_ids()
    release_arrow_memory()
    stats = {}
    for name, built in builts.items():
        stats[name] = _statistics(built, prompt_ids, len(hashes))
        release_arrow_memory()
    names = [name for name, built in builts.items() if built.rows]
    if not names:
        summary = "; ".join(f"{n}: {', '.join(s['dropped']) or 'no rows'}" for n, s in stats.items())
        raise InputError(f"no config has any rows ({summary})")
    input_stats = source.stats(len(hashes))
    prov = made_provenance(provenance or {}, source.made())
    prov["curate"] = dataclasses.asdict(cfg)
    prov["input"] = input_stats
    prov["configs"] = {name: {"statistics": stats[name]} for name in names}
    prov["skipped_configs"] = {name: s["dropped"] for name, s in stats.items() if name not in names}
    writer = FolderWriter(folder, names) if folder is not None else None
    configs: dict[str, DatasetDict | None] = {}
    num_rows: dict[str, dict[str, int]] = {}
    for name, rows in _configs(source, builts, cfg, hashes, prompt_ids):
        num_rows[name] = rows.num_rows()
        if writer is not None:  # slice by slice; a config is read back from the folder when looked up
            writer.add(name, {split: rows.slices(split) for split in rows.splits})
            configs[name] = None
        else:
            configs[name] = rows.dataset_dict()
        del rows
    if writer is not None:
        writer.finish(provenance=prov, license=license, repo_id=repo_id, tags=["synthetic"])
    return Curated(configs, stats, prov, num_rows, writer.folder if writer is not None else None)
