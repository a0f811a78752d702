"""The huggingface_hub calls a download makes, with their errors mapped to ours.

huggingface_hub is imported inside the methods (never by `--help` or `onnx list`). We use its
endpoint and token handling (`HF_ENDPOINT`, `HF_TOKEN`), `model_info` (revision -> commit),
`list_repo_tree` (files with LFS SHA-256 and sizes), `get_hf_file_metadata` (the per-file HEAD:
ETag / X-Linked-Etag / X-Linked-Size / X-Repo-Commit and the download location), its configured
HTTP session and `hf_raise_for_status`. Only the byte loop is ours, so that a transfer can
continue a file left by an earlier run with an HTTP Range request.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from agentic_onnx.core.models.catalog import HubModel
from agentic_onnx.core.errors import DownloadError, ModelNotFoundError, VerificationError
from agentic_onnx.core.models.store import partial_dir, safe_join

MAX_FAILURES_WITHOUT_PROGRESS = 3
TRANSIENT_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
SKIPPED_FILES = {".gitattributes"}


@dataclass(frozen=True)
class RemoteFile:
    path_in_repo: str
    relative_path: str  # inside the model folder (the subfolder prefix removed)
    size: int
    lfs_sha256: str | None  # the LFS oid: the SHA-256 of the content
    blob_id: str  # the git object id (SHA-1 of "blob <size>\0<content>")


class DownloadListener:
    """What a download reports as it goes; the CLI renders it. Every method is optional."""

    def waiting_for_lock(self, model_id: str) -> None: ...
    def plan(self, files: list[RemoteFile], total_bytes: int, done_bytes: int) -> None: ...
    def file_started(self, file: RemoteFile, resume_from: int) -> None: ...
    def advance(self, nbytes: int) -> None: ...  # negative when a server ignored our Range
    def retrying(self, file: RemoteFile, error: str) -> None: ...
    def verifying(self, file: RemoteFile) -> None: ...


class HubClient:
    """The huggingface_hub calls we make, with their errors mapped to ours (imported lazily)."""

    def __init__(self, source: HubModel) -> None:
        from huggingface_hub import HfApi, constants

        self.source = source
        # Read at call time (huggingface_hub reads HF_ENDPOINT once, at import).
        self.endpoint = (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")
        self.api = HfApi(endpoint=self.endpoint)

    def resolve_commit(self, revision: str) -> str:
        with self._errors(revision):
            info = self.api.model_info(self.source.repo, revision=revision)
        if not info.sha:
            raise DownloadError(f"The hub did not say which commit {revision!r} of "
                                f"{self.source.repo} is.", "Try again, or pass --revision COMMIT.")
        return info.sha

    def list_files(self, commit: str) -> list[RemoteFile]:
        from huggingface_hub.hf_api import RepoFile

        prefix = f"{self.source.subfolder}/" if self.source.subfolder else ""
        with self._errors(commit):
            entries = list(self.api.list_repo_tree(self.source.repo, path_in_repo=self.source.subfolder
                                                   or None, recursive=True, revision=commit))
        files = []
        for entry in entries:
            if not isinstance(entry, RepoFile) or not entry.path.startswith(prefix):
                continue
            relative = entry.path[len(prefix):]
            if relative in SKIPPED_FILES or (self.source.files and relative not in self.source.files):
                continue  # `files`: an embedding repo holds several exports; take only ours
            safe_join(partial_dir(self.source.id), relative)  # refuses `..`, absolute paths
            lfs = entry.lfs.sha256.lower() if entry.lfs else None
            files.append(RemoteFile(entry.path, relative, int(entry.size), lfs, entry.blob_id))
        return sorted(files, key=lambda f: f.size)  # small files first: configs fail fast

    def file_location(self, remote: RemoteFile, commit: str) -> str:
        """HEAD the file: where to GET it from, and a cross-check of size and hash."""
        from huggingface_hub import get_hf_file_metadata, hf_hub_url

        url = hf_hub_url(self.source.repo, remote.path_in_repo, revision=commit,
                         endpoint=self.endpoint)
        with self._errors(commit):
            meta = get_hf_file_metadata(url, endpoint=self.endpoint)
        if meta.size is not None and meta.size != remote.size:
            raise DownloadError(f"The hub disagrees with itself about {remote.path_in_repo}: "
                                f"{meta.size} bytes vs {remote.size} in the listing.", "Try again later.")
        etag = (meta.etag or "").lower()
        if remote.lfs_sha256 and len(etag) == 64 and etag != remote.lfs_sha256:
            raise DownloadError(f"The hub disagrees with itself about {remote.path_in_repo}'s SHA-256.",
                                "Try again later.")
        return meta.location or url

    def transfer(self, remote: RemoteFile, commit: str, target: Path,
                 listener: DownloadListener) -> None:
        """Fetch the rest of `remote` into `target`, resuming with Range; retries a cut
        connection or a transient hub error (5xx, 429) as long as each attempt makes progress.
        Each attempt HEADs the file again, because a CDN location is a signed URL that expires;
        a failing HEAD is retried like the GET it precedes."""
        failures = 0
        while (have := _size(target)) < remote.size:
            try:
                url = self.file_location(remote, commit)
                with self._errors(remote.path_in_repo):
                    self._stream(url, target, have, remote, listener)
            except DownloadError as error:
                if not _transient(error.__cause__):
                    raise
                failures = 0 if _size(target) > have else failures + 1
                if failures >= MAX_FAILURES_WITHOUT_PROGRESS:
                    raise
                listener.retrying(remote, error.message)
                time.sleep(0.5 * 2 ** failures)

    def _stream(self, url: str, target: Path, have: int, remote: RemoteFile,
                listener: DownloadListener) -> None:
        from huggingface_hub import constants
        from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

        headers = build_hf_headers()
        headers["Accept-Encoding"] = "identity"  # sizes and Range offsets must be raw bytes
        if urlparse(url).netloc != urlparse(self.endpoint).netloc:
            headers.pop("authorization", None)  # never send the token to a CDN
        if have:
            headers["Range"] = f"bytes={have}-"
        with get_session().stream("GET", url, headers=headers, follow_redirects=True,
                                  timeout=constants.HF_HUB_DOWNLOAD_TIMEOUT) as response:
            hf_raise_for_status(response)
            if have and response.status_code != 206:  # the server ignored Range: start over
                listener.advance(-have)
                have = 0
            with target.open("ab" if have else "wb") as out:
                for chunk in response.iter_bytes():
                    out.write(chunk)
                    have += len(chunk)
                    listener.advance(len(chunk))
                    if have > remote.size:
                        raise VerificationError(f"The hub sent more than {remote.size} bytes for "
                                                f"{remote.path_in_repo}.", "Run the command again.")
        if have < remote.size:
            raise ShortRead(f"connection closed after {have} of {remote.size} bytes")

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        """Map huggingface_hub and transport errors to our one-line errors."""
        import httpx2
        from huggingface_hub.errors import (
            GatedRepoError,
            HfHubHTTPError,
            OfflineModeIsEnabled,
            RemoteEntryNotFoundError,
            RepositoryNotFoundError,
            RevisionNotFoundError,
        )

        repo, rerun = self.source.repo, "Run the same command again: it resumes."
        try:
            yield
        except GatedRepoError as error:
            raise DownloadError(f"{repo} is gated: the hub refused access.",
                                "Accept its terms on the model page and set HF_TOKEN.") from error
        except RepositoryNotFoundError as error:
            raise ModelNotFoundError(f"Repo {repo!r} was not found on {self.endpoint}.",
                                     "Check the id; for a private repo set HF_TOKEN.") from error
        except RevisionNotFoundError as error:
            raise ModelNotFoundError(f"Revision {what!r} was not found in {repo}.",
                                     "Check --revision.") from error
        except RemoteEntryNotFoundError as error:
            raise ModelNotFoundError(f"{repo} has no {self.source.subfolder or what!r} at {what}.",
                                     "Check the subfolder (see docs/catalog.md).") from error
        except OfflineModeIsEnabled as error:
            raise DownloadError("HF_HUB_OFFLINE is set, so nothing can be downloaded.",
                                "Unset HF_HUB_OFFLINE to download.") from error
        except HfHubHTTPError as error:
            status = error.response.status_code if error.response is not None else "an error"
            raise DownloadError(f"The hub answered {status} for {what}.", rerun) from error
        except (httpx2.ConnectError, httpx2.ConnectTimeout) as error:
            # Nothing was ever connected (DNS failure, refused, no route): not a lost connection.
            raise DownloadError(
                f"Cannot reach the model hub at {self.endpoint} ({_reason(error)}).",
                "Check the network and proxy settings (HTTPS_PROXY), and HF_ENDPOINT if you use a "
                "mirror; installed models keep working offline (HF_HUB_OFFLINE=1).") from error
        except (httpx2.TransportError, ShortRead) as error:
            raise DownloadError(f"Lost the connection to {self.endpoint} ({error}).", rerun) from error


def _reason(error: BaseException) -> str:
    """The innermost cause's words (`Name or service not known`, `Connection refused`)."""
    while error.__cause__ is not None or error.__context__ is not None:
        error = error.__cause__ or error.__context__  # type: ignore[assignment]
    text = str(error).strip()
    match = re.search(r"\[Errno -?\d+\] (.+)", text)
    return (match.group(1) if match else text or type(error).__name__)[:120]


class ShortRead(Exception):
    """The body ended before the expected size without a transport error."""


def _transient(cause: BaseException | None) -> bool:
    """A cut connection, a short body, or a hub status that may clear up on its own."""
    import httpx2
    from huggingface_hub.errors import HfHubHTTPError

    if isinstance(cause, (httpx2.TransportError, ShortRead)):
        return True
    response = getattr(cause, "response", None) if isinstance(cause, HfHubHTTPError) else None
    return response is not None and response.status_code in TRANSIENT_STATUSES


def _size(path: Path) -> int:
    return path.stat().st_size if path.is_file() else 0
