"""CUDA fatbins: what a fatbin holds (fatbin_contents), and TVM's CUDA compile hook
(FatbinHook). Built without a GPU, a CUDA module carries its source, which TVM compiles when
loading it: the hook answers from the fatbins of loaded artifacts, so loading an artifact runs
no compiler. On a machine with a GPU TVM compiles the source as it builds the module: the hook
has lrqc's nvcc make the fatbin for every arch the build asked for (build_for)."""

from __future__ import annotations

import struct
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import tvm.support.nvcc  # noqa: F401 - registers TVM's own hook, which FatbinHook passes on to
import tvm_ffi

from ...errors import LrqcError
from ..compat import use_nvcc
from .toolchain import fatbin, source_hash

HOOK_NAME = "tvm_callback_cuda_compile"  # TVM's global function compiling CUDA source
FATBIN_MAGIC = 0xBA55ED50


def fatbin_contents(binary: bytes) -> list[tuple[str, str]]:
    """[(kind, arch)] of the images in a fatbin: ("sass", "sm_90"), ("ptx", "sm_90"), ... (read
    from the container's entry headers: a build-report and test aid, no CUDA tool needed)."""
    magic, _, hsz, size = struct.unpack_from("<IHHQ", binary, 0)
    if magic != FATBIN_MAGIC:
        raise LrqcError("not a CUDA fatbin (bad magic)")
    out, off = [], hsz
    while off < hsz + size:
        kind, _, ehs, esize = struct.unpack_from("<HHIQ", binary, off)
        arch = struct.unpack_from("<I", binary, off + 28)[0]
        out.append(({1: "ptx", 2: "sass"}.get(kind, f"kind{kind}"), f"sm_{arch}"))
        off += ehs + esize
    return out


class FatbinHook:
    """TVM's CUDA compile hook, registered once (on the first serve or build) in place of
    TVM's own: the source of a served fatbin gets that fatbin; a source compiled while this
    thread builds a module (build_for) gets lrqc's fatbin for the build's archs; any other
    source goes to TVM's own hook (nvcc)."""

    def __init__(self):
        self.served: dict[str, bytes] = {}  # source sha256 -> fatbin
        self.previous = None  # TVM's own hook, kept when this one is registered
        self.registered = False
        self.hits = 0  # loads answered from a fatbin (tests check the hook is used)
        self.built = 0  # sources compiled for a build (build_for)
        self._building = threading.local()  # .archs: those of this thread's build
        self._fn: Any = None  # self.compile as the FFI function registered

    def _register(self) -> None:
        """Registered in TVM's place; again where something registered another hook since
        (TVM's own tirx.bench does)."""
        current = tvm_ffi.get_global_func(HOOK_NAME, allow_missing=True)
        if self.registered and current is not None and self._fn.same_as(current):
            return
        if not self.registered:
            self.previous = tvm_ffi.get_global_func(HOOK_NAME, allow_missing=True)
            self._fn = tvm_ffi.convert(self.compile)
        tvm_ffi.register_global_func(HOOK_NAME, self._fn, override=True)
        self.registered = True

    def serve(self, binary: bytes, sha256: str) -> None:
        """Answer the source whose sha256 this is with the precompiled fatbin from now on."""
        self.served[sha256] = binary
        self._register()

    @contextmanager
    def build_for(self, archs: Sequence[str]) -> Iterator[None]:
        """Within: a CUDA source TVM compiles on this thread (as it builds a module on a
        machine with a GPU) is compiled by nvcc into a fatbin for these archs, the one the
        build's artifact will carry (never NVRTC, nor only the arch TVM's target names)."""
        self._register()
        before = getattr(self._building, "archs", None)
        self._building.archs = list(archs)
        try:
            yield
        finally:
            self._building.archs = before

    def compile(self, code: bytes | str, *rest: Any) -> bytes:
        """The hook: a build's fatbin, a served fatbin, or what TVM's own hook compiles. A
        build comes first: the same source serves every arch list, and a loaded artifact's
        fatbin may hold other archs than the build asks for."""
        text = code.decode() if isinstance(code, bytes) else str(code)
        archs = getattr(self._building, "archs", None)
        if archs:
            self.built += 1
            return fatbin(text, archs)
        found = self.served.get(source_hash(text))
        if found is not None:
            self.hits += 1
            return found
        if self.previous is None:
            raise LrqcError("no CUDA compiler hook for a module without a fatbin")
        use_nvcc()  # TVM's hook compiles with NVRTC unless told nvcc (also for a user's own
        #   CUDA modules compiled in this process once lrqc's hook is registered)
        return self.previous(code, *rest)


HOOK = FatbinHook()  # the process's hook


def serve_fatbin(binary: bytes, sha256: str) -> None:
    """Make loading the module built from the source with this sha256 use the precompiled
    fatbin (call before the module is loaded)."""
    HOOK.serve(binary, sha256)
