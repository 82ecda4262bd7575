"""Kill and resume: SIGKILL ``hfpref run`` at random moments, restart it, and compare with an uninterrupted run.

The fake OpenAI server (tests/fake_openai.py) runs in a subprocess with a fixed latency, so requests
are in flight whenever the client dies. Four parts, one server:

1. reference: ``hfpref run INPUT -o FOLDER -c hfpref.toml`` once, uninterrupted, with its own cache;
2. SIGKILL: the same job with another cache and folder, killed ``--kills`` times in a row at a random
   moment (once the server has answered a random number of the run's requests, at most the job's size
   / (kills + 1) so that every kill comes before the end, then up to one latency more), restarted each
   time, then run to the end. Its folder must equal the reference's (every parquet shard by content,
   provenance and card), and the answered (paid) requests may exceed the job's size only by the
   answers lost at the kills: paid by the server but not yet in the cache when the process died (at
   most the requests in flight, at most the concurrency);
3. Ctrl-C: the same with SIGINT ``--sigints`` times; each stop must be clean (exit code non-zero, the
   last stderr line an ``hfpref:`` line, no traceback);
4. SIGKILL during the folder write: a job killed once its output folder appears, then rerun, must end
   with the reference's folder.

The server's counters give each run's answers (paid) and unanswered requests; the cache gives the
answers each run saved. Exit code 1 when a guarantee did not hold (each is printed as PROBLEM).

    .venv/bin/python benchmarks/kill_resume.py [--prompts 300] [--kills 10] [--sigints 3]
                                               [--latency-ms 200] [--concurrency 16] [--seed 0]
"""

from __future__ import annotations

import argparse
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


from benchmarks._common import (
    GEN_MODEL,
    JUDGE_MODEL,
    compare_folders,
    hfpref_command,
    hfpref_env,
    write_config,
    write_prompts,
)
from hfpref.wire.cache import stored_records
from tests.fake_openai import FakeOpenAIProcess, spawn

Stats = dict[str, Any]
N = 4  # completions per prompt


@dataclass
class Job:
    """One ``hfpref run`` job in its own ``root``: folder ``root/prefs``, cache ``root/cache``, stderr ``root/stderr.log``.

    Every job writes a folder of the same name, so that the card's ``pretty_name`` (the folder's name)
    is the same in all of them.
    """

    input: Path
    config: Path
    root: Path
    n: int = 4  # completions per prompt in ``config``

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)

    @property
    def folder(self) -> Path:
        return self.root / "prefs"

    @property
    def cache(self) -> Path:
        return self.root / "cache"

    @property
    def log(self) -> Path:
        """The stderr of the job's latest start."""
        return self.root / "stderr.log"

    def start(self) -> subprocess.Popen[str]:
        """Start ``hfpref run`` with stderr going to ``log`` (a file: a pipe left unread could block it)."""
        with self.log.open("w", encoding="utf-8") as err:
            return subprocess.Popen(
                hfpref_command("run", str(self.input), "-o", str(self.folder), "-c", str(self.config)),
                env=hfpref_env(self.cache),
                stdout=subprocess.DEVNULL,
                stderr=err,
                text=True,
            )

    def wait(self, proc: subprocess.Popen[str], timeout: float = 600) -> str:
        """Wait for ``proc`` (started by ``start``) and return its stderr; a run still going after
        ``timeout`` seconds is killed and ``subprocess.TimeoutExpired`` raised."""
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise
        return self.log.read_text(encoding="utf-8")

    def finish(self) -> str:
        """Run to the end and return the stderr; raise with it when the run fails."""
        proc = self.start()
        err = self.wait(proc)
        if proc.returncode != 0:
            raise RuntimeError(f"hfpref run failed (exit code {proc.returncode}):\n{err[-2000:]}")
        return err


