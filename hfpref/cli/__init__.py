"""The `hfpref` command line. Heavy imports (torch, trl, datasets) happen inside commands only."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import IO, Any

import click

from hfpref.config import BudgetConfig, GenerateConfig, JudgeConfig, ProviderConfig, RunConfig, help_for
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


# --- generate / judge / run / validate / example commands (owner: core) ---
def _config_option(fn: Any) -> Any:
    return click.option(
        "-c",
        "--config",
        "config_path",
        type=click.Path(dir_okay=False),
        help="hfpref.toml (default: ./hfpref.toml).",
    )(fn)


def _client_options(fn: Any) -> Any:
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


def _load_run_config(config_path: str | None) -> RunConfig:
    from hfpref.config import default_config_path, load_config

    return load_config(config_path or default_config_path())


@cli.command()
@click.argument("input_path", metavar="INPUT")
@click.option("-o", "--output", required=True, help="Output file (.jsonl/.json/.parquet/.csv) or folder.")
@_config_option
@click.option(
    "--model", "models", multiple=True, metavar="ID[=WEIGHT]", help=help_for(GenerateConfig, "models")
)
@click.option("-n", type=int, help=help_for(GenerateConfig, "n"))
@click.option("--system-prompt", type=click.Path(dir_okay=False), help="File holding the system prompt.")
@click.option("--temperature", type=float, help=help_for(GenerateConfig, "temperature"))
@click.option("--max-tokens", type=int, help=help_for(GenerateConfig, "max_tokens"))
@click.option("--seed", type=int, help=help_for(GenerateConfig, "seed"))
@click.option("--prompt-column", help=help_for(GenerateConfig, "prompt_column"))
@click.option("--concurrency", type=int, help=help_for(GenerateConfig, "concurrency"))
@_client_options
def generate(input_path: str, output: str, config_path: str | None, **flags: Any) -> None:
    """Add N completions per prompt (columns completions, completion_models, generation)."""
    from hfpref.stages import pipeline

    run = _load_run_config(config_path)
    pipeline.apply_generate_flags(run, flags)
    pipeline.generate_file(
        input_path,
        output,
        run,
        use_cache=not flags["no_cache"],
        cache_dir=flags["cache_dir"],
        num_proc=flags["num_proc"],
    )


@cli.command()
@click.argument("input_path", metavar="INPUT")
@click.option("-o", "--output", required=True, help="Output file (.jsonl/.json/.parquet/.csv) or folder.")
@_config_option
@click.option(
    "--judge-model", "judge_models", multiple=True, metavar="ID", help=help_for(JudgeConfig, "models")
)
@click.option(
    "--mode", type=click.Choice(["pointwise", "pairwise", "stepwise"]), help=help_for(JudgeConfig, "mode")
)
@click.option("--judge-prompt", help=help_for(JudgeConfig, "prompt"))
@click.option("--scale", type=int, help=help_for(JudgeConfig, "scale"))
@click.option("--swap/--no-swap", default=None, help=help_for(JudgeConfig, "swap"))
@click.option("--aggregate", type=click.Choice(["mean", "majority"]), help=help_for(JudgeConfig, "aggregate"))
@click.option("--concurrency", type=int, help=help_for(JudgeConfig, "concurrency"))
@click.option("--judge-reasoning/--no-judge-reasoning", default=None, help=help_for(JudgeConfig, "reasoning"))
@_client_options
def judge(input_path: str, output: str, config_path: str | None, **flags: Any) -> None:
    """Score each completion (columns scores, judgments, judge; stepwise also step_scores)."""
    from hfpref.stages import pipeline

    run = _load_run_config(config_path)
    pipeline.apply_judge_flags(run, flags)
    pipeline.judge_file(
        input_path,
        output,
        run,
        use_cache=not flags["no_cache"],
        cache_dir=flags["cache_dir"],
        num_proc=flags["num_proc"],
    )


@cli.command(name="run")
@click.argument("input_path", metavar="INPUT")
@click.option("-o", "--output", required=True, help="Dataset folder to write (the Hub repo layout).")
@_config_option
@click.option("--max-cost", type=float, metavar="USD", help=help_for(BudgetConfig, "max_cost_usd"))
@click.option(
    "--cache-dir", type=click.Path(file_okay=False), help="Request cache folder (default ~/.cache/hfpref)."
)
def run_command(
    input_path: str, output: str, config_path: str | None, max_cost: float | None, cache_dir: str | None
) -> None:
    """generate + judge + curate in one resumable command (a rerun re-pays nothing)."""
    from hfpref.stages import pipeline

    run = _load_run_config(config_path)
    pipeline.apply_judge_flags(run, {"max_cost": max_cost})
    pipeline.run_pipeline(input_path, output, run, cache_dir=cache_dir)


@cli.command()
def example() -> None:
    """Print a complete, commented hfpref.toml."""
    from hfpref.config import example_config

    click.echo(example_config(), nl=False)


@cli.command()
@click.argument("target", metavar="CONFIG_OR_FOLDER", type=click.Path(exists=True))
def validate(target: str) -> None:
    """Check a hfpref.toml, or a dataset folder (schema, empty pairs, prompt leakage across splits)."""
    from pathlib import Path

    from hfpref.stages import pipeline

    if Path(target).is_dir():
        pipeline.validate_folder_cli(target)
    else:
        click.echo(pipeline.describe_config(_load_run_config(target)))


# --- end generate / judge / run / validate / example ---

# --- curate / push / export commands (owner: curate) ---


def _curate_help(name: str) -> str:
    from hfpref.config import CurateConfig

    return help_for(CurateConfig, name)


def _hub_help(name: str) -> str:
    from hfpref.config import HubConfig

    return help_for(HubConfig, name)


@cli.command("curate")
@click.argument("input_path", metavar="INPUT")
@click.option("-o", "--output", "folder", required=True, metavar="FOLDER", help="Dataset folder to write.")
@_config_option
@click.option("--formats", metavar="LIST", help=_curate_help("formats"))
@click.option(
    "--strategy", type=click.Choice(["best_worst", "all_pairs", "stratified"]), help=_curate_help("strategy")
)
@click.option("--min-margin", type=float, help=_curate_help("min_margin"))
@click.option("--threshold", type=float, help=_curate_help("threshold"))
@click.option("--high", type=float, help=_curate_help("high"))
@click.option("--low", type=float, help=_curate_help("low"))
@click.option("--step-threshold", type=float, help=_curate_help("step_threshold"))
@click.option("--test-size", type=float, help=_curate_help("test_size"))
@click.option("--seed", type=int, help=_curate_help("seed"))
@click.option("--style", type=click.Choice(["conversational", "standard"]), help=_curate_help("style"))
@click.option("--reasoning", type=click.Choice(["drop", "inline"]), help=_curate_help("reasoning"))
@click.option("--license", "license_", metavar="ID", help=_hub_help("license"))
def curate_command(
    input_path: str, folder: str, config_path: str | None, license_: str | None, **flags: Any
) -> None:
    """Turn scored rows into preference configs (dpo, sft, kto, grpo, step_dpo, stepwise) in FOLDER.

    FOLDER is the Hub repo: CONFIG/SPLIT-*.parquet, a README.md card and hfpref.json.
    """
    from hfpref.repo.card import check_license
    from hfpref.stages.curate import curate, curate_config
    from hfpref.stages.io import load_rows

    run = _load_run_config(config_path)
    config = curate_config(run.curate, **flags)  # bad options fail before the input is read
    license_ = check_license(license_ or run.hub.license)
    result = curate(load_rows(input_path), folder, config, license=license_, repo_id=run.hub.repo_id)
    click.echo(f"wrote {folder}")
    for name, stats in result.statistics.items():
        splits = (
            ", ".join(f"{n:,} {split}" for split, n in result.num_rows.get(name, {}).items()) or "no rows"
        )
        dropped = "; ".join(f"{n:,} × {reason}" for reason, n in stats["dropped"].items())
        click.echo(f"  {name}: {splits}" + (f" (left out: {dropped})" if dropped else ""))


@cli.command("push")
@click.argument("folder", type=click.Path(exists=True, file_okay=False))
@click.argument("repo_id")
@click.option("--private", is_flag=True, help=_hub_help("private"))
@click.option("--revision", metavar="REV", help="Branch to push to, created from main when missing.")
def push_command(folder: str, repo_id: str, private: bool, revision: str | None) -> None:
    """Upload a dataset FOLDER to the Hub dataset repo REPO_ID (user/name), keeping card keys added there."""
    from hfpref.repo.hub import push

    click.echo(f"pushed {folder} to {push(folder, repo_id, private=private, revision=revision)}")


@cli.command("export")
@click.argument("folder", type=click.Path(exists=True, file_okay=False))
@click.option(
    "--to",
    "target",
    required=True,
    type=click.Choice(["nemo-rl", "axolotl", "jsonl"]),
    help="nemo-rl: BinaryPreferenceDataset/OpenAI messages; axolotl: chat_template(.default); jsonl: as is.",
)
@click.option("-o", "--output", required=True, metavar="OUT", help="Folder for OUT/CONFIG/SPLIT.jsonl.")
def export_command(folder: str, target: str, output: str) -> None:
    """Write a dataset FOLDER's configs as JSONL for NeMo RL, Axolotl, or as plain rows."""
    from hfpref.repo.export import export

    for path in export(folder, target, output):
        click.echo(str(path))


