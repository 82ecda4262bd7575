"""Read and write row files for every stage: `.jsonl`, `.json`, `.parquet`, `.csv`, `save_to_disk` folders, Hub ids.

``load_rows`` takes a local file (by extension), a ``save_to_disk`` folder, or a Hub dataset id
(``user/name`` or ``hf://datasets/user/name``); text files must be UTF-8. ``save_rows`` writes by
extension; a path without one is a ``save_to_disk`` folder, and only an explicit
``hf://datasets/user/name`` pushes to the Hub, so that a typo in a local path never publishes data.
A local output is written under a temporary name and renamed into place when complete, so a failed
or killed write never leaves a file that looks finished. :func:`check_output` checks an output path
before a command spends anything on producing its rows.
"""

from __future__ import annotations

import codecs
import itertools
import logging
import mmap
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from hfpref.errors import HfprefError, HubError, InputError
from hfpref.repo.parquet import check_parquet

if TYPE_CHECKING:
    import pyarrow as pa
    from datasets import Dataset, DatasetDict

FILE_BUILDERS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}
HUB_PREFIX = "hf://datasets/"


def _hub_id(text: str) -> str | None:
    """The repo id in ``hf://datasets/ID`` or a bare ``user/name``; None for anything else."""
    from hfpref.repo.hub import is_repo_id

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


def _check_text(path: Path) -> None:
    """A one-line error for a text file that is not UTF-8 (naming its first bad line) or holds no rows.
    Reads in blocks, so a file of one huge line costs no more memory than a short one."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    line, blank = 1, True
    with path.open("rb") as fh:
        for block in itertools.chain(iter(lambda: fh.read(1 << 20), b""), [None]):  # None: the end
            try:
                text = decoder.decode(block or b"", final=block is None)
            except UnicodeDecodeError as exc:
                line += exc.object.count(b"\n", 0, exc.start)
                raise InputError(
                    f"{path}: line {line} is not UTF-8 text (byte 0x{exc.object[exc.start]:02x}); "
                    "save the file as UTF-8"
                ) from None
            line += text.count("\n")
            blank = blank and not text.strip()
    if blank:
        raise InputError(f"{path}: the file is empty (no rows)")


def load_rows(source: str | os.PathLike[str], *, split: str = "train") -> Dataset:
    """Load the rows of ``source``: a `.jsonl/.json/.parquet/.csv` file, a ``save_to_disk`` folder or a Hub id.

    A ``DatasetDict`` (folder or Hub repo) gives its ``split`` (or its only split).
    Raises :class:`InputError` with one line for a missing path, an unknown extension, unreadable data or
    a Hub id with no readable dataset, and :class:`HubError` with one line when the Hub cannot be reached.
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
        if builder == "parquet":
            check_parquet(path)
        else:
            _check_text(path)
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
    return _pick_split(_load_from_hub(repo_id, text), text, split)


@contextmanager
def _quiet_hub_retries() -> Iterator[None]:
    """Silence huggingface_hub's warning per HTTP retry ("Retrying in 8s [Retry 4/5]"): a load that ends
    up failing says so in one line, one that succeeds needs no account of its retries."""
    http_logger = logging.getLogger("huggingface_hub.utils._http")
    level = http_logger.level
    http_logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        http_logger.setLevel(level)


def _load_from_hub(repo_id: str, text: str) -> Dataset | DatasetDict:
    """``load_dataset(repo_id)``, its failures as one line: :class:`HubError` (exit 1) when the Hub cannot be
    reached, as that may pass; :class:`InputError` (exit 2) when no dataset by that name can be read, as a
    missing local file is."""
    import datasets
    from huggingface_hub.errors import OfflineModeIsEnabled

    from hfpref.repo.hub import hub_errors
    from hfpref.stages.datasets_internals import empty_dataset_error, hub_settings

    where = f"cannot load dataset {repo_id!r} from the Hub"
    try:
        with hub_errors(repo_id), _quiet_hub_retries():
            return datasets.load_dataset(repo_id, split=None)
    except datasets.exceptions.DatasetNotFoundError:
        raise InputError(
            f"{text}: no such file or folder, and no Hub dataset {repo_id} (or no access)"
        ) from None
    except (datasets.exceptions.DataFilesNotFoundError, empty_dataset_error()):
        raise InputError(f"{where}: the repo holds no data files that datasets can read") from None
    except (OfflineModeIsEnabled, ConnectionError):
        # datasets raises the builtin ConnectionError ("Couldn't reach ... on the Hub") for a refused
        # connection, a timeout or HF_HUB_OFFLINE, once huggingface_hub's retries are spent, and drops
        # the cause; which of them it was is read from the settings it used.
        offline, endpoint = hub_settings()
        if offline:
            raise HubError(
                f"{where}: HF_HUB_OFFLINE is set and it is not in the local cache; "
                "pass a local file, or unset HF_HUB_OFFLINE"
            ) from None
        raise HubError(
            f"{where}: no connection to {endpoint}; pass a local file, or check the network and HF_ENDPOINT"
        ) from None


class ArrowPages:
    """The Arrow table of a ``Dataset``, read through a memory map whose pages can be given back.

    The pages of a memory-mapped file count in the process's RSS once read, and stay while the file is
    mapped: a pass over every row of a large cache file (the judge's statistics, curate) would end up
    holding the whole file. :meth:`release` hands the pages read so far back to the kernel's page cache
    (``madvise(MADV_DONTNEED)``); the table stays valid, as reading it again faults them back in.
    """

    def __init__(self, table: pa.Table, pages: mmap.mmap | None = None) -> None:
        self.table = table
        self._pages = pages

    def release(self) -> None:
        if self._pages is not None:
            self._pages.madvise(mmap.MADV_DONTNEED)


