"""``hfpref curate``, ``push`` and ``export``: the dataset folder, which is the Hub repo."""

from __future__ import annotations

from typing import Any

import click

from hfpref.cli.base import cli, config_option, load_run_config
from hfpref.config import help_for


def _curate_help(name: str) -> str:
    from hfpref.config import CurateConfig

    return help_for(CurateConfig, name)


def _hub_help(name: str) -> str:
    from hfpref.config import HubConfig

    return help_for(HubConfig, name)


@cli.command("curate")
@click.argument("input_path", metavar="INPUT")
@click.option("-o", "--output", "folder", required=True, metavar="FOLDER", help="Dataset folder to write.")
@config_option
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

    run = load_run_config(config_path)
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
