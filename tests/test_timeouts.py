"""Timeouts and unreachable endpoints: a stalled answer is given up after the read timeout, not the
total; an endpoint that refuses every connection stops the run within seconds with one line; waits
on Retry-After are jittered, never shorter than asked."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from datasets import Dataset
from tenacity import RetryCallState

from hfpref.cli import cli
from hfpref.config import ProviderConfig
from hfpref.errors import ConfigError, EndpointUnreachable, RateLimitError
from hfpref.stages.generate import Generator
from hfpref.wire.failures import ConnectionRefused
from hfpref.wire.ratelimit import wait_retry_after
from hfpref.wire.transport import UNREACHABLE_AFTER_S, HTTPTransport
from tests.fake_openai import FakeOpenAI, ok, slow


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _prompts(k: int) -> Dataset:
    return Dataset.from_dict({"prompt": [f"question {i}" for i in range(k)]})


def test_a_refused_endpoint_stops_the_map_within_seconds() -> None:
    url = f"http://127.0.0.1:{_closed_port()}/v1"
    started = time.monotonic()
    with pytest.raises(EndpointUnreachable, match=r"connect.*never answered; is the server running"):
        _prompts(20).map(Generator(models=["m/a"], base_url=url, n=2), batched=True)
    elapsed = time.monotonic() - started
    assert UNREACHABLE_AFTER_S <= elapsed < UNREACHABLE_AFTER_S + 10  # not max_retries of backoff


def test_the_cli_says_so_in_one_line(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"prompt": f"q{i}"}) + "\n" for i in range(5)))
    url = f"http://127.0.0.1:{_closed_port()}/v1"
    result = CliRunner().invoke(
        cli, ["generate", str(source), "-o", str(tmp_path / "out.jsonl"), "--model", "m/a", "--base-url", url]
    )
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert (
        lines[-1].startswith(f"hfpref: error: m/a: {url}/chat/completions: ")
        and "never answered" in lines[-1]
    )
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out.jsonl").exists()


def test_an_endpoint_that_answered_once_is_retried_as_usual() -> None:
    clock = [100.0]
    transport = HTTPTransport(ProviderConfig(base_url="http://127.0.0.1:9/v1"), 1, clock=lambda: clock[0])
    url = "http://127.0.0.1:9/v1/chat/completions"
    refused = ConnectionRefused("cannot connect: Connection refused", model="m/a")
    transport.check_reachable(url, refused)  # the first refusal starts the clock
    clock[0] += UNREACHABLE_AFTER_S - 0.1
    transport.check_reachable(url, refused)
    clock[0] += 0.2
    with pytest.raises(EndpointUnreachable, match=r"Connection refused for 3 s"):
        transport.check_reachable(url, refused)
    transport._endpoints[url].answered = True  # e.g. a server restarting mid-run: retried, never fatal
    clock[0] += 100
    transport.check_reachable(url, refused)


def test_a_stalled_answer_is_given_up_after_the_read_timeout() -> None:
    provider = ProviderConfig(timeout_s=20, read_timeout_s=0.5, max_retries=2)
    with FakeOpenAI() as fake:
        fake.script(slow(30), ok("finally"))
        provider.base_url = fake.base_url
        started = time.monotonic()
        out = _prompts(1).map(Generator(models=["m/a"], n=1, provider=provider), batched=True)
        elapsed = time.monotonic() - started
        assert fake.requests == 2 and fake.stats()["abandoned"] == 1
    assert out[0]["completions"] == ["finally"]
    assert elapsed < 10  # the read timeout, not the 20 s total, nor the stall


def test_retry_after_waits_are_jittered_never_shorter() -> None:
    draws = iter([0.0, 0.5, 1.0])
    wait = wait_retry_after(fallback=lambda state: 99.0, jitter=lambda: next(draws))  # type: ignore[arg-type]

    def after(seconds: float) -> float:
        state = RetryCallState(None, None, (), {})  # type: ignore[arg-type]
        state.set_exception((RateLimitError, RateLimitError("slow down", retry_after=seconds), None))
        return wait(state)

    assert [after(10.0), after(10.0), after(10.0)] == pytest.approx([10.0, 11.0, 12.0])


def test_timeout_defaults_suit_a_slow_llm_and_are_checked() -> None:
    provider = ProviderConfig()
    assert provider.connect_timeout_s <= 10 and provider.read_timeout_s <= provider.timeout_s <= 300
    assert provider.max_retry_time_s <= 900  # a stalled endpoint holds a request minutes, not 90
    with pytest.raises(ConfigError, match=r"provider.read_timeout_s must be a number of seconds > 0, got 0"):
        ProviderConfig(read_timeout_s=0)
