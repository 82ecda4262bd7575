"""Scored rows → preference configs (dpo, sft, kto, grpo, step_dpo, stepwise), split by prompt, written as a folder.

Rules (row numbers in messages are 0-based, as ``ds[i]``):

- A completion is *usable* when it is a non-blank string with a non-null score. Within a row, identical
  texts count once (the first); ``grpo`` keeps every usable completion, duplicates included.
- ``dpo``: ``best_worst`` pairs the highest with the lowest score (earliest completion on equal scores);
  ``all_pairs`` every pair with different scores; ``stratified`` pairs completions scoring ≥ ``high``
  with completions scoring ≤ ``low`` one to one (best with worst first). Ties are never paired, and a
  pair's margin must be ≥ ``min_margin``.
- ``sft``: every usable completion scoring ≥ ``threshold``; ``kto``: every usable completion, ``label``
  = score ≥ ``threshold``; ``grpo``: the usable completions and their scores.
- Step configs read ``step_scores`` (one list per completion) and the completion's steps: the ``steps``
  column when present, else the stepwise judge's own :func:`hfpref.stages.verdicts.split_steps` (a completion
  whose step count differs from its scores is skipped). A step is correct when its score is at least
  ``step_threshold`` (default 0.5). ``stepwise`` = steps with ``labels``. ``step_dpo``: for each
  completion, its first wrong step is ``rejected``; ``chosen`` is the correct step at the same index of
  another completion with the same correct prefix, preferring one whose remaining steps are all
  correct, then the higher step score. The prompt is the prompt text plus the prefix steps, each
  followed by a blank line. Step configs are plain strings in both styles: a chat template cannot
  express "continue this assistant turn" as separate messages.
- Style: ``conversational`` keeps message-list prompts as they are and wraps completions as
  ``[{"role": "assistant", "content": ...}]``; string prompts stay strings. ``standard`` writes plain
  strings, message contents joined by blank lines.
- Reasoning (the optional ``reasoning`` column, parallel to ``completions``; none without it):
  ``drop`` writes the completions alone; ``inline`` writes a completion whose reasoning is non-blank
  text as ``<think>\\n{reasoning}\\n</think>\\n\\n{completion}`` (the R1/Qwen3 convention) wherever
  it is written (dpo, sft, kto, grpo; in conversational style, the assistant message's content).
  Pairing, thresholds and the removal of identical texts look at the completion alone, as judged.
  Step configs never carry reasoning: their steps are steps of the final answer.
- Provenance: the caller's ``generation``/``judge``/``usage`` sections (what only its settings know:
  sampling parameters, the judge prompt …) completed with what the input's ``completion_models``,
  ``generation`` and ``judge`` columns tell (:meth:`hfpref.repo.provenance.Provenance.completed`), so
  that a folder curated from a judged file records the same models, usage and judge statistics as
  ``hfpref run``'s.
- Splits: prompts (not rows) are ranked by a seeded hash and the first ``ceil(test_size × prompts)``
  (at least one, never all) form ``test``, so a prompt never lands in two splits, the split does not
  depend on row order, and adding prompts moves few others. An empty split is not written.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from hfpref.config import CurateConfig
from hfpref.errors import ConfigError, InputError
from hfpref.repo.folder import SLICE_ROWS, FolderWriter, folder_configs, in_test_split, read_shards
from hfpref.repo.provenance import Provenance, provenance_of
from hfpref.repo.schema import COLUMN_ORDER, STEP_CONFIGS, config_statistics
from hfpref.stages.curate_rules import BUILDERS, FLAT_TEXT, Built
from hfpref.stages.datasets_internals import dataset_from_table
from hfpref.stages.io import release_arrow_memory
from hfpref.stages.scored import ScoredInput

if TYPE_CHECKING:
    from datasets import Dataset, DatasetDict

THINK_OPEN, THINK_CLOSE = "<think>\n", "\n</think>\n\n"  # reasoning="inline": the R1/Qwen3 convention


def _take(values: pa.Array | pa.ChunkedArray, indices: pa.Array) -> pa.Array:
    """``values.take(indices)`` as one array, without joining the chunks of ``values`` (Arrow's take
    joins them all first, a copy of the whole column): each chunk gives its rows, then they are put
    back in the order of ``indices``."""
    if isinstance(values, pa.Array):
        return values.take(indices)
    positions = indices.to_numpy().astype(np.int64)
    starts = np.cumsum([0, *(len(chunk) for chunk in values.chunks)])
    which = np.searchsorted(starts, positions, side="right") - 1  # the chunk of each position
    by_chunk = np.argsort(which, kind="stable")
    groups = np.split(by_chunk, np.flatnonzero(np.diff(which[by_chunk])) + 1) if len(by_chunk) else []
    pieces = [
        values.chunk(int(which[g[0]])).take(pa.array(positions[g] - starts[which[g[0]]])) for g in groups
    ]
    gathered = pa.concat_arrays(pieces) if pieces else pa.array([], values.type)
    back = np.empty_like(by_chunk)
    back[by_chunk] = np.arange(len(by_chunk))
    return gathered.take(pa.array(back))


@dataclass
class _Completions:
    """Every completion of the input by flat index (``flat``, in the input's own buffers) and how they
    are written: ``conv``, as one-message assistant lists; ``thoughts`` (``reasoning="inline"``), the
    reasoning texts and each completion's index into them (-1: none), written before the completion."""

    flat: pa.ChunkedArray
    conv: bool
    thoughts: tuple[pa.ChunkedArray, np.ndarray] | None

    def texts(self, indices: pa.Array) -> pa.Array:
        """The completions at flat ``indices``, as written."""
        texts = _take(self.flat, indices).cast(pa.string())
        if self.thoughts is not None:
            texts = _inline_reasoning(texts, indices, *self.thoughts)
        if not self.conv:
            return texts
        messages = pa.StructArray.from_arrays(
            [pa.repeat("assistant", len(texts)), texts], names=["role", "content"]
        )
        return pa.ListArray.from_arrays(pa.array(range(len(texts) + 1), pa.int32()), messages)


def _inline_reasoning(
    texts: pa.Array, indices: pa.Array, thoughts: pa.ChunkedArray, where: np.ndarray
) -> pa.Array:
    """``texts``, the completions at flat ``indices``, each with its reasoning (``thoughts[where[i]]``;
    none where that is -1) before it: ``<think>\\n{reasoning}\\n</think>\\n\\n{completion}``."""
    at = where[indices.to_numpy()]
    has = at >= 0
    if not has.any():
        return texts
    found = _take(thoughts, pa.array(at[has])).cast(pa.string())  # only the reasoning that is written
    aligned = found.take(pa.array(np.cumsum(has) - 1, mask=~has))  # null where a text has none
    joined = pc.binary_join_element_wise(THINK_OPEN, aligned, THINK_CLOSE, texts, "")
    return pc.coalesce(joined, texts)


def _as_built(values: pa.Array) -> pa.Array:
    """``values`` as ``pa.array`` builds them: a validity bitmap only when there are nulls (``take``
    gives strings one), lists rebuilt from their items (lists are never null here)."""
    if pa.types.is_list(values.type):
        return pa.ListArray.from_arrays(
            pc.subtract(values.offsets, values.offsets[0]), _as_built(values.flatten())
        )
    if values.null_count or values.buffers()[0] is None:
        return values
    return pa.Array.from_buffers(values.type, len(values), [None, *values.buffers()[1:]], 0, values.offset)


def _column(completions: _Completions, built: Built, name: str, values: pa.Array) -> pa.Array:
    """One output column from its ordered values (texts from their flat indices in ``completions``)."""
    if built.prompts is not None or name not in FLAT_TEXT:
        return _as_built(values)
    if name != "completions":
        return completions.texts(values)
    offsets = pc.subtract(values.offsets, values.offsets[0])
    return pa.ListArray.from_arrays(offsets, completions.texts(values.flatten()))


class _Rows:
    """One config's output rows, ordered train first so that each split is one run of rows, built
    ``SLICE_ROWS`` at a time: values from the config's parts, texts from the input (``prompts``: each
    input row's prompt as written; ``completions``: every completion). ``release`` gives back the
    input's pages after each column."""

    def __init__(
        self,
        built: Built,
        prompts: pa.Array | pa.ChunkedArray,
        completions: _Completions,
        is_test: pa.Array,
        release: Callable[[], None],
    ) -> None:
        src = built.column("src")
        test = is_test.take(src)
        train = pc.indices_nonzero(pc.invert(test))
        self.order = pa.concat_arrays([train, pc.indices_nonzero(test)])  # each output row in the parts
        self.src = src.take(self.order)  # and in the input
        bounds = {"train": (0, len(train)), "test": (len(train), len(self.order))}
        self.splits = {split: (a, b) for split, (a, b) in bounds.items() if b > a}  # empty ones left out
        self.built, self.prompts, self.completions, self.release = built, prompts, completions, release

    def table(self, start: int, stop: int) -> pa.Table:
        """Output rows ``start`` to ``stop``."""
        built = self.built
        order, src = self.order.slice(start, stop - start), self.src.slice(start, stop - start)
        explicit = built.prompts is not None
        arrays = {
            "prompt": _as_built(_take(built.chunked("prompt"), order))
            if explicit
            else _take(self.prompts, src)
        }
        self.release()
        for name in COLUMN_ORDER[built.name][1:]:
            arrays[name] = _column(self.completions, built, name, _take(built.chunked(name), order))
            self.release()
        return pa.table(arrays)

    def slices(self, split: str) -> Iterator[pa.Table]:
        start, stop = self.splits[split]
        for a in range(start, stop, SLICE_ROWS):
            yield self.table(a, min(a + SLICE_ROWS, stop))
            release_arrow_memory()  # the slice and what writing it freed

    def num_rows(self) -> dict[str, int]:
        return {split: b - a for split, (a, b) in self.splits.items()}

    def dataset_dict(self) -> DatasetDict:
        """The whole config as a train/test ``DatasetDict`` (each split a zero-copy slice of one table)."""
        from datasets import DatasetDict

        table = self.table(0, len(self.order))
        return DatasetDict(
            {split: dataset_from_table(table.slice(a, b - a)) for split, (a, b) in self.splits.items()}
        )


def _statistics(built: Built, prompt_ids: np.ndarray, prompts: int) -> dict[str, Any]:
    """A config's statistics; ``prompt_ids``: each input row's prompt, numbered below ``prompts``."""
    present = np.zeros(prompts, dtype=bool)
    for part in built.parts:
        present[prompt_ids[part.column("src").to_numpy()]] = True
    return config_statistics(built.name, built.parts, int(present.sum()), built.dropped)


def _configs(
    source: ScoredInput,
    builts: dict[str, Built],
    cfg: CurateConfig,
    hashes: np.ndarray,
    prompt_ids: np.ndarray,
) -> Iterator[tuple[str, _Rows]]:
    """Each config with rows, one at a time, once every chunk is in; a config's parts go once the
    caller is done with it (and has dropped what it built), before the next."""
    is_test = in_test_split(hashes, cfg.test_size).take(pa.array(prompt_ids))
    release_arrow_memory()
    conv = source.conversational and cfg.style == "conversational"
    prompts = source.prompt_column if conv else source.texts()
    # every completion, by flat index: output texts are taken from here (in the input's own buffers)
    flat = pa.chunked_array(
        [chunk.flatten() for chunk in source.nested.chunks], source.nested.type.value_type
    )
    completions = _Completions(flat, conv, source.reasoning_texts())
    source.pages.release()  # each chunk's offsets were read
    for name, built in builts.items():
        if not built.rows:
            continue
        yield name, _Rows(built, prompts, completions, is_test, source.pages.release)
        built.parts.clear()
        release_arrow_memory()


def curate_config(config: CurateConfig | None = None, **overrides: Any) -> CurateConfig:
    """``config`` (default: the defaults) with the non-None ``overrides`` applied and checked."""
    base = config or CurateConfig()
    known = {f.name for f in dataclasses.fields(CurateConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ConfigError(f"curate: unknown option(s) {unknown}; expected some of {sorted(known)}")
    return dataclasses.replace(base, **{k: v for k, v in overrides.items() if v is not None})


class Curated(Mapping[str, "DatasetDict"]):
    """What :func:`curate` returns: config name → ``DatasetDict``, plus ``statistics`` (per config,
    including the rows left out and why), ``provenance`` (what ``hfpref.json`` records) and
    ``num_rows`` (config → split → rows).

    When :func:`curate` wrote a folder, each config was built and written slice by slice, and it is read
    back from its parquet shards the first time it is looked up: a large run never holds a whole
    config, and what is returned is what was written.
    """

    def __init__(
        self,
        configs: Mapping[str, DatasetDict | None],
        statistics: dict[str, Any],
        provenance: dict[str, Any],
        num_rows: dict[str, dict[str, int]],
        folder: Path | None = None,
    ) -> None:
        self._configs = dict(configs)
        self._folder = folder
        self.statistics = statistics
        self.provenance = provenance
        self.num_rows = num_rows

    def __getitem__(self, name: str) -> DatasetDict:
        dd = self._configs[name]
        if dd is None:
            dd = self._configs[name] = _read_config(self._folder, name)  # type: ignore[arg-type]
        return dd

    def __iter__(self) -> Iterator[str]:
        return iter(self._configs)

    def __len__(self) -> int:
        return len(self._configs)


def _read_config(folder: Path, name: str) -> DatasetDict:
    """Config ``name`` of a folder :func:`curate` wrote, read from its parquet shards into memory."""
    from datasets import DatasetDict

    parts = {}
    for split, shards in folder_configs(folder)[name].items():
        if not shards:
            raise InputError(f"{folder / name}: no {split} shards; the folder changed after curate wrote it")
        parts[split] = dataset_from_table(read_shards(shards))
    return DatasetDict(parts)


def curate(
    ds: Dataset | list[dict[str, Any]],
    folder: str | Path | None = None,
    config: CurateConfig | None = None,
    *,
    provenance: Provenance | Mapping[str, Any] | None = None,
    license: str | None = None,
    repo_id: str | None = None,
    calibration: Mapping[str, Any] | None = None,
    **overrides: Any,
) -> Curated:
    """Turn scored rows into one ``DatasetDict`` (train/test) per config; write ``folder`` when given.

    ``config`` (or keyword overrides such as ``strategy="all_pairs"`` or ``reasoning="inline"``) chooses
    the configs and rules; ``provenance`` (a :class:`~hfpref.repo.provenance.Provenance` or a mapping
    of its keys) adds what the caller knows (``generation``, ``judge``, ``summary``, ``tags`` …) to what
    the input's columns tell (:meth:`~hfpref.repo.provenance.Provenance.completed`) in the
    ``hfpref.json`` and card written to ``folder``; ``license`` goes into the card (none: ``other``, no
    rights claimed); ``repo_id`` fills the card's usage snippets; ``calibration`` (what
    :func:`hfpref.stages.calibrate.stored_calibration` finds for the judge) goes into ``hfpref.json`` and
    the card, and must be of the judge the input's columns name. A config that gets no rows is left out
    (``statistics`` says why); no rows at all is an :class:`InputError`.
    """
    cfg = curate_config(config, **overrides)
    given = provenance_of(provenance)
    source = ScoredInput(ds, cfg.style, cfg.seed, reasoning=cfg.reasoning == "inline")
    steps_missing = not source.has_steps and bool(STEP_CONFIGS & set(cfg.formats))
    builts = {
        name: Built(name, prompts=[] if name in STEP_CONFIGS else None)
        for name in ([] if steps_missing else cfg.formats)
    }
    for rows in source.read():  # every row is checked, even when the step formats cannot be built
        for built in builts.values():
            BUILDERS[built.name](rows, cfg, built)
            built.flush()
        release_arrow_memory()  # the chunk's Arrow copies: the pool would keep their pages
    if steps_missing:
        raise InputError("formats step_dpo/stepwise need a `step_scores` column (judge with --mode stepwise)")
    hashes, prompt_ids = source.prompt_ids()
    release_arrow_memory()
    stats = {}
    for name, built in builts.items():
        stats[name] = _statistics(built, prompt_ids, len(hashes))
        release_arrow_memory()
    names = [name for name, built in builts.items() if built.rows]
    if not names:
        summary = "; ".join(f"{n}: {', '.join(s['dropped']) or 'no rows'}" for n, s in stats.items())
        raise InputError(f"no config has any rows ({summary})")
    prov = (
        given.completed(source.made())
        .calibrated(calibration)
        .curated(cfg, source.stats(len(hashes)))
        .with_configs(
            {name: stats[name] for name in names},
            {name: s["dropped"] for name, s in stats.items() if name not in names},
        )
    )
    writer = FolderWriter(folder, names) if folder is not None else None
    configs: dict[str, DatasetDict | None] = {}
    num_rows: dict[str, dict[str, int]] = {}
    for name, rows in _configs(source, builts, cfg, hashes, prompt_ids):
        num_rows[name] = rows.num_rows()
        if writer is not None:  # slice by slice; a config is read back from the folder when looked up
            writer.add(name, {split: rows.slices(split) for split in rows.splits})
            configs[name] = None
        else:
            configs[name] = rows.dataset_dict()
        del rows
    if writer is not None:
        writer.finish(provenance=prov, license=license, repo_id=repo_id, tags=["synthetic"])
    folder_written = writer.folder if writer is not None else None
    return Curated(configs, stats, prov.to_json(), num_rows, folder_written)
