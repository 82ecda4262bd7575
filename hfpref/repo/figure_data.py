"""What the card's figures show, as numbers: computed once from a folder's provenance and its ``dpo``
shards, stored in ``hfpref.json`` (``figures``), drawn by :mod:`hfpref.repo.figures`, written under
each figure in the card and printed by ``hfpref report``.

The figures (:data:`FIGURES`): the score distribution per generator model (``scores``), who is chosen
over whom in the DPO pairs (``wins``), the judge's reliability (``judge``), the chosen-minus-rejected
margins (``margins``), tokens and cost per model (``usage``) and, after ``hfpref judge --calibrate``,
the judge's calibration against human labels (``calibration``). A figure without data is not drawn:
``missing`` says why, and so does the card.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from hfpref.repo.measures import mean_interval, proportion, table_kappa
from hfpref.repo.provenance import Provenance

IMAGES = "images"
MAX_MODELS = 12  # models shown in a figure (those with the most completions or pairs)


class Figure(NamedTuple):
    file: str  # under IMAGES/
    title: str
    caption: str  # one line: what to look for


FIGURES = {
    "scores": Figure(
        "scores_by_model.png",
        "Score distribution per generator model",
        "Look for models whose scores pile up at the top (they are chosen more often) and for scores "
        "spread over the range: a judge that gives most completions the same score tells them apart poorly.",
    ),
    "wins": Figure(
        "win_matrix.png",
        "Who is chosen over whom in the DPO pairs",
        "Each cell counts the pairs whose chosen completion is by the row's model and whose rejected one "
        "is by the column's: a row darker than the matching column means that model wins more than it loses.",
    ),
    "judge": Figure(
        "judge_reliability.png",
        "Judge reliability",
        "Look for inconsistent verdicts under swapped order well above 0 and a first-position win rate "
        "whose interval leaves out 0.5 (position bias), and for low agreement between panel judges.",
    ),
    "margins": Figure(
        "margins.png",
        "Chosen-minus-rejected margins of the DPO pairs",
        "Pairs near 0 are near ties that the judge barely decided; a larger `min_margin` leaves them out.",
    ),
    "usage": Figure(
        "usage_by_model.png",
        "Tokens and cost per generator model",
        "Where the tokens and the money went: compare each model's share with its scores above.",
    ),
    "calibration": Figure(
        "judge_calibration.png",
        "Judge calibration against human preferences",
        "Points on the diagonal mean a completion the judge scores x is the human-preferred one x of the "
        "time; points below it mean an overconfident judge, the bars how many scores fall in each bin.",
    ),
}


def figure_statistics(provenance: Provenance, dpo_shards: Sequence[Path] = ()) -> dict[str, Any]:
    """The statistics of every figure that has data, and in ``missing`` why the others have none;
    ``dpo_shards``: the parquet files of the folder's ``dpo`` config (every split)."""
    stats: dict[str, Any] = {}
    missing: dict[str, str] = {}
    pairs = _dpo_pairs(dpo_shards)
    for name, (make, why) in _MAKERS.items():
        value = make(provenance, pairs)
        if value is None:
            missing[name] = why
        else:
            stats[name] = value
    stats["missing"] = missing
    return stats


class _Pairs(NamedTuple):
    """What the figures need of the ``dpo`` pairs: their number, (chosen model, rejected model) → pairs
    for those that name both, and every margin (8 bytes a pair, as curate keeps of each row)."""

    rows: int
    models: Counter[tuple[str, str]]
    margins: np.ndarray


