"""hfpref's own train options: what TRL's ``ScriptArguments``, ``ModelConfig`` and trainer configs lack.

Every other setting is a field of one of those TRL dataclasses and is parsed under its TRL name
(:mod:`hfpref.training.settings`). This module imports nothing heavy: the CLI reads its field help
for ``hfpref train --help`` without loading TRL, torch or transformers.

NeMo RL DPO settings (``dpo.*``) and their TRL 1.16 equivalents:

- ``reference_policy_kl_penalty`` → ``beta`` (DPO and KTO).
- ``preference_loss_weight`` → the first entry of ``loss_weights``.
- ``sft_loss_weight`` → ``loss_type=[sigmoid, sft]`` with ``loss_weights=[preference, sft]``.
- ``preference_average_log_probs: true`` → ``sigmoid_norm`` instead of ``sigmoid``: the DPO sigmoid
  loss on log-ratios averaged over the completion tokens (TRL has no separate switch for it).
- ``sft_average_log_probs``: TRL's ``sft`` loss is always a per-token mean (``true``); ``false``, a
  per-sequence sum, has no TRL equivalent and is refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from hfpref.config import _help
from hfpref.errors import ConfigError

METHODS = ("dpo", "kto", "sft")
METHOD_OF_CONFIG = {"dpo": "dpo", "step_dpo": "dpo", "kto": "kto", "sft": "sft"}
TRAINERS = {"dpo": "DPO", "kto": "KTO", "sft": "SFT"}  # trl.{X}Config and trl.{X}Trainer
# TRL's names of hfpref's options: either spelling sets the same option.
TRL_NAMES = {"dataset": "dataset_name", "config_name": "dataset_config", "model": "model_name_or_path"}
NEMO_KEYS = (
    "preference_loss_weight", "sft_loss_weight", "preference_average_log_probs", "sft_average_log_probs",
)  # fmt: skip


@dataclass
class TrainOptions:
    """hfpref's own train options; every other key is a field of TRL's ``ScriptArguments``,
    ``ModelConfig`` or ``DPOConfig`` / ``KTOConfig`` / ``SFTConfig``."""

    dataset: str | None = _help(
        "Hub dataset repo id (`user/prefs`) or a folder from `hfpref curate` (TRL: dataset_name).", None
    )
    model: str | None = _help(
        "Model to train: a Hub model id or a local model folder (TRL: model_name_or_path).", None
    )
    method: str | None = _help("dpo, kto or sft (default: the method of --config-name, else dpo).", None)
    config_name: str | None = _help(
        "Dataset config (default: the method's; step_dpo trains with DPO) (TRL: dataset_config).", None
    )
    full: bool = _help("Full fine-tuning instead of a LoRA adapter (TRL: use_peft=false).", False)
    resume: bool = _help(
        "Resume from the last checkpoint in the output dir (resume=PATH: from that checkpoint).", False
    )
    reference_policy_kl_penalty: float | None = _help("NeMo RL name of `beta` (DPO, KTO).", None)
    preference_loss_weight: float | None = _help("NeMo RL: weight of the DPO preference loss.", None)
    sft_loss_weight: float | None = _help("NeMo RL: weight of an SFT loss on chosen answers.", None)
    preference_average_log_probs: bool | None = _help("NeMo RL: token-mean DPO loss (sigmoid_norm).", None)
    sft_average_log_probs: bool | None = _help("NeMo RL: token-mean SFT loss (TRL's only kind).", None)

    def __post_init__(self) -> None:
        if self.method is not None and self.method not in METHODS:
            raise ConfigError(f"method must be one of {', '.join(METHODS)}, got {self.method!r}")

    def nemo_to_trl(self, trl: dict[str, object]) -> None:
        """Translate the NeMo RL settings into TRL's keys of ``trl`` (see the module docstring)."""
        if self.reference_policy_kl_penalty is not None:
            if self.method == "sft":
                raise ConfigError(
                    "reference_policy_kl_penalty (beta) applies to dpo and kto training, not sft"
                )
            if "beta" in trl:
                raise ConfigError(
                    "set either beta or reference_policy_kl_penalty (its NeMo RL name), not both"
                )
            trl["beta"] = self.reference_policy_kl_penalty
        given = [name for name in NEMO_KEYS if getattr(self, name) is not None]
        if not given:
            return
        if self.method != "dpo":
            raise ConfigError(f"{given[0]} is a NeMo RL DPO setting: it needs method dpo, not {self.method}")
        if "loss_type" in trl or "loss_weights" in trl:
            raise ConfigError(
                f"set either loss_type/loss_weights or the NeMo RL settings ({', '.join(given)})"
            )
        sft_weight = self.sft_loss_weight or 0.0
        if sft_weight and self.sft_average_log_probs is False:
            raise ConfigError(
                "sft_average_log_probs=false (a per-sequence sum) has no TRL equivalent: TRL's sft loss is a "
                "per-token mean; drop the key or set it to true"
            )
        preference = 1.0 if self.preference_loss_weight is None else self.preference_loss_weight
        loss_type = ["sigmoid_norm" if self.preference_average_log_probs else "sigmoid"]
        trl["loss_type"], trl["loss_weights"] = loss_type, [preference]
        if sft_weight:
            trl["loss_type"], trl["loss_weights"] = [*loss_type, "sft"], [preference, sft_weight]


@dataclass
class TrainResult:
    """What :func:`hfpref.train` returns (on every process)."""

    output_dir: Path
    method: str
    config_name: str
    metrics: dict[str, float] = field(default_factory=dict)
    log_history: list[dict[str, float]] = field(default_factory=list)
    hub_url: str | None = None
