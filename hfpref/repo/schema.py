"""The configs of a dataset folder: their columns in order, Arrow types and statistics.

Every config (``dpo``, ``sft``, ``kto``, ``grpo``, ``step_dpo``, ``stepwise``) has the columns of
:data:`COLUMN_ORDER` (TRL's names), typed as :data:`TYPES` says; a prompt, and in conversational style
a completion, is a :data:`MESSAGES` list instead of a string. Step configs are plain strings in both
styles: their prompt is the prompt text followed by the correct steps so far (:func:`step_prompt`).
``hfpref curate`` builds configs to this layout, importers write it, export and validate read it, and
:func:`config_statistics` says what ``hfpref.json`` and the card record about each.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

STEP_SEPARATOR = "\n\n"  # between message contents (standard style) and between steps
STEP_CONFIGS = frozenset({"step_dpo", "stepwise"})  # explicit prompts: step texts, plain strings
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
TEXT_COLUMNS = ("chosen", "rejected", "completion")  # one assistant message each in conversational style
MESSAGES = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))  # a chat


def step_prompt(text: str, prefix: list[str]) -> str:
    """The prompt of a step_dpo row: the prompt text, then each correct prefix step, each followed by a
    blank line."""
    return text + STEP_SEPARATOR + "".join(step + STEP_SEPARATOR for step in prefix)


def mean(values: Iterable[float], count: int) -> float | None:
    """The mean of ``count`` values, to 4 decimals; None when there are none."""
    return round(sum(values) / count, 4) if count else None


def _arrays(parts: Sequence[pa.Table], name: str, *, items: bool = False) -> list[pa.ChunkedArray]:
    """Column ``name`` of each part (``items``: the items of its lists)."""
    return [pc.list_flatten(part.column(name)) if items else part.column(name) for part in parts]


def _known_mean(parts: Sequence[pa.Table], name: str, *, items: bool = False) -> float | None:
    """The mean of the non-null values of a column over ``parts``, one part at a time."""
    arrays = _arrays(parts, name, items=items)
    count = sum(len(array) - array.null_count for array in arrays)
    return mean((v for array in arrays for v in array.to_pylist() if v is not None), count)


def _values(parts: Sequence[pa.Table], name: str) -> Iterator[Any]:
    for array in _arrays(parts, name):
        yield from array.to_pylist()


def _dpo(parts: Sequence[pa.Table], rows: int) -> dict[str, Any]:
    return {
        "mean_score_chosen": _known_mean(parts, "score_chosen"),
        "mean_score_rejected": _known_mean(parts, "score_rejected"),
        "mean_margin": _known_mean(parts, "margin"),
    }


def _sft(parts: Sequence[pa.Table], rows: int) -> dict[str, Any]:
    return {"mean_score": _known_mean(parts, "score")}


def _kto(parts: Sequence[pa.Table], rows: int) -> dict[str, Any]:
    desirable = sum(_values(parts, "label"))
    return {"desirable": desirable, "undesirable": rows - desirable}


def _grpo(parts: Sequence[pa.Table], rows: int) -> dict[str, Any]:
    lengths = (n for part in parts for n in pc.list_value_length(part.column("scores")).to_pylist())
    return {"mean_completions": mean(lengths, rows), "mean_score": _known_mean(parts, "scores", items=True)}


def _stepwise(parts: Sequence[pa.Table], rows: int) -> dict[str, Any]:
    steps = sum(len(array) for array in _arrays(parts, "labels", items=True))
    return {"steps": steps, "correct_steps": _known_mean(parts, "labels", items=True)}


def _step_dpo(parts: Sequence[pa.Table], rows: int) -> dict[str, Any]:
    return {"mean_step_index": _known_mean(parts, "step_index")}


_STATISTICS: dict[str, Callable[[Sequence[pa.Table], int], dict[str, Any]]] = {
    "dpo": _dpo,
    "sft": _sft,
    "kto": _kto,
    "grpo": _grpo,
    "step_dpo": _step_dpo,
    "stepwise": _stepwise,
}


def config_statistics(
    name: str, parts: Sequence[pa.Table], prompts: int, dropped: Counter[str]
) -> dict[str, Any]:
    """What ``hfpref.json`` records about config ``name`` from its rows (``parts``: tables holding its
    score, label and step columns, read one at a time): rows, ``prompts`` (distinct), the config's own
    means and counts (of known values: a score may be null in imported data) and the input rows or
    records that gave it no row (``dropped``, most frequent reason first)."""
    rows = sum(part.num_rows for part in parts)
    return {
        "rows": rows,
        "prompts": prompts,
        **_STATISTICS[name](parts, rows),
        "dropped": dict(dropped.most_common()),
    }
