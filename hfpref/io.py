"""Read and write row files for every stage: `.jsonl`, `.json`, `.parquet`, `.csv`, `save_to_disk` folders, Hub ids.

``load_rows`` takes a local file (by extension), a ``save_to_disk`` folder, or a Hub dataset id
(``user/name`` or ``hf://datasets/user/name``). ``save_rows`` writes by extension; a path without
one is a ``save_to_disk`` folder, and only an explicit ``hf://datasets/user/name`` pushes to the Hub,
so that a typo in a local path never publishes data.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from hfpref.errors import InputError

if TYPE_CHECKING:
    from datasets import Dataset

FILE_BUILDERS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}
HUB_PREFIX = "hf://datasets/"


def _hub_id(text: str) -> str | None:
    """The repo id in ``hf://datasets/ID`` or a bare ``user/name``; None for anything else."""
    from hfpref.hub import is_repo_id

    candidate = text.removeprefix(HUB_PREFIX)
    if is_repo_id(candidate) and Path(candidate).suffix.lower() not in FILE_BUILDERS:
        return candidate
    return None


def _pick_split(loaded: object, source: str, split: str) -> Dataset:
    from datasets import DatasetDict

    if not isinstance(loaded, DatasetDict):
        return loaded  # type: ignore[return-value]
    if split in loaded:
        return loaded[split]
    if len(loaded) == 1:
        return next(iter(loaded.values()))
    raise InputError(f"{source}: has splits {sorted(loaded)}, none named {split!r}")


def load_rows(source: str | os.PathLike[str], *, split: str = "train") -> Dataset:
    """Load the rows of ``source``: a `.jsonl/.json/.parquet/.csv` file, a ``save_to_disk`` folder or a Hub id.

    A ``DatasetDict`` (folder or Hub repo) gives its ``split`` (or its only split).
    Raises :class:`InputError` with one line for a missing path, an unknown extension or unreadable data.
    """
    import datasets

    text = os.fspath(source)
    path = Path(text)
    if path.is_dir():
        if not any(
            (path / name).exists() for name in ("dataset_info.json", "dataset_dict.json", "state.json")
        ):
            raise InputError(f"{text}: a folder, but not one written by save_to_disk (no dataset_info.json)")
        return _pick_split(datasets.load_from_disk(text), text, split)
    if path.is_file():
        builder = FILE_BUILDERS.get(path.suffix.lower())
        if builder is None:
            raise InputError(
                f"{text}: unknown file type {path.suffix or '(none)'!r}; expected .jsonl, .json, .parquet or .csv"
            )
        try:
            return datasets.load_dataset(builder, data_files=str(path), split="train")
        except (ValueError, datasets.exceptions.DatasetGenerationError) as exc:
            cause = exc.__cause__ or exc  # datasets wraps the parser's error, which says what is wrong
            raise InputError(
                f"{text}: cannot read it as {path.suffix} ({str(cause).splitlines()[0]})"
            ) from None
    repo_id = _hub_id(text)
    if repo_id is None:
        raise InputError(f"{text}: no such file or folder, and not a Hub dataset id (user/name)")
    from hfpref.hub import hub_errors

    try:
        with hub_errors(repo_id):
            return _pick_split(datasets.load_dataset(repo_id, split=None), text, split)
    except datasets.exceptions.DatasetNotFoundError:
        raise InputError(
            f"{text}: no such file or folder, and no Hub dataset {repo_id} (or no access)"
        ) from None


def save_rows(ds: Dataset, destination: str | os.PathLike[str]) -> Path | str:
    """Write ``ds`` by extension (`.jsonl`, `.json`, `.parquet`, `.csv`), to a ``save_to_disk`` folder, or to
    the Hub for ``hf://datasets/user/name``. Returns the path (or repo id) written."""
    text = os.fspath(destination)
    if text.startswith(HUB_PREFIX):
        repo_id = _hub_id(text)
        if repo_id is None:
            raise InputError(f"{text}: expected hf://datasets/NAMESPACE/NAME")
        from hfpref.hub import hub_errors

        with hub_errors(repo_id):
            ds.push_to_hub(repo_id)
        return repo_id
    path = Path(text)
    suffix = path.suffix.lower()
    if suffix and suffix not in FILE_BUILDERS:
        raise InputError(
            f"{text}: unknown file type {suffix!r}; expected .jsonl, .json, .parquet, .csv or a folder"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".parquet":
        ds.to_parquet(str(path))
    elif suffix in (".jsonl", ".json"):
        ds.to_json(str(path), lines=suffix == ".jsonl", force_ascii=False)
    elif suffix == ".csv":
        from datasets import Value

        nested = [name for name, feature in ds.features.items() if not isinstance(feature, Value)]
        if nested:
            raise InputError(f"{text}: CSV cannot hold list/struct columns {nested}; use .jsonl or .parquet")
        ds.to_csv(str(path), index=False)
    else:
        ds.save_to_disk(str(path))
    return path
