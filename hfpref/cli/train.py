"""``hfpref train``: TRL + PEFT on a dataset folder or Hub repo.

The help texts come from :class:`~hfpref.training.options.TrainOptions`, which imports nothing heavy:
TRL, torch and transformers load only when the command runs (``hfpref train --help`` loads none).
"""

from __future__ import annotations

import click

from hfpref.cli.base import cli
from hfpref.config import help_for
from hfpref.training.options import METHODS, TrainOptions


def _help(name: str) -> str:
    return help_for(TrainOptions, name)


@cli.command("train")
@click.option("--dataset", metavar="REPO_ID_OR_FOLDER", help=_help("dataset"))
@click.option("--model", metavar="MODEL", help=_help("model"))
@click.option("--config-name", metavar="NAME", help=_help("config_name"))
@click.option("--method", type=click.Choice(METHODS), help=_help("method"))
@click.option(
    "-c",
    "--config",
    "config_file",
    type=click.Path(dir_okay=False),
    help="YAML or TOML file of KEY: VALUE settings (as TRL's --config file).",
)
@click.option(
    "-o",
    "--output-dir",
    metavar="DIR",
    help="TRL's output_dir: checkpoints, model or adapter, card… (default: MODEL-METHOD).",
)
@click.option("--full", is_flag=True, help=_help("full"))
@click.option("--resume", is_flag=True, help=_help("resume"))
@click.option(
    "--push-to-hub",
    metavar="REPO_ID",
    help="Push the model and its card to this model repo (TRL's push_to_hub + hub_model_id).",
)
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

    KEY=VALUE sets any field of TRL's DPOConfig / KTOConfig / SFTConfig, ModelConfig or ScriptArguments
    under its TRL name (beta=0.1 loss_type=[sigmoid,sft] learning_rate=5e-6 max_steps=100 lora_r=32
    use_dora=true), or hfpref's own options (the flags above and the NeMo RL names
    reference_policy_kl_penalty, sft_loss_weight, preference_average_log_probs). Runs unchanged under
    `accelerate launch -m hfpref.cli train ...` on one or many GPUs.
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
