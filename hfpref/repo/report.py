"""``hfpref report FOLDER_OR_REPO``: the statistics of a dataset's figures in the terminal, the figures
drawn again, and the card and ``hfpref.json`` that link and record them brought up to date.

A local folder is reported in place: after an import by an older hfpref, or by hand, its figures and
card then say what its data holds now. A Hub dataset id is first copied (its card, ``hfpref.json`` and
``dpo`` shards, nothing else) into a local folder, which is reported the same way; the Hub repo itself
is not changed (``hfpref push`` the copy to update it).
"""

from __future__ import annotations

import re
from pathlib import Path

from hfpref.errors import InputError
from hfpref.repo.card import REPO_PLACEHOLDER
from hfpref.repo.figure_data import FIGURES, IMAGES, figure_notes
from hfpref.repo.folder import CARD_FILE, write_figures
from hfpref.repo.hub import hub_errors, is_repo_id
from hfpref.repo.provenance import PROVENANCE_FILE, read_provenance

USAGE_REPO = re.compile(r'load_dataset\("([^"]+)"')  # the repo id the card's usage snippet names


def _download(repo_id: str, folder: Path, revision: str | None) -> None:
    """Copy a Hub dataset's card, ``hfpref.json`` and ``dpo`` shards into ``folder``."""
    from huggingface_hub import snapshot_download

    with hub_errors(repo_id):
        snapshot_download(
            repo_id,
            repo_type="dataset",
            revision=revision,
            local_dir=folder,
            allow_patterns=[CARD_FILE, PROVENANCE_FILE, "dpo/*.parquet"],
        )


def _card_repo(folder: Path) -> str | None:
    """The repo id the folder's card was rendered for (its usage snippet), None for the placeholder."""
    card = folder / CARD_FILE
    found = USAGE_REPO.search(card.read_text(encoding="utf-8")) if card.is_file() else None
    return (
        found.group(1)
        if found and found.group(1) != REPO_PLACEHOLDER and is_repo_id(found.group(1))
        else None
    )


def report(target: str, output: str | None = None, revision: str | None = None) -> list[str]:
    """Report ``target`` (a dataset folder, or a Hub dataset id copied into ``output``, by default
    ``./NAME-report``): draw its figures, rewrite its ``hfpref.json`` and card, and return the lines
    to print, the numbers of each figure as the card writes them."""
    folder = Path(target)
    repo_id: str | None = None
    if not folder.is_dir():
        if not is_repo_id(target):
            raise InputError(f"{target}: no such folder, and not a Hub dataset id (user/name)")
        repo_id = target
        folder = Path(output) if output else Path(f"{target.split('/')[1]}-report")
        _download(target, folder, revision)
    elif output is not None:
        raise InputError("-o/--output is for a Hub dataset id: a folder is reported in place")
    provenance = read_provenance(folder)
    if provenance is None or not provenance.configs:
        raise InputError(f"{folder}: no {PROVENANCE_FILE} with configs; not a dataset folder hfpref wrote")
    written = write_figures(folder, provenance, repo_id=repo_id or _card_repo(folder))
    stats = written.figures or {}
    notes = figure_notes(stats)
    lines = [f"{folder}: {len(notes)} figure(s) in {folder / IMAGES}, linked from {folder / CARD_FILE}"]
    for name, figure in FIGURES.items():
        if name in notes:
            lines.append(f"{figure.title} ({IMAGES}/{figure.file})")
            lines += [f"  {line}" for line in notes[name]]
    lines += [f"not drawn: {FIGURES[name].title}: {why}" for name, why in stats.get("missing", {}).items()]
    return lines
