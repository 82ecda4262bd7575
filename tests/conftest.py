"""Shared fixtures. Every test runs with its own hfpref cache and HF cache, and no real credentials."""

from __future__ import annotations

import asyncio
import gc
import logging
import weakref
from collections.abc import Callable

import pytest


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HFPREF_CACHE", str(home / "hfpref-cache"))
    monkeypatch.setenv("HF_HOME", str(home / "hf"))
    monkeypatch.setenv("HF_HUB_DISABLE_UPDATE_CHECK", "1")
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    for name in ("HFPREF_API_KEY", "OPENROUTER_API_KEY", "OPENAI_API_KEY", "HFPREF_BASE_URL", "HF_TOKEN"):
        monkeypatch.delenv(name, raising=False)


def _stranded() -> list[asyncio.Task[object]]:
    gc.collect()
    return [
        task
        for task in gc.get_objects()
        if issubclass(type(task), asyncio.Task) and not task.done() and not task.get_loop().is_running()
    ]


@pytest.fixture
def leftovers(caplog: pytest.LogCaptureFixture) -> Callable[[], list[str]]:
    """What a map that stopped on an error left behind: tasks of a stopped event loop (datasets'
    map loop) that never finished, and asyncio's complaints ("Task exception was never retrieved",
    "Task was destroyed but it is pending!") about tasks collected meanwhile. Tasks stranded by
    earlier tests of the process do not count."""
    caplog.set_level(logging.ERROR, logger="asyncio")
    before = weakref.WeakSet(_stranded())

    def found() -> list[str]:
        stranded = [repr(task) for task in _stranded() if task not in before]
        return stranded + [record.getMessage() for record in caplog.records if record.name == "asyncio"]

    return found
