"""A loopback fake of the Hugging Face Hub, speaking the protocol the real `huggingface_hub`
client uses (point it here with HF_ENDPOINT):

    GET  /api/models/{repo}/revision/{rev}            model info (`sha` = the commit)
    GET  /api/models/{repo}/tree/{rev}[/{path}]       tree listing (?recursive=), LFS oid + size
    HEAD /{repo}/resolve/{rev}/{path}                 ETag, X-Linked-Etag, X-Linked-Size, X-Repo-Commit
    GET  /{repo}/resolve/{rev}/{path}                 small files directly; LFS files: 302 to /cdn
    GET  /cdn/{sha256}?path=...                       the LFS blob, with HTTP Range (206)

Errors carry the hub's `X-Error-Code` (RepoNotFound, RevisionNotFound, EntryNotFound), which
huggingface_hub turns into its typed exceptions. Test knobs: `cut_after` (close the connection
once after N bytes of a file), `down_after_cut` (answer 503 after that, like a dropped network),
`corrupt` (flip one byte of a file while advertising the true hash), `throttle` (slow a file
down), `head_failures` (answer the next HEADs of a file with these statuses; 0 drops the
connection without an answer). Every request is recorded in `requests`.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlsplit

import pytest

LFS_SUFFIXES = (".onnx", ".onnx.data", ".model", ".bin")


@dataclass
class HubFile:
    path: str
    data: bytes
    lfs: bool

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def blob_id(self) -> str:
        return hashlib.sha1(b"blob %d\0" % len(self.data) + self.data).hexdigest()  # noqa: S324


@dataclass
class HubRepo:
    repo_id: str
    files: dict[str, HubFile]
    commit: str = ""

    def __post_init__(self) -> None:
        digest = hashlib.sha1(self.repo_id.encode())  # noqa: S324 - a fake commit id
        for path in sorted(self.files):
            digest.update(path.encode() + self.files[path].data)
        self.commit = digest.hexdigest()


@dataclass
class Request:
    method: str
    path: str  # unquoted, without the query
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names


@dataclass
class FakeHub:
    repos: dict[str, HubRepo] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    cut_after: dict[str, int] = field(default_factory=dict)  # path in repo -> bytes before the cut
    down_after_cut: bool = False
    down: bool = False
    corrupt: set[str] = field(default_factory=set)
    throttle: dict[str, float] = field(default_factory=dict)  # path -> seconds per 4 KiB chunk
    head_failures: dict[str, list[int]] = field(default_factory=dict)  # path -> next HEAD statuses
    bytes_sent: dict[str, int] = field(default_factory=dict)
    # path -> an event: after its first chunk, the file's transfer waits until the event is set
    # (a barrier for tests that need a download to be in progress, with no timing window)
    hold: dict[str, threading.Event] = field(default_factory=dict)
    # the back-offs a download in this process asked for between retries (the `hub` fixture
    # records them instead of waiting them out)
    waits: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    # -- content ---------------------------------------------------------------------------

    def add_repo(self, repo_id: str, files: dict[str, bytes]) -> HubRepo:
        repo = HubRepo(repo_id, {p: HubFile(p, d, p.endswith(LFS_SUFFIXES)) for p, d in files.items()})
        self.repos[repo_id] = repo
        return repo

    @staticmethod
    def folder_files(folder: Path, prefix: str) -> dict[str, bytes]:
        return {f"{prefix}/{p.name}" if prefix else p.name: p.read_bytes()
                for p in sorted(folder.iterdir()) if p.is_file()}

    # -- server ----------------------------------------------------------------------------

    def start(self) -> FakeHub:
        hub = self

        class Handler(_Handler):
            fake = hub

        self._server = _QuietServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def record(self, request: Request) -> None:
        with self._lock:
            self.requests.append(request)

    def count_sent(self, path: str, nbytes: int) -> None:
        with self._lock:
            self.bytes_sent[path] = self.bytes_sent.get(path, 0) + nbytes

    def next_head_failure(self, path: str) -> int | None:
        with self._lock:
            pending = self.head_failures.get(path)
            return pending.pop(0) if pending else None

    def file_heads(self, path_in_repo: str) -> list[Request]:
        return [r for r in list(self.requests)
                if r.method == "HEAD" and r.path.split("/resolve/", 1)[-1].split("/", 1)[-1] == path_in_repo]

    def file_gets(self, path_in_repo: str) -> list[Request]:
        """GETs for `path_in_repo`: /resolve for any file, /cdn for LFS files."""
        def is_for(request: Request) -> bool:
            if request.query.get("path") == [path_in_repo]:
                return True
            tail = request.path.split("/resolve/", 1)
            return len(tail) == 2 and tail[1].split("/", 1)[-1] == path_in_repo
        return [r for r in list(self.requests) if r.method == "GET" and is_for(r)]


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a connection we cut on purpose is not worth a traceback


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    fake: FakeHub

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - quiet tests
        pass

    def do_HEAD(self) -> None:  # noqa: N802
        self._dispatch("HEAD")

    def do_GET(self) -> None:  # noqa: N802
        self._dispatch("GET")

    # -- routing ---------------------------------------------------------------------------

    def _dispatch(self, method: str) -> None:
        parts = urlsplit(self.path)
        path, query = unquote(parts.path), parse_qs(parts.query)
        self.fake.record(Request(method, path, query, {k.lower(): v for k, v in self.headers.items()}))
        if self.fake.down:
            return self._error(503, None, "Service unavailable")
        if path.startswith("/api/models/"):
            return self._api(path[len("/api/models/"):], query)
        if path.startswith("/cdn/"):
            return self._cdn(method, query)
        if "/resolve/" in path:
            return self._resolve(method, path.lstrip("/"))
        return self._error(404, None, "Not found")

    def _repo(self, rest: str) -> tuple[HubRepo | None, str]:
        for repo_id, repo in self.fake.repos.items():
            if rest == repo_id or rest.startswith(repo_id + "/"):
                return repo, rest[len(repo_id):].lstrip("/")
        return None, rest

    def _api(self, rest: str, query: dict[str, list[str]]) -> None:
        repo, tail = self._repo(rest)
        if repo is None:
            return self._error(404, "RepoNotFound", "Repository not found")
        kind, _, rev_and_path = tail.partition("/")
        rev, _, sub = rev_and_path.partition("/")
        if rev not in ("main", repo.commit):
            return self._error(404, "RevisionNotFound", "Invalid rev id", repo.commit)
        if kind == "revision":
            siblings = [{"rfilename": p} for p in sorted(repo.files)]
            return self._json({"id": repo.repo_id, "modelId": repo.repo_id, "sha": repo.commit,
                               "private": False, "siblings": siblings})
        if kind == "tree":
            recursive = query.get("recursive", ["false"])[0].lower() in ("true", "1")
            return self._tree(repo, sub.strip("/"), recursive)
        return self._error(404, None, "Not found")

    def _tree(self, repo: HubRepo, sub: str, recursive: bool) -> None:
        prefix = f"{sub}/" if sub else ""
        under = [f for p, f in sorted(repo.files.items()) if p.startswith(prefix)]
        if sub and not under:
            return self._error(404, "EntryNotFound", f"{sub} does not exist", repo.commit)
        entries, folders = [], set()
        for hub_file in under:
            rest = hub_file.path[len(prefix):]
            if "/" in rest and not recursive:
                folders.add(prefix + rest.split("/")[0])
                continue
            for depth in range(1, rest.count("/") + 1):
                folders.add(prefix + "/".join(rest.split("/")[:depth]))
            entry = {"type": "file", "oid": hub_file.blob_id, "size": len(hub_file.data),
                     "path": hub_file.path}
            if hub_file.lfs:
                entry["lfs"] = {"oid": hub_file.sha256, "size": len(hub_file.data), "pointerSize": 134}
            entries.append(entry)
        dirs = [{"type": "directory", "oid": hashlib.sha1(d.encode()).hexdigest(),  # noqa: S324
                 "size": 0, "path": d} for d in sorted(folders)]
        return self._json(dirs + entries)

    def _resolve(self, method: str, rest: str) -> None:
        repo_part, _, tail = rest.partition("/resolve/")
        repo = self.fake.repos.get(repo_part)
        if repo is None:
            return self._error(404, "RepoNotFound", "Repository not found")
        rev, _, file_path = tail.partition("/")
        if rev not in ("main", repo.commit):
            return self._error(404, "RevisionNotFound", "Invalid rev id", repo.commit)
        hub_file = repo.files.get(file_path)
        if hub_file is None:
            return self._error(404, "EntryNotFound", "Entry not found", repo.commit)
        etag = hub_file.sha256 if hub_file.lfs else hub_file.blob_id
        headers = {"X-Repo-Commit": repo.commit, "ETag": f'"{etag}"', "Accept-Ranges": "bytes"}
        if hub_file.lfs:
            headers |= {"X-Linked-Etag": f'"{hub_file.sha256}"', "X-Linked-Size": str(len(hub_file.data))}
        if method == "HEAD" and (failure := self.fake.next_head_failure(file_path)) is not None:
            if failure == 0:  # the connection drops before any answer
                self.close_connection = True
                self.connection.shutdown(2)
                return None
            return self._error(failure, None, "Internal error")
        if method == "HEAD":
            self.send_response(200)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(hub_file.data)))
            self.end_headers()
            return None
        if hub_file.lfs:
            self.send_response(302)
            for name, value in headers.items():
                self.send_header(name, value)
            location = f"/cdn/{hub_file.sha256}?repo={quote(repo.repo_id)}&path={quote(file_path)}"
            self.send_header("Location", location)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        return self._send_bytes(hub_file, headers)

    def _cdn(self, method: str, query: dict[str, list[str]]) -> None:
        repo = self.fake.repos.get(query.get("repo", [""])[0])
        hub_file = repo.files.get(query.get("path", [""])[0]) if repo else None
        if hub_file is None:
            return self._error(404, None, "No such blob")
        return self._send_bytes(hub_file, {"ETag": f'"{hub_file.sha256}"', "Accept-Ranges": "bytes"})

    # -- bodies ----------------------------------------------------------------------------

    def _send_bytes(self, hub_file: HubFile, headers: dict[str, str]) -> None:
        data = bytearray(hub_file.data)
        if hub_file.path in self.fake.corrupt and data:
            data[len(data) // 2] ^= 0xFF
        start = _range_start(self.headers.get("Range"), len(data))
        body = bytes(data[start:])
        self.send_response(206 if start else 200)
        for name, value in headers.items():
            self.send_header(name, value)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        cut = self.fake.cut_after.pop(hub_file.path, None)
        if cut is not None:
            self._write(hub_file.path, body[:cut])
            if self.fake.down_after_cut:
                self.fake.down = True
            self.close_connection = True
            self.connection.shutdown(2)  # the peer sees the body end early
            return
        self._write(hub_file.path, body)

    def _write(self, path: str, body: bytes) -> None:
        delay = self.fake.throttle.get(path)
        step = 4096 if delay or path in self.fake.hold else len(body) or 1
        for offset in range(0, len(body), step):
            self.wfile.write(body[offset:offset + step])
            self.wfile.flush()
            self.fake.count_sent(path, len(body[offset:offset + step]))
            held = self.fake.hold.get(path)
            if held is not None:
                held.wait(60)
            if delay:
                time.sleep(delay)

    def _json(self, data: object) -> None:
        payload = json.dumps(data).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _error(self, status: int, code: str | None, message: str, commit: str | None = None) -> None:
        payload = json.dumps({"error": message}).encode()
        self.send_response(status)
        if code:
            self.send_header("X-Error-Code", code)
        self.send_header("X-Error-Message", message)
        if commit:
            self.send_header("X-Repo-Commit", commit)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)


def _range_start(header: str | None, size: int) -> int:
    """The start of a `bytes=N-` range (the only form huggingface clients send)."""
    if not header or not header.startswith("bytes="):
        return 0
    start = header[len("bytes="):].split("-")[0]
    return min(int(start), size) if start.isdigit() else 0


def install_fixture(model_id: str, fixture: str) -> Path:
    """What a finished download leaves in the store (files and manifest), without a hub: for
    tests of resolution, list, verify and remove."""
    import shutil

    from agentic_onnx.core.models.store import Manifest, ManifestFile, model_dir, now_iso, write_manifest

    source = Path(__file__).parent / "fixtures" / "models" / fixture
    target = model_dir(model_id)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(source, target)
    files = [ManifestFile(path=p.name, size=p.stat().st_size, lfs=p.name.endswith(LFS_SUFFIXES),
                          sha256=hashlib.sha256(p.read_bytes()).hexdigest())
             for p in sorted(target.iterdir())]
    write_manifest(target, Manifest(
        id=model_id, origin="catalog", repo="test/repo", subfolder="", revision="main",
        commit="0" * 40, execution_provider="cpu", precision="int4", files=files,
        size_bytes=sum(f.size for f in files), downloaded_at=now_iso()))
    return target


# -- a pytest fixture: the fake hub serving a real catalog repo ------------------------------------

PHI3_REPO = "microsoft/Phi-3-mini-4k-instruct-onnx"
CPU_SUBFOLDER = "cpu_and_mobile/cpu-int4-rtn-block-32-acc-level-4"  # phi-3-mini-4k-cpu
SIBLING_SUBFOLDER = "cuda/cuda-int4-rtn-block-32"  # must never be downloaded for the CPU id
DATA_FILE = f"{CPU_SUBFOLDER}/model.onnx.data"
TJS_REPO = "onnx-community/tiny-transformersjs"  # ONNX files, but no genai_config.json


class _NoWaiting:
    """Stands in for the download client's `time` module in this process: a retry's back-off
    is recorded in `FakeHub.waits`, not slept (the count and size of the waits are what a test
    can check; a console script the test starts still waits for real)."""

    def __init__(self, waits: list[float]) -> None:
        self._waits = waits

    def sleep(self, seconds: float) -> None:
        self._waits.append(seconds)

    def __getattr__(self, name: str) -> object:
        return getattr(time, name)


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeHub]:
    """The fake hub with the tiny int4 Phi-3 fixture as phi-3-mini-4k-cpu's subfolder, and
    HF_ENDPOINT pointing at it for the CLI (in process, and the console script's subprocesses)."""
    from agentic_onnx.core.models import hub_client

    models = Path(__file__).parent / "fixtures" / "models"
    fake = FakeHub()
    fake.add_repo(PHI3_REPO, {
        **FakeHub.folder_files(models / "tiny-phi3-int4", CPU_SUBFOLDER),
        **FakeHub.folder_files(models / "tiny-phi3-fp32", SIBLING_SUBFOLDER),
        "README.md": b"# Phi-3 mini 4k (fake)\n", ".gitattributes": b"*.onnx filter=lfs\n",
    })
    fake.add_repo(TJS_REPO, {"onnx/model.onnx": b"\x08\x07" * 64, "onnx/config.json": b"{}",
                             "onnx/tokenizer.json": b"{}"})
    fake.start()
    monkeypatch.setenv("HF_ENDPOINT", fake.url)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)  # huggingface_hub honours it too
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setattr(hub_client, "time", _NoWaiting(fake.waits))
    yield fake
    fake.stop()
