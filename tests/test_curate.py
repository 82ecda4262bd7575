"""curate(): pairing strategies, thresholds, step configs, grouped splits, styles, the folder, the CLI."""

from __future__ import annotations

import math
import random
import sys
from pathlib import Path
from typing import Any

import orjson
import pyarrow.parquet as pq
import pytest
from datasets import Dataset, load_dataset

from hfpref.cli import main
from hfpref.config import CurateConfig
from hfpref.errors import ConfigError, InputError, register_secret
from hfpref.repo.folder import assign_test, write_folder
from hfpref.stages.curate import curate
from hfpref.stages.io import load_rows, save_rows

ALL = "dpo,sft,kto,grpo,step_dpo,stepwise"


def row(
    prompt: Any, completions: list[str | None], scores: list[float | None], **extra: Any
) -> dict[str, Any]:
    models = [f"m{j % 2}" for j in range(len(completions))]
    return {
        "prompt": prompt,
        "completions": completions,
        "completion_models": models,
        "scores": scores,
        **extra,
    }


def messages(question: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": "Be brief."}, {"role": "user", "content": question}]


def pairs(result: Any, split: str = "train") -> list[tuple[str, str]]:
    data = result["dpo"][split]
    return list(zip(data["chosen"], data["rejected"], strict=True))


def test_best_worst_skips_nulls_and_ties_and_records_why() -> None:
    rows = [
        row("q1", ["good", "bad", None, "ok"], [0.9, 0.1, 1.0, None]),  # null text, null score never used
        row("q2", ["a", "b"], [0.5, 0.5]),  # tie
        row("q3", ["only", None], [0.8, 0.1]),  # one usable completion
    ]
    result = curate(rows, test_size=0, formats="dpo")
    train = result["dpo"]["train"]
    assert train[:] == {
        "prompt": ["q1"],
        "chosen": ["good"],
        "rejected": ["bad"],
        "score_chosen": [0.9],
        "score_rejected": [0.1],
        "margin": [0.8],
        "chosen_model": ["m0"],
        "rejected_model": ["m1"],
    }
    assert result.statistics["dpo"]["dropped"] == {
        "all usable completions tie": 1,
        "fewer than 2 usable completions": 1,
    }
    assert result.provenance["input"]["null_completions"] == 2
    assert result.provenance["input"]["null_scores"] == 1


def test_all_pairs_never_pairs_ties_or_identical_texts() -> None:
    rows = [row("q", ["a", "b", "c", "a"], [0.9, 0.9, 0.2, 0.1])]  # the second "a" is a duplicate: ignored
    result = curate(rows, test_size=0, formats="dpo", strategy="all_pairs")
    assert sorted(pairs(result)) == [("a", "c"), ("b", "c")]


def test_min_margin_keeps_pairs_at_the_margin_despite_float_error() -> None:
    rows = [row("q1", ["x", "y"], [0.7, 0.4]), row("q2", ["x", "y"], [0.7, 0.45])]
    result = curate(rows, test_size=0, formats="dpo", min_margin=0.3)
    assert result["dpo"]["train"]["prompt"] == ["q1"]  # 0.7 - 0.4 = 0.29999999999999993 still counts
    assert result.statistics["dpo"]["dropped"] == {"margin below min_margin": 1}


def test_stratified_pairs_high_with_low_one_to_one() -> None:
    rows = [
        row("q1", ["h1", "h2", "mid", "l1", "l2"], [1.0, 0.8, 0.5, 0.3, 0.0]),
        row("q2", ["h", "mid"], [0.9, 0.5]),
    ]
    result = curate(rows, test_size=0, formats="dpo", strategy="stratified", high=0.8, low=0.3)
    assert pairs(result) == [("h1", "l2"), ("h2", "l1")]  # best with worst first; "mid" never used
    assert result.statistics["dpo"]["dropped"] == {"no completion scored <= low": 1}


def test_sft_kto_grpo_thresholds() -> None:
    rows = [row("q1", ["a", "b", None, "c"], [0.9, 0.6, 0.5, None]), row("q2", ["d"], [0.2])]
    result = curate(rows, test_size=0, formats="sft,kto,grpo", threshold=0.6)
    assert result["sft"]["train"][:] == {
        "prompt": ["q1", "q1"],
        "completion": ["a", "b"],
        "score": [0.9, 0.6],
        "model": ["m0", "m1"],
    }
    assert result["kto"]["train"]["label"] == [True, True, False]
    assert result["kto"]["train"]["completion"] == ["a", "b", "d"]
    assert result["grpo"]["train"][:] == {
        "prompt": ["q1", "q2"],
        "completions": [["a", "b"], ["d"]],
        "scores": [[0.9, 0.6], [0.2]],
    }
    assert result.statistics["sft"]["dropped"] == {"no completion scored >= threshold": 1}


def test_step_configs_pair_the_first_wrong_step_with_a_correct_one_after_the_same_prefix() -> None:
    question = messages("2+2?")
    rows = [
        row(
            question,
            ["Add.\n\nIt is 4.\n\nDone.", "Add.\n\nIt is 5.\n\nDone.", "Guess.\n\n4", "Add.\n\nIt is 4."],
            [1.0, 0.0, 0.5, 0.9],
            step_scores=[[0.9, 0.9, 0.9], [0.9, 0.1, 0.2], [0.2, 0.8], [0.9, 0.7]],
        ),
        row(messages("no wrong step"), ["fine"], [1.0], step_scores=[[0.9]]),
        row(messages("mismatched"), ["one\n\ntwo"], [1.0], step_scores=[[0.9]]),  # 2 steps, 1 score: skipped
    ]
    result = curate(rows, test_size=0, formats="step_dpo,stepwise", style="conversational")
    step_dpo = result["step_dpo"]["train"]
    assert step_dpo[:] == {
        "prompt": ["Be brief.\n\n2+2?\n\nAdd.\n\n", "Be brief.\n\n2+2?\n\n"],
        "chosen": ["It is 4.", "Add."],  # the fully correct completion wins over the 0.9/0.7 one
        "rejected": ["It is 5.", "Guess."],
        "step_index": [1, 0],
    }
    assert result.statistics["step_dpo"]["dropped"] == {
        "no wrong step": 1,
        "no completion with matching step_scores": 1,
    }
    stepwise = result["stepwise"]["train"]
    assert stepwise["completions"][1] == ["Add.", "It is 5.", "Done."]
    assert stepwise["labels"][1] == [True, False, False]
    assert stepwise["prompt"][0] == "Be brief.\n\n2+2?"  # step configs are strings in both styles


def test_steps_column_overrides_splitting() -> None:
    rows = [
        row(
            "q",
            ["s1 s2", "s1 t2"],
            [1.0, 0.0],
            step_scores=[[0.9, 0.9], [0.9, 0.1]],
            steps=[["s1", "s2"], ["s1", "t2"]],
        )
    ]
    result = curate(rows, test_size=0, formats="step_dpo")
    assert result["step_dpo"]["train"][:] == {
        "prompt": ["q\n\ns1\n\n"],
        "chosen": ["s2"],
        "rejected": ["t2"],
        "step_index": [1],
    }


def test_step_formats_need_step_scores() -> None:
    with pytest.raises(InputError, match="step_scores"):
        curate([row("q", ["a", "b"], [1.0, 0.0])], formats="dpo,step_dpo")


def many_rows(n: int, seed: int = 1) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [
        row(f"prompt {i % (n // 2)}", ["a", "b", "c"], [rng.random() for _ in range(3)]) for i in range(n)
    ]


def test_split_is_grouped_by_prompt_deterministic_and_order_independent() -> None:
    rows = many_rows(200)  # every prompt appears twice
    first = curate(rows, test_size=0.2, seed=3, formats="dpo,kto")
    again = curate(list(reversed(rows)), test_size=0.2, seed=3, formats="dpo,kto")
    other = curate(rows, test_size=0.2, seed=4, formats="dpo,kto")
    test_prompts = set(first["dpo"]["test"]["prompt"])
    assert len(test_prompts) == 20  # ceil(0.2 × 100 prompts)
    assert not test_prompts & set(first["dpo"]["train"]["prompt"])
    assert not test_prompts & set(first["kto"]["train"]["prompt"])  # one split for every config
    assert set(first["kto"]["test"]["prompt"]) == test_prompts
    assert set(again["dpo"]["test"]["prompt"]) == test_prompts
    assert set(other["dpo"]["test"]["prompt"]) != test_prompts


def test_the_split_ranks_prompts_by_their_seeded_digest() -> None:
    # the ranking that splits every folder written so far: sorted by an 8-byte blake2b of "seed\0key"
    import hashlib

    keys = [f"prompt {random.Random(i).random()}" for i in range(5000)] + ["prompt 1", "é ✓"]
    for seed, size in ((0, 0.1), (7, 0.37)):
        unique = list(dict.fromkeys(keys))
        ranked = sorted(
            unique, key=lambda k: hashlib.blake2b(f"{seed}\0{k}".encode(), digest_size=8).digest()
        )
        assert assign_test(keys, size, seed) == set(ranked[: math.ceil(len(unique) * size)])


def test_assign_test_bounds() -> None:
    assert assign_test(["a", "b", "c"], 0.0, 0) == set()
    assert assign_test(["a", "a"], 0.5, 0) == set()  # one prompt: never all in test
    assert len(assign_test(["a", "b", "c"], 0.01, 0)) == 1  # at least one
    assert len(assign_test(["a", "b", "c"], 0.99, 0)) == 2  # never all


def test_test_size_zero_writes_train_only() -> None:
    assert set(curate(many_rows(20), test_size=0, formats="dpo")["dpo"]) == {"train"}


def test_styles() -> None:
    rows = [row(messages("Sky?"), ["blue", "green"], [0.9, 0.1])]
    conversational = curate(rows, test_size=0, formats="dpo,grpo")
    dpo = conversational["dpo"]["train"][0]
    assert dpo["prompt"] == messages("Sky?")
    assert dpo["chosen"] == [{"role": "assistant", "content": "blue"}]
    assert conversational["grpo"]["train"][0]["completions"][1] == [{"role": "assistant", "content": "green"}]
    standard = curate(rows, test_size=0, formats="dpo", style="standard")["dpo"]["train"][0]
    assert (standard["prompt"], standard["chosen"], standard["rejected"]) == (
        "Be brief.\n\nSky?",
        "blue",
        "green",
    )
    plain = curate([row("Sky?", ["blue", "green"], [0.9, 0.1])], test_size=0, formats="dpo")["dpo"]["train"][
        0
    ]
    assert (plain["prompt"], plain["chosen"]) == ("Sky?", "blue")  # string prompts stay strings


def think(reasoning: str, completion: str) -> str:
    return f"<think>\n{reasoning}\n</think>\n\n{completion}"


def reasoned_rows(conversational: bool = False, tag: str = "") -> list[dict[str, Any]]:
    """Reasoning for some completions: text, null, blank; a row whose whole reasoning list is null."""
    prompt = messages if conversational else str
    return [
        row(
            prompt(f"Sky?{tag}"),
            ["blue", "green", "grey"],
            [0.9, 0.1, 0.8],
            reasoning=["Look up.", None, " \n"],
        ),
        row(prompt(f"2+2?{tag}"), ["4", "5"], [1.0, 0.0], reasoning=None),
        row(prompt(f"1+1?{tag}"), ["3", "2"], [0.0, 1.0], reasoning=["Guess.", "Count."]),
    ]


@pytest.mark.parametrize("style", ["conversational", "standard"])
def test_reasoning_inline_writes_it_before_every_completion_that_has_some(style: str) -> None:
    conv = style == "conversational"
    result = curate(
        reasoned_rows(conversational=True),
        test_size=0,
        formats="dpo,sft,kto,grpo",
        style=style,
        reasoning="inline",
    )

    def text(value: Any) -> str:  # conversational: the content of the one assistant message
        if conv:
            assert [m["role"] for m in value] == ["assistant"]
            return value[0]["content"]
        return value

    dpo = result["dpo"]["train"]
    assert [(text(c), text(r)) for c, r in zip(dpo["chosen"], dpo["rejected"], strict=True)] == [
        (think("Look up.", "blue"), "green"),  # null reasoning: the completion alone
        ("4", "5"),  # no reasoning for the row
        (think("Count.", "2"), think("Guess.", "3")),
    ]
    assert dpo["prompt"][0] == (messages("Sky?") if conv else "Be brief.\n\nSky?")
    assert [text(c) for c in result["sft"]["train"]["completion"]] == [
        think("Look up.", "blue"),
        "grey",  # blank reasoning is none
        "4",
        think("Count.", "2"),
    ]
    assert [text(c) for c in result["kto"]["train"]["completion"]][:3] == [
        think("Look up.", "blue"),
        "grey",
        "green",
    ]
    grpo = result["grpo"]["train"]
    assert [[text(c) for c in cs] for cs in grpo["completions"]] == [
        [think("Look up.", "blue"), "green", "grey"],
        ["4", "5"],
        [think("Guess.", "3"), think("Count.", "2")],
    ]
    assert result.provenance["curate"]["reasoning"] == "inline"
    assert result.provenance["input"]["completions_with_reasoning"] == 3


def test_reasoning_is_dropped_by_default_and_a_dataset_without_it_curates_the_same() -> None:
    with_column = reasoned_rows()
    without = [{k: v for k, v in r.items() if k != "reasoning"} for r in with_column]
    options = {"test_size": 0, "formats": "dpo,sft,kto,grpo"}
    dropped = curate(with_column, **options)
    for other in (
        curate(with_column, reasoning="drop", **options),
        curate(without, reasoning="inline", **options),
    ):
        for name, splits in dropped.items():
            assert other[name]["train"].data.table.equals(splits["train"].data.table), name
    assert dropped["dpo"]["train"]["chosen"][0] == "blue"
    assert dropped.provenance["curate"]["reasoning"] == "drop"
    assert "completions_with_reasoning" not in dropped.provenance["input"]
    assert (
        curate(without, reasoning="inline", **options).provenance["input"]["completions_with_reasoning"] == 0
    )


def test_reasoning_inline_leaves_the_step_configs_and_the_pairing_alone() -> None:
    rows = [
        row(
            "2+2?",
            ["Add.\n\nIt is 4.", "Add.\n\nIt is 5."],
            [1.0, 0.0],
            step_scores=[[0.9, 0.9], [0.9, 0.1]],
            reasoning=["Easy.", "Hmm."],
        )
    ]
    inline = curate(rows, test_size=0, formats="dpo,step_dpo,stepwise", reasoning="inline")
    plain = curate(rows, test_size=0, formats="dpo,step_dpo,stepwise")
    for name in ("step_dpo", "stepwise"):
        assert inline[name]["train"].to_list() == plain[name]["train"].to_list()
    assert inline["step_dpo"]["train"]["chosen"] == ["It is 4."]
    assert inline["dpo"]["train"]["chosen"] == [think("Easy.", "Add.\n\nIt is 4.")]
    assert inline.statistics == plain.statistics


def test_reasoning_inline_in_a_folder_and_in_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from hfpref.stages import scored

    rows = [r for i in range(5) for r in reasoned_rows(tag=str(i))]  # 15 rows, 15 reasoning texts
    in_memory = curate(rows, test_size=0.3, formats="dpo,grpo", reasoning="inline")
    chosen = [c for split in in_memory["dpo"].values() for c in split["chosen"]]
    assert chosen.count(think("Count.", "2")) == 5 and chosen.count("4") == 5
    monkeypatch.setattr(scored, "CHUNK_ROWS", 2)  # a row's reasoning found across chunks
    mapped = Dataset.from_list(rows).map(  # a file of 4-row record batches: columns of several chunks
        lambda batch: batch, batched=True, cache_file_name=str(tmp_path / "rows.arrow"), writer_batch_size=4
    )
    written = curate(mapped, tmp_path / "prefs", test_size=0.3, formats="dpo,grpo", reasoning="inline")
    assert set(written["dpo"]) == {"train", "test"}
    for name, splits in in_memory.items():
        for split, ds in splits.items():
            assert load_dataset(str(tmp_path / "prefs"), name, split=split).to_list() == ds.to_list()
            assert written[name][split].to_list() == ds.to_list()
    card = (tmp_path / "prefs" / "README.md").read_text()
    assert "- Reasoning: inline (" in card and "15 completions had reasoning" in card


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (
            [row("q", ["a", "b"], [0.9, 0.1], reasoning=["x"])],
            "row 0: reasoning has 1 entries, completions has 2",
        ),
        (
            [row("q", ["a", "b"], [0.9, 0.1], reasoning="one text for the row")],
            r"column reasoning: expected lists of strings or nulls, one per completion, got string",
        ),
    ],
)
def test_bad_reasoning_is_named_when_it_is_written(rows: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(InputError, match=message):
        curate(rows, test_size=0, formats="dpo", reasoning="inline")
    assert curate(rows, test_size=0, formats="dpo")["dpo"]["train"]["chosen"] == ["a"]  # dropped: never read


def test_the_spec_call_works_after_the_module_is_imported(tmp_path: Path) -> None:
    import hfpref
    import hfpref.stages.curate  # importing the submodule must not hide the function

    repo = hfpref.curate(Dataset.from_list(many_rows(10)), str(tmp_path / "my-prefs"))
    assert set(repo) == {"dpo", "sft", "kto", "grpo"}
    assert (tmp_path / "my-prefs" / "dpo" / "train-00000-of-00001.parquet").is_file()


def test_every_config_loads_from_the_folder(tmp_path: Path) -> None:
    rows = [
        row(
            messages(f"q{i}"),
            ["Step.\n\nRight.", "Step.\n\nWrong."],
            [0.9, 0.1],
            step_scores=[[0.9, 0.9], [0.9, 0.1]],
        )
        for i in range(10)
    ]
    result = curate(Dataset.from_list(rows), tmp_path / "prefs", formats=ALL, test_size=0.2)
    for name, expected in result.items():
        loaded = load_dataset(str(tmp_path / "prefs"), name)
        assert set(loaded) == {"train", "test"}
        for split in ("train", "test"):
            assert loaded[split].to_list() == expected[split].to_list(), (name, split)
    default = load_dataset(str(tmp_path / "prefs"), split="train")
    assert default.column_names == result["dpo"]["train"].column_names
    provenance = orjson.loads((tmp_path / "prefs" / "hfpref.json").read_bytes())
    assert provenance["configs"]["dpo"]["splits"] == {"train": 8, "test": 2}
    assert provenance["configs"]["dpo"]["statistics"]["mean_margin"] == 0.8
    histogram = {"m0": [0] * 9 + [10], "m1": [0, 10] + [0] * 8}  # scores 0.9 and 0.1, ten each
    assert provenance["generation"] == {
        "models": [
            {"id": m, "completions": 10, "scored": 10, "mean_score": score, "score_histogram": histogram[m]}
            for m, score in (("m0", 0.9), ("m1", 0.1))
        ],
        "n": 2,
        "inferred": True,
    }


def test_a_rewritten_folder_never_loads_stale_rows(tmp_path: Path) -> None:
    def rows(model: str) -> list[dict[str, Any]]:
        return [
            {**r, "completion_models": [model, model]}
            for r in (row(f"q{i}", ["a", "b"], [0.9, 0.1]) for i in range(3))
        ]

    def chosen_models(folder: Path) -> list[str]:
        return load_dataset(str(folder), "dpo", split="train")["chosen_model"]

    # datasets caches a local folder by its name and card: same name, same sizes, new rows
    curate(rows("first"), tmp_path / "a" / "prefs", formats="dpo", test_size=0)
    curate(rows("third"), tmp_path / "b" / "prefs", formats="dpo", test_size=0)
    assert chosen_models(tmp_path / "a" / "prefs") == ["first"] * 3
    assert chosen_models(tmp_path / "b" / "prefs") == ["third"] * 3
    curate(rows("fifth"), tmp_path / "a" / "prefs", formats="dpo", test_size=0)
    assert chosen_models(tmp_path / "a" / "prefs") == ["fifth"] * 3


def test_default_config_is_the_first_without_dpo(tmp_path: Path) -> None:
    curate(many_rows(10), tmp_path / "out", formats="kto,sft", test_size=0)
    assert "label" in load_dataset(str(tmp_path / "out"), split="train").column_names


def test_large_configs_are_sharded(tmp_path: Path) -> None:
    configs = curate(many_rows(400), test_size=0, formats="kto")
    write_folder(tmp_path / "out", configs, provenance={}, max_shard_size=4_000)
    shards = sorted(p.name for p in (tmp_path / "out" / "kto").iterdir())
    assert len(shards) > 2
    assert shards[0] == f"train-00000-of-{len(shards):05d}.parquet"
    assert (
        load_dataset(str(tmp_path / "out"), "kto", split="train").to_list()
        == configs["kto"]["train"].to_list()
    )
    write_folder(tmp_path / "out", configs, provenance={})  # rewriting replaces the old shards
    assert sorted(p.name for p in (tmp_path / "out" / "kto").iterdir()) == ["train-00000-of-00001.parquet"]


def test_an_interrupted_rewrite_leaves_no_card_and_can_be_redone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    configs = curate(many_rows(10), test_size=0, formats="kto")
    write_folder(tmp_path / "out", configs, provenance={})
    assert (tmp_path / "out" / "README.md").is_file()

    def killed(self: pq.ParquetWriter, *args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt  # the process stops while a shard is being written

    with monkeypatch.context() as patch:
        patch.setattr(pq.ParquetWriter, "write_table", killed)
        with pytest.raises(KeyboardInterrupt):
            write_folder(tmp_path / "out", configs, provenance={})
    assert not (tmp_path / "out" / "README.md").exists()  # no card: it neither loads nor looks complete
    assert [p.name for p in (tmp_path / "out" / "kto").iterdir()] == [".train-0.parquet.partial"]
    write_folder(tmp_path / "out", configs, provenance={})  # still recognised as hfpref's: rewritten
    assert sorted(p.name for p in (tmp_path / "out" / "kto").iterdir()) == ["train-00000-of-00001.parquet"]
    assert (
        load_dataset(str(tmp_path / "out"), "kto", split="train").num_rows == configs["kto"]["train"].num_rows
    )


def test_refuses_a_foreign_non_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="not an hfpref dataset folder"):
        curate(many_rows(10), tmp_path, formats="dpo")
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_provenance_keeps_usage_unknown_cost_and_no_secrets(tmp_path: Path) -> None:
    secret = "sk-test-0123456789abcdef"
    register_secret(secret)
    rows = [
        row(
            "q",
            ["a", "b"],
            [0.9, 0.1],
            generation=[
                {
                    "finish_reason": "stop",
                    "prompt_tokens": 10,
                    "completion_tokens": 5,
                    "cost": 0.001,
                    "error": None,
                },
                {
                    "finish_reason": "length",
                    "prompt_tokens": 10,
                    "completion_tokens": 7,
                    "cost": None,
                    "error": None,
                },
            ],
        )
    ]
    provenance = {"judge": {"models": [{"id": "j"}], "api_key": secret, "prompt": f"uses {secret}"}}
    curate(rows, tmp_path / "out", formats="dpo", provenance=provenance, test_size=0)
    text = (tmp_path / "out" / "hfpref.json").read_text() + (tmp_path / "out" / "README.md").read_text()
    assert secret not in text
    saved = orjson.loads((tmp_path / "out" / "hfpref.json").read_bytes())
    assert "api_key" not in saved["judge"]
    assert saved["usage"] == {
        "prompt_tokens": 20,
        "completion_tokens": 12,
        "truncated": 1,
        "failed": 0,
        "cost_usd": None,
    }
    assert "- Generation cost: unknown" in (tmp_path / "out" / "README.md").read_text()


def test_failed_requests_cost_nothing_and_known_costs_add_up() -> None:
    ok = {"finish_reason": "stop", "prompt_tokens": 10, "completion_tokens": 5, "cost": 0.25, "error": None}
    failed = {
        "finish_reason": None,
        "prompt_tokens": None,
        "completion_tokens": None,
        "cost": None,
        "error": "HTTP 500",
    }
    rows = [
        row("q", ["a", None], [0.9, None], generation=[ok, failed]),
        row("r", ["b", "c"], [0.9, 0.1], generation=[ok, ok]),
    ]
    usage = curate(rows, formats="dpo", test_size=0).provenance["usage"]
    assert usage == {
        "prompt_tokens": 30,
        "completion_tokens": 15,
        "truncated": 0,
        "failed": 1,
        "cost_usd": 0.75,
    }


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([row("q", ["a", "b"], [0.9])], "row 0: scores has 1 entries, completions has 2"),
        (
            [row("q", ["a"], [0.9]), row("q", ["a"], [1.5])],
            r"row 1: scores\[0\] = 1.5, expected a number in \[0, 1\] or null",
        ),
        ([row("  ", ["a"], [0.9])], "row 0: prompt is empty"),
        ([{"prompt": "q", "completions": ["a"]}], "no `scores` column"),
        ([{"text": "q", "completions": ["a"], "scores": [0.1]}], "no prompt column"),
    ],
)
def test_bad_input_names_row_and_field(rows: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(InputError, match=message):
        curate(rows)


def test_bad_options() -> None:
    with pytest.raises(ConfigError, match=r"curate.min_margin must be in \[0, 1\]"):
        curate([row("q", ["a", "b"], [1.0, 0.0])], min_margin=2)
    with pytest.raises(ConfigError, match="unknown option"):
        curate([row("q", ["a", "b"], [1.0, 0.0])], margin=0.1)
    with pytest.raises(ConfigError, match=r"^curate.reasoning must be drop or inline, got 'think'$"):
        curate([row("q", ["a", "b"], [1.0, 0.0])], reasoning="think")
    with pytest.raises(InputError, match="no config has any rows"):
        curate([row("q", ["a", "b"], [0.5, 0.5])], formats="dpo")


def test_a_written_config_is_read_back_from_its_folder(tmp_path: Path) -> None:
    data = many_rows(40)
    in_memory = curate(data, formats="dpo,kto,grpo", test_size=0.25)
    written = curate(data, tmp_path / "prefs", formats="dpo,kto,grpo", test_size=0.25)
    assert written.num_rows == in_memory.num_rows == {n: dd.num_rows for n, dd in in_memory.items()}
    for name, splits in in_memory.items():
        assert list(written[name]) == list(splits)
        for split, ds in splits.items():
            assert written[name][split].features == ds.features
            assert written[name][split].data.table.equals(ds.data.table)  # values, types, order
            assert (
                written[name][split].to_list()
                == load_dataset(str(tmp_path / "prefs"), name, split=split).to_list()
            )
    later = curate(data, tmp_path / "prefs", formats="dpo", test_size=0.25)
    for shard in (tmp_path / "prefs" / "dpo").glob("test-*.parquet"):
        shard.unlink()
    with pytest.raises(InputError, match=r"dpo: no test shards; the folder changed after curate wrote it"):
        later["dpo"]


def test_a_curate_without_rows_leaves_the_folder_as_it_was(tmp_path: Path) -> None:
    curate(many_rows(10), tmp_path / "prefs", formats="dpo", test_size=0)
    before = {p: p.read_bytes() for p in (tmp_path / "prefs").rglob("*") if p.is_file()}
    with pytest.raises(InputError, match="no config has any rows"):
        curate([row("q", ["a", "b"], [0.5, 0.5])], tmp_path / "prefs", formats="dpo")
    assert {p: p.read_bytes() for p in (tmp_path / "prefs").rglob("*") if p.is_file()} == before


def test_config_object_and_overrides_combine() -> None:
    rows = [row("q", ["a", "b", "c"], [0.9, 0.5, 0.0])]
    result = curate(
        rows, None, CurateConfig(strategy="all_pairs", formats=["dpo"], test_size=0), min_margin=0.45
    )
    assert sorted(pairs(result)) == [("a", "c"), ("b", "c")]


def run_cli(monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    """Run ``hfpref ARGS`` in this process; the exit code (0 when main returns)."""
    monkeypatch.setattr(sys, "argv", ["hfpref", *args])
    try:
        main()
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def test_cli_curate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "scored.jsonl"
    source.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in many_rows(40)))
    code = run_cli(
        monkeypatch,
        "curate",
        str(source),
        "-o",
        str(tmp_path / "out"),
        "--formats",
        "dpo,sft",
        "--strategy",
        "all_pairs",
        "--license",
        "cc-by-4.0",
        "--test-size",
        "0.25",
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "dpo: " in out and " train, " in out
    card = (tmp_path / "out" / "README.md").read_text()
    assert "license: cc-by-4.0" in card
    assert set(load_dataset(str(tmp_path / "out"), "sft")) == {"train", "test"}


def test_cli_curate_reasoning_from_the_flag_over_the_config_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "scored.jsonl"
    source.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in reasoned_rows()))
    config = tmp_path / "hfpref.toml"
    config.write_text('[curate]\nreasoning = "inline"\ntest_size = 0.0\nformats = ["dpo"]\n')
    assert run_cli(monkeypatch, "curate", str(source), "-o", str(tmp_path / "a"), "-c", str(config)) == 0
    chosen = load_dataset(str(tmp_path / "a"), "dpo", split="train")["chosen"]
    assert chosen == [think("Look up.", "blue"), "4", think("Count.", "2")]
    args = ("curate", str(source), "-o", str(tmp_path / "b"), "-c", str(config), "--reasoning", "drop")
    assert run_cli(monkeypatch, *args) == 0
    assert load_dataset(str(tmp_path / "b"), "dpo", split="train")["chosen"] == ["blue", "4", "2"]
    assert "- Reasoning: dropped" in (tmp_path / "b" / "README.md").read_text()


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["curate", "missing.jsonl", "-o", "out"], 2, "missing.jsonl: no such file or folder"),
        (
            ["curate", "data.jsonl", "-o", "out", "--reasoning", "keep"],
            2,
            "'keep' is not one of 'drop', 'inline'",
        ),
        (
            ["curate", "data.jsonl", "-o", "out", "-c", "bad.toml"],
            2,
            "curate.reasoning must be drop or inline",
        ),
        (["curate", "data.txt", "-o", "out"], 2, "unknown file type '.txt'"),
        (
            ["curate", "data.jsonl", "-o", "out", "--min-margin", "2"],
            2,
            "curate.min_margin must be in [0, 1]",
        ),
        (["curate", "data.jsonl", "-o", "out", "--license", "my license"], 2, "expected a license id"),
    ],
)
def test_cli_curate_errors_are_one_line(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    code: int,
    message: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data.txt").write_text("x")
    (tmp_path / "bad.toml").write_text('[curate]\nreasoning = "keep"\n')
    (tmp_path / "data.jsonl").write_bytes(orjson.dumps(row("q", ["a", "b"], [1.0, 0.0])) + b"\n")
    assert run_cli(monkeypatch, *args) == code
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("hfpref: error: ") and message in err


@pytest.mark.parametrize("name", ["rows.jsonl", "rows.json", "rows.parquet", "saved"])
def test_save_and_load_rows_round_trip(tmp_path: Path, name: str) -> None:
    ds = Dataset.from_list(
        [row(messages("q"), ["a", None], [0.5, None]), row(messages("r"), ["b", "c"], [1.0, 0.0])]
    )
    save_rows(ds, tmp_path / name)
    assert load_rows(tmp_path / name).to_list() == ds.to_list()


def test_csv_rows_are_flat(tmp_path: Path) -> None:
    flat = Dataset.from_list([{"prompt": "q", "id": 1}])
    save_rows(flat, tmp_path / "rows.csv")
    assert load_rows(tmp_path / "rows.csv").to_list() == [{"prompt": "q", "id": 1}]
    with pytest.raises(
        InputError,
        match=r"CSV cannot hold list/struct columns \['completions', 'completion_models', 'scores'\]",
    ):
        save_rows(Dataset.from_list([row("q", ["a"], [0.5])]), tmp_path / "nested.csv")


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda p: p / "missing.jsonl", r"missing.jsonl: no such file or folder, and not a Hub dataset id"),
        (lambda p: (p / "rows.xlsx").write_text("x") and p / "rows.xlsx", "unknown file type '.xlsx'"),
        (
            lambda p: (p / "bad.jsonl").write_text("{oops\n") and p / "bad.jsonl",
            r"bad.jsonl: cannot read it as \.jsonl",
        ),
        (lambda p: p, "a folder, but not one written by save_to_disk"),
    ],
)
def test_load_rows_errors(tmp_path: Path, setup: Any, message: str) -> None:
    with pytest.raises(InputError, match=message):
        load_rows(setup(tmp_path))


def test_save_rows_refuses_unknown_types(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"unknown file type '\.txt'"):
        save_rows(Dataset.from_list([{"prompt": "q"}]), tmp_path / "rows.txt")


def test_shard_sizes_read_as_datasets_reads_them() -> None:
    from hfpref.repo.folder import size_in_bytes

    assert [size_in_bytes(s) for s in ("500MB", "2GiB", " 1.5kb ", 4096)] == [
        500 * 10**6,
        2 * 2**30,
        1500,
        4096,
    ]
    with pytest.raises(
        ConfigError, match=r"max_shard_size: expected a size such as 500MB or 2GiB, got 'big'"
    ):
        size_in_bytes("big")
