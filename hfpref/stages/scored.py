"""The input of :func:`hfpref.stages.curate.curate`: scored rows, their columns checked, read and checked in
chunks of ``CHUNK_ROWS`` rows (row numbers in messages are 0-based, as ``ds[i]``).

Only one chunk is ever held as Python objects. What the configs need from every row stays in bytes
(a digest of each row's prompt key; with ``reasoning``, each completion's index into the reasoning texts)
or in totals (statistics, token usage, model counts); the texts of the completions and of their reasoning
are never copied out of the input table: configs refer to them by flat index.

The columns ``generate`` and ``judge`` add also tell how the data was made: :meth:`ScoredInput.made`
reads the generation models, requests and usage, and the judge's models, mode and statistics, from them
(a :class:`~hfpref.repo.provenance.Provenance` that completes the caller's).
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
from hfpref.repo.folder import prompt_key, split_hash
from hfpref.repo.measures import SCORE_BINS, score_bin
from hfpref.repo.provenance import (
    GenerationSection,
    InputStatistics,
    JudgeSection,
    ModelEntry,
    Provenance,
    TokenUsage,
)
from hfpref.repo.schema import STEP_SEPARATOR, mean
from hfpref.stages.io import ArrowPages, arrow_pages
from hfpref.stages.verdicts import split_steps

CHUNK_ROWS = 1024  # input rows read into Python at a time: memory stays flat however many rows there are
# the fields of a `judge` record that ScoredInput.made reads (judge_statistics, models, mode)
JUDGE_FIELDS = frozenset(
    [
        "mode",
        "models",
        "calls",
        "verdicts",
        "parse_failures",
        "pairs",
        "inconsistent_pairs",
        "agreement",
        "cost",
    ]
)
# the counts behind the judge's rates, summed over its records: the intervals of the card's figures
# (the last two, and `panel_table`, are not in the records of an older hfpref: then they are not summed)
TOTALS = (
    "verdicts",
    "parse_failures",
    "pairs",
    "inconsistent_pairs",
    "first_position_wins",
    "decisive_verdicts",
)


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


def _is_list_of_text(kind: pa.DataType) -> bool:
    """Whether ``kind`` is a list of strings (or of nulls only: a column that holds no text yet)."""
    if not (pa.types.is_list(kind) or pa.types.is_large_list(kind)):
        return False
    value = kind.value_type
    return pa.types.is_string(value) or pa.types.is_large_string(value) or pa.types.is_null(value)


def _thoughts(row: int, reasoning: Any, length: int, first: int) -> Iterator[int]:
    """For each completion of a row, the flat index of its reasoning when that is non-blank text, else
    -1; ``first``: the flat index of the row's first reasoning entry."""
    for j, thought in enumerate(_list(reasoning, row, "reasoning", length)):
        yield first + j if isinstance(thought, str) and thought.strip() else -1


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
    """Tokens, cost (None = unknown), truncations and failures from the ``generation`` column, and how
    many records (completions asked for) it holds; tokens and cost also per model (``by_model``)."""

    def __init__(self) -> None:
        self.counts = dict.fromkeys(["prompt_tokens", "completion_tokens", "truncated", "failed"], 0)
        self.cost: float | None = 0.0
        self.records = 0
        self.by_model: dict[str, dict[str, Any]] = {}
        self.batch_completions = 0
        self.batch_ids: set[str] = set()

    def add(self, generation: Iterable[list[Any] | None]) -> None:
        """Add the ``generation`` records of some rows."""
        usage = self.counts
        for meta in (m for row in generation for m in row or [] if isinstance(m, dict)):
            self.records += 1
            usage["prompt_tokens"] += meta.get("prompt_tokens") or 0
            usage["completion_tokens"] += meta.get("completion_tokens") or 0
            usage["truncated"] += meta.get("finish_reason") == "length"
            usage["failed"] += bool(meta.get("error"))
            if meta.get("batch_id"):
                self.batch_completions += 1
                self.batch_ids.add(meta["batch_id"])
            unknown = meta.get("cost") is None and not meta.get("error")
            if unknown:
                self.cost = None  # one unknown price makes the total unknown, never a smaller number
            elif self.cost is not None:
                self.cost += meta.get("cost") or 0.0
            if meta.get("model"):
                model = self.by_model.setdefault(
                    meta["model"], {"prompt_tokens": 0, "completion_tokens": 0, "cost": 0.0}
                )
                model["prompt_tokens"] += meta.get("prompt_tokens") or 0
                model["completion_tokens"] += meta.get("completion_tokens") or 0
                model["cost"] = (
                    None if unknown or model["cost"] is None else model["cost"] + (meta.get("cost") or 0.0)
                )

    def result(self) -> TokenUsage:
        batched = {"batch_completions": self.batch_completions, "batches": len(self.batch_ids)}
        return TokenUsage(
            **self.counts,
            cost_usd=None if self.cost is None else round(self.cost, 6),
            **(batched if self.batch_completions else {}),
        )


