"""A judge's answer, ready to read its verdicts: reasoning stripped, quotations and copies of candidates found.

:class:`Answer` is what :mod:`hfpref.stages.verdicts` reads verdicts from (its module doc states the
rules). It drops ``<think>…</think>`` reasoning; finds the quotations (text between quotation marks on
one line, inline code, fenced code blocks except a ```json fence holding one JSON object, blockquote
lines; a quote wrapping the whole answer is the answer), the JSON objects outside them, and whether a
stretch of the answer of at least ``MIN_COPY`` characters also appears in one of the candidate texts
the judge was shown (whitespace runs as one character, case ignored, as written or as the judge saw it
with ``&lt;``). :meth:`Answer.marks` lists every verdict stated outside quotations.
"""

from __future__ import annotations

import json
import re
from bisect import bisect_right
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from hfpref.stages.judge_prompts import neutralise

#: Shortest stretch (characters) shared with a candidate that makes a verdict inside it a copy.
MIN_COPY = 32
Markers = Sequence[tuple[str, re.Pattern[str]]]
Span = tuple[int, int]

_THINK_PAIR = re.compile(r"<(think|thinking|reasoning)>.*?</\1>", re.I | re.S)
_THINK_OPEN = re.compile(r"<(?:think|thinking|reasoning)>", re.I)
_THINK_CLOSE = re.compile(r"</(?:think|thinking|reasoning)>", re.I)
_FENCE_OPEN = re.compile(r"^[ \t]*(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^\n]*)$", re.M)
_BLOCKQUOTE = re.compile(r"^[ \t]*>[^\n]*", re.M)
#: Opening quotation mark -> the marks that close it (``'`` and ``‘`` have extra rules, see _quote_end).
_QUOTES = {'"': '"', "“": "”", "„": "“”", "«": "»", "‘": "’", "'": "'"}


@dataclass(frozen=True)
class Mark:
    order: tuple[int, int, int]  # (position, final JSON key, rank in its JSON object): later counts last
    value: Any  # None: a verdict was stated but is invalid
    form: str  # its family, one of FORMS
    span: Span | None = None  # its text, to check for a copy of a candidate (None: checked already)


def _strip_reasoning(text: str) -> str:
    """Drop ``<think>…</think>`` blocks, text before a lone closing tag, and an unclosed block."""
    text = _THINK_PAIR.sub(" ", text)
    closes = list(_THINK_CLOSE.finditer(text))
    if closes:
        text = text[closes[-1].end() :]
    opened = _THINK_OPEN.search(text)
    return text[: opened.start()] if opened else text


def _json_objects(text: str) -> Iterator[tuple[int, int, dict[str, Any]]]:
    """Top-level JSON objects in ``text`` as (start, end, object), skipping objects nested in others."""
    decoder = json.JSONDecoder()
    start = text.find("{")
    while start != -1:
        try:
            obj, end = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            start = text.find("{", start + 1)
            continue
        yield start, end, obj
        start = text.find("{", end)


def keyed(obj: Mapping[str, Any], keys: Sequence[str], depth: int = 1) -> Iterator[tuple[Any, bool]]:
    """Values of ``keys`` (case-insensitive) in ``obj`` and its dicts ``depth`` levels down, with
    whether the key says final."""
    for key, value in obj.items():
        name = str(key).lower()
        if name in keys:
            yield value, name.startswith("final")
        elif isinstance(value, dict) and depth > 0:
            yield from keyed(value, keys, depth - 1)


def inside(pos: int, spans: Sequence[Span]) -> bool:
    return any(start <= pos < end for start, end in spans)


def _merge(spans: Sequence[Span]) -> list[Span]:
    merged: list[Span] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _is_one_json_object(text: str) -> bool:
    text = text.strip()
    try:
        obj, end = json.JSONDecoder().raw_decode(text)
    except json.JSONDecodeError:
        return False
    return isinstance(obj, dict) and end == len(text)


def _fences(text: str) -> list[Span]:
    """Fenced code blocks (an unclosed one runs to the end), but not a ```json one holding only a JSON
    object."""
    spans: list[Span] = []
    pos = 0
    while opened := _FENCE_OPEN.search(text, pos):
        fence = opened["fence"]
        if fence[0] == "`" and "`" in opened["info"]:  # ```code``` on one line: a code span, not a fence
            pos = opened.end()
            continue
        closing = re.compile(r"^[ \t]*" + re.escape(fence[0]) + "{" + str(len(fence)) + r",}[ \t]*$", re.M)
        closed = closing.search(text, opened.end())
        end = closed.end() if closed else len(text)
        body = text[opened.end() : closed.start() if closed else end]
        if opened["info"].strip().lower() != "json" or not _is_one_json_object(body):
            spans.append((opened.start(), end))
        pos = end
    return spans


def _closers(line: str) -> dict[str, list[int]]:
    """Per opening quotation mark, the positions in ``line`` of the marks that may close it: a closing
    ``'`` or ``’`` must follow a non-space and not precede a letter (``‘the response’s score’``)."""
    found: dict[str, list[int]] = {mark: [] for mark in _QUOTES}
    for j, ch in enumerate(line):
        if ch in "'’" and ((j + 1 < len(line) and line[j + 1].isalnum()) or j == 0 or line[j - 1].isspace()):
            continue
        for mark, closers in _QUOTES.items():
            if ch in closers:
                found[mark].append(j)
    return found


