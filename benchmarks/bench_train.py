"""Tokens/s and peak memory of `hfpref train` against the equivalent hand-written TRL script.

    python benchmarks/bench_train.py            # GPU: Qwen2.5-0.5B shape, random weights
    python benchmarks/bench_train.py --tiny     # CPU (the default without CUDA): a 2-layer Qwen2

Both sides train DPO + LoRA (r=16, all linear layers) for the same steps on the same synthetic
dataset folder (SPEC layout), each in a fresh process, in alternating order: ``hfpref`` calls
``hfpref.train`` (what ``hfpref train`` runs), ``trl`` is the TRL script a user would write
with hfpref's device defaults spelled out. Tokens/s: the tokens TRL logs per step (``num_tokens``:
prompt + chosen + rejected) over the step's wall time, median over the steps after the warm-up. Peak
memory: ``torch.cuda.max_memory_allocated`` on GPU, the process's peak RSS on CPU. No download: the
model is built from an inline config.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# Qwen/Qwen2.5-0.5B-Instruct's config.json (architecture fields only).
QWEN25_05B = {
    "hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24, "num_attention_heads": 14,
    "num_key_value_heads": 2, "max_position_embeddings": 32768, "rope_theta": 1000000.0, "rms_norm_eps": 1e-6,
    "vocab_size": 151936, "tie_word_embeddings": True, "hidden_act": "silu",
}  # fmt: skip
TINY = {
    "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
    "num_key_value_heads": 2, "max_position_embeddings": 2048, "vocab_size": 512, "tie_word_embeddings": True,
}  # fmt: skip
WORDS = [
    "the",
    "a",
    "model",
    "answer",
    "question",
    "step",
    "first",
    "then",
    "add",
    "numbers",
    "result",
    "because",
    "good",
    "bad",
    "so",
    "we",
    "find",
]


def build_model(path: Path, shape: dict[str, Any]) -> Path:
    """A Qwen2 model with random weights, the tiny test tokenizer and its ChatML template."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from tests.tiny_model import build_tiny_model

    build_tiny_model(path)  # tokenizer, chat template, generation config
    torch.manual_seed(0)
    config = Qwen2Config(**shape, bos_token_id=1, eos_token_id=3, pad_token_id=0)
    Qwen2ForCausalLM(config).save_pretrained(path)
    return path


def build_dataset(path: Path, rows: int, words: int) -> Path:
    """A `dpo` config (train split only) of conversational pairs, ~`words` words per message."""
    from datasets import Dataset

    rng = random.Random(0)

    def text(n: int) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(n))

    data = [
        {
            "prompt": [{"role": "user", "content": text(words)}],
            "chosen": [{"role": "assistant", "content": "good " + text(words)}],
            "rejected": [{"role": "assistant", "content": "bad " + text(words)}],
        }
        for _ in range(rows)
    ]
    Dataset.from_list(data).to_parquet(path / "dpo" / "train-00000-of-00001.parquet")
    card = "---\nconfigs:\n- config_name: dpo\n  data_files:\n  - split: train\n    path: dpo/train-*\n---\n"
    (path / "README.md").write_text(card, encoding="utf-8")
    return path


def _timer(warmup: int) -> Any:
    from transformers import TrainerCallback

    class Timer(TrainerCallback):
        """Tokens and wall time at every logged step (logging_steps=1)."""

        def __init__(self) -> None:
            self.points: list[tuple[int, float, float]] = []

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
            if logs and "num_tokens" in logs and "loss" in logs:
                self.points.append((state.global_step, float(logs["num_tokens"]), time.perf_counter()))

        def tokens_per_s(self) -> float:
            """Median over the steps after the warm-up: robust to a busy machine's hiccups."""
            steps = self.points[warmup - 1 :]
            return statistics.median((b[1] - a[1]) / (b[2] - a[2]) for a, b in itertools.pairwise(steps))

    return Timer()


def trl_script(model: str, data: str, out: str, steps: int, batch: int, max_length: int, timer: Any) -> None:
    """The hand-written equivalent of `hfpref train --dataset DATA --model MODEL` (DPO + LoRA)."""
    import torch
    from datasets import load_dataset
    from peft import LoraConfig
    from trl import DPOConfig, DPOTrainer

    cuda = torch.cuda.is_available()
    bf16 = cuda and torch.cuda.is_bf16_supported()
    dataset = load_dataset(data, "dpo", split="train").select_columns(["prompt", "chosen", "rejected"])
    args = DPOConfig(
        output_dir=out, max_steps=steps, per_device_train_batch_size=batch, max_length=max_length,
        learning_rate=1e-5, logging_steps=1, save_strategy="no", report_to="none",
        bf16=bf16, fp16=cuda and not bf16, activation_checkpointing=cuda, dataloader_pin_memory=cuda,
        model_init_kwargs={"dtype": "bfloat16" if bf16 else "float16"} if cuda else None,
    )  # fmt: skip
    lora = LoraConfig(
        r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear", task_type="CAUSAL_LM"
    )
    trainer = DPOTrainer(model=model, args=args, train_dataset=dataset, peft_config=lora, callbacks=[timer])
    trainer.train()
    trainer.save_model()


