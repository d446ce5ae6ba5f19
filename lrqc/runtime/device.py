"""The device a kernel runs on: the CPU, or GPU 0 for CUDA targets, and why a kernel cannot
run on this machine (a CPU target whose features or architecture this CPU lacks; no GPU TVM can
use, or one of an arch the kernel was not built for). Needs no part of the CUDA scheduler."""

from __future__ import annotations

from typing import Any

from ..backend.compat import cpu, tvm, use_nvcc
from ..backend.target import CUDA_ARCHS, Target

Device = Any  # a TVM device (tvm.runtime.Device; TVM has no type information)


def gpu_present() -> bool:
    """Whether this machine can run CUDA code through TVM (a GPU and TVM's CUDA runtime)."""
    try:
        return bool(tvm.cuda(0).exist)
    except RuntimeError:  # TVM's errors (a CUDA driver that fails to initialise): no GPU
        return False


def device() -> Device:
    """GPU 0 as a TVM device. Modules loaded for it are compiled by TVM's load-time hook
    unless lrqc serves their fatbin: it must use nvcc (compat.use_nvcc)."""
    use_nvcc()
    return tvm.cuda(0)


def device_arch() -> str:
    """sm_XX of GPU 0."""
    return "sm_" + str(device().compute_version).replace(".", "")


def arch_mismatch(target: Target) -> str | None:
    """Why code built for the target's archs cannot run on GPU 0, or None."""
    archs = list(target.archs)
    have = device_arch()
    if have in archs:
        return None
    # the fatbin also holds PTX of its highest arch, which newer GPUs JIT-compile
    top = max(int(a[3:]) for a in archs)
    if int(have[3:]) > top:
        return None
    fit = [a for a in CUDA_ARCHS if int(a[3:]) <= int(have[3:])]
    hint = (f"rebuild with --target 'cuda -arch={fit[-1]}'" if fit
            else f"lrqc builds for {', '.join(CUDA_ARCHS)} only")
    return (f"this kernel was built for {', '.join(archs)}, but GPU 0 ({device().device_name}) "
            f"is {have}: {hint}")


def device_of(target: Target) -> tuple[Device, str | None]:
    """(TVM device, None) the kernel runs on, or (None, why it cannot run on this machine):
    CUDA code without a GPU of its arch, or CPU code for features or an architecture this CPU
    lacks (its first instruction of them would kill the process)."""
    if not target.is_cuda:
        lacks = target.host_lacks()
        if not lacks:
            return cpu(), None
        what = (f"is {target.triple} code, which this CPU cannot run" if target.is_cross else
                f"was compiled for a CPU with {', '.join(lacks)}, which this CPU lacks")
        return None, (f"this kernel {what}: compile it for this machine (target=None) to run "
                      "it here, or build it with `lrqc build --target ...` and run the "
                      "artifact on a machine of that kind")
    archs = ", ".join(target.archs)
    if not gpu_present():
        return None, (f"this kernel is CUDA code for {archs}, and this machine has no CUDA GPU "
                      "that TVM can use: build it with `lrqc build --target ...` and run the "
                      "artifact on a GPU machine")
    why = arch_mismatch(target)
    if why:
        return None, why
    return device(), None
