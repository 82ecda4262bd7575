"""The Batch API (issue 19): generate and judge through the Files + Batches endpoints, resumable.

Against :class:`tests.batch_emulator.FakeBatchAPI` on 127.0.0.1: answers equal the online ones and are
reused online, a run killed while its batch is pending resumes it (300 prompts, a SIGKILLed CLI process)
without an online request or a request paid twice, expired batches and failed lines are submitted again
(or sent online), the judge's format reminders form a second batch, files split at the configured
limits, and an endpoint without a batch API fails at once with one line.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import datasets
import orjson
import pytest
from click.testing import CliRunner, Result
from datasets import Dataset

from hfpref.cli import cli
from hfpref.config import GenerateConfig, ProviderConfig
from hfpref.errors import BadRequestError, ConfigError
from hfpref.stages.generate import Generator
from hfpref.wire.batch_api import BatchAPI
from hfpref.wire.batch_store import BatchStore
from tests.batch_emulator import FakeBatchAPI, fake_batch_api
from tests.fake_openai import REPO_ROOT, Behaviour, FakeOpenAI, ok, status

__all__ = ["fake_batch_api"]  # the fixture

FAST = {"batch_quiet_s": 0.5, "batch_poll_s": 0.05}  # a file is submitted 0.5 s after its last request


@pytest.fixture(autouse=True)
def _no_progress_bars() -> None:
    datasets.disable_progress_bars()


def prompts(k: int) -> Dataset:
    return Dataset.from_dict({"id": list(range(k)), "prompt": [f"question {i}" for i in range(k)]})


def generator(fake: FakeOpenAI, cache_dir: Path | None, n: int = 2, **provider: Any) -> Generator:
    priced = {"id": "m/a", "price_in": 2.0, "price_out": 4.0}
    return Generator(
        config=GenerateConfig(models=[priced], n=n, batch_api=True),
        provider=ProviderConfig(base_url=fake.base_url, **{**FAST, **provider}),
        cache_dir=None if cache_dir is None else str(cache_dir),
        cache=cache_dir is not None,
    )


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(row) + b"\n" for row in rows))
    return path


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def config(path: Path, fake: FakeOpenAI, *, stage: str = "generate", **provider: Any) -> Path:
    settings = "".join(f"{k} = {v!r}\n" for k, v in {**FAST, **provider}.items())
    models = 'models = ["m/a"]\nn = 2\n' if stage == "generate" else 'models = ["j/1"]\n'
    path.write_text(
        f'[provider]\nbase_url = "{fake.base_url}"\n{settings}[{stage}]\n{models}batch_api = true\n'
    )
    return path


def hfpref(*args: str | Path, env: dict[str, str] | None = None) -> Result:
    result = CliRunner().invoke(cli, [str(a) for a in args], env=env)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result


def batch_sizes(fake: FakeBatchAPI) -> list[int]:
    return [len(fake.lines_of(batch_id)) for batch_id in fake.batches]


def test_answers_are_those_of_the_online_path_at_the_batch_price_and_reused_online(
    fake_batch_api: FakeBatchAPI, tmp_path: Path
) -> None:
    fake = fake_batch_api
    out = prompts(40).map(generator(fake, tmp_path), batched=True, batch_size=8)
    assert fake.requests == 0 and batch_sizes(fake) == [40]  # five map batches, one file, no chat request
    (batch_id,) = fake.batches
    online = prompts(40).map(
        Generator(models=["m/a"], n=2, base_url=fake.base_url, cache=False), batched=True
    )
    assert out["completions"] == online["completions"]
    for meta in (m for row in out["generation"] for m in row):
        assert meta["batch_id"] == batch_id and meta["error"] is None
        full = (meta["prompt_tokens"] * 2.0 + meta["completion_tokens"] * 4.0) / 1e6
        assert meta["cost"] == pytest.approx(full / 2)  # the batch discount, 0.5 by default
    sent = fake.requests
    again = prompts(40).map(
        Generator(models=["m/a"], n=2, base_url=fake.base_url, cache_dir=str(tmp_path)), batched=True
    )
    assert fake.requests == sent  # the online run found every answer in the request cache
    assert again["completions"] == out["completions"]
    assert all(m["cached"] and m["batch_id"] == batch_id for row in again["generation"] for m in row)


def test_the_same_request_twice_is_one_line(fake_batch_api: FakeBatchAPI) -> None:
    rows = Dataset.from_dict({"prompt": ["same question", "other question", "same question"]})
    out = rows.map(generator(fake_batch_api, None), batched=True)  # --no-cache: nothing shared in the client
    assert batch_sizes(fake_batch_api) == [2]  # a file may not repeat a custom_id
    assert out["completions"][2] == out["completions"][0] and None not in out["completions"][1]


def test_a_killed_cli_run_resumes_its_pending_batch_without_paying_twice(
    fake_batch_api: FakeBatchAPI, tmp_path: Path
) -> None:
    """Issue 19's "done when": 300 prompts, SIGKILL while the batch is pending, rerun: every completion,
    no online request, one batch, no request paid twice."""
    fake = fake_batch_api
    fake.batch_delay_s = 600.0  # pending until the test says otherwise
    source = write_jsonl(tmp_path / "in.jsonl", [{"id": i, "prompt": f"question {i}"} for i in range(300)])
    args = [
        "generate",
        str(source),
        "-o",
        str(tmp_path / "out.jsonl"),
        "-c",
        str(config(tmp_path / "c.toml", fake)),
    ]
    args += ["--cache-dir", str(tmp_path / "cache")]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "hfpref.cli", *args], cwd=tmp_path, env=env, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 120
        while fake.polls == 0 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)  # the batch id is recorded before the first look at the batch
        assert fake.polls > 0, proc.stderr.read().decode() if proc.poll() is not None else "no poll in 120 s"
    finally:
        proc.kill()
        proc.wait()
    assert not (tmp_path / "out.jsonl").exists() and len(fake.batches) == 1

    fake.batch_delay_s = 0.5
    rerun = hfpref(*args)
    assert rerun.exit_code == 0, rerun.stderr
    rows = read_jsonl(tmp_path / "out.jsonl")
    assert [r["id"] for r in rows] == list(range(300))
    assert all(len(r["completions"]) == 2 and None not in r["completions"] for r in rows)
    (batch_id,) = fake.batches
    assert {m["batch_id"] for r in rows for m in r["generation"]} == {batch_id}
    assert fake.requests == 0 and fake.batch_lines == 300 and fake.duplicates() == {}
    assert (
        "hfpref generate: batches: 1 submitted, 0 in progress, 1 completed; 300/300 requests done"
        in rerun.stderr
    )


def test_an_expired_batch_has_its_unanswered_requests_submitted_again(fake_batch_api: FakeBatchAPI) -> None:
    fake = fake_batch_api
    fake.expire_next = 15
    out = prompts(40).map(generator(fake, None), batched=True)
    assert batch_sizes(fake) == [40, 25]
    first, second = fake.batches
    assert fake.batches[first]["status"] == "expired" and fake.batches[second]["status"] == "completed"
    ids = [row[0]["batch_id"] for row in out["generation"]]
    assert ids.count(first) == 15 and ids.count(second) == 25
    assert None not in [c for row in out["completions"] for c in row]
    assert fake.requests == 0 and fake.duplicates() == {}


@pytest.mark.parametrize("fallback", ["batch", "online"])
def test_failed_lines_are_tried_again_by_batch_or_online(fake_batch_api: FakeBatchAPI, fallback: str) -> None:
    fake = fake_batch_api
    failing = {"question 3", "question 7"}

    def once(body: dict[str, Any]) -> Behaviour | None:  # each fails the first time it is asked
        asked = body["messages"][-1]["content"]
        if asked in failing:
            failing.discard(asked)
            return status(500, "overloaded")
        return None

    fake.responder = once
    out = prompts(12).map(generator(fake, None, batch_fallback=fallback), batched=True)
    assert None not in [c for row in out["completions"] for c in row]
    by_batch = [row[0]["batch_id"] for row in out["generation"]]
    if fallback == "batch":
        assert batch_sizes(fake) == [12, 2] and fake.requests == 0
        assert by_batch[3] == by_batch[7] == list(fake.batches)[1]
    else:
        assert batch_sizes(fake) == [12] and fake.requests == 2  # the two failed lines, online
        assert by_batch[3] is None and by_batch[7] is None
        online = out["generation"][3][0]
        full = (online["prompt_tokens"] * 2.0 + online["completion_tokens"] * 4.0) / 1e6
        assert online["cost"] == pytest.approx(full)  # the online price
    assert fake.duplicates() == {}


def test_an_empty_answer_is_asked_again_in_a_new_batch(fake_batch_api: FakeBatchAPI) -> None:
    """The client retries an answer without text: the same request, so not the same line's result again."""
    fake = fake_batch_api
    empty = {"question 2"}

    def once(body: dict[str, Any]) -> Behaviour | None:
        asked = body["messages"][-1]["content"]
        if asked in empty:
            empty.discard(asked)
            return ok("")
        return None

    fake.responder = once
    out = prompts(6).map(generator(fake, None, n=1), batched=True)
    assert batch_sizes(fake) == [6, 1]
    assert out["completions"][2][0].startswith("answer ") and out["generation"][2][0]["error"] is None


