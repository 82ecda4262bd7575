"""The input of :func:`hfpref.curate.curate`: scored rows, their columns checked, read and checked in
chunks of ``CHUNK_ROWS`` rows (row numbers in messages are 0-based, as ``ds[i]``).

Only one chunk is ever held as Python objects. What the configs need from every row stays in bytes
(a digest of each row's prompt key) or in totals (statistics, token usage, model counts); the texts of the
completions are never copied out of the input table: configs refer to them by flat index.
"""

from __future__ import annotations

import hashlib
import math
from array import array
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from hfpref.config import PROMPT_COLUMNS
from hfpref.errors import InputError
from hfpref.folder import prompt_key, split_hash
from hfpref.io import ArrowPages, arrow_pages
from hfpref.verdicts import split_steps

STEP_SEPARATOR = "\n\n"
CHUNK_ROWS = 1024  # input rows read into Python at a time: memory stays flat however many rows there are


@dataclass(slots=True)
class Candidate:
    index: int  # position in the row's completions
    flat: int  # position in the flattened completions column (output texts are taken from there)
    text: str
    score: float
    model: str | None


@dataclass(slots=True)
class Steps:
    index: int
    steps: list[str]
    scores: list[float]


@dataclass
class Chunk:
    """One chunk of the input (rows ``start`` on), read into Python lists and checked."""

    start: int
    texts: list[str]  # prompt as plain text
    candidates: list[list[Candidate]]  # usable, unique texts, best first
    scored: list[list[Candidate]]  # usable, input order, duplicates kept
    steps: list[list[Steps]] | None


def mean(values: Iterable[float], count: int) -> float | None:
    return round(sum(values) / count, 4) if count else None


def _arrow(ds: Any) -> ArrowPages:
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
    return arrow_pages(ds)


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
) -> list[Steps]:
    items = []
    for j, (text, scores) in enumerate(zip(texts, step_scores, strict=True)):
        if not isinstance(text, str) or not text.strip() or not scores:
            continue
        values = _scores(scores, row, len(scores), f"step_scores[{j}]")
        steps = steps_col[j] if steps_col is not None and steps_col[j] is not None else split_steps(text)
        if any(v is None for v in values) or len(steps) != len(values):
            continue  # a step count that disagrees with the judge's cannot be lined up
        items.append(Steps(j, [s.strip() for s in steps], values))  # type: ignore[arg-type]
    return items


class Usage:
    """Tokens, cost (None = unknown), truncations and failures from the ``generation`` column."""

    def __init__(self) -> None:
        self.counts = dict.fromkeys(["prompt_tokens", "completion_tokens", "truncated", "failed"], 0)
        self.cost: float | None = 0.0

    def add(self, generation: Iterable[list[Any] | None]) -> None:
        """Add the ``generation`` records of some rows."""
        usage = self.counts
        for meta in (m for row in generation for m in row or [] if isinstance(m, dict)):
            usage["prompt_tokens"] += meta.get("prompt_tokens") or 0
            usage["completion_tokens"] += meta.get("completion_tokens") or 0
            usage["truncated"] += meta.get("finish_reason") == "length"
            usage["failed"] += bool(meta.get("error"))
            if meta.get("cost") is None and not meta.get("error"):
                self.cost = None  # one unknown price makes the total unknown, never a smaller number
            elif self.cost is not None:
                self.cost += meta.get("cost") or 0.0

    def result(self) -> dict[str, Any]:
        return {**self.counts, "cost_usd": None if self.cost is None else round(self.cost, 6)}


