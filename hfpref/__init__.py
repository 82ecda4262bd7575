"""hfpref: prompts → preference data → trained models, inside datasets, the Hub and TRL.

The public API is lazy: ``import hfpref`` imports nothing heavy (no datasets, torch, TRL or
transformers), and each name below loads its part on first use. The parts are subpackages:
``hfpref.wire`` (HTTP, answers, cache, budget, limits), ``hfpref.stages`` (generate, judge, curate as
``datasets.map`` functions), ``hfpref.repo`` (folder, card, Hub), ``hfpref.training`` (TRL + PEFT) and
``hfpref.cli``; docs/architecture.md draws them.
"""

from __future__ import annotations

import importlib
from importlib.metadata import version
from typing import TYPE_CHECKING, Any

from hfpref.errors import BudgetExhausted, HfprefError

if TYPE_CHECKING:
    from hfpref.repo.hub import push
    from hfpref.stages.curate import curate
    from hfpref.stages.generate import Generator, generate
    from hfpref.stages.judge import Judge, judge
    from hfpref.training.train import train

__version__ = version("hfpref")

__all__ = [
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
]

_LAZY = {
    "Generator": "hfpref.stages.generate",
    "generate": "hfpref.stages.generate",
    "Judge": "hfpref.stages.judge",
    "judge": "hfpref.stages.judge",
    "curate": "hfpref.stages.curate",
    "push": "hfpref.repo.hub",
    "train": "hfpref.training.train",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'hfpref' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
