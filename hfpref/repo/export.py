"""Export a dataset folder to other trainers' JSONL, and check a folder (:func:`validate_folder`).

Targets (each writes ``OUT/CONFIG/SPLIT.jsonl``):

- ``nemo-rl``: ``dpo`` as NeMo RL ``BinaryPreferenceDataset`` rows ``{"prompt", "chosen", "rejected"}``
  (its default ``prompt_key``/``chosen_key``/``rejected_key``; the prompt stays a message list when it
  is one, responses are strings), and ``sft`` as OpenAI-format ``{"messages": [...]}`` rows.
- ``axolotl``: ``dpo`` for ``type: chat_template.default`` (``{"messages", "chosen", "rejected"}``,
  chosen/rejected one assistant message each), and ``sft`` for ``type: chat_template`` (``{"messages"}``).
- ``jsonl``: every config and split, rows as they are.
"""

from __future__ import annotations

import os
import tempfile
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from hfpref.errors import InputError
from hfpref.repo.folder import CONFIG_NAME, SHARD_FILE, folder_configs, prompt_key, read_shards
from hfpref.repo.provenance import PROVENANCE_FILE, read_provenance
from hfpref.repo.schema import COLUMN_ORDER

TARGETS = ("nemo-rl", "axolotl", "jsonl")
Row = dict[str, Any]


def _read(files: list[Path]) -> list[Row]:
    """The rows of ``files`` (see :func:`hfpref.repo.folder.read_shards`)."""
    return read_shards(files).to_pylist() if files else []


def _messages(prompt: Any) -> list[dict[str, Any]]:
    return [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)


def _text(value: Any) -> str:
    """A completion as a string: itself, or the contents of its messages."""
    if isinstance(value, str):
        return value
    return "\n\n".join(str(m.get("content") or "") for m in value or [])


def _assistant(value: Any) -> dict[str, str]:
    return {"role": "assistant", "content": _text(value)}


def _nemo_dpo(row: Row) -> Row:
    return {"prompt": row["prompt"], "chosen": _text(row["chosen"]), "rejected": _text(row["rejected"])}


def _axolotl_dpo(row: Row) -> Row:
    return {
        "messages": _messages(row["prompt"]),
        "chosen": _assistant(row["chosen"]),
        "rejected": _assistant(row["rejected"]),
    }


def _chat_sft(row: Row) -> Row:
    return {"messages": [*_messages(row["prompt"]), _assistant(row["completion"])]}


CONVERTERS: dict[str, dict[str, Callable[[Row], Row]]] = {
    "nemo-rl": {"dpo": _nemo_dpo, "sft": _chat_sft},
    "axolotl": {"dpo": _axolotl_dpo, "sft": _chat_sft},
}


