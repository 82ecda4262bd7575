"""Unit tests of the pieces under the client: limiter (with a fake clock), error mapping, the transport
seam (a fake transport in place of HTTP), cache, routing."""

from __future__ import annotations

import asyncio
import collections
import inspect
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from hfpref.config import ModelSpec, ProviderConfig, load_config, parse_models
from hfpref.errors import (
    AuthenticationError,
    BadRequestError,
    ConfigError,
    HfprefError,
    ModelNotFoundError,
    RateLimitError,
    ServerError,
    redact,
    register_secret,
)
from hfpref.stages.concurrency import map_call
from hfpref.stages.generate import Generator, route
from hfpref.wire.cache import RequestCache, request_key
from hfpref.wire.client import ChatClient
from hfpref.wire.failures import error_status_from_body, json_or_raise, parse_retry_after, provider_error
from hfpref.wire.progress import Stats
from hfpref.wire.ratelimit import Backlog, ModelLimiter
from hfpref.wire.session import Session
from hfpref.wire.tasks import gather_all
from hfpref.wire.transport import Request


class FakeTime:
    """A clock that only moves when someone sleeps on it."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


def test_rpm_limit_spaces_requests_by_the_clock() -> None:
    t = FakeTime()

    async def main() -> list[float]:
        limiter = ModelLimiter(10, rpm=120, clock=t.clock, sleep=t.sleep)  # 2 per second
        stamps = []
        for _ in range(5):
            async with limiter.slot():
                stamps.append(t.now)
        return stamps

    stamps = asyncio.run(main())
    # capacity 2 (one second's worth), then one every 0.5 s
    assert stamps[:2] == [0.0, 0.0]
    assert stamps[2:] == pytest.approx([0.5, 1.0, 1.5])


def test_tpm_limit_waits_for_tokens_and_settles_actual_usage() -> None:
    t = FakeTime()

    async def main() -> float:
        limiter = ModelLimiter(10, tpm=600, clock=t.clock, sleep=t.sleep)  # 10 tokens/s, capacity 10
        async with limiter.slot(10):
            pass
        limiter.settle(10, 2)  # it used only 2: 8 come back
        async with limiter.slot(8):
            pass
        before = t.now
        async with limiter.slot(10):
            pass
        return t.now - before

    waited = asyncio.run(main())
    assert t.sleeps[0] == pytest.approx(1.0)  # the third request waited for a full bucket (0 → 10)
    assert waited == pytest.approx(1.0)


def test_429_pauses_the_model_and_halves_concurrency() -> None:
    t = FakeTime()

    async def main() -> tuple[float, float, float]:
        limiter = ModelLimiter(8, clock=t.clock, sleep=t.sleep, jitter=lambda: 0.5)
        limiter.in_flight = 8
        limiter.on_rate_limited(retry_after=3.0)
        cap_after = limiter.cap
        limiter.in_flight = 0
        async with limiter.slot():
            started = t.now
        for _ in range(100):
            limiter.on_success()
        return cap_after, started, limiter.cap

    cap_after, started, cap_recovered = asyncio.run(main())
    assert cap_after == 4.0
    assert started == pytest.approx(3.0 * (1 + 0.2 * 0.5))  # the pause, and a jittered share of it
    assert cap_recovered == 8.0


def test_requests_waiting_on_a_pause_return_spread_out_never_early() -> None:
    t = FakeTime()
    draws = iter([0.0, 0.25, 0.5, 0.99])

    async def sleep(seconds: float) -> None:  # concurrent sleepers: each wakes at its own time
        t.sleeps.append(seconds)
        start = t.now
        await asyncio.sleep(0)
        t.now = max(t.now, start + seconds)

    async def main() -> None:
        limiter = ModelLimiter(8, clock=t.clock, sleep=sleep, jitter=lambda: next(draws))
        limiter.in_flight = 8
        limiter.on_rate_limited(retry_after=10.0)  # the cap falls to 4
        limiter.in_flight = 0

        async def one() -> None:
            async with limiter.slot():
                pass

        await asyncio.gather(*(one() for _ in range(4)))

    asyncio.run(main())
    # each waiter, having seen the whole 10 s pause ahead, waits it plus its own share of up to 20%
    assert t.sleeps == pytest.approx([10.0, 10.5, 11.0, 11.98])


def test_concurrency_cap_is_respected() -> None:
    async def main() -> int:
        limiter = ModelLimiter(3)
        peak = 0

        async def worker() -> None:
            nonlocal peak
            async with limiter.slot():
                peak = max(peak, limiter.in_flight)
                await asyncio.sleep(0.001)

        await asyncio.gather(*(worker() for _ in range(20)))
        assert limiter.in_flight == 0
        return peak

    assert asyncio.run(main()) == 3


def test_backlog_admits_whole_batches_in_order_while_under_its_limit() -> None:
    async def scenario() -> list[str]:
        backlog = Backlog(limit=4)
        events: list[str] = []

        async def batch(name: str, size: int) -> None:
            await backlog.admit(size)
            events.append(f"{name} in (open {backlog.open})")

        await backlog.admit(3)  # batch a: 3 of 4
        waiting = [asyncio.create_task(batch(n, s)) for n, s in (("b", 5), ("c", 1), ("d", 1))]
        await asyncio.sleep(0)
        assert events == ["b in (open 8)"]  # b enters while under the limit: a batch is never split
        backlog.release(3)  # a done: still 5 open, c and d wait (first come, first served)
        await asyncio.sleep(0)
        assert events == ["b in (open 8)"]
        backlog.release(2)  # 3 open: c enters, which fills the backlog again
        await asyncio.sleep(0)
        assert events == ["b in (open 8)", "c in (open 4)"]
        backlog.release(1)
        await asyncio.wait_for(asyncio.gather(*waiting), 5)
        cancelled = asyncio.create_task(backlog.admit(1))
        await asyncio.sleep(0)
        cancelled.cancel()
        with pytest.raises(asyncio.CancelledError):
            await cancelled
        assert backlog.open == 4 and not backlog._waiters  # a cancelled wait leaves nothing behind
        return events

    assert asyncio.run(scenario()) == ["b in (open 8)", "c in (open 4)", "d in (open 4)"]


def test_an_admitted_batch_is_released_exactly_once_when_a_row_fails() -> None:
    async def scenario() -> int:
        backlog = Backlog(limit=4)
        with pytest.raises(ValueError):
            async with backlog.batch(3) as admitted:
                admitted.done()  # row 0 finished
                assert backlog.open == 2
                raise ValueError("row 1 failed")  # rows 1 and 2 are released on the way out
        assert backlog.open == 0
        admitted.done()  # a sibling row finishing after the failure releases nothing more
        return backlog.open

    assert asyncio.run(scenario()) == 0


def test_gather_all_raises_the_failure_itself_once_the_others_have_ended() -> None:
    ended: list[str] = []

    async def answer(name: str, delay: float, error: Exception | None = None) -> str:
        try:
            await asyncio.sleep(delay)
        finally:
            ended.append(name)
        if error:
            raise error
        return name

    async def main() -> None:
        assert await gather_all(answer("a", 0.01), answer("b", 0)) == ["a", "b"]
        ended.clear()
        with pytest.raises(AuthenticationError):  # the error as raised, not an ExceptionGroup
            await gather_all(answer("slow", 10), answer("401", 0, AuthenticationError("401")))
        assert sorted(ended) == ["401", "slow"]  # the slow one was cancelled and has ended
        ended.clear()
        with pytest.raises(BadRequestError, match="first row"):  # in argument order, not time order
            await gather_all(
                answer("first", 0.02, BadRequestError("first row")),
                answer("second", 0, BadRequestError("second row")),
                in_order=True,
            )
        assert sorted(ended) == ["first", "second"]

    asyncio.run(main())


def test_map_call_ends_the_calls_of_one_map_together_and_leaves_other_maps_alone() -> None:
    @map_call
    async def batch(stage: object, delay: float, error: Exception | None = None) -> str:
        await asyncio.sleep(delay)
        if error:
            raise error
        return "done"

    async def main() -> None:
        stage, other = object(), object()
        slow = asyncio.create_task(batch(stage, 10))
        failing = asyncio.create_task(batch(stage, 0.01, AuthenticationError("401")))
        elsewhere = asyncio.create_task(batch(other, 0.05))
        seen_at_failure: list[bool] = []
        failing.add_done_callback(lambda _: seen_at_failure.append(slow.done()))
        results = await asyncio.gather(slow, failing, elsewhere, return_exceptions=True)
        assert seen_at_failure == [True]  # the failing call ended only once its sibling had
        assert isinstance(results[1], AuthenticationError)
        assert results[0] is results[1]  # the cancelled sibling raises the failure, not CancelledError
        assert results[2] == "done"  # another map function's call is not touched
        assert await batch(stage, 0) == "done"  # the next map of the same stage starts afresh

    asyncio.run(main())


@pytest.mark.parametrize(
    ("status", "body", "cls"),
    [
        (401, b'{"error": {"message": "bad key", "code": 401}}', AuthenticationError),
        (403, b'{"error": {"message": "no", "code": "403"}}', AuthenticationError),
        (404, b'{"error": {"message": "model not found"}}', ModelNotFoundError),
        (400, b'{"detail": "bad field"}', BadRequestError),
        (422, b"unprocessable", BadRequestError),
        (
            429,
            b'{"error": {"code": 429, "message": "slow down", "metadata": {"raw": "upstream"}}}',
            RateLimitError,
        ),
        (500, b"", ServerError),
        (502, b"<html><body>Bad gateway</body></html>", ServerError),
    ],
)
def test_provider_error_mapping(status: int, body: bytes, cls: type) -> None:
    error = provider_error(status, {}, body, "m/x")
    assert type(error) is cls
    assert error.retryable == (status in (429, 500, 502))
    assert str(error).startswith(f"m/x: HTTP {status}")
    assert "\n" not in str(error)


def test_html_body_is_summarised_not_dumped() -> None:
    error = provider_error(502, {}, b"<html>" + b"x" * 5000 + b"</html>", "m")
    assert "HTML page" in str(error)
    assert len(str(error)) < 200


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"error": {"code": 429}}, 429),
        ({"error": {"code": "429"}}, 429),
        ({"error": {"code": "rate_limited"}}, 429),
        ({"error": {"code": "invalid_api_key"}}, 401),
        ({"error": {"message": "?"}}, 502),
    ],
)
def test_error_status_from_openrouter_body(body: dict, status: int) -> None:
    assert error_status_from_body(body) == status


def test_retry_after_headers() -> None:
    assert parse_retry_after({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    assert parse_retry_after({"retry-after": "2"}) == 2.0
    assert parse_retry_after({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}, now=1445412470.0) == 10.0
    assert parse_retry_after({}) is None


def test_secrets_are_redacted_from_errors() -> None:
    key = "sk-or-v1-0123456789abcdef0123456789abcdef"
    register_secret(key)
    assert key not in redact(f"Incorrect API key provided: {key}")
    error = provider_error(401, {}, f'{{"error": {{"message": "key {key[:20]}... rejected"}}}}'.encode(), "m")
    assert key[:20] not in str(error)


class FakeTransport:
    """An endpoint in a test, as httpx's MockTransport: ``handler`` answers each request (or raises)."""

    def __init__(self, handler: Callable[[Request], dict[str, Any]]) -> None:
        self.handler = handler
        self.requests: list[Request] = []
        self.closed = 0

    async def send(self, request: Request) -> dict[str, Any]:
        self.requests.append(request)
        return self.handler(request)

    async def aclose(self) -> None:
        self.closed += 1


