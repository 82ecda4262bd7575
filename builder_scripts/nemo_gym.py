"""NeMo Gym rollouts (the JSONL ``ng_collect_rollouts`` writes) → ``dpo``, ``kto`` and ``grpo`` configs.

    python builder_scripts/nemo_gym.py --source rollouts.jsonl -o my-prefs [--pairing same_prompt|stratified]

A rollout's prompt is ``responses_create_params.input`` (messages or a string; ``instructions``, when
set, becomes a leading system message; the Responses API role ``developer`` becomes ``system``). Its
completion is the text of the ``output_text`` parts of the ``message`` items of ``response.output``,
messages joined by blank lines: reasoning items and tool calls are left out. Its score is ``reward``.
Rollouts are grouped by prompt and curated by :func:`hfpref.stages.curate.curate`: ``same_prompt`` pairs the
best with the worst rollout of each prompt (``--min-gap``: smallest reward gap), ``stratified`` pairs
rollouts with reward ≥ ``--high`` with rollouts with reward ≤ ``--low``; ``kto`` labels a rollout
desirable when its reward ≥ ``--threshold``; ``grpo`` keeps every rollout with its reward.

Skipped and counted: rollouts with a null reward, and rollouts whose response has no output text.
Rewards outside [0, 1] are rescaled to [0, 1] by (reward − min) / (max − min) over the file (the card
says so); the options then apply to the rescaled rewards. Reward statistics go into the card.
"""

from __future__ import annotations

from typing import Any

import click

from hfpref.config import CurateConfig, help_for
from hfpref.importers.base import (
    Field,
    Importer,
    ImportOptions,
    distribution,
    import_command,
    run,
    scored_config,
)
from hfpref.repo.folder import prompt_key


def rollout_prompt(record: Field) -> list[dict[str, str]]:
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


@import_command("nemo_gym")
@click.option(
    "--pairing",
    type=click.Choice(["same_prompt", "stratified"]),
    default="same_prompt",
    show_default=True,
    help="same_prompt: best vs worst rollout of each prompt; stratified: reward >= --high vs reward <= --low.",
)
@click.option(
    "--min-gap",
    type=click.FloatRange(0, 1),
    default=0.0,
    show_default=True,
    help="DPO: smallest reward gap (rewards are in [0, 1], rescaled when the file's are not).",
)
@click.option("--high", type=click.FloatRange(0, 1), help=help_for(CurateConfig, "high"))
@click.option("--low", type=click.FloatRange(0, 1), help=help_for(CurateConfig, "low"))
@click.option(
    "--threshold", type=float, help="KTO: a rollout with reward >= this is desirable (default 0.7)."
)
@click.option(
    "--formats", default="dpo,kto,grpo", show_default=True, help="Configs to write, of dpo, sft, kto, grpo."
)
def command(options: ImportOptions, pairing: str, formats: str, min_gap: float, **thresholds: Any) -> None:
    """Import NeMo Gym rollouts (JSONL with responses_create_params, response, reward) as dpo, kto, grpo."""
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
    job.curate(rows, config)


def main(args: list[str] | None = None) -> None:
    """Run the script: errors are one line on stderr and an exit code."""
    run(command, args)


if __name__ == "__main__":
    main()
