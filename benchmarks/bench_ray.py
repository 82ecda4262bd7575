"""``--engine ray`` against the single-machine path, and what the cluster-wide limiter grants per second.

A fake OpenAI-compatible server (tests/fake_openai.py) runs in a subprocess with a fixed latency; a local
Ray (``ray.init(num_cpus=...)``) runs the engine's actors on this machine.

    .venv/bin/python benchmarks/bench_ray.py [--rows 2560] [--concurrency 256] [--latency-ms 200]

Prints the ``Permits`` actor's permits/s (acquire + release pairs, from many concurrent callers) and the
requests/s of generate with the local map and with the Ray engine, and their ratio.
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
from hfpref.stages.pipeline import generate_file
from tests.fake_openai import spawn


def permits_per_s(callers: int, each: int, limit: int) -> float:
    permits = ray_engine.permits_actor(limit)
    ray.get(permits.stats.remote())  # started

    async def caller() -> None:
        for _ in range(each):
            await permits.acquire.remote()
            await permits.release.remote()

    async def run() -> float:
        start = time.perf_counter()
        await asyncio.gather(*(caller() for _ in range(callers)))
        return callers * each / (time.perf_counter() - start)

    rate = asyncio.run(run())
    ray.kill(permits)
    return rate


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
    args = parser.parse_args()
    disable_progress_bars()
    ray.init(num_cpus=args.num_cpus, log_to_driver=False, logging_level="ERROR")
    rate = permits_per_s(callers=256, each=40, limit=args.concurrency)
    print(f"permits actor: {rate:,.0f} permits/s (acquire+release, 256 callers on the driver)")
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