def child(ns: argparse.Namespace) -> None:
    """One measured run, in its own process; prints one `BENCH {json}` line."""
    import torch

    timer = _timer(ns.warmup)
    if ns.child == "hfpref":
        from hfpref.training.train import train

        settings = [
            f"max_steps={ns.steps}",
            f"per_device_train_batch_size={ns.batch}",
            f"max_length={ns.max_length}",
        ]
        settings += ["logging_steps=1", "save_strategy=no", "report_to=none"]
        train(ns.data, ns.model, output_dir=ns.out, overrides=settings, callbacks=[timer])
    else:
        trl_script(ns.model, ns.data, ns.out, ns.steps, ns.batch, ns.max_length, timer)
    if torch.cuda.is_available():
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print("BENCH " + json.dumps({"tokens_per_s": timer.tokens_per_s(), "peak_mib": peak}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tiny", action="store_true", help="tiny model on CPU (default when CUDA is absent)")
    parser.add_argument("--steps", type=int, help="optimizer steps per run (default 30)")
    parser.add_argument("--batch", type=int, help="per-device batch size (default 8)")
    parser.add_argument("--warmup", type=int, default=3, help="steps left out of tokens/s")
    parser.add_argument("--repeats", type=int, default=3, help="runs per side, alternating")
    parser.add_argument("--child", choices=["hfpref", "trl"], help=argparse.SUPPRESS)
    for hidden in ("--model", "--data", "--out"):
        parser.add_argument(hidden, help=argparse.SUPPRESS)
    parser.add_argument("--max-length", type=int, help=argparse.SUPPRESS)
    ns = parser.parse_args()
    if ns.child:
        child(ns)
        return

    import torch

    tiny = ns.tiny or not torch.cuda.is_available()
    steps, batch = ns.steps or 30, ns.batch or 8
    words, max_length = (16, 128) if tiny else (120, 1024)
    work = Path(tempfile.mkdtemp(prefix="bench-train-"))
    model = build_model(work / "model", TINY if tiny else QWEN25_05B)
    data = build_dataset(work / "data", rows=steps * batch, words=words)
    device = "CPU (1 thread), tiny Qwen2" if tiny else f"{torch.cuda.get_device_name()}, Qwen2.5-0.5B shape"
    print(f"DPO + LoRA, {steps} steps x batch {batch}, max_length {max_length} on {device}", flush=True)
    results: dict[str, list[dict[str, float]]] = {"hfpref": [], "trl": []}
    env = os.environ | {"HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HOME": str(work / "hf")}
    if tiny:  # one thread: a busy CPU then slows both sides alike instead of stalling thread barriers
        env |= {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    for repeat in range(ns.repeats):
        for side in ("hfpref", "trl") if repeat % 2 == 0 else ("trl", "hfpref"):
            command = [
                sys.executable, __file__, "--child", side, "--model", str(model), "--data", str(data),
                "--out", str(work / f"{side}-{repeat}"), "--steps", str(steps), "--batch", str(batch),
                "--warmup", str(ns.warmup), "--max-length", str(max_length),
            ]  # fmt: skip
            done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
            line = next((x for x in done.stdout.splitlines() if x.startswith("BENCH ")), None)
            if done.returncode or line is None:
                sys.exit(f"{side} run failed:\n{done.stderr[-3000:]}")
            results[side].append(json.loads(line[6:]))
            print(f"  {side:6s} run {repeat + 1}: {results[side][-1]}", flush=True)

    def median(side: str, key: str) -> float:
        return statistics.median(r[key] for r in results[side])

    print(f"{'':8s}{'tokens/s':>12s}{'peak MiB':>12s}")
    for side in ("hfpref", "trl"):
        print(f"{side:8s}{median(side, 'tokens_per_s'):12.1f}{median(side, 'peak_mib'):12.1f}")
    speed = median("hfpref", "tokens_per_s") / median("trl", "tokens_per_s")
    memory = median("hfpref", "peak_mib") / median("trl", "peak_mib")
    print(f"ratio hfpref/trl: tokens/s {speed:.3f}, peak memory {memory:.3f}")


if __name__ == "__main__":
    main()
