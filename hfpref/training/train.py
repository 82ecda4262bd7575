"""`hfpref train`: TRL + PEFT training straight from a preference dataset folder or Hub repo.

``load_dataset(DATASET, CONFIG)`` reads a folder from ``hfpref curate`` or the Hub repo it was pushed
to; ``dpo`` (also on the ``step_dpo`` config), ``kto`` and ``sft`` train with TRL's DPOTrainer,
KTOTrainer and SFTTrainer; the ``test`` split, if any, is the eval set. A PEFT LoRA adapter is trained
by default (``full``: every weight), on a 4-bit base (QLoRA) with bitsandbytes on a bf16 CUDA GPU.
Settings, last wins: defaults < ``-c train.yaml`` (flat YAML or TOML) < ``key=value`` overrides <
arguments; keys are :class:`TrainOptions` fields or fields of TRL's DPOConfig/KTOConfig/SFTConfig.

NeMo RL DPO settings (``dpo.*``) and their TRL 1.16 equivalents:

- ``reference_policy_kl_penalty`` → ``beta`` (DPO and KTO).
- ``preference_loss_weight`` → the first entry of ``loss_weights``.
- ``sft_loss_weight`` → ``loss_type=[sigmoid, sft]`` with ``loss_weights=[preference, sft]``.
- ``preference_average_log_probs: true`` → ``sigmoid_norm`` instead of ``sigmoid``: the DPO sigmoid
  loss on log-ratios averaged over the completion tokens (TRL has no separate switch for it).
- ``sft_average_log_probs``: TRL's ``sft`` loss is always a per-token mean (``true``); ``false``, a
  per-sequence sum, has no TRL equivalent and is refused.

``accelerate launch -m hfpref.cli train ARGS`` (or ``torchrun -m hfpref.cli train``) runs ``hfpref train`` on
every process; DDP, FSDP and DeepSpeed come from the accelerate config (docs/training.md).
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import os
import sys
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from hfpref.config import _help
from hfpref.errors import ConfigError, HubError, InputError, TrainError

if TYPE_CHECKING:
    from datasets import Dataset
    from transformers import TrainerCallback, TrainingArguments

METHODS = ("dpo", "kto", "sft")
METHOD_OF_CONFIG = {"dpo": "dpo", "step_dpo": "dpo", "kto": "kto", "sft": "sft"}
TRAINERS = {"dpo": "DPO", "kto": "KTO", "sft": "SFT"}  # trl.{X}Config and trl.{X}Trainer
# Accepted column sets per method, first match wins; other columns are dropped before training.
COLUMNS: dict[str, tuple[tuple[str, ...], ...]] = {
    "dpo": (("prompt", "chosen", "rejected"), ("chosen", "rejected")),
    "kto": (("prompt", "completion", "label"),),
    "sft": (("prompt", "completion"), ("messages",), ("text",)),
}
CARD_KEYS = {
    "common": (
        "learning_rate", "num_train_epochs", "max_steps", "per_device_train_batch_size",
        "gradient_accumulation_steps", "lr_scheduler_type", "warmup_steps", "max_length", "seed", "bf16", "fp16",
    ),
    "dpo": ("beta", "loss_type", "loss_weights"),
    "kto": ("beta", "loss_type", "desirable_weight", "undesirable_weight"),
    "sft": ("loss_type", "packing", "completion_only_loss"),
}  # fmt: skip
NEMO_KEYS = (
    "preference_loss_weight", "sft_loss_weight", "preference_average_log_probs", "sft_average_log_probs",
)  # fmt: skip


@dataclass
class TrainOptions:
    """hfpref's own train options; every other key is a field of TRL's DPOConfig, KTOConfig or SFTConfig."""

    dataset: str | None = _help("Hub dataset repo id (`user/prefs`) or a folder from `hfpref curate`.", None)
    model: str | None = _help("Model to train: a Hub model id or a local model folder.", None)
    method: str | None = _help("dpo, kto or sft (default: the method of --config-name, else dpo).", None)
    config_name: str | None = _help("Dataset config (default: the method's; step_dpo trains with DPO).", None)
    output_dir: str | None = _help("Checkpoints, model or adapter, card… (default: MODEL-METHOD).", None)
    full: bool = _help("Full fine-tuning instead of a LoRA adapter.", False)
    resume: bool | str = _help("Resume from the last checkpoint in the output dir (or this one).", False)
    push_to_hub: str | None = _help("Push the model and its card to this model repo (`user/name`).", None)
    lora_r: int = _help("LoRA rank.", 16)
    lora_alpha: int = _help("LoRA alpha (the adapter is scaled by alpha / r).", 32)
    lora_dropout: float = _help("LoRA dropout.", 0.05)
    lora_target_modules: str | list[str] = _help("`all-linear` or a list of module names.", "all-linear")
    load_in_4bit: bool | None = _help("QLoRA 4-bit base (default: with bitsandbytes and a bf16 GPU).", None)
    reference_policy_kl_penalty: float | None = _help("NeMo RL name of `beta` (DPO, KTO).", None)
    preference_loss_weight: float | None = _help("NeMo RL: weight of the DPO preference loss.", None)
    sft_loss_weight: float | None = _help("NeMo RL: weight of an SFT loss on chosen answers.", None)
    preference_average_log_probs: bool | None = _help("NeMo RL: token-mean DPO loss (sigmoid_norm).", None)
    sft_average_log_probs: bool | None = _help("NeMo RL: token-mean SFT loss (TRL's only kind).", None)

    def __post_init__(self) -> None:
        if self.method is not None and self.method not in METHODS:
            raise ConfigError(f"method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if self.lora_r < 1 or self.lora_alpha < 1:
            raise ConfigError(f"lora_r and lora_alpha must be >= 1, got {self.lora_r} and {self.lora_alpha}")
        if not 0 <= self.lora_dropout < 1:
            raise ConfigError(f"lora_dropout must be in [0, 1), got {self.lora_dropout}")
        if self.full and self.load_in_4bit:
            raise ConfigError("load_in_4bit (QLoRA) trains a LoRA adapter: it cannot be combined with full")


@dataclass
class TrainResult:
    """What :func:`train` returns (on every process)."""

    output_dir: Path
    method: str
    config_name: str
    metrics: dict[str, float] = field(default_factory=dict)
    log_history: list[dict[str, float]] = field(default_factory=list)
    hub_url: str | None = None


class TrainingData(NamedTuple):
    train: Dataset
    eval: Dataset | None
    config_name: str


# --- settings: parsing, checking, NeMo mapping, device defaults ---


def parse_value(text: str) -> Any:
    """A `key=value` value: int, float, true/false, a `[a, b]` list or a `{k: v}` mapping, else the string."""
    text = text.strip()
    if text[:1] in "[{" and text[-1:] in "]}":
        import yaml

        try:
            return yaml.safe_load(text)
        except yaml.YAMLError:
            raise ConfigError(f"cannot parse {text!r}: expected a list [a, b] or a map {{k: v}}") from None
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    for number in (int, float):
        try:
            return number(text)
        except ValueError:
            pass
    return text[1:-1] if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"" else text


def parse_overrides(overrides: dict[str, Any] | list[str] | tuple[str, ...] | None) -> dict[str, Any]:
    """`["beta=0.1", "loss_type=[sigmoid,sft]"]` (or a dict) as a dict of parsed values."""
    if overrides is None or isinstance(overrides, dict):
        return dict(overrides or {})
    parsed: dict[str, Any] = {}
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"expected KEY=VALUE, got {item!r} (e.g. beta=0.1 or loss_type=[sigmoid,sft])")
        parsed[key.strip().replace("-", "_")] = parse_value(value)
    return parsed


def load_train_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A flat YAML (`.yaml`/`.yml`) or TOML (`.toml`) mapping of train settings."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    import yaml

    try:
        data = tomllib.loads(text) if path.suffix == ".toml" else yaml.safe_load(text) or {}
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"config file {path} is not valid {path.suffix[1:].upper()}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of key: value, got {type(data).__name__}")
    return {str(key).replace("-", "_"): value for key, value in data.items()}


def _exact(value: Any, annotation: Any) -> bool:
    """Whether ``value`` already has type ``annotation`` (tried first among the members of a union)."""
    origin = typing.get_origin(annotation) or annotation
    if origin in (int, float):
        return isinstance(value, origin) and not isinstance(value, bool)
    return annotation is Any or (origin in (bool, str, list, dict) and isinstance(value, origin))


def coerce(key: str, value: Any, annotation: Any) -> Any:
    """Check ``value`` against a dataclass field type, converting where unambiguous ("5e-6" → 5e-06)."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    name = getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")
    error = ConfigError(f"{key}: expected {name}, got {value!r}")
    if origin in (typing.Union, types.UnionType):
        members = [m for m in args if m is not type(None)]
        nullable = len(members) < len(args)
        if value is None or (nullable and str not in members and str(value).lower() in ("none", "null")):
            if nullable:
                return None
            raise error
        for member in sorted(members, key=lambda m: not _exact(value, m)):
            try:
                return coerce(key, value, member)
            except ConfigError:
                continue
        raise error
    if annotation is Any:
        return value
    if annotation is bool and str(value).lower() in ("true", "false"):
        return str(value).lower() == "true"
    if annotation in (int, float) and not isinstance(value, bool):
        try:
            number = annotation(value)
        except (TypeError, ValueError):
            raise error from None
        if not isinstance(value, float) or number == value:
            return number
    if annotation is str and isinstance(value, str | int | float) and not isinstance(value, bool):
        return str(value)
    if list in (origin, annotation):
        (item,) = args or (Any,)
        items = value.split(",") if isinstance(value, str) else value if isinstance(value, list) else [value]
        return [coerce(key, v.strip() if isinstance(v, str) else v, item) for v in items]
    if dict in (origin, annotation) and isinstance(value, dict):
        return value
    if origin is typing.Literal and value in args:
        return value
    raise error


