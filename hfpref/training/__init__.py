"""Training with TRL + PEFT, imported only when training is asked for.

``options`` (hfpref's own options, light: the CLI's help), ``settings`` (TRL's parser over them and
TRL's dataclasses), ``data`` (dataset folder or Hub repo → train/eval splits), ``card`` (the model
card) and ``train`` (the run).
"""
