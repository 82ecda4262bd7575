"""hfpref: prompts → preference data → trained models, inside datasets, the Hub and TRL."""

from hfpref.errors import HfprefError

__version__ = "0.1.0"

__all__ = ["HfprefError", "__version__"]
