"""UltraFeedback, binarized (``HuggingFaceH4/ultrafeedback_binarized``) → ``dpo``, ``sft`` and ``kto`` configs.

Each record has ``prompt``, ``chosen`` and ``rejected`` (message lists that include the user's turn
and end with the assistant's answer) and ``score_chosen``/``score_rejected`` (UltraFeedback's 1-10
scores, kept as they are). The prompt is written explicitly: the conversation before the last turn
(a message list, TRL's conversational format), and chosen/rejected are the assistant turn only.
``dpo``: chosen vs rejected, margin = score difference; ``sft``: the chosen answer with its score;
``kto``: the chosen answer desirable, the rejected one undesirable.

Skipped and counted: records with a null score. A record whose chosen does not score above its
rejected gives no ``dpo`` or ``kto`` rows (counted); its chosen answer still goes to ``sft``.
"""

from __future__ import annotations

from pathlib import Path

from hfpref.importers.base import Importer, ImportOptions, distribution
from hfpref.importers.records import Field, Message


def conversation(field: Field) -> tuple[list[Message], str]:
    """The messages before the last turn, and the last turn's text, which must be the assistant's."""
    messages = field.messages()
    if len(messages) < 2 or messages[-1]["role"] != "assistant":
        field.fail("a message list: the prompt's turns, then the assistant's answer")
    return messages[:-1], messages[-1]["content"]


def build(options: ImportOptions) -> Path:
    """Import UltraFeedback binarized records (prompt, chosen, rejected, score_chosen, score_rejected);
    returns the folder."""
    job = Importer(
        options,
        name="UltraFeedback (binarized)",
        summary="UltraFeedback's binarized preference pairs as DPO, SFT and KTO data with explicit prompts.",
        conversion="prompt = the turns before the answer; chosen/rejected = the assistant answer only",
        tags=("ultrafeedback",),
        limitations=(
            "Scores are UltraFeedback's GPT-4 ratings on a 1-10 scale, not hfpref judge scores in [0, 1].",
        ),
        facts={"source license": "mit (HuggingFaceH4/ultrafeedback_binarized)"},
    )
    margins = []
    for record in job.records():
        prompt, chosen = conversation(record["chosen"])
        rejected_prompt, rejected = conversation(record["rejected"])
        if rejected_prompt != prompt:
            record["rejected"].fail("the same turns as `chosen` before the answer")
        score_chosen = record["score_chosen"].number(optional=True)
        score_rejected = record["score_rejected"].number(optional=True)
        if score_chosen is None or score_rejected is None:
            job.skip("null score_chosen or score_rejected")
            continue
        margins.append(score_chosen - score_rejected)
        job.add("sft", prompt, completion=chosen, score=score_chosen)
        if score_chosen <= score_rejected:
            for config in ("dpo", "kto"):
                job.drop(config, "score_chosen not above score_rejected")
            continue
        job.add(
            "dpo",
            prompt,
            chosen=chosen,
            rejected=rejected,
            score_chosen=score_chosen,
            score_rejected=score_rejected,
            margin=round(score_chosen - score_rejected, 9),
        )
        if chosen.strip() == rejected.strip():
            job.drop("kto", "chosen and rejected identical")
        else:
            job.add("kto", prompt, completion=chosen, label=True)
            job.add("kto", prompt, completion=rejected, label=False)
    job.distributions["score_chosen - score_rejected"] = distribution(margins)
    return job.write()
