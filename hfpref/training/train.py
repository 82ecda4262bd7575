"""`hfpref train`, the run: TRL + PEFT training straight from a preference dataset folder or Hub repo.

``dpo`` (also on the ``step_dpo`` config), ``kto`` and ``sft`` train with TRL's DPOTrainer, KTOTrainer
and SFTTrainer (:mod:`~hfpref.training.data` loads the splits); the ``test`` split, if any, is the eval
set. A PEFT LoRA adapter is trained by default (``full``: every weight), on a 4-bit base (QLoRA) with
bitsandbytes on a bf16 CUDA GPU. Settings are parsed as TRL's scripts parse theirs
(:mod:`~hfpref.training.settings`); the card is :mod:`~hfpref.training.card`'s.

``accelerate launch -m hfpref.cli train ARGS`` (or ``torchrun -m hfpref.cli train``) runs ``hfpref train`` on
every process; DDP, FSDP and DeepSpeed come from the accelerate config (docs/training.md).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hfpref.errors import ConfigError, TrainError
from hfpref.training.card import CardMixin, adapter_name, card_attributes
from hfpref.training.data import load_training_data
from hfpref.training.options import TRAINERS, TrainResult
from hfpref.training.settings import build_trl_config, resolve_train_config

if TYPE_CHECKING:
    from transformers import TrainerCallback, TrainingArguments

    from hfpref.training.options import TrainOptions

__all__ = ["TrainResult", "load_training_data", "train"]


def _say(message: str) -> None:
    from accelerate import PartialState

    if PartialState().is_main_process:
        print(f"hfpref: {message}", file=sys.stderr, flush=True)


def _checkpoint(options: TrainOptions, args: TrainingArguments) -> str | None:
    """The checkpoint to resume from: ``resume`` (the last one in the output dir) or TRL's own key."""
    if options.resume:
        from transformers.trainer_utils import get_last_checkpoint

        last = get_last_checkpoint(args.output_dir) if os.path.isdir(args.output_dir) else None
        if last is None:
            raise ConfigError(f"--resume: no checkpoint-* folder in {args.output_dir} to resume from")
        return last
    path = args.resume_from_checkpoint
    if path and not os.path.isdir(path):
        raise ConfigError(f"checkpoint {path} to resume from is not a folder")
    return path or None


def train(
    dataset: str | None = None,
    model: str | None = None,
    *,
    method: str | None = None,
    config_name: str | None = None,
    output_dir: str | os.PathLike[str] | None = None,
    config_file: str | os.PathLike[str] | None = None,
    overrides: dict[str, Any] | list[str] | tuple[str, ...] | None = None,
    full: bool | None = None,
    resume: bool | str | None = None,
    push_to_hub: str | None = None,
    callbacks: list[TrainerCallback] | None = None,
) -> TrainResult:
    """Train ``model`` on ``dataset`` with TRL (DPO + LoRA by default); save it all in ``output_dir``.

    ``overrides``: fields of TRL's DPOConfig/KTOConfig/SFTConfig, ModelConfig, ScriptArguments or of
    :class:`~hfpref.training.options.TrainOptions` (``{"beta": 0.1}`` or ``["beta=0.1"]``);
    ``config_file``: a flat YAML/TOML of the same keys; ``None`` arguments fall back to the file, then
    to the defaults (``full=False``, ``resume=False``). ``callbacks`` go to the TRL trainer. Writes the
    adapter (or model), tokenizer, checkpoints, metrics (``trainer_state.json``) and a model card.
    """
    settings = resolve_train_config(
        dataset, model, method=method, config_name=config_name, output_dir=output_dir, config_file=config_file,
        overrides=overrides, full=full, resume=resume, push_to_hub=push_to_hub,
    )  # fmt: skip
    import torch
    import trl
    from accelerate import PartialState

    options, script, method = settings.options, settings.script, settings.method
    with PartialState().main_process_first():
        data = load_training_data(
            options.dataset or "", options.config_name, method,
            train_split=script.dataset_train_split, test_split=script.dataset_test_split,
        )  # fmt: skip
    args = build_trl_config(settings, has_eval=data.eval is not None)
    checkpoint = _checkpoint(options, args)
    name = TRAINERS[method]
    rows = f"{len(data.train):,} train / {len(data.eval) if data.eval is not None else 0:,} test rows"
    card = card_attributes(settings, args, data, rows)
    trainer_cls = type(f"Hfpref{name}Trainer", (CardMixin, getattr(trl, f"{name}Trainer")), card)
    _say(f"{name} on {options.dataset} [{data.config_name}] ({rows}), {adapter_name(settings.model)}")
    try:
        trainer = trainer_cls(
            model=options.model, args=args, train_dataset=data.train, eval_dataset=data.eval, callbacks=callbacks,
            peft_config=trl.get_peft_config(settings.model),
            quantization_config=trl.get_quantization_config(settings.model),
        )  # fmt: skip
    except OSError as exc:
        raise TrainError(f"could not load model {options.model}: {exc}") from None
    except ValueError as exc:
        raise TrainError(f"could not set up {name}Trainer: {exc}") from None
    if script.ignore_bias_buffers:  # as TRL's scripts do: DDP skips the boolean mask buffers
        trainer.model._ddp_params_and_buffers_to_ignore = [
            key for key, buffer in trainer.model.named_buffers() if buffer.dtype == torch.bool
        ]
    try:
        output = trainer.train(resume_from_checkpoint=checkpoint)
    except torch.OutOfMemoryError:
        raise TrainError("out of GPU memory: lower per_device_train_batch_size or max_length") from None
    trainer.save_metrics("train", output.metrics)
    trainer.save_state()
    hub_url = None
    if args.push_to_hub:
        trainer.push_to_hub(commit_message=f"hfpref train: {name} on {options.dataset}")
        hub_url = f"https://huggingface.co/{args.hub_model_id}"
    else:
        trainer.save_model()
        trainer.create_model_card(model_name=Path(args.output_dir).name)
    history = trainer.state.log_history
    metrics = dict(output.metrics) | next((e for e in reversed(history) if "eval_loss" in e), {})
    keys = ("train_loss", "eval_loss", "eval_rewards/margins", "eval_rewards/accuracies")
    summary = ", ".join(f"{key} {metrics[key]:.4g}" for key in keys if key in metrics)
    _say(f"saved the {'model' if options.full else 'adapter'} and tokenizer to {args.output_dir}; {summary}")
    return TrainResult(Path(args.output_dir), method, data.config_name, metrics, history, hub_url)
