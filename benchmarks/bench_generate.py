"""Generation throughput: hfpref through ``datasets.map`` against a plain aiohttp loop, same run.

A fake OpenAI-compatible server (tests/fake_openai.py) runs in a subprocess pinned to one core with
a fixed latency; the client runs pinned to the other core. Ceiling = concurrency / latency.

    .venv/bin/python benchmarks/bench_generate.py [--rows 5000] [--concurrency 256] [--latency-ms 200]

Prints requests/s, client CPU µs per request and % of the ceiling for each, and the ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from datasets import Dataset, disable_progress_bars  # imported here: import time is not measured

from hfpref import Generator
from tests.fake_openai import spawn


def measure(label: str, rows: int, run: Callable[[], int]) -> dict[str, float]:
    cpu0, wall0 = time.process_time(), time.perf_counter()
    done = run()
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    if done != rows:
        raise SystemExit(f"{label}: {done} of {rows} requests succeeded")
    return {"rps": rows / wall, "cpu_us": cpu / rows * 1e6, "wall": wall}


def plain_aiohttp(base_url: str, rows: int, concurrency: int) -> int:
    """The baseline: one session, ``concurrency`` workers, one request per prompt, nothing else."""

    async def main() -> int:
        queue = list(range(rows))
        done = 0
        connector = aiohttp.TCPConnector(limit=concurrency)
        async with aiohttp.ClientSession(connector=connector) as session:

            async def worker() -> None:
                nonlocal done
                while queue:
                    i = queue.pop()
                    body = {
                        "model": "bench/m",
                        "messages": [{"role": "user", "content": f"question {i}"}],
                        "temperature": 0.8,
                        "max_tokens": 64,
                    }
                    async with session.post(
                        f"{base_url}/chat/completions",
                        data=orjson.dumps(body),
                        headers={"Content-Type": "application/json"},
                    ) as resp:
                        data = orjson.loads(await resp.read())
                    done += bool(data["choices"][0]["message"]["content"])

            await asyncio.gather(*(worker() for _ in range(concurrency)))
        return done

    return asyncio.run(main())


def hfpref_map(base_url: str, rows: int, concurrency: int, cache_dir: str) -> int:
    disable_progress_bars()
    ds = Dataset.from_dict({"prompt": [f"question {i}" for i in range(rows)]})
    gen = Generator(
        models=["bench/m"],
        n=1,
        max_tokens=64,
        concurrency=concurrency,
        base_url=base_url,
        cache_dir=cache_dir,
    )
    out = ds.map(gen, batched=True, batch_size=1000, load_from_cache_file=False)
    return sum(c[0] is not None for c in out["completions"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--latency-ms", type=float, default=200)
    parser.add_argument("--repeats", type=int, default=2, help="best of N runs of each")
    args = parser.parse_args()
    ceiling = args.concurrency / (args.latency_ms / 1000)
    cpus = sorted(os.sched_getaffinity(0))
    server_cpu, client_cpu = (cpus[0], cpus[-1]) if len(cpus) > 1 else (cpus[0], cpus[0])
    with spawn("--latency-ms", str(args.latency_ms), "--cpu", str(server_cpu)) as server:
        os.sched_setaffinity(0, {client_cpu})
        results: dict[str, dict[str, float]] = {}
        for _ in range(args.repeats):
            for label, run in (
                ("plain aiohttp", lambda: plain_aiohttp(server.base_url, args.rows, args.concurrency)),
                (
                    "hfpref datasets.map",
                    lambda: hfpref_map(
                        server.base_url, args.rows, args.concurrency, tempfile.mkdtemp(prefix="hfpref-bench-")
                    ),
                ),
            ):
                result = measure(label, args.rows, run)
                if label not in results or result["rps"] > results[label]["rps"]:
                    results[label] = result
    print(
        f"rows={args.rows} concurrency={args.concurrency} latency={args.latency_ms:g} ms "
        f"ceiling={ceiling:,.0f} req/s (best of {args.repeats})"
    )
    for label, r in results.items():
        print(
            f"{label:22s} {r['rps']:8,.0f} req/s  {r['rps'] / ceiling:6.1%} of ceiling  "
            f"{r['cpu_us']:6,.0f} µs CPU/request"
        )
    plain, ours = results["plain aiohttp"], results["hfpref datasets.map"]
    print(
        f"hfpref / plain: throughput {ours['rps'] / plain['rps']:.2f}x, CPU per request "
        f"{ours['cpu_us'] / plain['cpu_us']:.2f}x"
    )


if __name__ == "__main__":
    main()
