"""HelpSteer3 preference records (``nvidia/HelpSteer3``, config ``preference``) → a ``dpo`` config.

    python builder_scripts/helpsteer3.py --source nvidia/HelpSteer3 -o helpsteer3-dpo [--min-strength 2]

How records become rows, and what is skipped: :mod:`hfpref.importers.helpsteer3`.
"""

from __future__ import annotations

import click

from hfpref.cli.importers import import_command, script_main
from hfpref.importers import helpsteer3
from hfpref.importers.base import ImportOptions


@import_command("helpsteer3")
@click.option(
    "--min-strength",
    type=click.IntRange(1, 3),
    default=1,
    show_default=True,
    help="Keep pairs whose |overall_preference| is at least this (1 slightly, 2 better, 3 much better).",
)
def command(options: ImportOptions, min_strength: int) -> None:
    """Import HelpSteer3 preference records (context, response1, response2, overall_preference) as dpo."""
    helpsteer3.build(options, min_strength=min_strength)


main = script_main(command)

if __name__ == "__main__":
    main()