def _dpo_pairs(shards: Sequence[Path]) -> _Pairs:
    """Read the models and margins of the ``dpo`` shards a batch at a time, nothing else."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    rows, models, margins = 0, Counter[tuple[str, str]](), []
    for path in shards:
        shard = pq.ParquetFile(path)
        names = [c for c in ("chosen_model", "rejected_model", "margin") if c in shard.schema_arrow.names]
        for batch in shard.iter_batches(columns=names, batch_size=65536):
            rows += batch.num_rows
            if "chosen_model" in names and "rejected_model" in names:
                keys = pc.binary_join_element_wise(batch["chosen_model"], batch["rejected_model"], "\0")
                for found in pc.value_counts(keys.drop_null()).to_pylist():
                    chosen, rejected = found["values"].split("\0")
                    models[(chosen, rejected)] += found["counts"]
            if "margin" in names:
                margins.append(batch["margin"].drop_null().to_numpy(zero_copy_only=False).astype(np.float64))
    return _Pairs(rows, models, np.concatenate(margins) if margins else np.zeros(0))


def _scores(prov: Provenance, pairs: _Pairs) -> dict[str, Any] | None:
    models = [m for m in (prov.generation or {}).get("models", []) if m.get("scored")]
    if not models:
        return None
    models = sorted(models, key=lambda m: (-m.get("completions", 0), m["id"]))[:MAX_MODELS]
    return {
        "models": [
            {"id": m["id"], "scored": m["scored"], "mean": m["mean_score"], "histogram": m["score_histogram"]}
            for m in models
        ]
    }


def _wins(prov: Provenance, pairs: _Pairs) -> dict[str, Any] | None:
    if not pairs.models:
        return None
    seen: Counter[str] = Counter()
    for (chosen, rejected), count in pairs.models.items():
        seen[chosen] += count
        seen[rejected] += count
    models = sorted(seen, key=lambda m: (-seen[m], m))[:MAX_MODELS]
    counts = [[pairs.models[(chosen, rejected)] for rejected in models] for chosen in models]
    named = sum(pairs.models.values())
    return {
        "models": models,
        "counts": counts,
        "pairs": named,
        "unnamed": pairs.rows - named,
        "left_out_models": len(seen) - len(models),
    }


def _margin_edges(values: np.ndarray) -> np.ndarray:
    """Histogram edges: 20 bins over [0, 1] for score differences, one bin per value for a few whole
    numbers (an importer's preference strengths), else 20 bins over the values' range."""
    low, high = float(values.min()), float(values.max())
    if low >= 0 and high <= 1:
        return np.linspace(0.0, 1.0, 21)
    if np.all(values == np.round(values)) and high - low <= 20:
        return np.arange(low - 0.5, high + 1.0, 1.0)
    return np.linspace(low, high, 21) if high > low else np.array([low - 0.5, low + 0.5])


def _margins(prov: Provenance, pairs: _Pairs) -> dict[str, Any] | None:
    values = pairs.margins
    if not len(values):
        return None
    edges = _margin_edges(values)
    counts, _ = np.histogram(values, bins=edges)
    return {
        "edges": [round(float(e), 4) for e in edges],
        "counts": [int(c) for c in counts],
        "pairs": len(values),
        "mean": round(float(values.mean()), 4),
        "median": round(float(np.median(values)), 4),
    }


def _usage(prov: Provenance, pairs: _Pairs) -> dict[str, Any] | None:
    models = [m for m in (prov.generation or {}).get("models", []) if "prompt_tokens" in m]
    if not models or not any(m["prompt_tokens"] or m["completion_tokens"] for m in models):
        return None
    models = sorted(models, key=lambda m: (-(m["prompt_tokens"] + m["completion_tokens"]), m["id"]))
    keys = ("id", "prompt_tokens", "completion_tokens", "cost_usd")
    return {"models": [{key: m.get(key) for key in keys} for m in models[:MAX_MODELS]]}


def _rate(name: str, label: str, measured: dict[str, Any] | None) -> list[dict[str, Any]]:
    return [{"name": name, "label": label, **measured}] if measured else []


def _judge(prov: Provenance, pairs: _Pairs) -> dict[str, Any] | None:
    """The judge's reliability: from the dataset's judge records (inconsistent verdicts under swapped
    order, unparsed answers, first-position win rate, panel agreement and kappa) and, after a
    calibration, against human labels (agreement, first-position win rate, kappa between the panel's
    judges); ``unmeasured``: what neither tells, and why."""
    judge = prov.judge or {}
    stats, totals = judge.get("statistics") or {}, judge.get("totals") or {}
    calibration = prov.calibration or {}
    panel = len(judge.get("models", [])) > 1
    items = []
    if totals.get("pairs") and judge.get("swap") is not False:
        measured = proportion(totals["inconsistent_pairs"], totals["pairs"])
        items += _rate("inconsistent", "Inconsistent verdicts under swapped order", measured)
    if totals.get("verdicts"):
        measured = proportion(totals["parse_failures"], totals["verdicts"])
        items += _rate("unparsed", "Judge answers that could not be read", measured)
    first = proportion(totals.get("first_position_wins", 0), totals.get("decisive_verdicts", 0))
    items += _rate("position", "First-position win rate (0.5 = no position bias)", first)
    if panel and stats.get("agreement") is not None:
        rows = totals.get("agreement_rows", 0)
        low, high = mean_interval(rows, stats["agreement"], totals.get("agreement_std", 0.0))
        agreement = {"rate": round(stats["agreement"], 4), "low": low, "high": high, "total": rows}
        items += _rate("agreement", "Agreement between panel judges (1 - mean score gap)", agreement)
    ours = table_kappa(totals["panel_table"], totals["panel_judges"]) if "panel_table" in totals else None
    if ours and ours["value"] is not None:
        items += _rate("panel_kappa", f"{ours['kind']} between the panel's judges", _kappa_rate(ours))
    items += _rate(
        "human_agreement", "Calibration: agreement with human preferences", calibration.get("human_agreement")
    )
    items += _rate(
        "first_position",
        "Calibration: first-position win rate (0.5 = no position bias)",
        calibration.get("first_position"),
    )
    kappa = calibration.get("kappa") or {}
    if kappa.get("value") is not None:
        items += _rate(
            "kappa", f"Calibration: {kappa['kind']} between the panel's judges", _kappa_rate(kappa)
        )
    if not items:
        return None
    unmeasured = []
    if "pairwise" in judge.get("mode", "") and not first and not calibration.get("first_position"):
        why = (
            "no verdict of the judge records named a winner"
            if "decisive_verdicts" in totals
            else "the judge records, written by an older hfpref, keep how many pairs got inconsistent "
            "verdicts, not which position won"
        )
        unmeasured.append(
            f"First-position win rate: not measured: {why}; `hfpref judge --calibrate` measures it."
        )
    if panel and not (ours and ours["value"] is not None) and not kappa:
        unmeasured.append(f"Kappa between the panel's judges: not measured: {_no_kappa(judge, ours)}.")
    return {"items": items, "unmeasured": unmeasured}


def _no_kappa(judge: Mapping[str, Any], ours: Mapping[str, Any] | None) -> str:
    """Why the judge records of a panel give no kappa."""
    if ours:
        return "every judge gave every pair one and the same outcome, so chance agreement is total"
    if "panel_table" in (judge.get("totals") or {}):
        return "no pair was decided by every judge of the panel"
    if "pairwise" in judge.get("mode", ""):
        why = "the judge records keep no counts of each judge's verdicts for one panel (written by an "
        why += "older hfpref, or by panels of different sizes)"
    else:
        why = "the judge records keep the panel's agreement, not each judge's verdict"
    return why + "; `hfpref judge --calibrate` measures it"


def _kappa_rate(kappa: Mapping[str, Any]) -> dict[str, Any]:
    return {"rate": kappa["value"], "total": kappa["items"]}


def _calibration(prov: Provenance, pairs: _Pairs) -> dict[str, Any] | None:
    calibration = prov.calibration or {}
    bins = (calibration.get("reliability") or {}).get("bins")
    if not bins:
        return None
    keys = ("labelled", "pairs", "judge", "human_agreement", "first_position", "kappa", "reliability")
    return {key: calibration.get(key) for key in keys}


_MAKERS = {
    "scores": (_scores, "the data names no generator model with scored completions (`completion_models`)"),
    "wins": (_wins, "no `dpo` pair names the models of both its completions"),
    "judge": (_judge, "no judge records (`judge` column) and no calibration"),
    "margins": (_margins, "no `dpo` pair has a margin"),
    "usage": (_usage, "no `generation` records with tokens per model"),
    "calibration": (_calibration, "the judge was not calibrated (`hfpref judge --calibrate LABELLED`)"),
}


def _cost(value: float | None) -> str:
    return "unknown" if value is None else f"${value:,.4f}"


def rate_line(item: Mapping[str, Any]) -> str:
    """One rate for a reader: the value, its 95% interval and what it counts, as far as known."""
    text = f"{item['label']}: {item['rate']:.3f}"
    if item.get("low") is not None:
        text += f" (95% CI {item['low']:.3f}-{item['high']:.3f}"
        text += (
            f", {item['hits']:,} of {item['total']:,})" if "hits" in item else f", {item['total']:,} rows)"
        )
    elif item.get("total"):
        text += f" ({item['total']:,} pairs)"
    return text


def _win_lines(wins: Mapping[str, Any]) -> list[str]:
    counts, models = wins["counts"], wins["models"]
    lines = []
    for i, model in enumerate(models):
        won = sum(counts[i][j] for j in range(len(models)) if j != i)
        lost = sum(counts[j][i] for j in range(len(models)) if j != i)
        if won + lost:
            lines.append(
                f"`{model}`: chosen in {won:,} of the {won + lost:,} pairs against another model ({won / (won + lost):.3f})"
            )
        if counts[i][i]:
            lines.append(f"`{model}`: {counts[i][i]:,} pairs of two of its own completions")
    if wins["unnamed"]:
        lines.append(f"{wins['unnamed']:,} pairs do not name both models and are not counted")
    if wins["left_out_models"]:
        lines.append(f"{wins['left_out_models']:,} models with fewer pairs are left out")
    return lines


def _calibration_lines(calibration: Mapping[str, Any]) -> list[str]:
    judge = calibration.get("judge") or {}
    models = ", ".join(f"`{m}`" for m in judge.get("models", []))
    lines = [
        f"{calibration['pairs']:,} human-labelled pairs from `{calibration['labelled']}`, judged by {models} "
        f"({judge.get('mode')})"
    ]
    agreement = calibration.get("human_agreement")
    if agreement:
        lines.append(rate_line({"label": "Agreement with the human preference", **agreement}))
    reliability = calibration["reliability"]
    lines.append(f"Expected calibration error: {reliability['ece']:.3f}")
    return lines


def figure_notes(stats: Mapping[str, Any]) -> dict[str, list[str]]:
    """The numbers written under each figure in the card and printed by ``hfpref report``."""
    notes: dict[str, list[str]] = {}
    if "scores" in stats:
        notes["scores"] = [
            f"`{m['id']}`: {m['scored']:,} scored completions, mean score {m['mean']:.3f}"
            for m in stats["scores"]["models"]
        ]
    if "wins" in stats:
        notes["wins"] = _win_lines(stats["wins"])
    if "judge" in stats:
        notes["judge"] = [rate_line(item) for item in stats["judge"]["items"]] + stats["judge"]["unmeasured"]
    if "margins" in stats:
        m = stats["margins"]
        notes["margins"] = [f"{m['pairs']:,} pairs, mean margin {m['mean']:.3f}, median {m['median']:.3f}"]
    if "usage" in stats:
        notes["usage"] = [
            f"`{m['id']}`: {m['prompt_tokens']:,} prompt and {m['completion_tokens']:,} completion tokens, "
            f"cost {_cost(m['cost_usd'])}"
            for m in stats["usage"]["models"]
        ]
    if "calibration" in stats:
        notes["calibration"] = _calibration_lines(stats["calibration"])
    return notes
