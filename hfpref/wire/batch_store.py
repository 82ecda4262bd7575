"""What a killed batch run leaves for the next one: the batches it submitted and the requests in each.

Two tables in the request cache's SQLite file (beside its ``answers``), shared by every process and run
that uses the cache:

* ``batch_files``: one row per uploaded input file: its endpoint, and the batch created from it (NULL
  until the provider's answer to the creation has arrived);
* ``batch_lines``: one row per request (its ``custom_id``): the file it was last submitted in, and whether
  its result there was a failure (an error status, or no answer before the batch ended).

Writes come in the order that makes a kill harmless: a file and its lines are recorded after the upload
and *before* the batch is created, the batch id as soon as it is known. A rerun therefore finds, for each
request, the batch to wait for, or a file whose batch it looks up in the provider's list of batches
(the creation's answer was lost), and submits a request again only when its earlier result failed or its
batch was never created. :mod:`hfpref.wire.batch` does that; this module only keeps the records.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from hfpref.wire.cache import open_database


class Recorded(NamedTuple):
    """The last submission of one request: its input file, the batch made of it (None: unknown yet), and
    whether the request's result there was a failure."""

    file_id: str
    batch_id: str | None
    failed: bool


class BatchStore:
    """The batch records in the SQLite file at ``path`` (the request cache's); ``path`` None: in memory,
    for this process only (``--no-cache``: a rerun submits everything again, a retry still finds its batch)."""

    def __init__(self, path: Path | None) -> None:
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        where = ":memory:" if path is None else path
        db = open_database(where)
        db.execute(
            "CREATE TABLE IF NOT EXISTS batch_files "
            "(file_id TEXT PRIMARY KEY, endpoint TEXT NOT NULL, batch_id TEXT)"
        )
        db.execute(
            "CREATE TABLE IF NOT EXISTS batch_lines "
            "(custom_id TEXT PRIMARY KEY, file_id TEXT NOT NULL, failed INTEGER NOT NULL)"
        )
        self._db = db

    def lookup(self, custom_id: str) -> Recorded | None:
        """The last submission of ``custom_id``, or None when it was never submitted."""
        row = self._db.execute(
            "SELECT l.file_id, f.batch_id, l.failed FROM batch_lines l JOIN batch_files f USING (file_id) "
            "WHERE l.custom_id = ?",
            (custom_id,),
        ).fetchone()
        return None if row is None else Recorded(row[0], row[1], bool(row[2]))

    def add_file(self, file_id: str, endpoint: str, custom_ids: list[str]) -> None:
        """An input file was uploaded with these requests; its batch is about to be created."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.execute("INSERT OR REPLACE INTO batch_files VALUES (?, ?, NULL)", (file_id, endpoint))
            self._db.executemany(
                "INSERT OR REPLACE INTO batch_lines VALUES (?, ?, 0)", [(c, file_id) for c in custom_ids]
            )
        finally:
            self._db.execute("COMMIT")

    def set_batch(self, file_id: str, batch_id: str) -> None:
        """The batch made of ``file_id`` exists: a rerun waits for it."""
        self._db.execute("UPDATE batch_files SET batch_id = ? WHERE file_id = ?", (batch_id, file_id))

    def failed(self, file_id: str, custom_ids: list[str]) -> None:
        """These requests of ``file_id`` got no usable result there: a rerun submits them again."""
        if not custom_ids:
            return
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.executemany(
                "UPDATE batch_lines SET failed = 1 WHERE custom_id = ? AND file_id = ?",
                [(c, file_id) for c in custom_ids],
            )
        finally:
            self._db.execute("COMMIT")
