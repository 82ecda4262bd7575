"""Push a dataset folder to a Hub dataset repo, merging the card with the one already there.

Auth is huggingface_hub's own (``HF_TOKEN`` or ``hf auth login``); the token is only handed to
``HfApi`` and never written. Every Hub failure becomes a one-line :class:`HubError`.

Large folders need no ``upload_large_folder``: with ``hf_xet`` installed (the default),
``upload_folder`` streams files through Xet, commits in batches below the Hub's limits and resumes
an interrupted upload when run again. Without Xet it falls back to one LFS commit.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from hfpref.errors import HubError, InputError, RepoIdError, register_secret
from hfpref.repo.card import REPO_PLACEHOLDER, license_text, merge_card
from hfpref.repo.figures import figure_files
from hfpref.repo.folder import CARD_FILE, folder_configs
from hfpref.repo.provenance import read_provenance

if TYPE_CHECKING:
    from huggingface_hub import DatasetCard, HfApi

LOGIN_HINT = "run `hf auth login` or set HF_TOKEN to a token with write access"


def is_repo_id(text: str) -> bool:
    """Whether ``text`` is a ``NAMESPACE/NAME`` repo id the Hub accepts (huggingface_hub's own rules)."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(text)
    except HFValidationError:
        return False
    return text.count("/") == 1


def check_repo_id(repo_id: str) -> str:
    """``repo_id`` when it is ``NAMESPACE/NAME``, else a :class:`RepoIdError` (a usage error) saying so."""
    if not is_repo_id(repo_id):
        raise RepoIdError(f"invalid repo id {repo_id!r}: expected NAMESPACE/NAME, e.g. alice/my-prefs")
    return repo_id


@contextmanager
def hub_errors(repo_id: str) -> Iterator[None]:
    """Turn huggingface_hub's errors for ``repo_id`` into one-line :class:`HubError` (the token redacted)."""
    import httpx2
    from huggingface_hub import get_token
    from huggingface_hub.errors import (
        HfHubHTTPError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    register_secret(get_token())  # the ambient token; push() also registers the one it is given
    try:
        yield
    except RevisionNotFoundError:
        raise HubError(f"{repo_id}: revision not found") from None
    except RepositoryNotFoundError:
        raise HubError(
            f"{repo_id}: repository not found, or the token cannot see it ({LOGIN_HINT})"
        ) from None
    except HfHubHTTPError as exc:
        status = exc.response.status_code
        detail = exc.server_message or str(exc).strip().splitlines()[0]
        if status == 401:
            raise HubError(f"{repo_id}: the Hub rejected the token (401); {LOGIN_HINT}") from None
        if status == 403:
            raise HubError(f"{repo_id}: no write access (403: {detail}); {LOGIN_HINT}") from None
        if status == 404:
            raise HubError(f"{repo_id}: not found (404: {detail})") from None
        raise HubError(f"{repo_id}: the Hub answered {status}: {detail}") from None
    except OfflineModeIsEnabled:
        raise HubError("HF_HUB_OFFLINE is set: unset it to push") from None
    except httpx2.TransportError as exc:
        raise HubError(f"cannot reach the Hub ({type(exc).__name__}: {exc})") from None


def _remote_card(api: HfApi, repo_id: str, revision: str | None) -> DatasetCard | None:
    from huggingface_hub import DatasetCard
    from huggingface_hub.errors import EntryNotFoundError

    try:
        path = api.hf_hub_download(repo_id, CARD_FILE, repo_type="dataset", revision=revision)
    except EntryNotFoundError:
        return None
    return DatasetCard.load(path)


def push(
    folder: str | Path,
    repo_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    token: str | None = None,
) -> str:
    """Upload a dataset folder to the Hub dataset repo ``repo_id`` and return the repo's URL.

    Creates the repo (``private`` applies only then) and the branch ``revision`` when missing. When the
    repo already has a card, YAML keys someone added there are kept and ours (configs, tags, license …)
    updated (:func:`hfpref.repo.card.merge_card`). Shards of the pushed configs and figures (``images/``) that
    the folder no longer has are deleted. The data goes first and the card second, so the card never names missing files.
    """
    from huggingface_hub import DatasetCard, HfApi, get_token

    check_repo_id(repo_id)
    folder = Path(folder)
    configs = folder_configs(folder)  # raises InputError for a folder without a card
    missing = [f"{c}/{s}" for c, splits in configs.items() for s, files in splits.items() if not files]
    if missing:
        raise InputError(f"{folder}: the card names configs/splits with no files: {missing}")
    token = token or get_token()
    if not token:
        raise HubError(f"not logged in to the Hugging Face Hub: {LOGIN_HINT}")
    register_secret(token)
    provenance = read_provenance(folder)
    ours = DatasetCard((folder / CARD_FILE).read_text(encoding="utf-8"))
    ours.text = ours.text.replace(REPO_PLACEHOLDER, repo_id)
    api = HfApi(token=token)
    with hub_errors(repo_id):
        url = api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        if revision and revision != "main":
            api.create_branch(repo_id, branch=revision, repo_type="dataset", exist_ok=True)
        remote = _remote_card(api, repo_id, revision)
        if remote is not None:
            # A license chosen on the Hub survives a push that names none; its paragraph follows.
            keep = provenance is not None and provenance.license is None and bool(remote.data.license)
            ours = merge_card(remote, ours, keep_remote_license=keep)
            if keep and provenance is not None:
                kept = license_text(provenance, ours.data.license)
                ours.text = ours.text.replace(license_text(provenance, None), kept)
        api.upload_folder(
            repo_id=repo_id,
            folder_path=folder,
            repo_type="dataset",
            revision=revision,
            ignore_patterns=[CARD_FILE],
            delete_patterns=[*(f"{name}/*.parquet" for name in configs), *figure_files()],
            commit_message="Upload preference data with hfpref",
        )
        api.upload_file(
            path_or_fileobj=str(ours).encode(),
            path_in_repo=CARD_FILE,
            repo_id=repo_id,
            repo_type="dataset",
            revision=revision,
            commit_message="Update dataset card",
        )
    return str(url) + (f"/tree/{revision}" if revision else "")
