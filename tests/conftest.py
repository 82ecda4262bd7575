"""Shared fixtures. Every test runs with its own hfpref cache and HF cache, and no real credentials."""

from __future__ import annotations

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
