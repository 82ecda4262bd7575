"""A loopback Hugging Face Hub for tests: enough of the API for ``HfApi`` uploads and ``load_dataset``.

Start it with ``with HubEmulator(storage_dir) as hub:``; point clients at it with ``hub.env()``
(``HF_ENDPOINT`` and friends; they must be set before huggingface_hub/datasets are imported, so run
clients in a subprocess). ``hub.add_folder("user/repo", folder)`` seeds a dataset repo and
``hub.read("user/repo", "README.md")`` reads one back. Any non-empty token is accepted for user
``user`` unless ``tokens`` restricts them; writes outside the ``user`` namespace get 403.
Endpoints: the ones listed in FACTS.md, with regular and LFS (basic transfer) uploads, branches,
tree listing and paths-info. Requests it does not know get 404 and are recorded
in ``hub.unhandled``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

LFS_SUFFIXES = (".parquet", ".arrow", ".bin", ".safetensors")
GITATTRIBUTES = (
    b"*.parquet filter=lfs diff=lfs merge=lfs -text\n*.arrow filter=lfs diff=lfs merge=lfs -text\n"
)
_ID = r"(?P<repo>[^/]+/[^/]+)"
_KIND = r"(?P<kind>models|datasets|spaces)"


@dataclass
class _File:
    sha256: str
    size: int
    lfs: bool

    @property
    def oid(self) -> str:  # git blob id of the content (or of the LFS pointer), as the Hub reports it
        return hashlib.sha1(f"blob {self.size}\0{self.sha256}".encode()).hexdigest()


@dataclass
class _Commit:
    sha: str
    title: str
    files: dict[str, _File]
    date: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()))


@dataclass
class _Repo:
    private: bool
    branches: dict[str, str] = field(default_factory=dict)
    commits: dict[str, _Commit] = field(default_factory=dict)

    def resolve(self, revision: str) -> _Commit | None:
        sha = self.branches.get(revision, revision)
        return self.commits.get(sha)


class ApiError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


class HubEmulator:
    """The Hub state (repos, commits, blobs under ``storage``) and the HTTP server serving it."""

    def __init__(self, storage: Path, *, user: str = "user", tokens: set[str] | None = None) -> None:
        self.storage = Path(storage)
        (self.storage / "blobs").mkdir(parents=True, exist_ok=True)
        self.user, self.tokens = user, tokens
        self.repos: dict[tuple[str, str], _Repo] = {}
        self.unhandled: list[str] = []
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> HubEmulator:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def env(self, token: str = "hf_emulator_token") -> dict[str, str]:
        """Environment for a client process talking to this Hub."""
        return {"HF_ENDPOINT": self.url, "HF_TOKEN": token, "HF_HUB_DISABLE_XET": "1", "HF_HUB_OFFLINE": "0"}

    # --- state -------------------------------------------------------------------------------
    def _store(self, data: bytes, path: str) -> _File:
        sha = hashlib.sha256(data).hexdigest()
        (self.storage / "blobs" / sha).write_bytes(data)
        return _File(sha, len(data), path.endswith(LFS_SUFFIXES))

    def create(self, kind: str, repo_id: str, private: bool = False) -> bool:
        with self.lock:
            if (kind, repo_id) in self.repos:
                return False
            repo = self.repos[(kind, repo_id)] = _Repo(private)
            self._commit(
                repo, "main", "initial commit", {".gitattributes": self._store(GITATTRIBUTES, "")}, []
            )
            return True

    def _commit(self, repo: _Repo, branch: str, title: str, add: dict[str, _File], delete: list[str]) -> str:
        parent = repo.resolve(branch)
        files = dict(parent.files) if parent else {}
        for prefix in delete:
            files = {
                p: f for p, f in files.items() if p != prefix and not p.startswith(prefix.rstrip("/") + "/")
            }
        files.update(add)
        seed = (
            (parent.sha if parent else "")
            + title
            + json.dumps(sorted((p, f.sha256) for p, f in files.items()))
        )
        sha = hashlib.sha1(f"{seed}{time.time_ns()}".encode()).hexdigest()
        repo.commits[sha] = _Commit(sha, title, files)
        repo.branches[branch] = sha
        return sha

    def add_folder(self, repo_id: str, folder: Path, *, kind: str = "datasets", branch: str = "main") -> str:
        """Create ``repo_id`` if needed and commit every file of ``folder`` to ``branch``; returns the sha."""
        self.create(kind, repo_id)
        folder = Path(folder)
        add = {
            p.relative_to(folder).as_posix(): self._store(p.read_bytes(), p.name)
            for p in sorted(folder.rglob("*"))
            if p.is_file()
        }
        with self.lock:
            return self._commit(self.repos[(kind, repo_id)], branch, "Add folder", add, [])

    def read(self, repo_id: str, path: str, *, kind: str = "datasets", revision: str = "main") -> bytes:
        commit = self.repos[(kind, repo_id)].resolve(revision)
        assert commit is not None, f"no revision {revision}"
        return (self.storage / "blobs" / commit.files[path].sha256).read_bytes()

    def write(
        self, repo_id: str, path: str, data: bytes, *, kind: str = "datasets", branch: str = "main"
    ) -> str:
        """Commit one file, as a user editing the repo on the website would."""
        with self.lock:
            return self._commit(
                self.repos[(kind, repo_id)], branch, f"Update {path}", {path: self._store(data, path)}, []
            )

    def repo(self, kind: str, repo_id: str, *, write: bool, token: str | None) -> _Repo:
        repo = self.repos.get((kind, repo_id))
        if write and repo_id.split("/")[0] != self.user:
            raise ApiError(403, f"You don't have the rights to write to {repo_id}")
        if repo is None or (repo.private and not token):
            raise ApiError(404, "Repository not found", "RepoNotFound")
        return repo

    def commit_of(self, repo: _Repo, revision: str) -> _Commit:
        commit = repo.resolve(unquote(revision))
        if commit is None:
            raise ApiError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return commit

    def entries(self, commit: _Commit, prefix: str, *, recursive: bool, expand: bool) -> list[dict[str, Any]]:
        prefix = prefix.strip("/")
        start = f"{prefix}/" if prefix else ""
        found: dict[str, dict[str, Any]] = {}
        for path, file in sorted(commit.files.items()):
            if not path.startswith(start):
                continue
            parts = path[len(start) :].split("/")
            for depth in range(1, len(parts)):  # the folders on the way
                directory = start + "/".join(parts[:depth])
                if recursive or depth == 1:
                    found.setdefault(
                        directory, {"type": "directory", "oid": "0" * 40, "size": 0, "path": directory}
                    )
            if recursive or len(parts) == 1:
                found[path] = self.file_entry(path, file)
        if not found and prefix and prefix not in commit.files:
            raise ApiError(404, f"{prefix} does not exist", "EntryNotFound")
        if expand:
            for entry in found.values():
                entry["lastCommit"] = {"id": commit.sha, "title": commit.title, "date": commit.date}
        return list(found.values())

    @staticmethod
    def file_entry(path: str, file: _File) -> dict[str, Any]:
        entry: dict[str, Any] = {"type": "file", "oid": file.oid, "size": file.size, "path": path}
        if file.lfs:
            entry["lfs"] = {"oid": file.sha256, "size": file.size, "pointerSize": 134}
        return entry


def _handler(hub: HubEmulator) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

        # --- plumbing -----------------------------------------------------------------------
        def _body(self) -> bytes:  # huggingface_hub always sends a Content-Length
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _json(self, value: Any, status: int = 200) -> None:
            self._send(status, json.dumps(value).encode(), {"Content-Type": "application/json"})

        def _token(self) -> str | None:
            auth = self.headers.get("Authorization", "")
            token = auth.removeprefix("Bearer ").strip() or None
            if token and hub.tokens is not None and token not in hub.tokens:
                raise ApiError(401, "Invalid credentials in Authorization header")
            return token

        def _route(self, method: str) -> None:
            path = urlsplit(self.path).path
            try:
                self._body_bytes = self._body() if method in ("POST", "PUT") else b""
                for pattern, verb, fn in ROUTES:
                    if verb == method or (verb == "GET" and method == "HEAD"):
                        match = re.fullmatch(pattern, path)
                        if match:
                            return fn(self, **{k: v for k, v in match.groupdict().items() if v is not None})
                hub.unhandled.append(f"{method} {self.path}")
                raise ApiError(404, f"emulator: no route for {method} {path}")
            except ApiError as exc:
                headers = {"X-Error-Message": exc.message}
                if exc.code:
                    headers["X-Error-Code"] = exc.code
                self._send(exc.status, json.dumps({"error": exc.message}).encode(), headers)

        def do_GET(self) -> None:
            self._route("GET")

        def do_HEAD(self) -> None:
            self._route("HEAD")

        def do_POST(self) -> None:
            self._route("POST")

        def do_PUT(self) -> None:
            self._route("PUT")

        def _query(self) -> dict[str, str]:
            return {k: v[-1] for k, v in parse_qs(urlsplit(self.path).query).items()}

        # --- endpoints ----------------------------------------------------------------------
        def create_repo(self) -> None:
            if not self._token():
                raise ApiError(401, "Invalid credentials in Authorization header")
            body = json.loads(self._body_bytes)
            namespace = body.get("organization") or hub.user
            if namespace != hub.user:
                raise ApiError(403, f"You don't have the rights to create a repo under {namespace}")
            kind = f"{body.get('type') or 'model'}s"
            repo_id = f"{namespace}/{body['name']}"
            private = body.get("visibility") == "private" or bool(body.get("private"))
            prefix = "" if kind == "models" else f"{kind}/"
            answer = {"url": f"{hub.url}/{prefix}{repo_id}", "name": repo_id}
            if hub.create(kind, repo_id, private):
                self._json(answer)
            else:  # the Hub names the existing repo in its 409, and clients read it
                self._json({**answer, "error": "You already created this repo"}, 409)

        def info(self, kind: str, repo: str, rev: str = "main") -> None:
            state = hub.repo(kind, repo, write=False, token=self._token())
            commit = hub.commit_of(state, rev)
            self._json(
                {
                    "id": repo,
                    "author": repo.split("/")[0],
                    "sha": commit.sha,
                    "private": state.private,
                    "gated": False,
                    "disabled": False,
                    "lastModified": commit.date,
                    "tags": [],
                    "downloads": 0,
                    "likes": 0,
                    "siblings": [{"rfilename": p} for p in sorted(commit.files)],
                }
            )

        def branch(self, kind: str, repo: str, branch: str) -> None:
            state = hub.repo(kind, repo, write=True, token=self._token())
            branch = unquote(branch)
            if branch in state.branches:
                raise ApiError(409, f"Branch {branch} already exists")
            start = json.loads(self._body_bytes or b"{}").get("startingPoint") or "main"
            state.branches[branch] = hub.commit_of(state, start).sha
            self._json({})

        def preupload(self, kind: str, repo: str, rev: str) -> None:
            hub.repo(kind, repo, write=True, token=self._token())
            files = json.loads(self._body_bytes)["files"]
            modes = [
                {
                    "path": f["path"],
                    "uploadMode": "lfs" if f["path"].endswith(LFS_SUFFIXES) else "regular",
                    "shouldIgnore": False,
                }
                for f in files
            ]
            self._json({"files": modes})

        def lfs_batch(self, prefix: str, repo: str) -> None:
            kind = prefix.rstrip("/") or "models"
            hub.repo(kind, repo, write=True, token=self._token())
            objects = []
            for obj in json.loads(self._body_bytes)["objects"]:
                item = {"oid": obj["oid"], "size": obj["size"], "authenticated": True}
                if not (hub.storage / "blobs" / obj["oid"]).exists():
                    item["actions"] = {"upload": {"href": f"{hub.url}/lfs-upload/{obj['oid']}"}}
                objects.append(item)
            self._json({"transfer": "basic", "objects": objects})

        def lfs_upload(self, oid: str) -> None:
            if hashlib.sha256(self._body_bytes).hexdigest() != oid:
                raise ApiError(400, "sha256 of the upload does not match its oid")
            (hub.storage / "blobs" / oid).write_bytes(self._body_bytes)
            self._send(200)

        def commit(self, kind: str, repo: str, rev: str) -> None:
            state = hub.repo(kind, repo, write=True, token=self._token())
            rev = unquote(rev)
            if rev not in state.branches:
                raise ApiError(404, f"Invalid rev id: {rev}", "RevisionNotFound")
            title, add, delete = "", {}, []
            for line in self._body_bytes.splitlines():
                item = json.loads(line)
                value = item["value"]
                if item["key"] == "header":
                    title = value["summary"]
                elif item["key"] == "file":
                    add[value["path"]] = hub._store(base64.b64decode(value["content"]), value["path"])
                elif item["key"] == "lfsFile":
                    blob = hub.storage / "blobs" / value["oid"]
                    if not blob.exists():
                        raise ApiError(422, f"LFS object {value['oid']} was not uploaded")
                    add[value["path"]] = _File(value["oid"], blob.stat().st_size, True)
                elif item["key"] in ("deletedFile", "deletedFolder"):
                    delete.append(value["path"])
            with hub.lock:
                sha = hub._commit(state, rev, title, add, delete)
            prefix = "" if kind == "models" else f"{kind}/"
            self._json(
                {
                    "commitUrl": f"{hub.url}/{prefix}{repo}/commit/{sha}",
                    "commitOid": sha,
                    "pullRequestUrl": None,
                }
            )

        def tree(self, kind: str, repo: str, rev: str, path: str = "") -> None:
            commit = hub.commit_of(hub.repo(kind, repo, write=False, token=self._token()), rev)
            query = self._query()
            recursive = query.get("recursive", "").lower() in ("1", "true")
            expand = query.get("expand", "").lower() in ("1", "true")
            self._json(hub.entries(commit, unquote(path), recursive=recursive, expand=expand))

        def paths_info(self, kind: str, repo: str, rev: str) -> None:
            commit = hub.commit_of(hub.repo(kind, repo, write=False, token=self._token()), rev)
            form = parse_qs(self._body_bytes.decode())
            found = []
            for path in form.get("paths", []):
                if path in commit.files:
                    found.append(hub.file_entry(path, commit.files[path]))
                elif any(p.startswith(path.rstrip("/") + "/") for p in commit.files):
                    found.append({"type": "directory", "oid": "0" * 40, "size": 0, "path": path})
            self._json(found)

        def resolve(self, prefix: str, repo: str, rev: str, path: str) -> None:
            kind = prefix.rstrip("/") or "models"
            commit = hub.commit_of(hub.repo(kind, repo, write=False, token=self._token()), rev)
            file = commit.files.get(unquote(path))
            if file is None:
                raise ApiError(404, f"Entry not found: {path}", "EntryNotFound")
            data = (hub.storage / "blobs" / file.sha256).read_bytes()
            headers = {"X-Repo-Commit": commit.sha, "ETag": f'"{file.oid}"'}
            if file.lfs:
                headers.update({"X-Linked-Etag": f'"{file.sha256}"', "X-Linked-Size": str(file.size)})
            self._send(200, data, headers)

        def validate_yaml(self) -> None:
            self._json({"errors": [], "warnings": []})

    ROUTES = [
        (r"/api/repos/create", "POST", Handler.create_repo),
        (r"/api/validate-yaml", "POST", Handler.validate_yaml),
        (rf"/api/{_KIND}/{_ID}", "GET", Handler.info),
        (rf"/api/{_KIND}/{_ID}/revision/(?P<rev>.+)", "GET", Handler.info),
        (rf"/api/{_KIND}/{_ID}/branch/(?P<branch>[^/]+)", "POST", Handler.branch),
        (rf"/api/{_KIND}/{_ID}/preupload/(?P<rev>[^/]+)", "POST", Handler.preupload),
        (rf"/api/{_KIND}/{_ID}/commit/(?P<rev>[^/]+)", "POST", Handler.commit),
        (rf"/api/{_KIND}/{_ID}/tree/(?P<rev>[^/]+)(?:/(?P<path>.+))?", "GET", Handler.tree),
        (rf"/api/{_KIND}/{_ID}/paths-info/(?P<rev>[^/]+)", "POST", Handler.paths_info),
        (
            r"/(?P<prefix>datasets/|spaces/|)(?P<repo>[^/]+/[^/]+)\.git/info/lfs/objects/batch",
            "POST",
            Handler.lfs_batch,
        ),
        (r"/lfs-upload/(?P<oid>[0-9a-f]{64})", "PUT", Handler.lfs_upload),
        (
            r"/(?P<prefix>datasets/|spaces/|)(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)",
            "GET",
            Handler.resolve,
        ),
    ]
    return Handler
