"""Judge calibration (``hfpref judge --calibrate``) on the labelled set shipped in tests/data, against
the fake server: agreement with people, position bias, kappa and the reliability diagram, computed by
hand below for judges whose verdicts the test chooses; where the result is kept and how it reaches
the card of the data that judge scores.
"""

from __future__ import annotations

import dataclasses
import json
import random
from collections import Counter
from collections.abc import Hashable
from pathlib import Path
from typing import Any

import orjson
import pytest

from hfpref.config import JudgeConfig
from hfpref.errors import ConfigError, InputError
from hfpref.repo.folder import write_folder
from hfpref.repo.measures import kappa, kappa_of_counts, pair_counts, proportion, table_kappa
from hfpref.stages.calibrate import calibration_path, judge_key, load_labelled, stored_calibration
from hfpref.stages.curate import curate
from tests.fake_openai import Behaviour, FakeOpenAI, fake_openai, ok
from tests.test_cli_stages import hfpref, tag
from tests.test_curate import row

__all__ = ["fake_openai"]  # the fixture

LABELLED = Path(__file__).parent / "data" / "labelled_pairs.jsonl"
PAIRS = [json.loads(line) for line in LABELLED.read_text(encoding="utf-8").splitlines()]
# each completion text -> (its pair's index, whether people preferred it)
KNOWN = {
    text: (i, preferred)
    for i, pair in enumerate(PAIRS)
    for text, preferred in ((pair["chosen"][0]["content"], True), (pair["rejected"][0]["content"], False))
}


def panel_judge(body: dict[str, Any]) -> Behaviour | None:
    """j/1 prefers the human-preferred completion but for pairs 0-5, where it prefers the other one;
    j/2 says A (the first shown) for pairs 0-11 and prefers the human-preferred one from pair 12 on.
    Any other pair (a run's generated completions): the text that sorts first wins, and j/2 says A
    whenever the first text ends with an even digit."""
    content = body["messages"][0]["content"]
    if "<completion_a>" not in content:
        return None  # not a judge: a generation request, answered as the fake does by default
    a, b = tag(content, "completion_a"), tag(content, "completion_b")
    if a not in KNOWN:
        if body["model"] == "j/2" and a[-1] in "02468":
            return ok("Final verdict: [[A]]")
        return ok(f"Final verdict: [[{'A' if a < b else 'B'}]]")
    index, a_preferred = KNOWN[a]
    if body["model"] == "j/2" and index < 12:
        return ok("Final verdict: [[A]]")
    right = index >= 6 or body["model"] == "j/2"
    return ok(f"Final verdict: [[{'A' if a_preferred == right else 'B'}]]")


def calibrate(fake: FakeOpenAI, *flags: str | Path) -> Any:
    fake.responder = panel_judge
    panel = ("--judge-model", "j/1", "--judge-model", "j/2", "--mode", "pairwise")
    return hfpref("judge", "--calibrate", LABELLED, *panel, "--base-url", fake.base_url, *flags)


def test_calibration_of_a_pairwise_panel_on_the_shipped_labelled_set(fake_openai: FakeOpenAI) -> None:
    result = calibrate(fake_openai)
    assert result.exit_code == 0, result.stderr
    # per judge, each pair in both orders: 2 judges x 2 orders x 24 pairs; the configured panel sends
    # the same requests, answered by the cache
    assert fake_openai.requests == 96 and not fake_openai.duplicates()
    stored = stored_calibration(JudgeConfig(models=["j/1", "j/2"], mode="pairwise"))
    assert stored is not None and stored["pairs"] == 24 and stored["labelled"] == LABELLED.name
    # the panel (mean of the judges' outcomes, a judge whose two orders disagree gives 0.5) scores the
    # human-preferred completion 0.25 on pairs 0-5, 0.75 on 6-11 and 1.0 from 12 on
    assert stored["outcomes"] == {"agree": 18, "tie": 0, "disagree": 6, "unscored": 0}
    assert stored["human_agreement"] == proportion(18, 24)
    # first position wins: j/1 one order in two (it does not look at the order), j/2 both orders of
    # pairs 0-11 and one of the others: (24 + 36) of 96 decisive verdicts
    assert stored["first_position"] == proportion(60, 96)
    assert [
        (j["id"], j["first_position"]["hits"], j["human_agreement"]["hits"]) for j in stored["per_judge"]
    ] == [
        ("j/1", 24, 18),
        ("j/2", 36, 12),  # pairs 0-11: inconsistent, a tie
    ]
    # verdicts: j/1 rejected on 0-5, chosen after; j/2 tie on 0-11, chosen after: they agree on 12 of
    # 24, and by chance on (18/24)(12/24) = 0.375
    expected = (0.5 - 0.375) / 0.625
    assert stored["kappa"] == {
        "kind": "Cohen's kappa",
        "value": pytest.approx(expected, abs=1e-4),
        "items": 24,
    }
    bins = {b["bin"]: (b["count"], b["mean_score"], b["observed"]) for b in stored["reliability"]["bins"]}
    assert bins == {
        "0.0-0.1": (12, 0.0, 0.0),
        "0.2-0.3": (12, 0.25, 0.5),
        "0.7-0.8": (12, 0.75, 0.5),
        "0.9-1.0": (12, 1.0, 1.0),
    }
    assert stored["reliability"]["ece"] == 0.125
    path = calibration_path(JudgeConfig(models=["j/1", "j/2"], mode="pairwise"))
    assert path.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    out = result.stdout.splitlines()
    assert out[0] == "calibrated j/1, j/2 (pairwise) on 24 pairs of labelled_pairs.jsonl"
    assert "agreement with the human preference: 0.750 (95% CI 0.551-0.880, 18 of 24)" in out
    assert "first-position win rate (0.5 = no position bias): 0.625 (95% CI 0.525-0.715, 60 of 96)" in out
    assert "Cohen's kappa between the judges: 0.200 (24 pairs)" in out
    assert "expected calibration error: 0.125" in out
    assert out[-1].startswith(f"stored in {path} (diagram: {path.with_suffix('.png')})")
    again = calibrate(fake_openai)  # a rerun is answered by the cache and stores the same result
    assert again.exit_code == 0 and fake_openai.requests == 96
    assert stored_calibration(JudgeConfig(models=["j/1", "j/2"], mode="pairwise")) == stored


