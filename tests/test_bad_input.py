"""Every CLI command fed wrong things: exit code 2 (usage, config, input) or 1 (run-time failure), one line
on stderr naming what is wrong and what was expected, no traceback, and nothing written.

Each case runs in a fresh copy of a folder of inputs; the check compares the folder before and after, so
"no partial output that looks complete" here means *no output at all*: outputs are renamed into place only
when complete (:mod:`hfpref.stages.io`, :func:`hfpref.repo.export.export`), and errors are found before anything is
written. Most cases run in-process through click's ``CliRunner`` on ``hfpref.cli.cli``, whose error
handling is the console script's; a few run ``.venv/bin/hfpref`` to show there is no traceback and no
stray log line end to end. ``datasets`` progress bars are switched off: they are progress, not errors.
A run-time failure after requests were sent may print the stage's summary line (what was sent and spent)
before its error line; a usage, config or input error prints its line alone.

A huge prompt (300 kB here) is not refused by hfpref: it cannot know each model's context window, and
long-context models take such prompts. It goes to the provider, whose 400 ("maximum context length")
stops the run with exit code 1 and the provider's reason on one line; finished requests stay cached.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import orjson
import pytest
from click.testing import CliRunner

from hfpref.cli import cli
from hfpref.errors import HfprefError
from hfpref.stages.curate import curate
from tests.fake_openai import Behaviour, FakeOpenAI, fake_openai, ok, status

__all__ = ["fake_openai"]  # the fixture

HFPREF = str(Path(sys.executable).parent / "hfpref")
GOOD_KEY = "sk-right-key-000000"
SUMMARY = re.compile(
    r"hfpref (generate|judge): [\d,]+ completions \([\d,]+ cached, [\d,]+ failed\), [\d,]+ requests sent"
)
CONTEXT = "This model's maximum context length is 131072 tokens. However, you requested 150000 tokens."


def _jsonl(rows: list[Any]) -> bytes:
    return b"".join(orjson.dumps(row) + b"\n" for row in rows)


def _scored(n: int, scores: list[float]) -> list[dict[str, Any]]:
    return [{"prompt": f"q{i}", "completions": [f"good {i}", f"bad {i}"], "scores": scores} for i in range(n)]


def _make_inputs(root: Path) -> None:
    generated = [{"id": i, "prompt": f"q{i}", "completions": [f"a{i}", f"b{i}"]} for i in range(3)]
    files: dict[str, bytes] = {
        "ok.jsonl": _jsonl([{"id": i, "prompt": f"question {i}"} for i in range(3)]),
        "no_prompt.jsonl": _jsonl([{"text": "a"}]),
        "empty_prompt.jsonl": _jsonl([{"prompt": "fine"}, {"prompt": "   "}]),
        "int_prompt.jsonl": _jsonl([{"prompt": 5}]),
        "int_prompt_completions.jsonl": _jsonl([{"prompt": 5, "completions": ["a", "b"]}]),
        "bad_messages.jsonl": _jsonl([{"id": "x", "prompt": [{"role": "user"}]}]),
        "latin1.jsonl": _jsonl([{"prompt": "fine"}]) + '{"prompt": "café"}\n'.encode("latin-1"),
        "empty.jsonl": b"",
        "huge.jsonl": _jsonl([{"prompt": "word " * 60_000}]),
        "generated.jsonl": _jsonl(generated),
        "bad_completions.jsonl": _jsonl([*generated[:2], {**generated[2], "completions": "a and b"}]),
        "scored.jsonl": _jsonl(_scored(10, [0.9, 0.1])),
        "score_out_of_range.jsonl": _jsonl(_scored(1, [2.0, 0.1])),
        "ties.jsonl": _jsonl(_scored(4, [0.5, 0.5])),
        "bad.toml": b"[generate\nn = 2\n",
        "unknown_key.toml": b"[generate]\nn = 2\ntemprature = 0.5\n",
        "unknown_section.toml": b"[gen]\nn = 2\n",
        "wrong_type.toml": b'[judge]\nswap = "yes"\n',
        "max_retries_0.toml": b"[provider]\nmax_retries = 0\n",
        "model_url.toml": b'[[generate.models]]\nid = "m/b"\nbase_url = "ftp://example.org/v1"\n',
        "step_dpo_pointwise.toml": b'[judge]\nmode = "pointwise"\n[curate]\nformats = ["step_dpo"]\n',
        "judge_prompt.txt": b"Rate {answer} for {prompt}\n",
        "bad.yaml": b"beta: [0.1\n",
        "a_file.txt": b"not a folder\n",
    }
    for name, data in files.items():
        (root / name).write_bytes(data)
    curate(_scored(10, [0.9, 0.1]), root / "prefs", formats="dpo,sft", test_size=0.2)
    shutil.copytree(root / "prefs", root / "corrupt")
    (root / "corrupt" / "sft" / "train-00000-of-00001.parquet").write_bytes(b"not parquet at all")
    (root / "foreign").mkdir()
    (root / "foreign" / "notes.txt").write_text("my own files\n")
    (root / "a_folder.jsonl").mkdir()


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("inputs")
    _make_inputs(root)
    return root


@pytest.fixture(autouse=True)
def _no_progress_bars() -> Iterator[None]:
    was_enabled = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    yield
    if was_enabled:
        datasets.enable_progress_bars()


def context_limit(body: dict[str, Any]) -> Behaviour | None:
    """A provider that refuses prompts longer than its context window, as OpenAI and vLLM do (400)."""
    return status(400, CONTEXT, error_code="context_length_exceeded") if len(str(body)) > 200_000 else None


@dataclass(frozen=True)
class Case:
    """One wrong command line. ``{w}`` is the work folder, ``{url}`` the fake OpenAI server."""

    args: tuple[str, ...]
    code: int
    needles: tuple[str, ...]  # each appears in the one stderr line
    env: dict[str, str] = field(default_factory=dict)
    fake: dict[str, Any] = field(default_factory=dict)  # attributes set on the fake server
    files: dict[str, str] = field(default_factory=dict)  # written into {w} first ({url} filled in)
    max_requests: int = 0  # requests the fake server may see
    subprocess: bool = False  # run .venv/bin/hfpref instead of CliRunner


class NotOneLine(AssertionError):
    """stderr held more than the one error line (raised last, after every other check passed)."""


def case(*args: str, code: int, needles: tuple[str, ...] | str, **kwargs: Any) -> Case:
    return Case(tuple(args), code, (needles,) if isinstance(needles, str) else needles, **kwargs)


RUN_TOML = '[generate]\nn = 2\nmodels = ["m/a"]\n[judge]\nmodels = ["m/j"]\n[provider]\nbase_url = "{url}"\n'


def gen(input_name: str = "ok.jsonl", *, output: str = "out.jsonl", model: str = "m/a") -> tuple[str, ...]:
    return (
        "generate",
        f"{{w}}/{input_name}",
        "-o",
        f"{{w}}/{output}",
        "--model",
        model,
        "--base-url",
        "{url}",
    )


def judge(input_name: str = "generated.jsonl", *, output: str = "out.jsonl") -> tuple[str, ...]:
    return (
        "judge",
        f"{{w}}/{input_name}",
        "-o",
        f"{{w}}/{output}",
        "--judge-model",
        "m/j",
        "--base-url",
        "{url}",
    )


def curate_(input_name: str = "scored.jsonl", *, output: str = "out") -> tuple[str, ...]:
    return ("curate", f"{{w}}/{input_name}", "-o", f"{{w}}/{output}")


def run(input_name: str = "ok.jsonl", *, output: str = "out") -> tuple[str, ...]:
    return ("run", f"{{w}}/{input_name}", "-o", f"{{w}}/{output}", "-c", "{w}/run.toml")


def score_7(body: dict[str, Any]) -> Behaviour | None:
    return ok("Score: 7") if body["model"] == "m/j" else None


# fmt: off
CASES: dict[str, Case | Any] = {
    # --- generate: input files and rows ------------------------------------------------------------------
    "generate-missing-input": case(
        *gen("missing.jsonl"), code=2, needles=("missing.jsonl: no such file or folder", "user/name")),
    "generate-no-prompt-column": case(
        *gen("no_prompt.jsonl"), code=2, needles=("no prompt column", "['prompt', 'input', 'question']", "['text']")),
    "generate-prompt-column-not-found": case(
        *gen(), "--prompt-column", "question", code=2, needles="prompt column 'question' not found"),
    "generate-empty-prompt": case(
        *gen("empty_prompt.jsonl"), code=2, needles=("row 1:", "column 'prompt' is empty", "non-empty string")),
    "generate-non-string-prompt": case(
        *gen("int_prompt.jsonl"), code=2, needles=("row 0:", "non-empty string or message list, got 5")),
    "generate-malformed-messages": case(
        *gen("bad_messages.jsonl"), code=2,
        needles=("row 0 (id='x')", "message 0 must be {'role': str, 'content': str}")),
    "generate-non-utf8": case(
        *gen("latin1.jsonl"), code=2, needles=("latin1.jsonl: line 2 is not UTF-8", "0xe9"), subprocess=True),
    "generate-empty-file": case(*gen("empty.jsonl"), code=2, needles="empty.jsonl: the file is empty"),
    "generate-input-folder-not-a-dataset": case(
        *gen("foreign"), code=2, needles="foreign: a folder, but not one written by save_to_disk"),
    # --- generate: config files and options --------------------------------------------------------------
    "generate-invalid-toml": case(*gen(), "-c", "{w}/bad.toml", code=2, needles="bad.toml is not valid TOML"),
    "generate-missing-config": case(*gen(), "-c", "{w}/nope.toml", code=2, needles="nope.toml does not exist"),
    "generate-unknown-key": case(
        *gen(), "-c", "{w}/unknown_key.toml", code=2, needles=("[generate]", "unknown key(s) ['temprature']")),
    "generate-unknown-section": case(
        *gen(), "-c", "{w}/unknown_section.toml", code=2, needles=("unknown section(s) ['gen']", "'generate'")),
    "generate-wrong-value-type": case(
        *gen(), "-c", "{w}/wrong_type.toml", code=2, needles="[judge] swap: expected true or false, got 'yes'"),
    "generate-negative-n": case(*gen(), "-n", "-1", code=2, needles="generate.n must be an integer >= 1, got -1"),
    "generate-n-not-a-number": case(
        *gen(), "-n", "many", code=2, needles=("'-n'", "'many' is not a valid integer")),
    "generate-concurrency-0": case(
        *gen(), "--concurrency", "0", code=2, needles="generate.concurrency must be an integer >= 1, got 0"),
    "generate-negative-max-cost": case(
        *gen(), "--max-cost", "-1", code=2, needles="budget.max_cost_usd must be >= 0, got -1"),
    "generate-bad-model-weight": case(
        *gen(model="m/a=heavy"), code=2, needles="--model 'm/a=heavy': expected ID or ID=WEIGHT"),
    "generate-missing-system-prompt": case(
        *gen(), "--system-prompt", "{w}/nope.txt", code=2, needles=("--system-prompt file", "does not exist")),
    "generate-temperature-out-of-range": case(
        *gen(), "--temperature", "3", code=2, needles="generate.temperature must be in [0, 2], got 3.0"),
    "generate-unknown-option": case(
        *gen(), "--modle", "m/b", code=2, needles=("No such option '--modle'", "--model", "hfpref generate --help")),
    "generate-key-instead-of-variable-name": case(
        *gen(), "--api-key-env", "sk-or-v1-0123456789abcdef", code=2,
        needles="expected the name of an environment variable"),
    "generate-base-url-not-a-url": case(
        "generate", "{w}/ok.jsonl", "-o", "{w}/out.jsonl", "--model", "m/a", "--base-url", "localhost:8000/v1",
        code=2, needles="provider.base_url: expected an http(s) URL such as https://openrouter.ai/api/v1"),
    "generate-model-base-url-not-a-url": case(
        *gen(), "-c", "{w}/model_url.toml", code=2, needles="model m/b: base_url: expected an http(s) URL"),
    "generate-key-variable-not-set": case(
        *gen(), "--api-key-env", "HFPREF_TEST_UNSET_KEY", code=2, needles="HFPREF_TEST_UNSET_KEY is not set"),
    # --- generate: outputs, checked before anything is sent ---------------------------------------------
    "generate-output-unknown-extension": case(
        *gen(output="out.txt"), code=2, needles=("out.txt: unknown file type '.txt'", ".jsonl")),
    "generate-output-csv-with-lists": case(
        *gen(output="out.csv"), code=2, needles=("out.csv: CSV cannot hold the list columns", ".jsonl or .parquet")),
    "generate-output-is-a-folder": case(
        *gen(output="a_folder.jsonl"), code=2, needles="a_folder.jsonl: is a folder; expected the path of a .jsonl"),
    "generate-output-under-a-file": case(
        *gen(output="a_file.txt/out.jsonl"), code=2, needles="a_file.txt is a file and not a folder"),
    "generate-output-not-writable": case(
        "generate", "{w}/ok.jsonl", "-o", "/sys/out.jsonl", "--model", "m/a", "--base-url", "{url}",
        code=2, needles="/sys/out.jsonl: cannot write in /sys"),
    "generate-output-replaces-a-foreign-folder": case(
        *gen(output="foreign"), code=2, needles="foreign: a non-empty folder that is not a saved dataset"),
    # --- generate: the provider says no ------------------------------------------------------------------
    "generate-wrong-api-key": case(
        *gen(), code=1, needles=("m/a: HTTP 401", "check the API key"), env={"HFPREF_API_KEY": "sk-wrong-key-111"},
        fake={"api_key": GOOD_KEY}, max_requests=3, subprocess=True),
    "generate-unknown-model": case(
        *gen(model="m/nope"), code=1, needles=("m/nope: HTTP 404", "is the model id right"),
        fake={"models": {"m/a"}}, max_requests=3),
    "generate-huge-prompt": case(
        *gen("huge.jsonl"), "-n", "1", code=1, needles=("row 0: m/a: HTTP 400", "maximum context length"),
        fake={"responder": context_limit}, max_requests=1),
    "generate-every-request-fails": case(
        *gen(), "-c", "{w}/max_retries_0.toml", code=1,
        needles=("no completion succeeded, nothing written", "out.jsonl", "HTTP 503: overloaded"),
        fake={"responder": lambda body: status(503, "overloaded")}, max_requests=3),
    # --- judge -------------------------------------------------------------------------------------------
    "judge-missing-input": case(
        *judge("missing.jsonl"), code=2, needles="missing.jsonl: no such file"),
    "judge-no-completions": case(
        *judge("ok.jsonl"), code=2, needles=("no 'completions' column to judge", "run hfpref generate first")),
    "judge-completions-not-a-list": case(
        *judge("bad_completions.jsonl"), code=2,
        needles=("row 2 (id=2): column 'completions' must be a list of strings or nulls", "'a and b'")),
    "judge-non-string-prompt": case(
        *judge("int_prompt_completions.jsonl"), code=2,
        needles="row 0: column 'prompt' must be a non-empty string or message list, got 5"),
    "judge-unknown-mode": case(
        *judge(), "--mode", "listwise", code=2,
        needles=("'--mode'", "'listwise' is not one of 'pointwise', 'pairwise', 'stepwise'")),
    "judge-missing-prompt-file": case(
        *judge(), "--judge-prompt", "{w}/nope.txt", code=2, needles=("nope.txt' is neither a built-in", "nor a file")),
    "judge-prompt-unknown-placeholder": case(
        *judge(), "--judge-prompt", "{w}/judge_prompt.txt", code=2,
        needles=("unknown placeholder {answer}", "{completion}")),
    "judge-scale-1": case(*judge(), "--scale", "1", code=2, needles="judge.scale must be an integer >= 2, got 1"),
    "judge-output-unknown-extension": case(
        *judge(output="out.xlsx"), code=2, needles="unknown file type '.xlsx'"),
    "judge-wrong-api-key": case(
        *judge(), code=1, needles=("m/j: HTTP 401",), env={"HFPREF_API_KEY": "sk-wrong-key-111"},
        fake={"api_key": GOOD_KEY}, max_requests=6),
    # --- curate ------------------------------------------------------------------------------------------
    "curate-missing-input": case(*curate_("missing.jsonl"), code=2, needles="missing.jsonl: no such file"),
    "curate-no-scores": case(
        *curate_("generated.jsonl"), code=2, needles=("no `scores` column", "judge them first")),
    "curate-score-out-of-range": case(
        *curate_("score_out_of_range.jsonl"), code=2,
        needles="row 0: scores[0] = 2.0, expected a number in [0, 1] or null"),
    "curate-unknown-format": case(
        *curate_(), "--formats", "dpo,orpo", code=2, needles=("curate.formats: expected some of", "['dpo', 'orpo']")),
    "curate-test-size-2": case(
        *curate_(), "--test-size", "2", code=2, needles="curate.test_size must be in [0, 1), got 2.0"),
    "curate-unknown-strategy": case(
        *curate_(), "--strategy", "random", code=2, needles=("'--strategy'", "'random' is not one of")),
    "curate-step-dpo-without-step-scores": case(
        *curate_(), "--formats", "step_dpo", code=2, needles=("need a `step_scores` column", "--mode stepwise")),
    "curate-license-with-spaces": case(
        *curate_(), "--license", "my license", code=2, needles="license: expected a license id"),
    "curate-no-config-gets-rows": case(
        *curate_("ties.jsonl"), "--formats", "dpo,sft", code=2,
        needles=("no config has any rows", "dpo: all usable completions tie")),
    "curate-output-is-a-file": case(
        *curate_(output="a_file.txt"), code=2, needles="a_file.txt: exists and is not a folder"),
    "curate-output-is-a-foreign-folder": case(
        *curate_(output="foreign"), code=2, needles="foreign: not empty and not an hfpref dataset folder"),
    # --- run ---------------------------------------------------------------------------------------------
    "run-missing-config": case(
        "run", "{w}/ok.jsonl", "-o", "{w}/out", "-c", "{w}/nope.toml", code=2, needles="nope.toml does not exist"),
    "run-bad-row": case(
        *run("empty_prompt.jsonl"), code=2, needles="row 1: column 'prompt' is empty", files={"run.toml": RUN_TOML}),
    "run-wrong-api-key": case(
        *run(), code=1, needles="m/a: HTTP 401", files={"run.toml": RUN_TOML},
        env={"HFPREF_API_KEY": "sk-wrong-key-111"}, fake={"api_key": GOOD_KEY}, max_requests=3),
    "run-unknown-judge-model": case(
        *run(), code=1, needles="m/j: HTTP 404", files={"run.toml": RUN_TOML}, fake={"models": {"m/a"}},
        max_requests=3 + 6),
    "run-output-is-a-foreign-folder": case(  # refused before anything is paid for
        *run(output="foreign"), code=2, needles="foreign: not empty and not an hfpref dataset folder",
        files={"run.toml": RUN_TOML}, fake={"responder": score_7}, max_requests=0),
    # --- push --------------------------------------------------------------------------------------------
    "push-repo-id-with-two-slashes": case(
        "push", "{w}/prefs", "user/prefs/extra", code=2,
        needles=("invalid repo id 'user/prefs/extra'", "expected NAMESPACE/NAME"), subprocess=True),
    "push-repo-id-without-namespace": case(
        "push", "{w}/prefs", "my-prefs", code=2, needles="invalid repo id 'my-prefs'"),
    "push-repo-id-bad-characters": case(
        "push", "{w}/prefs", "user/my prefs!", code=2, needles="invalid repo id 'user/my prefs!'"),
    "push-missing-folder": case(
        "push", "{w}/nope", "user/prefs", code=2, needles=("'FOLDER'", "nope' does not exist")),
    "push-folder-without-card": case(
        "push", "{w}/foreign", "user/prefs", code=2, needles="foreign: no README.md; not a dataset folder"),
    # --- export ------------------------------------------------------------------------------------------
    "export-corrupt-shard": case(
        "export", "{w}/corrupt", "--to", "jsonl", "-o", "{w}/out", code=2,
        needles=("corrupt/sft/train-00000-of-00001.parquet: not a readable parquet shard", "magic bytes")),
    "export-unknown-target": case(
        "export", "{w}/prefs", "--to", "trl", "-o", "{w}/out", code=2,
        needles=("'--to'", "'trl' is not one of 'nemo-rl', 'axolotl', 'jsonl'")),
    "export-output-is-a-file": case(
        "export", "{w}/prefs", "--to", "jsonl", "-o", "{w}/a_file.txt", code=2,
        needles="a_file.txt: exists and is not a folder"),
    # --- validate ----------------------------------------------------------------------------------------
    "validate-corrupt-shard": case(
        "validate", "{w}/corrupt", code=1, needles="corrupt: 1 error(s) found", subprocess=True),
    "validate-missing-path": case(
        "validate", "{w}/nope", code=2, needles=("'CONFIG_OR_FOLDER'", "nope' does not exist")),
    "validate-invalid-toml": case("validate", "{w}/bad.toml", code=2, needles="bad.toml is not valid TOML"),
    "validate-unknown-key": case(
        "validate", "{w}/unknown_key.toml", code=2, needles="unknown key(s) ['temprature']"),
    "validate-step-dpo-needs-stepwise": case(
        "validate", "{w}/step_dpo_pointwise.toml", code=2, needles="step_dpo but judge.mode is not stepwise"),
    # --- train (only what fails before a model loads; test_train.py has the bad datasets) ----------------
    "train-without-dataset": case("train", "--model", "m", code=2, needles="--dataset and --model are required"),
    "train-unknown-method": case(
        "train", "--dataset", "{w}/prefs", "--model", "m", "--method", "orpo", code=2,
        needles=("'--method'", "'orpo' is not one of 'dpo', 'kto', 'sft'")),
    "train-missing-config-file": case(
        "train", "--dataset", "{w}/prefs", "--model", "m", "-c", "{w}/nope.yaml", code=2,
        needles="nope.yaml does not exist"),
    "train-invalid-yaml": case(
        "train", "--dataset", "{w}/prefs", "--model", "m", "-c", "{w}/bad.yaml", code=2,
        needles="bad.yaml is not valid YAML"),
    "train-corrupt-shard": case(
        "train", "--dataset", "{w}/corrupt", "--model", "m", "--config-name", "sft", code=2,
        needles=("corrupt", "not a readable parquet file", "magic bytes"), subprocess=True),
    "train-dataset-is-a-file": case(
        "train", "--dataset", "{w}/ok.jsonl", "--model", "m", code=2,
        needles=("ok.jsonl is a file", "give a dataset folder", "or a Hub repo id")),
    # --- example and the group ---------------------------------------------------------------------------
    "example-extra-argument": case("example", "extra", code=2, needles="Got unexpected extra argument (extra)"),
    "unknown-command": case("generat", code=2, needles=("No such command 'generat'", "hfpref --help")),
}
# fmt: on


def _tree(root: Path) -> dict[str, str]:
    """Every path under ``root`` with a hash of its content: what a command wrote, or changed."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
        for p in sorted(root.rglob("*"))
    }


