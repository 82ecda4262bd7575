"""In-process ``local:`` generation with a tiny random chat model (no downloads, CPU)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from datasets import Dataset

import hfpref
import hfpref.wire.local
from hfpref.errors import ConfigError
from tests.tiny_model import tiny_model

__all__ = ["tiny_model"]

PROMPTS = [f"What is {i} + {i * 3}?" for i in range(6)]


def _dataset() -> Dataset:
    return Dataset.from_dict({"prompt": PROMPTS})


@pytest.fixture
def batch_sizes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Records the number of requests served by each ``generate`` call."""
    sizes: list[int] = []
    real = hfpref.wire.local._generate

    def spy(loaded: Any, bodies: list[dict[str, Any]]) -> list[dict[str, Any]]:
        sizes.append(len(bodies))
        return real(loaded, bodies)

    monkeypatch.setattr(hfpref.wire.local, "_generate", spy)
    return sizes


def test_generate_n2_usage_and_cache(tiny_model: Path) -> None:
    gen = hfpref.Generator(models=[f"local:{tiny_model}"], n=2, max_tokens=8)
    out = _dataset().map(gen, batched=True)
    assert len(out) == len(PROMPTS)
    for row in out:
        assert len(row["completions"]) == 2
        assert all(isinstance(c, str) for c in row["completions"])
        assert row["completion_models"] == [f"local:{tiny_model}"] * 2
        for meta in row["generation"]:
            assert meta["error"] is None and meta["cached"] is False
            assert meta["cost"] == 0.0
            assert meta["prompt_tokens"] > 0
            assert 1 <= meta["completion_tokens"] <= 8
            assert meta["finish_reason"] in ("stop", "length")

    again = _dataset().map(hfpref.Generator(models=[f"local:{tiny_model}"], n=2, max_tokens=8), batched=True)
    assert again["completions"] == out["completions"]
    assert all(meta["cached"] for row in again for meta in row["generation"])


def test_concurrent_requests_are_batched_and_match_one_at_a_time(
    tiny_model: Path, batch_sizes: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    def greedy() -> hfpref.Generator:
        return hfpref.Generator(
            models=[f"local:{tiny_model}"], n=2, max_tokens=12, temperature=0.0, cache=False
        )

    batched = _dataset().map(greedy(), batched=True)
    assert max(batch_sizes) > 1, batch_sizes  # concurrent requests shared a generate call
    assert sum(batch_sizes) == len(PROMPTS)  # n=2 rides on one request per prompt

    batch_sizes.clear()
    monkeypatch.setattr(hfpref.wire.local, "MAX_BATCH", 1)
    single = _dataset().map(greedy(), batched=True)
    assert batch_sizes == [1] * len(PROMPTS)
    assert single["completions"] == batched["completions"]
    for row in batched:  # greedy: both samples are the one greedy answer
        assert row["completions"][0] == row["completions"][1]


def test_sampling_n_and_usage_directly(tiny_model: Path) -> None:
    body = {
        "model": f"local:{tiny_model}",
        "messages": [{"role": "user", "content": "Tell me a story."}],
        "temperature": 1.0,
        "top_p": 0.9,
        "max_tokens": 6,
        "n": 3,
    }
    answer = asyncio.run(hfpref.wire.local.local_chat(str(tiny_model), body))
    assert [c["index"] for c in answer["choices"]] == [0, 1, 2]
    assert all(isinstance(c["message"]["content"], str) for c in answer["choices"])
    assert all(c["message"]["role"] == "assistant" for c in answer["choices"])
    usage = answer["usage"]
    assert usage["cost"] == 0.0
    assert 3 <= usage["completion_tokens"] <= 18
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_missing_model_is_a_one_line_config_error(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    gen = hfpref.Generator(models=[f"local:{missing}"], n=1, max_tokens=4)
    with pytest.raises(ConfigError) as info:
        _dataset().map(gen, batched=True)
    message = str(info.value)
    assert "\n" not in message
    assert str(missing) in message and "could not be loaded" in message
