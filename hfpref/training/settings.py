"""Train settings, parsed the way TRL's own scripts (``trl dpo``…) parse theirs.

One :class:`TrainParser` (TRL's ``TrlParser``, an ``HfArgumentParser``) covers hfpref's
:class:`~hfpref.training.options.TrainOptions`, TRL's ``ScriptArguments`` and ``ModelConfig``, and the
method's ``DPOConfig`` / ``KTOConfig`` / ``SFTConfig``, so every TRL option works under its TRL name
and TRL converts and checks its values. As in ``TrlParser.parse_args_and_config``, the ``-c`` file's
values (and a dict of ``overrides``) become the parser's defaults and ``key=value`` settings its
command-line arguments (``--key=value``, ``--key a b`` for a list field). Last wins: hfpref's defaults
< file < ``overrides`` < arguments (the CLI's flags).

The small adapter around TRL's parser keeps hfpref's forms: the file may also be TOML; ``key=value``
instead of ``--key value``; a list as ``[a, b]`` or ``a,b``; a mapping as ``{k: v}`` (YAML) besides
TRL's JSON; TRL's ``dataset_name`` / ``dataset_config`` / ``model_name_or_path`` under hfpref's
shorter names; ``push_to_hub=user/name`` for TRL's ``push_to_hub=true hub_model_id=user/name`` and
``resume=PATH`` for ``resume_from_checkpoint=PATH``; an unknown key is refused with a suggestion.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import importlib.util
import json
import os
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import yaml
from trl import ModelConfig, ScriptArguments, TrlParser

from hfpref.errors import ConfigError
from hfpref.training.options import METHOD_OF_CONFIG, METHODS, TRAINERS, TRL_NAMES, TrainOptions

if TYPE_CHECKING:
    from transformers import TrainingArguments

BOOL_WORDS = ("yes", "true", "t", "y", "1", "no", "false", "f", "n", "0")  # what TRL's parser reads as bools
# hfpref's defaults over ModelConfig's: a LoRA adapter on every linear layer; nested 4-bit quantization.
MODEL_DEFAULTS = {"use_peft": True, "lora_target_modules": "all-linear", "use_bnb_nested_quant": True}


@dataclass
class TrainSettings:
    """Parsed settings: hfpref's options, TRL's script and model arguments, and the trainer config's keys
    that were set (NeMo RL names translated); :func:`build_trl_config` adds hfpref's device defaults."""

    options: TrainOptions
    script: ScriptArguments
    model: ModelConfig
    trl: dict[str, Any]
    given: frozenset[str]  # every key that was set, by any of file, overrides or arguments

    @property
    def method(self) -> str:
        return self.options.method or "dpo"


def config_class(method: str) -> type[TrainingArguments]:
    import trl

    return getattr(trl, f"{TRAINERS[method]}Config")


class TrainParser(TrlParser):
    """TRL's parser over hfpref's options, ScriptArguments, ModelConfig and the method's config. Its errors
    are :class:`ConfigError`; it keeps each key's argparse action to turn ``key=value`` into arguments."""

    def __init__(self, method: str) -> None:
        self.config_cls = config_class(method)
        self.actions: dict[str, argparse.Action] = {}
        dataclass_types = (TrainOptions, ScriptArguments, ModelConfig, self.config_cls)
        # exit_on_error=False: a bad value raises ArgumentError, reworded below as one line naming the key
        kwargs = {"prog": "hfpref train", "add_help": False, "allow_abbrev": False, "exit_on_error": False}
        super().__init__(dataclass_types, **kwargs)

    def add_argument(self, *args: Any, **kwargs: Any) -> argparse.Action:
        action = super().add_argument(*args, **kwargs)
        self.actions.setdefault(action.dest, action)  # the field's own action, not its `--no_*` complement
        return action

    def error(self, message: str) -> NoReturn:
        raise ConfigError(message)

    def check_keys(self, keys: Iterable[str], method: str) -> None:
        for key in keys:
            if key not in self.actions:
                close = difflib.get_close_matches(key, list(self.actions), n=3, cutoff=0.6)
                hint = f"; did you mean {' or '.join(close)}?" if close else "; see `hfpref train --help`"
                raise ConfigError(f"unknown key {key!r} for {method} ({self.config_cls.__name__}){hint}")

    def parse(self, defaults: dict[str, Any], pairs: list[tuple[str, str]]) -> dict[str, Any]:
        """Every field's value: ``defaults`` as the parser's defaults (TRL's config-file way), ``pairs`` as
        command-line arguments, later ones winning."""
        self.set_defaults_with_config(**defaults)
        argv = [token for key, value in pairs for token in self._arguments(key, value)]
        try:
            return vars(self.parse_args(argv))
        except argparse.ArgumentError as exc:
            key = (exc.argument_name or "").split("/")[0].lstrip("-")
            raise ConfigError(f"{key}: {exc.message}") from None

    def _arguments(self, key: str, value: str) -> list[str]:
        """``key=value`` as TRL's arguments: ``--key=value``, or ``--key a b`` for a list field (``[a, b]``
        or ``a,b``); a mapping (``model_init_kwargs``) may be YAML, TRL reads JSON."""
        text = value.strip()
        bracketed = text[:1] == "[" and text[-1:] == "]"
        if self.actions[key].nargs == "+":
            items = text[1:-1] if bracketed else text
            return [f"--{key}", *(item.strip().strip("'\"") for item in items.split(",") if item.strip())]
        if bracketed:
            raise ConfigError(f"{key} takes one value, not a list: {text}")
        if text[:1] == "{" and text[-1:] == "}":
            try:
                text = json.dumps(yaml.safe_load(text))
            except yaml.YAMLError:
                raise ConfigError(f"{key}: cannot parse {text} as a mapping {{k: v}}") from None
        return [f"--{key}={text}"]


