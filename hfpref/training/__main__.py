"""``accelerate launch -m hfpref.training ARGS`` (or ``torchrun -m hfpref.training``) runs ``hfpref train
ARGS`` on every process of a multi-GPU or multi-node job."""

import sys

from hfpref.cli import main

sys.argv[1:1] = ["train"]
main()
