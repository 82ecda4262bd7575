"""Importers of public preference sources into hfpref's dataset folder layout, one script per source.

Run one as ``python builder_scripts/NAME.py --source PATH_OR_HUB_ID -o FOLDER [--push REPO_ID] [--limit N]``
(see README.md here). Each script is the command line of one importer (:mod:`hfpref.importers`), made
with :mod:`hfpref.cli.importers`. This file makes the folder importable (``from builder_scripts import
nemo_gym``) for tests.
"""
