"""Ahead-of-time artifacts: compile a scheme and write DIR/lib.so (or lib.tar when
cross-compiling), CUDA device code (device.fatbin, device.cu) and DIR/manifest.json
(lrqc.runtime.manifest says what it records; lrqc.runtime.artifact loads it)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .._version import __version__
from ..backend.compat import TVM_ERRORS, versions
from ..backend.cuda import toolchain
from ..backend.schedule.rules import instruction_proof
from ..backend.target import Target, resolve
from ..errors import LrqcError
from ..frontend.model import Scheme
from ..frontend.unparse import unparse
from ..plan import packing
from ..plan.model import KernelPlan
from ..plan.storage import storage
from ..runtime.manifest import (
    FORMAT,
    LAYOUTS,
    artifact_files,
    content_hashes,
    expected_layout,
    file_entry,
    functions,
    product_text,
    sha256,
)
from ..runtime.protocol import KernelLike
from .compile import compile


def build_artifact(scheme: Scheme, M: int | tuple[int, int] | range | str, N: int, K: int,
                   out_dir: str | os.PathLike[str], target: str | dict | Target | None = None,
                   **options: Any) -> dict:
    """Compile and export; returns the manifest. options: compile()'s (records, emit,
    on_text, dump_dir)."""
    if target is not None and resolve(target).is_cuda:
        toolchain.nvcc_path()  # before anything is written: CUDA artifacts carry nvcc's fatbin
    # M: rows or a range lo..hi; the executable itself is written (load_kernel chooses the
    # threads its calls run on)
    kernel = compile(scheme, M, N, K, target, threads="tvm", link=False, **options)
    return write_artifact(kernel, scheme, N, K, out_dir)


def write_artifact(kernel: KernelLike, scheme: Scheme, N: int, K: int,
                   out_dir: str | os.PathLike[str]) -> dict:
    """Write a kernel compiled with threads="tvm", link=False (its executable not linked in
    memory) into out_dir: the library, CUDA's device code and the manifest; returns the
    manifest."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cross = kernel.target.is_cross
    lib = "lib.tar" if cross else "lib.so"
    try:
        kernel.module.export_library(str(out / lib))
    except TVM_ERRORS as exc:  # the C++ compiler or linker TVM runs failed
        raise LrqcError(f"exporting {out / lib} failed: {str(exc).strip().splitlines()[-1]}\n"
                        "(lib.so needs a C++ compiler: set CXX or install g++)") from None
    buckets, padded = expected_layout(kernel)
    cuda = cuda_files(kernel, out) if kernel.target.is_cuda else None
    text = unparse(scheme)
    p = kernel.plan
    manifest = {
        "format": FORMAT,
        "scheme_name": scheme.name,
        "scheme": text,
        "scheme_sha256": sha256(text.encode()),
        "dims": {"M": int(kernel.dims[0]) if ".." not in kernel.dims[0] else kernel.dims[0],
                 "N": N, "K": K},
        "static": scheme.static,
        "m_buckets": buckets,
        "padded": padded,
        "target": kernel.target.as_dict(),
        "cross_compiled": cross,
        "schedule_rule": kernel.rule,
        "schedules": getattr(kernel, "schedules", {}),
        "fast_path": kernel.fast,
        "instruction": instruction_proof(p, kernel.rule, kernel.target.family),
        "functions": functions(kernel),
        "product": product_text(kernel),
        "layouts": LAYOUTS,
        "packing_order": packing_order(p),
        "weights": storage(p),
        "lib": lib,
        "cuda": cuda,
        "versions": {"lrqc": __version__, **versions()},
        "notes": list(p.notes),
        "files": {name: file_entry(out / name) for name in artifact_files(lib, cuda)},
    }
    manifest = json.loads(json.dumps(manifest))  # hashed as it will be read back
    manifest["content_sha256"] = content_hashes(manifest)
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def cuda_files(kernel: KernelLike, out: Path) -> dict:
    """Device code of a CUDA kernel: device.fatbin (nvcc, SASS for every arch asked for and
    PTX of the highest) and device.cu (the source TVM generated, for reading); returns the
    manifest's "cuda" entry, with the integer instructions of each function's PTX."""
    src = toolchain.cuda_source(kernel.module)
    archs = kernel.target.archs
    (out / "device.cu").write_text(src)
    (out / "device.fatbin").write_bytes(toolchain.fatbin(src, archs))
    return {"archs": archs, "cuda_version": toolchain.cuda_version(), "fatbin": "device.fatbin",
            "source": "device.cu", "source_sha256": toolchain.source_hash(src),
            "ptx_instructions": toolchain.count(toolchain.ptx(src, archs[0]))}


def packing_order(p: KernelPlan) -> str:
    """How B's codes lie in Bp (plan/layout.py, plan/packing.py)."""
    if p.float_codes:
        text = ("Bp[n16, k, j] = B_codes[16*n16 + j, k] (the float GEMM's 16-column panels; "
                "unsigned codes minus 2^(b-1))")
        order = "position 16*k + j"
    else:
        text = "Bp[n16, k4, j, kk] = B_codes[16*n16 + j, 4*k4 + kk]"
        order = "element e = 4*j + kk of block k4 at stream position 64*k4 + e"
    if not p.packed:
        return text
    w = p.pack_bits
    planes = " + ".join(f"a {q}-bit plane (bits {s}..{s + q - 1} of u, {32 * q} bytes)"
                        for q, _, s in packing.planes(w))
    return (text + f"; {w}-bit two's complement codes (u = code mod 2^{w}) packed densely: the "
            f"codes of panel n16 in that order ({order}) in groups of 256 codes, group g = "
            f"Bp[n16, g, :] of {packing.group_bytes(w)} bytes holding {planes}; in a p-bit "
            "plane code E of its group lies in byte E mod 32p at bits p*(E div 32p)")
