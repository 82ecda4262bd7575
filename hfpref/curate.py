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
- Splits: prompts (not rows) are ranked by a seeded hash and the first ``ceil(test_size × prompts)``
  (at least one, never all) form ``test``, so a prompt never lands in two splits, the split does not
  depend on row order, and adding prompts moves few others. An empty split is not written.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from hfpref.config import CurateConfig
from hfpref.errors import ConfigError, InputError
from hfpref.folder import assign_test, prompt_key, write_folder
from hfpref.verdicts import split_steps

if TYPE_CHECKING:
    from datasets import Dataset, DatasetDict

PROMPT_COLUMNS = ("prompt", "input", "question")
STEP_SEPARATOR = "\n\n"
_EPS = 1e-9


@dataclass(slots=True)
class _Candidate:
    index: int  # position in the row's completions
    flat: int  # position in the flattened completions column (output texts are taken from there)
    text: str
    score: float
    model: str | None


@dataclass(slots=True)
class _Steps:
    index: int
    steps: list[str]
    scores: list[float]


@dataclass
class _Rows:
    """The input, read once into Python lists and checked."""

    prompt_column: pa.ChunkedArray
    completions: pa.Array  # every completion of every row, flattened
    conversational: bool
    texts: list[str]  # prompt as plain text
    keys: list[str]  # grouping key of the prompt
    candidates: list[list[_Candidate]]  # usable, unique texts, best first
    scored: list[list[_Candidate]]  # usable, input order, duplicates kept
    steps: list[list[_Steps]] | None
    stats: dict[str, Any]
    usage: dict[str, Any] | None
    model_counts: Counter[str]


@dataclass
class _Built:
    """One config before splitting: the input row of each output row, its values (in ``COLUMN_ORDER``
    after ``prompt``), the rows left out and why, and statistics."""

    name: str
    src: list[int] = field(default_factory=list)
    values: list[tuple[Any, ...]] = field(default_factory=list)
    prompts: list[str] | None = None  # explicit prompts (step configs); else taken from the input
    dropped: Counter[str] = field(default_factory=Counter)
    stats: dict[str, Any] = field(default_factory=dict)

    def add(self, row: int, *values: Any) -> None:
        self.src.append(row)
        self.values.append(values)

    def column(self, name: str) -> list[Any]:
        index = COLUMN_ORDER[self.name].index(name) - 1
        return [v[index] for v in self.values]


def _mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 4) if values else None


def _arrow(ds: Any) -> pa.Table:
    from datasets import Dataset, IterableDataset

    if isinstance(ds, list):
        ds = Dataset.from_list(ds)
    elif isinstance(ds, IterableDataset):
        ds = Dataset.from_list(list(ds))
    if not isinstance(ds, Dataset):
        hint = ": pass one split, e.g. ds['train']" if isinstance(ds, dict) else ""
        raise InputError(
            f"curate: expected a datasets.Dataset or a list of rows, got {type(ds).__name__}{hint}"
        )
    return ds.with_format("arrow")[:]


def _prompt_text(prompt: Any, row: int) -> str:
    """The plain text of one prompt, checked."""
    if isinstance(prompt, str):
        if not prompt.strip():
            raise InputError(f"row {row}: prompt is empty")
        return prompt
    if not prompt:
        raise InputError(f"row {row}: prompt is null or an empty message list")
    for message in prompt:
        if not isinstance(message.get("content"), str) or not isinstance(message.get("role"), str):
            raise InputError(f"row {row}: prompt messages need string `role` and `content`, got {message!r}")
    return STEP_SEPARATOR.join(m["content"] for m in prompt)


def _score(value: Any, row: int, j: int, column: str = "scores") -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise InputError(f"row {row}: {column}[{j}] = {value!r}, expected a number in [0, 1] or null")
    return float(value)


def _scores(values: Any, row: int, length: int, column: str = "scores") -> list[float | None]:
    values = _list(values, row, column, length)
    if all(v is None or (type(v) is float and 0.0 <= v <= 1.0) for v in values):
        return values  # the common case, checked fast
    return [_score(v, row, j, column) for j, v in enumerate(values)]


