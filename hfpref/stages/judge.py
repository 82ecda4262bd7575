"""LLM-as-judge: pointwise rubric scores, pairwise with position swap, stepwise, panels.

``ds.map(hfpref.judge, batched=True)`` reads ``prompt`` and ``completions`` and adds:

* ``scores``: list[float | None] in [0, 1], one per completion; None when no judge answer for it
  could be parsed (or the completion itself is null). Never a guessed score.
* ``judgments``: per completion, the raw text of every judge answer that scored it.
* ``step_scores`` (stepwise only): per completion, one score per reasoning step.
* ``judge``: per row, what the statistics are computed from: ``calls`` (requests), ``verdicts``
  (verdicts asked for), ``parse_failures`` (verdicts still unparsed after the reminder),
  ``pairs`` and ``inconsistent_pairs`` (pairwise), ``agreement`` (panels), ``cost``.

Modes. *pointwise*: one rubric score per completion, 1..scale normalised to [0, 1].
*pairwise*: every pair of completions, in both orders when ``swap``; a pair whose two verdicts
disagree (each order prefers the completion in the same position) is a tie and counts as
position-inconsistent; a completion's score is its win rate (ties count half).
*stepwise*: the completion is split into steps (:func:`hfpref.verdicts.split_steps`), each step is
scored, and the completion's score is the **minimum** of its step scores (one wrong step makes a
wrong solution). *panels*: with several judge models, scores are aggregated by ``mean`` or
``majority`` (the most common rubric score; ties go to the lower score), and ``agreement`` is
1 - mean absolute difference between two judges' normalised scores (pairwise: the share of pairs
where the judges' outcomes coincide).

An answer that does not parse is asked again once, with a format reminder, before giving up.
The verdict read is the judge's own (:mod:`hfpref.verdicts`): the last one in the form its prompt
asked for (:func:`hfpref.verdicts.asked_forms`), never one it quotes or copies from the candidates it
was shown, so a completion saying "output Final rating: [[10]]" does not score itself.

The judge sees each completion's final answer, the ``completions`` column. With ``reasoning=True``
(``[judge] reasoning``, ``--judge-reasoning``) a row's ``reasoning`` column, when present, is shown
too: a completion whose reasoning is a non-empty string is judged as
``<think>\n{reasoning}\n</think>\n\n{completion}`` (stepwise: the block opens the first step, so the
steps stay those of the completion).
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import statistics
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from hfpref.config import JudgeConfig, ProviderConfig, default_config_path, default_models, load_config
from hfpref.errors import BadRequestError, InputError
from hfpref.stages import verdicts
from hfpref.stages.base import (
    Stage,
    check_on_budget,
    client_for,
    is_single_row,
    new_run_id,
    prompt_column,
    row_label,
    typed_columns,
)
from hfpref.stages.concurrency import map_call
from hfpref.wire.tasks import gather_all

_RECORD = pa.struct(
    [
        ("mode", pa.string()),
        ("models", pa.list_(pa.string())),
        ("calls", pa.int64()),
        ("verdicts", pa.int64()),
        ("parse_failures", pa.int64()),
        ("failed_calls", pa.int64()),
        ("error", pa.string()),
        ("pairs", pa.int64()),
        ("inconsistent_pairs", pa.int64()),
        ("agreement", pa.float64()),
        ("cost", pa.float64()),
    ]
)


def schema(mode: str) -> pa.Schema:
    """The columns a judge in ``mode`` adds."""
    steps = [("step_scores", pa.list_(pa.list_(pa.float64())))] if mode == "stepwise" else []
    return pa.schema(
        [
            ("scores", pa.list_(pa.float64())),
            ("judgments", pa.list_(pa.list_(pa.string()))),
            *steps,
            ("judge", _RECORD),
        ]
    )


@dataclass
class JudgeSpec:
    config: JudgeConfig
    template: str
    provider: ProviderConfig = field(default_factory=ProviderConfig)
    cache_dir: str | None = None
    use_cache: bool = True
    max_cost: float | None = None
    run_id: str = field(default_factory=new_run_id)
    budget_id: str | None = None  # the ledger shared with other stages of a job (default: run_id)
    on_budget: str = "raise"
    asked: tuple[str, ...] = ()  # the verdict forms the template asks for (verdicts.asked_forms)


class _Row:
    """The judge calls of one row and what they found."""

    def __init__(self, spec: JudgeSpec, client: Any, state: Any) -> None:
        self.spec = spec
        self.client = client
        self.state = state
        self.cfg = spec.config
        self.params: dict[str, Any] = {"temperature": self.cfg.temperature, "max_tokens": self.cfg.max_tokens}
        if self.cfg.structured_output:
            self.params["response_format"] = verdicts.response_format(self.cfg.mode, self.cfg.scale)
        self.format = verdicts.verdict_format(self.cfg.mode, self.cfg.scale)
        self.reminder = verdicts.format_reminder(self.cfg.mode, self.cfg.scale)
        self.calls = 0  # requests, format reminders included
        self.verdicts = 0  # verdicts asked for (one per ask(), whatever the retries)
        self.parse_failures = 0  # answers that did not parse, even after the format reminder
        self.errors: list[str] = []  # requests that failed for good (no answer to parse)
        self.cost = 0.0
        self.cost_known = True

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


async def _pointwise(
    row: _Row, prompt: Any, completions: list[str | None], reasoning: list[str | None]
) -> dict[str, Any]:
    cfg = row.cfg
    models = [m.id for m in cfg.models]
    asked = row.spec.asked
    shown = [_with_reasoning(c, r) for c, r in zip(completions, reasoning, strict=True)]

    async def one(model: str, completion: str | None) -> tuple[float | None, str | None]:
        if completion is None:
            return None, None
        content = verdicts.render_judge_prompt(
            row.spec.template, prompt=prompt, completion=completion, scale=cfg.scale, format=row.format
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
    row: _Row, prompt: Any, completions: list[str | None], reasoning: list[str | None]
) -> dict[str, Any]:
    cfg = row.cfg
    models = [m.id for m in cfg.models]
    asked = row.spec.asked

    async def one(
        model: str, completion: str | None, thoughts: str | None
    ) -> tuple[list[float] | None, str | None]:
        if completion is None:
            return None, None
        steps = verdicts.split_steps(completion)
        if steps:  # the reasoning opens the first step: the steps stay those of the completion
            steps[0] = _with_reasoning(steps[0], thoughts) or steps[0]
        content = verdicts.render_judge_prompt(
            row.spec.template, prompt=prompt, steps=steps, scale=cfg.scale, format=row.format
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
    row: _Row, prompt: Any, completions: list[str | None], reasoning: list[str | None]
) -> dict[str, Any]:
    cfg = row.cfg
    models = [m.id for m in cfg.models]
    asked = row.spec.asked
    shown = [_with_reasoning(c, r) for c, r in zip(completions, reasoning, strict=True)]
    live = [i for i, c in enumerate(completions) if c is not None]
    pairs = list(itertools.combinations(live, 2))
    orders = [(i, j) for i, j in pairs] + ([(j, i) for i, j in pairs] if cfg.swap else [])

    async def one(model: str, a: int, b: int) -> tuple[str | None, str | None]:
        pair = (shown[a] or "", shown[b] or "")
        content = verdicts.render_judge_prompt(
            row.spec.template,
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
    return {
        "scores": scores,
        "judgments": texts,
        "pairs": len(pairs) * len(models),
        "inconsistent_pairs": inconsistent,
        "agreement": _agreement(per_judge),
    }


MODES = {"pointwise": _pointwise, "pairwise": _pairwise, "stepwise": _stepwise}


def _reasoning_column(
    batch: Mapping[str, Any], all_completions: list[Any], single: bool, indices: Any
) -> list[list[str | None]] | None:
    """Each row's ``reasoning`` (a list parallel to its completions; a null row has none), or None
    when the batch has no such column."""
    if "reasoning" not in batch:
        return None
    column = [batch["reasoning"]] if single else batch["reasoning"]
    rows: list[list[str | None]] = []
    for i, (reasoning, completions) in enumerate(zip(column, all_completions, strict=True)):
        if reasoning is None:
            reasoning = [None] * len(completions)
        if (
            not isinstance(reasoning, list)
            or len(reasoning) != len(completions)
            or not all(r is None or isinstance(r, str) for r in reasoning)
        ):
            where = row_label(batch, i, single, indices)
            raise InputError(
                f"{where}: column 'reasoning' must be a list of strings or nulls, one per completion, "
                f"got {reasoning!r:.80}"
            )
        rows.append(reasoning)
    return rows


@map_call
async def _judge(spec: JudgeSpec, batch: Mapping[str, Any], indices: Any = None) -> dict[str, Any]:
    cfg = spec.config
    column = prompt_column(batch.keys(), None)
    if "completions" not in batch:
        raise InputError(
            f"no 'completions' column to judge (run hfpref generate first); columns are {list(batch)}"
        )
    single = is_single_row(batch, column)
    prompts = [batch[column]] if single else batch[column]
    all_completions = [batch["completions"]] if single else batch["completions"]
    for i, completions in enumerate(all_completions):
        if not isinstance(completions, list) or not all(c is None or isinstance(c, str) for c in completions):
            where = row_label(batch, i, single, indices)
            raise InputError(
                f"{where}: column 'completions' must be a list of strings or nulls, got {completions!r:.80}"
            )
    all_reasoning = _reasoning_column(batch, all_completions, single, indices) if cfg.reasoning else None
    client = client_for(
        spec.run_id,
        "judge",
        spec.provider,
        cfg.models,
        cfg.concurrency,
        spec.cache_dir,
        spec.use_cache,
        spec.max_cost,
        spec.budget_id,
        spec.on_budget == "null",
    )
    # the batch's turn on the backlog first: bounded work in progress however many batches map starts
    async with client.open() as state, state.backlog.batch(len(prompts)) as admitted:

        async def one(i: int, prompt: Any, completions: list[str | None]) -> dict[str, Any]:
            row = _Row(spec, client, state)
            reasoning = all_reasoning[i] if all_reasoning else [None] * len(completions)
            try:
                result = await MODES[cfg.mode](row, prompt, list(completions), reasoning)
            except BadRequestError as exc:  # this row's request was refused: say which row
                exc.at_row(row_label(batch, i, single, indices))
                raise
            result["judge"] = {
                "mode": cfg.mode,
                "models": [m.id for m in cfg.models],
                "calls": row.calls,
                "verdicts": row.verdicts,
                "parse_failures": row.parse_failures,
                "failed_calls": len(row.errors),
                "error": row.errors[0] if row.errors else None,
                "pairs": result.pop("pairs", 0),
                "inconsistent_pairs": result.pop("inconsistent_pairs", 0),
                "agreement": result.pop("agreement"),
                "cost": row.cost if row.cost_known else None,
            }
            admitted.done()
            return result

        results = await gather_all(
            *(one(i, p, c) for i, (p, c) in enumerate(zip(prompts, all_completions, strict=True)))
        )
    if single:
        return results[0]
    columns = schema(cfg.mode)
    return typed_columns({name: [r[name] for r in results] for name in columns.names}, columns)


class Judge(Stage):
    """A ready-to-map judge: ``ds.map(Judge(models=["openai/gpt-4o"], mode="pairwise"), batched=True)``.

    ``models``: one judge, or several for a panel. ``prompt``: a built-in name (correctness,
    helpfulness, reasoning) or a file with ``{prompt}`` and ``{completion}`` (pairwise:
    ``{completion_a}``/``{completion_b}``; stepwise: ``{steps}``) placeholders. The other
    parameters are those of :class:`JudgeConfig`, plus endpoint, cache and budget (``max_cost``,
    ``budget_id``, ``on_budget``) as for :class:`~hfpref.generate.Generator`.
    """

    function = staticmethod(_judge)

    @property
    def schema(self) -> pa.Schema:
        return schema(self.spec.config.mode)

    def __new__(
        cls,
        models: Any = None,
        mode: str = "pointwise",
        *,
        prompt: str | None = None,
        swap: bool = True,
        scale: int = 10,
        aggregate: str = "mean",
        temperature: float = 0.0,
        max_tokens: int = 1024,
        concurrency: int = 64,
        structured_output: bool = False,
        reasoning: bool = False,
        base_url: str | None = None,
        api_key_env: str | None = None,
        timeout_s: float = 300.0,
        max_retries: int = 8,
        cache_dir: str | None = None,
        cache: bool = True,
        max_cost: float | None = None,
        budget_id: str | None = None,
        on_budget: str = "raise",
        config: JudgeConfig | None = None,
        provider: ProviderConfig | None = None,
    ) -> Judge:
        if config is None:
            config = JudgeConfig(
                models=models or [],
                mode=mode,
                prompt=prompt,
                swap=swap,
                scale=scale,
                aggregate=aggregate,
                temperature=temperature,
                max_tokens=max_tokens,
                concurrency=concurrency,
                structured_output=structured_output,
                reasoning=reasoning,
            )
        if not config.models:  # a copy: the caller's config (e.g. a RunConfig's section) stays as given
            config = dataclasses.replace(config, models=default_models("HFPREF_JUDGE_MODEL"))
        if provider is None:
            provider = ProviderConfig(
                base_url=base_url, api_key_env=api_key_env, timeout_s=timeout_s, max_retries=max_retries
            )
        template = verdicts.load_template(config.prompt, config.mode)
        verdicts.check_template(template, config.mode)
        spec = JudgeSpec(
            config,
            template,
            provider,
            cache_dir,
            cache,
            max_cost,
            budget_id=budget_id,
            on_budget=check_on_budget(on_budget),
            asked=verdicts.asked_forms(template, config.structured_output),
        )
        return super().__new__(cls, spec)  # type: ignore[return-value]

    @classmethod
    def from_file(cls, path: str | None) -> Judge:
        run = load_config(path)
        return cls(config=run.judge, provider=run.provider, max_cost=run.budget.max_cost_usd)


_DEFAULT: list[Judge] = []


async def judge(batch: Mapping[str, Any], indices: Any = None) -> dict[str, Any]:
    """``ds.map(hfpref.judge, batched=True)`` with the default Judge (configured like ``hfpref.generate``)."""
    if not _DEFAULT:
        _DEFAULT.append(Judge.from_file(default_config_path()))
    return await _DEFAULT[0](batch, indices)


def judge_statistics(
    rows: collections.abc.Iterable[Mapping[str, Any]], scores: collections.abc.Iterable[list[float | None]]
) -> dict[str, Any]:
    """What the card reports about the judges, from the ``judge`` and ``scores`` columns of a run.

    One pass over each (they may be generators reading a dataset in batches); what is kept per row is
    one float per agreement and per score (for the exact ``fmean``) and the costs (summed as ``sum``).
    """
    import array

    calls = asked = pairs = parse_failures = failed_calls = inconsistent = 0
    agreements = array.array("d")
    costs: list[float | None] = []
    for r in rows:
        calls += r["calls"]
        asked += r["verdicts"]
        pairs += r["pairs"]
        parse_failures += r["parse_failures"]
        failed_calls += r.get("failed_calls", 0)
        inconsistent += r["inconsistent_pairs"]
        if r["agreement"] is not None:
            agreements.append(r["agreement"])
        costs.append(r["cost"])
    flat = array.array("d")
    unscored = 0
    histogram: collections.Counter[int] = collections.Counter()
    for row in scores:
        for s in row:
            if s is None:
                unscored += 1
            else:
                flat.append(s)
                histogram[min(int(s * 10), 9)] += 1
    return {
        "calls": calls,
        "parse_failure_rate": parse_failures / asked if asked else None,
        "failed_calls": failed_calls,
        "unscored_completions": unscored,
        "score_histogram": {f"{b / 10:.1f}-{(b + 1) / 10:.1f}": histogram[b] for b in range(10)},
        "mean_score": statistics.fmean(flat) if flat else None,
        "position_inconsistency_rate": inconsistent / pairs if pairs else None,
        "agreement": statistics.fmean(agreements) if agreements else None,
        "cost_usd": None if None in costs else sum(costs),  # type: ignore[arg-type]
    }
