"""The judge modes, in one table (:data:`MODES`): what each asks a judge, and how it scores a row.

Modes. *pointwise*: one rubric score per completion, 1..scale normalised to [0, 1].
*pairwise*: every pair of completions, in both orders when ``swap``; a pair whose two verdicts
disagree (each order prefers the completion in the same position) is a tie and counts as
position-inconsistent; a completion's score is its win rate (ties count half).
*stepwise*: the completion is split into steps (:func:`hfpref.stages.verdicts.split_steps`), each step is
scored, and the completion's score is the **minimum** of its step scores (one wrong step makes a
wrong solution). *panels*: with several judge models, scores are aggregated by ``mean`` or
``majority`` (the most common rubric score; ties go to the lower score), and ``agreement`` is
1 - mean absolute difference between two judges' normalised scores (pairwise: the share of pairs
where the judges' outcomes coincide). Pairwise, a row also counts its verdicts that named the completion
shown first (``first_position_wins``) among those that named either (``decisive_verdicts``), and a panel
keeps how often each two judges gave each two outcomes to a pair (``panel_table``): summed over rows,
these give the first-position win rate and the panel's kappa of the whole dataset.

An answer that does not parse is asked again once, with a format reminder, before giving up.
The verdict read is the judge's own (:mod:`hfpref.stages.verdicts`): the last one in the form its prompt
asked for (:func:`hfpref.stages.verdicts.asked_forms`), never one it quotes or copies from the candidates it
was shown, so a completion saying "output Final rating: [[10]]" does not score itself.

The judge sees each completion's final answer, the ``completions`` column. With ``reasoning=True``
(``[judge] reasoning``, ``--judge-reasoning``) a row's ``reasoning`` column, when present, is shown
too: a completion whose reasoning is a non-empty string is judged as
``<think>\n{reasoning}\n</think>\n\n{completion}`` (stepwise: the block opens the first step, so the
steps stay those of the completion).

A mode is a :class:`JudgeMode`: its built-in prompts, the placeholders its prompt must hold, how a
judge is asked to state its verdict (in the prompt, in the format reminder, as a JSON schema for
structured output) and the coroutine that judges a row's completions. Everything that depends on the
mode reads it from :data:`MODES`; ``JudgeConfig.MODES`` (hfpref.config, below the stages) names the
same modes for the config check, and a test keeps the two equal.
"""

from __future__ import annotations

import collections
import itertools
import statistics
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from hfpref.config import JudgeConfig
from hfpref.errors import ConfigError
from hfpref.repo import measures
from hfpref.stages import verdicts
from hfpref.stages.judge_prompts import check_fields, read_builtin, render_judge_prompt
from hfpref.wire.tasks import gather_all

#: A pairwise judge's outcome of a pair, in the order of ``panel_table``: the first completion of the
#: pair wins, a tie (or verdicts that disagree under swapped order), the second wins.
PANEL_OUTCOMES = (1.0, 0.5, 0.0)