def _list(value: Any, row: int, column: str, length: int) -> list[Any]:
    if value is None:
        return [None] * length
    if len(value) != length:
        raise InputError(f"row {row}: {column} has {len(value)} entries, completions has {length}")
    return value


def _step_items(
    row: int, texts: list[Any], step_scores: list[Any], steps_col: list[Any] | None
) -> list[_Steps]:
    items = []
    for j, (text, scores) in enumerate(zip(texts, step_scores, strict=True)):
        if not isinstance(text, str) or not text.strip() or not scores:
            continue
        values = _scores(scores, row, len(scores), f"step_scores[{j}]")
        steps = steps_col[j] if steps_col is not None and steps_col[j] is not None else split_steps(text)
        if any(v is None for v in values) or len(steps) != len(values):
            continue  # a step count that disagrees with the judge's cannot be lined up
        items.append(_Steps(j, [s.strip() for s in steps], values))  # type: ignore[arg-type]
    return items


def _read(ds: Any) -> _Rows:
    table = _arrow(ds)
    names = table.column_names
    prompt_name = next((c for c in PROMPT_COLUMNS if c in names), None)
    if prompt_name is None:
        raise InputError(f"input has no prompt column (prompt, input or question); columns: {names}")
    for needed, hint in (("completions", "generate completions first"), ("scores", "judge them first")):
        if needed not in names:
            raise InputError(f"input has no `{needed}` column ({hint}); columns: {names}")
    prompt_type = table.schema.field(prompt_name).type
    conversational = pa.types.is_list(prompt_type) or pa.types.is_large_list(prompt_type)
    if not conversational and not (pa.types.is_string(prompt_type) or pa.types.is_large_string(prompt_type)):
        raise InputError(f"column {prompt_name}: expected strings or message lists, got {prompt_type}")

    completions_type = table.schema.field("completions").type
    if not (pa.types.is_list(completions_type) or pa.types.is_large_list(completions_type)) or not (
        pa.types.is_string(completions_type.value_type)
        or pa.types.is_large_string(completions_type.value_type)
    ):
        raise InputError(f"column completions: expected lists of strings, got {completions_type}")
    if not table.num_rows:
        raise InputError("input has no rows")
    nested = table.column("completions").combine_chunks()
    offsets = nested.offsets.to_pylist()

    def col(name: str) -> list[Any] | None:
        return table.column(name).to_pylist() if name in names else None

    prompts, completions, scores = col(prompt_name), col("completions"), col("scores")
    models, step_scores, steps_col = col("completion_models"), col("step_scores"), col("steps")
    texts, keys, candidates, scored, steps = [], [], [], [], []
    null_completions = null_scores = 0
    for i, (prompt, comps) in enumerate(zip(prompts, completions, strict=True)):  # type: ignore[arg-type]
        texts.append(_prompt_text(prompt, i))
        keys.append(prompt_key(prompt))
        comps, first = comps or [], offsets[i] - offsets[0]
        row_scores = _scores(scores[i], i, len(comps))  # type: ignore[index]
        row_models = _list(models[i], i, "completion_models", len(comps)) if models else [None] * len(comps)
        usable, seen = [], set()
        for j, (comp, score) in enumerate(zip(comps, row_scores, strict=True)):
            if not isinstance(comp, str) or not comp.strip():
                null_completions += 1
            elif score is None:
                null_scores += 1
            else:
                usable.append(_Candidate(j, first + j, comp, score, row_models[j]))
        scored.append(usable)
        unique = [c for c in usable if not (c.text in seen or seen.add(c.text))]  # type: ignore[func-returns-value]
        candidates.append(sorted(unique, key=lambda c: (-c.score, c.index)))
        if step_scores is not None:
            row_steps = _list(step_scores[i], i, "step_scores", len(comps))
            row_texts = _list(steps_col[i], i, "steps", len(comps)) if steps_col else None
            steps.append(_step_items(i, comps, row_steps, row_texts))
    model_counts = Counter(m for row in models or [] for m in row or [] if m)
    generation = col("generation")
    all_scores = [c.score for row in scored for c in row]
    mean = _mean(all_scores)
    stats = {
        "rows": len(prompts),  # type: ignore[arg-type]
        "prompts": len(set(keys)),
        "completions": sum(len(c or []) for c in completions),  # type: ignore[union-attr]
        "max_completions": max((len(c or []) for c in completions), default=0),  # type: ignore[union-attr]
        "null_completions": null_completions,
        "null_scores": null_scores,
        "mean_score": mean,
        "score_std": round(math.sqrt(sum((s - mean) ** 2 for s in all_scores) / len(all_scores)), 4)
        if all_scores
        else None,
        "tied_rows": sum(1 for row in candidates if len(row) >= 2 and row[0].score == row[-1].score),
    }
    return _Rows(
        table.column(prompt_name),
        nested.flatten(),
        conversational,
        texts,
        keys,
        candidates,
        scored,
        steps if step_scores is not None else None,
        stats,
        _usage(generation) if generation is not None else None,
        model_counts,
    )


