"""API keys and Hub tokens never reach a file or an output stream (issue #2 item 7, issue #8 part 5).

The whole pipeline runs as users run it, in subprocesses: ``hfpref run`` against the fake OpenAI server
(which requires the key), then ``hfpref push`` to the Hub emulator (which requires the token), and
``hfpref generate``/``judge`` with ``--api-key-env``. The provider is hostile: it echoes the key in
error bodies (a 500 that is retried and then kept as the completion's error, an OpenRouter error whose
metadata quotes part of the key, a 401 that stops the run). Afterwards every file under the test's folder
(inputs, outputs, the dataset folder with its card and ``hfpref.json``, ``$HFPREF_CACHE`` with its SQLite
files, ``$HF_HOME`` with the datasets cache, the Hub's stored blobs) is read as bytes, with stdout and
stderr of every command, and none may hold the key, the token, or any 12 characters of either.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pyarrow.parquet as pq
import pytest

from tests.fake_openai import Behaviour, FakeOpenAI, ok, openrouter_error, status
from tests.hub_emulator import HubEmulator

HFPREF = str(Path(sys.executable).parent / "hfpref")
KEY = "sk-hfpref-SECRET-0b7d4e19c2a85f36"
OTHER_KEY = "sk-hfpref-SECRET-judge-77e1c04b9a"
HF_TOKEN = "hf_SECRET_hub_token_5e8a1c0d93f2"
WRONG_HF_TOKEN = "hf_SECRET_wrong_token_0a9b8c7d"
SECRETS = (KEY, OTHER_KEY, HF_TOKEN, WRONG_HF_TOKEN)
#: Every 12-character piece of every secret (what hfpref.errors.redact masks), and the marker itself.
PIECES = sorted({s[i : i + 12].encode() for s in SECRETS for i in range(len(s) - 11)} | {b"SECRET"})


class Session:
    """One user's machine: a home for the caches, the environment, and everything the commands printed."""

    def __init__(self, root: Path, fake: FakeOpenAI, hub: HubEmulator) -> None:
        self.root = root
        self.fake = fake
        self.hub = hub
        self.streams: list[str] = []
        self.env = {
            **os.environ,
            **hub.env(HF_TOKEN),
            "HFPREF_CACHE": str(root / "hfpref-cache"),
            "HF_HOME": str(root / "hf-home"),
            "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
        }

    def hfpref(self, *args: str | Path, **env: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [HFPREF, *map(str, args)],
            cwd=self.root,
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=180,
        )
        self.streams += [done.stdout, done.stderr]
        return done

    def leaks(self) -> list[str]:
        """Where any piece of a secret shows up: file paths, or 'stream N'."""
        found = [
            str(path.relative_to(self.root))
            for path in sorted(self.root.rglob("*"))
            if path.is_file() and any(piece in content for content in _contents(path) for piece in PIECES)
        ]
        found += [
            f"stream {i}" for i, text in enumerate(self.streams) if any(p.decode() in text for p in PIECES)
        ]
        return found

    def files_containing(self, needle: bytes) -> list[Path]:
        return [p for p in self.root.rglob("*") if p.is_file() and needle in p.read_bytes()]


def _contents(path: Path) -> Iterator[bytes]:
    """A file's bytes, and for parquet (compressed: a string need not appear as bytes) its rows as JSON."""
    data = path.read_bytes()
    yield data
    if data.startswith(b"PAR1"):  # the dataset folder's shards, and the same pushed as Hub blobs
        yield orjson.dumps(pq.read_table(path).to_pylist(), default=str)


@pytest.fixture
def session(tmp_path: Path) -> Iterator[Session]:
    with FakeOpenAI(api_key=KEY) as fake, HubEmulator(tmp_path / "hub-storage", tokens={HF_TOKEN}) as hub:
        yield Session(tmp_path, fake, hub)


def hostile(body: dict[str, Any]) -> Behaviour | None:
    """A provider that echoes the key in error bodies; the judge model scores by a hash of the text."""
    text = str(body["messages"])
    if body["model"] == "m/judge":
        return ok(f"Fine.\nScore: {zlib.crc32(text.encode()) % 9 + 1}")
    if "question 3" in text:
        return status(500, f"upstream rejected the request made with key {KEY}")
    if "question 5" in text:
        return openrouter_error(
            502, "Provider returned error", metadata={"raw": f"bad credentials {KEY[:24]}"}
        )
    return None


def write_inputs(root: Path, url: str, rows: int = 8) -> None:
    (root / "prompts.jsonl").write_bytes(
        b"".join(orjson.dumps({"id": i, "prompt": f"question {i}"}) + b"\n" for i in range(rows))
    )
    (root / "run.toml").write_text(
        f'[provider]\nbase_url = "{url}"\nmax_retries = 1\n'
        '[generate]\nn = 3\nmodels = ["m/gen"]\n[judge]\nmodels = ["m/judge"]\n'
        '[curate]\ntest_size = 0.25\n[hub]\nrepo_id = "user/prefs"\n'
    )


