"""NeMo Gym rollouts (the JSONL ``ng_collect_rollouts`` writes) → ``dpo``, ``kto`` and ``grpo`` configs.

    python builder_scripts/nemo_gym.py --source rollouts.jsonl -o my-prefs [--pairing same_prompt|stratified]

How rollouts become rows, and what is skipped: :mod:`hfpref.importers.nemo_gym`.
"""

from __future__ import annotations

import click

from hfpref.cli.importers import formats_option, import_command, script_main
from hfpref.config import CurateConfig, help_for
from hfpref.importers import nemo_gym
from hfpref.importers.base import ImportOptions


@import_command("nemo_gym")
@click.option(
    "--pairing",
    type=click.Choice(["same_prompt", "stratified"]),
    default="same_prompt",
    show_default=True,
    help="same_prompt: best vs worst rollout of each prompt; stratified: reward >= --high vs reward <= --low.",
)
@click.option(
    "--min-gap",
    type=click.FloatRange(0, 1),
    default=0.0,
    show_default=True,
    help="DPO: smallest reward gap (rewards are in [0, 1], rescaled when the file's are not).",
)
@click.option("--high", type=click.FloatRange(0, 1), help=help_for(CurateConfig, "high"))
@click.option("--low", type=click.FloatRange(0, 1), help=help_for(CurateConfig, "low"))
@click.option(
    "--threshold", type=float, help="KTO: a rollout with reward >= this is desirable (default 0.7)."
)
@formats_option("dpo,kto,grpo", "Configs to write, of dpo, sft, kto, grpo.")
def command(
    options: ImportOptions,
    pairing: str,
    formats: str,
    min_gap: float,
    high: float | None,
    low: float | None,
    threshold: float | None,
) -> None:
    """Import NeMo Gym rollouts (JSONL with responses_create_params, response, reward) as dpo, kto, grpo."""
    nemo_gym.build(
        options, pairing=pairing, formats=formats, min_gap=min_gap, high=high, low=low, threshold=threshold
    )


main = script_main(command)

if __name__ == "__main__":
    main()
