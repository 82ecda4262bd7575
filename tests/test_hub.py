"""push(): a round trip through the real huggingface_hub and datasets clients against a loopback Hub."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from hfpref.errors import HubError, InputError
from hfpref.repo.hub import push
from hfpref.stages.curate import curate
from tests.fake_openai import FakeOpenAI, fake_openai
from tests.hub_emulator import HubEmulator
from tests.test_calibrate import LABELLED, panel_judge
from tests.test_cli_stages import hfpref, prompts
from tests.test_curate import messages, row

__all__ = ["fake_openai"]  # the fixture

TOKEN = "hf_emulator_good_token"
ROOT = Path(__file__).parent.parent


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubEmulator]:
    with HubEmulator(tmp_path_factory.mktemp("hub"), tokens={TOKEN}) as emulator:
        yield emulator


def scored_rows(n: int) -> list[dict[str, Any]]:
    return [
        row(messages(f"question {i}"), [f"good {i}", f"bad {i}", None], [0.9, 0.2, None]) for i in range(n)
    ]


def client(hub: HubEmulator, code: str, *, token: str = TOKEN) -> dict[str, Any]:
    """Run ``code`` in a fresh Python talking to the emulator; it prints one JSON value as its last line."""
    env = {**os.environ, **hub.env(token), "HF_DATASETS_DISABLE_PROGRESS_BARS": "1"}
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


ROUND_TRIP = """
    import json
    from datasets import load_dataset
    import hfpref, hfpref.stages.io
    folder, repo = {folder!r}, {repo!r}
    url = hfpref.push(folder, repo)
    same = {{}}
    for config in {configs!r}:
        remote, local = load_dataset(repo, config), load_dataset(folder, config)
        same[config] = {{split: remote[split].to_list() == local[split].to_list() for split in local}}
        same[config]["splits"] = sorted(remote) == sorted(local)
    local_default = load_dataset(folder, "dpo", split="train").to_list()
    same["default"] = load_dataset(repo, split="train").to_list() == local_default
    same["load_rows"] = hfpref.stages.io.load_rows(repo).to_list() == local_default  # a Hub id as INPUT
    print(json.dumps({{"url": url, "same": same}}))