def test_run_and_push_write_no_secret_anywhere(session: Session) -> None:
    session.fake.responder = hostile
    write_inputs(session.root, session.fake.base_url)
    run = session.hfpref("run", "prompts.jsonl", "-o", "my-prefs", "-c", "run.toml", HFPREF_API_KEY=KEY)
    assert run.returncode == 0, run.stderr
    push = session.hfpref("push", "my-prefs", "user/prefs")
    assert push.returncode == 0, push.stderr
    folder = session.root / "my-prefs"
    assert (folder / "README.md").is_file()
    assert session.hub.read("user/prefs", "hfpref.json") == (folder / "hfpref.json").read_bytes()
    # The key was used (every request carried it) and echoed back (500, OpenRouter 502 with metadata)...
    assert {r.headers["Authorization"] for r in session.fake.received} == {f"Bearer {KEY}"}
    assert session.fake.by_status[500] == 2 and session.fake.by_kind["raw"] >= 4
    # ...and what reached the files is the redacted error, kept with the failed completion.
    assert session.files_containing(b"upstream rejected the request made with key ***")
    assert session.files_containing(b"bad credentials ******")
    assert list((session.root / "hfpref-cache").glob("*.sqlite")), "the request cache was written"
    assert session.leaks() == []


def test_failures_echoing_secrets_print_them_redacted(session: Session) -> None:
    """A 401 that quotes the key stops the run; a wrong Hub token stops the push; neither prints it."""
    write_inputs(session.root, session.fake.base_url)
    session.fake.script(status(401, f"Incorrect API key provided: {KEY}. You can find your API key at ..."))
    run = session.hfpref("run", "prompts.jsonl", "-o", "my-prefs", "-c", "run.toml", HFPREF_API_KEY=KEY)
    assert run.returncode == 1
    assert run.stderr.splitlines()[-1] == (  # after a summary line when other answers came first
        "hfpref: error: m/gen: HTTP 401: Incorrect API key provided: ***. You can find your API key at ... "
        "(check the API key in the variable named by api_key_env)"
    )
    assert not (session.root / "my-prefs").exists()

    curated = session.root / "scored.jsonl"
    curated.write_bytes(
        orjson.dumps({"prompt": "q", "completions": ["a", "b"], "scores": [0.9, 0.1]}) + b"\n"
    )
    assert session.hfpref("curate", curated, "-o", "prefs", "--test-size", "0").returncode == 0
    push = session.hfpref("push", "prefs", "user/prefs", HF_TOKEN=WRONG_HF_TOKEN)
    assert push.returncode == 1
    assert "user/prefs: the Hub rejected the token (401)" in push.stderr
    assert session.leaks() == []


def test_generate_and_judge_with_api_key_env_write_no_secret(session: Session) -> None:
    """``--api-key-env`` names the variable: the key it holds is sent, cached nowhere, printed nowhere."""
    session.fake.api_key = OTHER_KEY
    write_inputs(session.root, session.fake.base_url, rows=4)
    url = session.fake.base_url
    generated = session.hfpref(
        "generate", "prompts.jsonl", "-o", "generated.jsonl", "--model", "m/gen", "-n", "2",
        "--base-url", url, "--api-key-env", "MY_PROVIDER_KEY", MY_PROVIDER_KEY=OTHER_KEY,
    )  # fmt: skip
    assert generated.returncode == 0, generated.stderr
    session.fake.responder = hostile
    judged = session.hfpref(
        "judge", "generated.jsonl", "-o", "judged.parquet", "--judge-model", "m/judge",
        "--base-url", url, "--api-key-env", "MY_PROVIDER_KEY", MY_PROVIDER_KEY=OTHER_KEY,
    )  # fmt: skip
    assert judged.returncode == 0, judged.stderr
    assert {r.headers["Authorization"] for r in session.fake.received} == {f"Bearer {OTHER_KEY}"}

    session.fake.script(status(403, f"key {OTHER_KEY} has no access to m/judge"))
    denied = session.hfpref(
        "judge", "generated.jsonl", "-o", "denied.jsonl", "--judge-model", "m/judge", "--no-cache",
        "--base-url", url, "--api-key-env", "MY_PROVIDER_KEY", MY_PROVIDER_KEY=OTHER_KEY,
    )  # fmt: skip
    assert denied.returncode == 1
    assert "m/judge: HTTP 403: key *** has no access to m/judge" in denied.stderr
    assert not (session.root / "denied.jsonl").exists()
    assert session.leaks() == []
