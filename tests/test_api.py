"""The public API: ``__all__``, the stage callables whatever was imported first, and a light ``import``."""

from __future__ import annotations

import inspect
import subprocess
import sys

import pytest

import hfpref

PUBLIC = {
    "BudgetExhausted",
    "Generator",
    "HfprefError",
    "Judge",
    "__version__",
    "curate",
    "generate",
    "judge",
    "push",
    "train",
}


def _run(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    return done.stdout.strip()


def test_all_is_the_documented_api_and_every_name_resolves() -> None:
    assert set(hfpref.__all__) == PUBLIC
    for name in hfpref.__all__:
        assert getattr(hfpref, name) is not None
    assert issubclass(hfpref.HfprefError, Exception)
    assert issubclass(hfpref.BudgetExhausted, hfpref.HfprefError)  # catchable on its own
    assert isinstance(hfpref.__version__, str)


def test_stage_callables_survive_importing_their_modules_first() -> None:
    # A fresh interpreter, so the submodules are imported before the package attributes are touched.
    out = _run(
        "import inspect\n"
        "from hfpref.stages.generate import Generator\n"
        "from hfpref.stages.judge import Judge\n"
        "import hfpref.stages.curate, hfpref.training.train, hfpref\n"
        "print(inspect.iscoroutinefunction(hfpref.generate), inspect.iscoroutinefunction(hfpref.judge),"
        " hfpref.curate.__module__, inspect.isfunction(hfpref.curate), inspect.isfunction(hfpref.train),"
        " hfpref.Generator is Generator, hfpref.Judge is Judge)"
    )
    assert out == "True True hfpref.stages.curate True True True True"


def test_generator_instances_are_coroutine_functions() -> None:
    # datasets.map decides sync/async with inspect.iscoroutinefunction (FACTS.md: on 3.11 an object with
    # `async def __call__` is not one), so the default callables and every instance must pass it.
    gen = hfpref.Generator(models=["fake/model-a"], base_url="http://127.0.0.1:9/v1", n=2)
    judge = hfpref.Judge(models=["fake/model-a"], base_url="http://127.0.0.1:9/v1")
    assert all(inspect.iscoroutinefunction(f) for f in (hfpref.generate, hfpref.judge, gen, judge))


def test_import_and_help_stay_light() -> None:
    out = _run(
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from hfpref.cli import cli\n"
        "result = CliRunner().invoke(cli, ['--help'])\n"
        "assert result.exit_code == 0 and 'generate' in result.output, result.output\n"
        "print(' '.join(m for m in ('torch', 'trl', 'transformers', 'datasets', 'aiohttp', 'pyarrow')"
        " if m in sys.modules) or 'none')"
    )
    assert out == "none"


def test_constructors_leave_the_callers_config_untouched(monkeypatch: pytest.MonkeyPatch) -> None:
    from hfpref.config import GenerateConfig, JudgeConfig

    monkeypatch.setenv("HFPREF_MODEL", "fake/model-a")
    monkeypatch.setenv("HFPREF_JUDGE_MODEL", "fake/model-b")
    gen_cfg, judge_cfg = GenerateConfig(), JudgeConfig()
    gen = hfpref.Generator(config=gen_cfg)
    judge = hfpref.Judge(config=judge_cfg)
    assert (gen_cfg.models, judge_cfg.models) == ([], [])  # the defaults went into the stages' copies
    assert [m.id for m in gen.spec.config.models] == ["fake/model-a"]
    assert [m.id for m in judge.spec.config.models] == ["fake/model-b"]
