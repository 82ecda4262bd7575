"""Judge calibration: ``hfpref judge --calibrate LABELLED`` measures the configured judge on pairs that
people labelled, and keeps the result for the cards of the data that judge then scores.

LABELLED holds preference pairs as the ``dpo`` config of the HelpSteer3 and UltraFeedback importers
writes them: ``prompt``, ``chosen`` (the completion people preferred) and ``rejected``, as strings or
message lists; a row file, a ``save_to_disk`` folder, a Hub id or a dataset folder (its ``dpo`` config).

What is measured:

- *agreement with people*: the configured judge (its panel, position swap and aggregation, as it scores
  data) scores each pair's two completions; it agrees when it scores ``chosen`` above ``rejected``.
- *position bias* (pairwise): every judge of the panel also sees each pair in both orders, one order at
  a time; the first-position win rate is the share of its decisive verdicts that went to the completion
  shown first (0.5: no bias), with its Wilson interval.
- *kappa between the panel's judges*: each judge's own verdict on each pair (chosen, rejected or tie;
  pairwise with swap: a tie when its two orders disagree), Cohen's kappa for two judges, Fleiss' for more.
- *reliability diagram*: each completion's score from the configured judge against whether people
  preferred it, in ten score bins, and the expected calibration error (ECE).

The per-judge, one-order requests are the very requests the configured judge sends (same prompt, model
and parameters), so with the request cache on, each is paid once.

Where the result goes: ``calibration/KEY.json`` (and the diagram, ``KEY.png``) in the cache folder,
``KEY`` a hash of every judge setting that changes a verdict (models, mode, the prompt's text, scale,
swap, aggregation, sampling, structured output, reasoning). ``hfpref run`` and ``hfpref curate -c``
look it up by their own judge settings: the card of data scored by that judge gets its calibration
with no flag to remember, and a judge whose prompt or models changed never gets another judge's.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from hfpref.config import JudgeConfig, RunConfig, cache_root, default_models
from hfpref.errors import InputError
from hfpref.repo.figure_data import rate_line
from hfpref.repo.measures import bin_labels, kappa, proportion, score_bin
from hfpref.stages.judge_modes import load_template

LABELS = {1.0: "chosen", 0.0: "rejected", 0.5: "tie"}


def effective_judge(judge: JudgeConfig) -> JudgeConfig:
    """``judge`` with its models filled in as :class:`~hfpref.stages.judge.Judge` fills them."""
    return judge if judge.models else dataclasses.replace(judge, models=default_models("HFPREF_JUDGE_MODEL"))


def judge_key(judge: JudgeConfig) -> str:
    """The hash of every setting of ``judge`` that changes a verdict (not its concurrency)."""
    judge = effective_judge(judge)
    settings = {
        "models": [m.id for m in judge.models],
        "mode": judge.mode,
        "prompt": load_template(judge.prompt, judge.mode),
        **{
            name: getattr(judge, name)
            for name in (
                "scale",
                "swap",
                "aggregate",
                "temperature",
                "max_tokens",
                "structured_output",
                "reasoning",
            )
        },
    }
    return hashlib.sha256(orjson.dumps(settings, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]


def calibration_path(judge: JudgeConfig, cache_dir: str | None = None) -> Path:
    """Where the calibration of ``judge`` is kept: ``calibration/KEY.json`` in the cache folder."""
    root = Path(cache_dir).expanduser() if cache_dir else cache_root()
    return root / "calibration" / f"{judge_key(judge)}.json"


def stored_calibration(judge: JudgeConfig, cache_dir: str | None = None) -> dict[str, Any] | None:
    """The calibration ``hfpref judge --calibrate`` stored for ``judge``; None when it was not calibrated."""
    path = calibration_path(judge, cache_dir)
    if not path.is_file():
        return None
    try:
        return orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as exc:
        raise InputError(f"{path}: not valid JSON ({exc}); run hfpref judge --calibrate again") from None


def _text(value: Any, row: int, column: str) -> str:
    """A completion as text: a string, or the content of the last message of a message list."""
    if isinstance(value, list) and value and isinstance(value[-1], dict):
        value = value[-1].get("content")
    if not isinstance(value, str) or not value.strip():
        raise InputError(
            f"LABELLED row {row}: `{column}` is not a completion (text or messages): {value!r:.80}"
        )
    return value


def load_labelled(source: str) -> list[dict[str, Any]]:
    """The labelled pairs of ``source`` as rows of ``prompt`` and ``completions`` = [chosen, rejected]."""
    from hfpref.repo.folder import CARD_FILE, folder_configs, read_shards
    from hfpref.stages.io import load_rows

    if (Path(source) / CARD_FILE).is_file():  # a dataset folder: its dpo config, every split
        splits = folder_configs(source).get("dpo")
        if not splits:
            raise InputError(f"{source}: a dataset folder without a `dpo` config")
        records = [r for files in splits.values() for r in read_shards(files).to_pylist()]
    else:
        ds = load_rows(source)
        missing = sorted({"prompt", "chosen", "rejected"} - set(ds.column_names))
        if missing:
            raise InputError(
                f"{source}: no column(s) {missing}; LABELLED needs prompt, chosen (the human-preferred "
                "completion) and rejected, as the dpo config of hfpref's importers"
            )
        records = ds.select_columns(["prompt", "chosen", "rejected"]).to_list()
    if not records:
        raise InputError(f"{source}: no labelled pairs")
    return [
        {
            "prompt": r["prompt"],
            "completions": [_text(r["chosen"], i, "chosen"), _text(r["rejected"], i, "rejected")],
        }
        for i, r in enumerate(records)
    ]


def _label(chosen: float | None, rejected: float | None) -> str | None:
    if chosen is None or rejected is None:
        return None
    return "chosen" if chosen > rejected else "rejected" if chosen < rejected else "tie"


def _one_judge(swap: bool, forward: list[Any], backward: list[Any] | None) -> dict[str, Any]:
    """One judge's verdicts: its label per pair and, pairwise, its first-position wins."""
    if backward is None:  # pointwise, stepwise: each completion judged alone
        return {"labels": [_label(*scores) for scores in forward], "first_position": None}
    labels: list[str | None] = []
    first = decisive = 0
    for (f, _), (b, _) in zip(forward, backward, strict=True):  # the first completion's score in each order
        decisive += (f in (0.0, 1.0)) + (b in (0.0, 1.0))
        first += (f == 1.0) + (b == 1.0)
        if f is None or b is None:
            labels.append(None)
        else:
            chosen_win = f if not swap or f == 1.0 - b else 0.5  # swap: orders that disagree make a tie
            labels.append(LABELS[chosen_win])
    return {"labels": labels, "first_position": proportion(first, decisive)}


