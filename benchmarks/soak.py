"""Fault soak: generate + judge through ``datasets.map`` against a server that fails 20% of requests.

The fake OpenAI server (tests/fake_openai.py) runs in a subprocess and gives a random ``--fault-rate``
share of requests one of its fault kinds: 429 with Retry-After, 500, 502 HTML page, OpenRouter error
with HTTP 200, truncated JSON, dropped connection, cut body, and a stall past the client timeout.
``hfpref.Generator`` (``n`` completions per prompt in one request) then ``hfpref.Judge`` (pointwise, one
request per completion) map over the prompts; the server's counters say what was sent and paid.

    .venv/bin/python benchmarks/soak.py [--requests 20000] [--fault-rate 0.2] [--seed 0]
                                        [--timeout-s 1] [--stall-s 3] [--max-retries 8]

``--requests`` counts distinct requests (prompts × (1 + n)); retries come on top. Prints rows in and
out, rows with a final error, requests retried and duplicate paid requests (an answered request sent
again: must be 0). Exit code 1 when a row is lost or reordered, a null completion or a missing score
has no error (in ``generation``, in ``judge``), or a request was paid twice.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import GEN_MODEL, JUDGE_MODEL
from tests.fake_openai import DEFAULT_FAULT_KINDS, FAULT_KINDS, spawn


@dataclass
class SoakResult:
    """What one soak found; ``problems`` lists every broken guarantee (empty when all held)."""

    rows_in: int
    rows_out: int
    rows_failed: int  # rows with at least one completion that failed for good (null + error)
    completions_failed: int
    scores_missing: int  # non-null completions left without a score (their judge request failed)
    server: dict[str, Any]  # the fake server's stats, with the paid map
    seconds: float
    problems: list[str]

    @property
    def duplicates(self) -> int:
        return int(self.server["duplicates"])

    def lines(self) -> list[str]:
        s = self.server
        kinds = ", ".join(f"{k} {v:,}" for k, v in sorted(s["by_kind"].items()))
        statuses = ", ".join(f"{k}: {v:,}" for k, v in sorted(s["by_status"].items()))
        return [
            f"rows in {self.rows_in:,}, rows out {self.rows_out:,} (same ids, same order: "
            f"{'yes' if not any('order' in p for p in self.problems) else 'NO'})",
            f"rows with a final error {self.rows_failed:,} ({self.completions_failed:,} completions null "
            f"with their error); completions left unscored by a judge request that failed for good "
            f"{self.scores_missing:,} (with its error)",
            f"requests: {s['distinct_requests']:,} distinct, {s['requests']:,} sent, {s['retried']:,} retried "
            f"({s['requests'] - s['distinct_requests']:,} retries), {s['ok']:,} answered (paid), "
            f"{s['abandoned']:,} abandoned by the client (stalls past the timeout)",
            f"server answers: {kinds}; HTTP statuses: {statuses}",
            f"duplicate paid requests: {self.duplicates} (requests paid more than once)",
            f"{self.seconds:.1f} s, {s['requests'] / self.seconds:,.0f} requests/s sent",
        ]


def check_rows(ids_in: list[int], out: Any) -> tuple[list[str], int, int, int]:
    """(problems, rows failed, completions failed, completions unscored) of a generated+judged dataset."""
    problems = []
    if out["id"] != ids_in:
        problems.append(f"rows lost or out of order: {len(ids_in)} in, {len(out)} out")
    rows_failed = completions_failed = unscored = 0
    for row, (texts, meta, scores, judge) in enumerate(
        zip(out["completions"], out["generation"], out["scores"], out["judge"], strict=True)
    ):
        failed = [m for text, m in zip(texts, meta, strict=True) if text is None]
        if any(not m["error"] for m in failed):
            problems.append(f"row {row}: a null completion without its error")
        if any(m["error"] for text, m in zip(texts, meta, strict=True) if text is not None):
            problems.append(f"row {row}: a completion with text and an error")
        missing = sum(text is not None and score is None for text, score in zip(texts, scores, strict=True))
        if missing > judge["failed_calls"] + judge["parse_failures"]:
            problems.append(
                f"row {row}: {missing} scores missing without a failed judge call to explain them"
            )
        if judge["failed_calls"] and not judge["error"]:
            problems.append(f"row {row}: a failed judge call without its error")
        rows_failed += bool(failed)
        completions_failed += len(failed)
        unscored += missing
    return problems, rows_failed, completions_failed, unscored


def soak(
    requests: int,
    *,
    fault_rate: float = 0.2,
    seed: int = 0,
    n: int = 4,
    concurrency: int = 64,
    timeout_s: float = 1.0,
    stall_s: float = 3.0,
    max_retries: int = 8,
    retry_after_ms: float = 50.0,
    fault_kinds: tuple[str, ...] = DEFAULT_FAULT_KINDS,
    batch_size: int = 256,
    cache_dir: Path | None = None,
) -> SoakResult:
    """Run ``requests`` distinct requests (prompts × (1 + n)) through generate + judge under faults."""
    from datasets import Dataset, disable_progress_bars

    from hfpref import Generator, Judge

    disable_progress_bars()
    prompts = math.ceil(requests / (1 + n))
    ids = list(range(prompts))
    ds = Dataset.from_dict({"id": ids, "prompt": [f"question {i}: what is {i} plus {i}?" for i in ids]})
    cache = str(cache_dir or tempfile.mkdtemp(prefix="hfpref-soak-"))
    server_args = ["--fault-rate", str(fault_rate), "--seed", str(seed), "--slow-s", str(stall_s)]
    server_args += ["--retry-after-ms", str(retry_after_ms), "--score-models", JUDGE_MODEL]
    server_args += ["--fault-kinds", ",".join(fault_kinds)]
    with spawn(*server_args) as server:
        client = {
            "base_url": server.base_url,
            "concurrency": concurrency,
            "timeout_s": timeout_s,
            "max_retries": max_retries,
            "cache_dir": cache,
        }
        gen = Generator(models=[GEN_MODEL], n=n, max_tokens=64, **client)
        judge = Judge(models=[JUDGE_MODEL], max_tokens=16, **client)
        start = time.perf_counter()
        out = ds.map(gen, batched=True, batch_size=batch_size, load_from_cache_file=False)
        out = out.map(judge, batched=True, batch_size=batch_size, load_from_cache_file=False)
        seconds = time.perf_counter() - start
        stats = server.stats(detail=True)
    problems, rows_failed, completions_failed, unscored = check_rows(ids, out)
    if stats["duplicates"]:
        problems.append(f"{stats['duplicates']} answered requests were sent and paid again")
    return SoakResult(prompts, len(out), rows_failed, completions_failed, unscored, stats, seconds, problems)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000, help="distinct requests (retries on top)")
    parser.add_argument("--fault-rate", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0, help="seed of the server's faults")
    parser.add_argument("-n", type=int, default=4, help="completions per prompt")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--timeout-s", type=float, default=1.0, help="client timeout per request")
    parser.add_argument("--stall-s", type=float, default=3.0, help="server stall (must exceed the timeout)")
    parser.add_argument("--max-retries", type=int, default=8)
    parser.add_argument("--retry-after-ms", type=float, default=50.0, help="Retry-After of the server's 429s")
    parser.add_argument(
        "--fault-kinds",
        default=",".join(DEFAULT_FAULT_KINDS),
        help=f"comma-separated, of {', '.join(FAULT_KINDS)}",
    )
    args = parser.parse_args()
    if args.stall_s <= args.timeout_s:
        parser.error("--stall-s must exceed --timeout-s: a stall is a request the client gives up on")
    result = soak(
        args.requests,
        fault_rate=args.fault_rate,
        seed=args.seed,
        n=args.n,
        concurrency=args.concurrency,
        timeout_s=args.timeout_s,
        stall_s=args.stall_s,
        max_retries=args.max_retries,
        retry_after_ms=args.retry_after_ms,
        fault_kinds=tuple(args.fault_kinds.split(",")),
    )
    print(
        f"soak: {args.requests:,} requests, {args.fault_rate:.0%} faults (seed {args.seed}), n={args.n}, "
        f"concurrency {args.concurrency}, timeout {args.timeout_s:g} s, stalls {args.stall_s:g} s, "
        f"max_retries {args.max_retries}"
    )
    for line in result.lines():
        print("  " + line)
    for problem in result.problems:
        print(f"  PROBLEM: {problem}")
    sys.exit(1 if result.problems else 0)


if __name__ == "__main__":
    main()
