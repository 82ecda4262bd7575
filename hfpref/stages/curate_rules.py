"""How each config's rows are chosen from scored input, chunk by chunk: the rules listed in
:mod:`hfpref.stages.curate` (pairing, thresholds, steps) as one builder per config (:data:`BUILDERS`).

A builder reads one :class:`~hfpref.stages.scored.Chunk` and adds its rows to the config's
:class:`Built`: the input row each comes from and its values in :data:`~hfpref.repo.schema.COLUMN_ORDER`
after ``prompt``, completion texts as flat indices into the input (:data:`FLAT_TEXT`); a step config
also adds each row's prompt (step texts, not the input's completions).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from hfpref.config import CurateConfig
from hfpref.repo.schema import COLUMN_ORDER, TYPES, step_prompt
from hfpref.stages.scored import Candidate, Chunk, Steps

_EPS = 1e-9
FLAT_TEXT = {"chosen", "rejected", "completion", "completions"}  # columns holding flat completion indices


@dataclass
class Built:
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


def _build_dpo(rows: Chunk, cfg: CurateConfig, built: Built) -> None:
    for i, cands in enumerate(rows.candidates, rows.start):
        pairs, reason = _pairs(cands, cfg)
        if not pairs:
            built.dropped[reason] += 1
        for a, b in pairs:
            margin = round(a.score - b.score, 9)
            built.add(i, a.flat, b.flat, a.score, b.score, margin, a.model, b.model)


def _build_sft(rows: Chunk, cfg: CurateConfig, built: Built) -> None:
    for i, cands in enumerate(rows.candidates, rows.start):
        approved = [c for c in cands if c.score >= cfg.threshold - _EPS]
        if not approved:
            built.dropped["no usable completion" if not cands else "no completion scored >= threshold"] += 1
        for c in approved:
            built.add(i, c.flat, c.score, c.model)


def _build_kto(rows: Chunk, cfg: CurateConfig, built: Built) -> None:
    for i, cands in enumerate(rows.candidates, rows.start):
        if not cands:
            built.dropped["no usable completion"] += 1
        for c in cands:
            built.add(i, c.flat, c.score >= cfg.threshold - _EPS)


def _build_grpo(rows: Chunk, cfg: CurateConfig, built: Built) -> None:
    for i, usable in enumerate(rows.scored, rows.start):
        if not usable:
            built.dropped["no usable completion"] += 1
            continue
        built.add(i, [c.flat for c in usable], [c.score for c in usable])


def _build_stepwise(rows: Chunk, cfg: CurateConfig, built: Built) -> None:
    for i, (text, items) in enumerate(zip(rows.texts, rows.steps or [], strict=False), rows.start):
        if not items:
            built.dropped["no completion with matching step_scores"] += 1
        for item in items:
            built.prompts.append(text)  # type: ignore[union-attr]
            built.add(i, item.steps, [s >= cfg.step_threshold - _EPS for s in item.scores])


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


def _build_step_dpo(rows: Chunk, cfg: CurateConfig, built: Built) -> None:
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


BUILDERS: dict[str, Callable[[Chunk, CurateConfig, Built], None]] = {
    "dpo": _build_dpo,
    "sft": _build_sft,
    "kto": _build_kto,
    "grpo": _build_grpo,
    "step_dpo": _build_step_dpo,
    "stepwise": _build_stepwise,
}  # name -> add one chunk's rows