def _answer(*texts: str) -> bytes:
    choices = [{"index": i, "message": {"content": t}, "finish_reason": "stop"} for i, t in enumerate(texts)]
    return orjson.dumps({"choices": choices, "usage": {"prompt_tokens": 4, "completion_tokens": 2}})


def _complete(client: ChatClient, samples: list[int]) -> tuple[list[dict[str, Any]], Session]:
    """The records of ``samples`` of one prompt, and the session they were asked in (closed now)."""

    async def main() -> tuple[list[dict[str, Any]], Session]:
        async with client.open() as session, session.backlog.batch(1):
            messages = [{"role": "user", "content": "hi"}]
            return await client.complete(session, "m/a", messages, {}, samples), session

    return asyncio.run(main())


def test_a_transport_answers_the_client_in_place_of_http() -> None:
    fake = FakeTransport(lambda request: json_or_raise(200, {}, _answer("a", "b"), request.model))
    provider = ProviderConfig(base_url="http://127.0.0.1:9/v1")
    client = ChatClient(provider, [ModelSpec("m/a")], 4, RequestCache(None), Stats("t"), transport=fake)
    records, _ = _complete(client, [0, 1])
    assert [r["text"] for r in records] == ["a", "b"]
    assert [r["completion_tokens"] for r in records] == [1, 1]  # each its share of the answer
    (request,) = fake.requests  # both samples in one request, with n
    assert request.url == "http://127.0.0.1:9/v1/chat/completions"
    assert orjson.loads(request.body) == {
        "model": "m/a",
        "messages": [{"role": "user", "content": "hi"}],
        "n": 2,
    }
    assert fake.closed == 1  # the loop's last user left: the transport closed what the loop held