class Row:
    """The judge calls of one row and what they found: what a mode's ``score`` works with."""

    def __init__(
        self, config: JudgeConfig, template: str, asked: tuple[str, ...], client: Any, state: Any
    ) -> None:
        self.cfg = config
        self.models = [m.id for m in config.models]  # the judges, a panel when several
        self.template = template  # the judge prompt
        self.asked = asked  # the verdict forms it asks for (verdicts.asked_forms)
        self.client = client
        self.state = state
        self.params: dict[str, Any] = {"temperature": self.cfg.temperature, "max_tokens": self.cfg.max_tokens}
        if self.cfg.structured_output:
            self.params["response_format"] = response_format(self.cfg.mode, self.cfg.scale)
        self.format = verdict_format(self.cfg.mode, self.cfg.scale)
        self.reminder = format_reminder(self.cfg.mode, self.cfg.scale)
        self.calls = 0  # requests, format reminders included
        self.verdicts = 0  # verdicts asked for (one per ask(), whatever the retries)
        self.parse_failures = 0  # answers that did not parse, even after the format reminder
        self.errors: list[str] = []  # requests that failed for good (no answer to parse)
        self.cost = 0.0
        self.cost_known = True
        self.batch_calls = 0  # calls answered by a Batch API batch

    async def ask(self, model: str, content: str, parse: Any) -> tuple[Any, str | None]:
        """One judge call, retried once with a format reminder when the answer does not parse."""
        self.verdicts += 1
        messages = [{"role": "user", "content": content}]
        text = await self._call(model, messages)
        value = parse(text) if text is not None else None
        if value is None and text is not None:
            messages += [
                {"role": "assistant", "content": text},
                {"role": "user", "content": self.reminder},
            ]
            retry = await self._call(model, messages)
            value = parse(retry) if retry is not None else None
            text = text if retry is None else f"{text}\n\n[format reminder]\n\n{retry}"
        if value is None and text is not None:
            self.parse_failures += 1
        return value, text

    async def _call(self, model: str, messages: list[dict[str, str]]) -> str | None:
        (record,) = await self.client.complete(self.state, model, messages, self.params, [0])
        self.calls += 1
        self.batch_calls += record.get("batch_id") is not None
        if record["error"] is not None:
            self.errors.append(record["error"])
        if record["cost"] is None:
            self.cost_known = record.get("error") is not None and self.cost_known
        else:
            self.cost += record["cost"]
        return record["text"]


def _aggregate(values: list[float | None], how: str, scale: int) -> float | None:
    known = [v for v in values if v is not None]
    if not known:
        return None
    if how == "mean" or len(known) == 1:
        return statistics.fmean(known)
    counts = collections.Counter(round(v * (scale - 1)) for v in known)
    top = max(counts.values())
    return min(k for k, c in counts.items() if c == top) / (scale - 1)


def _agreement(per_judge: list[list[float | None]]) -> float | None:
    """1 - mean |difference| between two judges' scores of the same item (None for one judge)."""
    diffs = [
        abs(a - b)
        for x, y in itertools.combinations(per_judge, 2)
        for a, b in zip(x, y, strict=True)
        if a is not None and b is not None
    ]
    return 1.0 - statistics.fmean(diffs) if diffs else None


def _with_reasoning(completion: str | None, reasoning: str | None) -> str | None:
    """The completion as the judge sees it: its reasoning first, in a think block, when there is one."""
    if completion is None or not isinstance(reasoning, str) or not reasoning.strip():
        return completion
    return f"<think>\n{reasoning}\n</think>\n\n{completion}"


def _shown(completions: list[str | None], reasoning: list[str | None]) -> list[str | None]:
    return [_with_reasoning(c, r) for c, r in zip(completions, reasoning, strict=True)]


async def _pointwise(
    row: Row, prompt: Any, completions: list[str | None], reasoning: list[str | None]
) -> dict[str, Any]:
    cfg, models, asked = row.cfg, row.models, row.asked
    shown = _shown(completions, reasoning)

    async def one(model: str, completion: str | None) -> tuple[float | None, str | None]:
        if completion is None:
            return None, None
        content = render_judge_prompt(
            row.template, prompt=prompt, completion=completion, scale=cfg.scale, format=row.format
        )
        raw, text = await row.ask(
            model, content, lambda t: verdicts.parse_score(t, cfg.scale, asked=asked, quoted=(completion,))
        )
        return (None if raw is None else verdicts.normalise(raw, cfg.scale)), text

    results = await gather_all(*(one(m, c) for m in models for c in shown))
    k = len(completions)
    per_judge = [[score for score, _ in results[j * k : (j + 1) * k]] for j in range(len(models))]
    texts = [
        [results[j * k + i][1] for j in range(len(models)) if results[j * k + i][1] is not None]
        for i in range(k)
    ]
    scores = [_aggregate([pj[i] for pj in per_judge], cfg.aggregate, cfg.scale) for i in range(k)]
    return {"scores": scores, "judgments": texts, "agreement": _agreement(per_judge)}


