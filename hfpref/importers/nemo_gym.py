"""NeMo Gym rollouts (the JSONL ``ng_collect_rollouts`` writes) → ``dpo``, ``kto`` and ``grpo`` configs.

A rollout's prompt is ``responses_create_params.input`` (messages or a string; ``instructions``, when
set, becomes a leading system message; the Responses API role ``developer`` becomes ``system``). Its
completion is the text of the ``output_text`` parts of the ``message`` items of ``response.output``,
messages joined by blank lines: reasoning items and tool calls are left out. Its score is ``reward``.
Rollouts are grouped by prompt and curated by :func:`hfpref.stages.curate.curate`: ``same_prompt`` pairs
the best with the worst rollout of each prompt (``min_gap``: smallest reward gap), ``stratified`` pairs
rollouts with reward ≥ ``high`` with rollouts with reward ≤ ``low``; ``kto`` labels a rollout
desirable when its reward ≥ ``threshold``; ``grpo`` keeps every rollout with its reward.

Skipped and counted: rollouts with a null reward, and rollouts whose response has no output text.
Rewards outside [0, 1] are rescaled to [0, 1] by (reward − min) / (max − min) over the file (the card
says so); the options then apply to the rescaled rewards. Reward statistics go into the card.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from hfpref.importers.base import Importer, ImportOptions, distribution, scored_config
from hfpref.importers.records import Field, Message
from hfpref.repo.folder import prompt_key


def rollout_prompt(record: Field) -> list[Message]:
    """The prompt messages of a rollout: ``instructions`` as a system message, then ``input``."""
    params = record["responses_create_params"]
    messages = params["input"].messages(allow_text=True)
    instructions = params["instructions"].text(optional=True)
    return [{"role": "system", "content": instructions}, *messages] if instructions else messages


def rollout_text(response: Field) -> str:
    """The assistant text of a response: its ``message`` items' ``output_text`` parts."""
    texts = []
    for item in response["output"].items():
        if item["type"].text() != "message":
            continue
        parts = [part for part in item["content"].items() if part["type"].text() == "output_text"]
        texts.append("".join(part["text"].text() for part in parts))
    return "\n\n".join(text for text in texts if text.strip())


def _rows(job: Importer, groups: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The scored rows of the rollout groups, rewards rescaled to [0, 1] when the file's are not."""
    rewards = [r for group in groups.values() for r in group["rewards"]]
    job.distributions["reward"] = distribution(rewards)
    low, high = min(rewards, default=0.0), max(rewards, default=1.0)
    rescale = low < 0 or high > 1
    if rescale:
        job.facts["reward scaling"] = f"rewards in [{low:g}, {high:g}] rescaled to [0, 1]"
        click.echo(f"note: rewards span [{low:g}, {high:g}]: rescaled to [0, 1] before pairing")
    rows = []
    for group in groups.values():
        scores = [(r - low) / ((high - low) or 1.0) if rescale else r for r in group["rewards"]]
        row = {"prompt": group["prompt"], "completions": group["completions"], "scores": scores}
        if any(group["models"]):
            row["completion_models"] = group["models"]
        rows.append(row)
    return rows


def build(
    options: ImportOptions,
    *,
    pairing: str = "same_prompt",
    formats: str = "dpo,kto,grpo",
    min_gap: float = 0.0,
    **thresholds: float | None,
) -> Path:
    """Import NeMo Gym rollouts (JSONL with responses_create_params, response, reward) as ``formats`` (of
    dpo, sft, kto, grpo); ``pairing`` ``same_prompt`` or ``stratified``; ``thresholds``: ``high``,
    ``low`` and ``threshold`` as :class:`~hfpref.config.CurateConfig` has them (None: its default).
    Returns the folder."""
    strategy = "best_worst" if pairing == "same_prompt" else "stratified"
    config = scored_config(options, formats, strategy=strategy, min_margin=min_gap, **thresholds)
    job = Importer(
        options,
        name="NeMo Gym rollouts",
        summary="Preference data made from NeMo Gym rollouts: completions scored by the environment's verifier.",
        conversion=f"rollouts grouped by prompt; reward as score; {pairing} pairing",
        tags=("nemo-gym", "rlvr"),
        limitations=(
            "Completions are the assistant message text of each rollout; reasoning items and tool calls "
            "are left out, so a reward earned through tool use is credited to the final text.",
            "Scores are verifier rewards, as good as the environment's verification.",
        ),
    )
    groups: dict[str, dict[str, Any]] = {}
    for record in job.records():
        prompt = rollout_prompt(record)
        reward = record["reward"].number(optional=True)
        if reward is None:
            job.skip("null reward")
            continue
        text = rollout_text(record["response"])
        if not text:
            job.skip("no output_text in response.output")
            continue
        group = groups.setdefault(
            prompt_key(prompt), {"prompt": prompt, "completions": [], "rewards": [], "models": []}
        )
        group["completions"].append(text)
        group["rewards"].append(reward)
        group["models"].append(record["response"]["model"].text(optional=True))
    return job.curate(_rows(job, groups), config)
