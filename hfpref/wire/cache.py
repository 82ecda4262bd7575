"""Persistent, content-addressed request cache: a killed run resumes without re-paying.

One SQLite file (WAL mode) under the cache directory, safe to share between processes
(``num_proc``) and between runs. The key hashes everything that decides an answer (endpoint,
model, messages, sampling parameters, sample index) and nothing that does not (API key, timeout,
concurrency), so raising ``max_tokens`` re-sends only the requests it changes. Every answer that came
back and stands is stored, final failures included (a refusal, a content filter): no rerun pays for it
again. A request that got no answer, or one whose failure another attempt may mend, is tried again on
the next run.

Answers are saved in the event-loop turn they arrive in (:meth:`RequestCache.put_soon`), before the
loop waits on the network again, so a SIGKILL loses at most the requests in flight. Saving is one
``write(2)`` per turn to this process's append-only log beside the SQLite file
(``requests.sqlite.PID-XXXX.log``, locked by the process while it lives); the log is moved into the
SQLite file in one transaction every ``MERGE_AFTER_S`` seconds or ``MERGE_ROWS`` answers, when a map's
work on a loop ends, and when the process exits. A transaction per loop turn cost more CPU than the
rest of the client (benchmarks/README.md, issue 18). Every :class:`RequestCache` of the file in this
process reads the log's answers at once; other processes read them once they are moved; the log of a
process that died (killed) is moved by the next process that opens the cache.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import fcntl
import hashlib
import os
import sqlite3
import time
import uuid
from pathlib import Path
from typing import Any

import orjson

SCHEMA_VERSION = 1
MERGE_ROWS = 2000  # answers in the log that are moved into SQLite at once
MERGE_AFTER_S = 2.0  # the longest an answer stays only in the log while its process runs


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


def open_database(path: Path | str, timeout_s: float = 60.0) -> sqlite3.Connection:
    """A connection to SQLite file ``path`` in WAL mode (``synchronous=NORMAL``), autocommitting.

    Turning a new file to WAL takes a lock SQLite does not wait for: ``num_proc`` workers opening the
    file together get SQLITE_BUSY at once, so that step is retried for up to ``timeout_s`` (the busy
    timeout of every other statement)."""
    db = sqlite3.connect(path, timeout=timeout_s, isolation_level=None, check_same_thread=False)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            break
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode != sqlite3.SQLITE_BUSY or time.monotonic() > deadline:
                raise
            time.sleep(0.01)  # once per process, when it opens the file
    db.execute("PRAGMA synchronous=NORMAL")
    return db


def _connect(path: Path) -> sqlite3.Connection:
    db = open_database(path)
    db.execute("CREATE TABLE IF NOT EXISTS answers (key TEXT PRIMARY KEY, record BLOB NOT NULL)")
    return db


def _insert(db: sqlite3.Connection, rows: list[tuple[str, bytes]]) -> None:
    """``(key, record JSON)`` rows into the answers table, in one transaction."""
    if len(rows) == 1:  # autocommit: one statement, one transaction
        db.execute("INSERT OR REPLACE INTO answers (key, record) VALUES (?, ?)", rows[0])
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        db.executemany("INSERT OR REPLACE INTO answers (key, record) VALUES (?, ?)", rows)
    finally:
        db.execute("COMMIT")


def _read_log(data: bytes) -> list[tuple[str, bytes]]:
    """The entries of a log (``KEY RECORD\\n`` lines); a line cut short by a kill is left out."""
    rows = []
    for line in data.split(b"\n")[:-1]:  # the part after the last newline was never finished
        key, _, record = line.partition(b" ")
        if len(key) == 64 and record:
            rows.append((key.decode("ascii"), record))
    return rows


class _Log:
    """This process's append-only log beside one cache file, and the answers in it not yet in SQLite."""

    def __init__(self, path: Path) -> None:
        self.cache_path = path
        self.path = path.with_name(f"{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.log")
        self.fd: int | None = None
        self.unmerged: dict[str, bytes] = {}
        self.since = 0.0  # when the oldest unmerged answer was written
        self.timer: asyncio.TimerHandle | None = None

    def append(self, rows: list[tuple[str, bytes]]) -> None:
        if self.fd is None:
            self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            fcntl.flock(self.fd, fcntl.LOCK_EX)  # a live process's log: no other process moves it
        lines = []
        for key, record in rows:
            lines.append(f"{key} ".encode() + record + b"\n")
        os.write(self.fd, b"".join(lines))
        if not self.unmerged:
            self.since = time.monotonic()
        self.unmerged.update(rows)

    def due(self) -> bool:
        return len(self.unmerged) >= MERGE_ROWS or time.monotonic() - self.since >= MERGE_AFTER_S

    def merge(self, db: sqlite3.Connection) -> None:
        """Move the unmerged answers into SQLite, then empty the log."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if not self.unmerged:
            return
        _insert(db, list(self.unmerged.items()))
        self.unmerged.clear()
        if self.fd is not None:
            os.ftruncate(self.fd, 0)  # O_APPEND: the next entry is written at the new end

    def close(self, db: sqlite3.Connection) -> None:
        self.merge(db)
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()


#: (cache file, process id) -> that process's log of the file: shared by its RequestCache objects.
_LOGS: dict[tuple[Path, int], _Log] = {}


def _log_of(path: Path) -> _Log:
    log = _LOGS.get((path, os.getpid()))
    if log is None:
        if not _LOGS:
            atexit.register(_close_logs)
        log = _LOGS[path, os.getpid()] = _Log(path)
    return log


def _close_logs() -> None:
    """At exit: this process's logs into their SQLite files (a killed process's wait for the next run)."""
    for (path, pid), log in list(_LOGS.items()):
        if pid == os.getpid() and log.fd is not None:
            with contextlib.closing(_connect(path)) as db:
                log.close(db)


def recover_logs(path: Path, db: sqlite3.Connection) -> int:
    """Move the logs of processes that died (their lock is free) into SQLite; the entries moved."""
    moved = 0
    for log_path in sorted(path.parent.glob(f"{path.name}.*.log")):
        try:
            fd = os.open(log_path, os.O_RDWR)
        except FileNotFoundError:  # moved meanwhile by another process
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:  # a live process's log (possibly this process's own)
                continue
            rows = _read_log(os.pread(fd, os.fstat(fd).st_size, 0))
            if rows:
                _insert(db, rows)
                moved += len(rows)
            with contextlib.suppress(FileNotFoundError):
                log_path.unlink()
        finally:
            os.close(fd)
    return moved


def stored_records(path: Path) -> dict[str, dict[str, Any]]:
    """Every answer saved in cache file ``path``, its processes' logs included (read only; for reports)."""
    found: dict[str, dict[str, Any]] = {}
    if path.exists():
        with contextlib.closing(sqlite3.connect(path)) as db:
            for key, record in db.execute("SELECT key, record FROM answers"):
                found[key] = orjson.loads(record)
    for log_path in sorted(path.parent.glob(f"{path.name}.*.log")):
        with contextlib.suppress(FileNotFoundError):
            for key, record in _read_log(log_path.read_bytes()):
                found[key] = orjson.loads(record)
    return found


