"""`hfpref generate` and `hfpref judge` end to end through the CLI, against the fake OpenAI server.

In-process with click's ``CliRunner`` on ``hfpref.cli.cli`` (the console script's error handling): output
columns, summary lines, the budget (every finished row kept, exit 1, one line), flags over the config file,
fail-fast on a bad key, the three judge modes with scripted verdicts and their statistics, and structured
output (``[judge] structured_output = true``: a JSON-schema ``response_format`` in every judge request).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import datasets
import orjson
import pytest
from click.testing import CliRunner, Result
from pytest import approx

from hfpref.cli import cli
from hfpref.stages import judge_modes
from hfpref.stages.judge import judge_statistics
from tests.fake_openai import Behaviour, FakeOpenAI, fake_openai, ok, status

__all__ = ["fake_openai"]  # the fixture


@pytest.fixture(autouse=True)
def _no_progress_bars() -> Iterator[None]:
    was_enabled = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    yield
    if was_enabled:
        datasets.enable_progress_bars()


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(row) + b"\n" for row in rows))
    return path


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def hfpref(*args: str | Path, env: dict[str, str] | None = None) -> Result:
    result = CliRunner().invoke(cli, [str(a) for a in args], env=env)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result


def error_line(result: Result) -> str:
    """The one error line a failed command ends with; a stage summary line may come before it."""
    *before, last = result.stderr.splitlines()
    assert last.startswith("hfpref: error: "), result.stderr
    assert all(re.match(r"hfpref (generate|judge): ", line) for line in before), result.stderr
    return last


def prompts(path: Path, k: int) -> Path:
    return write_jsonl(path, [{"id": i, "prompt": f"question {i}"} for i in range(k)])


# --- generate ---------------------------------------------------------------------------------------------


def test_generate_writes_completions_and_a_summary_then_resumes_from_the_cache(
    fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    fake_openai.cost_per_token = 1e-6
    source = prompts(tmp_path / "in.jsonl", 20)
    args = (
        "generate",
        source,
        "--model",
        "m/a=3",
        "--model",
        "m/b=1",
        "-n",
        "3",
        "--base-url",
        fake_openai.base_url,
    )
    result = hfpref(*args, "-o", tmp_path / "out.parquet")
    assert result.exit_code == 0, result.stderr
    out = datasets.load_dataset("parquet", data_files=str(tmp_path / "out.parquet"), split="train")
    assert out.column_names == ["id", "prompt", "completions", "completion_models", "generation", "reasoning"]
    assert out["id"] == list(range(20))
    for completions, models, meta in zip(
        out["completions"], out["completion_models"], out["generation"], strict=True
    ):
        assert len(completions) == 3 and all(c.startswith("answer ") for c in completions)
        assert set(models) <= {"m/a", "m/b"}
        assert [m["model"] for m in meta] == models
        assert all(m["error"] is None and m["cost"] > 0 and m["completion_tokens"] > 0 for m in meta)
    sent = fake_openai.requests
    lines = result.stderr.splitlines()
    assert lines[0].startswith(f"hfpref generate: 60 completions (0 cached, 0 failed), {sent} requests sent")
    assert lines[-1] == f"hfpref: wrote 20 rows to {tmp_path / 'out.parquet'}"

    again = hfpref(*args, "-o", tmp_path / "again.jsonl")  # another format, same answers, nothing re-sent
    assert again.exit_code == 0, again.stderr
    assert fake_openai.requests == sent
    assert "60 completions (60 cached, 0 failed), 0 requests sent" in again.stderr
    assert [r["completions"] for r in read_jsonl(tmp_path / "again.jsonl")] == out["completions"]


def test_flags_override_the_config_file(fake_openai: FakeOpenAI, tmp_path: Path) -> None:
    config = tmp_path / "hfpref.toml"
    config.write_text(
        f'[provider]\nbase_url = "{fake_openai.base_url}"\n[generate]\nn = 3\nmodels = ["m/a"]\n'
    )
    source = prompts(tmp_path / "in.jsonl", 2)
    result = hfpref(
        "generate", source, "-o", tmp_path / "out.jsonl", "-c", config, "-n", "1", "--model", "m/b"
    )
    assert result.exit_code == 0, result.stderr
    rows = read_jsonl(tmp_path / "out.jsonl")
    assert [r["completion_models"] for r in rows] == [["m/b"], ["m/b"]]
    assert {r.body["model"] for r in fake_openai.received} == {"m/b"}


def test_budget_stops_sending_keeps_every_finished_row_and_exits_1(
    fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    """Issue #2 item 5: the output holds every row, in order; the unsent ones are null with their error;
    exit code 1 and one line saying how many finished and how to finish (the rerun pays only the rest)."""
    fake_openai.cost_per_token = 0.001
    source = prompts(tmp_path / "in.jsonl", 40)
    out = tmp_path / "out.jsonl"
    args = (
        "generate",
        source,
        "-o",
        out,
        "--model",
        "m/a",
        "-n",
        "1",
        "--concurrency",
        "1",
        "--base-url",
        fake_openai.base_url,
    )
    result = hfpref(*args, "--max-cost", "0.05")
    assert result.exit_code == 1
    rows = read_jsonl(out)
    assert [r["id"] for r in rows] == list(range(40))
    finished = [r["completions"][0] is not None for r in rows]
    kept = sum(finished)
    assert 0 < kept < 40 and finished == sorted(finished, reverse=True)  # concurrency 1: the first rows
    assert kept == fake_openai.requests  # not one request after the budget was reached
    assert all(
        "budget of $0.05 reached" in r["generation"][0]["error"] for r in rows if r["completions"][0] is None
    )
    assert error_line(result) == (
        f"hfpref: error: {rows[-1]['generation'][0]['error']}; {kept} of 40 completions are in {out}, "
        f"{40 - kept} were not sent: rerun with a higher --max-cost to finish (finished requests are cached)"
    )

    rerun = hfpref(*args, "--max-cost", "10")
    assert rerun.exit_code == 0, rerun.stderr
    assert fake_openai.requests == 40  # only the rows the budget had stopped
    assert all(r["completions"][0] is not None for r in read_jsonl(out))


def test_a_budget_spent_before_the_first_answer_writes_nothing(
    fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    result = hfpref(
        "generate", prompts(tmp_path / "in.jsonl", 3), "-o", tmp_path / "out.jsonl", "--model", "m/a",
        "--base-url", fake_openai.base_url, "--max-cost", "0",
    )  # fmt: skip
    assert result.exit_code == 1
    assert "no completion succeeded, nothing written to" in error_line(result)
    assert "budget of $0 reached" in error_line(result)
    assert not (tmp_path / "out.jsonl").exists() and fake_openai.requests == 0


def test_a_bad_key_fails_fast_with_one_line(
    fake_openai: FakeOpenAI, tmp_path: Path, leftovers: Callable[[], list[str]]
) -> None:
    fake_openai.api_key = "sk-the-right-key-0000"
    fake_openai.latency_s = 0.02
    result = hfpref(
        "generate", prompts(tmp_path / "in.jsonl", 600), "-o", tmp_path / "out.jsonl", "--model", "m/a",
        "--concurrency", "4", "--base-url", fake_openai.base_url, "--api-key-env", "MY_KEY",
        env={"MY_KEY": "sk-a-wrong-key-1111"},
    )  # fmt: skip
    assert result.exit_code == 1
    assert result.stderr == (
        "hfpref: error: m/a: HTTP 401: Incorrect API key provided. "
        "(check the API key in the variable named by api_key_env)\n"
    )
    assert fake_openai.requests <= 8  # the first answers stopped the run, not one 401 per row
    assert not (tmp_path / "out.jsonl").exists()
    assert leftovers() == []  # its three map batches all ended: nothing is printed after the line


# --- judge ------------------------------------------------------------------------------------------------


def tag(content: str, name: str) -> str:
    """The text between ``<name>`` tags of a rendered judge prompt."""
    match = re.search(rf"<{name}>\n(.*?)\n</{name}>", content, re.S)
    assert match, content
    return match[1]


def judge_input(path: Path, completions: list[list[str | None]]) -> Path:
    return write_jsonl(
        path, [{"id": i, "prompt": f"q{i}", "completions": c} for i, c in enumerate(completions)]
    )


def judge(fake: FakeOpenAI, source: Path, out: Path, *flags: str | Path) -> Result:
    return hfpref("judge", source, "-o", out, "--judge-model", "j/1", "--base-url", fake.base_url, *flags)


def test_pointwise_scores_each_completion_and_reports_unparseable_answers(
    fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    answers = {"good": "Reasoning... Score: 9", "poor": "Rating: [[2]]", "odd": "I like it a lot."}
    fake_openai.responder = lambda body: ok(answers[tag(body["messages"][0]["content"], "completion")])
    source = judge_input(tmp_path / "in.jsonl", [["good", "poor"], ["odd", None], ["poor", "good"]])
    result = judge(fake_openai, source, tmp_path / "out.jsonl")
    assert result.exit_code == 0, result.stderr
    rows = read_jsonl(tmp_path / "out.jsonl")
    assert [r["scores"] for r in rows] == [
        [approx(8 / 9), approx(1 / 9)],
        [None, None],
        [approx(1 / 9), approx(8 / 9)],
    ]
    assert rows[0]["judgments"] == [[answers["good"]], [answers["poor"]]]
    assert rows[1]["judgments"][0][0].startswith("I like it a lot.\n\n[format reminder]\n\nI like it a lot.")
    assert rows[1]["judgments"][1] == []  # a null completion is not judged
    stats = judge_statistics([r["judge"] for r in rows], [r["scores"] for r in rows])
    assert (stats["calls"], stats["parse_failure_rate"], stats["unscored_completions"]) == (6, 1 / 5, 2)
    assert stats["score_histogram"]["0.8-0.9"] == 2 and stats["score_histogram"]["0.1-0.2"] == 2
    assert fake_openai.requests == 6  # 5 verdicts, one of them asked again with the format reminder
    lines = result.stderr.splitlines()
    assert "hfpref: warning: 20.0% of judge answers could not be parsed" in lines[-2]
    assert lines[-1] == f"hfpref: wrote 3 judged rows to {tmp_path / 'out.jsonl'}"


def pairwise_judge(body: dict[str, Any], always_a: bool) -> Behaviour:
    content = body["messages"][0]["content"]
    if always_a:
        return ok("Both are fine, the first one more so.\nFinal verdict: [[A]]")
    a, b = (tag(content, name).startswith("good") for name in ("completion_a", "completion_b"))
    return ok(f"Final verdict: [[{'A' if a and not b else 'B' if b and not a else 'C'}]]")


@pytest.mark.parametrize("always_a", [False, True], ids=["consistent", "always-prefers-A"])
def test_pairwise_judges_both_orders_and_measures_position_bias(
    fake_openai: FakeOpenAI, tmp_path: Path, always_a: bool
) -> None:
    fake_openai.responder = lambda body: pairwise_judge(body, always_a)
    source = judge_input(tmp_path / "in.jsonl", [["good 1", "bad 1", "bad 2"], ["bad 3", "good 2"]])
    result = judge(fake_openai, source, tmp_path / "out.jsonl", "--mode", "pairwise")
    assert result.exit_code == 0, result.stderr
    rows = read_jsonl(tmp_path / "out.jsonl")
    stats = judge_statistics([r["judge"] for r in rows], [r["scores"] for r in rows])
    assert fake_openai.requests == 2 * (3 + 1)  # every pair in both orders
    assert [r["judge"]["pairs"] for r in rows] == [3, 1]
    if always_a:  # every pair's two verdicts contradict each other: all ties, 100% inconsistent
        assert [r["scores"] for r in rows] == [[0.5, 0.5, 0.5], [0.5, 0.5]]
        assert stats["position_inconsistency_rate"] == 1.0
    else:  # "good" wins in both orders; the two "bad" ones tie in both orders
        assert [r["scores"] for r in rows] == [[1.0, 0.25, 0.25], [0.0, 1.0]]
        assert stats["position_inconsistency_rate"] == 0.0
    assert all(len(j) == 2 * (len(r["completions"]) - 1) for r in rows for j in r["judgments"])


def test_stepwise_scores_each_step_and_takes_the_minimum(fake_openai: FakeOpenAI, tmp_path: Path) -> None:
    def step_judge(body: dict[str, Any]) -> Behaviour:
        steps = tag(body["messages"][0]["content"], "steps")
        wrong = [int(n) for n in re.findall(r'<step number="(\d+)">\n[^<]*wrong', steps)]
        count = steps.count("<step number=")
        return ok(
            "Step scores:\n"
            + "\n".join(f"Step {k}: [[{1 if k in wrong else 10}]]" for k in range(1, count + 1))
        )

    fake_openai.responder = step_judge
    completions = [
        [
            "Step 1: add 2 and 2.\nStep 2: the sum is 4.",
            "Step 1: add 2 and 2.\nStep 2: wrong, it is 5.\nStep 3: so 5.",
        ]
    ]
    source = judge_input(tmp_path / "in.jsonl", completions)
    result = judge(fake_openai, source, tmp_path / "out.jsonl", "--mode", "stepwise")
    assert result.exit_code == 0, result.stderr
    (row,) = read_jsonl(tmp_path / "out.jsonl")
    assert row["step_scores"] == [[1.0, 1.0], [1.0, 0.0, 1.0]]
    assert row["scores"] == [1.0, 0.0]
    assert row["judge"]["mode"] == "stepwise" and row["judge"]["parse_failures"] == 0


# --- structured output ------------------------------------------------------------------------------------


def structured_config(tmp_path: Path, fake: FakeOpenAI) -> Path:
    path = tmp_path / "judge.toml"
    path.write_text(
        f'[provider]\nbase_url = "{fake.base_url}"\n[judge]\nmodels = ["j/1"]\nstructured_output = true\n'
    )
    return path


@pytest.mark.parametrize("mode", ["pointwise", "pairwise"])
def test_structured_output_sends_the_json_schema_and_reads_the_json_answer(
    fake_openai: FakeOpenAI, tmp_path: Path, mode: str
) -> None:
    answer = {"reasoning": "checked", **({"score": 8} if mode == "pointwise" else {"verdict": "A"})}
    fake_openai.script(ok(orjson.dumps(answer).decode()), ok(orjson.dumps(answer).decode()))
    source = judge_input(tmp_path / "in.jsonl", [["x", "y"]] if mode == "pairwise" else [["x"]])
    config = structured_config(tmp_path, fake_openai)
    result = hfpref("judge", source, "-o", tmp_path / "out.jsonl", "-c", config, "--mode", mode)
    assert result.exit_code == 0, result.stderr
    schema = judge_modes.response_format(mode, 10)
    assert schema["type"] == "json_schema" and schema["json_schema"]["strict"] is True
    assert [r.body["response_format"] for r in fake_openai.received] == [schema] * len(fake_openai.received)
    (row,) = read_jsonl(tmp_path / "out.jsonl")
    assert row["scores"] == (
        [approx(7 / 9)] if mode == "pointwise" else [0.5, 0.5]
    )  # pairwise: A in both orders
    assert row["judge"]["parse_failures"] == 0


def rejects_response_format(body: dict[str, Any]) -> Behaviour:
    if "response_format" in body:
        return status(400, "response_format json_schema is not supported by this model")
    return ok("Score: 8")


def test_a_400_that_is_not_about_response_format_still_stops_the_judge(
    fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    """The plain retry is answered with a 400 too: the request itself is bad, and that is fatal."""
    fake_openai.responder = lambda body: status(400, "maximum context length exceeded")
    source = judge_input(tmp_path / "in.jsonl", [["x", "y"]])
    config = structured_config(tmp_path, fake_openai)
    result = hfpref("judge", source, "-o", tmp_path / "out.jsonl", "-c", config)
    assert result.exit_code == 1
    assert (
        result.stderr.splitlines()[-1]
        == "hfpref: error: row id=0: j/1: HTTP 400: maximum context length exceeded"
    )
    assert not (tmp_path / "out.jsonl").exists()
    assert fake_openai.requests <= 4  # each verdict asked at most with and without response_format


def test_an_endpoint_rejecting_response_format_gets_plain_prompts(
    fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    """Issue #3: structured output "where the endpoint supports it": elsewhere, the plain prompt and parser."""
    fake_openai.responder = rejects_response_format
    source = judge_input(tmp_path / "in.jsonl", [["x", "y"]])
    result = hfpref(
        "judge", source, "-o", tmp_path / "out.jsonl", "-c", structured_config(tmp_path, fake_openai)
    )
    assert result.exit_code == 0, result.stderr
    assert read_jsonl(tmp_path / "out.jsonl")[0]["scores"] == [approx(7 / 9), approx(7 / 9)]
    refused = [r for r in fake_openai.received if "response_format" in r.body]
    assert 1 <= len(refused) <= 2  # the verdicts in flight before the first refusal; then plain prompts


