"""``hfpref train``: TRL + PEFT on a dataset folder or Hub repo (training is imported only when it runs)."""

from __future__ import annotations

import click

from hfpref.cli.base import cli
from hfpref.config import help_for


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
    under `accelerate launch -m hfpref.cli train ...` on one or many GPUs.
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
