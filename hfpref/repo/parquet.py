"""Parquet shards as the dataset folder holds them: a one-line check before datasets reads one.

``datasets`` logs a long traceback for a shard that is not parquet (a truncated download, a file
renamed by hand) before it raises; :func:`check_parquet` reads only the footer and turns that into
one :class:`~hfpref.errors.InputError` line naming the file. Stages check an input file with it,
training every shard of a local dataset folder.
"""

from __future__ import annotations

from pathlib import Path

from hfpref.errors import InputError


def check_parquet(path: Path) -> None:
    """A one-line error for a file that is not parquet (before datasets logs its own error about it)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pq.read_metadata(path)
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"{path}: not a readable parquet file ({str(exc).splitlines()[0]})") from None
