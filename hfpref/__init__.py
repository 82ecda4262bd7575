"""hfpref: prompts → preference data → trained models, inside datasets, the Hub and TRL.

The public API is lazy: ``import hfpref`` imports nothing heavy, and ``hfpref.train`` imports torch
and TRL only when called.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from hfpref.errors import HfprefError

if TYPE_CHECKING:
    from hfpref.curate import curate
    from hfpref.generate import Generator, generate
    from hfpref.hub import push
    from hfpref.judge import Judge, judge
    from hfpref.train import train

__version__ = "0.1.0"

__all__ = ["Generator", "HfprefError", "Judge", "__version__", "curate", "generate", "judge", "push", "train"]

_LAZY = {
    "Generator": "hfpref.generate",
    "generate": "hfpref.generate",
    "Judge": "hfpref.judge",
    "judge": "hfpref.judge",
    "curate": "hfpref.curate",
    "push": "hfpref.hub",
    "train": "hfpref.train",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'hfpref' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
