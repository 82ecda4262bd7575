"""The card's figures: drawn into images/, linked from the card with their numbers, left out (and said so)
without data, byte-identical across renders, like the committed golden image, and reported again by
``hfpref report`` with the same numbers.

After a deliberate change to a figure, rewrite the golden image and look at it:
``python -c "from tests.test_figures import write_golden; write_golden()"``.
"""

from __future__ import annotations

import random
import re
import statistics
import struct
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from hfpref.repo.figure_data import FIGURES
from hfpref.repo.figures import draw
from hfpref.repo.measures import proportion
from hfpref.repo.provenance import read_provenance
from hfpref.stages.curate import curate
from tests.fake_openai import Behaviour, FakeOpenAI, fake_openai, ok
from tests.test_cli_stages import hfpref, judge, judge_input, read_jsonl, tag

__all__ = ["fake_openai"]  # the fixture

GOLDEN = Path(__file__).parent / "golden" / "win_matrix.png"
MODELS = {"m/strong": 0.75, "m/middle": 0.5, "m/weak": 0.25}
LINK = re.compile(r"!\[[^\]]*\]\((images/[^)]+)\)")
WINS = {
    "models": ["deepseek/deepseek-r1", "anthropic/claude-sonnet-4", "openai/gpt-4o-mini"],
    "counts": [[5, 30, 40], [10, 2, 25], [3, 8, 1]],
    "pairs": 124,
    "unnamed": 0,
    "left_out_models": 0,
}


