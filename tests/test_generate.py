"""hfpref.generate / Generator against the fake OpenAI-compatible server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import collections
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from datasets import Dataset, Features

from hfpref.cli import _CtrlC
from hfpref.errors import AuthenticationError, BadRequestError, InputError, ModelNotFoundError
from hfpref.stages.generate import Generator
from tests.fake_openai import (
    Behaviour,
    FakeOpenAI,
    cut,
    drop,
    html,
    openrouter_error,
    slow,
    status,
    truncated,
)


def prompts(k: int) -> Dataset:
    return Dataset.from_dict({"id": list(range(k)), "prompt": [f"question {i}" for i in range(k)]})


def make(fake: FakeOpenAI, **kwargs: object) -> Generator:
    kwargs.setdefault("models", ["m/a"])
    return Generator(base_url=fake.base_url, **kwargs)  # type: ignore[arg-type]


def test_batched_map_adds_n_completions_routed_by_weight() -> None:
    with FakeOpenAI(cost_per_token=1e-6) as fake:
        gen = make(fake, models={"m/a": 3, "m/b": 1}, n=4, concurrency=16)
        out = prompts(60).map(gen, batched=True, batch_size=7)
    assert out["id"] == list(range(60))  # no row dropped or reordered
    assert all(len(c) == 4 and all(isinstance(t, str) for t in c) for c in out["completions"])
    share = collections.Counter(m for row in out["completion_models"] for m in row)
    assert 0.6 < share["m/a"] / 240 < 0.9
    first = out[0]
    for text, model, meta in zip(
        first["completions"], first["completion_models"], first["generation"], strict=True
    ):
        assert meta["model"] == model and meta["error"] is None and meta["finish_reason"] == "stop"
        assert meta["completion_tokens"] > 0 and meta["cost"] > 0
        assert text.startswith("answer ")
    # `n` was used: one request per (prompt, model), not one per completion
    assert fake.requests == sum(len(set(m)) for m in out["completion_models"])


def test_same_seed_same_routing_other_seed_differs() -> None:
    with FakeOpenAI() as fake:
        a = prompts(30).map(make(fake, models={"m/a": 1, "m/b": 1}, n=3, seed=1), batched=True)
        b = prompts(30).map(make(fake, models={"m/a": 1, "m/b": 1}, n=3, seed=1, cache=False), batched=True)
        c = prompts(30).map(make(fake, models={"m/a": 1, "m/b": 1}, n=3, seed=2, cache=False), batched=True)
    assert a["completion_models"] == b["completion_models"]
    assert a["completions"] == b["completions"]
    assert a["completion_models"] != c["completion_models"]


def test_unbatched_num_proc_and_iterable_give_the_batched_result() -> None:
    with FakeOpenAI() as fake:
        gen = make(fake, n=2)
        batched = prompts(12).map(gen, batched=True)
        single = prompts(12).map(make(fake, n=2, cache=False))
        multi = prompts(12).map(make(fake, n=2, cache=False), batched=True, batch_size=3, num_proc=2)
        streamed = list(prompts(12).to_iterable_dataset().map(make(fake, n=2, cache=False), batched=True))
    assert single["completions"] == batched["completions"]
    assert multi["completions"] == batched["completions"]
    assert [r["completions"] for r in streamed] == batched["completions"]


def test_conversational_prompts_and_system_prompt_are_sent() -> None:
    with FakeOpenAI() as fake:
        ds = Dataset.from_dict({"prompt": [[{"role": "user", "content": "hi"}]]})
        ds.map(make(fake, n=1, system_prompt="Be brief."), batched=True)
        sent = fake.received[0].body
    assert sent["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]
    assert sent["max_tokens"] == 1024 and sent["temperature"] == 0.8


@pytest.mark.parametrize(
    "fault",
    [
        status(500),
        html(502),
        truncated(),
        drop(),
        cut(),
        openrouter_error(429),
        status(429, retry_after_ms=50),
    ],
    ids=["500", "502-html", "truncated", "drop", "cut", "openrouter-200-error", "429"],
)
def test_transient_faults_are_retried(fault: object) -> None:
    with FakeOpenAI() as fake:
        fake.script(fault, fault)  # type: ignore[arg-type]
        out = prompts(1).map(make(fake, n=1), batched=True)
        assert fake.requests == 3
    assert out[0]["completions"][0].startswith("answer ")
    assert out[0]["generation"][0]["error"] is None


def test_retry_after_is_honoured() -> None:
    with FakeOpenAI() as fake:
        fake.script(status(429, retry_after=1))
        start = time.monotonic()
        out = prompts(1).map(make(fake, n=1), batched=True)
        elapsed = time.monotonic() - start
    assert elapsed >= 1.0
    assert out[0]["completions"][0] is not None


def test_timeouts_are_retried() -> None:
    with FakeOpenAI() as fake:
        fake.script(slow(5))
        out = prompts(1).map(make(fake, n=1, timeout_s=0.5), batched=True)
    assert out[0]["completions"][0] is not None


def test_a_row_that_fails_for_good_is_kept_with_its_error() -> None:
    with FakeOpenAI() as fake:
        fake.responder = lambda body: status(503) if "question 3" in str(body["messages"]) else None
        out = prompts(6).map(make(fake, n=2, max_retries=1), batched=True)
    assert out["id"] == list(range(6))
    assert out[3]["completions"] == [None, None]
    assert "HTTP 503" in out[3]["generation"][0]["error"]
    assert all(all(c is not None for c in out[i]["completions"]) for i in (0, 1, 2, 4, 5))


@pytest.mark.parametrize(
    "failing", [{9}, {0, 1, 2, 3, 4}], ids=["failure-after-a-clean-batch", "success-after-a-failed-batch"]
)
def test_column_types_do_not_depend_on_the_first_batch(failing: set[int]) -> None:
    # datasets types a new column from the first batch it writes: an all-null first batch must not
    # make errors, costs or completions `null` columns that a later batch cannot be cast to
    with FakeOpenAI() as fake:
        fake.responder = lambda body: (
            status(500) if int(body["messages"][-1]["content"].split()[1]) in failing else None
        )
        gen = make(fake, n=2, max_retries=0, cache=False)
        out = prompts(10).map(gen, batched=True, batch_size=5)
    assert out.features["generation"] == gen.features["generation"]
    assert [i for i in range(10) if out[i]["completions"] == [None, None]] == sorted(failing)
    assert all("HTTP 500" in g["error"] for i in failing for g in out[i]["generation"])
    assert all(out[i]["completions"][0].startswith("answer ") for i in set(range(10)) - failing)


def test_unbatched_map_with_the_stage_features_keeps_a_late_failure() -> None:
    # non-batched results are plain values: datasets takes the types from `features=`
    with FakeOpenAI() as fake:
        fake.responder = lambda body: status(500) if "question 7" in str(body["messages"]) else None
        gen = make(fake, n=1, max_retries=0, cache=False)
        ds = prompts(8)
        out = ds.map(gen, features=Features({**ds.features, **gen.features}), writer_batch_size=4)
    assert out[7]["completions"] == [None] and "HTTP 500" in out[7]["generation"][0]["error"]
    assert out[0]["generation"][0]["error"] is None


def test_bad_key_fails_fast() -> None:
    with FakeOpenAI(api_key="sk-right", latency_s=0.05) as fake:
        gen = make(fake, n=1, concurrency=4, api_key_env="TEST_KEY")
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("TEST_KEY", "sk-wrong-key-123")
            with pytest.raises(AuthenticationError, match="HTTP 401"):
                prompts(200).map(gen, batched=True)
        assert fake.requests <= 8  # stopped at the first answers, not after every row


def test_a_fatal_answer_leaves_no_request_behind(leftovers: Callable[[], list[str]]) -> None:
    """The 401 ends the map only once the requests still in flight (other rows, the other model of
    the same row) are cancelled: none is left on datasets' stopped loop to fail or be destroyed later."""
    with FakeOpenAI() as fake:
        fake.responder = lambda body: (
            status(401, "bad key") if "question 0" in str(body["messages"]) else slow(0.5)
        )
        gen = make(fake, models={"m/a": 1, "m/b": 1}, n=4, concurrency=8, cache=False)
        with pytest.raises(AuthenticationError, match="bad key"):
            prompts(16).map(gen, batched=True, batch_size=4)
    assert leftovers() == []


