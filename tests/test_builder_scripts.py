"""builder_scripts/: each importer turns a sample in its source's real schema into a folder that
load_dataset loads, hfpref validate passes and hfpref train accepts; skips are counted, bad records fail
with one line naming the line, --limit, Hub sources and --push work."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import orjson
import pytest
from datasets import Dataset, load_dataset

from builder_scripts import dpogen, helpsteer3, nemo_gym, prm800k, ultrafeedback
from hfpref.repo.export import validate_folder
from hfpref.repo.provenance import Provenance, read_provenance
from hfpref.training.data import load_training_data
from tests.hub_emulator import HubEmulator
from tests.tiny_model import tiny_model

__all__ = ["tiny_model"]  # the session fixture

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "hf_emulator_good_token"


# --- sample records, in each source's schema ---


def rollout(question: Any, answer: str | None, reward: Any, model: str = "policy") -> dict[str, Any]:
    """One line of ng_collect_rollouts output (OpenAI Responses API objects)."""
    output: list[dict[str, Any]] = [{"type": "reasoning", "id": "rs_1", "summary": []}]
    if answer is not None:
        output.append(
            {
                "type": "message",
                "id": "msg_1",
                "role": "assistant",
                "status": "completed",
                "content": [{"type": "output_text", "text": answer, "annotations": []}],
            }
        )
    return {
        "responses_create_params": {"input": question, "temperature": 0.7},
        "response": {"id": "resp_1", "model": model, "output": output},
        "reward": reward,
        "accuracy": bool(reward),
    }


def user_parts(text: str) -> list[dict[str, Any]]:
    """A Responses API input: a developer message and a user message with content parts."""
    return [
        {"role": "developer", "content": "Answer with a number."},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]},
    ]


ROLLOUTS = [
    rollout(user_parts("2+2?"), "4", 1.0),
    rollout(user_parts("2+2?"), "5", 0.0),
    rollout(user_parts("2+2?"), "four", 0.6),
    rollout(user_parts("2+2?"), "22", None),  # null reward: skipped
    rollout("3+3?", "6", 0.9),  # a string input is one user message
    rollout("3+3?", "7", 0.7),  # gap 0.2: below --min-gap 0.5
    rollout("4+4?", "8", 1.0),
    rollout("4+4?", "eight", 1.0),  # all tie
    rollout("5+5?", None, 1.0),  # no output text: skipped
]


def helpsteer(context: list[dict[str, str]], first: str, second: str, preference: int) -> dict[str, Any]:
    return {
        "domain": "general",
        "language": "english",
        "context": context,
        "response1": first,
        "response2": second,
        "overall_preference": preference,
        "individual_preference": [
            {"score": preference, "reasoning": "because", "feedback1": "", "feedback2": ""}
        ],
    }


def chat(*turns: str) -> list[dict[str, str]]:
    return [{"role": "user" if i % 2 == 0 else "assistant", "content": t} for i, t in enumerate(turns)]


HELPSTEER = [
    helpsteer(chat("Say hi."), "Hi!", "Go away.", -2),  # response1 wins, strength 2
    helpsteer(chat("Say hi.", "Hi!", "Again?"), "Hi again!", "Hi again!!", 0),  # tie: skipped
    helpsteer(chat("Name a fruit."), "A car.", "An apple.", 3),  # response2 wins, strength 3
    helpsteer(chat("Name a colour."), "Blue.", "Red.", 1),  # strength 1
]


def ultra(question: str, good: str, bad: str, score_chosen: Any, score_rejected: Any) -> dict[str, Any]:
    return {
        "prompt": question,
        "prompt_id": f"id-{question}",
        "chosen": chat(question, good),
        "rejected": chat(question, bad),
        "messages": chat(question, good),
        "score_chosen": score_chosen,
        "score_rejected": score_rejected,
    }


ULTRA = [
    ultra("Capital of France?", "Paris.", "Lyon.", 9.0, 3.5),
    ultra("Capital of Spain?", "Madrid.", "Madrid, I think.", 7.0, 7.0),  # tie: sft only
    ultra("Capital of Italy?", "Rome.", "Milan.", None, 2.0),  # null score: skipped
    ultra("Capital of Peru?", "Lima.", "Cusco.", 8.0, 2.0),
]


def step(*completions: tuple[str, int | None], chosen: int | None = 0, human: Any = None) -> dict[str, Any]:
    return {
        "completions": [{"text": t, "rating": r, "flagged": None} for t, r in completions],
        "human_completion": human,
        "chosen_completion": chosen,
    }


def solution(problem: str, steps: list[dict[str, Any]], finish: str = "found_error") -> dict[str, Any]:
    """One labelled solution, as openai/prm800k's data/phase*.jsonl lines are."""
    return {
        "labeler": "340d89bc",
        "timestamp": "2023-01-22T04:34:27",
        "generation": 9,
        "is_quality_control_question": False,
        "is_initial_screening_question": False,
        "question": {"problem": problem, "ground_truth_answer": "4", "pre_generated_steps": []},
        "label": {"steps": steps, "total_time": 1000, "finish_reason": finish},
    }


