"""The request cache's log: answers saved in the loop turn they arrive in (one write), moved into the
SQLite file in bulk, and found again after a kill (hfpref/wire/cache.py)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from hfpref.config import ModelSpec, ProviderConfig
from hfpref.wire import cache as cache_module
from hfpref.wire.cache import RequestCache, stored_records
from hfpref.wire.client import ChatClient
from hfpref.wire.progress import Stats
from hfpref.wire.transport import Request

REPO = Path(__file__).resolve().parents[1]
A, B, C = "a" * 64, "b" * 64, "c" * 64


def in_sqlite(path: Path) -> dict[str, bytes]:
    """What the SQLite file itself holds (as another process reading it sees)."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        return dict(db.execute("SELECT key, record FROM answers"))


def logs(path: Path) -> list[Path]:
    return sorted(path.parent.glob(f"{path.name}.*.log"))


def child(path: Path, then: str) -> subprocess.Popen[str]:
    """A process that saves answers A and B in one loop turn, then does ``then``."""
    code = textwrap.dedent(
        f"""
        import asyncio, os, signal, sys
        from pathlib import Path
        from hfpref.wire.cache import RequestCache
        cache = RequestCache(Path({str(path)!r}))

        async def turn():
            cache.put_soon([({A!r}, {{"text": "a"}}), ({B!r}, {{"text": "b"}})])
            await asyncio.sleep(0)  # the loop's next turn: saved

        asyncio.run(turn())
        print("saved", flush=True)
        {then}
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline() == "saved\n"
    return proc


def test_a_killed_process_answers_are_found_by_the_next_one(tmp_path: Path) -> None:
    path = tmp_path / "requests.sqlite"
    proc = child(path, "os.kill(os.getpid(), signal.SIGKILL)")
    assert proc.wait(timeout=30) == -signal.SIGKILL
    assert in_sqlite(path) == {}, "saved in the log only: the SQLite transaction a turn was the old cost"
    assert stored_records(path) == {A: {"text": "a"}, B: {"text": "b"}}
    with logs(path)[0].open("ab") as log:
        log.write(f'{C} {{"text": '.encode())  # a line the kill cut short is not an answer

    cache = RequestCache(path)  # the rerun
    assert cache.get_many([A, B, C]) == {A: {"text": "a"}, B: {"text": "b"}}
    assert set(in_sqlite(path)) == {A, B}
    assert logs(path) == []


def test_a_live_process_log_is_left_to_it_and_moved_when_it_exits(tmp_path: Path) -> None:
    path = tmp_path / "requests.sqlite"
    proc = child(path, "sys.stdin.read()")
    try:
        cache = RequestCache(path)  # another process opening the cache meanwhile
        assert len(logs(path)) == 1, "the running process keeps its log"
        assert cache.get_many([A]) == {}  # not moved yet: asked again at worst, never lost
        assert stored_records(path)[A] == {"text": "a"}
    finally:
        assert proc.stdin is not None
        proc.stdin.close()  # the process ends normally
        assert proc.wait(timeout=30) == 0
    assert logs(path) == []
    assert cache.get_many([A, B]) == {A: {"text": "a"}, B: {"text": "b"}}


def test_saved_answers_reach_sqlite_in_time_and_every_cache_of_the_process_reads_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cache_module, "MERGE_AFTER_S", 0.05)
    path = tmp_path / "requests.sqlite"
    cache, other = RequestCache(path), RequestCache(path)  # e.g. a second stage of the same job

    async def answers_then_silence() -> tuple[dict[str, Any], dict[str, bytes], dict[str, bytes]]:
        cache.put_soon([(A, {"text": "a"})])
        await asyncio.sleep(0)
        seen, early = other.get_many([A]), in_sqlite(path)
        await asyncio.sleep(0.2)  # no answer comes: the timer moves the log
        return seen, early, in_sqlite(path)

    seen, early, late = asyncio.run(answers_then_silence())
    assert seen == {A: {"text": "a"}} and early == {}
    assert set(late) == {A}

    monkeypatch.setattr(cache_module, "MERGE_ROWS", 2)

    async def many() -> None:
        cache.put_soon([(B, {"text": "b"}), (C, {"text": "c"})])
        await asyncio.sleep(0)

    asyncio.run(many())
    assert set(in_sqlite(path)) == {A, B, C}  # as many as MERGE_ROWS: moved in that turn


class OneAnswer:
    async def send(self, request: Request) -> dict[str, Any]:
        return {"choices": [{"index": 0, "message": {"content": "hi"}, "finish_reason": "stop"}]}

    async def aclose(self) -> None:
        pass


def test_a_map_calls_answers_are_in_sqlite_when_its_work_on_the_loop_ends(tmp_path: Path) -> None:
    path = tmp_path / "requests.sqlite"
    client = ChatClient(
        ProviderConfig(base_url="http://127.0.0.1:9/v1"),
        [ModelSpec("m/a")],
        4,
        RequestCache(path),
        Stats("t"),
        transport=OneAnswer(),
    )

    async def batch() -> None:
        async with client.open() as session:
            await client.complete(session, "m/a", [{"role": "user", "content": "q"}], {}, [0])

    asyncio.run(batch())
    assert len(in_sqlite(path)) == 1  # other processes (num_proc, the next run) see it now
