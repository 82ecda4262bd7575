"""The ``hfpref`` command line: the group and its errors (:mod:`hfpref.cli.base`), and one module per
command family. Heavy imports (torch, trl, datasets) happen inside commands only."""

from __future__ import annotations

from hfpref.cli import folder, stages, train  # noqa: F401  (each registers its commands on the group)
from hfpref.cli.base import INTERRUPTED, OneLineError, _CtrlC, cli, one_line_errors

__all__ = ["INTERRUPTED", "OneLineError", "_CtrlC", "cli", "main", "one_line_errors"]


def main() -> None:
    """Console entry point: every error is one line on stderr, exit code 1 (failure) or 2 (usage)."""
    _CtrlC.install()
    cli.main(prog_name="hfpref")
