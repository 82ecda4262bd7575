"""Persistent, content-addressed request cache: a killed run resumes without re-paying.

One SQLite file (WAL mode) under the cache directory, safe to share between processes
(``num_proc``) and between runs. The key hashes everything that decides an answer (endpoint,
model, messages, sampling parameters, sample index) and nothing that does not (API key, timeout,
concurrency), so raising ``max_tokens`` re-sends only the requests it changes. Every answer that came
back and stands is stored, final failures included (a refusal, a content filter): no rerun pays for it
again. A request that got no answer, or one whose failure another attempt may mend, is tried again on
the next run. Answers are committed in the event-loop turn
they arrive in (:meth:`RequestCache.put_soon`: one transaction for all the answers of a turn, before
the loop waits on the network again), so a SIGKILL loses at most the requests in flight.
"""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
from pathlib import Path
from typing import Any

import orjson

SCHEMA_VERSION = 1


def request_key(
    endpoint: str, model: str, messages: list[dict[str, Any]], params: dict[str, Any], sample: int
) -> str:
    """The cache key of completion number ``sample`` of one request."""
    payload = orjson.dumps(
        {
            "v": SCHEMA_VERSION,
            "endpoint": endpoint,
            "model": model,
            "messages": messages,
            "params": params,
            "sample": sample,
        },
        option=orjson.OPT_SORT_KEYS,
    )
    return hashlib.sha256(payload).hexdigest()


class RequestCache:
    """A key → JSON-record store. ``path=None`` gives a cache that stores nothing (``--no-cache``)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None
        self._pending: list[tuple[str, bytes]] = []
        self._flush: asyncio.Handle | None = None
        self._flush_loop: asyncio.AbstractEventLoop | None = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(path, timeout=60, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("CREATE TABLE IF NOT EXISTS answers (key TEXT PRIMARY KEY, record BLOB NOT NULL)")
            self._db = db

    def get(self, key: str) -> dict[str, Any] | None:
        if self._db is None:
            return None
        row = self._db.execute("SELECT record FROM answers WHERE key = ?", (key,)).fetchone()
        return orjson.loads(row[0]) if row else None

    def get_many(self, keys: list[str]) -> dict[str, dict[str, Any]]:
        if self._db is None or not keys:
            return {}
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for key, record in self._db.execute(
                f"SELECT key, record FROM answers WHERE key IN ({marks})", chunk
            ):
                found[key] = orjson.loads(record)
        return found

    def put_many(self, items: list[tuple[str, dict[str, Any]]]) -> None:
        """Store ``(key, record)`` pairs now, in one transaction."""
        if self._db is None or not items:
            return
        self._write([(key, orjson.dumps(record)) for key, record in items])

    def put_soon(self, items: list[tuple[str, dict[str, Any]]]) -> None:
        """Store ``(key, record)`` pairs at the end of this event-loop turn, with the other answers of
        the turn in one transaction: the running loop runs :meth:`flush` before it next waits for I/O.
        Whoever stops the loop (a ``map`` batch ending) calls :meth:`flush` first."""
        if self._db is None or not items:
            return
        self._pending.extend((key, orjson.dumps(record)) for key, record in items)
        loop = asyncio.get_running_loop()
        if self._flush is not None and self._flush_loop is not loop:
            self.flush()  # scheduled on a loop that datasets no longer runs
        if self._flush is None:
            self._flush, self._flush_loop = loop.call_soon(self.flush), loop

    def flush(self) -> None:
        """Commit what :meth:`put_soon` holds."""
        if self._flush is not None:
            self._flush.cancel()
            self._flush = self._flush_loop = None
        rows, self._pending = self._pending, []
        if rows:
            self._write(rows)

    def _write(self, rows: list[tuple[str, bytes]]) -> None:
        assert self._db is not None
        if len(rows) == 1:  # autocommit: one statement, one transaction
            self._db.execute("INSERT OR REPLACE INTO answers (key, record) VALUES (?, ?)", rows[0])
            return
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.executemany("INSERT OR REPLACE INTO answers (key, record) VALUES (?, ?)", rows)
        finally:
            self._db.execute("COMMIT")

    def close(self) -> None:
        self.flush()
        if self._db is not None:
            self._db.close()
            self._db = None
