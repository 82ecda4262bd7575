"""The ``hfpref`` group and what every command shares: one-line errors, exit codes, Ctrl-C, and the
options of several commands. The only place that prints errors and picks exit codes."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import IO, Any

import click

from hfpref.config import BudgetConfig, ProviderConfig, RunConfig, help_for
from hfpref.errors import HfprefError

INTERRUPTED = "hfpref: interrupted; finished requests are cached, run the same command to resume"


class OneLineError(click.ClickException):
    """What every failure of a command becomes: one line on stderr and an exit code."""

    def __init__(self, line: str, exit_code: int) -> None:
        super().__init__(line)
        self.exit_code = exit_code

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(self.message, err=True)


class _CtrlC:
    """Ctrl-C while an event loop runs (``datasets``' async map) cancels the loop's tasks instead of
    raising KeyboardInterrupt wherever the loop happens to be: each stage then leaves through its own
    ``finally`` (answers that arrived are cached) and map stops with CancelledError. A second Ctrl-C,
    or one while no loop runs, is the usual KeyboardInterrupt."""

    pressed = False

    @classmethod
    def install(cls) -> None:
        """Take SIGINT over unless someone else (a debugger, an embedding program) already did."""
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            signal.signal(signal.SIGINT, cls._handle)

    @classmethod
    def _handle(cls, signum: int, frame: FrameType | None) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is None or cls.pressed:
            raise KeyboardInterrupt
        cls.pressed = True
        loop.call_soon_threadsafe(cls._cancel_all, loop)

    @staticmethod
    def _cancel_all(loop: asyncio.AbstractEventLoop) -> None:
        for task in asyncio.all_tasks(loop):
            task.cancel()


@contextmanager
def one_line_errors(prog: str = "hfpref", interrupted: str = INTERRUPTED) -> Iterator[None]:
    """hfpref errors, usage errors and Ctrl-C as one line each (exit code 1 or 2, 2, 130), as
    :class:`OneLineError`; ``builder_scripts/`` run their commands in it too."""
    try:
        yield
    except click.exceptions.NoArgsIsHelpError:
        raise  # `hfpref` alone prints the help
    except click.UsageError as exc:
        where = f" (see '{exc.ctx.command_path} --help')" if exc.ctx else ""
        message = " ".join(exc.format_message().split())
        raise OneLineError(f"{prog}: error: {message}{where}", 2) from None
    except HfprefError as exc:
        raise OneLineError(f"{prog}: error: {exc}", exc.exit_code) from None
    except KeyboardInterrupt:
        raise OneLineError(interrupted, 130) from None
    except asyncio.CancelledError:
        if not _CtrlC.pressed:
            raise
        logging.getLogger("asyncio").disabled = True  # no "Task was destroyed" noise after the line
        raise OneLineError(interrupted, 130) from None


class _Cli(click.Group):
    """The ``hfpref`` group: run by :func:`main` or by click's ``CliRunner``, errors are one line."""

    def make_context(self, *args: Any, **kwargs: Any) -> click.Context:
        with one_line_errors():
            return super().make_context(*args, **kwargs)

    def invoke(self, ctx: click.Context) -> Any:
        with one_line_errors():
            return super().invoke(ctx)


@click.group(name="hfpref", cls=_Cli, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="hfpref")
def cli() -> None:
    """Prompts to preference data to trained models, on Hugging Face datasets, the Hub and TRL."""


def config_option(fn: Any) -> Any:
    return click.option(
        "-c",
        "--config",
        "config_path",
        type=click.Path(dir_okay=False),
        help="hfpref.toml (default: ./hfpref.toml).",
    )(fn)


def client_options(fn: Any) -> Any:
    """Endpoint, budget, cache and process options shared by generate and judge."""
    options = [
        click.option("--base-url", help=help_for(ProviderConfig, "base_url")),
        click.option("--api-key-env", help=help_for(ProviderConfig, "api_key_env")),
        click.option("--max-cost", type=float, metavar="USD", help=help_for(BudgetConfig, "max_cost_usd")),
        click.option(
            "--cache-dir",
            type=click.Path(file_okay=False),
            help="Request cache folder (default ~/.cache/hfpref).",
        ),
        click.option(
            "--no-cache", is_flag=True, help="Send every request, ignoring and not filling the cache."
        ),
        click.option("--num-proc", type=int, default=None, help="Processes for datasets.map."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def load_run_config(config_path: str | None) -> RunConfig:
    from hfpref.config import default_config_path, load_config

    return load_config(config_path or default_config_path())