def load_train_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A flat YAML (`.yaml`/`.yml`) or TOML (`.toml`) mapping of train settings. As in TRL's config files,
    an ``env:`` mapping sets environment variables."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    try:
        data = tomllib.loads(text) if path.suffix == ".toml" else yaml.safe_load(text) or {}
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"config file {path} is not valid {path.suffix[1:].upper()}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of key: value, got {type(data).__name__}")
    env = data.pop("env", {})
    if not isinstance(env, dict):
        raise ConfigError(f"config file {path}: env must be a mapping of VARIABLE: value")
    os.environ.update({str(name): str(value) for name, value in env.items()})
    return {str(key): value for key, value in data.items()}


def _spelled(key: str, value: Any) -> list[tuple[str, Any]]:
    """A setting under the name the parser knows (see the module docstring)."""
    key = key.strip().replace("-", "_")
    key = next((ours for ours, theirs in TRL_NAMES.items() if theirs == key), key)
    named = isinstance(value, str) and value.strip().lower() not in BOOL_WORDS  # a repo id or a path
    if key == "push_to_hub" and named:
        return [("push_to_hub", "true"), ("hub_model_id", value)]
    if key == "resume" and named:
        return [("resume_from_checkpoint", value)]
    return [(key, value)]


def _key_value(item: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"expected KEY=VALUE, got {item!r} (e.g. beta=0.1 or loss_type=[sigmoid,sft])")
    return key, value


def _text(value: str | bool | os.PathLike[str]) -> str:
    return str(value).lower() if isinstance(value, bool) else os.fspath(value)


def _fields_of(cls: type, values: dict[str, Any]) -> dict[str, Any]:
    return {f.name: values[f.name] for f in dataclasses.fields(cls) if f.init}


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
) -> TrainSettings:
    """Parse and check every setting (hfpref's defaults < file < overrides < arguments)."""
    defaults: dict[str, Any] = {}
    for key, value in (load_train_file(config_file) if config_file is not None else {}).items():
        defaults.update(_spelled(key, value))
    pairs: list[tuple[str, str]] = []
    if isinstance(overrides, dict):
        for key, value in overrides.items():
            defaults.update(_spelled(key, value))
    else:
        pairs += [pair for item in overrides or () for pair in _spelled(*_key_value(item))]
    arguments = {"dataset": dataset, "model": model, "method": method, "config_name": config_name}
    arguments |= {"output_dir": output_dir, "full": full, "resume": resume, "push_to_hub": push_to_hub}
    pairs += [
        pair for key, value in arguments.items() if value is not None for pair in _spelled(key, _text(value))
    ]
    latest = defaults | dict(pairs)  # what each key ends up as: picks the method, hence the TRL config

    method = str(latest.get("method") or METHOD_OF_CONFIG.get(str(latest.get("config_name")), "dpo"))
    if method not in METHODS:
        raise ConfigError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    parser = TrainParser(method)
    parser.check_keys(latest, method)
    values = parser.parse(MODEL_DEFAULTS | {"method": method} | defaults, pairs)
    options = TrainOptions(**_fields_of(TrainOptions, values))
    script = ScriptArguments(**_fields_of(ScriptArguments, values))
    try:
        model_args = ModelConfig(**_fields_of(ModelConfig, values))
    except ValueError as exc:
        raise ConfigError(f"ModelConfig: {exc}") from None
    trl = {key: value for key, value in _fields_of(parser.config_cls, values).items() if key in latest}
    options.nemo_to_trl(trl)

    if not options.dataset or not options.model:
        raise ConfigError("--dataset and --model are required (or dataset: and model: in the file)")
    script.dataset_name, script.dataset_config = options.dataset, options.config_name
    model_args.model_name_or_path = options.model
    if script.dataset_streaming:
        raise ConfigError("dataset_streaming is not supported: hfpref train reads the splits whole")
    _check_adapter(options, model_args, latest)
    trl.setdefault("output_dir", f"{options.model.rstrip('/').split('/')[-1]}-{method.upper()}")
    if trl.get("push_to_hub") and not trl.get("hub_model_id"):
        raise ConfigError("push_to_hub=true needs hub_model_id=user/name (or --push-to-hub user/name)")
    return TrainSettings(options, script, model_args, trl, frozenset(latest))