def saved_requests(job: Job) -> int:
    """Requests whose answers are in the job's cache: generation rows / n (one request per prompt) + judge rows."""
    records = stored_records(job.cache / "requests.sqlite")
    models = Counter(record["model"] for record in records.values())
    return models[GEN_MODEL] // job.n + models[JUDGE_MODEL]


def idle_stats(server: FakeOpenAIProcess, timeout: float = 30.0) -> Stats:
    """The server's stats once it has no request in flight (a dead client's requests are cancelled)."""
    deadline = time.monotonic() + timeout
    stats = server.stats()
    while stats["in_flight"] and time.monotonic() < deadline:
        time.sleep(0.01)  # polling the server's in-flight counter
        stats = server.stats()
    return stats


@dataclass
class Interruption:
    """One run of a job stopped by a signal: when, how it ended, and its requests by the server's count."""

    signum: int
    after: int  # sent once the server had answered this many of the run's requests
    then_s: float  # and this many seconds more
    returncode: int | None
    stderr: str
    ended_first: bool  # the run ended by itself before the signal
    answered: int  # answers the server sent to this run (paid)
    saved: int  # requests whose answers this run saved in its cache
    abandoned: int  # requests the server was still answering when the run died (not paid)

    @property
    def lost(self) -> int:
        """Answers paid but not saved: they arrived in the last moments of the run."""
        return self.answered - self.saved

    @property
    def in_flight(self) -> int:
        """Requests sent and not saved when the run died: lost answers plus unanswered requests."""
        return self.lost + self.abandoned


def interrupt(
    job: Job, server: FakeOpenAIProcess, after: int, then_s: float = 0.0, signum: int = signal.SIGKILL
) -> Interruption:
    """Start ``job`` and send it ``signum`` ``then_s`` seconds after the server answered ``after`` of its
    requests (a random ``then_s`` below the latency makes the moment random within a round trip too)."""
    before, saved = server.stats(), saved_requests(job)
    proc = job.start()
    while proc.poll() is None and server.stats()["ok"] < before["ok"] + after:
        time.sleep(0.005)  # polling the server's counter of answers
    if proc.poll() is None:
        time.sleep(then_s)  # the random moment
    ended_first = proc.poll() is not None
    if not ended_first:
        proc.send_signal(signum)
    stderr = job.wait(proc, timeout=120)
    end = idle_stats(server)
    return Interruption(
        signum,
        after,
        then_s,
        proc.returncode,
        stderr,
        ended_first,
        answered=end["ok"] - before["ok"],
        saved=saved_requests(job) - saved,
        abandoned=end["abandoned"] - before["abandoned"],
    )


def last_line(text: str) -> str:
    """The last non-blank line of a (progress-bar ridden) stderr."""
    lines = [line for line in text.replace("\r", "\n").splitlines() if line.strip()]
    return lines[-1] if lines else ""


def stderr_problems(text: str) -> list[str]:
    """What is wrong with the stderr of an interrupted run: a traceback, or not one ``hfpref:`` line at the end."""
    problems = []
    for marker in ("Traceback", "Exception ignored", "Task was destroyed", "Unclosed"):
        if marker in text:
            problems.append(f"{marker!r} on stderr: {text[text.find(marker) :][:300]!r}")
    if not last_line(text).startswith("hfpref: "):
        problems.append(f"the last stderr line is not an hfpref: line: {last_line(text)!r}")
    return problems