def _trl_config_class(method: str) -> type[TrainingArguments]:
    import trl

    return getattr(trl, f"{TRAINERS[method]}Config")


def resolve_train_config(
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
) -> tuple[TrainOptions, dict[str, Any]]:
    """Merge defaults < file < overrides < arguments, check every key and value: (options, TRL kwargs).

    The TRL kwargs are the user's, NeMo RL names mapped; :func:`build_trl_config` adds hfpref's defaults.
    """
    values = load_train_file(config_file) if config_file is not None else {}
    values.update(parse_overrides(overrides))
    arguments = {"dataset": dataset, "model": model, "method": method, "config_name": config_name}
    arguments |= {"output_dir": output_dir and str(output_dir), "full": full, "resume": resume}
    values.update({k: v for k, v in (arguments | {"push_to_hub": push_to_hub}).items() if v is not None})
    if values.get("push_to_hub") is False:
        del values["push_to_hub"]
    elif values.get("push_to_hub") is True:  # TRL style: push_to_hub=true hub_model_id=user/name
        if not values.get("hub_model_id"):
            raise ConfigError("push_to_hub=true needs hub_model_id=user/name (or --push-to-hub user/name)")
        values["push_to_hub"] = values.pop("hub_model_id")

    hints = typing.get_type_hints(TrainOptions)
    options = TrainOptions(**{k: coerce(k, v, hints[k]) for k, v in values.items() if k in hints})
    options.method = options.method or METHOD_OF_CONFIG.get(options.config_name or "", "dpo")
    config_cls = _trl_config_class(options.method)
    trl_hints = typing.get_type_hints(config_cls)
    trl_fields = {f.name for f in dataclasses.fields(config_cls) if f.init}
    for key in values:
        if key not in hints and key not in trl_fields:
            close = difflib.get_close_matches(key, [*hints, *trl_fields], n=3, cutoff=0.6)
            hint = f"; did you mean {' or '.join(close)}?" if close else "; see `hfpref train --help`"
            raise ConfigError(f"unknown key {key!r} for {options.method} ({config_cls.__name__}){hint}")
    if not options.dataset or not options.model:
        raise ConfigError("--dataset and --model are required (or dataset: and model: in the file)")
    trl_kwargs = {k: coerce(k, v, trl_hints[k]) for k, v in values.items() if k not in hints}
    _map_nemo_settings(options, trl_kwargs)
    if options.output_dir is None:
        options.output_dir = f"{options.model.rstrip('/').split('/')[-1]}-{options.method.upper()}"
    return options, trl_kwargs


