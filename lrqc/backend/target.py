"""Targets: lrqc's short names and TVM target dicts, host detection, and CPU feature checks.

CUDA targets: "cuda-sm80", "cuda-sm90" (short names), "cuda -arch=sm_90" (TVM's string form;
"cuda -arch=sm_80,sm_90" builds device code for both), or a dict {"kind": "cuda", "arch":
"sm_90"}. Bare "cuda" is refused: TVM would silently compile for sm_50. The host part is
LLVM code for this machine's architecture without CPU features (it only launches the device
code). A dict may carry "lrqc_archs" (every arch the
artifact's fatbin holds; TVM's own "arch" is the lowest, which code generation targets)."""

from __future__ import annotations

import platform

from ..errors import LrqcError
from .compat import Target, codegen

# cpuinfo flag -> LLVM feature
_X86_FEATURES = {
    "avx2": "avx2", "fma": "fma", "avx512f": "avx512f", "avx512bw": "avx512bw",
    "avx512vl": "avx512vl", "avx512dq": "avx512dq", "avx512_vnni": "avx512vnni",
    "avx512_bf16": "avx512bf16", "gfni": "gfni", "avx_vnni": "avxvnni",
}
SHORT_NAMES = {
    "host": None,
    "x86-avx512-vnni": {"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": "znver4"},
    "x86-avx2": {"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": "haswell"},
    "aarch64": {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mcpu": "neoverse-n1"},
    "cuda-sm80": {"kind": "cuda", "arch": "sm_80"},
    "cuda-sm90": {"kind": "cuda", "arch": "sm_90"},
}
CUDA_ARCHS = ("sm_75", "sm_80", "sm_86", "sm_89", "sm_90", "sm_100", "sm_120")  # lrqc builds for
ARCHS_KEY = "lrqc_archs"  # lrqc's own key: every arch of the fatbin (not a TVM attribute)


def host_cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def host_target_dict() -> dict:
    """The host CPU as LLVM sees it, plus every vector feature /proc/cpuinfo reports (LLVM 22
    names this Zen 5 VM 'znver3' and would otherwise leave AVX-512 VNNI off)."""
    import os

    d = {"kind": "llvm", "mcpu": str(codegen.llvm_get_system_cpu()),
         "num-cores": os.cpu_count() or 1}
    if platform.machine() in ("x86_64", "AMD64"):
        flags = host_cpu_flags()
        feats = [f"+{v}" for k, v in _X86_FEATURES.items() if k in flags]
        if feats:
            d["mattr"] = feats
    return d


def resolve(target) -> dict:
    """A target dict from None/'host', a short name, a CUDA target string, or a dict
    (validated by TVM)."""
    if target is None or target == "host" or target == "llvm":
        d = host_target_dict()
    elif isinstance(target, dict):
        d = dict(target)
    elif isinstance(target, str) and target in SHORT_NAMES:
        d = dict(SHORT_NAMES[target])
    elif isinstance(target, str) and target.split()[:1] == ["cuda"]:
        d = _cuda_string(target)
    else:
        raise LrqcError(f"unknown target {target!r}; use 'host', a TVM target dict, "
                        "'cuda -arch=sm_XX', or one of "
                        f"{', '.join(k for k in SHORT_NAMES if k != 'host')}")
    if d.get("kind") not in ("llvm", "cuda"):
        raise LrqcError(f"target kind {d.get('kind')!r}: lrqc compiles for 'llvm' (CPUs) and "
                        "'cuda' targets")
    if is_cuda(d):
        d = _cuda_dict(d)
    try:
        Target(tvm_dict(d))
    except Exception as exc:
        raise LrqcError(f"invalid target {d}: {str(exc).splitlines()[-1]}") from None
    return d


def _cuda_string(text: str) -> dict:
    words = text.split()
    archs = [w.split("=", 1)[1] for w in words[1:] if w.startswith("-arch=")]
    rest = [w for w in words[1:] if not w.startswith("-arch=")]
    if rest:
        raise LrqcError(f"target {text!r}: only -arch=sm_XX[,sm_YY] is understood after 'cuda'")
    if not archs:
        raise LrqcError(f"target {text!r} names no GPU architecture (TVM would silently build "
                        "for sm_50): use 'cuda -arch=sm_90', 'cuda-sm80' or 'cuda-sm90'")
    return {"kind": "cuda", "arch": archs[-1]}


def _cuda_dict(d: dict) -> dict:
    """Normalise a CUDA target: the archs sorted, TVM's arch the lowest, the host this CPU."""
    archs = d.get(ARCHS_KEY) or str(d.get("arch", "")).split(",")
    archs = [a.strip() for a in archs if a.strip()]
    if not archs:
        raise LrqcError(f"CUDA target {d} names no arch (TVM would silently build for sm_50): "
                        "give 'arch': 'sm_90'")
    bad = [a for a in archs if a not in CUDA_ARCHS]
    if bad:
        raise LrqcError(f"CUDA arch {', '.join(bad)} is not supported; lrqc builds for "
                        f"{', '.join(CUDA_ARCHS)} (dp4a needs sm_61+, int8 tensor cores sm_75+)")
    archs = sorted(set(archs), key=CUDA_ARCHS.index)
    out = {k: v for k, v in d.items() if k not in ("arch", ARCHS_KEY, "host")}
    # the host part only launches kernels: generic code for this machine's architecture (no
    # CPU features), its triple recorded so another architecture refuses it clearly
    out.update(arch=archs[0], host=d.get("host") or {"kind": "llvm",
                                                     "mtriple": f"{platform.machine()}-linux-gnu"})
    if len(archs) > 1:
        out[ARCHS_KEY] = archs
    return out


def is_cuda(d: dict) -> bool:
    return d.get("kind") == "cuda"


def cuda_archs(d: dict) -> list[str]:
    """Every arch the artifact's device code is built for (the first is TVM's codegen arch)."""
    return list(d.get(ARCHS_KEY) or [d["arch"]])


def tvm_dict(d: dict) -> dict:
    """The target dict without lrqc's own keys (what tvm.target.Target takes)."""
    return {k: v for k, v in d.items() if k != ARCHS_KEY}


def tvm_target(d: dict):
    """tvm.target.Target of a resolved target dict."""
    return Target(tvm_dict(d))


def features(d: dict) -> set[str]:
    """LLVM features the target enables (from mcpu and mattr); for CUDA targets "cuda" and
    the instructions the lowest arch has ("dp4a": sm_61+, "mma_s8" and "mma_f16": int8 and
    fp16 tensor cores, sm_75+, "mma_bf16": sm_80+)."""
    if is_cuda(d):
        sm = int(d["arch"].split("_")[1])
        have = {"dp4a": 61, "mma_s8": 75, "mma_f16": 75, "mma_bf16": 80}
        return {"cuda"} | {f for f, lo in have.items() if sm >= lo}
    t = Target(d)
    out = set()
    for f in ("avx512vnni", "avx512bw", "avx512f", "avx2", "avx512bf16", "gfni"):
        try:
            if codegen.target_has_features(f, t):
                out.add(f)
        except Exception:  # pragma: no cover - non-x86 targets
            pass
    return out


def is_cross(d: dict) -> bool:
    if is_cuda(d):
        return is_cross(d["host"])
    triple = d.get("mtriple", "")
    return bool(triple) and not triple.startswith(platform.machine())


def host_lacks(d: dict) -> list[str]:
    """Features the target needs that this CPU does not have (for refusing to load)."""
    if is_cuda(d):
        return host_lacks(d["host"])
    if is_cross(d):
        return ["architecture " + d.get("mtriple", "?")]
    flags = host_cpu_flags()
    need = features(d)
    rev = {v: k for k, v in _X86_FEATURES.items()}
    return sorted(f for f in need if f in rev and rev[f] not in flags)