def test_ctrl_c_ends_every_batch_and_leaves_none_behind(
    leftovers: Callable[[], list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C (``hfpref``'s handler cancels the loop's tasks) while batches wait on answers or on
    the backlog: map stops with CancelledError once all of them have ended, none stranded on the stopped loop."""
    monkeypatch.setattr(_CtrlC, "pressed", False)
    previous = signal.signal(signal.SIGINT, _CtrlC._handle)
    try:
        with FakeOpenAI() as fake:

            def stall(body: dict[str, Any]) -> Behaviour:
                if fake.requests == 8:  # the concurrency is reached: press Ctrl-C
                    os.kill(os.getpid(), signal.SIGINT)
                return slow(30)

            fake.responder = stall
            gen = make(fake, n=2, concurrency=8, cache=False)
            with pytest.raises(asyncio.CancelledError):
                prompts(64).map(gen, batched=True, batch_size=4)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert _CtrlC.pressed
    assert leftovers() == []


def test_unknown_model_fails_fast() -> None:
    with FakeOpenAI(models={"m/a"}) as fake, pytest.raises(ModelNotFoundError, match="m/nope"):
        prompts(3).map(make(fake, models=["m/nope"], n=1), batched=True)


def test_endpoint_refusing_n_gets_one_request_per_completion() -> None:
    with FakeOpenAI(reject_n=True) as fake:
        out = prompts(3).map(make(fake, n=3, concurrency=1), batched=True)
        assert fake.by_status[400] == 1  # refused once, then remembered for the model
        assert fake.requests == 1 + 9
    assert all(len(c) == 3 and None not in c for c in out["completions"])


def test_a_400_about_something_else_than_n_is_not_taken_for_a_refusal_of_n() -> None:
    with FakeOpenAI() as fake:
        fake.responder = lambda body: status(400, "maximum context length exceeded")
        with pytest.raises(BadRequestError, match="maximum context length"):
            prompts(3).map(make(fake, n=3, concurrency=1), batched=True)
        assert fake.requests == 2  # n=3, then one completion alone to tell; no request per row after that


def test_cache_resumes_without_resending_and_max_tokens_changes_the_key(tmp_path: Path) -> None:
    with FakeOpenAI() as fake:
        first = prompts(20).map(make(fake, n=2, cache_dir=str(tmp_path)), batched=True)
        sent = fake.requests
        again = prompts(20).map(make(fake, n=2, cache_dir=str(tmp_path), concurrency=3), batched=True)
        assert fake.requests == sent  # concurrency does not change an answer
        assert again["completions"] == first["completions"]
        assert all(m["cached"] for row in again["generation"] for m in row)
        prompts(20).map(make(fake, n=2, cache_dir=str(tmp_path), max_tokens=2048), batched=True)
        assert fake.requests == 2 * sent
        more = prompts(20).map(make(fake, n=3, cache_dir=str(tmp_path)), batched=True)
        assert fake.requests == 3 * sent  # only the third completion of each prompt was new
        assert [c[:2] for c in more["completions"]] == first["completions"]
        assert not fake.duplicates()


def test_the_same_prompt_twice_in_flight_is_paid_once(tmp_path: Path) -> None:
    rows = Dataset.from_dict({"prompt": ["same question", "other question", "same question"]})
    with FakeOpenAI(latency_s=0.2) as fake:  # all three rows are in flight together
        out = rows.map(make(fake, n=2, cache_dir=str(tmp_path / "a")), batched=True)
        assert fake.requests == 2  # one request (n=2) per distinct prompt
        assert out["completions"][2] == out["completions"][0]
        assert [m["cached"] for m in out["generation"][2]] == [True, True]  # answered, not paid
        assert [m["cached"] for m in out["generation"][0]] == [False, False]
        rows.map(make(fake, n=2, cache=False), batched=True)
        assert fake.requests == 5  # --no-cache sends every request
        fake.responder = lambda body: status(500) if "same" in str(body["messages"]) else None
        failed = rows.map(make(fake, n=2, cache_dir=str(tmp_path / "b"), max_retries=1), batched=True)
    assert failed["completions"][0] == [None, None] and failed["completions"][2] == [None, None]
    assert failed["generation"][2][0]["error"] == failed["generation"][0][0]["error"]  # shared, not re-sent
    assert fake.requests == 5 + 2 + 1  # "same question": 2 attempts, once; "other question": 1


def test_cost_from_prices_when_the_provider_reports_none() -> None:
    with FakeOpenAI() as fake:
        priced = {"id": "m/a", "price_in": 1.0, "price_out": 2.0}
        out = prompts(2).map(make(fake, models=[priced], n=1), batched=True)
        unknown = prompts(2).map(make(fake, n=1, cache=False), batched=True)
    meta = out[0]["generation"][0]
    assert meta["cost"] == pytest.approx(
        (meta["prompt_tokens"] * 1.0 + meta["completion_tokens"] * 2.0) / 1e6
    )
    assert unknown[0]["generation"][0]["cost"] is None  # unknown, never $0


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ({"prompt": ["ok", "  "]}, r"row 1 of a batch: column 'prompt' is empty"),
        ({"question": [3]}, r"column 'question' must be a non-empty string or message list"),
        ({"text": ["a"]}, r"no prompt column: expected one of \['prompt', 'input', 'question'\]"),
        ({"id": ["x"], "prompt": [[{"role": "user"}]]}, r"row id='x': column 'prompt', message 0 must be"),
    ],
)
def test_bad_input_names_the_row_and_column(rows: dict, message: str) -> None:
    with FakeOpenAI() as fake, pytest.raises(InputError, match=message):
        Dataset.from_dict(rows).map(make(fake, n=1), batched=True)
    assert fake.requests == 0
