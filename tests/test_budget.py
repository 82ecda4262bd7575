"""``max_cost`` as a hard cap: the ledger (hfpref.budget), the Python API's BudgetExhausted, and the CLI
at any concurrency and ``num_proc``, against the fake OpenAI-compatible server."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from datasets import Dataset

from hfpref.cli import cli
from hfpref.errors import BudgetExhausted, ConfigError
from hfpref.stages.generate import Generator
from hfpref.wire.budget import Ledger
from tests.fake_openai import FakeOpenAI

CAP = 0.10
PER_TOKEN = 0.001  # the fake's usage.cost per (prompt + completion) word
# one request: a 2-word prompt and n=4 answers of 3 words ("answer <hash> #i") at PER_TOKEN
ONE_REQUEST = (2 + 4 * 3) * PER_TOKEN


async def _no_sleep(seconds: float) -> None:
    await asyncio.sleep(0)


def test_the_ledger_is_shared_by_every_process_of_a_job(tmp_path: Path) -> None:
    a = Ledger(1.0, tmp_path / "b.sqlite", "job")
    b = Ledger(1.0, tmp_path / "b.sqlite", "job")  # another num_proc worker, or the judge stage
    other = Ledger(1.0, tmp_path / "b.sqlite", "another job")

    async def scenario() -> None:
        # nothing known about the price yet: the first request goes alone, reserving nothing
        assert await a.reserve("m", 100, 1, None, _no_sleep) == 0.0
        waiting = asyncio.ensure_future(b.reserve("m", 100, 1, None, _no_sleep))
        for _ in range(20):
            await asyncio.sleep(0)
        assert not waiting.done()  # b waits for a's answer to learn what a request costs
        a.settle(0.0, 0.3, "m", 100, 1)  # 0.3 for 100 tokens: 0.003 per token
        assert await waiting == pytest.approx(0.3)
        # 0.3 spent + 0.3 reserved: another 0.3 fits under 1.0, a fourth does not while those are open
        assert await a.reserve("m", 100, 1, None, _no_sleep) == pytest.approx(0.3)
        fourth = asyncio.ensure_future(b.reserve("m", 100, 1, None, _no_sleep))
        for _ in range(20):
            await asyncio.sleep(0)
        assert not fourth.done()
        b.release(0.3)  # a request that got no answer: nothing spent
        assert await fourth == pytest.approx(0.3)
        a.settle(0.3, 0.5, "m", 100, 1)
        b.settle(0.3, 0.25, "m", 100, 1)
        assert a.spent() == pytest.approx(1.05)  # over the cap by less than one request
        with pytest.raises(BudgetExhausted, match=r"budget of \$1 reached \(\$1\.0500 spent\)") as info:
            await b.reserve("m", 100, 4, None, _no_sleep)
        assert info.value.spent == pytest.approx(1.05) and info.value.limit == 1.0
        assert a.refused() == 4  # completions, in every process's count
        assert await other.reserve("m", 100, 1, None, _no_sleep) == 0.0  # other jobs are not touched

    asyncio.run(scenario())


def test_configured_prices_bound_the_reservation(tmp_path: Path) -> None:
    ledger = Ledger(0.01, tmp_path / "b.sqlite", "job")

    async def scenario() -> None:
        assert await ledger.reserve("m", 1000, 2, 0.004, _no_sleep) == pytest.approx(0.004)
        assert await ledger.reserve("m", 1000, 2, 0.004, _no_sleep) == pytest.approx(0.004)
        third = asyncio.ensure_future(ledger.reserve("m", 1000, 2, 0.004, _no_sleep))
        for _ in range(20):
            await asyncio.sleep(0)
        assert not third.done()  # 0.012 would not fit under 0.01 while two are in flight
        ledger.settle(0.004, 0.001, "m", 50, 2)
        assert await third == pytest.approx(0.004)

    asyncio.run(scenario())


def _prompts(k: int) -> Dataset:
    return Dataset.from_dict({"id": list(range(k)), "prompt": [f"question {i}" for i in range(k)]})


def _generator(fake: FakeOpenAI, max_cost: float, **kwargs: object) -> Generator:
    return Generator(
        models=["m/a"], n=4, max_tokens=8, concurrency=64, base_url=fake.base_url, max_cost=max_cost, **kwargs
    )  # type: ignore[arg-type]


def test_the_python_api_raises_budget_exhausted_within_one_request_of_the_cap() -> None:
    with FakeOpenAI(cost_per_token=PER_TOKEN, latency_s=0.05) as fake:
        with pytest.raises(BudgetExhausted) as info:
            _prompts(200).map(_generator(fake, CAP), batched=True, batch_size=16)
        paid = fake.stats()["cost"]
        assert CAP <= paid <= CAP + ONE_REQUEST + 1e-9  # a hard cap, at 64 requests in flight
        assert info.value.spent == pytest.approx(paid)  # the real spend, not the cap
        assert f"(${paid:.4f} spent)" in str(info.value)
        answered = fake.ok

        out = _prompts(200).map(_generator(fake, 100.0), batched=True, batch_size=16)
        assert all(len(c) == 4 and None not in c for c in out["completions"])
        assert not fake.duplicates()  # what arrived before the stop was cached: nothing paid twice
        assert fake.ok == 200  # one request per prompt in all
        assert sum(m["cached"] for row in out["generation"] for m in row) == 4 * answered


def test_on_budget_null_keeps_the_finished_rows() -> None:
    with FakeOpenAI(cost_per_token=PER_TOKEN, latency_s=0.02) as fake:
        out = _prompts(60).map(_generator(fake, CAP, on_budget="null"), batched=True, batch_size=8)
        paid = fake.stats()["cost"]
    assert paid <= CAP + ONE_REQUEST + 1e-9
    finished = [None not in c for c in out["completions"]]
    assert 0 < sum(finished) < 60
    assert sum(finished) == fake.ok  # a row is complete exactly when its request was answered
    errors = {m["error"] for row in out["generation"] for m in row if m["error"]}
    assert errors and all(e.startswith(f"budget of ${CAP:g} reached") for e in errors)


def _write_prompts(path: Path, k: int) -> Path:
    path.write_text("".join(json.dumps({"id": i, "prompt": f"question {i}"}) + "\n" for i in range(k)))
    return path


@pytest.mark.parametrize("num_proc", [1, 4])
def test_the_cli_keeps_the_cap_across_processes_and_says_the_real_spend(
    tmp_path: Path, num_proc: int
) -> None:
    with FakeOpenAI(cost_per_token=PER_TOKEN, latency_s=0.05) as fake:
        out = tmp_path / "out.jsonl"
        args = [
            "generate", str(_write_prompts(tmp_path / "in.jsonl", 300)), "-o", str(out), "--model", "m/a",
            "-n", "4", "--max-tokens", "8", "--concurrency", "64", "--base-url", fake.base_url,
            "--num-proc", str(num_proc),
        ]  # fmt: skip
        result = CliRunner().invoke(cli, [*args, "--max-cost", str(CAP)])
        paid = fake.stats()["cost"]
    assert result.exit_code == 1, result.output
    assert CAP <= paid <= CAP + ONE_REQUEST + 1e-9
    line = result.stderr.strip().splitlines()[-1]
    match = re.fullmatch(
        rf"hfpref: error: budget of \$0\.1 reached \(\$(?P<spent>[\d.]+) spent\); (?P<kept>\d+) of 1200 "
        rf"completions are in {re.escape(str(out))}, (?P<unsent>\d+) were not sent: rerun with a higher "
        r"--max-cost to finish \(finished requests are cached\)",
        line,
    )
    assert match, line
    assert float(match["spent"]) == pytest.approx(paid, abs=5e-5)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    kept = sum(c is not None for r in rows for c in r["completions"])
    assert int(match["kept"]) == kept == 4 * fake.ok
    assert int(match["unsent"]) == 1200 - kept


def test_a_cap_on_answers_without_a_cost_asks_for_prices_and_pays_nothing_twice() -> None:
    with FakeOpenAI(latency_s=0.01) as fake:  # no usage.cost, and no prices configured
        gen = Generator(models=["m/a"], n=1, max_tokens=8, base_url=fake.base_url, max_cost=1.0)
        with pytest.raises(
            ConfigError, match=r"model m/a: its answers report no cost .* set price_in and price_out"
        ):
            _prompts(20).map(gen, batched=True, batch_size=4)
        assert fake.requests == 1  # nothing known about the price: the first request went alone
        priced = {"id": "m/a", "price_in": 1.0, "price_out": 1.0}
        out = _prompts(20).map(
            Generator(models=[priced], n=1, max_tokens=8, base_url=fake.base_url, max_cost=1.0), batched=True
        )
        assert None not in [c[0] for c in out["completions"]]
        assert fake.requests == 20 and not fake.duplicates()  # the first answer had been cached
