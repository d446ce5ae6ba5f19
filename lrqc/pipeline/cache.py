"""The compiled-kernel cache: lrqc.compile writes each kernel it compiles for this machine as an
artifact (export.write_artifact: the library and its manifest) under <cache>/kernels/<key>/,
and a later compile of the same key, in any process, loads it from there instead of
compiling (runtime.artifact.load_kernel, from a private copy of the library, on the threads
the caller asked for). A kernel is then compiled once per machine, not once per process.

The key is a hash of everything the machine code depends on: lrqc's own source (every module
of the package and every schedule rule file, hashed once per process), the lrqc, TVM and
LLVM versions, the resolved target with the CPU features it enables, the canonical scheme
text, M (rows or range), N and K, and, for tuned compiles, the state of the tuning database
(records_state), and the identity of TVM's libraries (a rebuilt TVM of the same version). Each
entry keeps its key's text and the sha256 of its manifest (key.json), compared with the asking
compile's key and the manifest there before anything is loaded; the manifest holds the size
and sha256 of the library (checked by load_kernel). So an entry, or any file of one, copied
from another key is never used for this one: an entry that fails that or any check of an
artifact is compiled again and replaced. Entries are written to a temporary folder and
renamed into place, so concurrent compiles of one key (threads or processes) each get a whole
entry; the least recently used entries past MAX_ENTRIES are removed.

Not cached: compiles that print or dump stage texts (emit, dump_dir), replay given traces,
or target a GPU or another machine; every compile where LRQC_KERNEL_CACHE is 0, off, no,
false, none or disabled, or where no C++ compiler is found to write the library (CXX, else
g++) or the cache folder cannot be written (each compiled once, uncached); and, for the rest
of the process, every compile after a library could not be written or an entry just written
could not be loaded (a C++ compiler that fails, a temporary folder where libraries cannot be
mapped)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

from .._version import __version__
from ..backend import openmp
from ..backend.compat import tvm_builds, versions
from ..backend.target import Target, resolve
from ..errors import LrqcError
from ..files import MiB, kernels_dir, read_bytes
from ..frontend.model import Scheme
from ..frontend.unparse import unparse
from ..plan.buckets import m_range
from ..resources import data_dir
from ..runtime.artifact import load_kernel
from ..runtime.protocol import KernelLike
from .compile import check_threads, compile
from .export import write_artifact

ENV = "LRQC_KERNEL_CACHE"
OFF = ("0", "off", "no", "n", "false", "none", "disable", "disabled")
KEY_FILE = "key.json"
MAX_ENTRIES = 256  # kernels kept (the least recently used go first); a few MB each
STALE_S = 3600.0  # a half-written entry (.new-*) this old was left by a process that died
FORMAT = 1  # of the key: a change here invalidates every entry
_PACKAGE = Path(__file__).resolve().parent.parent
_WRITE = threading.Lock()  # one writer of the folder per process (renames are atomic anyway)
_BROKEN = threading.Event()  # set once this process could not write or load an entry


def enabled() -> bool:
    return os.environ.get(ENV, "1").strip().lower() not in OFF and not _BROKEN.is_set()


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


def key_text(scheme: Scheme, M: object, N: int, K: int, target: Target,
             tuning: str | None) -> str:
    """What a compile's machine code depends on (module docstring), as canonical JSON;
    tuning: records_state() for a tuned compile, None for an untuned one."""
    parts = {"format": FORMAT, "source": source_digest(),
             "versions": {"lrqc": __version__, **versions()}, "tvm_builds": tvm_builds(),
             "target": target.as_dict(), "features": sorted(target.features),
             "scheme": unparse(scheme), "M": _rows(M), "N": int(N), "K": int(K),
             "tuning": tuning}
    return json.dumps(parts, sort_keys=True, separators=(",", ":"))


def key(scheme: Scheme, M: object, N: int, K: int, target: Target, tuning: str | None) -> str:
    """The entry name of a compile: a hash of key_text."""
    return hashlib.sha256(key_text(scheme, M, N, K, target, tuning).encode()).hexdigest()[:32]


def _rows(M: object) -> str:
    """M as the key holds it: a row count, or lo..hi however the range was given."""
    if isinstance(M, int):
        return str(M)
    lo, hi = m_range(M)
    return f"{lo}..{hi}"


def _entry(scheme: Scheme, M: object, N: object, K: object, target: Target,
           tuning: str | None) -> tuple[Path, str] | None:
    """(the cache entry of a compile, its key's text), or None where its sizes are not valid
    (compile() then says what is wrong, as without the cache)."""
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (N, K)):
        return None
    try:
        text = key_text(scheme, M, N, K, target, tuning)
    except LrqcError:
        return None
    return kernels_dir() / hashlib.sha256(text.encode()).hexdigest()[:32], text


def _usable(target: Target, options: dict) -> bool:
    """Whether this compile may use the cache (module docstring: what is not cached)."""
    if not enabled() or target.is_cuda or target.is_cross or target.host_lacks():
        return False
    if options.get("emit") or options.get("on_text") or options.get("dump_dir") is not None \
            or options.get("traces"):
        return False
    return shutil.which(os.environ.get("CXX") or "g++") is not None


def compile_cached(scheme: Scheme, M: Any, N: int, K: int, target: Any = None, *,
                   tuning: Callable[[], str] | None = None, threads: str = "auto",
                   **options: Any) -> KernelLike:
    """compile(scheme, M, N, K, target, threads=threads, **options), from the cache where it
    holds the key, else compiled, written there and loaded from it; tuning: records_state
    where options' records are the tuning database's (tuned), else None."""
    t = resolve(target)
    check_threads(threads, t)
    found = _entry(scheme, M, N, K, t, tuning() if tuning is not None else None) \
        if _usable(t, options) else None
    if found is None:
        return compile(scheme, M, N, K, t, threads=threads, **options)
    entry, text = found
    if threads == "openmp":
        openmp.launcher()  # the compiler's error first, as compile() gives it
    kernel, _ = _load(entry, text, threads)
    if kernel is not None:
        return kernel
    tmp = _new_folder(entry.parent)
    if tmp is None:  # a cache that cannot be written: compiled once, uncached
        return compile(scheme, M, N, K, t, threads=threads, **options)
    try:
        built = compile(scheme, M, N, K, t, threads="tvm", link=False, **options)
        stored = _store(built, scheme, N, K, tmp, entry, text)
    finally:
        _remove(tmp)
    if stored:
        kernel, failed = _load(entry, text, threads)
        if kernel is not None:
            return kernel
        if failed:  # what this process writes it cannot load
            _BROKEN.set()
    if threads == "tvm":  # the kernel built above serves as it is (linked on first use)
        return built
    return compile(scheme, M, N, K, t, threads=threads, **options)


def _load(entry: Path, text: str, threads: str) -> tuple[KernelLike | None, bool]:
    """(the kernel of a cache entry of this key, its use recorded (the manifest's time), or
    None, with whatever stands there removed, where it is missing, of another key, or fails
    any check of an artifact; whether an entry of this key failed to load)."""
    if not (entry / "manifest.json").is_file():
        _remove(entry)
        return None, False
    try:
        mine = json.loads(read_bytes(entry / KEY_FILE, MiB, f"{entry}: its key"))
        manifest = read_bytes(entry / "manifest.json", 16 * MiB, f"{entry}: its manifest")
        if mine != {"key": text, "manifest": hashlib.sha256(manifest).hexdigest()}:
            raise LrqcError(f"{entry}: another compile's entry")
    except Exception:  # another key's entry, or files that are not its own: not used
        _remove(entry)
        return None, False
    try:
        kernel = load_kernel(entry, threads, private=True)
    except Exception:  # damaged in any way: compiled again, never used
        _remove(entry)
        return None, True
    try:
        os.utime(entry / "manifest.json")
    except OSError:
        pass
    return kernel, False


def _new_folder(root: Path) -> Path | None:
    """A fresh temporary folder inside the cache folder, or None where it cannot be made."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=".new-", dir=root))
    except OSError:  # a path through a file, no permission, a full disk
        return None


def _remove(path: Path) -> None:
    """Remove a file, link or folder, whichever stands at path (nothing where none does)."""
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()  # a file, link, FIFO or socket
    except OSError:  # (none there, or removed meanwhile)
        pass


def _store(kernel: KernelLike, scheme: Scheme, N: int, K: int, tmp: Path, entry: Path,
           text: str) -> bool:
    """Write kernel into tmp and rename it to entry (whole or not at all); whether an entry
    stands there now (written by this call or by a concurrent compile of the same key)."""
    try:
        write_artifact(kernel, scheme, N, K, tmp)
        digest = hashlib.sha256((tmp / "manifest.json").read_bytes()).hexdigest()
        (tmp / KEY_FILE).write_text(json.dumps({"key": text, "manifest": digest}))
    except (LrqcError, OSError):  # the library could not be written (a C++ compiler's failure)
        _BROKEN.set()  # (no later compile of this process tries again)
        return False
    with _WRITE:
        if not (entry / "manifest.json").is_file():  # (else written meanwhile: kept)
            _remove(entry)
            try:
                os.rename(tmp, entry)
            except OSError:  # written meanwhile by another process
                pass
    _trim(entry.parent)
    return (entry / "manifest.json").is_file()


def _trim(root: Path) -> None:
    """Remove the least recently used entries past MAX_ENTRIES, and half-written ones older
    than STALE_S."""
    entries, now = [], time.time()
    try:
        items = list(root.iterdir())
    except OSError:
        return
    for d in items:
        try:
            if d.name.startswith("."):
                if now - d.stat().st_mtime > STALE_S:
                    _remove(d)
                continue
            entries.append(((d / "manifest.json").stat().st_mtime_ns, d))
        except OSError:
            continue
    for _, d in sorted(entries)[: max(0, len(entries) - MAX_ENTRIES)]:
        _remove(d)
