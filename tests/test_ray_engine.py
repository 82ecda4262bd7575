"""``--engine ray``: generate and judge on a Ray cluster simulated on this machine (a head with no CPUs and
two worker nodes of one CPU each), against the in-process fake endpoint.

The folder written equals the single-machine run's, row for row, and the endpoint never sees more than
``concurrency`` requests at once from the whole job (the engine's ``Permits`` actor).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fake_openai import FakeOpenAI
from tests.test_cli_stages import hfpref, prompts, read_jsonl

VOLATILE = {"latency_s", "attempts", "cached"}  # how an answer arrived, not what it is


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    cluster = Cluster(
        initialize_head=True,
        connect=True,
        head_node_args={"num_cpus": 0, "include_dashboard": False},
    )
    for _ in range(2):
        cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    yield cluster
    ray.shutdown()
    cluster.shutdown()


def stable(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for row in rows:
        for record in row.get("generation") or []:
            for key in VOLATILE & set(record):
                record.pop(key)
    return rows


def test_generate_on_ray_writes_the_local_rows_within_the_cluster_wide_limit(
    cluster: Any, tmp_path: Path
) -> None:
    source = prompts(tmp_path / "in.jsonl", 600)  # 3 blocks of 256: both actors busy
    with FakeOpenAI(latency_s=0.05) as fake:
        common = ("generate", source, "--model", "m/a=3", "--model", "m/b=1", "-n", "1", "--seed", "7")
        common += ("--base-url", fake.base_url, "--concurrency", "4")
        local = hfpref(*common, "-o", tmp_path / "local.jsonl", "--cache-dir", tmp_path / "c1")
        assert local.exit_code == 0, local.stderr
        fake.reset()
        result = hfpref(
            *common, "-o", tmp_path / "ray.jsonl", "--cache-dir", tmp_path / "c2", "--engine", "ray"
        )
        assert result.exit_code == 0, result.stderr
        stats = fake.stats()
    assert stats["requests"] > 0 and stats["max_in_flight"] <= 4, stats
    assert fake.duplicates() == {}
    assert stable(read_jsonl(tmp_path / "ray.jsonl")) == stable(read_jsonl(tmp_path / "local.jsonl"))


def test_engine_ray_with_num_proc_fails_in_one_line(tmp_path: Path) -> None:
    source = prompts(tmp_path / "in.jsonl", 2)
    result = hfpref("generate", source, "-o", tmp_path / "o.jsonl", "--engine", "ray", "--num-proc", "2")
    assert result.exit_code != 0
    assert result.stderr.strip().splitlines()[-1] == (
        "hfpref: error: --engine ray runs the stage on Ray's actors: drop --num-proc"
    )


def test_engine_ray_without_ray_installed_fails_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    source = prompts(tmp_path / "in.jsonl", 2)
    result = hfpref("generate", source, "-o", tmp_path / "o.jsonl", "--engine", "ray")
    assert result.exit_code != 0
    assert result.stderr.strip().splitlines()[-1] == (
        "hfpref: error: --engine ray needs Ray, which is not installed: pip install 'hfpref[ray]'"
    )


def test_hfpref_imports_no_ray() -> None:
    code = "import sys, hfpref, hfpref.cli, hfpref.engines.ray; assert 'ray' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_engine_ray_with_an_unreachable_ray_address_fails_in_one_line(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    source = prompts(tmp_path / "in.jsonl", 2)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "hfpref.cli",
            "generate",
            source,
            "-o",
            tmp_path / "o.jsonl",
            "--engine",
            "ray",
        ],
        env={**os.environ, "RAY_ADDRESS": "127.0.0.1:1"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        "hfpref: error: --engine ray: cannot connect to Ray at 127.0.0.1:1: Connection refused"
    ]
