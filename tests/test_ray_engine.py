"""``--engine ray``: generate, judge and run on a Ray cluster simulated on this machine (a head with no
CPUs and two worker nodes of one CPU each, sharing one module's cluster), against the in-process fake
endpoint.

The file and folder written equal the single-machine run's; the endpoint never sees more than
``concurrency`` requests at once from the whole job, nor the job's spend more than ``max_cost`` plus one
request; a ``ray.data.Dataset`` takes a stage with :func:`hfpref.engines.ray.map_batches`. A worker node
lost mid-run costs only its requests in flight (its blocks are retried and find their answers in the
cache), and a killed driver's rerun resumes from the cache.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fake_openai import FakeOpenAI
from tests.test_cli_stages import error_line, hfpref, prompts, read_jsonl

ROWS = 600
CONCURRENCY = 8
LATENCY_S = 0.1  # 600 requests at 8 in flight: ~8 s, time to lose a node in the middle
NUM_PROC = "hfpref: error: --engine ray runs the stage on Ray's actors: drop --num-proc"
VOLATILE = {"latency_s", "attempts", "cached"}  # how an answer arrived, not what it is


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    cluster = Cluster(
        initialize_head=True,
        connect=True,
        head_node_args={
            "num_cpus": 0,
            "include_dashboard": False,
            # a dead node is noticed in ~1.5 s, not Ray's default ~15 s
            "_system_config": {"health_check_period_ms": 500, "health_check_failure_threshold": 3},
        },
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
    source = prompts(tmp_path / "in.jsonl", 300)  # 2 blocks of 256 and 44 rows: both actors busy
    with FakeOpenAI(latency_s=0.02) as fake:
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


def test_run_with_engine_ray_in_the_config_writes_the_local_folder(cluster: Any, tmp_path: Path) -> None:
    source = prompts(tmp_path / "in.jsonl", 40)
    local_dir, ray_dir = tmp_path / "local" / "prefs", tmp_path / "ray" / "prefs"  # the name is in the card
    with FakeOpenAI(latency_s=0.01) as fake:
        fake.score_models = {"m/j"}
        config = tmp_path / "hfpref.toml"
        config.write_text(
            f'engine = "ray"\n[provider]\nbase_url = "{fake.base_url}"\n'
            '[generate]\nn = 3\nseed = 5\nmodels = ["m/a", "m/b"]\n[judge]\nmodels = ["m/j"]\n'
        )
        local = hfpref(
            "run",
            source,
            "-o",
            local_dir,
            "-c",
            config,
            "--cache-dir",
            tmp_path / "c1",
            "--engine",
            "local",
        )
        assert local.exit_code == 0, local.stderr
        fake.reset()
        result = hfpref("run", source, "-o", ray_dir, "-c", config, "--cache-dir", tmp_path / "c2")
        assert result.exit_code == 0, result.stderr
        assert fake.stats()["requests"] > 0  # this run sent its own requests, on Ray
    # one summary line per stage for the whole job, not one per actor
    assert sum(line.startswith("hfpref generate:") for line in result.stderr.splitlines()) == 1
    files = sorted(p.relative_to(local_dir) for p in (local_dir).rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(ray_dir) for p in (ray_dir).rglob("*") if p.is_file())
    for name in files:
        if name.suffix == ".parquet":
            assert read_parquet(ray_dir / name) == read_parquet(local_dir / name), name
        else:  # the card, hfpref.json (provenance, statistics), the figures
            assert (ray_dir / name).read_bytes() == (local_dir / name).read_bytes(), name


def read_parquet(path: Path) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    return stable(pq.read_table(path).to_pylist())


def test_max_cost_holds_for_the_whole_cluster(cluster: Any, tmp_path: Path) -> None:
    """Every actor draws on the one ledger on the driver's node: spend ≤ cap + one request's cost."""
    source = prompts(tmp_path / "in.jsonl", 300)
    with FakeOpenAI(latency_s=0.02) as fake:
        fake.cost_per_token = 1e-4  # ~8 tokens a request: ~$0.0008 each
        result = hfpref(
            "generate",
            source,
            "-o",
            tmp_path / "o.jsonl",
            "--model",
            "m/a",
            "-n",
            "1",
            "--base-url",
            fake.base_url,
            "--concurrency",
            "8",
            "--max-cost",
            "0.05",
            "--engine",
            "ray",
            "--cache-dir",
            tmp_path / "c",
        )
        stats = fake.stats()
    assert result.exit_code == 1, result.stderr
    assert "budget of $0.05 reached" in result.stderr.strip().splitlines()[-1]
    one_request = stats["cost"] / stats["ok"]
    assert 0.05 <= stats["cost"] <= 0.05 + one_request * 1.5, stats
    assert stats["ok"] < 300


def test_rpm_holds_for_the_whole_cluster(cluster: Any, tmp_path: Path) -> None:
    """rpm = 120 (2 a second, a burst of 2) for a model whose requests come from two actors: 10 requests
    take 4 s, where a bucket per actor would let them through in 2."""
    from hfpref.config import GenerateConfig, ProviderConfig, RunConfig, parse_models
    from hfpref.engines import ray as ray_engine
    from hfpref.stages.pipeline import generate_file

    source = prompts(tmp_path / "in.jsonl", 10)
    with FakeOpenAI() as fake:
        run = RunConfig()
        run.provider = ProviderConfig(base_url=fake.base_url)
        run.generate = GenerateConfig(models=parse_models([{"id": "m/a", "rpm": 120}]), n=1)
        generate_file(
            str(source),
            str(tmp_path / "o.jsonl"),
            run,
            cache_dir=str(tmp_path),
            mapper=lambda ds, stage, c, _, **kw: ray_engine.map_stage(ds, stage, c, 5, **kw),  # 2 blocks
        )
        times = sorted(request.time for request in fake.received)
    assert len(times) == 10
    assert times[-1] - times[0] >= 3.5, times


def test_a_ray_dataset_takes_a_stage_with_map_batches(cluster: Any, tmp_path: Path) -> None:
    import ray

    import hfpref
    from hfpref.engines.ray import map_batches

    with FakeOpenAI(latency_s=0.01) as fake:
        gen = hfpref.Generator(
            models=["m/a"], n=2, base_url=fake.base_url, cache_dir=str(tmp_path), concurrency=4
        )
        ray_ds = ray.data.from_items([{"id": i, "prompt": f"question {i}"} for i in range(50)])
        rows = map_batches(ray_ds, gen, batch_size=10).take_all()
        stats = fake.stats()
    assert sorted(row["id"] for row in rows) == list(range(50))
    assert all(len(row["completions"]) == 2 and all(row["completions"]) for row in rows)
    assert stats["requests"] == 50 and stats["max_in_flight"] <= 4, stats


def test_a_failing_stage_on_ray_fails_with_the_local_one_line_error(cluster: Any, tmp_path: Path) -> None:
    """The endpoint refuses the job (401, no key): the actor's error reaches the driver as itself."""
    source = prompts(tmp_path / "in.jsonl", 20)
    with FakeOpenAI(api_key="sk-only-this") as fake:
        common = ("generate", source, "--model", "m/a", "--base-url", fake.base_url, "--cache-dir", tmp_path)
        local = hfpref(*common, "-o", tmp_path / "local.jsonl")
        result = hfpref(*common, "-o", tmp_path / "ray.jsonl", "--engine", "ray")
    assert local.exit_code == result.exit_code != 0
    assert "401" in local.stderr.strip().splitlines()[-1]
    assert result.stderr.strip().splitlines()[-1] == local.stderr.strip().splitlines()[-1]
    assert "Traceback" not in result.stderr