@dataclass
class Interrupted:
    """A job stopped ``len(stops)`` times, then run to the end."""

    stops: list[Interruption] = field(default_factory=list)
    paid: int = 0  # answers the server sent for the job, its final run included
    paid_twice: int = 0  # request keys answered more than once

    def lines(self, name: str, job_requests: int, concurrency: int) -> list[str]:
        if not self.stops:
            return [f"{name}: no interruption"]
        return [
            f"{name} x{len(self.stops)}, at (answers to the run + seconds) "
            f"{', '.join(f'{s.after}+{s.then_s:.2f}' for s in self.stops)}; exit codes {', '.join(sorted({str(s.returncode) for s in self.stops}))}",
            f"  in flight at each (lost answers + unanswered, at most {concurrency}): "
            + ", ".join(f"{s.lost}+{s.abandoned}" for s in self.stops),
            f"  answered (paid) in all: {self.paid:,} = job + {self.paid - job_requests:,} "
            f"(answers lost at the stops: {sum(s.lost for s in self.stops)}); request keys paid twice: "
            f"{self.paid_twice}",
        ]

    def problems(self, name: str, job_requests: int, concurrency: int) -> list[str]:
        """Paid more than the job plus the answers lost at the stops, or more in flight than the concurrency."""
        found = [
            f"{name}: {s.in_flight} requests in flight at a stop, above the concurrency {concurrency}"
            for s in self.stops
            if s.in_flight > concurrency
        ]
        lost = sum(s.lost for s in self.stops)
        if self.paid - job_requests > lost:
            found.append(
                f"{name}: {self.paid - job_requests} answers paid again but only {lost} were lost at the "
                "stops: a saved answer was paid again"
            )
        return found


@dataclass
class Report:
    """Figures and broken guarantees of a kill/resume session."""

    job_requests: int = 0
    startup_s: float = 0.0  # reference run: start to first request
    reference_s: float = 0.0  # reference run: start to end
    killed: Interrupted = field(default_factory=Interrupted)
    stopped: Interrupted = field(default_factory=Interrupted)  # Ctrl-C
    differences: dict[str, list[str]] = field(default_factory=dict)  # part -> compare_folders output
    problems: list[str] = field(default_factory=list)

    def lines(self, concurrency: int) -> list[str]:
        out = [
            f"job: {self.job_requests:,} requests; uninterrupted reference run {self.reference_s:.1f} s "
            f"({self.startup_s:.1f} s to its first request)"
        ]
        out += self.killed.lines("SIGKILL", self.job_requests, concurrency)
        out += self.stopped.lines("SIGINT", self.job_requests, concurrency)
        if self.stopped.stops:
            out.append(
                "  last stderr lines: "
                + " | ".join(sorted({last_line(s.stderr) for s in self.stopped.stops}))
            )
        for part, diffs in self.differences.items():
            verdict = "identical" if not diffs else f"{len(diffs)} differences"
            out.append(f"{part}: folder vs the reference's: {verdict}")
            out += [f"    {d}" for d in diffs[:20]]
        return out


def paid_since_reset(server: FakeOpenAIProcess) -> tuple[int, int]:
    """(answers sent, request keys answered more than once) since the server's last reset."""
    stats = server.stats(detail=True)
    return stats["ok"], stats["duplicates"]


def interrupt_until_done(
    job: Job,
    server: FakeOpenAIProcess,
    times: int,
    moments: Callable[[], tuple[int, float]],
    signum: int,
) -> tuple[Interrupted, list[str]]:
    """Stop ``job`` with ``signum`` ``times`` times in a row (restarting it), each at ``moments()``
    (answers to the run, then seconds), then run it to the end."""
    server.reset()
    result, problems = Interrupted(), []
    name = signal.Signals(signum).name
    while len(result.stops) < times:
        attempt = interrupt(job, server, *moments(), signum)
        if attempt.ended_first:
            problems.append(
                f"{name}: the run ended by itself (exit code {attempt.returncode}) before stop "
                f"{len(result.stops) + 1}: {last_line(attempt.stderr)}"
            )
            if attempt.returncode == 0:
                break
            continue
        result.stops.append(attempt)
        if signum == signal.SIGINT:
            if attempt.returncode == 0:
                problems.append("SIGINT: exit code 0")
            problems += [f"SIGINT: {p}" for p in stderr_problems(attempt.stderr)]
    job.finish()
    result.paid, result.paid_twice = paid_since_reset(server)
    return result, problems


