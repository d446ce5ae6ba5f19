"""lrqc tune's live progress line (trials done, valid, best time so far, time left) and the
MetaSchedule measure callback that feeds it."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..backend.compat import PyMeasureCallback, derived_object, last_line, ms
from .db import shown_ms


@dataclass
class Progress:
    """Live progress: trials done, valid, best GOPS so far, estimated time left."""

    total: int
    flops: float
    done: int = 0
    valid: int = 0
    best_s: float = float("inf")
    t0: float = 0.0
    out: object = sys.stderr
    resumed: int = 0  # trials measured by an earlier, interrupted run
    first_error: str | None = None  # why the first failed candidate failed (build or run)

    def update(self, run_secs: list) -> None:
        if not run_secs:
            return
        for secs in run_secs:
            self.done += 1
            if secs is not None and np.isfinite(secs) and secs < 1e9:
                self.valid += 1
                self.best_s = min(self.best_s, secs)
        self.show()

    def show(self) -> None:
        spent, new = time.time() - self.t0, self.done - self.resumed
        left = spent / new * max(self.total - self.done, 0) if new > 0 else float("nan")
        best = "-"
        if self.best_s < float("inf"):
            best = shown_ms(self.best_s * 1e3) + (
                f" ({self.flops / self.best_s / 1e9:.1f} GOPS)" if self.flops else "")
        eta = f"about {left:.0f} s left" if not np.isnan(left) else "resuming"
        print(f"\r  trials {self.done}/{self.total}, valid {self.valid}, best {best}, {eta}   ",
              end="", file=self.out, flush=True)


def mean_secs(run_secs: Sequence | None) -> float | None:
    """The mean of a measurement's run times in seconds, None when it has none."""
    return float(np.mean([float(x) for x in run_secs])) if run_secs else None


@derived_object
class _Show(PyMeasureCallback):
    """Passes each batch of MetaSchedule's measurements to a Progress."""

    def __init__(self, progress: Progress):
        self.progress = progress

    def apply(self, task_scheduler: ms.TaskScheduler, task_id: int,
              measure_candidates: list[ms.MeasureCandidate],
              builder_results: list[ms.builder.BuilderResult],
              runner_results: list[ms.runner.RunnerResult]) -> None:
        secs = []
        for b, r in zip(builder_results, runner_results, strict=True):
            ok = b.error_msg is None and r.error_msg is None and r.run_secs
            secs.append(mean_secs(r.run_secs) if ok else None)
            if not ok and self.progress.first_error is None:
                self.progress.first_error = last_line(b.error_msg or r.error_msg or "no time")
        self.progress.update(secs)


def measure_callback(progress: Progress) -> ms.MeasureCallback:
    """A MetaSchedule measure callback that shows its measurements on progress."""
    return _Show(progress)
