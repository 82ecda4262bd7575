"""PRM800K step labels (``openai/prm800k``'s ``data/phase*_*.jsonl``) → ``stepwise`` and ``step_dpo`` configs.

    python builder_scripts/prm800k.py --source phase2_train.jsonl -o prm800k-steps [--neutral wrong|correct]

How labelled solutions become rows, and what is skipped: :mod:`hfpref.importers.prm800k`.
"""

from __future__ import annotations

import click

from hfpref.cli.importers import import_command, script_main
from hfpref.importers import prm800k
from hfpref.importers.base import ImportOptions


@import_command("prm800k")
@click.option(
    "--neutral",
    type=click.Choice(["wrong", "correct"]),
    default="wrong",
    show_default=True,
    help="Whether a step rated 0 counts as correct in labels and as a step_dpo chosen step.",
)
def command(options: ImportOptions, neutral: str) -> None:
    """Import PRM800K labelled solutions (question.problem, label.steps[].completions[].rating)."""
    prm800k.build(options, neutral=neutral)


main = script_main(command)

if __name__ == "__main__":
    main()
