"""Reading files a user names (scheme files, manifests, tuning records, arrays): regular files
only, at most a given size, read without following a device or FIFO into a hang or an
out-of-memory kill; every failure an LrqcError that names the file."""

from __future__ import annotations

import stat
from pathlib import Path

from .errors import LrqcError

MiB = 1 << 20


def regular_file(path, what: str) -> int:
    """The size of `path` (symlinks followed), or LrqcError when it is missing, a directory,
    or not a regular file (/dev/zero, a FIFO, a socket)."""
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise LrqcError(f"{p}: no such file ({what})") from None
    except OSError as exc:
        raise LrqcError(f"cannot read {p}: {exc.strerror or exc}") from None
    if stat.S_ISDIR(st.st_mode):
        raise LrqcError(f"{p}: is a directory, not a {what}")
    if not stat.S_ISREG(st.st_mode):
        raise LrqcError(f"{p}: not a regular file (a device, FIFO or socket), not a {what}")
    return st.st_size


def read_bytes(path, limit: int, what: str) -> bytes:
    """The bytes of regular file `path`, at most `limit` of them (LrqcError past it)."""
    size = regular_file(path, what)
    if size > limit:
        raise LrqcError(f"{path}: {size} bytes, more than the {limit} a {what} may have")
    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except OSError as exc:
        raise LrqcError(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(data) > limit:  # grew while being read
        raise LrqcError(f"{path}: more than the {limit} bytes a {what} may have")
    return data