PRM = [
    solution(  # phase 2: labelling stops at the step where every alternative was rated
        "What is 2+2?",
        [
            step(("Let us add.", 0)),
            step(("2+2 = 4.", 1)),
            step(("So the answer is 5.", -1), ("So the answer is 4.", 1), ("Hmm.", 0), chosen=None),
        ],
    ),
    solution(  # phase 1: all rated -1, the labeller wrote the step
        "What is 3*3?",
        [step(("3*3 = 6.", -1), ("3*3 = 8.", -1), chosen=None, human={"text": "3*3 = 9.", "rating": None})],
        finish="solution",
    ),
    solution("Broken problem", [step(("?", 0))], finish="bad_problem"),  # skipped
]

DPOGEN_SFT = [
    {"id": "a", "input": "What is 2 + 2?", "output": "4", "model": "m1", "score": 0.95, "verdict": "approve"},
    {"id": "b", "input": "What is 2 + 2?", "output": "5", "model": "m2", "score": 0.1, "verdict": "reject"},
    {"id": "c", "input": "Explain gravity.", "output": "Mass attracts.", "model": "m1", "score": 0.8},
    {"id": "d", "input": "Explain gravity.", "output": "", "model": "m2", "score": 0.9},  # empty: skipped
    {"id": "e", "input": "Explain gravity.", "output": "Magic.", "model": "m2", "score": None},  # skipped
]
DPOGEN_DPO = [
    {"id": "1", "input": "What is 2 + 2?", "chosen": "4", "rejected": "5", "chosen_score": 0.95,
     "rejected_score": 0.45, "chosen_model": "m1", "rejected_model": "m2"},
    {"id": "2", "input": "Explain gravity.", "chosen": "Mass attracts.", "rejected": "Magic.", "chosen_score": 0.9,
     "rejected_score": 0.2, "margin": 0.5},
    {"id": "3", "input": "Same?", "chosen": "x", "rejected": "x", "chosen_score": 0.5, "rejected_score": 0.5},
]  # fmt: skip


# --- helpers ---


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
    return path


def invoke(script: ModuleType, capsys: pytest.CaptureFixture[str], *args: Any) -> tuple[int, str, str]:
    """Run a script in-process as its ``__main__`` does; returns (exit code, stdout, stderr)."""
    try:
        script.main([str(a) for a in args])
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


def provenance(folder: Path) -> Provenance:
    """The folder's ``hfpref.json``, with every section an importer writes."""
    prov = read_provenance(folder)
    assert prov is not None and prov.source is not None and prov.source_statistics is not None
    return prov


def rows(folder: Path, config: str) -> dict[str, list[dict[str, Any]]]:
    return {split: ds.to_list() for split, ds in load_dataset(str(folder), config).items()}


def content(messages: Any) -> Any:
    """The text of a one-message list (conversational chosen/rejected/completion), or the value itself."""
    return messages[0]["content"] if isinstance(messages, list) else messages