def kill_resume(
    work: Path,
    *,
    prompts: int = 300,
    kills: int = 10,
    sigints: int = 3,
    latency_ms: float = 200.0,
    concurrency: int = 16,
    seed: int = 0,
    kill_during_write: bool = True,
) -> Report:
    """Run the four parts (see the module docstring) in ``work`` and report."""
    rng = random.Random(seed)
    report = Report()
    inputs = write_prompts(work / "prompts.jsonl", prompts)
    with spawn("--latency-ms", str(latency_ms), "--score-models", JUDGE_MODEL) as server:
        config = write_config(work / "hfpref.toml", server.base_url, n=N, concurrency=concurrency)

        def job(name: str) -> Job:
            return Job(inputs, config, work / name, n=N)

        reference = job("reference")
        start = time.perf_counter()
        proc = reference.start()
        while proc.poll() is None and server.stats()["requests"] == 0:
            time.sleep(0.01)  # polling the server's counter for the first request
        report.startup_s = time.perf_counter() - start
        err = reference.wait(proc)
        if proc.returncode != 0:
            raise RuntimeError(f"the reference run failed (exit code {proc.returncode}): {last_line(err)}")
        report.reference_s = time.perf_counter() - start
        report.job_requests, _ = paid_since_reset(server)
        most = max(1, report.job_requests // (max(kills, sigints) + 1))

        def moments() -> tuple[int, float]:
            """A random moment: 1 to job / (stops + 1) answers (every stop comes before the end), then
            up to one latency, so that the signal does not always follow an answer closely."""
            return rng.randint(1, most), rng.uniform(0, latency_ms / 1000)

        killed = job("killed")
        report.killed, problems = interrupt_until_done(killed, server, kills, moments, signal.SIGKILL)
        report.problems += problems + report.killed.problems("SIGKILL", report.job_requests, concurrency)
        report.differences["SIGKILL"] = compare_folders(reference.folder, killed.folder)
        if sigints:
            stopped = job("sigint")
            report.stopped, problems = interrupt_until_done(stopped, server, sigints, moments, signal.SIGINT)
            report.problems += problems + report.stopped.problems("SIGINT", report.job_requests, concurrency)
            report.differences["SIGINT"] = compare_folders(reference.folder, stopped.folder)
        if kill_during_write:
            written = job("written")
            report.differences["SIGKILL during the folder write"] = killed_while_writing(written, reference)
    report.problems += [f"{part}: the folder differs" for part, diffs in report.differences.items() if diffs]
    return report


def killed_while_writing(job: Job, reference: Job) -> list[str]:
    """Kill ``job`` as soon as its folder appears (curate is writing it), rerun it, compare with the reference."""
    proc = job.start()
    while proc.poll() is None and not job.folder.exists():
        time.sleep(0.002)  # polling for the folder: curate creates it, then writes the shards
    proc.kill()
    proc.wait()
    rerun = job.start()
    err = job.wait(rerun)
    if rerun.returncode != 0:
        return [f"the rerun failed (exit code {rerun.returncode}): {last_line(err)}"]
    return compare_folders(reference.folder, job.folder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=300, help="job size: prompts × (1 + n) requests")
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--sigints", type=int, default=3)
    parser.add_argument("--latency-ms", type=float, default=200.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill moments")
    parser.add_argument("--work", type=Path, default=None, help="working folder (default: a temporary one)")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="hfpref-kill-"))
    work.mkdir(parents=True, exist_ok=True)
    report = kill_resume(
        work,
        prompts=args.prompts,
        kills=args.kills,
        sigints=args.sigints,
        latency_ms=args.latency_ms,
        concurrency=args.concurrency,
        seed=args.seed,
    )
    print(
        f"kill/resume: {args.prompts} prompts, latency {args.latency_ms:g} ms, concurrency {args.concurrency}, "
        f"seed {args.seed}, in {work}"
    )
    for line in report.lines(args.concurrency):
        print("  " + line)
    for problem in report.problems:
        print(f"  PROBLEM: {problem}")
    sys.exit(1 if report.problems else 0)


if __name__ == "__main__":
    main()
