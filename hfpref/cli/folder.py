"""``hfpref curate``, ``push``, ``report`` and ``export``: the dataset folder, which is the Hub repo."""

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
    from hfpref.errors import ConfigError
    from hfpref.repo.card import check_license
    from hfpref.stages.calibrate import stored_calibration
    from hfpref.stages.curate import curate, curate_config
    from hfpref.stages.io import load_rows

    run = load_run_config(config_path)
    config = curate_config(run.curate, **flags)  # bad options fail before the input is read
    license_ = check_license(license_ or run.hub.license)
    calibration = None  # of the configured judge (hfpref judge --calibrate), when one is named and was run
    if run.judge.models:
        try:
            calibration = stored_calibration(run.judge)
        except (
            ConfigError
        ):  # a judge prompt file that is not here: that judge cannot have been calibrated here
            calibration = None
    result = curate(
        load_rows(input_path),
        folder,
        config,
        license=license_,
        repo_id=run.hub.repo_id,
        calibration=calibration,
    )
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


@cli.command("report")
@click.argument("target", metavar="FOLDER_OR_REPO")
@click.option(
    "-o",
    "--output",
    metavar="DIR",
    help="For a Hub dataset id: the folder to copy it into (default ./NAME-report).",
)
@click.option("--revision", metavar="REV", help="For a Hub dataset id: the branch or commit to read.")
def report_command(target: str, output: str | None, revision: str | None) -> None:
    """Print the statistics of a dataset's figures and draw them again (images/, linked from the card).

    A FOLDER is reported in place (its figures, hfpref.json and card rewritten); a Hub REPO is copied
    (card, hfpref.json, dpo shards) into a local folder first, and the Hub repo is left as it is.
    """
    from hfpref.repo.report import report

    click.echo("\n".join(report(target, output, revision)))


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
