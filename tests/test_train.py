"""`hfpref train` on CPU: DPO, KTO, SFT and step_dpo runs of a few steps on a tiny random model.

The dataset folder is written by hand in the SPEC layout (``CONFIG/{train,test}-00000-of-00001.parquet``
and a README whose YAML lists the configs). Most runs are in-process (imports are paid once); one
goes through ``accelerate launch -m hfpref.cli train`` in a subprocess.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import hfpref
from hfpref.cli import cli, main
from hfpref.errors import ConfigError
from hfpref.training.settings import build_trl_config, resolve_train_config
from hfpref.training.train import train
from tests.tiny_model import tiny_model

__all__ = ["tiny_model"]  # the session fixture

ROOT = Path(__file__).resolve().parents[1]
FAST = [
    "logging_steps=1",
    "per_device_train_batch_size=4",
    "max_length=64",
    "report_to=none",
    "save_steps=1000",
]


def _user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def _assistant(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


def _rows(config: str, n: int, offset: int) -> list[dict[str, Any]]:
    """Learnable rows: the chosen answer always has the same shape, the rejected one another."""
    rows = []
    for i in range(offset, offset + n):
        a, b = i % 17, (3 * i) % 11
        question, good, bad = f"What is {a} + {b}?", f"The answer is {a + b}.", "No idea, bad question!"
        if config == "dpo":
            rows.append({
                "prompt": _user(question), "chosen": _assistant(good), "rejected": _assistant(bad),
                "score_chosen": 0.9, "score_rejected": 0.1, "margin": 0.8, "chosen_model": "m1", "rejected_model": "m2",
            })  # fmt: skip
        elif config == "sft":
            rows.append({"prompt": question, "completion": " " + good, "score": 0.9, "model": "m1"})
        elif config == "kto":
            rows.append(
                {
                    "prompt": _user(question),
                    "completion": _assistant(good if i % 2 else bad),
                    "label": bool(i % 2),
                }
            )
        elif config == "step_dpo":
            prompt = [*_user(question), *_assistant("First, add the numbers.")]
            rows.append(
                {"prompt": prompt, "chosen": _assistant(good), "rejected": _assistant(bad), "step_index": 1}
            )
        else:  # "broken": a dpo-like config without the rejected column
            rows.append({"prompt": _user(question), "chosen": _assistant(good)})
    return rows


def write_folder(path: Path, configs: tuple[str, ...] = ("dpo", "sft", "kto", "step_dpo", "broken")) -> Path:
    """A dataset folder in the SPEC layout, as `hfpref curate` writes it."""
    from datasets import Dataset

    card = ["---", "configs:"]
    for config in configs:
        card += [f"- config_name: {config}", "  data_files:"]
        for split, n, offset in (("train", 32, 0), ("test", 8, 100)):
            Dataset.from_list(_rows(config, n, offset)).to_parquet(
                path / config / f"{split}-00000-of-00001.parquet"
            )
            card += [f"  - split: {split}", f"    path: {config}/{split}-*"]
    (path / "README.md").write_text("\n".join([*card, "---", "# prefs", ""]), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def prefs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_folder(tmp_path_factory.mktemp("prefs"))


def _losses(output_dir: Path) -> list[float]:
    state = json.loads((output_dir / "trainer_state.json").read_text())
    return [entry["loss"] for entry in state["log_history"] if "loss" in entry]


def _run_main(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["hfpref", "train", *args])
    with pytest.raises(SystemExit) as exited:
        main()
    return int(exited.value.code or 0), capsys.readouterr().err


def test_dpo_learns_and_the_adapter_reloads(prefs: Path, tiny_model: Path, tmp_path: Path) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, TrainerCallback

    ids = torch.tensor([[2, 40, 50, 60, 70, 3, 2]])

    class Capture(TrainerCallback):
        logits: torch.Tensor

        def on_train_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
            model.eval()
            with torch.no_grad():
                self.logits = model(input_ids=ids).logits.clone()

    capture = Capture()
    result = hfpref.train(  # the SPEC's call, after `import hfpref.training.train` above
        dataset=str(prefs), model=str(tiny_model), output_dir=tmp_path / "out", callbacks=[capture],
        overrides=[*FAST, "max_steps=16", "learning_rate=1e-3"],
    )  # fmt: skip
    out = result.output_dir
    assert (result.method, result.config_name) == ("dpo", "dpo")
    losses = _losses(out)
    assert len(losses) == 16 and all(math.isfinite(x) for x in losses)
    assert sum(losses[-4:]) / 4 < sum(losses[:4]) / 4 - 0.05, losses
    logged = [key for entry in result.log_history for key in entry]
    assert {"rewards/margins", "rewards/accuracies", "eval_loss"} <= set(logged)
    assert result.metrics["eval_rewards/accuracies"] > 0.5 and math.isfinite(result.metrics["train_loss"])
    for name in ("adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "chat_template.jinja"):
        assert (out / name).is_file(), name
    card = (out / "README.md").read_text()
    assert "hfpref" in card and "| `beta` | `0.1` |" in card and f"--dataset {prefs}" in card

    base = AutoModelForCausalLM.from_pretrained(tiny_model).eval()
    with torch.no_grad():
        base_logits = base(input_ids=ids).logits
    reloaded = PeftModel.from_pretrained(base, out).eval()
    with torch.no_grad():
        logits = reloaded(input_ids=ids).logits
    torch.testing.assert_close(logits, capture.logits, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(logits, base_logits, atol=1e-4)


def test_cli_kto_run_passes_overrides_to_trl(prefs: Path, tiny_model: Path, tmp_path: Path) -> None:
    import torch

    out = tmp_path / "kto"
    args = ["train", "--dataset", str(prefs), "--model", str(tiny_model), "--method", "kto", "-o", str(out)]
    result = CliRunner().invoke(cli, [*args, *FAST, "max_steps=3", "beta=0.25", "desirable_weight=1.5"])
    assert result.exit_code == 0, result.output
    saved = torch.load(out / "training_args.bin", weights_only=False)
    assert (type(saved).__name__, saved.beta, saved.desirable_weight, saved.max_steps) == (
        "KTOConfig",
        0.25,
        1.5,
        3,
    )
    assert saved.bf16 is False and saved.activation_checkpointing is False
    assert all(math.isfinite(x) for x in _losses(out)) and (out / "adapter_model.safetensors").is_file()


def test_sft_config_name_picks_the_method_and_resume_continues(
    prefs: Path,
    tiny_model: Path,
    tmp_path: Path,
) -> None:
    out = tmp_path / "sft"
    first = train(
        str(prefs), str(tiny_model), config_name="sft", output_dir=out, overrides=[*FAST, "max_steps=2"]
    )
    assert first.method == "sft" and (out / "checkpoint-2").is_dir()
    resumed = train(
        str(prefs),
        str(tiny_model),
        config_name="sft",
        output_dir=out,
        resume=True,
        overrides=[*FAST, "max_steps=4"],
    )
    steps = [entry["step"] for entry in resumed.log_history if "loss" in entry]
    assert steps[-2:] == [3, 4] and all(math.isfinite(x) for x in _losses(out))


def test_step_dpo_trains_with_dpo(prefs: Path, tiny_model: Path, tmp_path: Path) -> None:
    result = train(
        str(prefs),
        str(tiny_model),
        config_name="step_dpo",
        output_dir=tmp_path / "s",
        overrides=[*FAST, "max_steps=2"],
    )
    assert (result.method, result.config_name) == ("dpo", "step_dpo")
    assert (
        "rewards/margins" in result.log_history[0]
        and "step_dpo" in (result.output_dir / "README.md").read_text()
    )


def test_overrides_file_and_nemo_knobs_reach_the_trl_config(tmp_path: Path) -> None:
    config_file = tmp_path / "train.yaml"
    config_file.write_text("model: m\nbeta: 0.2\nlora_r: 8\nlearning_rate: 5e-6\nloss_weights: [1, 0.5]\n")
    settings = resolve_train_config(
        "user/prefs",
        config_file=config_file,
        overrides=[
            "beta=0.3",
            "loss_type=[sigmoid,sft]",
            "max_length=none",
            "report_to=none",
            "warmup_steps=5",
        ],
    )
    assert (settings.options.model, settings.model.lora_r, settings.method) == ("m", 8, "dpo")
    args = build_trl_config(settings, has_eval=True)
    assert args.output_dir == "m-DPO"
    assert (args.beta, args.loss_type, args.loss_weights, args.learning_rate) == (
        0.3,
        ["sigmoid", "sft"],
        [1.0, 0.5],
        5e-6,
    )
    assert (args.max_length, args.report_to, args.warmup_steps, args.eval_strategy) == (None, [], 5, "epoch")
    assert (args.bf16, args.fp16, args.activation_checkpointing) == (False, False, False)

    nemo = ["reference_policy_kl_penalty=0.05", "sft_loss_weight=0.1", "preference_average_log_probs=true"]
    args = build_trl_config(resolve_train_config("d", "m", overrides=nemo), has_eval=False)
    assert (args.beta, args.loss_type, args.loss_weights) == (0.05, ["sigmoid_norm", "sft"], [1.0, 0.1])
    assert args.learning_rate == pytest.approx(1e-5)  # LoRA default: 10x TRL's full fine-tuning rate
    settings = resolve_train_config("d", "m", full=True, method="sft")
    assert build_trl_config(settings, has_eval=False).learning_rate == pytest.approx(2e-5)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["bta=0.1"], "unknown key 'bta' for dpo (DPOConfig); did you mean beta?"),
        (["beta=high"], "beta: invalid float value: 'high'"),
        (
            ["loss_type=[sigmoid,sft]", "--method", "kto"],
            "loss_type takes one value, not a list: [sigmoid,sft]",
        ),
        (["dtype=bf16"], "dtype: invalid choice: 'bf16'"),
        (["push_to_hub=true"], "push_to_hub=true needs hub_model_id=user/name"),
        (
            ["full=true", "use_peft=true"],
            "full (full fine-tuning) and use_peft=true (a LoRA adapter) contradict",
        ),
        (["sft_loss_weight=0.1", "sft_average_log_probs=false"], "has no TRL equivalent"),
        (["reference_policy_kl_penalty=0.1", "beta=0.1"], "set either beta or reference_policy_kl_penalty"),
        (["max_steps"], "expected KEY=VALUE, got 'max_steps'"),
    ],
)
def test_bad_settings_exit_2_with_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], overrides: list[str], message: str
) -> None:
    code, err = _run_main(monkeypatch, capsys, "--dataset", "d", "--model", "m", *overrides)
    assert code == 2 and message in err and err.count("\n") == 1, err


def test_bad_datasets_exit_2_naming_what_is_expected(
    prefs: Path,
    tiny_model: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    common = ["--model", str(tiny_model), "-o", str(tmp_path / "o")]
    code, err = _run_main(monkeypatch, capsys, "--dataset", str(prefs), "--config-name", "grpo", *common)
    assert code == 2 and "has no config 'grpo' (configs: dpo, sft, kto, step_dpo, broken)" in err, err
    code, err = _run_main(monkeypatch, capsys, "--dataset", str(prefs), "--config-name", "broken", *common)
    assert (
        code == 2 and "has columns (prompt, chosen); dpo training needs (prompt, chosen, rejected)" in err
    ), err
    code, err = _run_main(monkeypatch, capsys, "--dataset", str(tmp_path / "nowhere"), *common)
    assert code == 2 and "not found" in err and err.count("\n") == 1, err
    with pytest.raises(ConfigError, match="--dataset and --model are required"):
        resolve_train_config(model="m")


def test_a_dataset_without_named_configs_uses_default(tmp_path: Path) -> None:
    from datasets import Dataset

    from hfpref.training.data import load_training_data

    rows = [
        {k: v for k, v in row.items() if k in ("chosen", "rejected", "margin")} for row in _rows("dpo", 4, 0)
    ]
    Dataset.from_list(rows).to_parquet(tmp_path / "train.parquet")
    data = load_training_data(str(tmp_path), None, "dpo")
    assert (data.config_name, data.train.column_names, data.eval) == ("default", ["chosen", "rejected"], None)


def test_accelerate_launch_runs_the_module(prefs: Path, tiny_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "launched"
    command = [
        str(Path(sys.executable).parent / "accelerate"), "launch", "--cpu", "--num_processes", "1",
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
        "-m", "hfpref.cli", "train", "--dataset", str(prefs), "--model", str(tiny_model), "-o", str(out),
        *FAST, "max_steps=2",
    ]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, env=os.environ, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (out / "adapter_model.safetensors").is_file() and len(_losses(out)) == 2


def test_train_from_a_hub_repo_and_push_the_model(prefs: Path, tiny_model: Path, tmp_path: Path) -> None:
    from tests.hub_emulator import HubEmulator

    out = tmp_path / "from-hub"
    command = [
        sys.executable, "-m", "hfpref.cli", "train", "--dataset", "user/prefs", "--model", str(tiny_model), "-o", str(out),
        "--push-to-hub", "user/tiny-dpo", *FAST, "max_steps=2",
    ]  # fmt: skip
    with HubEmulator(tmp_path / "hub") as hub:
        hub.add_folder("user/prefs", prefs)
        env = os.environ | hub.env()
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
        assert done.returncode == 0, done.stderr[-3000:]
        card = hub.read("user/tiny-dpo", "README.md", kind="models").decode()
        assert hub.read("user/tiny-dpo", "adapter_model.safetensors", kind="models")
    assert "datasets: user/prefs" in card and "- hfpref" in card, card
    assert (
        "[user/prefs](https://huggingface.co/datasets/user/prefs)" in card and "| `max_steps` | `2` |" in card
    )
    assert "hfpref train --dataset user/prefs" in card and card == (out / "README.md").read_text()


def test_trl_names_a_trl_config_file_and_toml_work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import trl

    monkeypatch.setenv("HFPREF_TRAIN_TEST", "before")  # restored after the test
    trl_file = tmp_path / "trl.yaml"  # as written for `trl kto --config trl.yaml`
    trl_file.write_text(
        "env:\n  HFPREF_TRAIN_TEST: from-file\ndataset_name: user/prefs\nmodel_name_or_path: m\n"
        "dataset_config: kto\nuse_peft: false\ndataset_test_split: validation\nmax_steps: 3\n"
    )
    settings = resolve_train_config(config_file=trl_file, overrides=["max_steps=4"])
    assert (settings.options.dataset, settings.options.model, settings.method) == ("user/prefs", "m", "kto")
    assert settings.options.full and trl.get_peft_config(settings.model) is None
    assert (
        settings.script.dataset_test_split == "validation" and os.environ["HFPREF_TRAIN_TEST"] == "from-file"
    )
    args = build_trl_config(settings, has_eval=False)
    assert (type(args).__name__, args.max_steps) == ("KTOConfig", 4)  # key=value beats the file

    toml_file = tmp_path / "train.toml"
    toml_file.write_text(
        'dataset = "d"\nmodel = "m"\nmethod = "kto"\nlora_target_modules = ["q_proj", "v_proj"]\n'
    )
    overrides = ["use_dora=true", "lora-r=4", "push_to_hub=user/tiny", "model_init_kwargs={dtype: bfloat16}"]
    settings = resolve_train_config(config_file=toml_file, method="dpo", overrides=[*overrides, "method=sft"])
    peft = trl.get_peft_config(settings.model)
    assert (settings.method, peft.r, peft.use_dora, sorted(peft.target_modules)) == (
        "dpo",
        4,
        True,
        ["q_proj", "v_proj"],
    )
    args = build_trl_config(settings, has_eval=False)
    assert (args.push_to_hub, args.hub_model_id, args.model_init_kwargs["dtype"]) == (
        True,
        "user/tiny",
        "bfloat16",
    )


LIGHT = """
import sys
from hfpref.cli import cli
if sys.argv[1:]:
    cli.main(sys.argv[1:], prog_name="hfpref", standalone_mode=False)
heavy = {"torch", "transformers", "trl", "peft"} & set(sys.modules)
sys.exit(f"loaded {sorted(heavy)}" if heavy else 0)
"""


@pytest.mark.parametrize("args", [[], ["--help"], ["train", "--help"]])
def test_cli_import_and_help_stay_light(args: list[str]) -> None:
    done = subprocess.run([sys.executable, "-c", LIGHT, *args], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    if args[:1] == ["train"]:  # the help of hfpref's options comes from their dataclass, TRL unloaded
        assert "(TRL: dataset_name)" in " ".join(done.stdout.split()), done.stdout
