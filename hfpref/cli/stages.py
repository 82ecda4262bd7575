"""``hfpref generate``, ``judge``, ``run``, ``example`` and ``validate``: the stages, file to file."""

from __future__ import annotations

from typing import Any

import click

from hfpref.cli.base import cli, client_options, config_option, load_run_config
from hfpref.config import (
    BATCH_FALLBACKS,
    ENGINES,
    BudgetConfig,
    GenerateConfig,
    JudgeConfig,
    ProviderConfig,
    RunConfig,
    help_for,
)


def batch_options(fn: Any) -> Any:
    """``--batch-api`` and ``--batch-fallback``, of generate, judge and run."""
    fn = click.option(
        "--batch-fallback",
        type=click.Choice(BATCH_FALLBACKS),
        help=help_for(ProviderConfig, "batch_fallback"),
    )(fn)
    return click.option(
        "--batch-api/--no-batch-api", default=None, help=help_for(GenerateConfig, "batch_api")
    )(fn)


def engine_option(fn: Any) -> Any:
    """``--engine``, of generate, judge and run (default: ``engine`` in hfpref.toml, else $HFPREF_ENGINE,
    else local)."""
    return click.option("--engine", type=click.Choice(ENGINES), help=help_for(RunConfig, "engine"))(fn)


def engine_mapper(run: RunConfig, engine: str | None, num_proc: int | None = None) -> Any:
    """The jobs' mapper for ``--engine`` (else the config's engine): None (the local map), or the Ray
    engine's, connected now."""
    if engine is not None:
        run.engine = engine
    if run.engine == "local":
        return None
    from hfpref.engines import ray as ray_engine
    from hfpref.errors import ConfigError

    if num_proc:
        raise ConfigError("--engine ray runs the stage on Ray's actors: drop --num-proc")
    ray_engine.connect()
    return ray_engine.map_stage


@cli.command()
@click.argument("input_path", metavar="INPUT")
@click.option("-o", "--output", required=True, help="Output file (.jsonl/.json/.parquet/.csv) or folder.")
@config_option
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
@batch_options
@client_options
@engine_option
def generate(input_path: str, output: str, config_path: str | None, **flags: Any) -> None:
    """Add N completions per prompt (columns completions, completion_models, generation)."""
    from hfpref.stages import pipeline

    run = load_run_config(config_path)
    pipeline.apply_generate_flags(run, flags)
    pipeline.generate_file(
        input_path,
        output,
        run,
        use_cache=not flags["no_cache"],
        cache_dir=flags["cache_dir"],
        num_proc=flags["num_proc"],
        mapper=engine_mapper(run, flags["engine"], flags["num_proc"]),
    )


@cli.command()
@click.argument("input_path", metavar="INPUT", required=False)
@click.option(
    "-o", "--output", help="Output file (.jsonl/.json/.parquet/.csv) or folder (needed with INPUT)."
)
@config_option
@click.option(
    "--calibrate",
    "labelled",
    metavar="LABELLED",
    help="Human-labelled pairs (prompt, chosen = preferred, rejected; as the importers' dpo config): measure "
    "this judge against them (agreement, position bias, reliability) and keep the result for the cards of "
    "the data it scores. INPUT is then optional.",
)
@click.option(
    "--judge-model", "judge_models", multiple=True, metavar="ID", help=help_for(JudgeConfig, "models")
)
@click.option("--mode", type=click.Choice(JudgeConfig.MODES), help=help_for(JudgeConfig, "mode"))
@click.option("--judge-prompt", help=help_for(JudgeConfig, "prompt"))
@click.option("--scale", type=int, help=help_for(JudgeConfig, "scale"))
@click.option("--swap/--no-swap", default=None, help=help_for(JudgeConfig, "swap"))
@click.option("--aggregate", type=click.Choice(["mean", "majority"]), help=help_for(JudgeConfig, "aggregate"))
@click.option("--concurrency", type=int, help=help_for(JudgeConfig, "concurrency"))
@click.option("--judge-reasoning/--no-judge-reasoning", default=None, help=help_for(JudgeConfig, "reasoning"))
@batch_options
@client_options
@engine_option
def judge(
    input_path: str | None, output: str | None, config_path: str | None, labelled: str | None, **flags: Any
) -> None:
    """Score each completion (columns scores, judgments, judge; stepwise also step_scores)."""
    from hfpref.stages import pipeline

    if (input_path is None) != (output is None) or (input_path is None and labelled is None):
        raise click.UsageError("give INPUT and -o OUTPUT, or --calibrate LABELLED, or both")
    run = load_run_config(config_path)
    pipeline.apply_judge_flags(run, flags)
    if labelled is not None:
        from hfpref.stages.calibrate import calibrate, calibration_lines

        result = calibrate(labelled, run, use_cache=not flags["no_cache"], cache_dir=flags["cache_dir"])
        click.echo("\n".join(calibration_lines(result)))
    if input_path is None or output is None:
        return
    pipeline.judge_file(
        input_path,
        output,
        run,
        use_cache=not flags["no_cache"],
        cache_dir=flags["cache_dir"],
        num_proc=flags["num_proc"],
        mapper=engine_mapper(run, flags["engine"], flags["num_proc"]),
    )


@cli.command(name="run")
@click.argument("input_path", metavar="INPUT")
@click.option("-o", "--output", required=True, help="Dataset folder to write (the Hub repo layout).")
@config_option
@click.option("--max-cost", type=float, metavar="USD", help=help_for(BudgetConfig, "max_cost_usd"))
@click.option(
    "--cache-dir", type=click.Path(file_okay=False), help="Request cache folder (default ~/.cache/hfpref)."
)
@batch_options
@engine_option
def run_command(
    input_path: str, output: str, config_path: str | None, cache_dir: str | None, **flags: Any
) -> None:
    """generate + judge + curate in one resumable command (a rerun re-pays nothing)."""
    from hfpref.stages import pipeline

    run = load_run_config(config_path)
    pipeline.apply_generate_flags(run, flags)  # --batch-api: both stages
    pipeline.apply_judge_flags(run, flags)
    mapper = engine_mapper(run, flags["engine"])
    pipeline.run_pipeline(input_path, output, run, cache_dir=cache_dir, mapper=mapper)


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
        click.echo(pipeline.describe_config(load_run_config(target)))
