"""``--engine ray`` against the single-machine path, and what the cluster-wide limiter grants per second.

A fake OpenAI-compatible server (tests/fake_openai.py) runs in a subprocess with a fixed latency; a local
Ray (``ray.init(num_cpus=...)``) runs the engine's actors on this machine.

    .venv/bin/python benchmarks/bench_ray.py [--rows 2560] [--concurrency 256] [--latency-ms 200]

Prints the ``Permits`` actor's permits/s (acquire + release pairs, from many concurrent callers, one
permit per call and in batches as each process's PermitPool asks) and the requests/s of generate with
the local map and with the Ray engine, and their ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import ray
from datasets import disable_progress_bars

from hfpref.config import GenerateConfig, ProviderConfig, RunConfig, parse_models
from hfpref.engines import ray as ray_engine
from hfpref.engines.ray_limits import PermitPool
from hfpref.stages.pipeline import generate_file
from tests.fake_openai import spawn


def permits_per_s(callers: int, each: int, limit: int, batch: int = 1) -> tuple[float, float]:
    """(permits/s, actor calls/s): ``callers`` concurrent loops, each taking ``batch`` permits per acquire
    call (as one process's PermitPool asks for all its waiting requests at once) and giving them back in
    one release call, ``each`` times."""
    permits = ray_engine.permits_actor(limit)
    ray.get(permits.stats.remote())  # started

    async def caller() -> int:
        granted = 0
        for _ in range(each):
            got, _pauses = await permits.acquire.remote(batch, "bench")
            granted += got
            await permits.release.remote(got, "bench")
        return granted

    async def run() -> tuple[float, float]:
        start = time.perf_counter()
        granted = sum(await asyncio.gather(*(caller() for _ in range(callers))))
        elapsed = time.perf_counter() - start
        return granted / elapsed, 2 * callers * each / elapsed

    rates = asyncio.run(run())
    ray.kill(permits)
    return rates


def pooled_rate(pools: int, in_flight: int, latency_s: float, seconds: float) -> tuple[float, dict[str, int]]:
    """Requests/s granted to ``pools`` PermitPools (each standing for one actor process) that keep
    ``in_flight`` requests of ``latency_s`` each going for ``seconds``; the actor's stats."""
    permits = ray_engine.permits_actor(pools * in_flight)
    ray.get(permits.stats.remote())

    async def run() -> float:
        done = 0
        stop = time.perf_counter() + seconds

        async def request_loop(pool: PermitPool) -> None:
            nonlocal done
            while time.perf_counter() < stop:
                await pool.acquire()
                await asyncio.sleep(latency_s)
                pool.release()
                done += 1

        start = time.perf_counter()
        pool_list = [PermitPool(permits, f"process {i}") for i in range(pools)]
        await asyncio.gather(*(request_loop(pool) for pool in pool_list for _ in range(in_flight)))
        return done / (time.perf_counter() - start)

    rate = asyncio.run(run())
    stats = ray.get(permits.stats.remote())
    ray.kill(permits)
    return rate, stats


def generate_rps(base_url: str, rows: int, concurrency: int, engine: str, work: Path) -> float:
    source = work / "in.jsonl"
    source.write_text("".join(f'{{"id": {i}, "prompt": "question {i} {engine}"}}\n' for i in range(rows)))
    run = RunConfig()
    run.provider = ProviderConfig(base_url=base_url)
    run.generate = GenerateConfig(models=parse_models(["m/a"]), n=1, concurrency=concurrency)
    mapper = ray_engine.map_stage if engine == "ray" else None
    start = time.perf_counter()
    generate_file(str(source), str(work / f"{engine}.jsonl"), run, use_cache=False, mapper=mapper)
    return rows / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=2560)
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--latency-ms", type=int, default=200)
    parser.add_argument("--num-cpus", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--permits-only", action="store_true", help="measure the Permits actor alone")
    args = parser.parse_args()
    disable_progress_bars()
    ray.init(num_cpus=args.num_cpus, log_to_driver=False, logging_level="ERROR")
    for callers, batch in ((256, 1), (16, 16), (16, 64), (64, 64)):
        limit = max(args.concurrency, callers * batch)  # the permits are not what is measured
        rate, calls = permits_per_s(
            callers=callers, each=max(10, 10_240 // (callers * 4)), limit=limit, batch=batch
        )
        print(
            f"permits actor: {rate:,.0f} permits/s, {calls:,.0f} calls/s "
            f"({callers} callers on the driver, {batch} permits per acquire)"
        )
    for pools, in_flight, latency_ms in ((40, 64, 200), (40, 64, 50), (100, 32, 100)):
        ceiling = pools * in_flight / (latency_ms / 1000)
        rate, stats = pooled_rate(pools, in_flight, latency_ms / 1000, seconds=8)
        print(
            f"permits actor through PermitPools: {rate:,.0f} req/s granted of a {ceiling:,.0f} ceiling "
            f"({pools} pools × {in_flight} in flight, {latency_ms} ms; {stats['calls']:,} acquire calls, "
            f"{stats['granted'] / max(1, stats['calls']):.0f} permits per call)"
        )
    if args.permits_only:
        ray.shutdown()
        return
    with spawn("--latency-ms", str(args.latency_ms)) as proc, tempfile.TemporaryDirectory() as tmp:
        ceiling = args.concurrency / (args.latency_ms / 1000)
        local = generate_rps(proc.base_url, args.rows, args.concurrency, "local", Path(tmp))
        on_ray = generate_rps(proc.base_url, args.rows, args.concurrency, "ray", Path(tmp))
    print(f"generate local: {local:,.0f} req/s ({local / ceiling:.0%} of the {ceiling:,.0f} ceiling)")
    print(
        f"generate --engine ray: {on_ray:,.0f} req/s ({on_ray / ceiling:.0%}); ray/local = {on_ray / local:.2f}"
    )
    ray.shutdown()


if __name__ == "__main__":
    main()
