"""What the reliability scripts (soak, kill_resume, scale) and tests/test_reliability.py share.

Inputs and configs for ``hfpref run`` against the fake server (tests/fake_openai.py), the ``hfpref``
command itself, and a comparison of two dataset folders that says exactly what differs.
"""

from __future__ import annotations

import difflib
import os
import shutil
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import orjson

GEN_MODEL = "fake/gen"
JUDGE_MODEL = "fake/judge"


def write_prompts(path: Path, count: int) -> Path:
    """A JSONL file of ``count`` rows ``{"id": i, "prompt": "question i ..."}`` (distinct prompts)."""
    with path.open("wb") as fh:
        for start in range(0, count, 10_000):
            fh.write(
                b"".join(
                    orjson.dumps({"id": i, "prompt": f"question {i}: what is {i} plus {i}?"}) + b"\n"
                    for i in range(start, min(count, start + 10_000))
                )
            )
    return path


def write_config(
    path: Path,
    base_url: str,
    *,
    n: int = 4,
    concurrency: int = 16,
    timeout_s: float = 30.0,
    max_retries: int = 8,
    formats: tuple[str, ...] = ("dpo", "sft", "kto", "grpo"),
) -> Path:
    """An ``hfpref.toml``: ``n`` completions from GEN_MODEL, pointwise scores from JUDGE_MODEL."""
    path.write_text(
        f"""[provider]
base_url = "{base_url}"
timeout_s = {timeout_s}
max_retries = {max_retries}

[generate]
n = {n}
concurrency = {concurrency}
seed = 0
max_tokens = 64

[[generate.models]]
id = "{GEN_MODEL}"

[judge]
mode = "pointwise"
concurrency = {concurrency}
max_tokens = 16

[[judge.models]]
id = "{JUDGE_MODEL}"

[curate]
formats = {list(formats)!r}
seed = 0
""",
        encoding="utf-8",
    )
    return path


def hfpref_command(*args: str) -> list[str]:
    """``hfpref ARGS`` with the console script of this interpreter's environment."""
    script = shutil.which("hfpref", path=str(Path(sys.executable).parent))
    if script is None:
        return [sys.executable, "-c", "from hfpref.cli import main; main()", *args]
    return [script, *args]


def hfpref_env(cache_dir: Path) -> dict[str, str]:
    """This process's environment with ``HFPREF_CACHE`` set and no progress-bar noise from the Hub."""
    return {**os.environ, "HFPREF_CACHE": str(cache_dir), "HF_HUB_DISABLE_TELEMETRY": "1"}


def _files(folder: Path) -> dict[str, Path]:
    return {p.relative_to(folder).as_posix(): p for p in sorted(folder.rglob("*")) if p.is_file()}


def _json_paths(a: Any, b: Any, where: str = "") -> Iterator[str]:
    """Key paths at which two JSON values differ."""
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        for key in sorted(set(a) | set(b)):
            if key not in a or key not in b:
                yield f"{where}.{key} (only in {'second' if key not in a else 'first'})"
            else:
                yield from _json_paths(a[key], b[key], f"{where}.{key}")
    elif a != b:
        yield f"{where}: {a!r:.60} != {b!r:.60}"


def compare_folders(first: Path, second: Path) -> list[str]:
    """What differs between two dataset folders: files, parquet rows and schema, provenance keys, card lines.

    Parquet shards are compared by content (schema and rows, in order), so two writes of the same
    table compare equal even if an encoder made different bytes; an empty list means the same dataset.
    """
    import pyarrow.parquet as pq

    files_a, files_b = _files(first), _files(second)
    diffs = [f"only in {first}: {name}" for name in files_a.keys() - files_b.keys()]
    diffs += [f"only in {second}: {name}" for name in files_b.keys() - files_a.keys()]
    for name in sorted(files_a.keys() & files_b.keys()):
        a, b = files_a[name], files_b[name]
        if a.read_bytes() == b.read_bytes():
            continue
        if name.endswith(".parquet"):
            ta, tb = pq.read_table(a), pq.read_table(b)
            if not ta.schema.equals(tb.schema, check_metadata=True):
                diffs.append(f"{name}: schema differs")
            if ta.num_rows != tb.num_rows:
                diffs.append(f"{name}: {ta.num_rows} rows != {tb.num_rows} rows")
            elif ta.to_pylist() != tb.to_pylist():
                diffs.append(f"{name}: same row count, different rows")
            if not diffs or not diffs[-1].startswith(name):
                diffs.append(f"{name}: same schema and rows, different bytes")
        elif name.endswith(".json"):
            paths = list(_json_paths(orjson.loads(a.read_bytes()), orjson.loads(b.read_bytes())))
            diffs += [f"{name}{path}" for path in paths]
        else:
            lines = difflib.unified_diff(
                a.read_text(encoding="utf-8").splitlines(), b.read_text(encoding="utf-8").splitlines(), n=0
            )
            changed = [line for line in lines if line[:1] in "+-" and line[:3] not in ("+++", "---")]
            diffs += [f"{name}: {line:.100}" for line in changed]
    return diffs
