"""One place that finds the data directories (grammar/, schedules/, examples/) in a checkout or
a wheel, the host CPU's feature flags, the OS permission AMX tiles need, and which OpenMP
runtime the process has loaded."""

from __future__ import annotations

import ctypes
import os
import platform
from functools import cache
from pathlib import Path

_PKG = Path(__file__).resolve().parent


def data_dir(name: str) -> Path:
    """Return the directory `name` ("grammar", "schedules", "examples").

    In an installed wheel they live in lrqc/_data/<name>; in a source checkout (or an editable
    install) at the repository top level, next to the package.
    """
    for candidate in (_PKG / "_data" / name, _PKG.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"lrqc data directory {name!r} not found next to {_PKG}")


def grammar_path() -> Path:
    return data_dir("grammar") / "lrqc.lark"


def example_path(filename: str) -> Path:
    return data_dir("examples") / filename


def host_cpu_flags() -> set[str]:
    """The host CPU's feature flags as /proc/cpuinfo names them (empty off Linux)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


SYS_ARCH_PRCTL, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA = 158, 0x1023, 18  # Linux x86-64


@cache
def enable_amx() -> str | None:
    """Ask Linux for the AMX tile data state (arch_prctl ARCH_REQ_XCOMP_PERM, once per process):
    a process must hold it before its first tile instruction. None when granted, else why
    not (no AMX, another OS, a kernel before 5.16)."""
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
        return "AMX tiles need Linux on x86-64"
    if "amx_tile" not in host_cpu_flags():
        return "this CPU has no AMX tiles (no amx_tile in /proc/cpuinfo)"
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        rc = libc.syscall(SYS_ARCH_PRCTL, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)
    except (OSError, AttributeError) as exc:
        return f"the arch_prctl system call is not reachable ({exc})"
    if rc != 0:
        return (f"Linux refused the AMX tile state (arch_prctl ARCH_REQ_XCOMP_PERM: "
                f"{os.strerror(ctypes.get_errno())}; Linux before 5.16 lacks it)")
    return None


def loaded_libgomp() -> str | None:
    """The path of the libgomp this process has loaded (torch's, numpy's BLAS'), or None."""
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                path = line.split()[-1] if line.strip() else ""
                if "libgomp" in os.path.basename(path):
                    return path
    except OSError:
        pass
    return None