def test_a_fatal_line_stops_the_map_and_leaves_no_batch_task_behind(
    fake_batch_api: FakeBatchAPI, leftovers: Callable[[], list[str]]
) -> None:
    """A 400 line ends the map while another batch is still pending: its polling ends with the map."""
    fake = fake_batch_api
    fake.batch_delay_s = 1.0  # the second file leaves 0.5 s after the first (full at 5 lines): still pending
    fake.responder = lambda body: status(400, "bad prompt") if "question 0" in str(body["messages"]) else None
    with pytest.raises(BadRequestError, match="row id=0: m/a: HTTP 400: bad prompt"):
        prompts(10).map(generator(fake, None, n=1, batch_max_requests=5), batched=True)
    assert batch_sizes(fake) == [5, 5]
    assert leftovers() == []


def test_a_batch_that_fails_stops_with_its_reason_and_a_rerun_submits_it_again(
    fake_batch_api: FakeBatchAPI, tmp_path: Path
) -> None:
    fake = fake_batch_api
    fake.fail_next = "token_limit_exceeded: Enqueued token limit reached for m/a."
    source = write_jsonl(tmp_path / "in.jsonl", [{"id": i, "prompt": f"question {i}"} for i in range(5)])
    cfg = config(tmp_path / "c.toml", fake)  # n = 2: one request of 2 completions per prompt
    args = ("generate", source, "-o", tmp_path / "out.jsonl", "-c", cfg)
    failed = hfpref(*args)
    assert failed.exit_code == 1
    assert failed.stderr.splitlines()[-1] == (
        "hfpref: error: batch batch_2 failed: token_limit_exceeded: Enqueued token limit reached for m/a.; "
        "rerun to submit its requests again"
    )
    assert batch_sizes(fake) == [5]  # not taken for a refusal of `n`: nothing probed one by one
    rerun = hfpref(*args)
    assert rerun.exit_code == 0, rerun.stderr
    assert batch_sizes(fake) == [5, 5]
    assert all(None not in r["completions"] for r in read_jsonl(tmp_path / "out.jsonl"))