class ScoredInput:
    """The input table, its columns checked; :meth:`read` yields it in chunks of rows and keeps what the
    configs need from every row: prompt keys, statistics, token usage, model counts."""

    def __init__(self, ds: Any, style: str, seed: int = 0, *, usage: bool = True) -> None:
        self.pages = _arrow(ds)  # release() after each pass: the input's file pages leave the RSS
        table = self.pages.table
        names = table.column_names
        prompt_name = next((c for c in PROMPT_COLUMNS if c in names), None)
        if prompt_name is None:
            raise InputError(f"input has no prompt column (prompt, input or question); columns: {names}")
        for needed, hint in (("completions", "generate completions first"), ("scores", "judge them first")):
            if needed not in names:
                raise InputError(f"input has no `{needed}` column ({hint}); columns: {names}")
        prompt_type = table.schema.field(prompt_name).type
        self.conversational = pa.types.is_list(prompt_type) or pa.types.is_large_list(prompt_type)
        if not self.conversational and not (
            pa.types.is_string(prompt_type) or pa.types.is_large_string(prompt_type)
        ):
            raise InputError(f"column {prompt_name}: expected strings or message lists, got {prompt_type}")
        completions_type = table.schema.field("completions").type
        if not (pa.types.is_list(completions_type) or pa.types.is_large_list(completions_type)) or not (
            pa.types.is_string(completions_type.value_type)
            or pa.types.is_large_string(completions_type.value_type)
        ):
            raise InputError(f"column completions: expected lists of strings, got {completions_type}")
        if not table.num_rows:
            raise InputError("input has no rows")
        self.table = table
        self.prompt_name = prompt_name
        self.prompt_column = table.column(prompt_name)
        self.nested = table.column("completions")
        self.has_steps = "step_scores" in names
        self.usage = Usage() if usage and "generation" in names else None  # False: given by the caller
        self.model_counts: Counter[str] = Counter()
        self.seed = seed
        self._ids = bytearray()  # each row's prompt as a 16-byte digest of its key
        self._ranks = array("Q")  # each row's prompt's split_hash
        # the plain text of message-list prompts, when a config writes them as strings
        self._texts: list[pa.Array] | None = [] if self.conversational and style != "conversational" else None
        self._scores = array("d")  # every usable score, in row order
        self._counts = dict.fromkeys(
            ["completions", "max_completions", "null_completions", "null_scores", "tied_rows"], 0
        )

    def read(self) -> Iterator[Chunk]:
        """Every row, checked, in chunks of ``CHUNK_ROWS``."""
        flat = 0  # flat index of the chunk's first completion
        for start in range(0, self.table.num_rows, CHUNK_ROWS):
            rows, flat = self._chunk(self.table.slice(start, CHUNK_ROWS), start, flat)
            yield rows
            self.pages.release()

    def _chunk(self, part: pa.Table, start: int, flat: int) -> tuple[Chunk, int]:
        names = part.column_names

        def col(name: str) -> list[Any] | None:
            return part.column(name).to_pylist() if name in names else None

        prompts, completions, scores = col(self.prompt_name), col("completions"), col("scores")
        models, step_scores, steps_col = col("completion_models"), col("step_scores"), col("steps")
        texts, keys, candidates, scored, steps = [], [], [], [], []
        counts = self._counts
        for i, (prompt, comps) in enumerate(zip(prompts, completions, strict=True), start):  # type: ignore[arg-type]
            k = i - start
            texts.append(_prompt_text(prompt, i))
            keys.append(prompt_key(prompt))
            comps, first = comps or [], flat
            flat += len(comps)
            row_scores = _scores(scores[k], i, len(comps))  # type: ignore[index]
            row_models = (
                _list(models[k], i, "completion_models", len(comps)) if models else [None] * len(comps)
            )
            usable, seen = [], set()
            for j, (comp, score) in enumerate(zip(comps, row_scores, strict=True)):
                if not isinstance(comp, str) or not comp.strip():
                    counts["null_completions"] += 1
                elif score is None:
                    counts["null_scores"] += 1
                else:
                    usable.append(Candidate(j, first + j, comp, score, row_models[j]))
            scored.append(usable)
            unique = [c for c in usable if not (c.text in seen or seen.add(c.text))]  # type: ignore[func-returns-value]
            candidates.append(sorted(unique, key=lambda c: (-c.score, c.index)))
            if step_scores is not None:
                row_steps = _list(step_scores[k], i, "step_scores", len(comps))
                row_texts = _list(steps_col[k], i, "steps", len(comps)) if steps_col else None
                steps.append(_step_items(i, comps, row_steps, row_texts))
        self.model_counts.update(m for row in models or [] for m in row or [] if m)
        if self.usage is not None:
            self.usage.add(col("generation"))  # type: ignore[arg-type]
        self._ids += b"".join(hashlib.blake2b(k.encode(), digest_size=16).digest() for k in keys)
        self._ranks.extend(split_hash(self.seed, k) for k in keys)
        if self._texts is not None:
            self._texts.append(pa.array(texts, pa.string()))
        self._scores.extend(c.score for row in scored for c in row)
        counts["completions"] += sum(len(c or []) for c in completions)  # type: ignore[union-attr]
        counts["max_completions"] = max(
            counts["max_completions"],
            max((len(c or []) for c in completions), default=0),  # type: ignore[union-attr]
        )
        counts["tied_rows"] += sum(1 for row in candidates if len(row) >= 2 and row[0].score == row[-1].score)
        return Chunk(start, texts, candidates, scored, steps if step_scores is not None else None), flat

    def prompt_ids(self) -> tuple[np.ndarray, np.ndarray]:
        """(the :func:`~hfpref.folder.split_hash` of each distinct prompt, in order of first appearance;
        each row's index into them), after :meth:`read`. Prompts are told apart by a 16-byte digest of
        their key, so the keys are never all held; numpy's sort-based ``unique`` needs a few bytes per
        row where a hash table would need tens."""
        digests = np.frombuffer(self._ids, dtype=[("high", "<u8"), ("low", "<u8")])
        _, first, ids = np.unique(digests, return_index=True, return_inverse=True)
        order = np.argsort(first)  # the distinct prompts in order of first appearance
        number = np.empty_like(order)
        number[order] = np.arange(len(order))
        return np.frombuffer(self._ranks, dtype=np.uint64)[first[order]], number[ids]

    def texts(self) -> pa.Array | pa.ChunkedArray:
        """The prompt of each row as plain text (after :meth:`read`)."""
        if self._texts is None:  # string prompts are their own text
            return self.prompt_column.cast(pa.string())
        return pa.concat_arrays(self._texts)

    def stats(self, prompts: int) -> dict[str, Any]:
        """What ``hfpref.json`` records about the input (after :meth:`read`)."""
        all_scores = self._scores
        average = mean(all_scores, len(all_scores))
        counts = self._counts
        return {
            "rows": self.table.num_rows,
            "prompts": prompts,
            "completions": counts["completions"],
            "max_completions": counts["max_completions"],
            "null_completions": counts["null_completions"],
            "null_scores": counts["null_scores"],
            "mean_score": average,
            "score_std": round(math.sqrt(sum((s - average) ** 2 for s in all_scores) / len(all_scores)), 4)
            if all_scores
            else None,
            "tied_rows": counts["tied_rows"],
        }