def _inline_quotes(scan: str) -> list[Span]:
    """Quotations and code spans within one line, the first opening mark taking what it encloses."""
    spans: list[Span] = []
    offset = 0
    for line in scan.split("\n"):
        closers = _closers(line) if any(mark in line for mark in _QUOTES) else {}
        i = 0
        while i < len(line):
            mark, end = line[i], None
            if mark == "`":
                run = len(line) - i - len(line[i:].lstrip("`"))
                found = re.compile(r"(?<!`)`{" + str(run) + r"}(?!`)").search(line, i + run)
                end = found.end() if found else None
                step = run
            elif mark in _QUOTES:
                apostrophe = mark == "'" and (
                    (i > 0 and line[i - 1].isalnum()) or i + 1 >= len(line) or line[i + 1].isspace()
                )  # it's, students' work: an apostrophe, not a quotation
                at = bisect_right(closers[mark], i + 1)
                if not apostrophe and at < len(closers[mark]):
                    end = closers[mark][at] + 1
                step = 1
            else:
                step = 1
            if end is not None:
                spans.append((offset + i, offset + end))
                i = end
            else:
                i += step
        offset += len(line) + 1
    return spans


def _blank(text: str, spans: Sequence[Span]) -> str:
    chars = list(text)
    for start, end in spans:
        chars[start:end] = "\0" * (end - start)
    return "".join(chars)


def _squash(text: str) -> tuple[str, list[int]]:
    """``text`` lower-cased with every run of whitespace as one space, and where each character came from."""
    chars: list[str] = []
    where: list[int] = []
    space = False
    for i, ch in enumerate(text):
        if ch.isspace():
            if not space:
                chars.append(" ")
                where.append(i)
            space = True
            continue
        low = ch.lower()
        chars.append(low if len(low) == 1 else ch)
        where.append(i)
        space = False
    return "".join(chars), where


@lru_cache(maxsize=256)
def _source(text: str) -> tuple[str, ...]:
    """A candidate text, squashed, as written and as the judge saw it (``&lt;``)."""
    shown = neutralise(text)
    return tuple(dict.fromkeys(_squash(t)[0] for t in (text, shown)))


class Answer:
    """A judge answer ready to read: reasoning stripped, quotations and copies of candidates found."""

    def __init__(self, text: str, quoted: Sequence[str] = ()) -> None:
        self.text = text = _strip_reasoning(text)
        self.sources = tuple(s for q in quoted if isinstance(q, str) and q.strip() for s in _source(q))
        self._squashed: tuple[str, list[int]] | None = None
        self._copies: dict[Span, bool] = {}
        lead = len(text) - len(text.lstrip())
        whole = (lead, lead + len(text.strip()))

        def not_whole(spans: list[Span]) -> list[Span]:
            return [span for span in spans if span != whole]

        fences = not_whole(_fences(text))
        objects = list(_json_objects(text))
        self.json_spans = _merge([(start, end) for start, end, _ in objects])
        opaque = [(start, end) for start, end, _ in objects if not inside(start, _merge(fences))]
        scan = _blank(text, fences + opaque)  # quotation marks inside JSON or fences pair with nothing
        blockquotes = [(m.start(), m.end()) for m in _BLOCKQUOTE.finditer(scan)]
        self.quotes = _merge(fences + not_whole(blockquotes) + not_whole(_inline_quotes(scan)))
        self.objects = [
            (start, end, obj)
            for start, end, obj in objects
            if not inside(start, self.quotes) and not self.copied(start, end)
        ]

    def copied(self, start: int, end: int) -> bool:
        """Whether ``text[start:end]`` lies in a stretch of ``MIN_COPY`` characters copied from a candidate."""
        if not self.sources:
            return False
        if self._squashed is None:
            self._squashed = _squash(self.text)
        answer, where = self._squashed
        i, j = bisect_right(where, start - 1), bisect_right(where, end - 1)
        needle = answer[i:j]
        if not needle.strip():
            return False
        for source in self.sources:
            at = source.find(needle)
            while at != -1:
                left = 0
                while left < MIN_COPY and left < min(i, at) and answer[i - left - 1] == source[at - left - 1]:
                    left += 1
                right, after = 0, at + len(needle)
                while (
                    right < MIN_COPY
                    and j + right < len(answer)
                    and after + right < len(source)
                    and answer[j + right] == source[after + right]
                ):
                    right += 1
                if len(needle) + left + right >= MIN_COPY:
                    return True
                at = source.find(needle, at + 1)
        return False

    def hidden(self, value_at: int, start: int, end: int) -> bool:
        """Whether a verdict (its value at ``value_at``, its text ``start:end``) is quoted or copied."""
        return inside(value_at, self.quotes) or self.copied(start, end)

    def own(self, mark: Mark) -> bool:
        """Whether ``mark`` is the judge's own, not copied from a candidate (checked once, when needed)."""
        if mark.span is None:
            return True
        if mark.span not in self._copies:
            self._copies[mark.span] = self.copied(*mark.span)
        return not self._copies[mark.span]

    def marks(self, keys: Sequence[str], markers: Markers, convert: Callable[[Any], Any]) -> list[Mark]:
        """Every verdict stated outside quotations: JSON values of ``keys`` (objects copied from a
        candidate left out) and matches of ``markers`` (whether they are copies is :meth:`own`'s job)."""
        marks = [
            Mark((start, int(final), rank), convert(value), "json")
            for start, _, obj in self.objects
            for rank, (value, final) in enumerate(keyed(obj, keys))
        ]
        for form, pattern in markers:
            for match in pattern.finditer(self.text):
                value_at = match.start("num" if "num" in pattern.groupindex else "v")
                if not inside(match.start(), self.json_spans) and not inside(value_at, self.quotes):
                    span = (match.start(), match.end())
                    marks.append(Mark((match.start(), 0, 0), convert(match), form, span))
        return sorted(marks, key=lambda mark: mark.order)
