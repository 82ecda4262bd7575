"""The trained model's card: TRL's own, plus a section naming the dataset (linked in the card's metadata
when it is a Hub repo), its config and row counts, the hyper-parameters and the command that reproduces
the run. The section is written by every card TRL makes: checkpoints, the final save and the Hub push.
"""

from __future__ import annotations

import dataclasses
import enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from transformers import TrainingArguments
    from trl import ModelConfig

    from hfpref.training.data import TrainingData
    from hfpref.training.settings import TrainSettings

CARD_KEYS = {
    "common": (
        "learning_rate", "num_train_epochs", "max_steps", "per_device_train_batch_size",
        "gradient_accumulation_steps", "lr_scheduler_type", "warmup_steps", "max_length", "seed", "bf16", "fp16",
    ),
    "dpo": ("beta", "loss_type", "loss_weights"),
    "kto": ("beta", "loss_type", "desirable_weight", "undesirable_weight"),
    "sft": ("loss_type", "packing", "completion_only_loss"),
}  # fmt: skip
# Keys the command's flags already say (or that name a local path or the model repo): not repeated.
NOT_REPEATED = ("output_dir", "push_to_hub", "hub_model_id", "use_peft")


class CardMixin:
    """Mixed into the TRL trainer: its cards (checkpoints, push) link the dataset, record the settings."""

    hfpref_card: str
    hfpref_dataset: str | None
    hfpref_tags: tuple[str, ...]

    def create_model_card(
        self,
        model_name: str | None = None,
        dataset_name: str | None = None,
        tags: str | list[str] | None = None,
    ) -> None:
        tag_list = [tags] if isinstance(tags, str) else list(tags or [])
        super().create_model_card(  # type: ignore[misc]
            model_name=model_name,
            dataset_name=dataset_name or self.hfpref_dataset,
            tags=[*tag_list, *self.hfpref_tags],
        )
        if self.is_world_process_zero():  # type: ignore[attr-defined]
            readme = Path(self.args.output_dir) / "README.md"  # type: ignore[attr-defined]
            readme.write_text(readme.read_text(encoding="utf-8") + self.hfpref_card, encoding="utf-8")


def show(value: Any) -> str:
    """A setting as it is written in ``key=value`` form."""
    if isinstance(value, list):
        return "[" + ",".join(map(show, value)) + "]"
    if isinstance(value, enum.Enum):
        return str(value.value)
    return str(value).lower() if isinstance(value, bool) else str(value)


def adapter_name(model: ModelConfig) -> str:
    if not model.use_peft:
        return "none (full fine-tuning)"
    base = (
        " on a 4-bit base (QLoRA)"
        if model.load_in_4bit
        else " on an 8-bit base"
        if model.load_in_8bit
        else ""
    )
    return f"LoRA r={model.lora_r} alpha={model.lora_alpha} dropout={model.lora_dropout}{base}"


def _set_by_user(settings: TrainSettings) -> dict[str, Any]:
    """The TRL settings of the run that were set (config, then ModelConfig and ScriptArguments keys)."""
    values = dict(settings.trl)
    for part in (settings.model, settings.script):
        values |= {
            f.name: getattr(part, f.name) for f in dataclasses.fields(part) if f.name in settings.given
        }
    return {key: value for key, value in values.items() if key not in NOT_REPEATED}


def card_attributes(
    settings: TrainSettings, args: TrainingArguments, data: TrainingData, rows: str
) -> dict[str, Any]:
    """The :class:`CardMixin` attributes: a card section with the dataset link, hyper-parameters and command."""
    options, method = settings.options, settings.method
    params = {key: getattr(args, key) for key in (*CARD_KEYS["common"], *CARD_KEYS[method])}
    params |= {
        k: v
        for k, v in settings.trl.items()
        if k not in NOT_REPEATED and isinstance(v, str | int | float | list)
    }
    params["processes"] = world = args.world_size
    params["batch_size"] = args.per_device_train_batch_size * args.gradient_accumulation_steps * world
    params["adapter"] = adapter_name(settings.model)
    table = "\n".join(f"| `{key}` | `{show(value)}` |" for key, value in params.items())
    command = f"hfpref train --dataset {options.dataset} --model {options.model} --method {method}"
    command += f" --config-name {data.config_name}" + (" --full" if options.full else "")
    command += "".join(f" {k}={show(v)}" for k, v in _set_by_user(settings).items())
    local = Path(options.dataset or "").exists()
    source = f"[{options.dataset}](https://huggingface.co/datasets/{options.dataset})"
    if local:
        source = f"the local folder `{options.dataset}`"
    text = (
        f"\n## Training data and hyper-parameters (hfpref)\n\nTrained with {method.upper()} by `hfpref train` "
        f"on the `{data.config_name}` config of {source} ({rows}).\n\n| hyper-parameter | value |\n|---|---|\n"
        f"{table}\n\nReproduce:\n\n```bash\n{command}\n```\n"
    )  # fmt: skip
    hub = None if local else options.dataset
    return {"hfpref_card": text, "hfpref_dataset": hub, "hfpref_tags": ("hfpref", method)}