def _pairs(cands: list[_Candidate], cfg: CurateConfig) -> tuple[list[tuple[_Candidate, _Candidate]], str]:
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


def _build_dpo(rows: _Rows, cfg: CurateConfig) -> _Built:
    built = _Built("dpo")
    for i, cands in enumerate(rows.candidates):
        pairs, reason = _pairs(cands, cfg)
        if not pairs:
            built.dropped[reason] += 1
        for a, b in pairs:
            margin = round(a.score - b.score, 9)
            built.add(i, a.flat, b.flat, a.score, b.score, margin, a.model, b.model)
    built.stats = {
        "mean_score_chosen": _mean(built.column("score_chosen")),
        "mean_score_rejected": _mean(built.column("score_rejected")),
        "mean_margin": _mean(built.column("margin")),
    }
    return built


def _build_sft(rows: _Rows, cfg: CurateConfig) -> _Built:
    built = _Built("sft")
    for i, cands in enumerate(rows.candidates):
        approved = [c for c in cands if c.score >= cfg.threshold - _EPS]
        if not approved:
            built.dropped["no usable completion" if not cands else "no completion scored >= threshold"] += 1
        for c in approved:
            built.add(i, c.flat, c.score, c.model)
    built.stats = {"mean_score": _mean(built.column("score"))}
    return built


def _build_kto(rows: _Rows, cfg: CurateConfig) -> _Built:
    built = _Built("kto")
    for i, cands in enumerate(rows.candidates):
        if not cands:
            built.dropped["no usable completion"] += 1
        for c in cands:
            built.add(i, c.flat, c.score >= cfg.threshold - _EPS)
    desirable = sum(built.column("label"))
    built.stats = {"desirable": desirable, "undesirable": len(built.src) - desirable}
    return built


def _build_grpo(rows: _Rows, cfg: CurateConfig) -> _Built:
    built = _Built("grpo")
    for i, usable in enumerate(rows.scored):
        if not usable:
            built.dropped["no usable completion"] += 1
            continue
        built.add(i, [c.flat for c in usable], [c.score for c in usable])
    groups = built.column("scores")
    built.stats = {
        "mean_completions": _mean([len(g) for g in groups]),
        "mean_score": _mean([s for g in groups for s in g]),
    }
    return built


def step_prompt(text: str, prefix: list[str]) -> str:
    """The prompt of a step_dpo row: the prompt text, then each correct prefix step, each followed by a blank line."""
    return text + STEP_SEPARATOR + "".join(step + STEP_SEPARATOR for step in prefix)


def _build_stepwise(rows: _Rows, cfg: CurateConfig) -> _Built:
    built = _Built("stepwise", prompts=[])
    for i, items in enumerate(rows.steps or []):
        if not items:
            built.dropped["no completion with matching step_scores"] += 1
        for item in items:
            built.prompts.append(rows.texts[i])  # type: ignore[union-attr]
            built.add(i, item.steps, [s >= cfg.step_threshold - _EPS for s in item.scores])
    labels = [label for group in built.column("labels") for label in group]
    built.stats = {"steps": len(labels), "correct_steps": _mean([float(x) for x in labels])}
    return built