def _map_nemo_settings(options: TrainOptions, trl: dict[str, Any]) -> None:
    """Translate NeMo RL's DPO settings into TRL's (see the module docstring)."""
    if options.reference_policy_kl_penalty is not None:
        if options.method == "sft":
            raise ConfigError("reference_policy_kl_penalty (beta) applies to dpo and kto training, not sft")
        if "beta" in trl:
            raise ConfigError("set either beta or reference_policy_kl_penalty (its NeMo RL name), not both")
        trl["beta"] = options.reference_policy_kl_penalty
    given = [name for name in NEMO_KEYS if getattr(options, name) is not None]
    if not given:
        return
    if options.method != "dpo":
        raise ConfigError(f"{given[0]} is a NeMo RL DPO setting: it needs method dpo, not {options.method}")
    if "loss_type" in trl or "loss_weights" in trl:
        raise ConfigError(f"set either loss_type/loss_weights or the NeMo RL settings ({', '.join(given)})")
    sft_weight = options.sft_loss_weight or 0.0
    if sft_weight and options.sft_average_log_probs is False:
        raise ConfigError(
            "sft_average_log_probs=false (a per-sequence sum) has no TRL equivalent: TRL's sft loss is a "
            "per-token mean; drop the key or set it to true"
        )
    trl["loss_type"] = ["sigmoid_norm" if options.preference_average_log_probs else "sigmoid"]
    trl["loss_weights"] = [1.0 if options.preference_loss_weight is None else options.preference_loss_weight]
    if sft_weight:
        trl["loss_type"].append("sft")
        trl["loss_weights"].append(sft_weight)