def test_a_pointwise_judge_is_calibrated_without_a_position(fake_openai: FakeOpenAI, tmp_path: Path) -> None:
    fake_openai.score_models = {"j/1"}  # "[[k]]" scores from a hash of the request
    cache = tmp_path / "cache"
    args = ("--calibrate", LABELLED, "--judge-model", "j/1", "--base-url", fake_openai.base_url)
    result = hfpref("judge", *args, "--cache-dir", cache)
    assert result.exit_code == 0, result.stderr
    assert fake_openai.requests == 48  # each completion once: the panel's request is the judge's own
    stored = stored_calibration(JudgeConfig(models=["j/1"]), str(cache))
    assert stored is not None and stored["first_position"] is None and stored["kappa"] is None
    outcomes = stored["outcomes"]
    assert sum(outcomes.values()) == 24 and stored["human_agreement"] == proportion(
        outcomes["agree"], 24 - outcomes["unscored"]
    )
    assert sum(b["count"] for b in stored["reliability"]["bins"]) == 2 * (24 - outcomes["unscored"])
    assert "first-position" not in result.stdout


def test_judge_needs_input_and_output_or_a_labelled_set(tmp_path: Path) -> None:
    for args in ((), ("in.jsonl",), ("-o", "out.jsonl")):
        result = hfpref("judge", *args)
        assert result.exit_code == 2 and "give INPUT and -o OUTPUT, or --calibrate LABELLED" in result.stderr


def test_the_key_is_every_setting_that_changes_a_verdict(tmp_path: Path) -> None:
    base = JudgeConfig(models=["j/1"], mode="pairwise")
    prompt = tmp_path / "mine.txt"
    prompt.write_text("{prompt} {completion_a} {completion_b}")
    changed = [
        dataclasses.replace(base, models=["j/2"]),
        dataclasses.replace(base, swap=False),
        dataclasses.replace(base, prompt=str(prompt)),
        dataclasses.replace(base, temperature=0.5),
    ]
    keys = {judge_key(base), *(judge_key(c) for c in changed)}
    assert len(keys) == 5
    assert judge_key(dataclasses.replace(base, concurrency=3)) == judge_key(base)  # no verdict changes
    prompt.write_text("Judge: {prompt} {completion_a} {completion_b}")  # the text counts, not the name
    assert judge_key(changed[2]) not in keys


