"""What a folder says about how its data was made: curate reads it from the judged file's columns.

``hfpref generate`` → ``hfpref judge`` → ``hfpref curate`` as three commands records the same generation
models, usage and judge statistics as ``hfpref run`` (one method,
:meth:`hfpref.repo.provenance.Provenance.completed`, completes what each caller knows from the columns);
what only the settings know (sampling, the judge prompt) is absent from a staged folder, and its card
says so instead of guessing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hfpref.errors import ConfigError
from hfpref.repo.provenance import Provenance, TokenUsage, read_provenance
from hfpref.stages.curate import curate
from tests.fake_openai import FakeOpenAI, fake_openai
from tests.test_cli_stages import hfpref, prompts
from tests.test_curate import row

__all__ = ["fake_openai"]  # the fixture

DERIVED_JUDGE = ("models", "mode", "statistics")  # what the judge's records tell


def test_staged_curate_records_the_judge_and_generation_as_run_does(
    fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    fake_openai.score_models = {"j/1"}  # the judge answers "[[k]]" rubric scores
    fake_openai.cost_per_token = 1e-6
    source = prompts(tmp_path / "in.jsonl", 12)
    url = ("--base-url", fake_openai.base_url)
    generated, judged, staged = tmp_path / "gen.parquet", tmp_path / "judged.parquet", tmp_path / "staged"
    assert hfpref("generate", source, "-o", generated, "--model", "m/a", "-n", "3", *url).exit_code == 0
    assert hfpref("judge", generated, "-o", judged, "--judge-model", "j/1", *url).exit_code == 0
    result = hfpref("curate", judged, "-o", staged, "--test-size", "0")
    assert result.exit_code == 0, result.stderr

    config = tmp_path / "run.toml"  # the same requests (helpfulness is the pointwise default): cached answers
    config.write_text(
        f'[provider]\nbase_url = "{fake_openai.base_url}"\n[generate]\nn = 3\nmodels = ["m/a"]\n'
        '[judge]\nmodels = ["j/1"]\nprompt = "helpfulness"\n[curate]\ntest_size = 0.0\n'
    )
    ran = hfpref("run", source, "-o", tmp_path / "ran", "-c", config)
    assert ran.exit_code == 0, ran.stderr

    made, run = read_provenance(staged), read_provenance(tmp_path / "ran")
    assert made is not None and run is not None
    assert made.judge is not None and run.judge is not None and made.usage is not None
    assert made.generation is not None and run.generation is not None
    judge = made.judge
    assert judge["models"] == [{"id": "j/1"}] and judge["mode"] == "pointwise" and judge["inferred"]
    assert judge["statistics"]["calls"] == 36 and judge["statistics"]["parse_failure_rate"] == 0.0
    assert judge["statistics"]["cost_usd"] > 0
    assert {k: judge[k] for k in DERIVED_JUDGE} == {k: run.judge[k] for k in DERIVED_JUDGE}
    assert "prompt" not in judge and run.judge["prompt"] == "helpfulness"  # only the settings know it
    generation = made.generation
    (model,) = generation["models"]  # what the columns tell of the model: completions, scores, usage
    assert (model["id"], model["completions"], model["scored"], sum(model["score_histogram"])) == (
        "m/a",
        36,
        36,
        36,
    )
    assert model["prompt_tokens"] == made.usage.prompt_tokens and model["cost_usd"] == made.usage.cost_usd
    assert generation["inferred"] and (generation["completions"], generation["failed"]) == (36, 0)
    assert run.generation["models"] == [{**model, "weight": 1.0}]
    assert (run.generation["completions"], run.generation["failed"]) == (36, 0)
    assert "temperature" not in generation and run.generation["temperature"] == 0.8
    assert made.usage == run.usage and (made.usage.cost_usd or 0) > 0
    assert "inferred" not in run.judge and "inferred" not in run.generation

    card = (staged / "README.md").read_text()
    assert "### Judging" in card and "- Judges: `j/1`" in card and "- `mode`: pointwise" in card
    assert "the judge prompt, rubric scale, position swap and sampling settings were not recorded" in card
    assert "- calls: 36" in card
    ran_card = (tmp_path / "ran" / "README.md").read_text()
    assert "- Judge prompt: `helpfulness`" in ran_card and "were not recorded" not in ran_card
    assert "- calls: 36" in ran_card


def test_curate_without_judge_or_generation_columns_records_neither(tmp_path: Path) -> None:
    rows = [{"prompt": f"q{i}", "completions": ["a", "b"], "scores": [0.9, 0.1]} for i in range(4)]
    curate(rows, tmp_path / "prefs", formats="dpo", test_size=0)
    prov = read_provenance(tmp_path / "prefs")
    assert prov is not None
    assert not {"generation", "judge", "usage"} & set(prov.to_json())
    card = (tmp_path / "prefs" / "README.md").read_text()
    assert "### Judging" not in card and "### Generation" not in card and "Judge statistics" in card


def judge_record(mode: str, models: list[str], calls: int, cost: float | None) -> dict[str, Any]:
    return {
        "mode": mode,
        "models": models,
        "calls": calls,
        "verdicts": calls,
        "parse_failures": 1,
        "failed_calls": 0,
        "error": None,
        "pairs": 0,
        "inconsistent_pairs": 0,
        "agreement": None,
        "cost": cost,
    }


def test_the_judge_section_gathers_every_row_and_keeps_the_callers_settings() -> None:
    rows = [
        row("q1", ["a", "b"], [0.9, 0.1], judge=judge_record("pointwise", ["j/1", "j/2"], 4, 0.5)),
        row("q2", ["a", "b"], [0.8, None], judge=None),  # a row without a record: not counted
        row("q3", ["a", "b"], [0.7, 0.2], judge=judge_record("pointwise", ["j/2", "j/3"], 2, 0.25)),
    ]
    found = curate(rows, formats="dpo", test_size=0).provenance["judge"]
    assert found["models"] == [{"id": "j/1"}, {"id": "j/2"}, {"id": "j/3"}]
    assert found["mode"] == "pointwise" and found["inferred"] is True
    stats = found["statistics"]
    assert (stats["calls"], stats["parse_failure_rate"], stats["cost_usd"]) == (6, 2 / 6, 0.75)
    assert stats["unscored_completions"] == 1
    totals = {"verdicts": 6, "parse_failures": 2, "pairs": 0, "inconsistent_pairs": 0}  # the rates' counts
    assert found["totals"] == totals
    given = {"judge": {"models": [], "prompt": "mine.txt", "statistics": {"calls": 1}}}
    merged = curate(rows, formats="dpo", test_size=0, provenance=given).provenance["judge"]
    assert merged == {
        "models": found["models"],  # none configured: the records name them
        "prompt": "mine.txt",
        "statistics": {"calls": 1},  # what the caller gives wins
        "mode": "pointwise",
        "totals": totals,
    }


def test_completed_provenance_completes_the_callers_models_by_id() -> None:
    given = {
        "generation": {"models": [{"id": "m/b", "weight": 2.0}, {"id": "m/a", "weight": 1.0}], "n": 4},
        "summary": "mine",
    }
    found = {
        "generation": {
            "models": [
                {"id": "m/a", "completions": 3},
                {"id": "m/b", "completions": 5},
                {"id": "m/c", "completions": 1},
            ],
            "n": 2,
            "completions": 9,
            "failed": 1,
        },
        "usage": {"cost_usd": None},
    }
    completed = Provenance.from_json(given).completed(Provenance.from_json(found))
    assert completed == Provenance(
        generation={
            "models": [
                {"id": "m/b", "completions": 5, "weight": 2.0},
                {"id": "m/a", "completions": 3, "weight": 1.0},
                {"id": "m/c", "completions": 1},  # in the data, not in the settings: still listed
            ],
            "n": 4,
            "completions": 9,
            "failed": 1,
        },
        summary="mine",
        usage=TokenUsage(cost_usd=None),
    )
    given_usage = Provenance.from_json({"usage": {"cost_usd": 1.0}})
    assert given_usage.completed(Provenance.from_json(found)).usage == TokenUsage(cost_usd=1.0)


def test_a_provenance_key_hfpref_does_not_know_is_refused() -> None:
    rows = [row("q", ["a", "b"], [0.9, 0.1])]
    with pytest.raises(ConfigError, match=r"provenance: unknown key\(s\) \['judges'\]"):
        curate(rows, formats="dpo", test_size=0, provenance={"judges": {"models": []}})
    with pytest.raises(ConfigError, match=r"provenance TokenUsage: unknown key\(s\) \['cost'\]"):
        curate(rows, formats="dpo", test_size=0, provenance={"usage": {"cost": 1.0}})


@pytest.mark.parametrize("judge", ["gpt-4o", {"name": "Ann", "calls": 3}])
def test_a_judge_column_of_something_else_is_not_read_as_records(judge: Any) -> None:
    rows = [row(f"q{i}", ["a", "b"], [0.9, 0.1], judge=judge) for i in range(3)]
    result = curate(rows, formats="dpo", test_size=0)
    assert "judge" not in result.provenance
    models = result.provenance["generation"]["models"]
    assert [(m["id"], m["completions"]) for m in models] == [("m0", 3), ("m1", 3)]
