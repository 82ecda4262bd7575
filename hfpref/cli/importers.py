"""The command lines of ``builder_scripts/``: the options every importer shares, and how a script runs.

``python builder_scripts/NAME.py --source PATH_OR_HUB_ID -o FOLDER [--push REPO_ID] [--limit N] ...``:
each script is a click command made with :func:`import_command` (its own options on top of the shared
ones) that calls its importer's ``build`` (:mod:`hfpref.importers`), and :func:`script_main` runs it as
``hfpref`` runs its commands: an error is one line on stderr and an exit code (2 for a bad option or
record, 1 for other failures, 130 when interrupted); the traceback is not shown.
"""

from __future__ import annotations

import dataclasses
import functools
import sys
from collections.abc import Callable, Sequence
from typing import Any

import click

from hfpref.cli.base import OneLineError, one_line_errors
from hfpref.config import CurateConfig, HubConfig, help_for
from hfpref.importers.base import ImportOptions
from hfpref.repo.schema import STEP_CONFIGS

SOURCE_HELP = "A .jsonl/.json/.parquet/.csv file, a save_to_disk folder, or a Hub dataset id (user/name)."


def import_command(
    name: str, *, default_split: str = "train"
) -> Callable[[Callable[..., Any]], click.Command]:
    """The click command of a builder script ``fn(options: ImportOptions, **own_options)`` (its docstring
    is the help), with the shared options: ``--source``, ``-o``, ``--push``, ``--limit``, ``--split``
    (default ``default_split``), ``--test-size``, ``--seed``, ``--style`` and ``--license``."""
    shared = [
        click.option("--source", required=True, metavar="PATH_OR_HUB_ID", help=SOURCE_HELP),
        click.option("-o", "--output", required=True, metavar="FOLDER", help="Dataset folder to write."),
        click.option("--push", metavar="REPO_ID", help="Push the written folder to this Hub dataset repo."),
        click.option("--limit", type=click.IntRange(min=1), metavar="N", help="Read the first N records."),
        click.option("--split", default=default_split, show_default=True, help="Split to read (Hub ids)."),
        click.option(
            "--test-size",
            type=click.FloatRange(0, 1, max_open=True),
            default=0.1,
            show_default=True,
            help=help_for(CurateConfig, "test_size"),
        ),
        click.option("--seed", type=int, default=0, show_default=True, help=help_for(CurateConfig, "seed")),
        click.option(
            "--style",
            type=click.Choice(["conversational", "standard"]),
            default="conversational",
            show_default=True,
            help=help_for(CurateConfig, "style"),
        ),
        click.option("--license", metavar="ID", help=help_for(HubConfig, "license")),
    ]

    def decorate(fn: Callable[..., Any]) -> click.Command:
        @functools.wraps(fn)
        def command(**values: Any) -> Any:
            options = ImportOptions(**{f.name: values.pop(f.name) for f in dataclasses.fields(ImportOptions)})
            return fn(options, **values)

        for option in reversed(shared):
            command = option(command)
        return click.command(name=name, context_settings={"help_option_names": ["-h", "--help"]})(command)

    return decorate


def _scored_formats(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """Scored completions have no step scores: the step configs cannot be asked for."""
    if {f.strip() for f in value.split(",")} & STEP_CONFIGS:
        raise click.BadParameter("choose among dpo, sft, kto, grpo")
    return value


def formats_option(default: str, help: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--formats``, for an importer that curates scored completions: configs of dpo, sft, kto, grpo."""
    return click.option("--formats", default=default, show_default=True, help=help, callback=_scored_formats)


def script_main(command: click.Command) -> Callable[[Sequence[str] | None], None]:
    """The ``main(args=None)`` of a builder script: runs ``command`` on ``args`` (default
    ``sys.argv[1:]``) with one-line errors and exit codes, as ``hfpref`` runs its own."""

    def main(args: Sequence[str] | None = None) -> None:
        prog = command.name or "builder"
        try:
            with one_line_errors(prog, interrupted=f"{prog}: interrupted"):
                command.main(
                    args=list(args) if args is not None else None, prog_name=prog, standalone_mode=False
                )
        except OneLineError as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except click.exceptions.Abort:
            click.echo(f"{prog}: interrupted", err=True)
            sys.exit(130)

    return main
