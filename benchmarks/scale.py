"""Scale: peak memory of ``hfpref run`` at 10k vs 100k prompts, streaming generation, throughput at high concurrency.

Three parts against the fake OpenAI server (tests/fake_openai.py) in a subprocess:

* ``memory``: ``hfpref run`` (generate + judge + curate) on ``--small`` and ``--large`` prompts with
  0 ms latency; peak RSS of the ``hfpref`` process (its ``ru_maxrss``, from ``wait4``) and the ratio,
  expected ≤ 1.3 (flat memory); also the peak of its anonymous part (``RssAnon``, sampled), which
  leaves out the pages of memory-mapped files (datasets' cache files) that the kernel can drop;
* ``stream``: ``--stream-prompts`` prompts from a JSONL file through
  ``load_dataset(..., streaming=True).map(Generator, batched=True)`` in this process, consumed and
  counted; RSS every 10% of the way and rows/s, so that a 1M-prompt run can be extrapolated (or run:
  ``--stream-prompts 1000000``). Memory is bounded when RSS stops growing with the rows consumed;
* ``throughput``: ``benchmarks/bench_generate.py``'s measurement (hfpref through ``datasets.map`` and a
  plain aiohttp loop, server and client pinned to different cores) at each ``--concurrency`` with
  200 ms latency, as % of the ceiling (concurrency / latency).

    .venv/bin/python benchmarks/scale.py [--parts memory,stream,throughput] [--small 10000]
        [--large 100000] [--stream-prompts 1000000] [--stream-batch-size 256] [--concurrency 256,1024]
"""

from __future__ import annotations

import argparse
import functools
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import (
    GEN_MODEL,
    JUDGE_MODEL,
    hfpref_command,
    hfpref_env,
    write_config,
    write_prompts,
)
from benchmarks.bench_generate import hfpref_map, measure, plain_aiohttp
from tests.fake_openai import spawn

MIB = 1024 * 1024


@dataclass
class RunMemory:
    prompts: int
    peak_rss: int  # bytes
    peak_anon: int  # bytes, sampled
    seconds: float
    requests: int


def run_memory(work: Path, base_url: str, prompts: int, n: int, concurrency: int) -> tuple[float, int, int]:
    """(seconds, peak RSS, peak anonymous RSS, in bytes) of one ``hfpref run`` on ``prompts`` prompts."""
    root = work / f"run-{prompts}"
    root.mkdir(parents=True, exist_ok=True)
    inputs = write_prompts(root / "prompts.jsonl", prompts)
    config = write_config(root / "hfpref.toml", base_url, n=n, concurrency=concurrency)
    env = {**hfpref_env(root / "cache"), "HF_DATASETS_CACHE": str(root / "hf-datasets")}
    command = hfpref_command("run", str(inputs), "-o", str(root / "prefs"), "-c", str(config))
    start = time.perf_counter()
    with (root / "stderr.log").open("w") as err:
        proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=err)
    anon = [0]
    sampler = threading.Thread(target=_sample_anon, args=(proc.pid, anon), daemon=True)
    sampler.start()
    _, status, usage = os.wait4(proc.pid, 0)
    sampler.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        tail = (root / "stderr.log").read_text(encoding="utf-8")[-1000:]
        raise SystemExit(f"hfpref run on {prompts} prompts failed ({proc.returncode}):\n{tail}")
    return seconds, usage.ru_maxrss * 1024, anon[0]  # Linux reports KiB


def _sample_anon(pid: int, peak: list[int]) -> None:
    """The peak anonymous RSS (``RssAnon``: heap, Arrow and Python memory, not the pages of mapped
    files such as datasets' cache files) of process ``pid``, sampled every 20 ms until it exits."""
    while True:
        try:
            with open(f"/proc/{pid}/status") as fh:
                line = next((x for x in fh if x.startswith("RssAnon:")), None)
        except OSError:
            return
        if line is None:  # a zombie: it has exited
            return
        peak[0] = max(peak[0], int(line.split()[1]) * 1024)
        time.sleep(0.02)


def part_memory(work: Path, sizes: list[int], n: int, concurrency: int) -> None:
    print(f"memory: hfpref run (n={n}, concurrency {concurrency}, 0 ms latency), peak RSS of the process")
    results: list[RunMemory] = []
    with spawn("--latency-ms", "0", "--score-models", JUDGE_MODEL) as server:
        for prompts in sizes:
            before = server.stats()["requests"]
            seconds, peak, anon = run_memory(work, server.base_url, prompts, n, concurrency)
            requests = server.stats()["requests"] - before
            results.append(RunMemory(prompts, peak, anon, seconds, requests))
            print(
                f"  {prompts:>9,} prompts: peak RSS {peak / MIB:7,.0f} MiB (anonymous {anon / MIB:,.0f} MiB), "
                f"{seconds:6.1f} s, "
                f"{requests:,} requests ({requests / seconds:,.0f}/s)",
                flush=True,
            )
    base = results[0]
    for result in results[1:]:
        print(
            f"  ratio {result.prompts:,} / {base.prompts:,} prompts: {result.peak_rss / base.peak_rss:.2f} "
            f"(expected <= 1.3; anonymous: {result.peak_anon / base.peak_anon:.2f})"
        )


