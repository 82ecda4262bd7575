"""hfpref's CLI against a real peer: ``transformers serve`` with a tiny random model on the CPU.

Findings (transformers 5.25): the model id is the served folder path; ``n`` is accepted (200) but only
one choice comes back, so hfpref asks for the missing samples one request at a time. The server answers
400 to a prompt that fills the model's context (``max_position_embeddings``, or ``--max-model-len``, which
may only shorten it) before generating; 5.23 ran such a prompt. The built-in judge prompts run past 1,024
tokens under the tiny model's 512-token vocabulary, so the served copy of it has a longer context.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.tiny_model import tiny_model

__all__ = ["tiny_model"]

VENV_BIN = Path(sys.executable).parent
SERVE = [str(VENV_BIN / "transformers"), "serve"]
pytestmark = pytest.mark.skipif(
    shutil.which("transformers", path=str(VENV_BIN)) is None, reason="needs transformers[serving]"
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# Room for a built-in judge prompt (1,024 to 1,040 tokens with the tiny tokenizer) and its answer.
SERVED_CONTEXT = 4096


@pytest.fixture(scope="module")
def served_model(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the tiny model whose context is ``SERVED_CONTEXT`` tokens instead of 1,024.

    The Llama's rotary position embeddings have no weights: only the configured length changes."""
    from transformers import AutoConfig, AutoTokenizer

    path = tmp_path_factory.mktemp("served-model") / "tiny"
    shutil.copytree(tiny_model, path)
    config = AutoConfig.from_pretrained(path)
    config.max_position_embeddings = SERVED_CONTEXT
    config.save_pretrained(path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    tokenizer.model_max_length = SERVED_CONTEXT
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def served(served_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """(base_url, model_id) of a ``transformers serve`` process, stopped at the end of the module."""
    hf_home = tmp_path_factory.mktemp("serve-hf")
    (hf_home / "hub").mkdir()  # /v1/models answers 500 until it exists
    env = {**os.environ, "HF_HOME": str(hf_home), "HF_HUB_DISABLE_UPDATE_CHECK": "1"}
    port = _free_port()
    log = tmp_path_factory.mktemp("serve-log") / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*SERVE, str(served_model), "--host", "127.0.0.1", "--port", str(port), "--device", "cpu"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail(f"transformers serve exited with {proc.returncode}: {log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{base_url}/models", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"transformers serve not ready in 60 s: {log.read_text()[-2000:]}")
            time.sleep(0.5)
        yield base_url, str(served_model)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _hfpref(*args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(VENV_BIN / "hfpref"), *args], capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_generate_then_judge_against_transformers_serve(served: tuple[str, str], tmp_path: Path) -> None:
    base_url, model_id = served
    prompts = ["What is 2 + 2?", "Write a haiku about rain.", "Why is the sky blue?"]
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in prompts))
    config = tmp_path / "hfpref.toml"
    config.write_text("[generate]\nmax_tokens = 8\n\n[judge]\nmax_tokens = 8\n")

    generated = tmp_path / "gen.jsonl"
    _hfpref(
        "generate", str(source), "-o", str(generated), "-c", str(config),
        "--model", model_id, "--base-url", base_url, "-n", "2",
    )  # fmt: skip
    rows = _rows(generated)
    assert [r["prompt"] for r in rows] == prompts
    for row in rows:
        assert len(row["completions"]) == 2
        assert all(isinstance(c, str) for c in row["completions"])
        assert all(meta["error"] is None for meta in row["generation"])

    judged = tmp_path / "judged.jsonl"
    _hfpref(
        "judge", str(generated), "-o", str(judged), "-c", str(config),
        "--judge-model", model_id, "--base-url", base_url,
    )  # fmt: skip
    rows = _rows(judged)
    assert len(rows) == len(prompts)
    for row in rows:
        # A random model's answers hold no score: null, never a crash; the raw texts are kept.
        assert row["scores"] == [None, None]
        assert len(row["judgments"]) == 2
        assert all(isinstance(j, str) for j in _flatten(row["judgments"]))


def _flatten(value: object) -> list[object]:
    if isinstance(value, list):
        return [x for item in value for x in _flatten(item)]
    return [value]
