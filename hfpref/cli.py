"""The `hfpref` command line. Heavy imports (torch, trl, datasets) happen inside commands only."""

from __future__ import annotations

import sys
from typing import Any

import click

from hfpref.config import BudgetConfig, GenerateConfig, ProviderConfig, RunConfig, help_for
from hfpref.errors import HfprefError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
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
@click.option("--base-url", help=help_for(ProviderConfig, "base_url"))
@click.option("--api-key-env", help=help_for(ProviderConfig, "api_key_env"))
@click.option("--concurrency", type=int, help=help_for(GenerateConfig, "concurrency"))
@click.option("--max-cost", type=float, metavar="USD", help=help_for(BudgetConfig, "max_cost_usd"))
@click.option(
    "--cache-dir", type=click.Path(file_okay=False), help="Request cache folder (default ~/.cache/hfpref)."
)
@click.option("--no-cache", is_flag=True, help="Send every request, ignoring and not filling the cache.")
@click.option("--num-proc", type=int, default=None, help="Processes for datasets.map.")
def generate(input_path: str, output: str, config_path: str | None, **flags: Any) -> None:
    """Add N completions per prompt (columns completions, completion_models, generation)."""
    from hfpref import pipeline

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
def example() -> None:
    """Print a complete, commented hfpref.toml."""
    from hfpref.config import example_config

    click.echo(example_config(), nl=False)


@cli.command()
@click.argument("target", metavar="CONFIG_OR_FOLDER", type=click.Path(exists=True))
def validate(target: str) -> None:
    """Check a hfpref.toml, or a dataset folder (schema, empty pairs, prompt leakage across splits)."""
    from pathlib import Path

    from hfpref import pipeline

    if Path(target).is_dir():
        pipeline.validate_folder_cli(target)
    else:
        click.echo(pipeline.describe_config(_load_run_config(target)))


# --- end generate / judge / run / validate / example ---

# --- curate / push / export commands (owner: curate) ---

# --- end curate / push / export ---

# --- train command (owner: train) ---

# --- end train ---


def main() -> None:
    """Console entry point: hfpref errors become one line on stderr and an exit code."""
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("hfpref: aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(2)
    except HfprefError as exc:
        click.echo(f"hfpref: error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo(
            "hfpref: interrupted; finished requests are cached, run the same command to resume", err=True
        )
        sys.exit(130)
