"""Sharp checks of the fake OpenAI server that every client test relies on."""

from __future__ import annotations

import http.client
import time
from typing import Any
from urllib.parse import urlsplit

import orjson
import pytest

from tests.fake_openai import (
    FakeOpenAI,
    cut,
    default_content,
    drop,
    html,
    ok,
    openrouter_error,
    request_key,
    slow,
    spawn,
    status,
    truncated,
)

pytest_plugins = ["tests.fake_openai"]  # the fake_openai fixture

BODY = {"model": "fake/model-a", "messages": [{"role": "user", "content": "two plus two"}]}


def call(
    base_url: str,
    body: Any = BODY,
    *,
    key: str | None = None,
    path: str = "/chat/completions",
    timeout: float = 5.0,
) -> tuple[int, dict[str, str], bytes]:
    url = urlsplit(base_url)
    conn = http.client.HTTPConnection(url.hostname or "", url.port, timeout=timeout)
    headers = {"Content-Type": "application/json"} | ({"Authorization": f"Bearer {key}"} if key else {})
    try:
        if body is None:
            conn.request("GET", url.path + path, headers=headers)
        else:
            conn.request("POST", url.path + path, body=orjson.dumps(body), headers=headers)
        response = conn.getresponse()
        return response.status, dict(response.headers), response.read()
    finally:
        conn.close()


def test_script_is_consumed_in_order_and_duplicates_are_counted(fake_openai: FakeOpenAI) -> None:
    fake_openai.script(status(429, retry_after=2), html(502), ok("scripted"))
    first = call(fake_openai.base_url)
    assert first[0] == 429 and first[1]["Retry-After"] == "2"
    assert orjson.loads(first[2])["error"]["message"]
    second = call(fake_openai.base_url)
    assert second[0] == 502 and second[2].startswith(b"<html>")
    answers = [orjson.loads(call(fake_openai.base_url)[2]) for _ in range(2)]
    assert answers[0]["choices"][0]["message"]["content"] == "scripted"
    assert answers[1]["choices"][0]["message"]["content"] == default_content(BODY, 0)
    assert fake_openai.requests == 4 and fake_openai.ok == 2
    assert fake_openai.by_status == {429: 1, 502: 1, 200: 2}
    assert fake_openai.duplicates() == {request_key(BODY): 2}
    assert fake_openai.stats()["duplicates"] == 1


def test_default_answers_are_deterministic_per_sample_and_report_usage() -> None:
    with FakeOpenAI(cost_per_token=0.001) as fake:
        body = {**BODY, "n": 3, "seed": 7}
        once, again = (orjson.loads(call(fake.base_url, body)[2]) for _ in range(2))
        other_seed = orjson.loads(call(fake.base_url, {**body, "seed": 8})[2])
    contents = [c["message"]["content"] for c in once["choices"]]
    assert contents == [c["message"]["content"] for c in again["choices"]]
    assert len(set(contents)) == 3 and contents[2].endswith("#2")
    assert contents[0] != other_seed["choices"][0]["message"]["content"]
    assert once["choices"][0]["finish_reason"] == "stop"
    assert once["usage"] == {"prompt_tokens": 3, "completion_tokens": 9, "total_tokens": 12, "cost": 0.012}
    assert fake.cost == pytest.approx(0.036) and fake.completion_tokens == 27


def test_n_rejection_unknown_model_and_auth_come_before_the_script() -> None:
    with FakeOpenAI(api_key="sk-test-key", models={"fake/model-a"}, reject_n=True) as fake:
        fake.script(ok("kept for the valid request"))
        unauthorised = call(fake.base_url, key="wrong")
        assert unauthorised[0] == 401
        assert orjson.loads(unauthorised[2])["error"]["code"] == "invalid_api_key"
        assert call(fake.base_url)[0] == 401
        assert call(fake.base_url, None, path="/models")[0] == 401
        assert call(fake.base_url, {**BODY, "model": "nope"}, key="sk-test-key")[0] == 404
        assert call(fake.base_url, {**BODY, "n": 2}, key="sk-test-key")[0] == 400
        assert call(fake.base_url, {"messages": []}, key="sk-test-key")[0] == 400
        models = orjson.loads(call(fake.base_url, None, key="sk-test-key", path="/models")[2])
        assert [m["id"] for m in models["data"]] == ["fake/model-a"]
        answer = orjson.loads(call(fake.base_url, key="sk-test-key")[2])
    assert answer["choices"][0]["message"]["content"] == "kept for the valid request"
    assert fake.by_status == {401: 2, 404: 1, 400: 2, 200: 1} and fake.ok == 1


def test_broken_answers_are_not_paid(fake_openai: FakeOpenAI) -> None:
    fake_openai.script(openrouter_error("429"), truncated(), drop(), cut())
    status_code, _, body = call(fake_openai.base_url)
    assert status_code == 200 and orjson.loads(body)["error"]["code"] == "429"
    status_code, _, body = call(fake_openai.base_url)
    assert status_code == 200
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(body)
    with pytest.raises(http.client.RemoteDisconnected):
        call(fake_openai.base_url)
    with pytest.raises(http.client.IncompleteRead):
        call(fake_openai.base_url)
    assert fake_openai.ok == 0 and not fake_openai.paid
    assert fake_openai.by_kind == {"raw": 1, "truncated": 1, "drop": 1, "cut": 1}


def test_responder_sees_the_request_and_a_timed_out_request_is_abandoned(fake_openai: FakeOpenAI) -> None:
    fake_openai.responder = lambda body: ok("[[A]]") if "judge" in body["messages"][0]["content"] else None
    judged = {**BODY, "messages": [{"role": "user", "content": "please judge"}]}
    assert orjson.loads(call(fake_openai.base_url, judged)[2])["choices"][0]["message"]["content"] == "[[A]]"
    assert b"answer " in call(fake_openai.base_url)[2]
    fake_openai.script(slow(2.0))
    with pytest.raises(TimeoutError):
        call(fake_openai.base_url, timeout=0.2)
    deadline = time.monotonic() + 2
    while fake_openai.abandoned == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert fake_openai.abandoned == 1 and fake_openai.ok == 2
    assert [r.body["messages"][0]["content"] for r in fake_openai.received][:2] == [
        "please judge",
        "two plus two",
    ]


def test_random_faults_repeat_with_the_seed() -> None:
    def statuses(seed: int) -> list[int]:
        with FakeOpenAI() as fake:
            fake.faults(0.5, seed, kinds=("429", "500"))
            return [call(fake.base_url)[0] for _ in range(30)]

    first = statuses(1)
    assert first == statuses(1) != statuses(2)
    assert {429, 500, 200} == set(first)


def test_subprocess_mode_scripts_and_reports_stats() -> None:
    with spawn("--latency-ms", "10", "--reject-n") as proc:
        proc.script(status(503))
        assert call(proc.base_url)[0] == 503
        assert call(proc.base_url, {**BODY, "n": 2})[0] == 400
        assert call(proc.base_url)[0] == 200
        stats = proc.stats(detail=True)
    assert stats["requests"] == 3 and stats["ok"] == 1
    assert stats["by_status"] == {"503": 1, "400": 1, "200": 1}
    assert stats["paid"] == {request_key(BODY): 1}
