"""One place that finds the data directories (grammar/, schedules/, examples/) in a checkout or
a wheel, and the host CPU's feature flags."""

from __future__ import annotations

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