def _invoke(argv: list[str], env: dict[str, str], subprocess_: bool, cwd: Path) -> tuple[int, str, str]:
    if subprocess_:
        full_env = {**os.environ, **env, "HF_DATASETS_DISABLE_PROGRESS_BARS": "1", "HF_HUB_OFFLINE": "1"}
        done = subprocess.run(
            [HFPREF, *argv], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=120
        )
        return done.returncode, done.stdout, done.stderr
    result = CliRunner().invoke(cli, argv, env=env)
    # Anything but SystemExit escaping the CLI would print a traceback in the console script.
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result.exit_code, result.stdout, result.stderr


def check_one_line_error(
    code: int, stdout: str, stderr: str, expected_code: int, needles: tuple[str, ...]
) -> str:
    """The checks every case makes of what a failed command printed; returns the error line.

    After requests were sent, a stage's summary line (requests, failures, cost) may precede the error:
    what was spent before the failure is worth a line. Nothing else may."""
    assert "Traceback" not in stdout + stderr, stderr
    assert code == expected_code, f"exit code {code}, expected {expected_code}: {stderr}"
    *before, last = stderr.splitlines() or [""]
    assert last.startswith("hfpref: error: "), stderr
    missing = [needle for needle in needles if needle not in last]
    assert not missing, f"{missing} not in {last!r}"
    if any(not SUMMARY.match(line) for line in before):
        raise NotOneLine(stderr)
    return last


