"""The paths that keep memory flat give the results of the plain ones.

curate reads its input in chunks of ``hfpref.stages.scored.CHUNK_ROWS`` rows: any chunk size gives the same
tables (down to their Arrow buffers), statistics, provenance, folder bytes and error messages. The
stages go through a gate, and a map call that would have datasets' maximum of batches or more groups
several stage batches per map batch: same rows, same record batches, same files, and a failing row is
still named by its row in the input. The reports read result columns in batches, in one pass.
"""

from __future__ import annotations

import asyncio
import importlib
import math
import random
import time
from pathlib import Path
from typing import Any

import datasets
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from datasets import Dataset

from hfpref.errors import InputError
from hfpref.repo.folder import FolderWriter, prompt_key, split_hash
from hfpref.stages import batching, pipeline, scored
from hfpref.stages.curate import curate
from hfpref.stages.generate import Generator
from hfpref.stages.io import arrow_pages
from hfpref.stages.judge import judge_statistics
from tests.fake_openai import FakeOpenAI, fake_openai, ok, status
from tests.test_cli_stages import hfpref, prompts
from tests.test_curate import messages, row

__all__ = ["fake_openai"]  # the fixture

# --- curate in chunks -------------------------------------------------------------------------------------


def scored_rows(n: int, conversational: bool, seed: int = 0) -> list[dict[str, Any]]:
    """Rows with repeated prompts, null and blank completions, duplicate texts, ties, steps and usage."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        question = f"q{rng.randrange(n // 3)}"
        k = rng.randrange(5)
        texts = [rng.choice(["a", "b", "a\n\nb", "c\n\nd\n\ne", None, " "]) for _ in range(k)]
        rows.append(
            row(
                messages(question) if conversational else question,
                texts,
                [rng.choice([None, 0.0, 0.5, 1.0, rng.random()]) for _ in range(k)],
                step_scores=[[rng.choice([0.1, 0.9]) for _ in range(rng.randrange(1, 4))] for _ in range(k)],
                generation=[
                    {
                        "prompt_tokens": 3,
                        "completion_tokens": 2,
                        "finish_reason": rng.choice(["stop", "length"]),
                        "cost": rng.random() / 100,
                        "error": None,
                    }
                    for _ in range(k)
                ],
            )
        )
    return rows


def files(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


@pytest.mark.parametrize("conversational", [False, True])
@pytest.mark.parametrize("style", ["conversational", "standard"])
def test_curate_in_chunks_gives_the_one_chunk_result(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, conversational: bool, style: str
) -> None:
    data = Dataset.from_list(scored_rows(90, conversational))
    options = {
        "formats": "dpo,sft,kto,grpo,step_dpo,stepwise",
        "test_size": 0.3,
        "style": style,
        "strategy": "all_pairs",
    }
    whole = curate(data, **options)  # in memory: the tables as built
    curate(data, tmp_path / "whole" / "prefs", **options)
    for chunk_rows in (1, 7):
        monkeypatch.setattr(scored, "CHUNK_ROWS", chunk_rows)
        chunked = curate(data, **options)
        curate(data, tmp_path / f"by-{chunk_rows}" / "prefs", **options)
        assert list(chunked) == list(whole) == ["dpo", "sft", "kto", "grpo", "step_dpo", "stepwise"]
        for name, splits in whole.items():
            assert list(chunked[name]) == list(splits)
            for split, ds in splits.items():
                table, expected = chunked[name][split].data.table, ds.data.table
                assert table.equals(expected, check_metadata=True), (name, split)
                assert table.nbytes == expected.nbytes  # the same buffers: the same shard count
        assert orjson.dumps(chunked.statistics) == orjson.dumps(whole.statistics)
        assert orjson.dumps(chunked.provenance) == orjson.dumps(whole.provenance)
        assert files(tmp_path / f"by-{chunk_rows}" / "prefs") == files(tmp_path / "whole" / "prefs")


@pytest.mark.parametrize("conversational", [False, True])
def test_configs_written_slice_by_slice_read_back_as_built_in_memory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, conversational: bool
) -> None:
    monkeypatch.setattr(importlib.import_module("hfpref.stages.curate"), "SLICE_ROWS", 7)
    data = Dataset.from_list(scored_rows(90, conversational))
    options = {"formats": "dpo,sft,kto,grpo,step_dpo,stepwise", "test_size": 0.3, "strategy": "all_pairs"}
    in_memory = curate(data, **options)
    written = curate(data, tmp_path / "prefs", **options)
    assert written.num_rows == {name: dd.num_rows for name, dd in in_memory.items()}
    for name, splits in in_memory.items():
        for split, ds in splits.items():
            assert written[name][split].data.table.equals(ds.data.table), (name, split)
            shard = next((tmp_path / "prefs" / name).glob(f"{split}-*.parquet"))
            assert pq.read_metadata(shard).num_row_groups == math.ceil(ds.num_rows / 7)  # one per slice


def test_a_config_of_one_slice_is_written_as_datasets_writes_it(tmp_path: Path) -> None:
    configs = curate(Dataset.from_list(scored_rows(90, True)), tmp_path / "prefs", formats="dpo,grpo")
    for name, splits in configs.items():
        for split, ds in splits.items():
            ds.to_parquet(str(tmp_path / "plain.parquet"))
            (shard,) = (tmp_path / "prefs" / name).glob(f"{split}-*.parquet")
            assert shard.read_bytes() == (tmp_path / "plain.parquet").read_bytes(), (name, split)


def test_shards_fill_to_the_size_limit_then_roll_over(tmp_path: Path) -> None:
    tables = [pa.table({"x": list(range(k, k + 100))}) for k in range(0, 1000, 100)]  # 800 bytes each
    writer = FolderWriter(tmp_path / "out", ["n"], max_shard_size=2000)
    writer.add("n", {"train": iter(tables)})
    shards = sorted((tmp_path / "out" / "n").iterdir())
    assert [p.name for p in shards] == [f"train-0000{i}-of-00004.parquet" for i in range(4)]  # 3+3+3+1
    assert [pq.read_metadata(p).num_rows for p in shards] == [300, 300, 300, 100]
    assert pq.read_table(shards).column("x").to_pylist() == list(range(1000))
    assert writer.written["n"].splits == {"train": 1000}


def test_a_bad_row_in_a_later_chunk_is_named_by_its_row(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scored, "CHUNK_ROWS", 4)
    rows = [row(f"q{i}", ["a", "b"], [0.5, 0.25]) for i in range(10)]
    rows[9]["scores"] = [0.5, 1.5]
    with pytest.raises(
        InputError, match=r"^row 9: scores\[1\] = 1.5, expected a number in \[0, 1\] or null$"
    ):
        curate(rows)
    # every row is checked before a missing column of the formats is reported, as in one chunk
    with pytest.raises(InputError, match=r"^row 9: scores\[1\] = 1.5"):
        curate(rows, formats="step_dpo")


@pytest.mark.parametrize("conversational", [False, True])
def test_prompts_are_numbered_in_order_of_first_appearance(
    monkeypatch: pytest.MonkeyPatch, conversational: bool
) -> None:
    monkeypatch.setattr(scored, "CHUNK_ROWS", 7)
    rows = scored_rows(200, conversational)
    source = scored.ScoredInput(Dataset.from_list(rows), "standard", seed=5)
    for _ in source.read():
        pass
    hashes, ids = source.prompt_ids()
    keys = [prompt_key(r["prompt"]) for r in rows]
    number = {key: n for n, key in enumerate(dict.fromkeys(keys))}
    assert len(number) < len(rows) // 2  # prompts repeat
    assert ids.tolist() == [number[key] for key in keys]
    assert hashes.tolist() == [split_hash(5, key) for key in number]


# --- the stages' map: gate, grouped batches ---------------------------------------------------------------

IN_STAGE = {"now": 0, "most": 0}


async def doubling_stage(batch: Any, indices: list[int]) -> dict[str, list[Any]]:
    IN_STAGE["now"] += 1
    IN_STAGE["most"] = max(IN_STAGE["most"], IN_STAGE["now"])
    await asyncio.sleep(0)
    IN_STAGE["now"] -= 1
    return {"double": [2 * x for x in batch["x"]], "where": list(indices)}


@pytest.mark.parametrize("saved", [True, False])
def test_stage_batches_are_gated_and_grouped_below_datasets_limit(
    monkeypatch: pytest.MonkeyPatch, saved: bool
) -> None:
    monkeypatch.setattr(datasets.config, "MAX_NUM_RUNNING_ASYNC_MAP_FUNCTIONS_IN_PARALLEL", 5)
    monkeypatch.setattr(batching, "GATE_ROWS", 16)  # two 8-row stage batches at once
    IN_STAGE["most"] = 0
    ds = Dataset.from_dict({"x": list(range(1000))})
    out = batching.map_stage(ds, doubling_stage, 1, 8, saved=saved)
    assert out["double"] == [2 * x for x in range(1000)]
    assert out["where"] == list(range(1000))  # indices in the input, whatever map batch a row was in
    assert IN_STAGE["most"] == 2
    lengths = {len(batch) for batch in out.data.to_batches()}
    # saved: stage-batch record batches, as one map batch per stage batch writes them
    assert lengths == ({8} if saved else {1000})


async def failing_stage(batch: Any, indices: list[int]) -> dict[str, list[Any]]:
    if indices[0] == 8:
        await asyncio.sleep(0.05)
        raise ValueError("rows 8-15")
    if indices[0] == 24:
        raise ValueError("rows 24-31")  # fails first
    if indices[0] == 16:
        await asyncio.sleep(30)  # cancelled once the first failing part is known
    return {"y": list(indices)}


def test_the_first_failing_part_in_row_order_raises_and_the_others_stop() -> None:
    start = time.monotonic()
    with pytest.raises(ValueError, match="rows 8-15"):
        asyncio.run(
            batching.in_parts(failing_stage, batching.Gate(8), 8, {"x": list(range(32))}, list(range(32)))
        )
    assert time.monotonic() - start < 10


def test_grouped_stage_batches_keep_the_column_types(
    fake_openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    # two map batches of three 4-row stage batches: the joined parts keep the stage's column types,
    # so a failure in the second map batch is written after a first one without any
    monkeypatch.setattr(datasets.config, "MAX_NUM_RUNNING_ASYNC_MAP_FUNCTIONS_IN_PARALLEL", 3)
    fake_openai.responder = lambda body: status(500) if "question 20" in str(body["messages"]) else None
    gen = Generator(models=["m/a"], n=1, base_url=fake_openai.base_url, max_retries=0, cache=False)
    ds = Dataset.from_dict({"prompt": [f"question {i}" for i in range(24)]})
    out = batching.map_stage(ds, gen, 4, 4)
    assert len(out.data.to_batches()) == 6  # stage-batch record batches
    assert [i for i, c in enumerate(out["completions"]) if c == [None]] == [20]
    assert out.features["generation"] == gen.features["generation"]


def scores_or_refusal(body: dict[str, Any]) -> Any:
    if body["model"] == "j/1":
        return ok("Score: 7")
    if body["messages"][-1]["content"] == "refuse 290":
        return status(400, "this prompt is not allowed")
    return None


def test_grouped_map_batches_write_the_same_files_and_name_the_same_rows(
    fake_openai: FakeOpenAI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_openai.responder = scores_or_refusal
    good = prompts(tmp_path / "good.jsonl", 300)
    source = tmp_path / "in.jsonl"  # no ids: a failing row is named by its index
    source.write_bytes(b"".join(orjson.dumps({"prompt": f"refuse {i}"}) + b"\n" for i in range(300)))
    flags = ("--model", "m/a", "-n", "2", "--base-url", fake_openai.base_url, "--no-cache")
    judge_flags = ("--judge-model", "j/1", "--base-url", fake_openai.base_url, "--no-cache")

    def outputs(name: str) -> tuple[bytes, bytes, bytes, str]:
        gen, judged = tmp_path / f"{name}.parquet", tmp_path / f"{name}-judged.parquet"
        assert hfpref("generate", good, "-o", gen, *flags).exit_code == 0
        assert hfpref("generate", good, "-o", tmp_path / f"{name}.jsonl", *flags).exit_code == 0
        assert hfpref("judge", gen, "-o", judged, *judge_flags).exit_code == 0
        refused = hfpref("generate", source, "-o", tmp_path / f"{name}-refused.jsonl", *flags)
        assert refused.exit_code == 1
        return (
            gen.read_bytes(),
            (tmp_path / f"{name}.jsonl").read_bytes(),
            judged.read_bytes(),
            refused.stderr.splitlines()[-1],
        )

    plain = outputs("plain")
    assert plain[3] == "hfpref: error: row 290: m/a: HTTP 400: this prompt is not allowed"
    monkeypatch.setattr(datasets.config, "MAX_NUM_RUNNING_ASYNC_MAP_FUNCTIONS_IN_PARALLEL", 2)
    assert outputs("grouped") == plain  # one map batch: generate's 2 stage batches, judge's 5


def test_num_proc_workers_get_their_gate(fake_openai: FakeOpenAI, tmp_path: Path) -> None:
    source = prompts(tmp_path / "in.jsonl", 40)
    flags = ("--model", "m/a", "-n", "2", "--base-url", fake_openai.base_url, "--no-cache")
    assert hfpref("generate", source, "-o", tmp_path / "one.jsonl", *flags).exit_code == 0
    two = hfpref("generate", source, "-o", tmp_path / "two.jsonl", *flags, "--num-proc", "2")
    assert two.exit_code == 0, two.stderr
    assert (tmp_path / "two.jsonl").read_bytes() == (tmp_path / "one.jsonl").read_bytes()


# --- reports read in batches ------------------------------------------------------------------------------


def judged_rows(n: int) -> list[dict[str, Any]]:
    rng = random.Random(3)
    return [
        {
            "scores": [rng.choice([None, rng.random()]) for _ in range(3)],
            "judge": {
                "calls": 3,
                "verdicts": 3,
                "parse_failures": rng.randrange(2),
                "failed_calls": rng.randrange(2),
                "error": rng.choice([None, "HTTP 500", "budget of $1 reached"]),
                "pairs": 2,
                "inconsistent_pairs": rng.randrange(2),
                "agreement": rng.choice([None, rng.random()]),
                "cost": rng.random() / 100,
            },
            "generation": [
                {"error": rng.choice([None, "HTTP 500", "budget of $1 reached"]), "cost": rng.random()}
                for _ in range(rng.randrange(3))
            ],
        }
        for _ in range(n)
    ]


def on_disk(ds: Dataset, path: Path) -> Dataset:
    """``ds`` as a ``map`` result: one Arrow file, memory-mapped (in 16-row record batches)."""
    return ds.map(lambda batch: batch, batched=True, cache_file_name=str(path), writer_batch_size=16)


@pytest.mark.parametrize("where", ["memory", "file"])
def test_reports_read_in_batches_match_the_row_by_row_reading(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, where: str
) -> None:
    monkeypatch.setattr(pipeline, "READ_BATCH_ROWS", 7)
    rows = judged_rows(50)
    ds = Dataset.from_list(rows)
    if where == "file":
        ds = on_disk(ds, tmp_path / "judged.arrow")
    expected = judge_statistics([r["judge"] for r in rows], [r["scores"] for r in rows])
    assert judge_statistics(pipeline._values(ds, "judge"), pipeline._values(ds, "scores")) == expected
    records = [record for r in rows for record in r["generation"]]
    errors = [record["error"] for record in records]
    assert pipeline.generation_report(pipeline._fields(ds, "generation", "error")) == (
        len(records),
        sum(bool(e) for e in errors),
    )
    assert pipeline._first_error(ds) == next(e for e in errors if e)

    usage = scored.Usage()
    usage.add(pipeline._values(ds, "generation"))
    assert usage.counts["failed"] == sum(bool(e) for e in errors)


# --- pages of mapped files given back --------------------------------------------------------------------


def resident_kib(address: int) -> int:
    """The resident KiB of the memory mapping holding ``address`` (Linux's /proc/self/smaps)."""
    inside = False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split()[0]
        if "-" in head and not head.endswith(":"):
            low, high = (int(x, 16) for x in head.split("-"))
            inside = low <= address < high
        elif inside and head == "Rss:":
            return int(line.split()[1])
    raise AssertionError(f"no mapping holds {address:#x}")


def test_a_mapped_file_is_read_zero_copy_and_its_pages_are_given_back(tmp_path: Path) -> None:
    texts = [f"{i:08d}" * 64 for i in range(4096)]  # 2 MiB of text
    ds = on_disk(Dataset.from_dict({"text": texts, "n": list(range(4096))}), tmp_path / "big.arrow")
    pages = arrow_pages(ds)
    column = pages.table.column("text")
    assert column.to_pylist() == texts  # read: its pages are in memory
    address = column.chunk(0).buffers()[2].address
    assert resident_kib(address) >= 2048
    pages.release()
    assert resident_kib(address) < 256  # the file's pages left the process (headers may be read again)
    assert column.to_pylist() == texts  # and come back when read again


def test_the_table_of_a_changed_dataset_is_the_one_datasets_gives(tmp_path: Path) -> None:
    ds = on_disk(
        Dataset.from_dict({"a": [1, 2, 3], "b": ["x", "y", "z"], "c": [0.5, 1.0, 0.0]}), tmp_path / "d.arrow"
    )
    changed = [ds.rename_column("a", "id"), ds.remove_columns("c"), ds.select_columns(["c", "b"])]
    for version in [ds, *changed]:  # the file, with the changes datasets replays on it
        assert arrow_pages(version).table.equals(version.with_format("arrow")[:])
    assert all(version.data.path == ds.data.path for version in changed)
    for version in (ds.select([2, 0]), ds.shuffle(seed=1), Dataset.from_dict({"a": [1]})):  # not one file
        pages = arrow_pages(version)
        assert pages.table.equals(version.with_format("arrow")[:])
        pages.release()  # nothing to give back


@pytest.mark.parametrize("conversational", [False, True])
def test_curate_from_a_mapped_file_gives_the_in_memory_result(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, conversational: bool
) -> None:
    monkeypatch.setattr(scored, "CHUNK_ROWS", 7)
    rows = scored_rows(60, conversational)
    options = {"formats": "dpo,sft,kto,grpo,step_dpo,stepwise", "test_size": 0.3, "strategy": "all_pairs"}
    in_memory = curate(Dataset.from_list(rows), tmp_path / "memory" / "prefs", **options)
    mapped = on_disk(Dataset.from_list(rows).rename_column("prompt", "text"), tmp_path / "scored.arrow")
    from_file = curate(mapped.rename_column("text", "prompt"), tmp_path / "file" / "prefs", **options)
    assert from_file.num_rows == in_memory.num_rows
    assert orjson.dumps(from_file.provenance) == orjson.dumps(in_memory.provenance)
    assert files(tmp_path / "file" / "prefs") == files(tmp_path / "memory" / "prefs")