# --- run --------------------------------------------------------------------------------------------------


def test_run_out_of_budget_while_judging_writes_no_folder(fake_openai: FakeOpenAI, tmp_path: Path) -> None:
    """Judging is cheap to resume (every answer is cached) but a folder from half-judged rows would look done."""
    fake_openai.cost_per_token = 1e-4  # generation: ~8 tokens a request; judging: ~300
    fake_openai.responder = lambda body: ok("Score: 8") if body["model"] == "m/j" else None
    config = tmp_path / "run.toml"
    config.write_text(
        f'[provider]\nbase_url = "{fake_openai.base_url}"\n'
        '[generate]\nn = 2\nmodels = ["m/a"]\n[judge]\nmodels = ["m/j"]\nconcurrency = 1\n'
    )
    source = prompts(tmp_path / "in.jsonl", 10)
    result = hfpref("run", source, "-o", tmp_path / "prefs", "-c", config, "--max-cost", "0.05")
    assert result.exit_code == 1
    assert re.fullmatch(
        r"hfpref: error: budget of \$0\.05 reached \(\$0\.0\d+ spent\); judging stopped, no folder written: "
        r"rerun with a higher budget \(finished requests are cached\)",
        error_line(result),
    )
    assert not (tmp_path / "prefs").exists()
    judged = sum(r.body["model"] == "m/j" for r in fake_openai.received)
    assert 0 < judged < 20  # the budget stopped the judge, not the generation

    rerun = hfpref("run", source, "-o", tmp_path / "prefs", "-c", config, "--max-cost", "5")
    assert rerun.exit_code == 0, rerun.stderr
    assert sum(r.body["model"] == "m/j" for r in fake_openai.received) == 20  # the rest, and only the rest
    assert (tmp_path / "prefs" / "hfpref.json").is_file()