def test_the_judge_sends_its_format_reminders_as_a_second_batch(
    fake_batch_api: FakeBatchAPI, tmp_path: Path
) -> None:
    fake = fake_batch_api

    def judge(body: dict[str, Any]) -> Behaviour:
        if len(body["messages"]) == 3:  # the format reminder
            return ok("Rating: [[3]]")
        return ok("Score: 9" if "<completion>\ngood" in body["messages"][0]["content"] else "I like it.")

    fake.responder = judge
    rows = [{"id": i, "prompt": f"q{i}", "completions": ["good answer", "odd answer"]} for i in range(4)]
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    cfg = config(tmp_path / "c.toml", fake, stage="judge")
    result = hfpref("judge", source, "-o", tmp_path / "out.jsonl", "-c", cfg)
    assert result.exit_code == 0, result.stderr
    judged = read_jsonl(tmp_path / "out.jsonl")
    assert [r["scores"] for r in judged] == [[pytest.approx(8 / 9), pytest.approx(2 / 9)]] * 4
    assert batch_sizes(fake) == [8, 4] and fake.requests == 0
    assert all(r["judge"]["calls"] == r["judge"]["batch_calls"] == 3 for r in judged)


def test_run_with_batch_api_generates_and_judges_by_batch(
    fake_batch_api: FakeBatchAPI, tmp_path: Path
) -> None:
    fake = fake_batch_api
    fake.score_models = {"j/1"}  # the judge's answers are [[k]] verdicts
    settings = "".join(f"{k} = {v!r}\n" for k, v in FAST.items())
    cfg = tmp_path / "run.toml"
    cfg.write_text(
        f'[provider]\nbase_url = "{fake.base_url}"\n{settings}'
        '[generate]\nmodels = ["m/a"]\nn = 2\n[judge]\nmodels = ["j/1"]\n'
    )
    source = write_jsonl(tmp_path / "in.jsonl", [{"id": i, "prompt": f"question {i}"} for i in range(6)])
    result = hfpref("run", source, "-o", tmp_path / "prefs", "-c", cfg, "--batch-api")
    assert result.exit_code == 0, result.stderr
    assert fake.requests == 0 and batch_sizes(fake) == [6, 12]  # 6 prompts (n = 2), then 12 verdicts
    assert {line["body"]["model"] for line in fake.lines_of(list(fake.batches)[1])} == {"j/1"}
    usage = orjson.loads((tmp_path / "prefs" / "hfpref.json").read_bytes())["usage"]
    assert (usage["batch_completions"], usage["batches"]) == (12, 1)  # the card says which came by batch
    card = (tmp_path / "prefs" / "README.md").read_text()
    assert "- By the Batch API: 12 completions in 1 batch(es), at the batch price;" in card