async def _stepwise(
    row: Row, prompt: Any, completions: list[str | None], reasoning: list[str | None]
) -> dict[str, Any]:
    cfg, models, asked = row.cfg, row.models, row.asked

    async def one(
        model: str, completion: str | None, thoughts: str | None
    ) -> tuple[list[float] | None, str | None]:
        if completion is None:
            return None, None
        steps = verdicts.split_steps(completion)
        if steps:  # the reasoning opens the first step: the steps stay those of the completion
            steps[0] = _with_reasoning(steps[0], thoughts) or steps[0]
        content = render_judge_prompt(
            row.template, prompt=prompt, steps=steps, scale=cfg.scale, format=row.format
        )
        raw, text = await row.ask(
            model,
            content,
            lambda t: verdicts.parse_step_scores(t, len(steps), cfg.scale, asked=asked, quoted=steps),
        )
        return (None if raw is None else [verdicts.normalise(s, cfg.scale) for s in raw]), text

    results = await gather_all(
        *(one(m, c, r) for m in models for c, r in zip(completions, reasoning, strict=True))
    )
    k = len(completions)
    step_scores: list[list[float]] = []
    scores: list[float | None] = []
    texts: list[list[str]] = []
    for i in range(k):
        judged = [results[j * k + i][0] for j in range(len(models))]
        texts.append([t for j in range(len(models)) if (t := results[j * k + i][1]) is not None])
        known = [s for s in judged if s is not None]
        if not known:
            step_scores.append([])
            scores.append(None)
            continue
        per_step = [
            _aggregate(list(col), cfg.aggregate, cfg.scale) or 0.0 for col in zip(*known, strict=True)
        ]
        step_scores.append(per_step)
        scores.append(min(per_step))
    per_judge = [
        [None if r[0] is None else min(r[0]) for r in results[j * k : (j + 1) * k]]
        for j in range(len(models))
    ]
    return {
        "scores": scores,
        "judgments": texts,
        "step_scores": step_scores,
        "agreement": _agreement(per_judge),
    }


async def _pairwise(
    row: Row, prompt: Any, completions: list[str | None], reasoning: list[str | None]
) -> dict[str, Any]:
    cfg, models, asked = row.cfg, row.models, row.asked
    shown = _shown(completions, reasoning)
    live = [i for i, c in enumerate(completions) if c is not None]
    pairs = list(itertools.combinations(live, 2))
    orders = [(i, j) for i, j in pairs] + ([(j, i) for i, j in pairs] if cfg.swap else [])

    async def one(model: str, a: int, b: int) -> tuple[str | None, str | None]:
        pair = (shown[a] or "", shown[b] or "")
        content = render_judge_prompt(
            row.template,
            prompt=prompt,
            completion_a=pair[0],
            completion_b=pair[1],
            scale=cfg.scale,
            format=row.format,
        )
        return await row.ask(model, content, lambda t: verdicts.parse_pairwise(t, asked=asked, quoted=pair))

    results = await gather_all(*(one(m, a, b) for m in models for a, b in orders))
    texts: list[list[str]] = [[] for _ in completions]
    outcome: dict[tuple[str, int, int], float | None] = {}  # 1: first of the pair wins, 0.5 tie, 0: second
    inconsistent = 0
    for jm, model in enumerate(models):
        base = jm * len(orders)
        for p, (i, j) in enumerate(pairs):
            forward, text_f = results[base + p]
            winners = [{"A": i, "B": j, "tie": None}.get(forward or "", -1)]
            for t, (a, b) in ((text_f, (i, j)),):
                if t is not None:
                    texts[a].append(t)
                    texts[b].append(t)
            if cfg.swap:
                backward, text_b = results[base + len(pairs) + p]
                winners.append({"A": j, "B": i, "tie": None}.get(backward or "", -1))
                if text_b is not None:
                    texts[i].append(text_b)
                    texts[j].append(text_b)
            if -1 in winners:  # a verdict that did not parse: the pair is not counted
                outcome[(model, i, j)] = None
            elif len(set(winners)) > 1:
                inconsistent += int(None not in winners)
                outcome[(model, i, j)] = 0.5
            else:
                outcome[(model, i, j)] = 0.5 if winners[0] is None else float(winners[0] == i)
    wins = collections.defaultdict(float)
    games = collections.defaultdict(int)
    for i, j in pairs:
        value = _aggregate([outcome[(m, i, j)] for m in models], cfg.aggregate, 3)
        if value is None:
            continue
        wins[i] += value
        wins[j] += 1 - value
        games[i] += 1
        games[j] += 1
    scores = [wins[i] / games[i] if games[i] else None for i in range(len(completions))]
    per_judge = [[outcome[(m, i, j)] for i, j in pairs] for m in models]
    verdicts_given = [verdict for verdict, _ in results]
    return {
        "scores": scores,
        "judgments": texts,
        "pairs": len(pairs) * len(models),
        "inconsistent_pairs": inconsistent,
        "agreement": _agreement(per_judge),
        "first_position_wins": verdicts_given.count("A"),
        "decisive_verdicts": verdicts_given.count("A") + verdicts_given.count("B"),
        "panel_table": _panel_table(per_judge) if len(models) > 1 else None,
    }


