"""OS errors on the files we keep under the agentic-flow home, as one-line LocalFileErrors.

A read-only home (EROFS, EACCES), a full disk (ENOSPC) or a file where a folder should be
(ENOTDIR) are the user's to fix, not bugs: the message names the path and the hint says what to
do. Network errors are OSErrors too (ConnectionError, socket errors); they carry no file name and
are left alone.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator
from contextlib import contextmanager

from agentic_onnx.core.errors import LocalFileError
from agentic_onnx.core.paths import HOME_ENV_VAR, home_dir

_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
_READ_ONLY = {errno.EROFS, errno.EACCES, errno.EPERM}
_IN_THE_WAY = {errno.ENOTDIR, errno.EEXIST, errno.EISDIR}


@contextmanager
def local_files(action: str) -> Iterator[None]:
    """Turn an OSError about a local file into a LocalFileError: "Could not <action>: ..."."""
    try:
        yield
    except OSError as error:
        if error.filename is None and error.errno not in _FULL | _READ_ONLY:
            raise  # not about a file of ours (a socket, a DNS lookup)
        raise local_file_error(error, action) from error


def local_file_error(error: OSError, action: str) -> LocalFileError:
    path = error.filename if error.filename is not None else home_dir()
    reason = error.strerror or type(error).__name__
    return LocalFileError(f"Could not {action}: {path}: {reason}.", _hint(error.errno))


def _hint(code: int | None) -> str:
    home = home_dir()
    if code in _FULL:
        return (f"Free some space on the disk that holds {home} (or set {HOME_ENV_VAR} to a "
                "folder on another disk), then run the command again.")
    if code in _READ_ONLY:
        return f"Make {home} writable, or set {HOME_ENV_VAR} to a writable folder."
    if code in _IN_THE_WAY:
        return (f"Something that is not a folder is in the way: move it aside, or set "
                f"{HOME_ENV_VAR} to another folder.")
    return f"Check {home} (permissions, free space), or set {HOME_ENV_VAR} to another folder."