def test_the_engine_comes_from_the_flag_then_the_file_then_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = prompts(tmp_path / "in.jsonl", 2)
    config = tmp_path / "hfpref.toml"
    config.write_text('engine = "ray"\n[generate]\nmodels = ["m/a"]\n')
    out = (
        "-o",
        tmp_path / "o.jsonl",
        "--num-proc",
        "2",
        "--cache-dir",
        tmp_path,
    )  # ray fails before a request
    assert error_line(hfpref("generate", source, "-c", config, *out)) == NUM_PROC
    monkeypatch.setenv("HFPREF_ENGINE", "ray")
    assert error_line(hfpref("generate", source, *out, "--model", "m/a")) == NUM_PROC
    config.write_text('engine = "local"\n[generate]\nmodels = ["m/a"]\n')
    with FakeOpenAI() as fake:  # the file's local beats the environment's ray, the flag beats both
        local = hfpref(
            "generate", source, "-c", config, *out[:2], "--cache-dir", tmp_path, "--base-url", fake.base_url
        )
        assert local.exit_code == 0, local.stderr
    assert error_line(hfpref("generate", source, "-c", config, *out, "--engine", "ray")) == NUM_PROC
    config.write_text('engine = "spark"\n')
    bad = hfpref("generate", source, "-c", config, "-o", tmp_path / "o.jsonl")
    assert bad.exit_code == 2
    assert error_line(bad) == "hfpref: error: engine must be one of local, ray, got 'spark'"


def test_engine_ray_with_the_batch_api_fails_in_one_line(cluster: Any, tmp_path: Path) -> None:
    source = prompts(tmp_path / "in.jsonl", 2)
    result = hfpref(
        "generate", source, "-o", tmp_path / "o.jsonl", "--model", "m/a", "--engine", "ray", "--batch-api"
    )
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "hfpref: error: --engine ray does not run the Batch API (a batch needs no cluster): drop --batch-api"
    )