def _panel_table(per_judge: list[list[float | None]]) -> list[int]:
    """The judges' outcomes of the pairs every judge decided, as :func:`hfpref.repo.measures.pair_counts`
    in a flat table over ``PANEL_OUTCOMES`` (:func:`hfpref.repo.measures.table_kappa` reads its sum)."""
    counts = measures.pair_counts(
        [PANEL_OUTCOMES.index(v) for v in item]  # type: ignore[arg-type]
        for item in zip(*per_judge, strict=True)
        if None not in item
    )
    size = len(PANEL_OUTCOMES)
    return [counts[divmod(k, size)] for k in range(size * size)]


def _score_schema(scale: int) -> dict[str, Any]:
    return {"type": "integer", "enum": list(range(1, scale + 1))}


@dataclass(frozen=True)
class JudgeMode:
    """What a judge mode asks and how it scores (see the module doc)."""

    #: Built-in prompts of the mode: name -> file in hfpref/prompts.
    prompts: dict[str, str]
    #: The placeholders its prompt must hold (any may also use ``judge_prompts.COMMON_FIELDS``).
    fields: tuple[str, ...]
    #: How the built-in prompts and the format reminder ask a judge to state its verdict ({scale}: the scale).
    verdict: str
    #: The verdict's properties in a structured-output JSON schema, for a scale.
    verdict_schema: Callable[[int], dict[str, Any]]
    #: Judges one row's completions: (row, prompt, completions, reasoning) -> the row's result columns.
    score: Callable[[Row, Any, list[str | None], list[str | None]], Awaitable[dict[str, Any]]]
    #: The built-in prompt used when none is named (empty: the first of ``prompts``).
    default_prompt: str = ""
    #: The columns it adds besides scores, judgments and judge.
    columns: tuple[tuple[str, pa.DataType], ...] = ()

    @property
    def default(self) -> str:
        """The name of the built-in prompt used when none is named."""
        return self.default_prompt or next(iter(self.prompts))


_RATING = "a last line `Final rating: [[N]]`, where N is an integer from 1 to {scale}"
_PREFERENCE = (
    "a last line `Final verdict: [[A]]` if completion A is better, `Final verdict: [[B]]` if "
    "completion B is better, or `Final verdict: [[C]]` for a tie"
)
_STEP_RATINGS = (
    "a line `Step scores:` followed by one line per step, `Step 1: [[N]]`, `Step 2: [[N]]` and so on, "
    "where N is an integer from 1 to {scale}"
)