def build_trl_config(
    options: TrainOptions, trl_kwargs: dict[str, Any], *, has_eval: bool
) -> TrainingArguments:
    """The TRL config (DPOConfig, KTOConfig or SFTConfig): hfpref's defaults, then the user's keys.

    hfpref's defaults over TRL's: ``bf16`` only on CUDA GPUs that support it (``fp16`` on older ones,
    fp32 on CPU); ``activation_checkpointing`` on CUDA only; LoRA runs use 10× TRL's full fine-tuning
    ``learning_rate`` and keep the frozen base in bf16/fp16 on CUDA; ``eval_strategy="epoch"`` with a
    test split.
    """
    import torch

    config_cls = _trl_config_class(options.method or "dpo")
    cuda = torch.cuda.is_available()
    bf16 = cuda and torch.cuda.is_bf16_supported()  # never on CPU
    defaults: dict[str, Any] = {"output_dir": options.output_dir, "dataloader_pin_memory": cuda}
    if "bf16" in trl_kwargs or "fp16" in trl_kwargs:
        defaults |= {"bf16": False, "fp16": False}
    else:
        defaults |= {"bf16": bf16, "fp16": cuda and not bf16}
    if "gradient_checkpointing" not in trl_kwargs:  # its deprecated alias would lose to a default
        defaults["activation_checkpointing"] = cuda
    if has_eval:
        defaults["eval_strategy"] = "epoch"
    if options.push_to_hub:
        defaults |= {"push_to_hub": True, "hub_model_id": options.push_to_hub}
    if not options.full:
        lr_field = next(f for f in dataclasses.fields(config_cls) if f.name == "learning_rate")
        defaults["learning_rate"] = float(f"{10 * lr_field.default:.6g}")  # 1e-05, not 9.999999999999999e-06
    kwargs = defaults | trl_kwargs
    half = "bfloat16" if kwargs["bf16"] else "float16" if kwargs["fp16"] else None
    if not options.full and cuda and half:  # the frozen base of a LoRA run needs no fp32 copy
        user_init = kwargs.get("model_init_kwargs")
        kwargs["model_init_kwargs"] = {"dtype": half, **(user_init if isinstance(user_init, dict) else {})}
    try:
        return config_cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{config_cls.__name__}: {exc}") from None


# --- data ---