def _chosen_step(items: list[_Steps], wrong: _Steps, k: int, ok: float) -> str | None:
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


def _build_step_dpo(rows: _Rows, cfg: CurateConfig) -> _Built:
    built = _Built("step_dpo", prompts=[])
    ok = cfg.step_threshold - _EPS
    for i, items in enumerate(rows.steps or []):
        firsts = [(item, next((k for k, s in enumerate(item.scores) if s < ok), -1)) for item in items]
        wrong = [(item, k) for item, k in firsts if k >= 0]
        seen: set[tuple[str, ...]] = set()
        for item, k in wrong:
            chosen = _chosen_step(items, item, k, ok)
            key = (*item.steps[:k], "", chosen or "", item.steps[k])
            if chosen is None or key in seen:
                continue
            seen.add(key)
            built.prompts.append(step_prompt(rows.texts[i], item.steps[:k]))  # type: ignore[union-attr]
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
    built.stats = {"mean_step_index": _mean([float(k) for k in built.column("step_index")])}
    return built


BUILDERS = {
    "dpo": _build_dpo,
    "sft": _build_sft,
    "kto": _build_kto,
    "grpo": _build_grpo,
    "step_dpo": _build_step_dpo,
    "stepwise": _build_stepwise,
}
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


def _texts(flat: pa.Array, indices: list[int], conv: bool) -> pa.Array:
    """Completions by flat index, as strings or as one-message assistant lists."""
    texts = flat.take(pa.array(indices, pa.int64())).cast(pa.string())
    if not conv:
        return texts
    messages = pa.StructArray.from_arrays(
        [pa.repeat("assistant", len(texts)), texts], names=["role", "content"]
    )
    return pa.ListArray.from_arrays(pa.array(range(len(texts) + 1), pa.int32()), messages)


def _column(rows: _Rows, built: _Built, name: str, values: list[Any], conv: bool) -> pa.Array:
    if built.prompts is not None or name not in FLAT_TEXT:
        return pa.array(values, TYPES[name])
    if name != "completions":
        return _texts(rows.completions, values, conv)
    lengths = [len(group) for group in values]
    offsets = pa.array([0, *itertools.accumulate(lengths)], pa.int32())
    return pa.ListArray.from_arrays(offsets, _texts(rows.completions, [i for g in values for i in g], conv))


def _dataset_dict(rows: _Rows, built: _Built, conv: bool, is_test: list[bool]) -> DatasetDict:
    """The train/test ``DatasetDict`` of one config (test holds the rows of test prompts; empty splits
    are left out). Rows are ordered train first, so each split is a zero-copy slice."""
    from datasets import Dataset, DatasetDict
    from datasets.fingerprint import generate_random_fingerprint
    from datasets.table import InMemoryTable

    order = sorted(range(len(built.src)), key=lambda n: is_test[built.src[n]])
    n_train = sum(1 for i in built.src if not is_test[i])
    src = pa.array([built.src[n] for n in order], pa.int64())
    if built.prompts is not None:
        prompt = pa.array([built.prompts[n] for n in order], pa.string())
    elif conv:
        prompt = rows.prompt_column.take(src)
    else:
        prompt = pa.array(rows.texts, pa.string()).take(src)
    arrays = {"prompt": prompt}
    ordered = [built.values[n] for n in order]
    for name, values in zip(COLUMN_ORDER[built.name][1:], zip(*ordered, strict=True), strict=True):
        arrays[name] = _column(rows, built, name, list(values), conv)
    table = pa.table(arrays)
    parts = {"train": table.slice(0, n_train), "test": table.slice(n_train)}
    # A random fingerprint: hashing the whole table (datasets' default) costs more than building it.
    return DatasetDict(
        {
            split: Dataset(InMemoryTable(part), fingerprint=generate_random_fingerprint())
            for split, part in parts.items()
            if part.num_rows
        }
    )


