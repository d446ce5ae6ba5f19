"""Ahead-of-time artifacts: DIR/lib.so (or lib.tar when cross-compiling) + DIR/manifest.json,
and load_kernel(DIR), which compiles nothing and refuses foreign versions or CPUs."""

from __future__ import annotations

import json
from pathlib import Path

from .. import __version__
from ..errors import LrqcError
from ..frontend.unparse import unparse
from . import names
from .build import bucket_plans, compile as compile_kernel
from .chain import assemble, is_chain
from .compat import load_module, versions
from .kernel import Kernel
from .target import cuda_archs, host_lacks, is_cross, is_cuda, resolve

LAYOUTS = {
    "A": "float32 M x K, row-major (any input is copied to an aligned float32 buffer)",
    "Aq": "uint8 Mp x Kp, codes + 128 for signed formats (zero point 128), codes for unsigned",
    "Bp": "int8 [Np/16, Kp/4, 16, 4]: one 64-byte VNNI block per 16 columns x 4 k; one code "
          "per byte for 5..8-bit weights; 2..4-bit weights as [Np/16, Kp/4, 32] split-half "
          "nibbles (see packing_order)",
    "sb": "float32 [G, Np] effective weight scales per K-group",
    "cs": "int32 [G, Np] column sums of B's stored codes per K-group (zero-point correction)",
    "Bf": "float32 [Np/16, Kp, 16] for products with a float operand: B rounded to its type or "
          "dequantized, 16-column panels; when every value is exact in 16 bits (float16 or "
          "bfloat16 operands, symmetric per_tensor / per_channel codes), B's codes (element "
          "values) stored in that 16-bit type instead, with their scales in sbf",
    "sbf": "float32 [1, Np] column scales of Bf's codes (1 for a float B), products whose "
           "values are exact in 16 bits only",
    "zb": "int32 [G, Np] weight zero point minus the storage offset (2^(b-1) for unsigned "
          "weights, else 0), only for weights with zero points",
}