def judged_rows(n: int = 60, seed: int = 0) -> list[dict[str, Any]]:
    """Rows as generate and a pairwise two-judge panel leave them: models, usage records, judge records."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        models = [rng.choice(sorted(MODELS)) for _ in range(3)]
        scores = [round(min(1.0, max(0.0, rng.gauss(MODELS[m], 0.2))), 2) for m in models]
        generation = [
            {"model": m, "finish_reason": "stop", "prompt_tokens": 10, "completion_tokens": 40 + k}
            | {"cost": 0.001 * (k + 1), "cached": False, "refusal": None, "error": None}
            for k, m in enumerate(models)
        ]
        record = {"mode": "pairwise", "models": ["j/1", "j/2"], "calls": 12, "verdicts": 12}
        record |= {"parse_failures": int(i % 10 == 0), "failed_calls": 0, "error": None, "pairs": 6}
        record |= {"inconsistent_pairs": i % 3, "agreement": round(rng.uniform(0.5, 1.0), 3), "cost": 0.002}
        rows.append(
            {
                "prompt": f"question {i}",
                "completions": [f"answer {i}.{k}" for k in range(3)],
                "scores": scores,
                "completion_models": models,
                "generation": generation,
                "judge": record,
            }
        )
    return rows


def links(card: str) -> list[str]:
    return LINK.findall(card)


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_the_card_links_each_figure_with_the_numbers_of_the_data(tmp_path: Path) -> None:
    rows = judged_rows()
    folder = tmp_path / "prefs"
    curate(rows, folder, formats="dpo,sft", test_size=0.2)
    card = (folder / "README.md").read_text()
    drawn = sorted(p.relative_to(folder).as_posix() for p in (folder / "images").iterdir())
    assert sorted(links(card)) == drawn and len(drawn) == 5  # all but the calibration
    for path in drawn:
        assert png_size(folder / path)[0] == 800
    assert f"- {FIGURES['calibration'].title}: the judge was not calibrated" in card
    for name in ("scores", "wins", "judge", "margins", "usage"):
        assert f"![{FIGURES[name].title}](images/{FIGURES[name].file})\n\n{FIGURES[name].caption}\n" in card

    # every number, computed here from the rows and the written pairs
    for model in MODELS:
        scores = [
            s for r in rows for m, s in zip(r["completion_models"], r["scores"], strict=True) if m == model
        ]
        assert (
            f"- `{model}`: {len(scores):,} scored completions, mean score {statistics.fmean(scores):.3f}"
            in card
        )
        tokens = [g for r in rows for g in r["generation"] if g["model"] == model]
        prompt, completion = (
            sum(g["prompt_tokens"] for g in tokens),
            sum(g["completion_tokens"] for g in tokens),
        )
        cost = sum(g["cost"] for g in tokens)
        assert (
            f"- `{model}`: {prompt:,} prompt and {completion:,} completion tokens, cost ${cost:,.4f}" in card
        )
    pairs = pq.read_table(sorted((folder / "dpo").glob("*.parquet"))).to_pylist()
    wins = Counter((p["chosen_model"], p["rejected_model"]) for p in pairs)
    for model in MODELS:
        won = sum(n for (c, r), n in wins.items() if c == model and r != model)
        lost = sum(n for (c, r), n in wins.items() if r == model and c != model)
        line = f"- `{model}`: chosen in {won:,} of the {won + lost:,} pairs against another model ({won / (won + lost):.3f})"
        assert line in card
    margins = [p["margin"] for p in pairs]
    line = f"- {len(pairs):,} pairs, mean margin {statistics.fmean(margins):.3f}, median {statistics.median(margins):.3f}"
    assert line in card
    inconsistent = proportion(sum(r["judge"]["inconsistent_pairs"] for r in rows), 6 * len(rows))
    assert inconsistent is not None and inconsistent["hits"] == 60
    line = f"- Inconsistent verdicts under swapped order: {inconsistent['rate']:.3f} (95% CI {inconsistent['low']:.3f}-{inconsistent['high']:.3f}, 60 of 360)"
    assert line in card
    agreement = statistics.fmean(r["judge"]["agreement"] for r in rows)
    assert f"- Agreement between panel judges (1 - mean score gap): {agreement:.3f} (95% CI " in card
    # these records, as an older hfpref wrote them, keep no first-position wins nor panel counts: the card says so
    assert "- First-position win rate: not measured: the judge records, written by an older hfpref," in card
    assert "- Kappa between the panel's judges: not measured: the judge records keep no counts" in card
    assert "(0.5 = no position bias): " not in card

    # hfpref report prints the same lines, and rewrites nothing but what it already was
    before = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    result = hfpref("report", folder)
    assert result.exit_code == 0, result.stderr
    printed = [line.strip() for line in result.stdout.splitlines()]
    section = card.split("## Figures")[1].split("Not drawn, for want of data:")[0]
    numbers = [line[2:] for line in section.splitlines() if line.startswith("- ")]
    assert len(numbers) >= 3 + 3 + 4 + 1 + 3 and all(line in printed for line in numbers)
    assert f"not drawn: {FIGURES['calibration'].title}: the judge was not calibrated" in result.stdout
    assert {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()} == before


def test_figures_without_data_are_left_out_and_the_card_says_why(tmp_path: Path) -> None:
    rows = [{"prompt": f"q{i}", "completions": ["a", "b"], "scores": [0.9, 0.2]} for i in range(6)]
    curate(rows, tmp_path / "prefs", formats="dpo", test_size=0)
    card = (tmp_path / "prefs" / "README.md").read_text()
    assert links(card) == ["images/margins.png"]
    assert [p.name for p in (tmp_path / "prefs" / "images").iterdir()] == ["margins.png"]
    for name in ("scores", "wins", "judge", "usage", "calibration"):
        assert f"- {FIGURES[name].title}: " in card.split("Not drawn, for want of data:")[1]
    curate(rows, tmp_path / "prefs", formats="sft", test_size=0)  # rewritten without dpo: no figure left
    assert not (tmp_path / "prefs" / "images").exists()
    assert "## Figures" in (tmp_path / "prefs" / "README.md").read_text()


def test_figures_are_byte_identical_across_renders_and_match_the_golden_image(tmp_path: Path) -> None:
    from matplotlib.testing.compare import compare_images

    first, second = tmp_path / "a.png", tmp_path / "b.png"
    draw("wins", WINS, first)
    draw("wins", WINS, second)
    assert first.read_bytes() == second.read_bytes()
    assert png_size(first) == (800, 350)
    assert compare_images(str(GOLDEN), str(first), tol=2) is None


def write_golden() -> None:
    draw("wins", WINS, GOLDEN)


def test_report_brings_an_older_folder_up_to_date(tmp_path: Path) -> None:
    from hfpref.repo.card import render_card
    from hfpref.repo.provenance import write_provenance

    folder = tmp_path / "prefs"
    curate(judged_rows(), folder, formats="dpo", test_size=0, repo_id="alice/prefs")
    current = (folder / "README.md").read_text()
    old = read_provenance(folder)
    assert old is not None and old.figures is not None
    old.figures = None  # as an hfpref before figures wrote it
    write_provenance(folder, old)
    render_card(old, repo_id="alice/prefs").save(folder / "README.md")
    for path in (folder / "images").iterdir():
        path.unlink()
    result = hfpref("report", folder)
    assert result.exit_code == 0, result.stderr
    assert (
        result.stdout.splitlines()[0]
        == f"{folder}: 5 figure(s) in {folder / 'images'}, linked from {folder / 'README.md'}"
    )
    assert (folder / "README.md").read_text() == current  # the repo id of its usage snippet kept
    assert len(list((folder / "images").iterdir())) == 5


def test_report_refuses_what_it_cannot_report(tmp_path: Path) -> None:
    assert "not a Hub dataset id" in hfpref("report", tmp_path / "nowhere").stderr
    result = hfpref("report", tmp_path)
    assert result.exit_code == 2 and "no hfpref.json with configs" in result.stderr
    assert "-o/--output is for a Hub dataset id" in hfpref("report", tmp_path, "-o", tmp_path / "x").stderr


def test_hfpref_and_its_help_do_not_load_matplotlib() -> None:
    code = (
        "import sys, hfpref, hfpref.cli\n"
        "from click.testing import CliRunner\n"
        "assert CliRunner().invoke(hfpref.cli.cli, ['--help']).exit_code == 0\n"
        "assert CliRunner().invoke(hfpref.cli.cli, ['report', '--help']).exit_code == 0\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('matplotlib', 'PIL')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize("name", sorted(FIGURES))
def test_every_figure_draws_from_statistics_as_curate_and_calibration_store_them(
    name: str, tmp_path: Path
) -> None:
    from tests.test_card import FULL

    stats = FULL["figures"]
    assert name in stats
    draw(name, stats[name], tmp_path / "figure.png")
    assert png_size(tmp_path / "figure.png")[0] == 800


def panel_run(fake: FakeOpenAI, tmp_path: Path, completions: list[list[str]]) -> tuple[str, list[str]]:
    """Judge rows of ``completions`` with the pairwise panel j/1, j/2 (both orders) against the fake
    server, curate them, and give the card and the lines ``hfpref report`` prints."""
    source = judge_input(tmp_path / "in.jsonl", completions)  # type: ignore[arg-type]
    panel = ("--judge-model", "j/2", "--mode", "pairwise")
    judged = judge(fake, source, tmp_path / "judged.jsonl", *panel)
    assert judged.exit_code == 0, judged.stderr
    folder = tmp_path / "prefs"
    curate(read_jsonl(tmp_path / "judged.jsonl"), folder, formats="dpo", test_size=0)
    report = hfpref("report", folder)
    assert report.exit_code == 0, report.stderr
    return (folder / "README.md").read_text(), [line.strip() for line in report.stdout.splitlines()]


def test_a_panel_biased_to_the_first_position_shows_it_in_the_card_from_its_own_records(
    fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    """Both judges say A (the completion shown first) 80% of the time, whatever the completions."""
    said: dict[tuple[str, str], str] = {}

    def biased(body: dict[str, Any]) -> Behaviour:
        key = (body["model"], body["messages"][0]["content"])
        said.setdefault(key, "A" if random.Random(repr(key)).random() < 0.8 else "B")
        return ok(f"Final verdict: [[{said[key]}]]")

    fake_openai.responder = biased
    card, printed = panel_run(
        fake_openai, tmp_path, [[f"answer {i}.{k}" for k in range(3)] for i in range(30)]
    )
    # 30 rows x 3 pairs x 2 orders x 2 judges, every verdict decisive
    assert len(said) == 360
    hits = sum(verdict == "A" for verdict in said.values())
    first = proportion(hits, 360)
    assert first is not None and first["low"] < 0.8 < first["high"] and first["low"] > 0.5  # bias shown
    line = (
        f"First-position win rate (0.5 = no position bias): {first['rate']:.3f} "
        f"(95% CI {first['low']:.3f}-{first['high']:.3f}, {hits} of 360)"
    )
    assert f"- {line}\n" in card and line in printed
    assert "First-position win rate: not measured" not in card


def test_the_kappa_of_a_panel_from_its_own_records_is_the_one_computed_by_hand(
    fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    """j/1 always prefers the good completion; j/2 prefers the bad one on rows 0-1, calls row 7 a tie
    and prefers the good one elsewhere, in both orders (no position bias)."""

    def verdict(body: dict[str, Any]) -> Behaviour:
        content = body["messages"][0]["content"]
        a = tag(content, "completion_a")
        row = int(a.split()[1])
        if body["model"] == "j/2" and row == 7:
            return ok("Final verdict: [[C]]")
        wants_good = body["model"] == "j/1" or row >= 2
        return ok(f"Final verdict: [[{'A' if a.startswith('good') == wants_good else 'B'}]]")

    fake_openai.responder = verdict
    rows = [[f"good {i}", f"bad {i}"] if i < 4 else [f"bad {i}", f"good {i}"] for i in range(8)]
    card, printed = panel_run(fake_openai, tmp_path, rows)
    records = [r["judge"] for r in read_jsonl(tmp_path / "judged.jsonl")]
    # per row, the (j/1, j/2) outcome counts over (first wins, tie, second wins)²: row 0 (first, second),
    # row 7 (second, tie) with j/2's two ties not decisive
    assert records[0]["panel_table"] == [0, 0, 1, 0, 0, 0, 0, 0, 0]
    assert records[7]["panel_table"] == [0, 0, 0, 0, 0, 0, 0, 1, 0]
    assert [(r["first_position_wins"], r["decisive_verdicts"]) for r in records] == [(2, 4)] * 7 + [(1, 2)]
    # each judge's outcome of each row's pair (the first completion wins, tie, the second wins):
    # j/1: first on rows 0-3, second on 4-7; j/2: second on 0-1, first on 2-3, second on 4-6, tie on 7.
    # They agree on 5 of 8; by chance on (4/8)(2/8) + (4/8)(5/8) = 28/64
    expected = (5 / 8 - 28 / 64) / (1 - 28 / 64)
    assert expected == pytest.approx(1 / 3)
    line = f"Cohen's kappa between the panel's judges: {expected:.3f} (8 pairs)"
    assert f"- {line}\n" in card and line in printed
    # every consistent verdict pair gives the first position one win of two; row 7's ties are not decisive
    first = proportion(15, 30)
    assert first is not None
    line = f"First-position win rate (0.5 = no position bias): 0.500 (95% CI {first['low']:.3f}-{first['high']:.3f}, 15 of 30)"
    assert f"- {line}\n" in card and line in printed
