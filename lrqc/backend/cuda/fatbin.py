"""CUDA fatbins on the load side: what a fatbin holds (fatbin_contents), and TVM's load-time
compile hook answered from the fatbins of loaded artifacts (FatbinHook). An exported CUDA
module carries its source, which TVM compiles when loading it; with the hook, loading an
artifact runs no compiler."""

from __future__ import annotations

import struct
from typing import Any

import tvm.support.nvcc  # noqa: F401 - registers TVM's own hook, which FatbinHook passes on to
import tvm_ffi

from ...errors import LrqcError
from .toolchain import source_hash, use_nvcc_at_load

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
    """TVM's load-time CUDA compile hook, registered once (on the first serve) in place of
    TVM's own: the source of a served fatbin gets that fatbin, any other source (kernels
    compiled in this process) goes to TVM's own hook (nvcc)."""

    def __init__(self):
        self.served: dict[str, bytes] = {}  # source sha256 -> fatbin
        self.previous = None  # TVM's own hook, kept when this one is registered
        self.registered = False
        self.hits = 0  # loads answered from a fatbin (tests check the hook is used)

    def serve(self, binary: bytes, sha256: str) -> None:
        """Answer the source whose sha256 this is with the precompiled fatbin from now on."""
        self.served[sha256] = binary
        if not self.registered:
            self.previous = tvm_ffi.get_global_func(HOOK_NAME, allow_missing=True)
            tvm_ffi.register_global_func(HOOK_NAME, self.compile, override=True)
            self.registered = True

    def compile(self, code: bytes | str, *rest: Any) -> bytes:
        """The hook: a served fatbin, or what TVM's own hook compiles."""
        text = code.decode() if isinstance(code, bytes) else str(code)
        found = self.served.get(source_hash(text))
        if found is not None:
            self.hits += 1
            return found
        if self.previous is None:
            raise LrqcError("no CUDA compiler hook for a module without a fatbin")
        use_nvcc_at_load()  # TVM's hook compiles with NVRTC unless told nvcc
        return self.previous(code, *rest)


HOOK = FatbinHook()  # the process's hook


def serve_fatbin(binary: bytes, sha256: str) -> None:
    """Make loading the module built from the source with this sha256 use the precompiled
    fatbin (call before the module is loaded)."""
    HOOK.serve(binary, sha256)