@pytest.mark.parametrize(
    ("limit", "expected"),
    [({"batch_max_requests": 50}, [50, 50, 20]), ({"batch_max_bytes": 6000}, None)],
    ids=["lines", "bytes"],
)
def test_files_are_split_at_the_configured_limits(
    fake_batch_api: FakeBatchAPI, tmp_path: Path, limit: dict[str, int], expected: list[int] | None
) -> None:
    fake = fake_batch_api
    source = write_jsonl(tmp_path / "in.jsonl", [{"id": i, "prompt": f"question {i}"} for i in range(120)])
    cfg = config(tmp_path / "c.toml", fake, **limit)
    result = hfpref("generate", source, "-o", tmp_path / "out.jsonl", "-c", cfg)
    assert result.exit_code == 0, result.stderr
    sizes = batch_sizes(fake)
    assert sum(sizes) == 120 and len(sizes) > 1
    if expected is not None:
        assert sorted(sizes, reverse=True) == expected
    inputs = [fake.files[b["input_file_id"]] for b in fake.batches.values()]
    assert all(len(content) <= limit.get("batch_max_bytes", 10**9) for content in inputs)
    assert all(r["completions"][1] for r in read_jsonl(tmp_path / "out.jsonl"))


@pytest.mark.parametrize("where", ["before-creation", "after-creation"])
def test_a_run_killed_around_the_creation_never_creates_the_batch_twice(
    fake_batch_api: FakeBatchAPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    """The file is recorded before the batch is created: a rerun finds the batch among the endpoint's
    batches when its id was never recorded, and submits the requests when it was never created."""

    class Killed(Exception):
        pass

    def killed(*args: Any) -> None:
        raise Killed

    if where == "before-creation":
        monkeypatch.setattr(BatchAPI, "create", killed)
    else:
        monkeypatch.setattr(BatchStore, "set_batch", killed)
    with pytest.raises(Killed):
        prompts(10).map(generator(fake_batch_api, tmp_path), batched=True)
    monkeypatch.undo()
    assert len(fake_batch_api.files) == 1 and len(fake_batch_api.batches) == (where == "after-creation")
    out = prompts(10).map(generator(fake_batch_api, tmp_path), batched=True)
    assert len(fake_batch_api.batches) == 1 and fake_batch_api.batch_lines == 10
    assert None not in [c for row in out["completions"] for c in row]


def test_an_endpoint_without_a_batch_api_fails_at_once_with_one_line(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [{"id": i, "prompt": f"q{i}"} for i in range(50)])
    with FakeOpenAI() as fake:  # no /v1/files: 404, as llama.cpp answers
        result = hfpref(
            "generate", source, "-o", tmp_path / "out.jsonl", "-c", config(tmp_path / "c.toml", fake)
        )
        assert fake.requests == 0
    assert result.exit_code == 2
    assert result.stderr.splitlines()[-1] == (
        f"hfpref: error: {fake.base_url} has no Batch API (POST /files answered HTTP 404): drop --batch-api "
        "(batch_api = true) for this endpoint"
    )
    openrouter = hfpref(
        "generate", source, "-o", tmp_path / "out.jsonl", "--model", "m/a", "--batch-api",
        "--base-url", "https://openrouter.ai/api/v1", env={"OPENROUTER_API_KEY": "sk-or-test-000000"},
    )  # fmt: skip
    assert openrouter.exit_code == 2
    assert openrouter.stderr.splitlines()[-1].startswith(
        "hfpref: error: https://openrouter.ai/api/v1 (OpenRouter) has no Batch API"
    )
    assert not (tmp_path / "out.jsonl").exists()


def test_a_budget_with_the_batch_api_needs_prices(fake_batch_api: FakeBatchAPI) -> None:
    gen = Generator(models=["m/a"], base_url=fake_batch_api.base_url, batch_api=True, max_cost=1.0)
    with pytest.raises(ConfigError, match="m/a: --max-cost with --batch-api needs price_in and price_out"):
        prompts(2).map(gen, batched=True)
    assert fake_batch_api.files == {}