class ScoredInput:
    """The input table, its columns checked; :meth:`read` yields it in chunks of rows and keeps what the
    configs need from every row: prompt keys, statistics, token usage, model counts and, with
    ``reasoning``, where each completion's reasoning is (a ``reasoning`` column is optional: a dataset
    without one has none)."""

    def __init__(self, ds: Any, style: str, seed: int = 0, *, reasoning: bool = False) -> None:
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
        if not _is_list_of_text(completions_type) or pa.types.is_null(completions_type.value_type):
            raise InputError(f"column completions: expected lists of strings, got {completions_type}")
        self.inline_reasoning = reasoning
        self.reasoning: pa.ChunkedArray | None = None  # read only when it is written
        if reasoning and "reasoning" in names and not pa.types.is_null(table.schema.field("reasoning").type):
            if not _is_list_of_text(table.schema.field("reasoning").type):
                raise InputError(
                    "column reasoning: expected lists of strings or nulls, one per completion, got "
                    f"{table.schema.field('reasoning').type}"
                )
            self.reasoning = table.column("reasoning")
        if not table.num_rows:
            raise InputError("input has no rows")
        self.table = table
        self.prompt_name = prompt_name
        self.prompt_column = table.column(prompt_name)
        self.nested = table.column("completions")
        self.has_steps = "step_scores" in names
        self.usage = Usage() if "generation" in names else None
        self.model_counts: Counter[str] = Counter()
        self.model_scores: dict[str, dict[str, Any]] = {}  # model → scored completions, score sum, histogram
        self.seed = seed
        self._ids = bytearray()  # each row's prompt as a 16-byte digest of its key
        self._ranks = array("Q")  # each row's prompt's split_hash
        # the plain text of message-list prompts, when a config writes them as strings
        self._texts: list[pa.Array] | None = [] if self.conversational and style != "conversational" else None
        self._scores = array("d")  # every usable score, in row order
        self._thoughts = array("q")  # each completion's flat index into the reasoning texts, -1: none
        self._thought_count = 0  # reasoning entries read so far (the flat index of the next row's first)
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
        thoughts = col("reasoning") if self.reasoning is not None else None
        texts, keys, candidates, scored, steps = [], [], [], [], []
        counts = self._counts
        for i, (prompt, comps) in enumerate(zip(prompts, completions, strict=True), start):  # type: ignore[arg-type]
            k = i - start
            texts.append(_prompt_text(prompt, i))
            keys.append(prompt_key(prompt))
            comps, first = comps or [], flat
            flat += len(comps)
            if thoughts is not None:
                self._thoughts.extend(_thoughts(i, thoughts[k], len(comps), self._thought_count))
                self._thought_count += len(thoughts[k] or [])
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
            self._add_model_scores(usable)
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

    def _add_model_scores(self, usable: list[Candidate]) -> None:
        for c in usable:
            if c.model:
                entry = self.model_scores.setdefault(
                    c.model, {"scored": 0, "sum": 0.0, "histogram": [0] * SCORE_BINS}
                )
                entry["scored"] += 1
                entry["sum"] += c.score
                entry["histogram"][score_bin(c.score)] += 1

    def _model_entry(self, model: str, completions: int) -> ModelEntry:
        """What the columns tell of one generator model: its completions, the scores of its usable ones
        (count, mean, histogram in ``SCORE_BINS`` bins) and, from the ``generation`` records, its tokens
        and cost (None: unknown)."""
        entry: ModelEntry = {"id": model, "completions": completions}
        scores = self.model_scores.get(model)
        if scores:
            entry["scored"] = scores["scored"]
            entry["mean_score"] = round(scores["sum"] / scores["scored"], 4)
            entry["score_histogram"] = scores["histogram"]
        usage = self.usage.by_model.get(model) if self.usage is not None else None
        if usage is not None:
            entry["prompt_tokens"] = usage["prompt_tokens"]
            entry["completion_tokens"] = usage["completion_tokens"]
            entry["cost_usd"] = None if usage["cost"] is None else round(usage["cost"], 6)
        return entry

    def prompt_ids(self) -> tuple[np.ndarray, np.ndarray]:
        """(the :func:`~hfpref.repo.folder.split_hash` of each distinct prompt, in order of first appearance;
        each row's index into them), after :meth:`read`. Prompts are told apart by a 16-byte digest of
        their key, so the keys are never all held; numpy's sort-based ``unique`` needs a few bytes per
        row where a hash table would need tens."""
        digests = np.frombuffer(self._ids, dtype=[("high", "<u8"), ("low", "<u8")])
        _, first, ids = np.unique(digests, return_index=True, return_inverse=True)
        order = np.argsort(first)  # the distinct prompts in order of first appearance
        number = np.empty_like(order)
        number[order] = np.arange(len(order))
        return np.frombuffer(self._ranks, dtype=np.uint64)[first[order]], number[ids]

    def reasoning_texts(self) -> tuple[pa.ChunkedArray, np.ndarray] | None:
        """(every reasoning text, by flat index; each completion's flat index into them, -1 where it has
        no reasoning) after :meth:`read`; None when no completion has any or reasoning was not read."""
        if self.reasoning is None or not self._with_reasoning():
            return None
        texts = pa.chunked_array(
            [chunk.flatten() for chunk in self.reasoning.chunks], self.reasoning.type.value_type
        )
        return texts, np.frombuffer(self._thoughts, dtype=np.int64)

    def _values(self, name: str) -> Iterator[Any]:
        """The Python values of column ``name``, ``CHUNK_ROWS`` rows at a time (their pages given back)."""
        column = self.table.column(name)
        for start in range(0, len(column), CHUNK_ROWS):
            yield from column.slice(start, CHUNK_ROWS).to_pylist()
            self.pages.release()

    def made(self) -> Provenance:
        """How the data was made, as far as its columns tell (after :meth:`read`): ``generation`` (the
        models of ``completion_models`` with their completions, the most per row and, from the
        ``generation`` records, the requests and how many failed), ``usage`` (tokens and cost of the
        ``generation`` records) and ``judge`` (the models and mode of the ``judge`` records and their
        :func:`hfpref.stages.judge.judge_statistics`). A section the columns say nothing about is None."""
        generation: GenerationSection = {}
        if self.model_counts:
            generation["models"] = [self._model_entry(m, n) for m, n in sorted(self.model_counts.items())]
            generation["n"] = self._counts["max_completions"]
        if self.usage is not None:
            generation["completions"] = self.usage.records
            generation["failed"] = self.usage.counts["failed"]
        return Provenance(
            generation=generation or None,
            judge=self._judge(),
            usage=self.usage.result() if self.usage is not None else None,
        )

    def _judge(self) -> JudgeSection | None:
        """The judge's models (in order of first appearance), mode and statistics from a ``judge`` column of
        records; None without one (or with a column of that name that holds something else)."""
        from hfpref.stages.judge import judge_statistics

        kind = self.table.schema.field("judge").type if "judge" in self.table.column_names else None
        if kind is None or not pa.types.is_struct(kind) or not {f.name for f in kind} >= JUDGE_FIELDS:
            return None
        models: dict[str, None] = {}
        modes: dict[str, None] = {}
        totals = dict.fromkeys((name for name in TOTALS if kind.get_field_index(name) >= 0), 0)
        agreements = array("d")
        panel: dict[int, np.ndarray] = {}  # panel size → the sum of its rows' panel_table

        def records() -> Iterator[dict[str, Any]]:
            for record in self._values("judge"):
                if record is not None:
                    models.update(dict.fromkeys(record["models"] or []))
                    modes.update(dict.fromkeys([record["mode"]] if record["mode"] else []))
                    for name in totals:
                        totals[name] += record[name] or 0
                    if record["agreement"] is not None:
                        agreements.append(record["agreement"])
                    if record.get("panel_table"):
                        size = len(record["models"] or [])
                        panel[size] = panel.get(size, 0) + np.array(record["panel_table"], dtype=np.int64)
                    yield record

        statistics = judge_statistics(records(), (row or [] for row in self._values("scores")))
        if not modes:
            return None
        if agreements:  # the spread of the rows' panel agreement, for its interval
            average = math.fsum(agreements) / len(agreements)
            spread = math.sqrt(math.fsum((a - average) ** 2 for a in agreements) / len(agreements))
            totals |= {"agreement_rows": len(agreements), "agreement_std": round(spread, 6)}
        if len(panel) == 1:  # one panel size: its kappa is exact (panels of several sizes have none)
            [(size, table)] = panel.items()
            totals |= {"panel_judges": size, "panel_table": [int(n) for n in table]}
        return {
            "models": [{"id": m} for m in models],
            "mode": ", ".join(modes),
            "statistics": statistics,
            "totals": totals,
        }

    def texts(self) -> pa.Array | pa.ChunkedArray:
        """The prompt of each row as plain text (after :meth:`read`)."""
        if self._texts is None:  # string prompts are their own text
            return self.prompt_column.cast(pa.string())
        return pa.concat_arrays(self._texts)

    def stats(self, prompts: int) -> InputStatistics:
        """What ``hfpref.json`` records about the input (after :meth:`read`)."""
        all_scores = self._scores
        average = mean(all_scores, len(all_scores))
        counts = self._counts
        return InputStatistics(
            rows=self.table.num_rows,
            prompts=prompts,
            completions=counts["completions"],
            max_completions=counts["max_completions"],
            null_completions=counts["null_completions"],
            null_scores=counts["null_scores"],
            mean_score=average,
            score_std=round(math.sqrt(sum((s - average) ** 2 for s in all_scores) / len(all_scores)), 4)
            if all_scores
            else None,
            tied_rows=counts["tied_rows"],
            completions_with_reasoning=self._with_reasoning() if self.inline_reasoning else None,
        )

    def _with_reasoning(self) -> int:
        return int(np.count_nonzero(np.frombuffer(self._thoughts, dtype=np.int64) >= 0))
