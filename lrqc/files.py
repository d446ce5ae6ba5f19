"""Reading files a user names (scheme files, manifests, tuning records, arrays): regular files
only, at most a given size, read without following a device or FIFO into a hang or an
out-of-memory kill; every failure an LrqcError that names the file. Also where lrqc's own
cache lives (cache_dir: tuning records, compiled kernels)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from .errors import LrqcError

MiB = 1 << 20


def regular_file(path: str | os.PathLike[str], prefix: str) -> int:
    """The size of `path` (symlinks followed), or LrqcError "<prefix>: <why>" when it is
    missing, a directory, or not a regular file (/dev/zero, a FIFO, a socket)."""
    p = Path(path)
    try:
        st = p.stat()
    except OSError as exc:
        raise LrqcError(f"{prefix}: {exc.strerror or exc}") from None
    if stat.S_ISDIR(st.st_mode):
        raise LrqcError(f"{prefix}: it is a directory")
    if not stat.S_ISREG(st.st_mode):
        raise LrqcError(f"{prefix}: not a regular file (a device, FIFO or socket)")
    return st.st_size


def read_bytes(path: str | os.PathLike[str], limit: int, prefix: str) -> bytes:
    """The bytes of regular file `path`, at most `limit` of them; LrqcError "<prefix>: <why>"
    (prefix e.g. "cannot read scheme file F") otherwise."""
    size = regular_file(path, prefix)
    if size > limit:
        raise LrqcError(f"{prefix}: too large ({size} bytes); at most {limit} are read")
    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except OSError as exc:
        raise LrqcError(f"{prefix}: {exc.strerror or exc}") from None
    if len(data) > limit:  # grew while being read
        raise LrqcError(f"{prefix}: too large (more than {limit} bytes)")
    return data


def cache_dir() -> Path:
    """lrqc's cache folder: LRQC_CACHE_DIR, else $XDG_CACHE_HOME/lrqc, else ~/.cache/lrqc
    (tuning/ holds the tuning records, kernels/ the compiled kernels)."""
    env = os.environ.get("LRQC_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "lrqc"


def kernels_dir() -> Path:
    """Where lrqc.compile keeps the kernels it compiled (lrqc.pipeline.cache)."""
    return cache_dir() / "kernels"


def usable_folder(path: Path, what: str, write: bool = False) -> Path:
    """path, checked before any work (nothing is made): LrqcError "<what> <path> cannot be
    used" where a part of it is a file, or (write) "... cannot be written" where this process
    could not write into it or make it."""
    there = next(p for p in (path, *path.parents) if p.exists() or p.is_symlink()
                 or p == p.parent)
    if not there.is_dir():
        raise LrqcError(f"{what} {path} cannot be used: {there} is not a directory "
                        "(LRQC_CACHE_DIR names the cache's folder)")
    if write and not os.access(there, os.W_OK | os.X_OK):
        raise LrqcError(f"{what} {path} cannot be written: {there} is not writable "
                        "(LRQC_CACHE_DIR names the cache's folder)")
    return path