def _write_jsonl(path: Path, rows: Iterable[Row]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as fh:
        for row in rows:
            fh.write(orjson.dumps(row) + b"\n")


def export(folder: str | os.PathLike[str], to: str, out: str | os.PathLike[str]) -> list[Path]:
    """Write the configs of ``folder`` that ``to`` (nemo-rl, axolotl, jsonl) understands to ``OUT/CONFIG/SPLIT.jsonl``.

    Returns the files written. Raises :class:`InputError` when the folder has no config ``to`` can use or a
    shard cannot be read. Every file is written to a temporary folder beside ``out`` first and moved into
    ``out`` only when all are complete, so a failed export leaves ``out`` as it was.
    """
    if to not in TARGETS:
        raise InputError(f"--to {to!r}: expected one of {', '.join(TARGETS)}")
    configs = folder_configs(folder)
    converters = CONVERTERS.get(to)
    usable = [c for c in configs if converters is None or c in converters]
    if not usable:
        raise InputError(
            f"{folder}: no config {to} can use (it reads {', '.join(converters or [])}; has {list(configs)})"
        )
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(
            f"{out}: exists and is not a folder; -o takes the folder to write CONFIG/SPLIT.jsonl in"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    relative = [Path(name) / f"{split}.jsonl" for name in usable for split in configs[name]]
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.") as tmp:
        for name in usable:
            convert = converters[name] if converters else None
            for split, files in configs[name].items():
                rows = _read(files)
                _write_jsonl(Path(tmp) / name / f"{split}.jsonl", map(convert, rows) if convert else rows)
        for path in relative:
            (out / path).parent.mkdir(parents=True, exist_ok=True)
            os.replace(Path(tmp) / path, out / path)
    return [out / path for path in relative]


@dataclass(frozen=True)
class Finding:
    """One problem in a dataset folder. ``level`` is ``error`` (unusable or leaky) or ``warning``."""

    level: str
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.level}: {self.where}: {self.message}"


def _row_findings(name: str, split: str, rows: list[Row]) -> list[Finding]:
    where = f"{name}/{split}"
    findings = []
    missing = [c for c in COLUMN_ORDER.get(name, []) if rows and c not in rows[0]]
    if missing:
        findings.append(
            Finding("error", where, f"missing column(s) {missing}; a {name} config has {COLUMN_ORDER[name]}")
        )
    if "chosen" in (rows[0] if rows else {}) and "rejected" in rows[0]:
        same = [i for i, r in enumerate(rows) if _text(r["chosen"]).strip() == _text(r["rejected"]).strip()]
        if same:
            findings.append(
                Finding(
                    "error",
                    where,
                    f"{len(same)} row(s) with identical chosen and rejected (first: row {same[0]})",
                )
            )
        empty = [
            i
            for i, r in enumerate(rows)
            if not _text(r["chosen"]).strip() or not _text(r["rejected"]).strip()
        ]
        if empty:
            findings.append(
                Finding(
                    "error",
                    where,
                    f"{len(empty)} row(s) with an empty chosen or rejected (first: row {empty[0]})",
                )
            )
    if "completion" in (rows[0] if rows else {}):
        empty = [i for i, r in enumerate(rows) if not _text(r["completion"]).strip()]
        if empty:
            findings.append(
                Finding(
                    "error", where, f"{len(empty)} row(s) with an empty completion (first: row {empty[0]})"
                )
            )
    return findings


def validate_folder(folder: str | os.PathLike[str]) -> list[Finding]:
    """Check a dataset folder: the card's configs match the files, every config has its columns and rows,
    no empty or identical chosen/rejected, and no prompt in two splits. Returns the findings (none: fine)."""
    folder = Path(folder)
    try:
        configs = folder_configs(folder)
        read_provenance(folder)
    except InputError as exc:
        return [Finding("error", str(folder), str(exc))]
    findings = []
    if not (folder / PROVENANCE_FILE).is_file():
        findings.append(
            Finding("warning", PROVENANCE_FILE, "missing: the provenance of this data is unknown")
        )
    for directory in sorted(p for p in folder.iterdir() if p.is_dir() and CONFIG_NAME.match(p.name)):
        if directory.name not in configs and any(SHARD_FILE.match(f.name) for f in directory.iterdir()):
            findings.append(
                Finding("warning", directory.name, "has parquet shards but the card lists no such config")
            )
    splits_of_prompt: dict[str, set[str]] = defaultdict(set)
    configs_of_prompt: dict[str, set[str]] = defaultdict(set)
    for name, splits in configs.items():
        for split, files in splits.items():
            if not files:
                findings.append(
                    Finding("error", f"{name}/{split}", "the card names this split but no file matches")
                )
                continue
            try:
                rows = _read(files)
            except InputError as exc:
                findings.append(Finding("error", f"{name}/{split}", str(exc)))
                continue
            if not rows:
                findings.append(Finding("error", f"{name}/{split}", "no rows"))
            findings.extend(_row_findings(name, split, rows))
            for row in rows:
                if "prompt" in row:
                    key = prompt_key(row["prompt"])
                    splits_of_prompt[key].add(split)
                    configs_of_prompt[key].add(name)
    leaked = [key for key, splits in splits_of_prompt.items() if len(splits) > 1]
    if leaked:
        names = sorted({c for key in leaked for c in configs_of_prompt[key]})
        example = leaked[0][:60]
        findings.append(
            Finding(
                "error",
                ", ".join(names),
                f"{len(leaked)} prompt(s) appear in more than one split (e.g. {example!r})",
            )
        )
    return findings
