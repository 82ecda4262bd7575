"""dpogen output JSONL (``dpogen sft`` or ``dpogen dpo``) → the matching configs.

    python builder_scripts/dpogen.py --source sft_dataset.jsonl -o my-prefs [--kind auto|sft|dpo]

``--kind auto`` (the default) tells the two apart by the first record. How records become rows, and
what is skipped: :mod:`hfpref.importers.dpogen`.
"""

from __future__ import annotations

import click

from hfpref.cli.importers import formats_option, import_command, script_main
from hfpref.config import CurateConfig, help_for
from hfpref.importers import dpogen
from hfpref.importers.base import ImportOptions


@import_command("dpogen")
@click.option("--kind", type=click.Choice(["auto", "sft", "dpo"]), default="auto", show_default=True)
@formats_option("sft,kto,grpo", "SFT output: configs to write, of dpo, sft, kto, grpo.")
@click.option("--threshold", type=float, help=help_for(CurateConfig, "threshold"))
def command(options: ImportOptions, kind: str, formats: str, threshold: float | None) -> None:
    """Import dpogen SFT (input, output, model, score) or DPO (input, chosen, rejected, ...) JSONL."""
    dpogen.build(options, kind=kind, formats=formats, threshold=threshold)


main = script_main(command)

if __name__ == "__main__":
    main()