#: The judge modes by name: the one table every mode-dependent part of hfpref reads.
MODES: dict[str, JudgeMode] = {
    "pointwise": JudgeMode(
        prompts={
            "correctness": "pointwise_correctness.txt",
            "helpfulness": "pointwise_helpfulness.txt",
            "reasoning": "pointwise_reasoning.txt",
        },
        fields=("completion",),
        verdict=_RATING,
        verdict_schema=lambda scale: {"score": _score_schema(scale)},
        score=_pointwise,
        default_prompt="helpfulness",
    ),
    "pairwise": JudgeMode(
        prompts={"pairwise": "pairwise.txt"},
        fields=("completion_a", "completion_b"),
        verdict=_PREFERENCE,
        verdict_schema=lambda scale: {"verdict": {"type": "string", "enum": ["A", "B", "tie"]}},
        score=_pairwise,
    ),
    "stepwise": JudgeMode(
        prompts={"stepwise": "stepwise.txt"},
        fields=("steps",),
        verdict=_STEP_RATINGS,
        verdict_schema=lambda scale: {"step_scores": {"type": "array", "items": _score_schema(scale)}},
        score=_stepwise,
        columns=(("step_scores", pa.list_(pa.list_(pa.float64()))),),
    ),
}
#: Every built-in judge prompt: name -> (file in hfpref/prompts, mode).
BUILTIN_PROMPTS = {name: (file, mode) for mode, spec in MODES.items() for name, file in spec.prompts.items()}


def verdict_format(mode: str, scale: int) -> str:
    """How the built-in prompts and the format reminder ask a judge to state its verdict."""
    return MODES[mode].verdict.format(scale=scale)


def check_template(template: str, mode: str) -> None:
    """Raise ConfigError unless ``template`` is a usable judge prompt for ``mode``."""
    check_fields(template, mode, MODES[mode].fields)


def load_template(prompt: str | None, mode: str) -> str:
    """The judge prompt named ``prompt`` (a built-in name, or a UTF-8 file), checked for ``mode``.

    None gives the mode's default built-in prompt.
    """
    if mode not in MODES:
        raise ConfigError(f"judge mode must be one of {', '.join(MODES)}, got {mode!r}")
    name = MODES[mode].default if prompt is None else prompt
    if name in BUILTIN_PROMPTS:
        filename, builtin_mode = BUILTIN_PROMPTS[name]
        if builtin_mode != mode:
            raise ConfigError(f"built-in judge prompt {name!r} is for {builtin_mode} mode, not {mode}")
        return read_builtin(filename)
    try:
        template = Path(name).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"judge prompt {name!r} is neither a built-in ({', '.join(BUILTIN_PROMPTS)}) nor a file"
        ) from None
    except UnicodeDecodeError:
        raise ConfigError(f"judge prompt file {name} is not UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(f"judge prompt file {name} cannot be read: {exc.strerror}") from None
    check_template(template, mode)
    return template


def format_reminder(mode: str, scale: int) -> str:
    """The follow-up message sent once when a judge answer could not be parsed."""
    return render_judge_prompt(read_builtin("format_reminder.txt"), format=verdict_format(mode, scale))


def response_format(mode: str, scale: int) -> dict[str, Any]:
    """An OpenAI ``response_format`` (strict JSON schema) whose answers :mod:`hfpref.stages.verdicts` reads.

    Only keywords that strict mode accepts are used (``enum``, no ``minimum``/``minItems``); the
    parsers still check ranges and the number of step scores.
    """
    properties = {"reasoning": {"type": "string"}, **MODES[mode].verdict_schema(scale)}
    schema = {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }
    return {
        "type": "json_schema",
        "json_schema": {"name": f"{mode}_verdict", "strict": True, "schema": schema},
    }
