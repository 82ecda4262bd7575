"""The CLI's file-to-file jobs: generate, judge and `run` (generate → judge → curate), resumable.

Each job reads INPUT with :func:`hfpref.stages.io.load_rows`, checks every prompt before sending anything,
maps the stage with ``datasets`` and writes OUTPUT atomically. Resuming is the request cache's
job: rerunning a killed command re-sends only the requests whose answers never arrived.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Iterable, Iterator
from typing import Any

from hfpref.config import GenerateConfig, JudgeConfig, RunConfig, parse_models
from hfpref.errors import BudgetExhausted, ConfigError, HfprefError, InputError
from hfpref.stages.base import budget_ledger, new_run_id, prompt_column, read_text_file, to_messages
from hfpref.stages.batching import map_stage
from hfpref.wire.budget import Ledger

MAP_BATCH_SIZE = 256
READ_BATCH_ROWS = 1000  # rows of a result column read into Python at a time (reports, statistics)


def _replace(obj: Any, **changes: Any) -> Any:
    """``dataclasses.replace`` with the flags that were given (None means: not given)."""
    given = {k: v for k, v in changes.items() if v is not None}
    return dataclasses.replace(obj, **given) if given else obj


def _apply_client_flags(run: RunConfig, flags: dict[str, Any]) -> None:
    """The endpoint and budget flags that generate, judge and run share."""
    run.provider = _replace(
        run.provider,
        base_url=flags.get("base_url"),
        api_key_env=flags.get("api_key_env"),
        batch_fallback=flags.get("batch_fallback"),
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
        batch_api=flags.get("batch_api"),
    )
    _apply_client_flags(run, flags)


def in_flight(stage: GenerateConfig | JudgeConfig, run: RunConfig) -> int:
    """Requests a stage may have waiting at once, which sizes the gate of its map: its concurrency; with
    the Batch API, ``batch_in_flight`` (every request of the map joins a batch, none is held back)."""
    return run.provider.batch_in_flight if stage.batch_api else stage.concurrency


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
    for batch in ds.select_columns(read).iter(batch_size=READ_BATCH_ROWS):
        for i, prompt in enumerate(batch[column]):
            where = f"row {offset + i}" + (f" (id={batch['id'][i]!r})" if ids else "")
            to_messages(prompt, where, column, system_prompt)
            if completions:
                _check_completions(batch["completions"][i], where)
        offset += len(batch[column])
    if offset == 0:
        raise InputError("the input has no rows")
    return column


def _batches(ds: Any, column: str) -> Iterator[Any]:
    """``column`` of ``ds`` as Arrow tables of ``READ_BATCH_ROWS`` rows; the pages of ``ds``'s file
    read for a batch are given back after it."""
    from hfpref.stages.io import arrow_pages

    pages = arrow_pages(ds)
    table = pages.table.select([column])
    for start in range(0, table.num_rows, READ_BATCH_ROWS):
        yield table.slice(start, READ_BATCH_ROWS)
        pages.release()


def _values(ds: Any, column: str) -> Iterator[Any]:
    """The Python value of ``column`` in each row of ``ds``, read ``READ_BATCH_ROWS`` rows at a time."""
    for batch in _batches(ds, column):
        yield from batch.column(column).to_pylist()


def _fields(ds: Any, column: str, name: str) -> Iterator[Any]:
    """Field ``name`` of every record of ``column`` (records: ``judge``; lists of records: ``generation``)
    in order, read in batches without building the records."""
    import pyarrow as pa
    import pyarrow.compute as pc

    for batch in _batches(ds, column):
        records = batch.column(column)
        if pa.types.is_list(records.type) or pa.types.is_large_list(records.type):
            records = pc.list_flatten(records)
        yield from pc.struct_field(records, name).to_pylist()


def generation_report(errors: Iterable[str | None]) -> tuple[int, int]:
    """(completions, failed) from the ``error`` of every record of a ``generation`` column."""
    total = failed = 0
    for error in errors:
        total += 1
        failed += bool(error)
    return total, failed


def _ledger(run: RunConfig, cache_dir: str | None) -> Ledger | None:
    """The budget ledger of a new job (its stages share it: ``budget_id=ledger.job``), or None."""
    if run.budget.max_cost_usd is None:
        return None
    return budget_ledger(run.budget.max_cost_usd, cache_dir, new_run_id())


def _budget_options(ledger: Ledger | None) -> dict[str, Any]:
    """A stage of the CLI records unsent completions as null (its finished rows are kept) and draws on
    the job's ledger."""
    return {"on_budget": "null", **({"budget_id": ledger.job} if ledger else {})}


