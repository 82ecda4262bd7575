"""The CLI's file-to-file jobs: generate, judge and `run` (generate → judge → curate), resumable.

Each job reads INPUT with :func:`hfpref.io.load_rows`, checks every prompt before sending anything,
maps the stage with ``datasets`` and writes OUTPUT atomically. Resuming is the request cache's
job: rerunning a killed command re-sends only the requests whose answers never arrived.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Iterable
from typing import Any

from hfpref.config import RunConfig, parse_models
from hfpref.errors import BudgetExceededError, ConfigError, HfprefError, InputError
from hfpref.stage import prompt_column, read_text_file, to_messages

MAP_BATCH_SIZE = 256


def _replace(obj: Any, **changes: Any) -> Any:
    """``dataclasses.replace`` with the flags that were given (None means: not given)."""
    given = {k: v for k, v in changes.items() if v is not None}
    return dataclasses.replace(obj, **given) if given else obj


def _apply_client_flags(run: RunConfig, flags: dict[str, Any]) -> None:
    """The endpoint and budget flags that generate, judge and run share."""
    run.provider = _replace(
        run.provider, base_url=flags.get("base_url"), api_key_env=flags.get("api_key_env")
    )
    run.budget = _replace(run.budget, max_cost_usd=flags.get("max_cost"))


def apply_generate_flags(run: RunConfig, flags: dict[str, Any]) -> None:
    """Flags override the file: rebuild the touched sections so their checks run again."""
    system_prompt = (
        read_text_file(flags["system_prompt"], "--system-prompt") if flags.get("system_prompt") else None
    )
    run.generate = _replace(
        run.generate,
        models=parse_models(list(flags["models"])) if flags.get("models") else None,
        n=flags.get("n"),
        system_prompt=system_prompt,
        temperature=flags.get("temperature"),
        max_tokens=flags.get("max_tokens"),
        seed=flags.get("seed"),
        prompt_column=flags.get("prompt_column"),
        concurrency=flags.get("concurrency"),
    )
    _apply_client_flags(run, flags)


def _check_completions(completions: Any, where: str) -> None:
    if not isinstance(completions, list) or not all(c is None or isinstance(c, str) for c in completions):
        raise InputError(
            f"{where}: column 'completions' must be a list of strings or nulls, got {completions!r:.80}"
        )


def check_prompts(
    ds: Any, configured: str | None, system_prompt: str | None = None, *, completions: bool = False
) -> str:
    """Check every prompt of ``ds`` (and with ``completions``, every completions list) before anything is
    sent; errors name the absolute row."""
    column = prompt_column(ds.column_names, configured)
    if completions and "completions" not in ds.column_names:
        raise InputError(
            f"no 'completions' column to judge (run hfpref generate first); columns are {ds.column_names}"
        )
    ids = "id" in ds.column_names
    read = [column, *(["id"] if ids else []), *(["completions"] if completions else [])]
    offset = 0
    for batch in ds.select_columns(read).iter(batch_size=10_000):
        for i, prompt in enumerate(batch[column]):
            where = f"row {offset + i}" + (f" (id={batch['id'][i]!r})" if ids else "")
            to_messages(prompt, where, column, system_prompt)
            if completions:
                _check_completions(batch["completions"][i], where)
        offset += len(batch[column])
    if offset == 0:
        raise InputError("the input has no rows")
    return column


def generation_report(rows: Iterable[list[dict[str, Any]]]) -> tuple[int, int, list[str]]:
    """(completions, failed, budget errors) over a ``generation`` column."""
    total = failed = 0
    budget: list[str] = []
    for records in rows:
        for record in records:
            total += 1
            if record.get("error"):
                failed += 1
                if "budget of $" in record["error"]:
                    budget.append(record["error"])
    return total, failed, budget


def _first_error(generation: Iterable[list[dict[str, Any]]]) -> str:
    return next(r["error"] for records in generation for r in records if r.get("error"))


def generate_file(
    input_path: str,
    output: str,
    run: RunConfig,
    *,
    use_cache: bool = True,
    cache_dir: str | None = None,
    num_proc: int | None = None,
) -> Any:
    from hfpref.generate import Generator
    from hfpref.io import check_output, load_rows, save_rows

    gen = Generator(
        config=run.generate,
        provider=run.provider,
        max_cost=run.budget.max_cost_usd,
        cache_dir=cache_dir,
        cache=use_cache,
    )
    check_output(output, nested=True)
    ds = load_rows(input_path)
    check_prompts(ds, run.generate.prompt_column, run.generate.system_prompt)
    out = ds.map(
        gen,
        batched=True,
        with_indices=True,  # errors name rows by their index in the input
        batch_size=MAP_BATCH_SIZE,
        num_proc=num_proc,
        load_from_cache_file=False,
        desc="hfpref generate",
    )
    total, failed, budget = generation_report(out["generation"])
    if failed == total:  # nothing worth keeping: no output that looks like a result
        first = _first_error(out["generation"])
        raise (BudgetExceededError if budget else HfprefError)(
            f"no completion succeeded, nothing written to {output}; the first error: {first}"
        )
    save_rows(out, output)
    if budget:
        raise BudgetExceededError(
            f"{budget[0]}; {total - failed} of {total} completions are in {output}, "
            f"{len(budget)} were not sent: rerun with a higher --max-cost to finish (finished requests are cached)"
        )
    if failed:
        print(
            f"hfpref: warning: {failed} of {total} completions failed for good (null, with the error in "
            f"`generation`); rerun the same command to retry only those",
            file=sys.stderr,
        )
    print(f"hfpref: wrote {len(out):,} rows to {output}", file=sys.stderr)
    return out


def apply_judge_flags(run: RunConfig, flags: dict[str, Any]) -> None:
    run.judge = _replace(
        run.judge,
        models=parse_models(list(flags["judge_models"])) if flags.get("judge_models") else None,
        mode=flags.get("mode"),
        prompt=flags.get("judge_prompt"),
        scale=flags.get("scale"),
        swap=flags.get("swap"),
        aggregate=flags.get("aggregate"),
        concurrency=flags.get("concurrency"),
    )
    _apply_client_flags(run, flags)


def _map_generate(ds: Any, run: RunConfig, max_cost: float | None, **options: Any) -> Any:
    from hfpref.generate import Generator

    gen = Generator(
        config=run.generate, provider=run.provider, max_cost=max_cost, **options.pop("client", {})
    )
    check_prompts(ds, run.generate.prompt_column, run.generate.system_prompt)
    return ds.map(
        gen,
        batched=True,
        with_indices=True,  # errors name rows by their index in the input
        batch_size=MAP_BATCH_SIZE,
        load_from_cache_file=False,
        desc="hfpref generate",
        **options,
    )


def _map_judge(ds: Any, run: RunConfig, max_cost: float | None, **options: Any) -> Any:
    from hfpref.judge import Judge

    judge = Judge(config=run.judge, provider=run.provider, max_cost=max_cost, **options.pop("client", {}))
    check_prompts(ds, None, completions=True)
    return ds.map(
        judge,
        batched=True,
        with_indices=True,
        batch_size=MAP_BATCH_SIZE // 4,
        load_from_cache_file=False,
        desc="hfpref judge",
        **options,
    )


def _cost(records: Iterable[list[dict[str, Any]]]) -> float:
    return sum(r["cost"] or 0.0 for rows in records for r in rows)


def judge_file(
    input_path: str,
    output: str,
    run: RunConfig,
    *,
    use_cache: bool = True,
    cache_dir: str | None = None,
    num_proc: int | None = None,
) -> Any:
    from hfpref.io import check_output, load_rows, save_rows
    from hfpref.judge import judge_statistics

    check_output(output, nested=True)
    ds = load_rows(input_path)
    out = _map_judge(
        ds,
        run,
        run.budget.max_cost_usd,
        num_proc=num_proc,
        client={"cache": use_cache, "cache_dir": cache_dir},
    )
    save_rows(out, output)
    stats = judge_statistics(out["judge"], out["scores"])
    if stats["parse_failure_rate"]:
        print(
            f"hfpref: warning: {stats['parse_failure_rate']:.1%} of judge answers could not be parsed "
            f"(their scores are null, the raw text is in `judgments`)",
            file=sys.stderr,
        )
    print(f"hfpref: wrote {len(out):,} judged rows to {output}", file=sys.stderr)
    return out


def run_pipeline(
    input_path: str, folder: str, run: RunConfig, *, use_cache: bool = True, cache_dir: str | None = None
) -> Any:
    """generate → judge → curate into ``folder``; a rerun after a crash re-pays nothing."""
    from hfpref.curate import curate
    from hfpref.folder import check_folder
    from hfpref.io import load_rows
    from hfpref.judge import judge_statistics

    check_folder(folder)  # before any request is paid for
    client = {"cache": use_cache, "cache_dir": cache_dir}
    ds = load_rows(input_path)
    generated = _map_generate(ds, run, run.budget.max_cost_usd, client=client)
    total, failed, budget = generation_report(generated["generation"])
    if budget:
        raise BudgetExceededError(
            f"{budget[0]} during generation; no folder written: rerun with a higher budget "
            f"(the {total - failed} finished completions are cached)"
        )
    if failed == total:
        first = _first_error(generated["generation"])
        raise HfprefError(f"no completion succeeded, no folder written; the first error: {first}")
    spent = _cost(generated["generation"])
    remaining = None if run.budget.max_cost_usd is None else max(0.0, run.budget.max_cost_usd - spent)
    judged = _map_judge(generated, run, remaining, client=client)
    refused = [row["error"] for row in judged["judge"] if row["error"] and "budget of $" in row["error"]]
    if refused:  # later judge requests were not sent: a folder from half-judged rows would look done
        judge_spent = sum(row["cost"] or 0.0 for row in judged["judge"])
        raise BudgetExceededError(
            f"budget of ${run.budget.max_cost_usd:g} reached during judging "
            f"(${spent + judge_spent:.4f} spent); no folder written: rerun with a higher budget "
            "(finished requests are cached)"
        )
    jstats = judge_statistics(judged["judge"], judged["scores"])
    gen = run.generate
    provenance = {
        "generation": {
            "models": [{"id": m.id, "weight": m.weight} for m in gen.models],
            "n": gen.n,
            "temperature": gen.temperature,
            "top_p": gen.top_p,
            "max_tokens": gen.max_tokens,
            "system_prompt": gen.system_prompt,
            "seed": gen.seed,
            "completions": total,
            "failed": failed,
        },
        "judge": {
            "models": [{"id": m.id} for m in run.judge.models],
            "mode": run.judge.mode,
            "prompt": run.judge.prompt or "default",
            "scale": run.judge.scale,
            "swap": run.judge.swap,
            "aggregate": run.judge.aggregate,
            "statistics": jstats,
        },
    }
    result = curate(
        judged, folder, run.curate, provenance=provenance, license=run.hub.license, repo_id=run.hub.repo_id
    )
    repo = run.hub.repo_id or "USER/NAME"
    print(
        f"hfpref: wrote {folder} ({', '.join(result)}); next:\n"
        f"  hfpref push {folder} {repo}\n  hfpref train --dataset {folder} --model MODEL",
        file=sys.stderr,
    )
    return result


def describe_config(run: RunConfig) -> str:
    """One line per stage saying what a valid config will do (printed by `hfpref validate`)."""
    from hfpref.stage import check_credentials

    gen = run.generate
    models = gen.models or parse_models([])
    for spec in models:
        check_credentials(run.provider, spec)
    if run.judge.prompt and run.judge.prompt not in ("correctness", "helpfulness", "reasoning"):
        read_text_file(run.judge.prompt, "judge prompt")
    if "step_dpo" in run.curate.formats and run.judge.mode != "stepwise":
        raise ConfigError(
            "curate.formats has step_dpo but judge.mode is not stepwise: step scores are needed"
        )
    names = ", ".join(f"{m.id}={m.weight:g}" for m in models) or "default"
    judges = ", ".join(m.id for m in run.judge.models) or "default"
    return (
        f"ok: generate n={gen.n} with {names}; judge {run.judge.mode} with {judges}; "
        f"curate {','.join(run.curate.formats)} ({run.curate.strategy})"
    )


def validate_folder_cli(folder: str) -> None:
    """Print every finding of :func:`hfpref.export.validate_folder` (on stdout, like a linter); any error
    makes the exit code 1, with one line on stderr."""
    from hfpref.export import validate_folder

    findings = validate_folder(folder)
    for finding in findings:
        print(finding)
    errors = sum(f.level == "error" for f in findings)
    if errors:
        raise HfprefError(f"{folder}: {errors} error(s) found (listed above)")
    print(f"ok: {folder} ({len(findings)} warning(s))")
