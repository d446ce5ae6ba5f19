"""stage_times of kernels and chains: the median seconds of each per-call stage over a
number of runs (for benchmarks)."""

from __future__ import annotations

import numbers
import time
from collections.abc import Callable

import numpy as np

from ..errors import InputError


def median_times(stages: dict[str, Callable[[], object]], repeat: object,
                 sync: Callable[[], object] = lambda: None) -> dict[str, float]:
    """{stage: median seconds of `repeat` runs}, stage after stage; sync() before and after
    each run (a GPU's kernels run asynchronously). repeat: a positive integer (numpy's too),
    else InputError."""
    if isinstance(repeat, bool) or not isinstance(repeat, numbers.Integral) or repeat < 1:
        raise InputError(f"stage_times: repeat must be a positive int, got {repeat!r}")
    out = {}
    for name, fn in stages.items():
        times = []
        for _ in range(int(repeat)):
            sync()
            t0 = time.perf_counter()
            fn()
            sync()
            times.append(time.perf_counter() - t0)
        out[name] = float(np.median(times))
    return out