def test_a_transports_typed_errors_drive_limits_and_retries() -> None:
    t = FakeTime()
    answers = iter(
        [
            (429, {"retry-after": "2"}, b'{"error": {"message": "slow down"}}'),
            (200, {}, b'{"error": {"code": "rate_limited", "message": "slow down"}}'),  # OpenRouter's way
            (200, {}, _answer("finally")),
        ]
    )
    fake = FakeTransport(lambda request: json_or_raise(*next(answers), request.model))
    client = ChatClient(
        ProviderConfig(base_url="http://127.0.0.1:9/v1"),
        [ModelSpec("m/a")],
        4,
        RequestCache(None),
        Stats("t"),
        transport=fake,
        clock=t.clock,
        sleep=t.sleep,
        jitter=lambda: 0.0,
        backoff=lambda state: 0.5,  # type: ignore[arg-type]
    )
    (record,), session = _complete(client, [0])
    assert record["text"] == "finally" and len(fake.requests) == 3
    assert client.stats.retries == 2
    assert session.limiters["m/a"].cap == 2.0  # the 429s halved the cap to 1, the answer raised it by 1
    assert t.sleeps == [2.0, 0.5]  # Retry-After as asked (no jitter drawn), then the backoff


def test_cache_key_depends_on_what_decides_the_answer(tmp_path: Path) -> None:
    messages = [{"role": "user", "content": "hi"}]
    base = request_key("u", "m", messages, {"temperature": 0.5, "max_tokens": 10}, 0)
    assert base == request_key("u", "m", messages, {"max_tokens": 10, "temperature": 0.5}, 0)
    assert base != request_key("u", "m", messages, {"temperature": 0.5, "max_tokens": 11}, 0)
    assert base != request_key("u", "m", messages, {"temperature": 0.5, "max_tokens": 10}, 1)
    assert base != request_key("u", "m2", messages, {"temperature": 0.5, "max_tokens": 10}, 0)
    cache = RequestCache(tmp_path / "c.sqlite")
    cache.put_many([(base, {"text": "a"})])
    again = RequestCache(tmp_path / "c.sqlite")  # another process would open it like this
    assert again.get(base) == {"text": "a"}
    assert again.get_many([base, "missing"]) == {base: {"text": "a"}}
    assert RequestCache(None).get(base) is None