def rss() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def part_stream(work: Path, prompts: int, batch_size: int, concurrency: int) -> None:
    from datasets import disable_progress_bars, load_dataset

    from hfpref import Generator

    disable_progress_bars()
    inputs = write_prompts(work / f"stream-{prompts}.jsonl", prompts)
    print(
        f"stream: {prompts:,} prompts, load_dataset(streaming=True).map(Generator(n=1), batched=True, "
        f"batch_size={batch_size}), concurrency {concurrency}, 0 ms latency"
    )
    with spawn("--latency-ms", "0") as server:
        ds = load_dataset("json", data_files=str(inputs), split="train", streaming=True)
        gen = Generator(
            models=[GEN_MODEL],
            n=1,
            max_tokens=64,
            concurrency=concurrency,
            base_url=server.base_url,
            cache_dir=str(work / "stream-cache"),
        )
        start = time.perf_counter()
        rss_start = rss()
        print(f"  RSS before: {rss_start / MIB:,.0f} MiB", flush=True)
        count = failed = 0
        step = max(1, prompts // 10)
        for row in ds.map(gen, batched=True, batch_size=batch_size):
            if row["id"] != count:
                raise SystemExit(f"row {count} came out as row {row['id']}: rows lost or reordered")
            failed += row["completions"][0] is None
            count += 1
            if count % step == 0:
                elapsed = time.perf_counter() - start
                print(
                    f"  {count:>9,} rows: RSS {rss() / MIB:7,.0f} MiB, {count / elapsed:7,.0f} rows/s",
                    flush=True,
                )
        elapsed = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(
        f"  {count:,} rows ({failed} failed) in {elapsed:.1f} s = {count / elapsed:,.0f} rows/s; peak RSS "
        f"{peak / MIB:,.0f} MiB; 1M rows at this rate: {1_000_000 / (count / elapsed) / 60:.1f} min"
    )


def part_throughput(work: Path, concurrencies: list[int], rows: int | None, latency_ms: float) -> None:
    cpus = sorted(os.sched_getaffinity(0))
    server_cpu, client_cpu = (cpus[0], cpus[-1]) if len(cpus) > 1 else (cpus[0], cpus[0])
    print(f"throughput: {latency_ms:g} ms latency, server on CPU {server_cpu}, client on CPU {client_cpu}")
    with spawn("--latency-ms", str(latency_ms), "--cpu", str(server_cpu)) as server:
        os.sched_setaffinity(0, {client_cpu})
        try:
            for concurrency in concurrencies:
                count = rows or max(5000, 20 * concurrency)
                ceiling = concurrency / (latency_ms / 1000)
                cache = tempfile.mkdtemp(prefix="throughput-cache-", dir=work)
                for label, run in (
                    ("plain aiohttp", functools.partial(plain_aiohttp, server.base_url, count, concurrency)),
                    (
                        "hfpref datasets.map",
                        functools.partial(hfpref_map, server.base_url, count, concurrency, cache),
                    ),
                ):
                    r = measure(label, count, run)
                    print(
                        f"  concurrency {concurrency:5}, {count:,} rows, {label:20s} {r['rps']:7,.0f} req/s  "
                        f"{r['rps'] / ceiling:6.1%} of {ceiling:,.0f}  {r['cpu_us']:5,.0f} µs CPU/request",
                        flush=True,
                    )
        finally:
            os.sched_setaffinity(0, cpus)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default="memory,stream,throughput")
    parser.add_argument("--small", type=int, default=10_000, help="memory: prompts of the small run")
    parser.add_argument("--large", type=int, default=100_000, help="memory: prompts of the large run")
    parser.add_argument("-n", type=int, default=2, help="memory: completions per prompt")
    parser.add_argument("--run-concurrency", type=int, default=64, help="memory: hfpref run's concurrency")
    parser.add_argument("--stream-prompts", type=int, default=1_000_000)
    parser.add_argument("--stream-batch-size", type=int, default=256, help="hfpref run's map batch size")
    parser.add_argument("--stream-concurrency", type=int, default=256)
    parser.add_argument("--concurrency", default="256,1024", help="throughput: comma-separated")
    parser.add_argument("--rows", type=int, default=None, help="throughput rows (default max(5000, 20 x c))")
    parser.add_argument("--latency-ms", type=float, default=200.0, help="throughput: server latency")
    parser.add_argument("--work", type=Path, default=None, help="working folder (default: a temporary one)")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="hfpref-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    parts = set(args.parts.split(","))
    unknown = parts - {"memory", "stream", "throughput"}
    if unknown:
        parser.error(f"unknown parts {sorted(unknown)}")
    if "memory" in parts:
        part_memory(work, [args.small, args.large], args.n, args.run_concurrency)
    if "stream" in parts:
        part_stream(work, args.stream_prompts, args.stream_batch_size, args.stream_concurrency)
    if "throughput" in parts:
        concurrencies = [int(c) for c in args.concurrency.split(",")]
        part_throughput(work, concurrencies, args.rows, args.latency_ms)


if __name__ == "__main__":
    main()