def assert_usable(folder: Path, methods: dict[str, str]) -> None:
    """hfpref validate finds no error, and hfpref train loads each config for its method."""
    assert [f for f in validate_folder(folder) if f.level == "error"] == []
    for config, method in methods.items():
        data = load_training_data(str(folder), config, method)
        assert data.config_name == config and len(data.train) > 0


# --- each source ---


def test_nemo_gym_pairs_best_with_worst_and_counts_skips(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = write_jsonl(tmp_path / "rollouts.jsonl", ROLLOUTS)
    folder = tmp_path / "gym"
    code, out, err = invoke(
        nemo_gym, capsys, "--source", source, "-o", folder, "--min-gap", 0.5, "--test-size", 0
    )
    assert code == 0, err
    assert "read 9 records" in out
    assert "  skipped 1 × null reward\n" in out and "  skipped 1 × no output_text in response.output\n" in out
    (dpo,) = rows(folder, "dpo")["train"]
    assert dpo["prompt"] == [
        {"role": "system", "content": "Answer with a number."},
        {"role": "user", "content": "2+2?"},
    ]
    assert (content(dpo["chosen"]), content(dpo["rejected"]), dpo["margin"]) == ("4", "5", 1.0)
    assert dpo["chosen_model"] == "policy"
    grpo = {r["prompt"][-1]["content"]: r["scores"] for r in rows(folder, "grpo")["train"]}
    assert grpo == {"2+2?": [1.0, 0.0, 0.6], "3+3?": [0.9, 0.7], "4+4?": [1.0, 1.0]}
    kto = sorted((content(r["completion"]), r["label"]) for r in rows(folder, "kto")["train"])
    assert kto == [
        ("4", True),
        ("5", False),
        ("6", True),
        ("7", True),
        ("8", True),
        ("eight", True),
        ("four", False),
    ]

    prov = provenance(folder)
    assert prov.source_statistics.skipped == {"null reward": 1, "no output_text in response.output": 1}
    assert prov.configs["dpo"].statistics["dropped"] == {
        "margin below min_margin": 1,
        "all usable completions tie": 1,
    }
    reward = prov.source_statistics.distributions["reward"]
    assert (reward["count"], reward["min"], reward["max"]) == (7, 0.0, 1.0)
    card = (folder / "README.md").read_text()
    assert "- 1 × null reward" in card and "| reward | count |" in card and "| 1 | 3 |" in card
    assert_usable(folder, {"dpo": "dpo", "kto": "kto"})


def test_nemo_gym_stratified_and_rescaled_rewards(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    records = [
        rollout("q", text, reward) for text, reward in (("a", 10), ("b", 8), ("c", 5), ("d", 0), ("e", 1))
    ]
    source = write_jsonl(tmp_path / "r.jsonl", records)
    folder = tmp_path / "strat"
    args = ["--pairing", "stratified", "--high", 0.75, "--low", 0.15, "--formats", "dpo", "--test-size", 0]
    code, out, err = invoke(nemo_gym, capsys, "--source", source, "-o", folder, *args)
    assert code == 0, err
    assert "rewards span [0, 10]: rescaled to [0, 1]" in out
    pairs = [(content(r["chosen"]), content(r["rejected"])) for r in rows(folder, "dpo")["train"]]
    assert pairs == [("a", "d"), ("b", "e")]  # >= 7.5 against <= 1.5, best with worst first
    assert provenance(folder).source["reward scaling"] == "rewards in [0, 10] rescaled to [0, 1]"


def test_helpsteer3_script_runs_as_a_file(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "helpsteer3.jsonl", HELPSTEER)
    folder = tmp_path / "hs3"
    done = subprocess.run(
        [
            sys.executable,
            "builder_scripts/helpsteer3.py",
            "--source",
            source,
            "-o",
            folder,
            "--min-strength",
            "2",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "  skipped 1 × tie (overall_preference 0)\n" in done.stdout
    assert "  skipped 1 × |overall_preference| below --min-strength 2\n" in done.stdout
    dpo = [r for split in rows(folder, "dpo").values() for r in split]
    got = sorted(
        (r["prompt"][-1]["content"], content(r["chosen"]), content(r["rejected"]), r["margin"]) for r in dpo
    )
    assert got == [("Name a fruit.", "An apple.", "A car.", 3.0), ("Say hi.", "Hi!", "Go away.", 2.0)]
    assert all(r["score_chosen"] is None and r["score_rejected"] is None for r in dpo)
    assert provenance(folder).source_statistics.distributions["overall_preference"]["count"] == 4
    assert_usable(folder, {"dpo": "dpo"})


def test_ultrafeedback_explicit_prompt_and_limit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = write_jsonl(tmp_path / "uf.jsonl", ULTRA)
    folder = tmp_path / "uf"
    code, out, err = invoke(
        ultrafeedback, capsys, "--source", source, "-o", folder, "--limit", 3, "--test-size", 0
    )
    assert code == 0, err
    assert "read 3 records" in out and "  skipped 1 × null score_chosen or score_rejected\n" in out
    (dpo,) = rows(folder, "dpo")["train"]
    assert dpo["prompt"] == [{"role": "user", "content": "Capital of France?"}]
    assert dpo["chosen"] == [{"role": "assistant", "content": "Paris."}]
    assert (dpo["score_chosen"], dpo["score_rejected"], dpo["margin"]) == (9.0, 3.5, 5.5)
    assert [content(r["completion"]) for r in rows(folder, "sft")["train"]] == ["Paris.", "Madrid."]
    assert [(content(r["completion"]), r["label"]) for r in rows(folder, "kto")["train"]] == [
        ("Paris.", True),
        ("Lyon.", False),
    ]
    assert "score_chosen not above score_rejected" in out
    assert_usable(folder, {"dpo": "dpo", "sft": "sft", "kto": "kto"})

    standard = tmp_path / "uf-standard"
    assert invoke(ultrafeedback, capsys, "--source", source, "-o", standard, "--style", "standard")[0] == 0
    prompts = [r["prompt"] for split in rows(standard, "dpo").values() for r in split]
    assert prompts == ["Capital of France?", "Capital of Peru?"]


def test_prm800k_stepwise_and_step_dpo(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = write_jsonl(tmp_path / "phase2_train.jsonl", PRM)
    folder = tmp_path / "prm"
    code, out, err = invoke(prm800k, capsys, "--source", source, "-o", folder, "--test-size", 0)
    assert code == 0, err
    assert "  skipped 1 × problem marked bad by the labeller (finish_reason bad_problem)\n" in out
    stepwise = {
        (r["prompt"], tuple(r["completions"]), tuple(r["labels"])) for r in rows(folder, "stepwise")["train"]
    }
    head = ("Let us add.", "2+2 = 4.")
    assert stepwise == {
        ("What is 2+2?", (*head, "So the answer is 5."), (False, True, False)),
        ("What is 2+2?", (*head, "So the answer is 4."), (False, True, True)),
        ("What is 2+2?", (*head, "Hmm."), (False, True, False)),
        ("What is 2+2?", head, (False, True)),
        ("What is 3*3?", ("3*3 = 6.",), (False,)),
        ("What is 3*3?", ("3*3 = 8.",), (False,)),
        ("What is 3*3?", ("3*3 = 9.",), (True,)),
    }
    step_dpo = {
        (r["prompt"], r["chosen"], r["rejected"], r["step_index"]) for r in rows(folder, "step_dpo")["train"]
    }
    assert step_dpo == {
        ("What is 2+2?\n\nLet us add.\n\n2+2 = 4.\n\n", "So the answer is 4.", "So the answer is 5.", 2),
        ("What is 3*3?\n\n", "3*3 = 9.", "3*3 = 6.", 0),
        ("What is 3*3?\n\n", "3*3 = 9.", "3*3 = 8.", 0),
    }
    assert provenance(folder).source_statistics.distributions["step rating"]["histogram"] == [
        ["-1", 3],
        ["0", 2],
        ["1", 2],
    ]
    assert_usable(folder, {"step_dpo": "dpo"})

    neutral = tmp_path / "prm-neutral"
    assert invoke(prm800k, capsys, "--source", source, "-o", neutral, "--neutral", "correct")[0] == 0
    labels = {tuple(r["completions"]): r["labels"] for s in rows(neutral, "stepwise").values() for r in s}
    assert labels[head] == [True, True]


def test_dpogen_sft_and_dpo_outputs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sft_source = write_jsonl(tmp_path / "sft_dataset.jsonl", DPOGEN_SFT)
    folder = tmp_path / "dg-sft"
    args = ["--formats", "sft,kto,grpo,dpo", "--threshold", 0.5, "--test-size", 0]
    code, out, err = invoke(dpogen, capsys, "--source", sft_source, "-o", folder, *args)
    assert code == 0, err
    assert "  skipped 1 × empty output\n" in out and "  skipped 1 × null score\n" in out
    assert sorted((r["prompt"], r["completion"], r["model"]) for r in rows(folder, "sft")["train"]) == [
        ("Explain gravity.", "Mass attracts.", "m1"),
        ("What is 2 + 2?", "4", "m1"),
    ]
    assert [(r["chosen"], r["rejected"]) for r in rows(folder, "dpo")["train"]] == [("4", "5")]
    assert_usable(folder, {"sft": "sft", "kto": "kto", "dpo": "dpo"})

    dpo_source = write_jsonl(tmp_path / "dpo_dataset.jsonl", DPOGEN_DPO)
    folder = tmp_path / "dg-dpo"
    code, out, err = invoke(dpogen, capsys, "--source", dpo_source, "-o", folder, "--test-size", 0)
    assert code == 0, err
    assert "dpo: 2 train (left out: 1 × chosen and rejected identical)" in out
    got = [(r["prompt"], r["margin"], r["chosen_model"]) for r in rows(folder, "dpo")["train"]]
    assert got == [("What is 2 + 2?", 0.5, "m1"), ("Explain gravity.", 0.5, None)]  # 0.95 - 0.45; given
    assert sorted(provenance(folder).tags) == ["dpogen", "synthetic"]


# --- shared behaviour ---


BAD_RECORDS = [
    (nemo_gym, rollout("q", "a", "high"), "`reward`: expected a number or null, got the string 'high'"),
    (helpsteer3, helpsteer(chat("q"), "a", "b", 5), "`overall_preference`: expected an integer in -3..3"),
    (ultrafeedback, {**ULTRA[0], "chosen": "Paris."}, "`chosen`: expected a list, got the string 'Paris.'"),
    (
        prm800k,
        solution("p", [step(("s", 2))]),
        "`label.steps[0].completions[0].rating`: expected an integer in -1..1",
    ),
    (dpogen, {**DPOGEN_SFT[0], "score": 1.5}, "`score`: expected a number in [0, 1] or null, got 1.5"),
]


@pytest.mark.parametrize(
    ("script", "bad", "message"), BAD_RECORDS, ids=[s.__name__ for s, _, _ in BAD_RECORDS]
)
def test_a_record_of_the_wrong_shape_fails_in_one_line_naming_it(
    script: ModuleType, bad: dict[str, Any], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = {nemo_gym: ROLLOUTS, helpsteer3: HELPSTEER, ultrafeedback: ULTRA, prm800k: PRM, dpogen: DPOGEN_SFT}
    source = write_jsonl(tmp_path / "data.jsonl", [good[script][0], bad, good[script][1]])
    code, _, err = invoke(script, capsys, "--source", source, "-o", tmp_path / "out")
    assert code == 2
    assert err.count("\n") == 1 and err.startswith(f"{script.__name__.split('.')[-1]}: error: "), err
    assert f"data.jsonl line 2: {message}" in err
    assert not (tmp_path / "out").exists()


def test_bad_json_and_missing_sources_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "broken.jsonl"
    source.write_text('{"reward": 1}\n\n{"reward": \n')
    code, _, err = invoke(nemo_gym, capsys, "--source", source, "-o", tmp_path / "o")
    assert (
        code == 2 and "broken.jsonl line 1: `responses_create_params`: expected an object, got nothing" in err
    )
    source.write_text(json.dumps(ROLLOUTS[0]) + "\n\n{oops\n")
    code, _, err = invoke(nemo_gym, capsys, "--source", source, "-o", tmp_path / "o")
    assert code == 2 and "broken.jsonl line 3: not valid JSON" in err and err.count("\n") == 1
    code, _, err = invoke(helpsteer3, capsys, "--source", tmp_path / "nope.jsonl", "-o", tmp_path / "o")
    assert code == 2 and "no such file or folder" in err
    code, _, err = invoke(helpsteer3, capsys, "--source", source, "-o", tmp_path / "o", "--min-strenght", 2)
    assert code == 2 and err == (
        "helpsteer3: error: No such option '--min-strenght'. Did you mean '--min-strength'? "
        "(see 'helpsteer3 --help')\n"
    )


def test_json_arrays_and_parquet_sources(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    array = tmp_path / "hs.json"
    array.write_bytes(orjson.dumps([*HELPSTEER[:2], helpsteer(chat("q"), "a", "b", "x")]))
    code, _, err = invoke(helpsteer3, capsys, "--source", array, "-o", tmp_path / "a")
    assert code == 2 and "hs.json record 3: `overall_preference`" in err
    parquet = tmp_path / "hs.parquet"
    Dataset.from_list(HELPSTEER).to_parquet(str(parquet))
    code, out, err = invoke(helpsteer3, capsys, "--source", parquet, "-o", tmp_path / "p", "--limit", 2)
    assert code == 0, err
    assert "read 2 records" in out and len(rows(tmp_path / "p", "dpo")["train"]) == 1


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubEmulator]:
    with HubEmulator(tmp_path_factory.mktemp("hub"), tokens={TOKEN}) as emulator:
        yield emulator


def test_hub_source_and_push(hub: HubEmulator, tmp_path: Path) -> None:
    seed = tmp_path / "seed"
    (seed / "data").mkdir(parents=True)
    Dataset.from_list(ULTRA).to_parquet(str(seed / "data" / "train_prefs-00000-of-00001.parquet"))
    Dataset.from_list(ULTRA[:1]).to_parquet(str(seed / "data" / "test_prefs-00000-of-00001.parquet"))
    hub.add_folder("user/uf-binarized", seed)
    env = {**os.environ, **hub.env(TOKEN), "HF_DATASETS_DISABLE_PROGRESS_BARS": "1"}
    folder = tmp_path / "uf"
    args = ["--source", "user/uf-binarized", "-o", str(folder), "--push", "user/uf-prefs", "--test-size", "0"]
    done = subprocess.run(
        [sys.executable, "builder_scripts/ultrafeedback.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "read 4 records from user/uf-binarized" in done.stdout  # the train_prefs split, by default
    assert "pushed" in done.stdout and "datasets/user/uf-prefs" in done.stdout
    card = hub.read("user/uf-prefs", "README.md").decode()
    assert 'load_dataset("user/uf-prefs", "dpo")' in card and "- source: user/uf-binarized" in card
    pushed = hub.repos[("datasets", "user/uf-prefs")].resolve("main").files  # type: ignore[union-attr]
    assert {"dpo/train-00000-of-00001.parquet", "sft/train-00000-of-00001.parquet", "hfpref.json"} <= set(
        pushed
    )
    assert hub.unhandled == []


def test_hfpref_train_runs_on_an_imported_folder(tmp_path: Path, tiny_model: Path) -> None:
    from hfpref.training.train import train

    records = [helpsteer(chat(f"Add {i} and {i}."), f"{2 * i}.", "No idea.", -3) for i in range(8)]
    folder = tmp_path / "hs3"
    helpsteer3.command.main(
        ["--source", str(write_jsonl(tmp_path / "hs.jsonl", records)), "-o", str(folder)],
        standalone_mode=False,
    )
    overrides = [
        "max_steps=1",
        "per_device_train_batch_size=2",
        "max_length=64",
        "report_to=none",
        "save_steps=100",
    ]
    result = train(str(folder), str(tiny_model), output_dir=tmp_path / "out", overrides=overrides)
    assert (result.method, result.config_name) == ("dpo", "dpo")
    assert any("train_loss" in entry for entry in result.log_history)