def _check_adapter(options: TrainOptions, model: ModelConfig, given: dict[str, Any]) -> None:
    """``full`` is hfpref's name for TRL's ``use_peft=false``; a LoRA adapter (hfpref's default) is checked."""
    if options.full and "use_peft" in given and model.use_peft:
        raise ConfigError("full (full fine-tuning) and use_peft=true (a LoRA adapter) contradict each other")
    model.use_peft = model.use_peft and not options.full
    options.full = not model.use_peft
    if options.full and (model.load_in_4bit or model.load_in_8bit):
        raise ConfigError("load_in_4bit (QLoRA) or load_in_8bit trains a LoRA adapter: not with full")
    if model.lora_r < 1 or model.lora_alpha < 1:
        raise ConfigError(f"lora_r and lora_alpha must be >= 1, got {model.lora_r} and {model.lora_alpha}")
    if not 0 <= model.lora_dropout < 1:
        raise ConfigError(f"lora_dropout must be in [0, 1), got {model.lora_dropout}")


def build_trl_config(settings: TrainSettings, *, has_eval: bool) -> TrainingArguments:
    """The TRL config (DPOConfig, KTOConfig or SFTConfig): hfpref's defaults, then the keys that were set.

    hfpref's defaults over TRL's: ``bf16`` only on CUDA GPUs that support it (``fp16`` on older ones,
    fp32 on CPU); ``activation_checkpointing`` on CUDA only; LoRA runs use 10× TRL's full fine-tuning
    ``learning_rate``; ``eval_strategy="epoch"`` with a test split. Then ``model_init_kwargs`` as TRL's
    scripts build it from ModelConfig, with hfpref's model defaults (:func:`_model_defaults`).
    """
    import torch

    config_cls = config_class(settings.method)
    given = settings.trl
    cuda = torch.cuda.is_available()
    bf16 = cuda and torch.cuda.is_bf16_supported()  # never on CPU
    defaults: dict[str, Any] = {"dataloader_pin_memory": cuda}
    if "bf16" in given or "fp16" in given:
        defaults |= {"bf16": False, "fp16": False}
    else:
        defaults |= {"bf16": bf16, "fp16": cuda and not bf16}
    if "gradient_checkpointing" not in given:  # its deprecated alias would lose to a default
        defaults["activation_checkpointing"] = cuda
    if has_eval:
        defaults["eval_strategy"] = "epoch"
    if settings.model.use_peft:
        lr_field = next(f for f in dataclasses.fields(config_cls) if f.name == "learning_rate")
        defaults["learning_rate"] = float(f"{10 * lr_field.default:.6g}")  # 1e-05, not 9.999999999999999e-06
    try:
        args = config_cls(**(defaults | given))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{config_cls.__name__}: {exc}") from None
    _model_defaults(settings, args, cuda)
    return args


def _model_defaults(settings: TrainSettings, args: TrainingArguments, cuda: bool) -> None:
    """hfpref's defaults for loading the model, unless set: a LoRA run on CUDA keeps the frozen base in
    bf16/fp16 (``dtype``), 4-bit (QLoRA) with bitsandbytes where bf16 runs (TRL keeps 4-bit LoRA weights
    in bf16), stored in the compute dtype so that FSDP can shard it. ``model_init_kwargs`` then as in
    TRL's scripts: ModelConfig's revision, attention and dtype, under the config's own."""
    model, given = settings.model, settings.given
    half = "bfloat16" if args.bf16 else "float16" if args.fp16 else None
    if "dtype" not in given and model.use_peft and cuda and half:
        model.dtype = half
    has_bnb = importlib.util.find_spec("bitsandbytes") is not None
    if "load_in_4bit" not in given:
        model.load_in_4bit = bool(
            model.use_peft and not model.load_in_8bit and cuda and has_bnb and args.bf16
        )
    if (model.load_in_4bit or model.load_in_8bit) and not (cuda and has_bnb):
        name = "load_in_4bit" if model.load_in_4bit else "load_in_8bit"
        raise ConfigError(f"{name} needs the bitsandbytes package and a CUDA GPU")
    if model.load_in_4bit and "bnb_4bit_quant_storage" not in given:
        model.bnb_4bit_quant_storage = model.dtype
    init = {"revision": model.model_revision, "attn_implementation": model.attn_implementation}
    args.model_init_kwargs = init | {"dtype": model.dtype} | (args.model_init_kwargs or {})
