"""Dataset cards: golden renderings, license and cost honesty, card merging, template lookup.

After a deliberate change to the template, rewrite the golden files and review their diff:
``python -c "from tests.test_card import write_goldens; write_goldens()"``.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
from huggingface_hub import DatasetCard

from hfpref.repo.card import REPO_PLACEHOLDER, merge_card, size_category, templates_dir
from hfpref.repo.card import render_card as render
from hfpref.repo.figure_data import figure_statistics
from hfpref.repo.provenance import Provenance

GOLDEN = Path(__file__).parent / "golden"
ROOT = Path(__file__).parent.parent

FULL: dict[str, Any] = {
    "hfpref_version": "0.1.0",
    "pretty_name": "Math preferences",
    "license": "apache-2.0",
    "tags": ["synthetic", "math"],
    "default_config": "dpo",
    "generation": {
        "models": [
            {"id": "deepseek/deepseek-r1", "weight": 2, "completions": 3200, "scored": 3190}
            | {"mean_score": 0.655, "score_histogram": [90, 110, 150, 200, 260, 330, 400, 480, 560, 610]}
            | {"prompt_tokens": 320000, "completion_tokens": 1900000, "cost_usd": 11.0},
            {"id": "openai/gpt-4o", "weight": 1, "completions": 1600, "scored": 1595}
            | {"mean_score": 0.52, "score_histogram": [100, 120, 140, 160, 180, 190, 190, 180, 170, 165]}
            | {"prompt_tokens": 160000, "completion_tokens": 500000, "cost_usd": None},
        ],
        "n": 4,
        "temperature": 0.8,
        "top_p": None,
        "max_tokens": 1024,
        "seed": 0,
        "system_prompt": "Think step by step.",
    },
    "judge": {
        "models": [{"id": "openai/gpt-4o"}],
        "mode": "pointwise",
        "prompt": "correctness",
        "swap": True,
        "scale": 10,
        "aggregate": "mean",
        "statistics": {
            "calls": 4815,
            "parse_failure_rate": 0.0125,
            "score_histogram": {"0.0-0.5": 1900, "0.5-1.0": 2885},
            "position_inconsistency_rate": None,
            "cost_usd": 1.2345678,
        },
        "totals": {"verdicts": 4815, "parse_failures": 60, "pairs": 0, "inconsistent_pairs": 0},
    },
    "calibration": {
        "labelled": "human-prefs.jsonl",
        "pairs": 200,
        "judge": {"models": ["openai/gpt-4o"], "mode": "pointwise", "prompt": "correctness", "scale": 10}
        | {"swap": True, "aggregate": "mean", "key": "0123456789abcdef"},
        "outcomes": {"agree": 150, "tie": 20, "disagree": 30, "unscored": 0},
        "human_agreement": {"hits": 150, "total": 200, "rate": 0.75, "low": 0.6857, "high": 0.8048},
        "first_position": None,
        "per_judge": [{"id": "openai/gpt-4o", "human_agreement": None, "first_position": None}],
        "kappa": None,
        "reliability": {
            "bins": [
                {"bin": "0.0-0.1", "count": 60, "mean_score": 0.05, "observed": 0.1},
                {"bin": "0.3-0.4", "count": 80, "mean_score": 0.35, "observed": 0.3},
                {"bin": "0.6-0.7", "count": 120, "mean_score": 0.65, "observed": 0.55},
                {"bin": "0.9-1.0", "count": 140, "mean_score": 0.95, "observed": 0.8},
            ],
            "ece": 0.1025,
        },
    },
    "curate": {
        "formats": ["dpo", "sft"],
        "strategy": "stratified",
        "min_margin": 0.1,
        "threshold": 0.7,
        "high": 0.7,
        "low": 0.3,
        "test_size": 0.1,
        "seed": 0,
        "style": "conversational",
        "step_threshold": 0.5,
        "reasoning": "inline",
    },
    "input": {
        "rows": 1200,
        "prompts": 1200,
        "completions": 4800,
        "max_completions": 4,
        "null_completions": 12,
        "null_scores": 3,
        "mean_score": 0.61234,
        "score_std": 0.2,
        "tied_rows": 40,
        "completions_with_reasoning": 3150,
    },
    "usage": {
        "prompt_tokens": 480000,
        "completion_tokens": 2400000,
        "truncated": 7,
        "failed": 12,
        "cost_usd": 12.5,
    },
    "configs": {
        "dpo": {
            "statistics": {
                "rows": 1000,
                "prompts": 1000,
                "mean_score_chosen": 0.9,
                "mean_score_rejected": 0.1,
                "mean_margin": 0.8,
                "dropped": {"all usable completions tie": 40, "no completion scored <= low": 160},
            },
            "splits": {"train": 900, "test": 100},
            "columns": [
                "prompt",
                "chosen",
                "rejected",
                "score_chosen",
                "score_rejected",
                "margin",
                "chosen_model",
            ],
        },
        "sft": {
            "statistics": {"rows": 2000, "prompts": 950, "mean_score": 0.85, "dropped": {}},
            "splits": {"train": 1800, "test": 200},
            "columns": ["prompt", "completion", "score", "model"],
        },
    },
}

# what curate records for the figures: computed from the sections above, and from dpo pairs for these two
FULL["figures"] = figure_statistics(Provenance.from_json(FULL)) | {
    "wins": {"models": ["deepseek/deepseek-r1", "openai/gpt-4o"], "counts": [[310, 420], [170, 100]]}
    | {"pairs": 1000, "unnamed": 0, "left_out_models": 0},
    "margins": {"edges": [i / 20 for i in range(21)], "pairs": 1000, "mean": 0.5, "median": 0.49}
    | {"counts": [0, 0, 10, 30, 50, 70, 90, 100, 100, 95, 90, 80, 70, 60, 50, 40, 30, 20, 10, 5]},
    "missing": {},
}

IMPORTED: dict[str, Any] = {
    "pretty_name": "HelpSteer3 preferences",
    "license": None,
    "summary": "HelpSteer3's human preference pairs, as DPO pairs.",
    "tags": [],
    "source": {"dataset": "nvidia/HelpSteer3", "conversion": "overall_preference sign → chosen/rejected"},
    "limitations": ["Preferences are from human annotators; see the source dataset's card."],
    "default_config": "dpo",
    "configs": {
        "dpo": {"splits": {"train": 38000, "test": 2000}, "columns": ["prompt", "chosen", "rejected"]}
    },
}


CASES = [("full", FULL, "alice/math-prefs"), ("imported", IMPORTED, None)]


def render_card(content: dict[str, Any], *, repo_id: str | None = None) -> DatasetCard:
    """The card of a folder whose ``hfpref.json`` holds ``content`` (read as hub and push read it)."""
    return render(Provenance.from_json(content), repo_id=repo_id)


def write_goldens() -> None:
    for name, provenance, repo_id in CASES:
        (GOLDEN / f"{name}_card.md").write_text(
            str(render_card(provenance, repo_id=repo_id)), encoding="utf-8"
        )


@pytest.mark.parametrize(("name", "provenance", "repo_id"), CASES)
def test_provenance_reads_back_as_written(name: str, provenance: dict[str, Any], repo_id: str | None) -> None:
    assert Provenance.from_json(provenance).to_json() == provenance
    older = {
        key: value for key, value in provenance.items() if key not in ("hfpref_version", "usage", "input")
    }
    read = Provenance.from_json(older)  # a file from before those keys: they are unknown, not an error
    assert (read.hfpref_version, read.usage, read.input) == (None, None, None)


@pytest.mark.parametrize(("name", "provenance", "repo_id"), CASES)
def test_golden_cards(name: str, provenance: dict[str, Any], repo_id: str | None) -> None:
    rendered = str(render_card(provenance, repo_id=repo_id))
    assert rendered == (GOLDEN / f"{name}_card.md").read_text(encoding="utf-8")


def test_unknown_cost_is_never_zero_and_unknown_sections_are_left_out() -> None:
    provenance = copy.deepcopy(FULL)
    provenance["usage"]["cost_usd"] = None
    text = render_card(provenance).text
    assert "- Generation cost: unknown" in text and "$0" not in text
    imported = render_card(IMPORTED).text
    for absent in ("### Generation", "### Judging", "### Curation", "tokens and cost", "Judge statistics"):
        assert absent not in imported


def test_imported_source_records_and_distributions() -> None:
    provenance = copy.deepcopy(IMPORTED)
    provenance["source"]["records in the source"] = 40355
    provenance["source_statistics"] = {
        "records": 40355,
        "used": 38459,
        "skipped": {"tie (overall_preference 0)": 1896},
        "distributions": {
            "overall_preference": {
                "count": 40355,
                "mean": -0.12345,
                "std": 1.5,
                "min": -3,
                "max": 3,
                "histogram": [["-3", 5000], ["0", 1896], ["3", 33459]],
            },
            "empty": {"count": 0},
        },
    }
    text = render_card(provenance).text
    assert "- records in the source: 40,355" in text
    assert (
        "Records read: 40,355; used: 38,459. Skipped, and why:\n\n- 1,896 × tie (overall_preference 0)"
        in text
    )
    assert (
        "`overall_preference`: 40,355 values, mean -0.123, standard deviation 1.500, min -3, max 3." in text
    )
    assert "| overall_preference | count |\n|---|---:|\n| -3 | 5,000 |\n| 0 | 1,896 |\n| 3 | 33,459 |" in text
    assert "`empty`" not in text
    assert "### Source records" not in render_card(IMPORTED).text


def test_sections_read_from_the_data_say_their_settings_were_not_recorded() -> None:
    provenance = copy.deepcopy(FULL)
    for name in ("generation", "judge"):
        provenance[name] = {"models": provenance[name]["models"], "inferred": True}
    provenance["judge"]["mode"] = "pairwise"
    text = render_card(provenance).text
    assert (
        "### Judging\n\nRead from the dataset's `judge` column: the judge prompt, rubric scale, position swap "
        "and sampling settings were not recorded.\n\n- Judges: `openai/gpt-4o`\n- `mode`: pairwise\n\n"
        in text
    )
    assert "### Generation\n\nRead from the dataset's columns (`completion_models`, `generation`)" in text
    assert "were not recorded" not in render_card(FULL).text


def test_the_reasoning_choice_is_in_the_curation_section() -> None:
    inline = render_card(FULL).text
    assert (
        "- Reasoning: inline (a completion with reasoning is written as "
        "`<think>\\n{reasoning}\\n</think>\\n\\n{completion}`; 3,150 completions had reasoning; "
        "the step configs carry none)\n" in inline
    )
    provenance = copy.deepcopy(FULL)
    provenance["curate"]["reasoning"] = "drop"
    assert "- Reasoning: dropped (the completions are written without the models' reasoning)\n" in (
        render_card(provenance).text
    )
    del provenance["curate"]["reasoning"]  # folders curated before the option: no line
    assert "Reasoning:" not in render_card(provenance).text


def test_no_license_claims_no_rights() -> None:
    card = render_card(IMPORTED)
    assert card.data.license == "other"
    assert "claim no rights" in card.text
    assert render_card(FULL).data.license == "apache-2.0"


def test_placeholder_repo_until_known() -> None:
    assert f'load_dataset("{REPO_PLACEHOLDER}", "dpo")' in render_card(IMPORTED).text
    assert 'load_dataset("alice/x", "dpo")' in render_card(IMPORTED, repo_id="alice/x").text


def test_size_categories() -> None:
    assert [size_category(n) for n in (0, 999, 1000, 99_999, 2_000_000)] == [
        "n<1K",
        "n<1K",
        "1K<n<10K",
        "10K<n<100K",
        "1M<n<10M",
    ]


REMOTE = """---
license: mit
language:
- en
my_key: kept
tags:
- mine
configs:
- config_name: extra
  data_files: extra/*.parquet
  default: true
- config_name: dpo
  data_files: old/*.parquet
---

# Someone's edited card
"""


@pytest.mark.parametrize("keep_remote_license", [True, False])
def test_merge_keeps_remote_keys_and_updates_ours(keep_remote_license: bool) -> None:
    ours = render_card(FULL)
    merged = merge_card(DatasetCard(REMOTE), ours, keep_remote_license=keep_remote_license)
    data = merged.data.to_dict()
    assert data["language"] == ["en"] and data["my_key"] == "kept"
    assert data["tags"] == [*ours.data.tags, "mine"]
    names = [(c["config_name"], c.get("default", False)) for c in data["configs"]]
    assert names == [("dpo", True), ("sft", False), ("extra", False)]  # ours replace dpo; one default
    assert data["configs"][0]["data_files"][0]["path"] == "dpo/train-*"
    assert data["license"] == ("mit" if keep_remote_license else "apache-2.0")
    assert merged.text == ours.text


def test_templates_found_in_the_source_tree() -> None:
    assert templates_dir() == ROOT / "cards"


def test_templates_found_in_an_installed_wheel(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "hatchling", "build", "-t", "wheel", "-d", str(tmp_path / "dist")],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    (wheel,) = (tmp_path / "dist").glob("hfpref-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(tmp_path / "site")
    code = (
        "import hfpref.repo.card as c; from hfpref.repo.provenance import Provenance as P; "
        "print(c.templates_dir()); "
        "print(c.render_card(P.from_json({'configs': {'dpo': {'splits': {'train': 1}}}})).data.license)"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, check=True, capture_output=True, text=True
    )
    assert out.stdout.split() == [str(tmp_path / "site" / "hfpref" / "cards"), "other"]
