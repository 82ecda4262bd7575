"""HelpSteer3 preference records (``nvidia/HelpSteer3``, config ``preference``) → a ``dpo`` config.

Each record has ``context`` (the conversation so far, ending with the user's turn), ``response1``,
``response2`` and ``overall_preference`` from -3 to 3: negative means response1 is better, positive
response2, and its absolute value is the strength (1 slightly, 2 better, 3 much better). The prompt is
``context`` (a message list, TRL's conversational format), chosen and rejected are the two responses as
one assistant message each, and ``margin`` is the strength. HelpSteer3 gives no absolute score, so
``score_chosen`` and ``score_rejected`` are null.

Skipped and counted: ties (``overall_preference`` 0) and pairs weaker than ``min_strength``.
The distribution of ``overall_preference`` goes into the card.
"""

from __future__ import annotations

from pathlib import Path

from hfpref.importers.base import Importer, ImportOptions, distribution

PREFERENCES = range(-3, 4)


def build(options: ImportOptions, *, min_strength: int = 1) -> Path:
    """Import HelpSteer3 preference records (context, response1, response2, overall_preference) as dpo,
    keeping pairs whose ``|overall_preference|`` is at least ``min_strength``; returns the folder."""
    job = Importer(
        options,
        name="HelpSteer3 (preference)",
        summary="HelpSteer3's human preference pairs as DPO pairs, the preference strength as margin.",
        conversion="overall_preference < 0: response1 chosen; > 0: response2 chosen; margin = |overall_preference|",
        tags=("helpsteer3", "human-feedback"),
        limitations=(
            "Preferences are from human annotators, and a margin is a strength on HelpSteer3's 1-3 scale, "
            "not a score difference; see the source dataset's card.",
        ),
        facts={"source license": "cc-by-4.0 (nvidia/HelpSteer3)"},
    )
    preferences = []
    for record in job.records():
        prompt = record["context"].messages()
        first, second = record["response1"].text(), record["response2"].text()
        preference = record["overall_preference"].integer(choices=PREFERENCES)
        preferences.append(float(preference))
        if preference == 0:
            job.skip("tie (overall_preference 0)")
            continue
        if abs(preference) < min_strength:
            job.skip(f"|overall_preference| below --min-strength {min_strength}")
            continue
        chosen, rejected = (first, second) if preference < 0 else (second, first)
        job.add("dpo", prompt, chosen=chosen, rejected=rejected, margin=float(abs(preference)))
    job.distributions["overall_preference"] = distribution(preferences)
    return job.write()
