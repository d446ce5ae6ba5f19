"""The CUDA toolchain: the source TVM generated for a module, nvcc (PTX for inspection, a
fatbin per build for the archs asked for), and the instruction counts of PTX that build
reports and the compile-only tests read. TVM 0.27's CUDA code generation stores the source and
needs no GPU (on a machine with one it also compiles it, through fatbin.FatbinHook); PTX and
fatbins are made here."""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from ...errors import LrqcError

# instruction patterns in PTX, for build reports and the compile-only tests
PTX_PATTERNS = {
    # A's codes unsigned, B's signed (either operand order): s32.s32 / u32.u32 would be wrong
    "dp4a": r"\bdp4a\.(?:u32\.s32|s32\.u32)",
    "wmma.s8": r"wmma\.mma\.sync[^\n]*\.s8",
    # f16 inputs are implicit in PTX (only the d and c types are written); bf16 are explicit
    "wmma.f16": r"wmma\.mma\.sync[^\n]*\.m16n16k16\.f32\.f32\b",
    "wmma.bf16": r"wmma\.mma\.sync[^\n]*\.f32\.bf16\.bf16\.f32",
    "mma.s8": r"(?m)^\s*mma\.sync[^\n]*\.s8",
    "fma.f32": r"\bfma\.rn\.f32",
}


def cuda_source(module: Any) -> str:
    """The CUDA C++ source TVM generated for a compiled module (its device import)."""
    module = getattr(module, "mod", module)  # an Executable or its runtime module
    for m in getattr(module, "imports", []):
        if m.kind == "cuda":
            return m.inspect_source("cuda") or m.inspect_source("")
    return ""


def nvcc_path() -> str:
    path = shutil.which("nvcc")
    if path is None:
        raise LrqcError("CUDA targets need nvcc (the CUDA toolkit) on PATH to build device code")
    return path


def cuda_version() -> str:
    """nvcc's release, e.g. '13.0'."""
    out = subprocess.run([nvcc_path(), "--version"], capture_output=True, text=True,
                         check=False).stdout
    m = re.search(r"release (\d+\.\d+)", out)
    return m.group(1) if m else "unknown"


def _nvcc(source: str, args: list[str], suffix: str) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp) / "lrqc_kernels.cu", Path(tmp) / f"lrqc_kernels.{suffix}"
        src.write_text(source)
        res = subprocess.run([nvcc_path(), *args, "-O3", "-o", str(out), str(src)],
                             capture_output=True, text=True, check=False)  # reported below
        if res.returncode != 0:
            raise LrqcError("nvcc failed on the generated CUDA source:\n"
                            + "\n".join((res.stderr or res.stdout).strip().splitlines()[-12:]))
        return out.read_bytes()


def ptx(source: str, arch: str) -> str:
    """PTX of the source for one arch (sm_XX)."""
    return _nvcc(source, ["--ptx", f"-arch={arch}"], "ptx").decode()


def fatbin(source: str, archs: Sequence[str]) -> bytes:
    """A fatbin with SASS for every arch and PTX of the highest (forward compatible). The
    last few are kept: a build on a machine with a GPU compiles its source (fatbin.FatbinHook)
    and its artifact's export asks again."""
    return _fatbin(source, tuple(archs))


@lru_cache(maxsize=8)
def _fatbin(source: str, archs: tuple[str, ...]) -> bytes:
    gencode = [f"-gencode=arch=compute_{a[3:]},code=sm_{a[3:]}" for a in archs]
    top = archs[-1][3:]
    gencode.append(f"-gencode=arch=compute_{top},code=compute_{top}")
    return _nvcc(source, ["--fatbin", *gencode], "fatbin")


def count(ptx_text: str) -> dict:
    """{instruction: occurrences} of PTX_PATTERNS in a PTX text (non-zero only)."""
    out = {k: len(re.findall(p, ptx_text)) for k, p in PTX_PATTERNS.items()}
    return {k: v for k, v in out.items() if v}


def source_hash(source: str) -> str:
    return hashlib.sha256(source.encode()).hexdigest()