def release_arrow_memory() -> None:
    """Give the OS back the Arrow memory freed so far: the default pool (mimalloc) keeps freed pages
    for a while, and the copies made on the way through a stage or a config would pile up in the
    peak RSS."""
    import pyarrow as pa

    pa.default_memory_pool().release_unused()


def arrow_pages(ds: Dataset) -> ArrowPages:
    """``ds`` as :class:`ArrowPages`. A dataset read from one Arrow file (a ``map`` result, a loaded
    dataset) is mapped again by hfpref, zero-copy, with the changes ``datasets`` records on its table
    (renamed or removed columns, casts) applied the way ``datasets`` itself reapplies them; any other
    (in memory, concatenated, with an indices mapping, or where ``madvise`` is missing) is read as
    ``datasets`` gives it, and ``release`` does nothing."""
    import pyarrow as pa

    from hfpref.stages.datasets_internals import mapped_file

    source = mapped_file(ds)
    if source is not None and hasattr(mmap.mmap, "madvise"):
        with open(source.path, "rb") as fh:
            pages = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        table = pa.ipc.open_stream(pa.py_buffer(pages)).read_all()
        return ArrowPages(source.replay(table), pages)
    return ArrowPages(ds.with_format("arrow")[:])


def _is_saved_dataset(path: Path) -> bool:
    return any((path / name).exists() for name in ("dataset_info.json", "dataset_dict.json", "state.json"))


def check_output(destination: str | os.PathLike[str], *, nested: bool = False) -> None:
    """Raise :class:`InputError` now, before any row is produced, when ``destination`` cannot be written:
    an unknown extension, CSV for rows with list columns (``nested``), a folder where a file is meant (or
    the reverse), a folder that is not a saved dataset, or a place that refuses files."""
    text = os.fspath(destination)
    if text.startswith(HUB_PREFIX):
        if _hub_id(text) is None:
            raise InputError(f"{text}: expected hf://datasets/NAMESPACE/NAME")
        return
    path = Path(text)
    suffix = path.suffix.lower()
    if suffix and suffix not in FILE_BUILDERS:
        raise InputError(
            f"{text}: unknown file type {suffix!r}; expected .jsonl, .json, .parquet, .csv or a folder"
        )
    if suffix == ".csv" and nested:
        raise InputError(f"{text}: CSV cannot hold the list columns these rows have; use .jsonl or .parquet")
    if suffix and path.is_dir():
        raise InputError(f"{text}: is a folder; expected the path of a {suffix} file to write")
    if not suffix and path.exists():
        if not path.is_dir():
            raise InputError(
                f"{text}: exists and is not a folder (a path without an extension is a dataset folder)"
            )
        if any(path.iterdir()) and not _is_saved_dataset(path):
            raise InputError(
                f"{text}: a non-empty folder that is not a saved dataset; refusing to replace it"
            )
    existing = path.absolute().parent
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise InputError(f"{text}: cannot write there, {existing} is a file and not a folder")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        raise InputError(f"{text}: cannot write in {existing} ({exc.strerror or exc})") from None


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists():
        path.unlink()


def _write_local(ds: Dataset, path: Path, suffix: str) -> None:
    """Write ``ds`` under a temporary name beside ``path``, then rename it into place (a folder replaces
    the old one)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    old = path.with_name(f".{path.name}.{os.getpid()}.old")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if suffix == ".parquet":
            ds.to_parquet(str(tmp))
        elif suffix in (".jsonl", ".json"):
            ds.to_json(str(tmp), lines=suffix == ".jsonl", force_ascii=False)
        elif suffix == ".csv":
            ds.to_csv(str(tmp), index=False)
        else:
            ds.save_to_disk(str(tmp))
            if path.is_dir():
                path.rename(old)
        os.replace(tmp, path)
    except OSError as exc:
        raise HfprefError(
            f"{path}: cannot write it ({exc.strerror or exc}); nothing was written there"
        ) from None
    finally:
        if old.exists() and not path.exists():  # interrupted between the two renames: put it back
            old.rename(path)
        _remove(tmp)
        _remove(old)


def save_rows(ds: Dataset, destination: str | os.PathLike[str]) -> Path | str:
    """Write ``ds`` by extension (`.jsonl`, `.json`, `.parquet`, `.csv`), to a ``save_to_disk`` folder, or to
    the Hub for ``hf://datasets/user/name``. Returns the path (or repo id) written.

    A local output appears complete or not at all: it is written under a temporary name and renamed."""
    text = os.fspath(destination)
    check_output(text)
    if text.startswith(HUB_PREFIX):
        repo_id = text.removeprefix(HUB_PREFIX)
        from hfpref.repo.hub import hub_errors

        with hub_errors(repo_id):
            ds.push_to_hub(repo_id)
        return repo_id
    path = Path(text)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        from datasets import Value

        nested = [name for name, feature in ds.features.items() if not isinstance(feature, Value)]
        if nested:
            raise InputError(f"{text}: CSV cannot hold list/struct columns {nested}; use .jsonl or .parquet")
    _write_local(ds, path, suffix)
    return path
