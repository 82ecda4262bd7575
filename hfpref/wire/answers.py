"""Provider answers, normalised at one point: what an OpenAI-compatible endpoint sends becomes records.

Endpoints differ and drift, so nothing here trusts a field's type:

* the body: orjson first; a body orjson refuses only for a lone-surrogate escape (``"\\ud800"``, valid
  JSON that no UTF-8 text can hold) is read by the standard library, each lone surrogate becoming U+FFFD;
* ``usage``: counts and ``cost`` as numbers or numeric strings; anything else (a list, ``"n/a"``, a
  negative or infinite value) is *unknown* (None), never a crash and never 0;
* each choice: ``message.content`` (a string, or OpenAI's list of text parts), the model's thoughts
  from ``message.reasoning`` (OpenRouter) or ``message.reasoning_content`` (DeepSeek, vLLM), a refusal
  from ``message.refusal``.

A choice is an *answer* (``text`` set, ``error`` None) or a failure with its reason in ``error``:

* final, cached like an answer, never paid for again: a refusal (``message.refusal``, its text kept
  in ``refusal``), a content filter (``finish_reason`` content_filter, any partial text kept in
  ``refusal``), and an answer cut at ``max_tokens`` before any text (only reasoning came back:
  raise ``max_tokens``, which changes the request and so its cache key);
* retryable (:attr:`Outcome.retry`): an empty answer, or ``finish_reason`` error (OpenRouter reports a
  provider failure mid-answer that way, with HTTP 200).

Every record carries its share of the answer's tokens and cost, failures included: a paid failure is
paid money.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import orjson

from hfpref.errors import MalformedResponseError

FINAL_FAILURES = ("content_filter",)
RETRY_FAILURES = ("error",)


class Usage(NamedTuple):
    """What one answer cost; each field None when the endpoint did not say (or said nonsense)."""

    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None
    cost: float | None = None

    @property
    def tokens(self) -> int | None:
        if self.total_tokens is not None:
            return self.total_tokens
        if self.prompt_tokens is None or self.completion_tokens is None:
            return None
        return self.prompt_tokens + self.completion_tokens


NO_USAGE = Usage()


def number(value: Any) -> float | None:
    """A finite, non-negative number from a JSON number or numeric string; else None."""
    kind = type(value)
    if kind is int:  # the common case first (bool is not int here: type() is exact)
        return float(value) if value >= 0 else None
    if kind is str:
        try:
            value = float(value.strip())
        except ValueError:
            return None
    elif kind is not float:
        if kind is bool or not isinstance(value, int | float):
            return None
        value = float(value)  # an int or float subclass
    return value if value >= 0 and math.isfinite(value) else None


def _count(value: Any) -> int | None:
    if type(value) is int:
        return value if value >= 0 else None
    found = number(value)
    return None if found is None else round(found)


def usage_of(data: Mapping[str, Any]) -> Usage:
    usage = data.get("usage")
    if not isinstance(usage, Mapping):
        return NO_USAGE
    cost = usage.get("cost")
    return Usage(
        _count(usage.get("prompt_tokens")),
        _count(usage.get("completion_tokens")),
        _count(usage.get("total_tokens")),
        None if cost is None else number(cost),
    )


def _repair(value: Any) -> Any:
    """``value`` with every lone surrogate in its strings replaced by U+FFFD."""
    if isinstance(value, str):
        return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    if isinstance(value, list):
        return [_repair(v) for v in value]
    if isinstance(value, dict):
        return {_repair(k): _repair(v) for k, v in value.items()}
    return value


def parse_body(raw: bytes, model: str) -> Any:
    """The JSON of an answer's body; MalformedResponseError (retried) when it is not JSON."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        pass
    try:  # the standard library accepts lone-surrogate escapes, orjson does not
        return _repair(json.loads(raw))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise MalformedResponseError(f"answer is not JSON: {raw[:80]!r}", model=model) from None


def _text(content: Any) -> str | None:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: [{"type": "text", "text": "..."}]
        parts = [p.get("text") for p in content if isinstance(p, Mapping) and isinstance(p.get("text"), str)]
        return "".join(parts) if parts else None
    return None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


@dataclass(frozen=True)
class Outcome:
    """The records of one answer's choices, in index order; ``retry``: positions of the records whose
    failure another attempt may mend."""

    records: list[dict[str, Any]]
    retry: list[int]


def _failure(
    choice_text: str | None, finish: str | None, reasoning: str | None, refusal: str | None
) -> tuple[str | None, bool]:
    """(error, retryable) of one choice; (None, False) for an answer."""
    if refusal is not None:
        return "refused by the model (its refusal is in `generation.refusal`)", False
    if finish in FINAL_FAILURES:
        return f"stopped by the provider's content filter (finish_reason={finish})", False
    if finish in RETRY_FAILURES:
        return f"the provider failed mid-answer (finish_reason={finish})", True
    if choice_text is None or not choice_text.strip():
        if finish == "length" and reasoning:
            return "max_tokens reached while reasoning, before any answer: raise max_tokens", False
        return f"empty answer (finish_reason={finish})", True
    return None, False


def records_of(
    data: Mapping[str, Any],
    model: str,
    n: int,
    cost: float | None,
    usage: Usage,
    batch_id: str | None = None,
) -> Outcome:
    """One record per choice (at most ``n``) with its share of tokens and ``cost``; ``batch_id``: the
    batch the answer came in (None: online)."""
    choices = [c for c in data["choices"] if isinstance(c, Mapping)]
    if len(choices) > 1:
        choices.sort(key=lambda c: _count(c.get("index")) or 0)
        choices = choices[:n]
    prompt_tokens, completion_tokens = usage.prompt_tokens, usage.completion_tokens
    if len(choices) > 1:  # each choice's share
        k = len(choices)
        prompt_tokens = None if prompt_tokens is None else round(prompt_tokens / k)
        completion_tokens = None if completion_tokens is None else round(completion_tokens / k)
        cost = None if cost is None else cost / k
    records = []
    retry = []
    for i, choice in enumerate(choices):
        message = choice.get("message")
        message = message if isinstance(message, Mapping) else {}
        text = _text(message.get("content"))
        finish = _str(choice.get("finish_reason"))
        reasoning = _str(message.get("reasoning")) or _str(message.get("reasoning_content"))
        refusal = _str(message.get("refusal"))
        error, retryable = _failure(text, finish, reasoning, refusal)
        if retryable:
            retry.append(i)
        if finish in FINAL_FAILURES and refusal is None:
            refusal = text or None  # what the filter let through is kept, not offered as an answer
        records.append(
            {
                "text": None if error else text,
                "model": model,
                "finish_reason": finish,
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "cost": cost,
                "reasoning": reasoning,
                "refusal": refusal,
                "cached": False,
                "error": error,
                "batch_id": batch_id,
            }
        )
    return Outcome(records, retry)


EMPTY_RECORD: dict[str, Any] = {
    "text": None,
    "model": None,
    "finish_reason": None,
    "prompt_tokens": None,
    "completion_tokens": None,
    "cost": None,
    "reasoning": None,
    "refusal": None,
    "cached": False,
    "error": None,
    "batch_id": None,
}
"""Every field of a record: what a record cached before a field existed reads as."""


def failed_record(model: str, error: str) -> dict[str, Any]:
    """The record of a completion no answer came back for."""
    return {**EMPTY_RECORD, "model": model, "error": error}
