"""``python -m hfpref.cli ARGS`` is ``hfpref ARGS``; ``accelerate launch -m hfpref.cli train ARGS`` (or
``torchrun -m hfpref.cli train ARGS``) trains on every process of a multi-GPU or multi-node job."""

from hfpref.cli import main

main()