class RequestCache:
    """A key → JSON-record store. ``path=None`` gives a cache that stores nothing (``--no-cache``)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None
        self._log: _Log | None = None
        self._pending: list[tuple[str, bytes]] = []
        self._flush: asyncio.Handle | None = None
        self._flush_loop: asyncio.AbstractEventLoop | None = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = _connect(path)
            fresh = (path, os.getpid()) not in _LOGS
            self._log = _log_of(path)
            if fresh:
                recover_logs(path, self._db)

    def get(self, key: str) -> dict[str, Any] | None:
        return self.get_many([key]).get(key)

    def get_many(self, keys: list[str]) -> dict[str, dict[str, Any]]:
        if self._db is None or self._log is None or not keys:
            return {}
        found: dict[str, dict[str, Any]] = {}
        unmerged = self._log.unmerged
        if unmerged:
            rest = []
            for key in keys:
                record = unmerged.get(key)
                if record is None:
                    rest.append(key)
                else:
                    found[key] = orjson.loads(record)
            keys = rest
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for key, record in self._db.execute(
                f"SELECT key, record FROM answers WHERE key IN ({marks})", chunk
            ):
                found[key] = orjson.loads(record)
        return found

    def put_many(self, items: list[tuple[str, dict[str, Any]]]) -> None:
        """Store ``(key, record)`` pairs in SQLite now, in one transaction."""
        if self._db is None or self._log is None or not items:
            return
        _insert(self._db, [(key, orjson.dumps(record)) for key, record in items])
        for key, _ in items:  # the log's older answer to the same request no longer stands
            self._log.unmerged.pop(key, None)

    def put_soon(self, items: list[tuple[str, dict[str, Any]]]) -> None:
        """Save ``(key, record)`` pairs at the end of this event-loop turn, with the other answers of
        the turn in one write: the running loop runs :meth:`flush` before it next waits for I/O.
        Whoever stops the loop (a ``map`` batch ending) calls :meth:`flush` first."""
        if self._db is None or not items:
            return
        for key, record in items:
            self._pending.append((key, orjson.dumps(record)))
        loop = asyncio.get_running_loop()
        if self._flush is not None and self._flush_loop is not loop:
            self.flush()  # scheduled on a loop that datasets no longer runs
        if self._flush is None:
            self._flush, self._flush_loop = loop.call_soon(self.flush), loop

    def flush(self) -> None:
        """Save what :meth:`put_soon` holds (in the log; moved into SQLite when the log is due)."""
        self._save_pending()
        log = self._log
        if log is None or self._db is None or not log.unmerged:
            return
        if log.due():
            log.merge(self._db)
        elif log.timer is None:  # answers that stop coming still reach SQLite in time
            with contextlib.suppress(RuntimeError):  # no running loop: the next flush, merge or exit
                log.timer = asyncio.get_running_loop().call_later(MERGE_AFTER_S, self.merge)

    def merge(self) -> None:
        """Move this process's saved answers into the SQLite file, where other processes read them."""
        self._save_pending()
        if self._log is not None and self._db is not None:
            self._log.merge(self._db)

    def _save_pending(self) -> None:
        if self._flush is not None:
            self._flush.cancel()
            self._flush = self._flush_loop = None
        rows, self._pending = self._pending, []
        if rows and self._log is not None:
            self._log.append(rows)

    def close(self) -> None:
        self.merge()
        if self._db is not None:
            self._db.close()
            self._db = None