def _reliability(scores: Sequence[Sequence[float | None]]) -> dict[str, Any]:
    """Each completion's score against whether people preferred it (chosen: yes), in score bins."""
    bins: dict[int, list[tuple[float, int]]] = {}
    for chosen, rejected in scores:
        if chosen is not None and rejected is not None:
            bins.setdefault(score_bin(chosen), []).append((chosen, 1))
            bins.setdefault(score_bin(rejected), []).append((rejected, 0))
    total = sum(len(points) for points in bins.values())
    labels, out, ece = bin_labels(), [], 0.0
    for b in sorted(bins):
        points = bins[b]
        mean = sum(s for s, _ in points) / len(points)
        observed = sum(y for _, y in points) / len(points)
        ece += len(points) / total * abs(mean - observed)
        out.append(
            {
                "bin": labels[b],
                "count": len(points),
                "mean_score": round(mean, 4),
                "observed": round(observed, 4),
            }
        )
    return {"bins": out, "ece": round(ece, 4)}


def measure(
    judge: JudgeConfig,
    configured: list[list[float | None]],
    per_judge: Sequence[dict[str, Any]],
    labelled: str,
) -> dict[str, Any]:
    """The calibration of ``judge`` from its scores: ``configured``, the configured judge's [chosen,
    rejected] scores per pair; ``per_judge``, each judge's :func:`_one_judge` verdicts."""
    outcomes = [_label(*scores) for scores in configured]
    counts = {name: outcomes.count(name) for name in ("chosen", "tie", "rejected")}
    scored = sum(counts.values())
    firsts = [j["first_position"] for j in per_judge if j["first_position"] is not None]
    complete = [
        labels for labels in zip(*(j["labels"] for j in per_judge), strict=True) if None not in labels
    ]
    return {
        "labelled": labelled,
        "pairs": len(configured),
        "judge": {
            "models": [m.id for m in judge.models],
            "mode": judge.mode,
            "prompt": judge.prompt or "default",
            **{name: getattr(judge, name) for name in ("scale", "swap", "aggregate")},
            "key": judge_key(judge),
        },
        "outcomes": {
            "agree": counts["chosen"],
            "tie": counts["tie"],
            "disagree": counts["rejected"],
            "unscored": len(configured) - scored,
        },
        "human_agreement": proportion(counts["chosen"], scored),
        "first_position": proportion(sum(f["hits"] for f in firsts), sum(f["total"] for f in firsts))
        if firsts
        else None,
        "per_judge": [
            {
                "id": model.id,
                "human_agreement": proportion(
                    j["labels"].count("chosen"), sum(label is not None for label in j["labels"])
                ),
                "first_position": j["first_position"],
            }
            for model, j in zip(judge.models, per_judge, strict=True)
        ],
        "kappa": kappa(complete),
        "reliability": _reliability(configured),
    }


