"""UltraFeedback, binarized (``HuggingFaceH4/ultrafeedback_binarized``) → ``dpo``, ``sft`` and ``kto`` configs.

    python builder_scripts/ultrafeedback.py --source HuggingFaceH4/ultrafeedback_binarized -o uf [--split train_prefs]

How records become rows, and what is skipped: :mod:`hfpref.importers.ultrafeedback`.
"""

from __future__ import annotations

from hfpref.cli.importers import import_command, script_main
from hfpref.importers import ultrafeedback
from hfpref.importers.base import ImportOptions


@import_command("ultrafeedback", default_split="train_prefs")
def command(options: ImportOptions) -> None:
    """Import UltraFeedback binarized records (prompt, chosen, rejected, score_chosen, score_rejected)."""
    ultrafeedback.build(options)


main = script_main(command)

if __name__ == "__main__":
    main()