def test_curate_keeps_a_calibration_only_of_the_judge_that_scored_the_data(
    fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    assert calibrate(fake_openai).exit_code == 0
    calibration = stored_calibration(JudgeConfig(models=["j/1", "j/2"], mode="pairwise"))
    record = {"mode": "pairwise", "models": ["j/1", "j/2"], "calls": 4, "verdicts": 4, "parse_failures": 0}
    record |= {"failed_calls": 0, "error": None, "pairs": 2, "inconsistent_pairs": 1, "agreement": 0.5}
    rows = [row(f"q{i}", ["a", "b"], [0.75, 0.25], judge={**record, "cost": 0.0}) for i in range(4)]
    kept = curate(rows, formats="dpo", test_size=0, calibration=calibration).provenance
    assert kept["calibration"] == calibration
    judged = tmp_path / "judged.jsonl"  # hfpref curate -c finds it by the config's judge
    judged.write_text("".join(orjson.dumps(r).decode() + "\n" for r in rows))
    config = tmp_path / "hfpref.toml"
    config.write_text('[judge]\nmodels = ["j/1", "j/2"]\nmode = "pairwise"\n')
    assert hfpref("curate", judged, "-o", tmp_path / "prefs", "-c", config, "--formats", "dpo").exit_code == 0
    card = (tmp_path / "prefs" / "README.md").read_text()
    assert "- Calibration: Cohen's kappa between the panel's judges: 0.200 (24 pairs)" in card
    assert "![Judge calibration against human preferences](images/judge_calibration.png)" in card
    other = [
        row(f"q{i}", ["a", "b"], [0.75, 0.25], judge={**record, "models": ["j/1"], "cost": 0.0})
        for i in range(4)
    ]
    with pytest.raises(ConfigError, match=r"the calibration is of the judge \['j/1', 'j/2'\] \(pairwise\)"):
        curate(other, formats="dpo", test_size=0, calibration=calibration)


def test_labelled_pairs_from_a_dataset_folder_and_bad_ones(tmp_path: Path) -> None:
    from datasets import Dataset, DatasetDict

    pairs = Dataset.from_list(PAIRS[:3])
    write_folder(
        tmp_path / "human", {"dpo": DatasetDict({"train": pairs.select([0, 1]), "test": pairs.select([2])})}
    )
    rows = load_labelled(str(tmp_path / "human"))
    assert [r["completions"] for r in rows] == [
        [p["chosen"][0]["content"], p["rejected"][0]["content"]] for p in PAIRS[:3]
    ]
    assert rows[0]["prompt"] == PAIRS[0]["prompt"]
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(orjson.dumps({"prompt": "q", "chosen": "a"}) + b"\n")
    with pytest.raises(InputError, match=r"no column\(s\) \['rejected'\]"):
        load_labelled(str(bad))
    bad.write_bytes(orjson.dumps({"prompt": "q", "chosen": "a", "rejected": ""}) + b"\n")
    with pytest.raises(InputError, match=r"LABELLED row 0: `rejected` is not a completion"):
        load_labelled(str(bad))


def test_kappa_and_intervals() -> None:
    assert proportion(0, 0) is None
    assert proportion(5, 10) == {"hits": 5, "total": 10, "rate": 0.5, "low": 0.2366, "high": 0.7634}
    assert proportion(0, 10) == {"hits": 0, "total": 10, "rate": 0.0, "low": 0.0, "high": 0.2775}
    assert kappa([["a", "a"], ["b", "b"], ["a", "a"], ["b", "b"]]) == {
        "kind": "Cohen's kappa",
        "value": 1.0,
        "items": 4,
    }
    assert kappa([["a", "a"], ["a", "a"]]) == {
        "kind": "Cohen's kappa",
        "value": None,
        "items": 2,
    }  # chance: total
    # Fleiss' 1971 style check: 3 raters, perfect agreement on mixed items is 1, a rater set at odds less
    assert kappa([["x", "x", "x"], ["y", "y", "y"]]) == {"kind": "Fleiss' kappa", "value": 1.0, "items": 2}
    assert kappa([["x", "x", "y"], ["y", "y", "x"]])["value"] == pytest.approx(-1 / 3, abs=1e-4)  # type: ignore[index]
    assert kappa([["x"], ["y"]]) is None  # one rater: no panel
    # Fleiss by hand, 4 items x 3 raters: P_i = 1, 1/3, 1/3, 1 (mean 2/3); shares x 5/12, y 3/12, z 4/12
    items = [["x", "x", "x"], ["x", "x", "y"], ["y", "y", "z"], ["z", "z", "z"]]
    chance = (25 + 9 + 16) / 144
    assert kappa(items)["value"] == pytest.approx((2 / 3 - chance) / (1 - chance), abs=1e-4)  # type: ignore[index]


def test_kappa_from_counts_summed_over_parts_is_the_kappa_of_the_whole() -> None:
    """A judged dataset keeps pair counts per row; their sum gives the same kappa as all labels at once."""
    rng = random.Random(3)
    for raters in (2, 3, 4):
        items = [[rng.choice("abc") for _ in range(raters)] for _ in range(50)]
        summed: Counter[tuple[Hashable, Hashable]] = Counter()
        for start in range(0, 50, 7):
            summed += pair_counts(items[start : start + 7])
        assert kappa_of_counts(summed, raters) == kappa(items)
        layout = "abc"
        table = [summed[(layout[k // 3], layout[k % 3])] for k in range(9)]
        assert table_kappa(table, raters) == kappa(items)