def test_engine_ray_with_num_proc_fails_in_one_line(tmp_path: Path) -> None:
    source = prompts(tmp_path / "in.jsonl", 2)
    result = hfpref("generate", source, "-o", tmp_path / "o.jsonl", "--engine", "ray", "--num-proc", "2")
    assert result.exit_code != 0
    assert result.stderr.strip().splitlines()[-1] == NUM_PROC


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


# --- node loss and a killed driver ---------------------------------------------------------------------


def crash(cluster: Any, node: Any) -> None:
    """``node`` dies at once, with its workers: Cluster.remove_node kills the raylet, whose workers may
    finish their tasks before they notice, as no real crash lets them."""
    for pid in descendants(node.all_processes["raylet"][0].process.pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    cluster.remove_node(node, allow_graceful=False)


def descendants(pid: int) -> list[int]:
    """The processes below ``pid`` (Linux: each one's parent from /proc)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            parents[int(stat.parent.name)] = int(fields[1])
    found, todo = [], [pid]
    while todo:
        pid = todo.pop()
        children = [child for child, parent in parents.items() if parent == pid]
        found += children
        todo += children
    return found


def wait_for(condition: Any, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.02)


def test_a_worker_node_lost_mid_run_costs_only_its_requests_in_flight(
    cluster: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from hfpref.config import GenerateConfig, ProviderConfig, RunConfig, parse_models
    from hfpref.engines import ray as ray_engine
    from hfpref.stages.pipeline import generate_file

    source = prompts(tmp_path / "in.jsonl", ROWS)
    failure: list[BaseException] = []
    with FakeOpenAI(latency_s=LATENCY_S) as fake:
        run = RunConfig()
        run.provider = ProviderConfig(base_url=fake.base_url)
        run.generate = GenerateConfig(models=parse_models(["m/a"]), n=1, concurrency=CONCURRENCY)

        def job() -> None:
            try:
                generate_file(
                    str(source),
                    str(tmp_path / "out.jsonl"),
                    run,
                    cache_dir=str(tmp_path / "cache"),
                    # blocks of 50 rows: both actors busy when the node goes
                    mapper=lambda ds, stage, c, _, **kw: ray_engine.map_stage(ds, stage, c, 50, **kw),
                )
            except BaseException as exc:  # re-raised in the test's thread below
                failure.append(exc)

        thread = threading.Thread(target=job)
        thread.start()
        wait_for(lambda: fake.requests >= ROWS // 4)
        crash(cluster, next(iter(cluster.worker_nodes)))
        cluster.add_node(num_cpus=1)
        thread.join(timeout=120)
        assert not thread.is_alive()
        if failure:
            raise failure[0]
        stats = fake.stats()
    rows = read_jsonl(tmp_path / "out.jsonl")
    assert [row["id"] for row in rows] == list(range(ROWS))
    assert all(row["completions"][0] for row in rows), "a row without its completion"
    assert stats["ok"] >= ROWS and stats["requests"] <= ROWS * 1.15, stats
    # the lost node's block was retried, and found what it had received in the cache
    summary = [line for line in capsys.readouterr().err.splitlines() if line.startswith("hfpref generate:")]
    assert len(summary) == 1 and "(0 cached" not in summary[0], summary


def test_a_killed_driver_reruns_and_resumes_from_the_cache(cluster: Any, tmp_path: Path) -> None:
    source = prompts(tmp_path / "in.jsonl", ROWS)
    command = [sys.executable, "-m", "hfpref.cli", "generate", str(source), "-o", str(tmp_path / "o.jsonl")]
    command += ["--model", "m/a", "-n", "1", "--concurrency", str(CONCURRENCY), "--engine", "ray"]
    command += ["--cache-dir", str(tmp_path / "cache")]
    env = {**os.environ, "RAY_ADDRESS": cluster.address}
    with FakeOpenAI(latency_s=LATENCY_S / 2) as fake:
        command += ["--base-url", fake.base_url]
        first = subprocess.Popen(command, env=env, stderr=subprocess.DEVNULL, start_new_session=True)
        wait_for(lambda: fake.requests >= ROWS // 3)
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
        killed_at = fake.requests
        rerun = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
        assert rerun.returncode == 0, rerun.stderr
        stats = fake.stats()
    assert len(read_jsonl(tmp_path / "o.jsonl")) == ROWS
    assert killed_at < ROWS and stats["requests"] <= ROWS + CONCURRENCY * 2, (killed_at, stats)
    cached = re.search(r"hfpref generate: [\d,]+ completions \(([\d,]+) cached", rerun.stderr)
    assert cached and int(cached[1].replace(",", "")) >= killed_at - CONCURRENCY * 2, rerun.stderr
