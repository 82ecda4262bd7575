"""Answers as real providers send them, normalised at one point (hfpref.answers): odd usage, refusals,
content filters, empty answers, reasoning, lone surrogates. Each case checks the data, that nothing
crashes, and what a rerun pays (the request cache)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from datasets import Dataset

from hfpref.errors import MalformedResponseError
from hfpref.stages.generate import Generator
from hfpref.wire import answers
from tests.fake_openai import FakeOpenAI, raw


def _body(message: dict[str, Any], finish_reason: str | None = "stop", usage: Any = None) -> str:
    data: dict[str, Any] = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "choices": [
            {"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish_reason}
        ],
    }
    if usage is not None:
        data["usage"] = usage
    return orjson.dumps(data).decode()


def _ok(content: str = "fine", **usage: Any) -> str:
    return _body({"content": content}, usage=usage or {"prompt_tokens": 3, "completion_tokens": 1})


def _run(fake: FakeOpenAI, *, k: int = 1, **options: Any) -> Dataset:
    options.setdefault("max_retries", 2)
    gen = Generator(models=["m/a"], n=1, base_url=fake.base_url, **options)
    ds = Dataset.from_dict({"prompt": [f"question {i}" for i in range(k)]})
    return ds.map(gen, batched=True)


def _twice(fake: FakeOpenAI, first: str, **options: Any) -> tuple[dict[str, Any], dict[str, Any], int]:
    """The row of a run whose only request is answered with ``first``, the same row on a rerun, and the
    requests the rerun sent (the fake answers any of them normally)."""
    fake.script(raw(200, first))
    row = _run(fake, **options)[0]
    before = fake.requests
    again = _run(fake, **options)[0]
    return row, again, fake.requests - before


@pytest.mark.parametrize(
    ("usage", "expected"),
    [
        ({"prompt_tokens": "12", "completion_tokens": "30", "cost": "0.0042"}, (12, 30, 0.0042)),
        ({"prompt_tokens": 12.0, "completion_tokens": 30, "cost": 0.0042}, (12, 30, 0.0042)),
        ([12, 30], (None, None, None)),
        ("n/a", (None, None, None)),
        ({"prompt_tokens": "twelve", "completion_tokens": -3, "cost": "NaN"}, (None, None, None)),
        ({"prompt_tokens": True, "completion_tokens": None, "cost": float("inf")}, (None, None, None)),
    ],
)
def test_odd_usage_is_read_or_recorded_as_unknown_never_a_crash(
    usage: Any, expected: tuple[Any, ...]
) -> None:
    with FakeOpenAI() as fake:
        body = orjson.dumps(
            {
                "choices": [{"index": 0, "message": {"content": "fine"}, "finish_reason": "stop"}],
                "usage": usage,
            },
            option=orjson.OPT_SERIALIZE_NUMPY,
        ).decode()
        row, again, resent = _twice(fake, body)
    meta = row["generation"][0]
    assert row["completions"] == ["fine"]
    assert (meta["prompt_tokens"], meta["completion_tokens"], meta["cost"]) == expected  # unknown, never 0
    assert again["completions"] == ["fine"] and again["generation"][0]["cached"]
    assert resent == 0  # the answer was cached: the rerun pays nothing


def test_a_refusal_keeps_its_text_and_is_never_paid_again() -> None:
    with FakeOpenAI() as fake:
        refusal = _body({"content": None, "refusal": "I can't help with that."}, usage={"cost": 0.001})
        row, again, resent = _twice(fake, refusal)
    meta = row["generation"][0]
    assert row["completions"] == [None]
    assert meta["refusal"] == "I can't help with that." and "refused" in meta["error"]
    assert meta["cost"] == pytest.approx(0.001)  # paid for
    assert resent == 0 and again["generation"][0]["refusal"] == "I can't help with that."
    assert again["generation"][0]["cached"] and again["completions"] == [None]


@pytest.mark.parametrize("content", ["", "Here is how to build a"])
def test_a_content_filter_is_a_final_failure_with_its_partial_text_kept(content: str) -> None:
    with FakeOpenAI() as fake:
        filtered = _body({"content": content}, finish_reason="content_filter")
        row, again, resent = _twice(fake, filtered)
    meta = row["generation"][0]
    assert row["completions"] == [None]  # a filtered text is never offered as an answer
    assert "content filter" in meta["error"] and meta["finish_reason"] == "content_filter"
    assert meta["refusal"] == (content or None)
    assert resent == 0 and again["completions"] == [None]


@pytest.mark.parametrize(
    "failure",
    [
        _body({"content": ""}, finish_reason="error"),  # OpenRouter: a provider failed mid-answer
        _body({"content": ""}),  # an empty answer
        _body({"content": "   \n"}),
        _body({"content": None}),
    ],
)
def test_an_empty_answer_is_retried_and_the_retry_kept(failure: str) -> None:
    with FakeOpenAI() as fake:
        fake.script(raw(200, failure), raw(200, _ok("the real answer")))
        row = _run(fake)[0]
        assert fake.requests == 2
    assert row["completions"] == ["the real answer"] and row["generation"][0]["error"] is None


def test_empty_answers_to_the_end_fail_the_completion_uncached_so_a_rerun_tries_again() -> None:
    with FakeOpenAI() as fake:
        failure = _body({"content": ""}, finish_reason="error", usage={"cost": 0.002})
        fake.script(*(raw(200, failure) for _ in range(3)))
        row = _run(fake, max_retries=2)[0]
        assert fake.requests == 3  # the first attempt and two retries
        assert row["completions"] == [None]
        assert "failed mid-answer" in row["generation"][0]["error"]
        assert row["generation"][0]["cost"] == pytest.approx(0.002)
        again = _run(fake, max_retries=2)[0]  # the fake now answers normally
        assert fake.requests == 4 and again["completions"][0] is not None


def test_reasoning_is_kept_apart_from_the_completion_and_cached() -> None:
    with FakeOpenAI() as fake:
        for field in ("reasoning", "reasoning_content"):  # OpenRouter, then DeepSeek / vLLM
            fake.reset()
            body = _body({"content": "42", field: "6 times 7 is 42."}, usage={"cost": 0.001})
            row, again, resent = _twice(fake, body, system_prompt=field)  # a request of its own
            assert fake.requests == 1
            assert row["completions"] == ["42"]  # never mixed into the completion
            assert row["reasoning"] == ["6 times 7 is 42."]
            assert resent == 0 and again["reasoning"] == ["6 times 7 is 42."]
        plain = _run(fake, system_prompt="plain")[0]  # a model without reasoning: null, not ""
    assert plain["reasoning"] == [None]


def test_a_length_stop_with_only_reasoning_counts_its_cost() -> None:
    with FakeOpenAI() as fake:
        body = _body(
            {"content": "", "reasoning": "Let me think about this very carefully"},
            finish_reason="length",
            usage={"prompt_tokens": 5, "completion_tokens": 64, "cost": 0.0031},
        )
        row, _, resent = _twice(fake, body)
    meta = row["generation"][0]
    assert row["completions"] == [None] and "max_tokens" in meta["error"]
    assert meta["cost"] == pytest.approx(0.0031)  # money was spent: never $0
    assert row["reasoning"] == ["Let me think about this very carefully"]
    assert resent == 0  # the same request would stop the same way: raise max_tokens to re-send


def test_a_lone_surrogate_is_read_once_not_bought_again() -> None:
    with FakeOpenAI() as fake:
        body = _ok("x").replace('"x"', '"caf\\u00e9 \\ud83d and \\ud83d\\ude00"')
        row, again, resent = _twice(fake, body)
    assert row["completions"] == ["café \ufffd and 😀"]
    assert fake.requests == 1 and resent == 0
    assert again["completions"] == row["completions"]


def test_answer_units() -> None:
    assert answers.number("0.5") == 0.5 and answers.number(" 3 ") == 3.0
    assert answers.number(False) is None and answers.number("-1") is None and answers.number([1]) is None
    assert answers.usage_of({"usage": {"total_tokens": "9"}}).tokens == 9
    assert answers.usage_of({"usage": {"prompt_tokens": 2, "completion_tokens": 3}}).tokens == 5
    with pytest.raises(MalformedResponseError, match="not JSON"):
        answers.parse_body(b'{"choices": [', "m")
    # OpenAI's content parts are joined
    outcome = answers.records_of(
        {
            "choices": [
                {"message": {"content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}}
            ]
        },
        "m",
        1,
        None,
        answers.Usage(),
    )
    assert outcome.records[0]["text"] == "ab" and outcome.retry == []