@pytest.mark.parametrize("wrong", list(CASES.values()), ids=list(CASES))
def test_wrong_input_gives_one_line_and_writes_nothing(
    wrong: Case, inputs: Path, tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    work = tmp_path / "w"
    shutil.copytree(inputs, work)
    for name, text in wrong.files.items():
        (work / name).write_text(text.format(url=fake_openai.base_url))
    for name, value in wrong.fake.items():
        setattr(fake_openai, name, value)
    argv = [arg.format(w=work, url=fake_openai.base_url) for arg in wrong.args]
    before = _tree(work)
    code, stdout, stderr = _invoke(argv, wrong.env, wrong.subprocess, work)
    assert _tree(work) == before  # nothing written, nothing changed
    assert fake_openai.requests <= wrong.max_requests
    check_one_line_error(code, stdout, stderr, wrong.code, wrong.needles)


def test_a_corrupt_shard_is_named_by_validate_on_stdout(inputs: Path) -> None:
    code, stdout, stderr = _invoke(["validate", str(inputs / "corrupt")], {}, False, inputs)
    check_one_line_error(code, stdout, stderr, 1, ("1 error(s) found",))
    assert stdout.splitlines() == [
        f"error: sft/train: {inputs}/corrupt/sft/train-00000-of-00001.parquet: not a readable parquet shard "
        "(Parquet magic bytes not found in footer. Either the file is corrupted or this is not a parquet file.); "
        "rewrite it with hfpref curate"
    ]


def test_no_arguments_prints_the_help() -> None:
    result = CliRunner().invoke(cli, [])
    assert result.exit_code == 2
    assert "Commands:" in result.output and "generate" in result.output


def test_an_output_replaced_by_a_failed_write_keeps_the_old_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write that fails halfway (disk full, here) leaves the previous output, not a truncated one."""
    from hfpref.stages.io import save_rows

    out = tmp_path / "rows.jsonl"
    out.write_text('{"prompt": "old"}\n')

    def half_written(self: datasets.Dataset, path: str, **kwargs: Any) -> None:
        Path(path).write_text('{"prompt": "ne')
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(datasets.Dataset, "to_json", half_written)
    with pytest.raises(HfprefError, match=r"rows\.jsonl: cannot write it \(No space left on device\)"):
        save_rows(datasets.Dataset.from_dict({"prompt": ["new"]}), out)
    assert out.read_text() == '{"prompt": "old"}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rows.jsonl"]  # no temporary file left


def test_a_save_to_disk_output_is_replaced_whole(tmp_path: Path) -> None:
    from hfpref.stages.io import load_rows, save_rows

    save_rows(datasets.Dataset.from_dict({"prompt": ["a", "b"]}), tmp_path / "rows")
    save_rows(load_rows(tmp_path / "rows").map(lambda r: {"prompt": r["prompt"] * 2}), tmp_path / "rows")
    assert load_rows(tmp_path / "rows")["prompt"] == ["aa", "bb"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rows"]