# --- end curate / push / export ---

# --- train command (owner: train) ---


def _train_help(name: str) -> str:
    from hfpref.training.train import TrainOptions

    return help_for(TrainOptions, name)


@cli.command("train")
@click.option("--dataset", metavar="REPO_ID_OR_FOLDER", help=_train_help("dataset"))
@click.option("--model", metavar="MODEL", help=_train_help("model"))
@click.option("--config-name", metavar="NAME", help=_train_help("config_name"))
@click.option("--method", type=click.Choice(["dpo", "kto", "sft"]), help=_train_help("method"))
@click.option(
    "-c",
    "--config",
    "config_file",
    type=click.Path(dir_okay=False),
    help="YAML or TOML file of KEY: VALUE settings.",
)
@click.option("-o", "--output-dir", metavar="DIR", help=_train_help("output_dir"))
@click.option("--full", is_flag=True, help=_train_help("full"))
@click.option("--resume", is_flag=True, help="Resume from the last checkpoint in the output dir.")
@click.option("--push-to-hub", metavar="REPO_ID", help=_train_help("push_to_hub"))
@click.argument("overrides", nargs=-1, metavar="[KEY=VALUE]...")
def train_command(
    dataset: str | None,
    model: str | None,
    config_name: str | None,
    method: str | None,
    config_file: str | None,
    output_dir: str | None,
    full: bool,
    resume: bool,
    push_to_hub: str | None,
    overrides: tuple[str, ...],
) -> None:
    """Train MODEL on a preference dataset (folder or Hub repo) with TRL and a PEFT LoRA adapter.

    KEY=VALUE sets any field of TRL's DPOConfig / KTOConfig / SFTConfig (beta=0.1 loss_type=[sigmoid,sft]
    learning_rate=5e-6 max_steps=100) or of hfpref's options (lora_r=32 load_in_4bit=false, and the NeMo RL
    names reference_policy_kl_penalty, sft_loss_weight, preference_average_log_probs). Runs unchanged
    under `accelerate launch -m hfpref.training ...` on one or many GPUs.
    """
    from hfpref.training.train import train

    train(
        dataset,
        model,
        method=method,
        config_name=config_name,
        output_dir=output_dir,
        config_file=config_file,
        overrides=list(overrides),
        full=full or None,
        resume=resume or None,
        push_to_hub=push_to_hub,
    )


# --- end train ---


def main() -> None:
    """Console entry point: every error is one line on stderr, exit code 1 (failure) or 2 (usage)."""
    _CtrlC.install()
    cli.main(prog_name="hfpref")
