"""dpogen output JSONL (``dpogen sft`` or ``dpogen dpo``) → the matching configs.

``kind="auto"`` (the default) tells the two apart by the first record: ``chosen``/``rejected`` make it
DPO output, ``output`` SFT output.

- SFT output (``input``, ``output``, ``model``, ``score`` in [0, 1]): samples are grouped by ``input``
  and curated by :func:`hfpref.stages.curate.curate` into ``formats`` (default ``sft,kto,grpo``; add
  ``dpo`` to pair the best and worst sample of each input): ``sft`` keeps samples scoring at least
  ``threshold``, ``kto`` labels them desirable. Skipped and counted: samples with a null score or an
  empty output. Score statistics go into the card.
- DPO output (``input``, ``chosen``, ``rejected``, ``chosen_score``, ``rejected_score``, optional
  ``margin``, ``chosen_model``, ``rejected_model``): one ``dpo`` row per record, margin = ``margin``
  when given, else the score difference. Pairs with identical or empty answers are dropped (counted).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from pathlib import Path

from hfpref.config import CurateConfig
from hfpref.errors import InputError
from hfpref.importers.base import Importer, ImportOptions, distribution, scored_config
from hfpref.importers.records import Field


def detect(record: Field) -> str:
    """``dpo`` or ``sft``: the kind of dpogen output ``record`` belongs to."""
    if isinstance(record.value, dict) and {"chosen", "rejected"} <= set(record.value):
        return "dpo"
    if isinstance(record.value, dict) and "output" in record.value:
        return "sft"
    return record.fail("dpogen SFT (input, output, score) or DPO (input, chosen, rejected) fields")


def import_sft(job: Importer, records: Iterable[Field], config: CurateConfig) -> Path:
    """Group SFT samples by input and curate them."""
    groups: dict[str, dict[str, list[object]]] = {}
    scores = []
    for record in records:
        prompt = record["input"].text()
        output = record["output"].text(optional=True)
        score = record["score"].number(optional=True)
        if score is not None and not 0 <= score <= 1:
            record["score"].fail("a number in [0, 1] or null")
        model = record["model"].text(optional=True)
        if score is None:
            job.skip("null score")
            continue
        if not output or not output.strip():
            job.skip("empty output")
            continue
        scores.append(score)
        group = groups.setdefault(prompt, {"completions": [], "scores": [], "completion_models": []})
        for key, value in (("completions", output), ("scores", score), ("completion_models", model)):
            group[key].append(value)
    job.distributions["score"] = distribution(scores)
    return job.curate([{"prompt": prompt, **group} for prompt, group in groups.items()], config)


def import_dpo(job: Importer, records: Iterable[Field]) -> Path:
    """One dpo row per DPO record."""
    margins = []
    for record in records:
        chosen_score = record["chosen_score"].number(optional=True)
        rejected_score = record["rejected_score"].number(optional=True)
        margin = record["margin"].number(optional=True)
        if margin is None and chosen_score is not None and rejected_score is not None:
            margin = round(chosen_score - rejected_score, 9)
        if margin is not None:
            margins.append(margin)
        job.add(
            "dpo",
            record["input"].text(),
            chosen=record["chosen"].text(),
            rejected=record["rejected"].text(),
            score_chosen=chosen_score,
            score_rejected=rejected_score,
            margin=margin,
            chosen_model=record["chosen_model"].text(optional=True),
            rejected_model=record["rejected_model"].text(optional=True),
        )
    job.distributions["margin"] = distribution(margins)
    return job.write()


def build(
    options: ImportOptions,
    *,
    kind: str = "auto",
    formats: str = "sft,kto,grpo",
    threshold: float | None = None,
) -> Path:
    """Import dpogen SFT (input, output, model, score) or DPO (input, chosen, rejected, ...) JSONL;
    ``kind`` ``auto``, ``sft`` or ``dpo``; SFT output is curated into ``formats`` (of dpo, sft, kto,
    grpo) with ``threshold`` (None: curate's default). Returns the folder."""
    config = scored_config(options, formats, threshold=threshold)
    job = Importer(
        options,
        name="dpogen output",
        summary="Synthetic preference data generated and judged with dpogen.",
        conversion="",
        tags=("dpogen", "synthetic"),
        limitations=("Scores come from dpogen's LLM judges, not people.",),
    )
    records = job.records()
    first = next(records, None)
    if first is None:
        raise InputError(f"{options.source}: no records")
    kind = detect(first) if kind == "auto" else kind
    job.conversion = {
        "sft": "samples grouped by input, score as score, curated with hfpref's rules",
        "dpo": "one pair per record; margin = margin, else chosen_score - rejected_score",
    }[kind]
    if kind == "sft":
        return import_sft(job, itertools.chain([first], records), config)
    return import_dpo(job, itertools.chain([first], records))