def calibrate(
    labelled: str, run: RunConfig, *, use_cache: bool = True, cache_dir: str | None = None
) -> dict[str, Any]:
    """Measure ``run``'s judge on the pairs of ``labelled`` (see the module doc), store the result and
    its reliability diagram in the cache folder, and return it (``path``: the JSON file)."""
    from datasets import Dataset

    from hfpref.repo.figures import draw
    from hfpref.stages.base import budget_ledger, new_run_id
    from hfpref.stages.batching import map_stage
    from hfpref.stages.judge import Judge

    judge = effective_judge(run.judge)
    rows = load_labelled(labelled)
    ledger = (
        budget_ledger(run.budget.max_cost_usd, cache_dir, new_run_id()) if run.budget.max_cost_usd else None
    )
    options = {"cache_dir": cache_dir, "cache": use_cache, "max_cost": run.budget.max_cost_usd}
    if ledger is not None:
        options["budget_id"] = ledger.job

    def scores(config: JudgeConfig, pairs: list[dict[str, Any]]) -> list[list[float | None]]:
        stage = Judge(config=config, provider=run.provider, **options)
        out = map_stage(
            Dataset.from_list(pairs), stage, config.concurrency, 64, saved=False, desc="hfpref calibrate"
        )
        return out["scores"]

    swapped = [{"prompt": r["prompt"], "completions": r["completions"][::-1]} for r in rows]
    per_judge = []
    for model in judge.models:
        one = dataclasses.replace(judge, models=[model], swap=False)
        backward = scores(one, swapped) if judge.mode == "pairwise" else None
        per_judge.append(_one_judge(judge.swap, scores(one, rows), backward))
    # a local file is named by its name only: the card does not show where it sat on this machine
    shown = Path(labelled).name if Path(labelled).exists() else labelled
    result = measure(judge, scores(judge, rows), per_judge, shown)
    path = calibration_path(judge, cache_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2) + b"\n")
    os.replace(tmp, path)
    draw("calibration", result, path.with_suffix(".png"))
    return {**result, "path": str(path)}


def calibration_lines(result: dict[str, Any]) -> list[str]:
    """What ``hfpref judge --calibrate`` prints."""
    judge = result["judge"]
    outcomes = result["outcomes"]
    lines = [
        f"calibrated {', '.join(judge['models'])} ({judge['mode']}) on {result['pairs']:,} pairs of {result['labelled']}",
        rate_line({"label": "agreement with the human preference", **result["human_agreement"]})
        if result["human_agreement"]
        else "agreement with the human preference: no pair was scored",
        f"  {outcomes['agree']:,} agree, {outcomes['tie']:,} ties, {outcomes['disagree']:,} disagree, "
        f"{outcomes['unscored']:,} unscored",
    ]
    if result["first_position"]:
        lines.append(
            rate_line(
                {"label": "first-position win rate (0.5 = no position bias)", **result["first_position"]}
            )
        )
    for one in result["per_judge"]:
        for name, label in (("human_agreement", "agreement"), ("first_position", "first-position win rate")):
            if one[name]:
                lines.append(rate_line({"label": f"  {one['id']}: {label}", **one[name]}))
    if result["kappa"] and result["kappa"]["value"] is not None:
        lines.append(
            f"{result['kappa']['kind']} between the judges: {result['kappa']['value']:.3f} ({result['kappa']['items']:,} pairs)"
        )
    reliability = result["reliability"]
    lines.append(f"expected calibration error: {reliability['ece']:.3f}")
    lines += [
        f"  scores {b['bin']}: {b['count']:,} completions, mean score {b['mean_score']:.3f}, {b['observed']:.3f} human-preferred"
        for b in reliability["bins"]
    ]
    lines.append(
        f"stored in {result['path']} (diagram: {Path(result['path']).with_suffix('.png')}); the cards of data this judge scores (hfpref run, hfpref curate -c) include it"
    )
    return lines
