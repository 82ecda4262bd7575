"""hfpref: prompts → preference data → trained models, inside datasets, the Hub and TRL.

The public API is lazy: ``import hfpref`` imports nothing heavy, and ``hfpref.train`` imports torch
and TRL only when called.

``generate``, ``judge``, ``curate`` and ``train`` name both a stage module and the callable it defines.
Python binds a submodule to its package's attribute when it is first imported (``from
hfpref.generate import Generator``), which would hide the callable; the package keeps the callable
instead, so ``hfpref.generate`` stays the coroutine function that ``datasets.map`` runs asynchronously
whatever was imported first. The modules themselves are in ``sys.modules`` (``from hfpref.judge
import Judge`` works as usual).
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

from hfpref.errors import BudgetExhausted, HfprefError

if TYPE_CHECKING:
    from hfpref.curate import curate
    from hfpref.generate import Generator, generate
    from hfpref.hub import push
    from hfpref.judge import Judge, judge
    from hfpref.train import train

__version__ = "0.1.0"

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
    "Generator": "hfpref.generate",
    "generate": "hfpref.generate",
    "Judge": "hfpref.judge",
    "judge": "hfpref.judge",
    "curate": "hfpref.curate",
    "push": "hfpref.hub",
    "train": "hfpref.train",
}


_STAGES = frozenset({"generate", "judge", "curate", "train"})


class _Package(types.ModuleType):
    def __setattr__(self, name: str, value: Any) -> None:
        if name in _STAGES and isinstance(value, types.ModuleType):
            value = getattr(value, name)  # the import system binding the stage module: keep its callable
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'hfpref' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
