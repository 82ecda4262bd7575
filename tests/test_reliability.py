"""Short versions of the reliability benchmarks (benchmarks/soak.py, benchmarks/kill_resume.py).

The full versions (20,000 requests, 10 kills, Ctrl-C at random moments) are the scripts; these run
the same code on small jobs: faults, SIGKILL and resume of the ``hfpref run`` CLI, Ctrl-C while
requests wait and while the client is busy, and a folder write that dies midway.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from benchmarks._common import GEN_MODEL, JUDGE_MODEL, compare_folders, write_config, write_prompts
from benchmarks.kill_resume import Job, kill_resume, last_line, saved_requests, stderr_problems
from benchmarks.soak import soak
from tests.fake_openai import FakeOpenAI, slow

N = 4  # completions per prompt in write_config


def test_soak_with_faults_keeps_every_row_and_pays_no_answer_twice(tmp_path: Path) -> None:
    result = soak(
        1500,
        fault_rate=0.2,
        seed=1,
        n=N,
        concurrency=32,
        timeout_s=0.5,
        stall_s=2.0,
        max_retries=1,  # so that some requests fail for good
        retry_after_ms=20,
        cache_dir=tmp_path / "cache",
    )
    server = result.server
    # no row lost or reordered; every null completion and every missing score has its error
    assert result.problems == []
    assert result.rows_out == result.rows_in == 300
    assert result.rows_failed > 0 and result.completions_failed >= result.rows_failed
    assert result.scores_missing > 0  # judge requests that failed for good
    assert server["duplicates"] == 0  # no answered request was sent again
    assert server["retried"] > 0 and server["abandoned"] > 0  # retries, and stalls given up on
    assert set(server["by_kind"]) == {"ok", "raw", "truncated", "drop", "cut"}
    assert {"429", "500", "502"} <= set(server["by_status"])


def test_sigkilled_run_resumes_to_the_uninterrupted_folder(tmp_path: Path) -> None:
    report = kill_resume(
        tmp_path, prompts=40, kills=3, sigints=0, latency_ms=100, concurrency=8, kill_during_write=False
    )
    assert len(report.killed.stops) == 3, report.problems
    assert report.differences["SIGKILL"] == []  # every shard, the card and the provenance
    for stop in report.killed.stops:
        assert stop.returncode == -signal.SIGKILL
        assert stop.lost >= 0 and stop.in_flight <= 8  # never more than the concurrency
    # paid beyond the job: only answers that arrived in a killed run's last moments
    assert report.killed.paid - report.job_requests <= sum(stop.lost for stop in report.killed.stops)
    assert report.problems == []


def test_ctrl_c_stops_cleanly_and_the_rerun_repays_nothing(tmp_path: Path) -> None:
    answered_first = 12
    with FakeOpenAI(latency_s=0.02, score_models={JUDGE_MODEL}, record=False) as fake:
        # the first 12 requests are answered; every later one stalls past the Ctrl-C
        fake.responder = lambda body: slow(60) if fake.requests > answered_first else None
        inputs = write_prompts(tmp_path / "prompts.jsonl", 30)
        config = write_config(tmp_path / "hfpref.toml", fake.base_url, concurrency=4)
        job = Job(inputs, config, tmp_path / "job")
        proc = job.start()
        deadline = time.monotonic() + 60
        while (fake.in_flight < 4 or saved_requests(job) < answered_first) and proc.poll() is None:
            assert time.monotonic() < deadline, "the run never got 12 answers and 4 requests in flight"
            time.sleep(0.01)
        proc.send_signal(signal.SIGINT)
        stderr = job.wait(proc, timeout=30)  # a stop that waited for the stalled requests would time out
        assert proc.returncode == 130
        assert stderr_problems(stderr) == [], stderr[-2000:]
        assert "interrupted" in last_line(stderr) or "aborted" in last_line(stderr)
        assert fake.by_model == {GEN_MODEL: answered_first + 4}

        fake.responder = None
        job.finish()
    assert fake.duplicates() == {}  # nothing answered before Ctrl-C was sent again
    assert fake.ok == 30 + 30 * N  # the job: 30 generation requests (n=4 each) and 120 judge requests
    assert job.folder.joinpath("dpo").is_dir()


def test_ctrl_c_while_busy_stops_with_one_line(tmp_path: Path) -> None:
    """Ctrl-C while the client is busy lands inside an asyncio task of datasets' map, not in a wait."""
    with FakeOpenAI(score_models={JUDGE_MODEL}, record=False) as fake:
        inputs = write_prompts(tmp_path / "prompts.jsonl", 400)
        config = write_config(tmp_path / "hfpref.toml", fake.base_url, concurrency=32)
        job = Job(inputs, config, tmp_path / "job")
        proc = job.start()
        while fake.ok < 200 and proc.poll() is None:
            time.sleep(0.002)  # polling the server's answer counter
        proc.send_signal(signal.SIGINT)
        stderr = job.wait(proc, timeout=30)
    assert proc.returncode == 130
    assert stderr_problems(stderr) == [], stderr[-3000:]


def test_a_folder_write_killed_midway_is_replaced_by_the_rerun(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What ``hfpref run`` killed while curate writes its folder leaves, then its rerun."""
    import pyarrow.parquet as pq
    from datasets import Dataset, DatasetDict

    from hfpref.repo.folder import write_folder

    rows = Dataset.from_dict({"prompt": ["a", "b"], "completion": ["x", "y"], "score": [0.1, 0.9]})
    configs = {name: DatasetDict({"train": rows, "test": rows}) for name in ("sft", "grpo")}
    real_close = pq.ParquetWriter.close
    closed: list[object] = []

    def killed_at_the_second_shard(self: pq.ParquetWriter, *args: object, **kwargs: object) -> object:
        closed.append(self)
        if len(closed) == 2:
            raise KeyboardInterrupt  # where the process died: the second shard is half written
        return real_close(self, *args, **kwargs)  # the first shard, and the dead writer's clean-up

    monkeypatch.setattr(pq.ParquetWriter, "close", killed_at_the_second_shard)
    with pytest.raises(KeyboardInterrupt):
        write_folder(tmp_path / "rerun" / "prefs", configs)
    assert [p.name for p in (tmp_path / "rerun" / "prefs" / "sft").iterdir() if p.name.startswith(".")] == [
        ".test-0.parquet.partial"
    ]
    monkeypatch.undo()
    write_folder(tmp_path / "rerun" / "prefs", configs)
    write_folder(tmp_path / "clean" / "prefs", configs)
    assert compare_folders(tmp_path / "clean" / "prefs", tmp_path / "rerun" / "prefs") == []
