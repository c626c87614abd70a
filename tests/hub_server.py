"""A small Hugging Face Hub-compatible HTTP server for tests (stdlib only).

The real ``huggingface_hub`` client talks to it through its endpoint constants (see
``/work/shared/HUB_API.md`` for the calls and headers it needs). It keeps model repos in memory as git-like
commits, answers every uploaded file as ``"regular"`` (base64 inside the commit, so neither LFS nor Xet is
ever used) and can inject faults: a status code, or a body cut short, for requests that match a method and
a path fragment.

    server = HubServer().start()          # a thread on 127.0.0.1, port 0
    server.url                            # "http://127.0.0.1:<port>"
    server.add_fault("GET", "/resolve/", "truncate")
    server.stop()

Every response is HTTP/1.1 with a ``Content-Length`` (the client keeps connections alive), and the server
is threaded because ``snapshot_download`` fetches in parallel.
"""
from __future__ import annotations

import base64
import hashlib
import itertools
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, quote, unquote, urlsplit

__all__ = ["HubServer", "git_blob_sha1"]

_REPO = r"(?P<repo>[^/]+/[^/]+)"
_REV = r"(?P<rev>[^/]+)"


def git_blob_sha1(data: bytes) -> str:
    """The id git gives a file's content; the Hub's ETag and preupload ``oid`` for regular files."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Commit:
    oid: str
    files: dict[str, bytes]
    parent: str | None
    title: str


@dataclass
class Repo:
    repo_id: str
    private: bool
    commits: dict[str, Commit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)

    def resolve(self, rev: str) -> Commit | None:
        """A branch name or a full commit id -> the commit, or None."""
        oid = self.branches.get(rev, rev)
        return self.commits.get(oid)


@dataclass
class Fault:
    method: str
    path_contains: str
    action: str  # "truncate", or an HTTP status code as a string ("500")
    times: int | None  # None: every matching request
    hits: int = 0


class HubState:
    """The server's memory: repos, injected faults and a log of (method, path) of every request."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.repos: dict[str, Repo] = {}
        self.faults: list[Fault] = []
        self.requests: list[tuple[str, str]] = []
        self._counter = itertools.count()

    def new_commit(self, repo: Repo, files: dict[str, bytes], parent: str | None, title: str) -> Commit:
        digest = hashlib.sha1(f"{repo.repo_id}|{parent}|{title}|{next(self._counter)}".encode())
        for path in sorted(files):
            digest.update(path.encode() + git_blob_sha1(files[path]).encode())
        commit = Commit(digest.hexdigest(), files, parent, title)
        repo.commits[commit.oid] = commit
        return commit

    def create_repo(self, repo_id: str, private: bool = False) -> Repo:
        # Like the Hub: a new repo starts with one commit holding .gitattributes.
        repo = Repo(repo_id, private)
        first = self.new_commit(repo, {".gitattributes": b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"},
                                None, "initial commit")
        repo.branches["main"] = first.oid
        self.repos[repo_id] = repo
        return repo

    def take_fault(self, method: str, path: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.method == method and fault.path_contains in path and (
                        fault.times is None or fault.hits < fault.times):
                    fault.hits += 1
                    return fault
        return None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "_Server"

    def log_message(self, format: str, *args) -> None:  # keep test output clean
        pass

    # ------------------------------------------------------------ plumbing
    @property
    def state(self) -> HubState:
        return self.server.state

    @property
    def endpoint(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None,
              content_type: str = "application/json", head_only: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if not head_only:
            self.wfile.write(body)

    def _json(self, status: int, obj, headers: dict[str, str] | None = None, head_only: bool = False) -> None:
        self._send(status, json.dumps(obj).encode(), headers, head_only=head_only)

    def _error(self, status: int, code: str | None, message: str, headers: dict[str, str] | None = None,
               head_only: bool = False) -> None:
        headers = dict(headers or {})
        if code:
            headers["X-Error-Code"] = code
        headers["X-Error-Message"] = message
        self._json(status, {"error": message}, headers, head_only=head_only)

    def _repo(self, repo_id: str, head_only: bool = False) -> Repo | None:
        repo = self.state.repos.get(repo_id)
        if repo is None:
            self._error(404, "RepoNotFound", f"Repository {repo_id} not found", head_only=head_only)
        return repo

    def _commit(self, repo: Repo, rev: str, head_only: bool = False) -> Commit | None:
        commit = repo.resolve(unquote(rev))
        if commit is None:
            self._error(404, "RevisionNotFound", f"Invalid rev id: {unquote(rev)}", head_only=head_only)
        return commit

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        path, query = url.path, parse_qs(url.query)
        self.state.requests.append((method, path))
        body = self._body() if method in ("POST", "PUT", "DELETE") else b""
        fault = self.state.take_fault(method, path)
        if fault is not None and fault.action != "truncate":
            self._error(int(fault.action), None, "injected fault", head_only=method == "HEAD")
            return
        for verb, pattern, handler in _ROUTES:
            match = re.fullmatch(pattern, path)
            if verb == method or (verb == "GET" and method == "HEAD" and handler is _Handler.resolve):
                if match:
                    with self.state.lock:
                        handler(self, body=body, query=query, method=method, fault=fault, **match.groupdict())
                    return
        self._error(404, None, f"no route for {method} {path}", head_only=method == "HEAD")

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    # -------------------------------------------------------------- routes
    def whoami(self, **_) -> None:
        self._json(200, {"type": "user", "name": "tester", "orgs": [], "auth": {}})

    def validate_yaml(self, **_) -> None:
        self._json(200, {"errors": [], "warnings": []})

    def create_repo(self, body: bytes, **_) -> None:
        req = json.loads(body or b"{}")
        if req.get("type", "model") != "model":
            self._error(400, None, "this test server holds model repos only")
            return
        repo_id = f"{req.get('organization') or 'tester'}/{req['name']}"
        url = {"url": f"{self.endpoint}/{repo_id}", "name": repo_id, "id": repo_id}
        if repo_id in self.state.repos:
            self._json(409, dict(url, error="You already created this model repo"))  # the client reads "url"
            return
        self.state.create_repo(repo_id, private=req.get("visibility") == "private" or bool(req.get("private")))
        self._json(200, url)

    def delete_repo(self, body: bytes, **_) -> None:
        req = json.loads(body or b"{}")
        repo_id = f"{req.get('organization') or 'tester'}/{req['name']}"
        if self.state.repos.pop(repo_id, None) is None:
            self._error(404, "RepoNotFound", f"Repository {repo_id} not found")
            return
        self._json(200, {})

    def repo_info(self, repo: str, rev: str = "main", **_) -> None:
        r = self._repo(repo)
        commit = r and self._commit(r, rev)
        if commit:
            self._json(200, {"id": repo, "modelId": repo, "sha": commit.oid, "private": r.private,
                             "siblings": [{"rfilename": p} for p in sorted(commit.files)],
                             "tags": [], "downloads": 0, "likes": 0})

    def tree(self, repo: str, rev: str, path: str | None = None, query: dict | None = None, **_) -> None:
        r = self._repo(repo)
        commit = r and self._commit(r, rev)
        if not commit:
            return
        prefix = f"{unquote(path).strip('/')}/" if path else ""
        recursive = (query or {}).get("recursive", ["false"])[0].lower() == "true"
        entries, dirs = [], set()
        for name in sorted(commit.files):
            if not name.startswith(prefix):
                continue
            rest = name[len(prefix):]
            if "/" in rest and not recursive:
                dirs.add(prefix + rest.split("/")[0])
                continue
            data = commit.files[name]
            entries.append({"type": "file", "path": name, "size": len(data), "oid": git_blob_sha1(data)})
        entries += [{"type": "directory", "path": d, "oid": "0" * 40, "size": 0} for d in sorted(dirs)]
        self._json(200, entries)

    def refs(self, repo: str, **_) -> None:
        r = self._repo(repo)
        if r:
            self._json(200, {"branches": [{"name": b, "ref": f"refs/heads/{b}", "targetCommit": oid}
                                          for b, oid in sorted(r.branches.items())], "tags": [], "converts": []})

    def create_branch(self, repo: str, branch: str, body: bytes, **_) -> None:
        r = self._repo(repo)
        if not r:
            return
        branch = unquote(branch)
        if branch in r.branches:
            self._error(409, None, f"Reference {branch} already exists")
            return
        start = json.loads(body or b"{}").get("startingPoint") or "main"
        commit = self._commit(r, start)
        if commit:
            r.branches[branch] = commit.oid
            self._json(200, {})

    def preupload(self, repo: str, rev: str, body: bytes, **_) -> None:
        r = self._repo(repo)
        commit = r and self._commit(r, rev)
        if not commit:
            return
        files = []
        for f in json.loads(body)["files"]:
            old = commit.files.get(f["path"])
            files.append({"path": f["path"], "uploadMode": "regular", "shouldIgnore": False,
                          "oid": None if old is None else git_blob_sha1(old)})
        self._json(200, {"files": files, "commitOid": commit.oid})

    def commit(self, repo: str, rev: str, body: bytes, query: dict | None = None, **_) -> None:
        r = self._repo(repo)
        parent = r and self._commit(r, rev)
        if not parent:
            return
        if (query or {}).get("create_pr", ["0"])[0] not in ("0", "false", "False"):
            self._error(400, None, "this test server does not do pull requests")
            return
        files, title = dict(parent.files), "commit"
        for line in body.splitlines():
            if not line.strip():
                continue
            item = json.loads(line)
            key, value = item["key"], item["value"]
            if key == "header":
                title = value.get("summary") or title
            elif key == "file":
                files[value["path"]] = base64.b64decode(value["content"])
            elif key == "deletedFile":
                files.pop(value["path"], None)
            elif key == "deletedFolder":
                prefix = value["path"].rstrip("/") + "/"
                files = {p: d for p, d in files.items() if not p.startswith(prefix)}
            else:
                self._error(400, None, f"commit operation {key!r} is not supported (files are uploaded regular)")
                return
        new = self.state.new_commit(r, files, parent.oid, title)
        r.branches[unquote(rev) if unquote(rev) in r.branches else "main"] = new.oid
        self._json(200, {"success": True, "commitOid": new.oid,
                         "commitUrl": f"{self.endpoint}/{repo}/commit/{new.oid}"})

    def resolve(self, repo: str, rev: str, path: str, method: str, fault: Fault | None, **_) -> None:
        head = method == "HEAD"
        r = self._repo(repo, head_only=head)
        commit = r and self._commit(r, rev, head_only=head)
        if not commit:
            return
        name = unquote(path)
        if name not in commit.files:
            self._error(404, "EntryNotFound", f"{name} does not exist on {rev}",
                        headers={"X-Repo-Commit": commit.oid}, head_only=head)
            return
        data = commit.files[name]
        headers = {"X-Repo-Commit": commit.oid, "ETag": f'"{git_blob_sha1(data)}"', "Accept-Ranges": "bytes"}
        span = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        if fault is not None and span:
            # A retry that resumes a cut download fails fast: the client does not retry 5xx on GET.
            self._error(500, None, "injected fault (resume refused)")
            return
        status = 200
        if span and not head:
            start = int(span.group(1))
            end = int(span.group(2)) if span.group(2) else len(data) - 1
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
            data, status = data[start:end + 1], 206
        if fault is not None and not head:
            # "truncate": announce the whole body, send half of it, then hang up.
            self.send_response(status)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(data)))
            for key, value in headers.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self._send(status, data, headers, content_type="application/octet-stream", head_only=head)


_ROUTES = [
    ("GET", r"/api/whoami-v2", _Handler.whoami),
    ("POST", r"/api/validate-yaml", _Handler.validate_yaml),
    ("POST", r"/api/repos/create", _Handler.create_repo),
    ("DELETE", r"/api/repos/delete", _Handler.delete_repo),
    ("GET", rf"/api/models/{_REPO}", _Handler.repo_info),
    ("GET", rf"/api/models/{_REPO}/revision/{_REV}", _Handler.repo_info),
    ("GET", rf"/api/models/{_REPO}/tree/{_REV}(?:/(?P<path>.*))?", _Handler.tree),
    ("GET", rf"/api/models/{_REPO}/refs", _Handler.refs),
    ("POST", rf"/api/models/{_REPO}/branch/(?P<branch>[^/]+)", _Handler.create_branch),
    ("POST", rf"/api/models/{_REPO}/preupload/{_REV}", _Handler.preupload),
    ("POST", rf"/api/models/{_REPO}/commit/{_REV}", _Handler.commit),
    ("GET", rf"/{_REPO}/resolve/{_REV}/(?P<path>.+)", _Handler.resolve),
]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: HubState


class HubServer:
    """The test Hub: ``start()`` serves on a free port in a daemon thread; ``stop()`` shuts it down."""

    def __init__(self) -> None:
        self.state = HubState()
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.state = self.state
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "HubServer":
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="test-hub", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def reset(self) -> None:
        """Forget every repo, fault and logged request (between tests)."""
        with self.state.lock:
            self.state.repos.clear()
            self.state.faults.clear()
            self.state.requests.clear()

    def add_fault(self, method: str, path_contains: str, action: str = "500", times: int | None = None) -> Fault:
        """Answer matching requests with ``action`` (a status code, or ``"truncate"`` for a cut body)."""
        fault = Fault(method, quote(path_contains, safe="/"), action, times)
        with self.state.lock:
            self.state.faults.append(fault)
        return fault

    def commits(self, repo_id: str, branch: str = "main") -> list[str]:
        """Commit ids on ``branch``, newest first."""
        repo = self.state.repos[repo_id]
        out, oid = [], repo.branches[branch]
        while oid is not None:
            out.append(oid)
            oid = repo.commits[oid].parent
        return out

    def files(self, repo_id: str, rev: str = "main") -> dict[str, bytes]:
        commit = self.state.repos[repo_id].resolve(rev)
        return dict(commit.files) if commit else {}
