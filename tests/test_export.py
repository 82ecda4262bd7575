"""export() to NeMo RL / Axolotl / JSONL, and validate_folder() findings."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from datasets import load_dataset

from hfpref.errors import InputError
from hfpref.repo.export import Finding, export, validate_folder
from hfpref.stages.curate import curate
from tests.test_curate import row, run_cli


def scored(conversational: bool, n: int = 10) -> list[dict[str, Any]]:
    prompts = [[{"role": "user", "content": f"q{i}"}] if conversational else f"q{i}" for i in range(n)]
    return [row(prompt, [f"good {i}", f"bad {i}"], [0.9, 0.1]) for i, prompt in enumerate(prompts)]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    curate(scored(conversational=True), tmp_path / "prefs", formats="dpo,sft,kto", test_size=0.2)
    return tmp_path / "prefs"


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def test_nemo_rl(folder: Path, tmp_path: Path) -> None:
    written = export(folder, "nemo-rl", tmp_path / "out")
    names = sorted(p.relative_to(tmp_path / "out").as_posix() for p in written)
    assert names == [
        "dpo/test.jsonl",
        "dpo/train.jsonl",
        "sft/test.jsonl",
        "sft/train.jsonl",
    ]  # kto: no NeMo format
    dpo = read_jsonl(tmp_path / "out" / "dpo" / "train.jsonl")
    assert len(dpo) == 8
    assert dpo[0] == {"prompt": [{"role": "user", "content": "q0"}], "chosen": "good 0", "rejected": "bad 0"}
    sft = read_jsonl(tmp_path / "out" / "sft" / "train.jsonl")
    assert sft[0] == {
        "messages": [{"role": "user", "content": "q0"}, {"role": "assistant", "content": "good 0"}]
    }


def test_axolotl_from_standard_prompts(tmp_path: Path) -> None:
    curate(scored(conversational=False), tmp_path / "prefs", formats="dpo", test_size=0)
    export(tmp_path / "prefs", "axolotl", tmp_path / "out")
    first = read_jsonl(tmp_path / "out" / "dpo" / "train.jsonl")[0]
    assert first == {
        "messages": [{"role": "user", "content": "q0"}],
        "chosen": {"role": "assistant", "content": "good 0"},
        "rejected": {"role": "assistant", "content": "bad 0"},
    }


def test_jsonl_is_every_config_as_is(folder: Path, tmp_path: Path) -> None:
    export(folder, "jsonl", tmp_path / "out")
    for config in ("dpo", "sft", "kto"):
        for split in ("train", "test"):
            expected = load_dataset(str(folder), config, split=split).to_list()
            assert read_jsonl(tmp_path / "out" / config / f"{split}.jsonl") == expected


def test_export_needs_a_config_the_target_reads(tmp_path: Path) -> None:
    curate(scored(conversational=False), tmp_path / "prefs", formats="kto", test_size=0)
    with pytest.raises(InputError, match="no config nemo-rl can use"):
        export(tmp_path / "prefs", "nemo-rl", tmp_path / "out")
    with pytest.raises(InputError, match="--to 'trl'"):
        export(tmp_path / "prefs", "trl", tmp_path / "out")


def test_a_curated_folder_validates_clean(folder: Path) -> None:
    assert validate_folder(folder) == []


def rewrite(path: Path, change: Any) -> None:
    table = pq.read_table(path)
    pq.write_table(pa.Table.from_pylist(change(table.to_pylist()), schema=table.schema), path)


def test_validate_finds_broken_pairs_leaks_and_card_mismatches(folder: Path) -> None:
    train = folder / "dpo" / "train-00000-of-00001.parquet"
    test = folder / "dpo" / "test-00000-of-00001.parquet"
    rewrite(train, lambda rows: [{**rows[0], "rejected": rows[0]["chosen"]}, *rows[1:]])  # identical pair
    leaked = pq.read_table(train).to_pylist()[1]
    rewrite(test, lambda rows: [*rows, leaked])  # a train prompt in test
    shutil.rmtree(folder / "kto")  # the card still names kto
    shutil.copytree(folder / "sft", folder / "orphan")  # files the card does not name
    (folder / "hfpref.json").unlink()
    found = {(f.level, f.where): f.message for f in validate_folder(folder)}
    assert found[("error", "dpo/train")] == "1 row(s) with identical chosen and rejected (first: row 0)"
    assert found[("error", "dpo, sft")].startswith(
        "1 prompt(s) appear in more than one split"
    )  # sft has it too
    assert found[("error", "kto/train")] == "the card names this split but no file matches"
    assert found[("warning", "orphan")] == "has parquet shards but the card lists no such config"
    assert ("warning", "hfpref.json") in found
    assert str(Finding("error", "dpo/train", "x")) == "error: dpo/train: x"


def test_validate_a_folder_without_a_card(tmp_path: Path) -> None:
    (finding,) = validate_folder(tmp_path)
    assert finding.level == "error" and "no README.md" in finding.message


def test_validate_an_hfpref_json_that_is_not_an_object(folder: Path) -> None:
    (folder / "hfpref.json").write_text("[]")
    (finding,) = validate_folder(folder)
    assert finding.level == "error" and finding.message.endswith(
        "hfpref.json: expected a JSON object, got list"
    )


def test_validate_missing_columns(folder: Path) -> None:
    path = folder / "sft" / "train-00000-of-00001.parquet"
    pq.write_table(pq.read_table(path).drop_columns(["score"]), path)
    (finding,) = validate_folder(folder)
    assert (finding.where, finding.message.split(";")[0]) == ("sft/train", "missing column(s) ['score']")


def test_cli_export(
    folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli(monkeypatch, "export", str(folder), "--to", "axolotl", "-o", str(tmp_path / "out")) == 0
    assert str(tmp_path / "out" / "dpo" / "train.jsonl") in capsys.readouterr().out
    assert run_cli(monkeypatch, "export", str(folder), "--to", "other", "-o", str(tmp_path / "out")) == 2
    assert "Invalid value for '--to'" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run_cli(monkeypatch, "export", str(empty), "--to", "jsonl", "-o", str(tmp_path / "out")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no README.md" in err