def _usage(generation: list[Any]) -> dict[str, Any]:
    """Tokens, cost (None = unknown), truncations and failures from the ``generation`` column."""
    usage: dict[str, Any] = dict.fromkeys(["prompt_tokens", "completion_tokens", "truncated", "failed"], 0)
    cost: float | None = 0.0
    for meta in (m for row in generation for m in row or [] if isinstance(m, dict)):
        usage["prompt_tokens"] += meta.get("prompt_tokens") or 0
        usage["completion_tokens"] += meta.get("completion_tokens") or 0
        usage["truncated"] += meta.get("finish_reason") == "length"
        usage["failed"] += bool(meta.get("error"))
        if meta.get("cost") is None and not meta.get("error"):
            cost = None  # one unknown price makes the total unknown, never a smaller number
        elif cost is not None:
            cost += meta.get("cost") or 0.0
    return {**usage, "cost_usd": None if cost is None else round(cost, 6)}


def curate_config(config: CurateConfig | None = None, **overrides: Any) -> CurateConfig:
    """``config`` (default: the defaults) with the non-None ``overrides`` applied and checked."""
    base = config or CurateConfig()
    known = {f.name for f in dataclasses.fields(CurateConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ConfigError(f"curate: unknown option(s) {unknown}; expected some of {sorted(known)}")
    return dataclasses.replace(base, **{k: v for k, v in overrides.items() if v is not None})


class Curated(dict[str, "DatasetDict"]):
    """What :func:`curate` returns: config name → ``DatasetDict``, plus ``statistics`` (per config,
    including the rows left out and why) and ``provenance`` (what ``hfpref.json`` records)."""

    def __init__(
        self, configs: dict[str, DatasetDict], statistics: dict[str, Any], provenance: dict[str, Any]
    ):
        super().__init__(configs)
        self.statistics = statistics
        self.provenance = provenance


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

    ``config`` (or keyword overrides such as ``strategy="all_pairs"``) chooses the configs and rules;
    ``provenance`` adds what the caller knows (``generation``, ``judge``, ``summary``, ``tags`` …) to the
    ``hfpref.json`` and card written to ``folder``; ``license`` goes into the card (none: ``other``, no
    rights claimed); ``repo_id`` fills the card's usage snippets. A config that gets no rows is left out
    (``statistics`` says why); no rows at all is an :class:`InputError`.
    """
    cfg = curate_config(config, **overrides)
    rows = _read(ds)
    if rows.steps is None and {"step_dpo", "stepwise"} & set(cfg.formats):
        raise InputError("formats step_dpo/stepwise need a `step_scores` column (judge with --mode stepwise)")
    test = assign_test(rows.keys, cfg.test_size, cfg.seed)
    is_test = [key in test for key in rows.keys]
    conv = rows.conversational and cfg.style == "conversational"
    configs: dict[str, DatasetDict] = {}
    stats: dict[str, Any] = {}
    for name in cfg.formats:
        built = BUILDERS[name](rows, cfg)
        stats[name] = {
            "rows": len(built.src),
            "prompts": len({rows.keys[i] for i in built.src}),
            **built.stats,
            "dropped": dict(built.dropped.most_common()),
        }
        if built.src:
            configs[name] = _dataset_dict(rows, built, conv and built.prompts is None, is_test)
    if not configs:
        summary = "; ".join(f"{n}: {', '.join(s['dropped']) or 'no rows'}" for n, s in stats.items())
        raise InputError(f"no config has any rows ({summary})")
    prov = dict(provenance or {})
    if "generation" not in prov and rows.model_counts:
        models = [{"id": model, "completions": n} for model, n in sorted(rows.model_counts.items())]
        prov["generation"] = {"models": models, "n": rows.stats["max_completions"], "inferred": True}
    if "usage" not in prov and rows.usage is not None:
        prov["usage"] = rows.usage
    prov["curate"] = dataclasses.asdict(cfg)
    prov["input"] = rows.stats
    prov["configs"] = {name: {"statistics": stats[name]} for name in configs}
    prov["skipped_configs"] = {name: s["dropped"] for name, s in stats.items() if name not in configs}
    if folder is not None:
        write_folder(folder, configs, provenance=prov, license=license, repo_id=repo_id, tags=["synthetic"])
    return Curated(configs, stats, prov)