def _first_error(ds: Any) -> str:
    return next(error for error in _fields(ds, "generation", "error") if error)


def generate_file(
    input_path: str,
    output: str,
    run: RunConfig,
    *,
    use_cache: bool = True,
    cache_dir: str | None = None,
    num_proc: int | None = None,
    mapper: Any = None,
) -> Any:
    """``mapper``: what maps the stage (default :func:`~hfpref.stages.batching.map_stage`; the CLI's
    ``--engine ray`` passes the Ray engine's, which takes the same arguments)."""
    from hfpref.stages.generate import Generator
    from hfpref.stages.io import check_output, load_rows, save_rows

    ledger = _ledger(run, cache_dir)
    gen = Generator(
        config=run.generate,
        provider=run.provider,
        max_cost=run.budget.max_cost_usd,
        cache_dir=cache_dir,
        cache=use_cache,
        **_budget_options(ledger),
    )
    check_output(output, nested=True)
    ds = load_rows(input_path)
    check_prompts(ds, run.generate.prompt_column, run.generate.system_prompt)
    out = (mapper or map_stage)(
        ds, gen, in_flight(run.generate, run), MAP_BATCH_SIZE, num_proc=num_proc, desc="hfpref generate"
    )
    total, failed = generation_report(_fields(out, "generation", "error"))
    refused = ledger.refused() if ledger else 0
    if failed == total:  # nothing worth keeping: no output that looks like a result
        if ledger and refused:
            raise _exhausted(ledger, f"no completion succeeded, nothing written to {output}")
        raise HfprefError(
            f"no completion succeeded, nothing written to {output}; the first error: {_first_error(out)}"
        )
    save_rows(out, output)
    if ledger and refused:
        raise _exhausted(
            ledger,
            f"{total - failed} of {total} completions are in {output}, {refused} were not sent: rerun "
            "with a higher --max-cost to finish (finished requests are cached)",
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
        reasoning=flags.get("judge_reasoning"),
        batch_api=flags.get("batch_api"),
    )
    _apply_client_flags(run, flags)


def _exhausted(ledger: Ledger, what: str) -> BudgetExhausted:
    """The budget stop, with the spend of the whole job (every answer in flight has arrived by now)."""
    spent = ledger.spent()
    return BudgetExhausted(
        f"budget of ${ledger.limit_usd:g} reached (${spent:.4f} spent); {what}",
        spent=spent,
        limit=ledger.limit_usd,
    )


def _map_generate(ds: Any, run: RunConfig, mapper: Any = None, **options: Any) -> Any:
    from hfpref.stages.generate import Generator

    gen = Generator(
        config=run.generate,
        provider=run.provider,
        max_cost=run.budget.max_cost_usd,
        **options.pop("client", {}),
    )
    check_prompts(ds, run.generate.prompt_column, run.generate.system_prompt)
    return (mapper or map_stage)(
        ds, gen, in_flight(run.generate, run), MAP_BATCH_SIZE, saved=False, desc="hfpref generate", **options
    )


def _map_judge(ds: Any, run: RunConfig, mapper: Any = None, **options: Any) -> Any:
    from hfpref.stages.judge import Judge

    judge = Judge(
        config=run.judge, provider=run.provider, max_cost=run.budget.max_cost_usd, **options.pop("client", {})
    )
    check_prompts(ds, None, completions=True)
    return (mapper or map_stage)(
        ds, judge, in_flight(run.judge, run), MAP_BATCH_SIZE // 4, desc="hfpref judge", **options
    )