"""


def card_yaml(text: str) -> dict[str, Any]:
    return yaml.safe_load(text.split("---")[1])


def test_push_then_load_gives_the_same_data_and_keeps_card_edits(hub: HubEmulator, tmp_path: Path) -> None:
    folder = tmp_path / "prefs"
    curate(scored_rows(20), folder, formats="dpo,kto", test_size=0.2)
    result = client(hub, ROUND_TRIP.format(folder=str(folder), repo="user/prefs", configs=["dpo", "kto"]))
    assert result["url"].endswith("/datasets/user/prefs")
    assert result["same"] == {
        "dpo": {"train": True, "test": True, "splits": True},
        "kto": {"train": True, "test": True, "splits": True},
        "default": True,
        "load_rows": True,
    }
    card = hub.read("user/prefs", "README.md").decode()
    assert 'load_dataset("user/prefs", "dpo")' in card  # the placeholder became the repo id

    # Someone edits the card on the Hub; the folder is then re-curated without a test split.
    meta = card_yaml(card)
    meta.update(language=["en"], my_note="keep me", license="mit")
    hub.write("user/prefs", "README.md", f"---\n{yaml.safe_dump(meta)}---\n# edited\n".encode())
    curate(scored_rows(12), folder, formats="dpo,kto", test_size=0)
    result = client(hub, ROUND_TRIP.format(folder=str(folder), repo="user/prefs", configs=["dpo", "kto"]))
    assert result["same"]["dpo"] == {"train": True, "splits": True}

    card = hub.read("user/prefs", "README.md").decode()
    merged = card_yaml(card)
    assert merged["my_note"] == "keep me" and merged["language"] == ["en"]
    assert merged["license"] == "mit" and "`mit`." in card and "claim no rights" not in card
    assert [c["config_name"] for c in merged["configs"]] == ["dpo", "kto"]
    assert [s["split"] for s in merged["configs"][0]["data_files"]] == ["train"]
    files = hub.repos[("datasets", "user/prefs")].resolve("main").files  # type: ignore[union-attr]
    assert not any(path.startswith("dpo/test-") for path in files)  # stale shards are deleted
    assert hub.unhandled == []


def test_push_to_a_branch(hub: HubEmulator, tmp_path: Path) -> None:
    curate(scored_rows(6), tmp_path / "prefs", formats="dpo", test_size=0)
    code = f"""
        import json, hfpref
        print(json.dumps(hfpref.push({str(tmp_path / "prefs")!r}, "user/branched", revision="v1", private=True)))
    """
    assert client(hub, code).endswith("/datasets/user/branched/tree/v1")
    repo = hub.repos[("datasets", "user/branched")]
    assert repo.private
    assert "dpo/train-00000-of-00001.parquet" in repo.resolve("v1").files  # type: ignore[union-attr]
    assert "README.md" not in repo.resolve("main").files  # type: ignore[union-attr]


def hfpref_cli(hub: HubEmulator, *args: str, token: str | None = TOKEN) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **hub.env(token or "")}
    if token is None:
        del env["HF_TOKEN"]
    cli = [sys.executable, "-c", "from hfpref.cli import main; main()", *args]
    return subprocess.run(cli, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    ("repo", "token", "message"),
    [
        ("user/denied", "hf_wrong", "user/denied: the Hub rejected the token (401); run `hf auth login`"),
        ("someone-else/prefs", TOKEN, "someone-else/prefs: no write access (403"),
        ("user/prefs", None, "not logged in to the Hugging Face Hub: run `hf auth login` or set HF_TOKEN"),
    ],
)
def test_push_errors_are_one_line(
    hub: HubEmulator, tmp_path: Path, repo: str, token: str | None, message: str
) -> None:
    curate(scored_rows(4), tmp_path / "prefs", formats="dpo", test_size=0)
    done = hfpref_cli(hub, "push", str(tmp_path / "prefs"), repo, token=token)
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("hfpref: error: "), done.stderr
    assert message in done.stderr
    if token:
        assert token not in done.stderr


def test_push_checks_repo_id_and_folder_before_the_network(tmp_path: Path) -> None:
    with pytest.raises(HubError, match="invalid repo id 'a/b/c': expected NAMESPACE/NAME"):
        push(tmp_path, "a/b/c")
    with pytest.raises(HubError, match="invalid repo id 'no-namespace'"):
        push(tmp_path, "no-namespace")
    with pytest.raises(InputError, match=r"no README\.md"):
        push(tmp_path, "user/prefs")


def test_push_without_token_says_how_to_log_in(tmp_path: Path) -> None:
    curate(scored_rows(4), tmp_path / "prefs", formats="dpo", test_size=0)
    with pytest.raises(HubError, match="hf auth login"):
        push(tmp_path / "prefs", "user/prefs")


def test_rows_to_and_from_the_hub(hub: HubEmulator) -> None:
    code = """
        import json
        from datasets import Dataset
        from hfpref.stages.io import load_rows, save_rows
        rows = [{"prompt": "q", "completions": ["a", None]}]
        written = save_rows(Dataset.from_list(rows), "hf://datasets/user/rows")
        print(json.dumps([written, load_rows("user/rows").to_list() == rows, load_rows("hf://datasets/user/rows").num_rows]))
    """
    assert client(hub, code) == ["user/rows", True, 1]


def test_a_run_with_a_calibrated_pairwise_panel_pushes_its_figures_and_reports_them_again(
    hub: HubEmulator, fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    """The issue's end to end: calibrate a pairwise two-judge panel, run, push, report from the Hub."""
    fake_openai.responder = panel_judge
    fake_openai.cost_per_token = 1e-6
    config = tmp_path / "hfpref.toml"
    config.write_text(
        f'[provider]\nbase_url = "{fake_openai.base_url}"\n[generate]\nn = 3\nmodels = ["m/a", "m/b"]\n'
        '[judge]\nmodels = ["j/1", "j/2"]\nmode = "pairwise"\n[curate]\nformats = ["dpo", "sft"]\n'
    )
    calibrated = hfpref("judge", "--calibrate", LABELLED, "-c", config)
    assert calibrated.exit_code == 0, calibrated.stderr
    folder = tmp_path / "prefs"
    ran = hfpref("run", prompts(tmp_path / "in.jsonl", 16), "-o", folder, "-c", config)
    assert ran.exit_code == 0, ran.stderr
    card = (folder / "README.md").read_text()
    linked = re.findall(r"!\[[^\]]*\]\((images/[^)]+\.png)\)", card)
    assert len(linked) == 6 and all((folder / path).is_file() for path in linked)  # every figure has data
    assert (
        "- Calibration: first-position win rate (0.5 = no position bias): 0.625 (95% CI 0.525-0.715, 60 of 96)"
        in card
    )
    assert "- Calibration: Cohen's kappa between the panel's judges: 0.200 (24 pairs)" in card
    assert "- Inconsistent verdicts under swapped order: " in card
    # and this dataset's own judge records, beside the calibration
    assert "- First-position win rate (0.5 = no position bias): " in card
    assert "- Cohen's kappa between the panel's judges: " in card

    assert hfpref_cli(hub, "push", str(folder), "user/figures").returncode == 0
    files = hub.repos[("datasets", "user/figures")].resolve("main").files  # type: ignore[union-attr]
    assert set(linked) <= set(files)
    for path in linked:
        assert hub.read("user/figures", path) == (folder / path).read_bytes()

    local = hfpref("report", folder)
    remote = hfpref_cli(hub, "report", "user/figures", "-o", str(tmp_path / "copy"))
    assert local.exit_code == 0 and remote.returncode == 0, remote.stderr
    assert remote.stdout.splitlines()[1:] == local.stdout.splitlines()[1:]  # the same numbers
    copy = tmp_path / "copy"
    assert sorted(p.name for p in (copy / "images").iterdir()) == sorted(Path(p).name for p in linked)
    assert (copy / "README.md").read_text() == hub.read("user/figures", "README.md").decode()
    assert hub.unhandled == []
