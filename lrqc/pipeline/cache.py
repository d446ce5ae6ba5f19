"""The compiled-kernel cache: lrqc.compile writes each kernel it compiles for this machine as an
artifact (export.write_artifact: the library and its manifest) under <cache>/kernels/<key>/,
and a later compile of the same key, in any process, loads it from there instead of
compiling (runtime.artifact.load_kernel, from a private copy of the library, on the threads
the caller asked for). A kernel is then compiled once per machine, not once per process.

The key is a hash of everything the machine code depends on: lrqc's own source (every module
of the package and every schedule rule file, hashed once per process), the lrqc, TVM and
LLVM versions, the resolved target with the CPU features it enables, the canonical scheme
text, M (rows or range), N and K, and, for tuned compiles, the state of the tuning database
(records_state). An entry whose library or manifest fails the artifact checks is compiled
again and replaced, never used. Entries are written to a temporary folder and renamed into
place, so concurrent compiles of one key (threads or processes) each get a whole entry; the
least recently used entries past MAX_ENTRIES are removed.

Not cached: compiles that print or dump stage texts (emit, dump_dir), replay given traces,
or target a GPU or another machine; and every compile where LRQC_KERNEL_CACHE is 0, off, no
or false, or where no C++ compiler is found to write the library (CXX, else g++)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import threading
import time
from functools import cache
from pathlib import Path
from typing import Any

from .._version import __version__
from ..backend import openmp
from ..backend.compat import versions
from ..backend.target import Target, resolve
from ..errors import LrqcError
from ..files import kernels_dir
from ..frontend.model import Scheme
from ..frontend.unparse import unparse
from ..plan.buckets import m_range
from ..resources import data_dir
from ..runtime.artifact import load_kernel
from ..runtime.protocol import KernelLike
from .compile import check_threads, compile
from .export import write_artifact

ENV = "LRQC_KERNEL_CACHE"
OFF = ("0", "off", "no", "false")
MAX_ENTRIES = 256  # kernels kept (the least recently used go first); a few MB each
STALE_S = 3600.0  # a half-written entry (.new-*) this old was left by a process that died
FORMAT = 1  # of the key: a change here invalidates every entry
_PACKAGE = Path(__file__).resolve().parent.parent
_WRITE = threading.Lock()  # one writer of the folder per process (renames are atomic anyway)


def enabled() -> bool:
    return os.environ.get(ENV, "1").strip().lower() not in OFF


@cache
def source_digest() -> str:
    """sha256 of lrqc's own code that decides a kernel's machine code: every .py file of the
    package and of the schedule rules (by path and content)."""
    h = hashlib.sha256()
    roots = [(_PACKAGE, "lrqc")]
    try:
        roots.append((data_dir("schedules"), "schedules"))
    except FileNotFoundError:  # (a broken install: the rules' import fails later, loudly)
        pass
    for root, name in roots:
        for path in sorted(root.rglob("*.py")):
            h.update(f"{name}/{path.relative_to(root).as_posix()}\0".encode())
            h.update(path.read_bytes())
            h.update(b"\0")
    return h.hexdigest()


def key(scheme: Scheme, M: object, N: int, K: int, target: Target, tuning: str | None) -> str:
    """The entry name of a compile: a hash of what its machine code depends on (module
    docstring); tuning: records_state() for a tuned compile, None for an untuned one."""
    parts = {"format": FORMAT, "source": source_digest(),
             "versions": {"lrqc": __version__, **versions()}, "target": target.as_dict(),
             "features": sorted(target.features), "scheme": unparse(scheme), "M": _rows(M),
             "N": int(N), "K": int(K), "tuning": tuning}
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _rows(M: object) -> str:
    """M as the key holds it: a row count, or lo..hi however the range was given."""
    if isinstance(M, int):
        return str(M)
    lo, hi = m_range(M)
    return f"{lo}..{hi}"


def _entry(scheme: Scheme, M: object, N: object, K: object, target: Target,
           tuning: str | None) -> Path | None:
    """The cache entry of a compile, or None where its sizes are not valid (compile() then
    says what is wrong, as without the cache)."""
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (N, K)):
        return None
    try:
        return kernels_dir() / key(scheme, M, N, K, target, tuning)
    except LrqcError:
        return None


def _can_write(target: Target, options: dict) -> bool:
    """Whether this compile may use the cache (module docstring: what is not cached)."""
    if not enabled() or target.is_cuda or target.is_cross or target.host_lacks():
        return False
    if options.get("emit") or options.get("on_text") or options.get("dump_dir") is not None \
            or options.get("traces"):
        return False
    return shutil.which(os.environ.get("CXX") or "g++") is not None


def compile_cached(scheme: Scheme, M: Any, N: int, K: int, target: Any = None, *,
                   tuning: str | None = None, threads: str = "auto", **options: Any
                   ) -> KernelLike:
    """compile(scheme, M, N, K, target, threads=threads, **options), from the cache where it
    holds the key, else compiled, written there and loaded from it; tuning: records_state()
    where options' records are the tuning database's (tuned), else None."""
    t = resolve(target)
    check_threads(threads, t)
    entry = _entry(scheme, M, N, K, t, tuning) if _can_write(t, options) else None
    if entry is None:
        return compile(scheme, M, N, K, t, threads=threads, **options)
    if threads == "openmp":
        openmp.launcher()  # the compiler's error first, as compile() gives it
    if (entry / "manifest.json").is_file():
        kernel = _load(entry, threads)
        if kernel is not None:
            return kernel
    elif entry.exists():  # not an entry this cache wrote whole
        shutil.rmtree(entry, ignore_errors=True)
    built = compile(scheme, M, N, K, t, threads="tvm", link=False, **options)
    if not _store(built, scheme, N, K, entry):
        return compile(scheme, M, N, K, t, threads=threads, **options)
    kernel = _load(entry, threads)
    return kernel if kernel is not None else compile(scheme, M, N, K, t, threads=threads,
                                                     **options)


def _load(entry: Path, threads: str) -> KernelLike | None:
    """The kernel of a cache entry, its use recorded (the manifest's time); None, with the
    entry removed, where it fails any check of an artifact."""
    try:
        kernel = load_kernel(entry, threads, private=True)
    except LrqcError:
        shutil.rmtree(entry, ignore_errors=True)
        return None
    try:
        os.utime(entry / "manifest.json")
    except OSError:
        pass
    return kernel


def _store(kernel: KernelLike, scheme: Scheme, N: int, K: int, entry: Path) -> bool:
    """Write kernel into the cache as `entry` (whole or not at all); whether it is there now
    (written by this call or by a concurrent one)."""
    root = entry.parent
    try:
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".new-", dir=root))
    except OSError:  # a cache folder that cannot be written: compile without it
        return False
    try:
        write_artifact(kernel, scheme, N, K, tmp)
        with _WRITE:
            try:
                os.rename(tmp, entry)
            except OSError:  # written meanwhile by another compile of the same key
                pass
    except (LrqcError, OSError):  # the library could not be written (a C++ compiler's failure)
        return False
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    _trim(root)
    return (entry / "manifest.json").is_file()


def _trim(root: Path) -> None:
    """Remove the least recently used entries past MAX_ENTRIES, and half-written ones older
    than STALE_S."""
    entries, now = [], time.time()
    for d in root.iterdir():
        try:
            if d.name.startswith("."):
                if now - d.stat().st_mtime > STALE_S:
                    shutil.rmtree(d, ignore_errors=True)
                continue
            entries.append(((d / "manifest.json").stat().st_mtime_ns, d))
        except OSError:
            continue
    for _, d in sorted(entries)[: max(0, len(entries) - MAX_ENTRIES)]:
        shutil.rmtree(d, ignore_errors=True)
