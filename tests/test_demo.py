"""The README's demo (``hfpref run examples/problems.jsonl -c examples/local.toml``) end to end.

The generator is the tiny local model (``HFPREF_LOCAL_MODEL``, as CI runs the demo). A random model
cannot judge (its answers never parse, so every score would be null and curate would write nothing),
so the judge is the fake OpenAI server answering ``Score: N`` with N derived from the judged text,
prompted with ``prompts/examples/judge_math.txt``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any

import datasets

from tests.fake_openai import Behaviour, FakeOpenAI, ok
from tests.tiny_model import tiny_model

__all__ = ["tiny_model"]

ROOT = Path(__file__).resolve().parent.parent
HFPREF_RUN = [str(Path(sys.executable).parent / "hfpref"), "run"]


def _score(body: dict[str, Any]) -> Behaviour:
    text = str(body["messages"][-1]["content"])
    return ok(f"The answer is judged.\nScore: {zlib.crc32(text.encode()) % 9 + 1}")


def test_demo_run_writes_a_loadable_folder(tiny_model: Path, tmp_path: Path) -> None:
    folder = tmp_path / "my-prefs"
    with FakeOpenAI() as fake:
        fake.responder = _score
        config = tmp_path / "demo.toml"
        config.write_text(
            (ROOT / "examples" / "local.toml")
            .read_text()
            .replace('prompt = "correctness"', f'prompt = "{ROOT / "prompts/examples/judge_math.txt"}"')
            + f'\n[[judge.models]]\nid = "fake/judge"\nbase_url = "{fake.base_url}"\n'
        )
        env = {**os.environ, "HFPREF_LOCAL_MODEL": str(tiny_model)}
        result = subprocess.run(
            [*HFPREF_RUN, "examples/problems.jsonl", "-o", str(folder), "-c", str(config)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        assert fake.requests >= 12 * 2  # every completion was judged

    dpo = datasets.load_dataset(str(folder), "dpo")
    rows = dpo["train"]
    assert len(rows) > 0
    for row in rows:
        assert row["score_chosen"] > row["score_rejected"]
        assert row["chosen_model"] == row["rejected_model"] == f"local:{tiny_model}"
    grpo = datasets.load_dataset(str(folder), "grpo")["train"]
    assert len(grpo) == 12
    assert (folder / "README.md").is_file() and (folder / "hfpref.json").is_file()