def load_training_data(dataset: str, config_name: str | None, method: str) -> TrainingData:
    """The train (and test) split of the config (None: the method's, or ``default``), method columns only."""
    from datasets import get_dataset_config_names, load_dataset

    from hfpref.stages.io import check_parquet

    local = Path(dataset)
    if local.is_file():
        raise InputError(
            f"--dataset {dataset} is a file; give a dataset folder (as `hfpref curate` writes) or a Hub repo id"
        )
    for shard in sorted(local.rglob("*.parquet")) if local.is_dir() else ():
        check_parquet(shard)  # one line for a corrupt shard, before datasets logs its own
    try:
        names = get_dataset_config_names(dataset)
        wanted = config_name or method
        if wanted not in names and config_name is None and names == ["default"]:
            wanted = "default"
        if wanted not in names:
            hint = f"; write it with `hfpref curate --formats {wanted}`" if wanted in METHOD_OF_CONFIG else ""
            raise InputError(
                f"dataset {dataset} has no config {wanted!r} (configs: {', '.join(names)}){hint}"
            )
        splits = load_dataset(dataset, wanted)
    except FileNotFoundError as exc:
        raise InputError(
            f"dataset {dataset} not found: give a folder or a Hub dataset repo id ({exc})"
        ) from None
    except ValueError as exc:
        raise InputError(f"dataset {dataset}: {exc}") from None
    except OSError as exc:
        raise HubError(f"could not read dataset {dataset} from the Hub: {exc}") from None
    if "train" not in splits or len(splits["train"]) == 0:
        raise InputError(f"dataset {dataset} config {wanted!r} has no train rows (splits: {list(splits)})")
    test = _select_columns(splits["test"], dataset, wanted, method) if "test" in splits else None
    return TrainingData(_select_columns(splits["train"], dataset, wanted, method), test, wanted)


def _select_columns(ds: Dataset, dataset: str, config_name: str, method: str) -> Dataset:
    for columns in COLUMNS[method]:
        if set(columns) <= set(ds.column_names):
            if method == "kto" and getattr(ds.features["label"], "dtype", None) != "bool":
                raise InputError(f"dataset {dataset} config {config_name!r}: kto needs a bool label column")
            return ds.select_columns(list(columns))
    expected = " or ".join("(" + ", ".join(c) + ")" for c in COLUMNS[method])
    raise InputError(
        f"dataset {dataset} config {config_name!r} has columns ({', '.join(ds.column_names)}); "
        f"{method} training needs {expected}"
    )


# --- model card ---


class _CardMixin:
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


def _show(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ",".join(map(_show, value)) + "]"
    if isinstance(value, enum.Enum):
        return str(value.value)
    return str(value).lower() if isinstance(value, bool) else str(value)


def _card(
    options: TrainOptions, trl_kwargs: dict[str, Any], args: Any, data: TrainingData, rows: str
) -> dict[str, Any]:
    """The `_CardMixin` attributes: a card section with the dataset link, hyper-parameters and command."""
    method = options.method or "dpo"
    params = {key: getattr(args, key) for key in (*CARD_KEYS["common"], *CARD_KEYS[method])}
    params |= {k: v for k, v in trl_kwargs.items() if isinstance(v, str | int | float | list)}
    params["processes"] = world = args.world_size
    params["batch_size"] = args.per_device_train_batch_size * args.gradient_accumulation_steps * world
    params["adapter"] = _adapter_name(options)
    table = "\n".join(f"| `{key}` | `{_show(value)}` |" for key, value in params.items())
    command = f"hfpref train --dataset {options.dataset} --model {options.model} --method {method}"
    command += f" --config-name {data.config_name}" + (" --full" if options.full else "")
    command += "".join(f" {k}={_show(v)}" for k, v in trl_kwargs.items())
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


# --- training ---


def _adapter_name(options: TrainOptions) -> str:
    qlora = " on a 4-bit base (QLoRA)" if options.load_in_4bit else ""
    lora = f"LoRA r={options.lora_r} alpha={options.lora_alpha} dropout={options.lora_dropout}{qlora}"
    return "none (full fine-tuning)" if options.full else lora


def _adapter(options: TrainOptions, cuda: bool, bf16: bool) -> tuple[Any, Any]:
    """(PEFT LoRA config or None, bitsandbytes 4-bit config or None)."""
    if options.full:
        return None, None
    import importlib.util

    from peft import LoraConfig

    lora = LoraConfig(
        r=options.lora_r, lora_alpha=options.lora_alpha, lora_dropout=options.lora_dropout,
        target_modules=options.lora_target_modules, bias="none", task_type="CAUSAL_LM",
    )  # fmt: skip
    has_bnb = importlib.util.find_spec("bitsandbytes") is not None
    if options.load_in_4bit is None:  # TRL keeps 4-bit LoRA weights in bf16: only where bf16 runs
        options.load_in_4bit = cuda and has_bnb and bf16
    if not options.load_in_4bit:
        return lora, None
    if not (cuda and has_bnb):
        raise ConfigError("load_in_4bit needs the bitsandbytes package and a CUDA GPU")
    import torch
    from transformers import BitsAndBytesConfig

    dtype = torch.bfloat16 if bf16 else torch.float16
    quantization = BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=dtype, bnb_4bit_quant_storage=dtype,  # the storage dtype lets FSDP shard it
    )  # fmt: skip
    return lora, quantization