def judge_file(
    input_path: str,
    output: str,
    run: RunConfig,
    *,
    use_cache: bool = True,
    cache_dir: str | None = None,
    num_proc: int | None = None,
    mapper: Any = None,
) -> Any:
    from hfpref.stages.io import check_output, load_rows, save_rows
    from hfpref.stages.judge import judge_statistics

    check_output(output, nested=True)
    ds = load_rows(input_path)
    ledger = _ledger(run, cache_dir)
    out = _map_judge(
        ds,
        run,
        mapper,
        num_proc=num_proc,
        client={"cache": use_cache, "cache_dir": cache_dir, **_budget_options(ledger)},
    )
    save_rows(out, output)
    if ledger and ledger.refused():
        raise _exhausted(
            ledger,
            f"{ledger.refused()} judge requests were not sent (their scores are null) in {output}: rerun with "
            "a higher --max-cost to finish (finished requests are cached)",
        )
    stats = judge_statistics(_values(out, "judge"), _values(out, "scores"))
    if stats["parse_failure_rate"]:
        print(
            f"hfpref: warning: {stats['parse_failure_rate']:.1%} of judge answers could not be parsed "
            f"(their scores are null, the raw text is in `judgments`)",
            file=sys.stderr,
        )
    print(f"hfpref: wrote {len(out):,} judged rows to {output}", file=sys.stderr)
    return out


def run_pipeline(
    input_path: str,
    folder: str,
    run: RunConfig,
    *,
    use_cache: bool = True,
    cache_dir: str | None = None,
    mapper: Any = None,
) -> Any:
    """generate → judge → curate into ``folder``; a rerun after a crash re-pays nothing. ``mapper``: as
    :func:`generate_file`'s, for both stages."""
    from hfpref.repo.folder import check_folder
    from hfpref.repo.provenance import Provenance
    from hfpref.stages.calibrate import stored_calibration
    from hfpref.stages.curate import curate
    from hfpref.stages.io import load_rows

    check_folder(folder)  # before any request is paid for
    ledger = _ledger(run, cache_dir)  # generation and judging draw on the same money
    client = {"cache": use_cache, "cache_dir": cache_dir, **_budget_options(ledger)}
    generated = _map_generate(load_rows(input_path), run, mapper, client=client)
    total, failed = generation_report(_fields(generated, "generation", "error"))
    if ledger and ledger.refused():
        raise _exhausted(
            ledger,
            "generation stopped, no folder written: rerun with a higher budget "
            f"(the {total - failed} finished completions are cached)",
        )
    if failed == total:
        first = _first_error(generated)
        raise HfprefError(f"no completion succeeded, no folder written; the first error: {first}")
    judged = _map_judge(generated, run, mapper, client=client, saved=False)
    del generated  # its rows are in `judged`: unmapping its file takes its pages out of memory
    if ledger and ledger.refused():  # a folder from half-judged rows would look done
        raise _exhausted(
            ledger,
            "judging stopped, no folder written: rerun with a higher budget (finished requests are cached)",
        )
    # what only the settings know; curate adds what the columns tell (models' completions, requests,
    # usage, judge statistics), as it does for a judged file curated on its own
    provenance = Provenance.of_run(run)
    result = curate(
        judged,
        folder,
        run.curate,
        provenance=provenance,
        license=run.hub.license,
        repo_id=run.hub.repo_id,
        calibration=stored_calibration(run.judge, cache_dir),  # hfpref judge --calibrate, when it was run
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
    from hfpref.stages.base import check_credentials
    from hfpref.stages.judge_modes import BUILTIN_PROMPTS

    gen = run.generate
    models = gen.models or parse_models([])
    for spec in models:
        check_credentials(run.provider, spec)
    if run.judge.prompt and run.judge.prompt not in BUILTIN_PROMPTS:
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
    from hfpref.repo.export import validate_folder

    findings = validate_folder(folder)
    for finding in findings:
        print(finding)
    errors = sum(f.level == "error" for f in findings)
    if errors:
        raise HfprefError(f"{folder}: {errors} error(s) found (listed above)")
    print(f"ok: {folder} ({len(findings)} warning(s))")