def test_answers_are_committed_by_the_end_of_the_loop_turn(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    cache, reader = RequestCache(path), RequestCache(path)  # the reader stands for a later process

    async def turn() -> tuple[dict, dict]:
        cache.put_soon([("k1", {"text": "a"})])
        cache.put_soon([("k2", {"text": "b"})])  # same turn: the same transaction
        before = reader.get_many(["k1", "k2"])
        await asyncio.sleep(0)  # the loop's next turn runs the flush before anything else
        return before, reader.get_many(["k1", "k2"])

    before, after = asyncio.run(turn())
    assert before == {}
    assert after == {"k1": {"text": "a"}, "k2": {"text": "b"}}

    # A loop stopped before its turn ended (datasets' run_until_complete): the next put, on another
    # loop, commits what the old loop held; close() commits the rest.
    async def put(key: str, stop: bool = False) -> None:
        if stop:
            asyncio.get_running_loop().stop()  # the loop ends with this turn, before the flush
        cache.put_soon([(key, {"text": key})])

    first = asyncio.new_event_loop()
    first.run_until_complete(put("k3", stop=True))
    assert reader.get("k3") is None
    second = asyncio.new_event_loop()
    second.run_until_complete(put("k4"))
    assert reader.get("k3") == {"text": "k3"}
    cache.close()
    assert reader.get("k4") == {"text": "k4"}
    first.close()
    second.close()


def test_routing_is_deterministic_and_follows_weights() -> None:
    models = parse_models({"a": 3, "b": 1})
    first = [route(models, 0, f"p{i}".encode(), 4) for i in range(500)]
    assert first == [route(models, 0, f"p{i}".encode(), 4) for i in range(500)]
    assert first != [route(models, 1, f"p{i}".encode(), 4) for i in range(500)]
    share = collections.Counter(m for r in first for m in r)
    assert 0.70 < share["a"] / 2000 < 0.80


def test_generator_is_a_picklable_coroutine_function() -> None:
    gen = Generator(models=["x/y"], n=2, base_url="http://127.0.0.1:9/v1")
    assert inspect.iscoroutinefunction(gen)
    clone = pickle.loads(pickle.dumps(gen))
    assert type(clone) is Generator
    assert clone.spec == gen.spec


def test_model_parsing_and_config_errors(tmp_path: Path) -> None:
    assert parse_models(["a=2", "b"]) == [ModelSpec("a", 2.0), ModelSpec("b", 1.0)]
    with pytest.raises(ConfigError, match="ID=WEIGHT"):
        parse_models(["a=heavy"])
    with pytest.raises(ConfigError, match="listed once"):
        parse_models(["a", "a=2"])
    bad = tmp_path / "bad.toml"
    bad.write_text("[generate]\nn = 0\n")
    with pytest.raises(ConfigError, match=r"generate.n must be an integer >= 1, got 0"):
        load_config(bad)
    bad.write_text("[generate]\nnn = 3\n")
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['nn'\]"):
        load_config(bad)
    bad.write_text("[generat]\n")
    with pytest.raises(ConfigError, match="unknown section"):
        load_config(bad)
    bad.write_text("[generate\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)
    assert issubclass(ConfigError, HfprefError) and ConfigError.exit_code == 2


def test_a_priced_request_reserves_its_prompt_at_the_input_price_and_max_tokens_at_the_output_price(
    tmp_path: Path,
) -> None:
    from hfpref.wire.budget import Ledger

    ledger = Ledger(100.0, tmp_path / "budget.sqlite", "job")
    reserved: list[float] = []

    def handler(request: Request) -> dict[str, Any]:  # the ledger as it stands while the request is out
        reserved.append(ledger._db.execute("SELECT reserved FROM ledger").fetchone()[0])
        return json_or_raise(200, {}, _answer("a", "b"), request.model)

    spec = ModelSpec("m/a", price_in=1.0, price_out=3.0)  # USD per million tokens
    provider = ProviderConfig(base_url="http://127.0.0.1:9/v1")
    client = ChatClient(
        provider, [spec], 4, RequestCache(None), Stats("t"), budget=ledger, transport=FakeTransport(handler)
    )

    async def main() -> int:
        async with client.open() as session, session.backlog.batch(1):
            await client.complete(
                session, "m/a", [{"role": "user", "content": "hi"}], {"max_tokens": 50}, [0, 1]
            )
        return len(
            orjson.dumps(
                {"model": "m/a", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 50, "n": 2}
            )
        )

    body_bytes = asyncio.run(main())
    prompt_bound = body_bytes // 3  # PROMPT_BYTES_PER_TOKEN: an upper bound of the prompt's tokens
    assert reserved == [pytest.approx((prompt_bound * 1.0 + 50 * 2 * 3.0) / 1e6)]