def _say(message: str) -> None:
    from accelerate import PartialState

    if PartialState().is_main_process:
        print(f"hfpref: {message}", file=sys.stderr, flush=True)


def _checkpoint(options: TrainOptions, args: TrainingArguments) -> str | None:
    """The checkpoint to resume from: ``resume`` (True: the last one in the output dir) or TRL's own key."""
    if options.resume is True:
        from transformers.trainer_utils import get_last_checkpoint

        last = get_last_checkpoint(args.output_dir) if os.path.isdir(args.output_dir) else None
        if last is None:
            raise ConfigError(f"--resume: no checkpoint-* folder in {args.output_dir} to resume from")
        return last
    path = options.resume or args.resume_from_checkpoint
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

    ``overrides``: TRL config fields or :class:`TrainOptions` (``{"beta": 0.1}`` or ``["beta=0.1"]``);
    ``config_file``: a flat YAML/TOML of the same keys; ``None`` arguments fall back to the file, then
    to the defaults (``full=False``, ``resume=False``). ``callbacks`` go to the TRL trainer. Writes the
    adapter (or model), tokenizer, checkpoints, metrics (``trainer_state.json``) and a model card.
    """
    options, trl_kwargs = resolve_train_config(
        dataset, model, method=method, config_name=config_name, output_dir=output_dir, config_file=config_file,
        overrides=overrides, full=full, resume=resume, push_to_hub=push_to_hub,
    )  # fmt: skip
    import torch
    import trl
    from accelerate import PartialState

    method = options.method or "dpo"
    with PartialState().main_process_first():
        data = load_training_data(options.dataset or "", options.config_name, method)
    args = build_trl_config(options, trl_kwargs, has_eval=data.eval is not None)
    checkpoint = _checkpoint(options, args)
    peft_config, quantization = _adapter(options, torch.cuda.is_available(), args.bf16)
    name = TRAINERS[method]
    rows = f"{len(data.train):,} train / {len(data.eval) if data.eval is not None else 0:,} test rows"
    card = _card(options, trl_kwargs, args, data, rows)
    trainer_cls = type(f"Hfpref{name}Trainer", (_CardMixin, getattr(trl, f"{name}Trainer")), card)
    _say(f"{name} on {options.dataset} [{data.config_name}] ({rows}), {_adapter_name(options)}")
    try:
        trainer = trainer_cls(
            model=options.model, args=args, train_dataset=data.train, eval_dataset=data.eval, callbacks=callbacks,
            peft_config=peft_config, quantization_config=quantization,
        )  # fmt: skip
    except OSError as exc:
        raise TrainError(f"could not load model {options.model}: {exc}") from None
    except ValueError as exc:
        raise TrainError(f"could not set up {name}Trainer: {exc}") from None
    try:
        output = trainer.train(resume_from_checkpoint=checkpoint)
    except torch.OutOfMemoryError:
        raise TrainError("out of GPU memory: lower per_device_train_batch_size or max_length") from None
    trainer.save_metrics("train", output.metrics)
    trainer.save_state()
    hub_url = None
    if options.push_to_hub:
        trainer.push_to_hub(commit_message=f"hfpref train: {name} on {options.dataset}")
        hub_url = f"https://huggingface.co/{options.push_to_hub}"
    else:
        trainer.save_model()
        trainer.create_model_card(model_name=Path(args.output_dir).name)
    history = trainer.state.log_history
    metrics = dict(output.metrics) | next((e for e in reversed(history) if "eval_loss" in e), {})
    keys = ("train_loss", "eval_loss", "eval_rewards/margins", "eval_rewards/accuracies")
    summary = ", ".join(f"{key} {metrics[key]:.4g}" for key in keys if key in metrics)
    _say(f"saved the {'model' if options.full else 'adapter'} and tokenizer to {args.output_dir}; {summary}")
    return TrainResult(Path(args.output_dir), method, data.config_name, metrics, history, hub_url)
