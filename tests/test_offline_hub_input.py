"""A Hub dataset id as INPUT that cannot be loaded: one line on stderr, never a traceback.

huggingface_hub and datasets read ``HF_ENDPOINT`` and ``HF_HUB_OFFLINE`` when they are imported, so each
case runs the ``hfpref`` console script in a subprocess with its own environment and an empty ``HF_HOME``
(nothing cached). Exit codes: 1 when the Hub cannot be reached (a failure: the same command may work
later), 2 when the Hub answers that there is no such dataset to read (a wrong argument, like a missing
local file).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.hub_emulator import HubEmulator

HFPREF = str(Path(sys.executable).parent / "hfpref")
REPO = "someone/prefs-data"
# An unreachable endpoint costs huggingface_hub's five retries with backoff (1+2+4+8+8 s) before
# datasets gives up; no setting shortens them.
RUN_TIMEOUT_S = 120


def _closed_port() -> int:
    """A loopback port nothing listens on: connections to it are refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(home: Path, **hub: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k
        not in ("HF_ENDPOINT", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_TOKEN")
    }
    return {
        **env,
        "HF_HOME": str(home),  # an empty cache: nothing to fall back on
        "HF_HUB_ETAG_TIMEOUT": "5",
        "HF_HUB_DOWNLOAD_TIMEOUT": "5",
        "HF_HUB_DISABLE_UPDATE_CHECK": "1",
        **hub,
    }


def _hfpref(env: dict[str, str], *args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    start = time.monotonic()
    done = subprocess.run([HFPREF, *args], env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    return done, time.monotonic() - start


def _one_line(stderr: str) -> str:
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr[-3000:]
    assert "Traceback" not in stderr
    return lines[0]


def test_unreachable_hub_is_one_line_and_exit_1(tmp_path: Path) -> None:
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    env = _env(tmp_path / "hf", HF_ENDPOINT=endpoint, HF_HUB_OFFLINE="0")
    out = tmp_path / "out"
    done, seconds = _hfpref(env, "curate", REPO, "-o", str(out))
    line = _one_line(done.stderr)
    assert done.returncode == 1, done.stderr
    assert line == (
        f"hfpref: error: cannot load dataset '{REPO}' from the Hub: no connection to {endpoint}; "
        "pass a local file, or check the network and HF_ENDPOINT"
    )
    assert not out.exists()
    assert seconds < 60  # the retries, not a hang


@pytest.mark.parametrize(
    "command",
    [
        ["curate", f"hf://datasets/{REPO}", "-o", "{out}"],
        ["generate", REPO, "-o", "{out}.jsonl", "--model", "a/model", "--base-url", "http://127.0.0.1:1/v1"],
        [
            "judge",
            REPO,
            "-o",
            "{out}.jsonl",
            "--judge-model",
            "a/model",
            "--base-url",
            "http://127.0.0.1:1/v1",
        ],
    ],
    ids=["curate-hf-url", "generate", "judge"],
)
def test_offline_mode_is_one_line_and_exit_1(tmp_path: Path, command: list[str]) -> None:
    env = _env(tmp_path / "hf", HF_HUB_OFFLINE="1")
    out = tmp_path / "out"
    done, _ = _hfpref(env, *(arg.format(out=out) for arg in command))
    line = _one_line(done.stderr)
    assert done.returncode == 1, done.stderr
    assert line == (
        f"hfpref: error: cannot load dataset '{REPO}' from the Hub: HF_HUB_OFFLINE is set and it is not "
        "in the local cache; pass a local file, or unset HF_HUB_OFFLINE"
    )
    assert not any(tmp_path.glob("out*"))


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[HubEmulator]:
    with HubEmulator(tmp_path / "hub") as emulator:
        card_only = tmp_path / "card-only"
        card_only.mkdir()
        (card_only / "README.md").write_text("---\nlicense: mit\n---\n# No data here\n")
        emulator.add_folder("user/card-only", card_only)
        yield emulator


def test_missing_hub_dataset_is_one_line_and_exit_2(tmp_path: Path, hub: HubEmulator) -> None:
    env = _env(tmp_path / "hf", **hub.env())
    done, _ = _hfpref(env, "curate", "user/no-such-data", "-o", str(tmp_path / "out"))
    line = _one_line(done.stderr)
    assert done.returncode == 2, done.stderr
    assert line == (
        "hfpref: error: user/no-such-data: no such file or folder, and no Hub dataset user/no-such-data "
        "(or no access)"
    )


def test_hub_repo_without_data_is_one_line_and_exit_2(tmp_path: Path, hub: HubEmulator) -> None:
    env = _env(tmp_path / "hf", **hub.env())
    done, _ = _hfpref(env, "curate", "user/card-only", "-o", str(tmp_path / "out"))
    line = _one_line(done.stderr)
    assert done.returncode == 2, done.stderr
    assert line == (
        "hfpref: error: cannot load dataset 'user/card-only' from the Hub: the repo holds no data files "
        "that datasets can read"
    )