def build_artifact(scheme, M, N, K, out_dir, target=None) -> dict:
    """Compile and export; returns the manifest."""
    if target is not None and is_cuda(resolve(target)):
        from .gpu import nvcc_path

        nvcc_path()  # before anything is written: CUDA artifacts carry nvcc's fatbin
    kernel = compile_kernel(scheme, M, N, K, target)  # M: rows or a range lo..hi
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cross = is_cross(kernel.target)
    lib = "lib.tar" if cross else "lib.so"
    try:
        kernel.module.export_library(str(out / lib))
    except Exception as exc:
        raise LrqcError(f"exporting {out / lib} failed: {str(exc).strip().splitlines()[-1]}\n"
                        "(lib.so needs a C++ compiler: set CXX or install g++)") from None
    p = kernel.plan
    buckets = [b.m for b in kernel.plans]
    cuda = cuda_files(kernel, out) if is_cuda(kernel.target) else None
    manifest = {
        "format": 2,
        "scheme_name": scheme.name,
        "scheme": unparse(scheme),
        "dims": {"M": int(kernel.dims[0]) if ".." not in kernel.dims[0] else kernel.dims[0],
                 "N": N, "K": K},
        "static": scheme.static,
        "m_buckets": buckets,
        "padded": {"Mp": p.mp, "Np": p.np_, "Kp": p.kp, "groups": p.groups, "vector": p.vector},
        "target": kernel.target,
        "cross_compiled": cross,
        "schedule_rule": kernel.rule,
        "schedules": getattr(kernel, "schedules", {}),
        "fast_path": kernel.fast,
        "functions": functions(kernel),
        "product": product_text(kernel),
        "layouts": LAYOUTS,
        "packing_order": "Bp[n16, k4, j, kk] = B_codes[16*n16 + j, 4*k4 + kk]" + (
            "; nibbles: element e = 4*j + kk of each 64-byte block goes to byte e % 32, low "
            "nibble for e < 32, high nibble for e >= 32 (two's complement, sign-extended by "
            "shifts)" if p.nibbles else ""),
        "nibble_order": "split-half" if p.nibbles else None,
        "lib": lib,
        "cuda": cuda,
        "versions": {"lrqc": __version__, **versions()},
        "notes": list(p.notes),
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def cuda_files(kernel, out: Path) -> dict:
    """Device code of a CUDA kernel: device.fatbin (nvcc, SASS for every arch asked for and
    PTX of the highest) and device.cu (the source TVM generated, for reading); returns the
    manifest's "cuda" entry, with the integer instructions of each function's PTX."""
    from . import gpu

    src = gpu.cuda_source(kernel.module)
    archs = cuda_archs(kernel.target)
    (out / "device.cu").write_text(src)
    (out / "device.fatbin").write_bytes(gpu.fatbin(src, archs))
    return {"archs": archs, "cuda_version": gpu.cuda_version(), "fatbin": "device.fatbin",
            "source": "device.cu", "source_sha256": gpu.source_hash(src),
            "ptx_instructions": gpu.count(gpu.ptx(src, archs[0]))}


def functions(kernel) -> list[str]:
    """Exported symbols: every function of every bucket (of every part of a chain)."""
    parts = getattr(kernel, "kernels", [kernel])
    out = []
    for k in parts:
        prefix = k.prefix
        for p in k.plans:
            fns = names.FLOAT_FUNCTIONS if p.float_path else names.FUNCTIONS
            fns += (names.FN_LOWRANK_U,) if p.rank_b else ()
            fns += tuple(f"{names.FN_SPARSE}{j}" for j in range(len(p.sparse)))
            out += [names.symbol(fn, p.m, prefix) for fn in fns]
    return out


def product_text(kernel) -> str:
    if hasattr(kernel, "kernels"):
        return "LRAMM: float32 GEMM of U_A (V_A^T U_B) with Q(V_B^T)" \
            if kernel.scheme.product is not None else (
                "LPLR: integer GEMM A' L (int8 codes of L, offset by a ones column), then "
                "float32 GEMM with R" if kernel.integer_left else "LPLR: float32 GEMMs (A L) R")
    p = kernel.plan
    if p.half:
        return (f"float32 GEMM of values exact in {p.half} (codes, scales in the epilogue; "
                f"{p.half} tensor cores on CUDA)")
    if p.float_path:
        return "float32 GEMM"
    extra = [f"{p.nseg} K segments (dense residual terms)"] if p.segments else []
    extra += [f"sparse product of {'A' if sp.side == 'a' else 'B'}'s thresholded copy "
              f"({'zero-skip codes' if sp.side == 'a' else 'CSR'}) after the GEMM"
              for sp in p.sparse]
    extra += [f"rank-{r} epilogue of {side}'s lowrank term" for side, r in
              (("A", p.rank_a), ("B", p.rank_b)) if r]
    return "integer GEMM" + (" + " + ", ".join(extra) if extra else "")


def _load_cuda(d: Path, man: dict):
    """A CUDA artifact: the precompiled fatbin serves TVM's load-time compile hook (the module
    carries the CUDA source; nvcc or NVRTC are never run), after the GPU is checked."""
    from . import gpu
    from .kernel import device_of

    missing = host_lacks(man["target"])
    if missing:
        raise LrqcError(f"{d}: its host code is for {man['target']['host']}, this machine is "
                        f"another {', '.join(missing)}; rebuild it here")
    _, why = device_of(man["target"])
    if why:
        raise LrqcError(f"{d}: {why}")
    try:
        binary = (d / man["cuda"]["fatbin"]).read_bytes()
    except OSError as exc:
        raise LrqcError(f"{d}: the device code {man['cuda']['fatbin']} cannot be read "
                        f"({exc.strerror}); rebuild it with `lrqc build`") from None
    gpu.serve_fatbin(binary, man["cuda"]["source_sha256"])  # before the module is loaded
    return _assemble(d, man)


def read_manifest(path) -> dict:
    d = Path(path)
    try:
        return json.loads((d / "manifest.json").read_text())
    except FileNotFoundError:
        raise LrqcError(f"{d}: no manifest.json (not an lrqc build directory)") from None
    except json.JSONDecodeError as exc:
        raise LrqcError(f"{d / 'manifest.json'}: not valid JSON ({exc})") from None


def load_kernel(path) -> Kernel:
    """Load a built artifact without compiling anything."""
    d = Path(path)
    man = read_manifest(d)
    want = {"lrqc": __version__, **versions()}
    have = man.get("versions", {})
    diff = [f"{k} {have.get(k)} (this install: {v})" for k, v in want.items() if have.get(k) != v]
    if diff:
        raise LrqcError(f"{d}: built with other versions: {', '.join(diff)}; rebuild it with "
                        "`lrqc build`")
    if man.get("cuda"):
        return _load_cuda(d, man)
    missing = host_lacks(man["target"])
    if missing:
        raise LrqcError(f"{d}: built for {man['target']}, but this CPU lacks "
                        f"{', '.join(missing)}; rebuild for this machine (--target host)")
    return _assemble(d, man)


def _assemble(d: Path, man: dict):
    """The Kernel (or chain) of a checked artifact, its library loaded."""
    from ..api import parse_schemes

    scheme = parse_schemes(man["scheme"], str(d / "manifest.json"))[man["scheme_name"]]
    dims = man["dims"]
    if is_chain(scheme):
        module = load_module(str(d / man["lib"]))
        return assemble(scheme, str(dims["M"]), dims["N"], dims["K"], man["target"], module)
    plans = bucket_plans(scheme, str(dims["M"]), dims["N"], dims["K"])
    if [p.m for p in plans] != man.get("m_buckets"):
        raise LrqcError(f"{d / 'manifest.json'}: m_buckets {man.get('m_buckets')} do not match "
                        f"M={dims['M']}; rebuild it with `lrqc build`")
    module = load_module(str(d / man["lib"]))
    transposed = scheme.static == "a"
    return Kernel(plans, module, man["target"], man["schedule_rule"], man["fast_path"],
                  m_min=None if transposed else int(str(dims["M"]).split("..")[0]),
                  transposed=transposed)
