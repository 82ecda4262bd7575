"""LLM-as-judge: pointwise rubric scores, pairwise with position swap, stepwise, panels.

``ds.map(hfpref.judge, batched=True)`` reads ``prompt`` and ``completions`` and adds:

* ``scores``: list[float | None] in [0, 1], one per completion; None when no judge answer for it
  could be parsed (or the completion itself is null). Never a guessed score.
* ``judgments``: per completion, the raw text of every judge answer that scored it.
* ``step_scores`` (stepwise only): per completion, one score per reasoning step.
* ``judge``: per row, what the statistics are computed from: ``calls`` (requests), ``verdicts``
  (verdicts asked for), ``parse_failures`` (verdicts still unparsed after the reminder),
  ``pairs`` and ``inconsistent_pairs`` (pairwise), ``agreement`` (panels), ``cost``, ``batch_calls``
  (the calls answered by a Batch API batch); pairwise only (else null), ``first_position_wins`` and
  ``decisive_verdicts`` (verdicts naming the completion shown first, and naming either, over every
  order and judge) and, for a panel, ``panel_table`` (each two judges' outcomes of the pairs all of
  them decided, 9 counts over :data:`~hfpref.stages.judge_modes.PANEL_OUTCOMES`; see the modes' doc).

The modes (pointwise, pairwise with position swap, stepwise; panels of several judges) are one table,
:data:`hfpref.stages.judge_modes.MODES`, whose module doc says how each scores. An answer that does
not parse is asked again once, with a format reminder, before giving up; the verdict read is the
judge's own (:mod:`hfpref.stages.verdicts`), never one it quotes or copies from the candidates it was
shown. With ``reasoning=True`` (``[judge] reasoning``, ``--judge-reasoning``) the judge also sees each
completion's ``reasoning``, in a ``<think>`` block before it.
"""

from __future__ import annotations

import collections
import dataclasses
import statistics
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from hfpref.config import JudgeConfig, ProviderConfig, default_config_path, default_models, load_config
from hfpref.errors import BadRequestError, InputError
from hfpref.stages import verdicts
from hfpref.stages.base import (
    Access,
    Stage,
    client_for,
    is_single_row,
    prompt_column,
    row_label,
    typed_columns,
)
from hfpref.stages.concurrency import map_call
from hfpref.stages.judge_modes import MODES, Row, check_template, load_template
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
        ("batch_calls", pa.int64()),
        ("first_position_wins", pa.int64()),
        ("decisive_verdicts", pa.int64()),
        ("panel_table", pa.list_(pa.int64())),
    ]
)


def schema(mode: str) -> pa.Schema:
    """The columns a judge in ``mode`` adds."""
    return pa.schema(
        [
            ("scores", pa.list_(pa.float64())),
            ("judgments", pa.list_(pa.list_(pa.string()))),
            *MODES[mode].columns,
            ("judge", _RECORD),
        ]
    )


@dataclass
class JudgeSpec:
    config: JudgeConfig
    template: str
    access: Access = field(default_factory=Access)
    asked: tuple[str, ...] = ()  # the verdict forms the template asks for (verdicts.asked_forms)


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
    client = client_for(spec.access, "judge", cfg.models, cfg.concurrency, batch_api=cfg.batch_api)
    # the batch's turn on the backlog first: bounded work in progress however many batches map starts
    async with client.open() as state, state.backlog.batch(len(prompts)) as admitted:

        async def one(i: int, prompt: Any, completions: list[str | None]) -> dict[str, Any]:
            row = Row(cfg, spec.template, spec.asked, client, state)
            reasoning = all_reasoning[i] if all_reasoning else [None] * len(completions)
            try:
                result = await MODES[cfg.mode].score(row, prompt, list(completions), reasoning)
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
                "batch_calls": row.batch_calls,
                "first_position_wins": result.pop("first_position_wins", None),
                "decisive_verdicts": result.pop("decisive_verdicts", None),
                "panel_table": result.pop("panel_table", None),
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
        batch_api: bool = False,
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
                batch_api=batch_api,
            )
        if not config.models:  # a copy: the caller's config (e.g. a RunConfig's section) stays as given
            config = dataclasses.replace(config, models=default_models("HFPREF_JUDGE_MODEL"))
        access = Access.of(
            provider,
            base_url=base_url,
            api_key_env=api_key_env,
            timeout_s=timeout_s,
            max_retries=max_retries,
            cache_dir=cache_dir,
            cache=cache,
            max_cost=max_cost,
            budget_id=budget_id,
            on_budget=on_budget,
        )
        template = load_template(config.prompt, config.mode)
        check_template(template, config.mode)
        asked = verdicts.asked_forms(template, config.structured_output)
        spec = JudgeSpec(config, template, access, asked)
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
