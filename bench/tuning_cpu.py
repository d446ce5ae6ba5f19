"""Auto-tuning benchmark: lrqc tune's kernel against the hand schedule, in one run.

For each shape and trial budget, tunes the kernel's functions (the GEMM with its fused
epilogues, the quantization pass, and B's low-rank row dots where the scheme has them) in a
fresh tuning database (a temporary directory, so nothing is reused between rows), then prints
per function the tuned and hand-scheduled times (as lrqc tune measured them when recording:
medians of 7 rounds that alternate the two compiled functions, the speedup the median of the
per-round ratios), the number of trials the search needed to reach 95 % of its best measured
speed, and the wall time of the whole tuning of the row.

    python bench/tuning_cpu.py                                   # every row
    python bench/tuning_cpu.py --rows "decode" --trials 16,32    # a quick look

Rows: per-channel int8 at 1024^3, an LLM decode shape (M=8, N=K=4096) and the LRQMM rank-16
scheme at 2048^3 (its GEMM with the fused rank-16 epilogue). Target: tuned >= hand on every
row, and >= 1.2x on the decode shape. "best" says whether the recorded candidate came from the
search or is the hand schedule's own point of the space (a finalist too, so tuning never
records something the hand point beat in the same rounds). The GEMM rows also show the fraction
of the machine's integer peak (bench/peak.c: the instruction the rule issues, all threads, no
memory traffic) that hand and tuned kernels reach: the headroom any schedule has left.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # first: it sets the BLAS environment (and TVM's spin count) before numpy loads
import numpy as np

import lrqc

PC = "scheme s {\n a: int8 per_channel\n b: int8 per_channel\n}"
LR16 = ("scheme s {\n a: int8 per_tensor round=floor + lowrank(rank=16, method=rsvd)\n"
        " b: int8 per_tensor round=floor + lowrank(rank=16, method=rsvd)\n}")
ROWS = {"pc1024": ("per-channel int8", PC, (1024, 1024, 1024)),
        "decode": ("decode per-channel int8", PC, (8, 4096, 4096)),
        "lrqmm16": ("LRQMM rank 16", LR16, (2048, 2048, 2048))}


def trials_to_95(work_dir: Path) -> int | None:
    """Trials until a candidate reached 95 % of the best speed measured (from the MetaSchedule
    database, in measurement order)."""
    path = work_dir / "database_tuning_record.json"
    if not path.exists():
        return None
    secs = []
    for line in path.read_text().splitlines():
        rec = json.loads(line)[1]
        run = rec[1] if len(rec) > 1 else None
        secs.append(float(np.mean(run)) if run else float("inf"))
    best = min(secs)
    return next(i + 1 for i, s in enumerate(secs) if s <= best / 0.95)


def of_peak(fn: str, ms: float, dims, peak) -> str:
    """The GEMM's speed as a fraction of the integer peak (bench/peak.c), else blank."""
    if fn != "gemm" or not peak:
        return f"{'':>9}"
    m, n, k = dims
    return f"{2.0 * m * n * k / (ms * 1e-3) / 1e9 / peak:>9.2f}"


def run_row(name, text, dims, trials, workers, peak) -> list[str]:
    from lrqc.tuning.db import Database
    from lrqc.tuning.tune import tune_scheme

    s = next(iter(lrqc.parse_schemes(text).values()))
    m, n, k = dims
    lines = []
    with tempfile.TemporaryDirectory() as tmp:
        db = Database(Path(tmp) / "tuning")
        t0 = time.perf_counter()
        rows = tune_scheme(s, m, n, k, trials=trials, workers=workers, db=db,
                           out=open(os.devnull, "w"))
        wall = time.perf_counter() - t0
        recs = {r.hash: r for r in db.all()}
        for r in rows:
            fn = r["symbol"].rsplit("_m", 1)[0]
            if "tuned_ms" not in r:
                lines.append(f"{name:<36}{fn:<11}{trials:>7}  {r['status']}")
                continue
            t95 = trials_to_95(db.work_dir(recs[r["record"]].key))
            lines.append(f"{name:<36}{fn:<11}{trials:>7}{r['hand_ms']:>10.3f}"
                         f"{r['tuned_ms']:>10.3f}{r['speedup']:>9.2f}x"
                         f"{of_peak(fn, r['hand_ms'], dims, peak)}"
                         f"{of_peak(fn, r['tuned_ms'], dims, peak)}"
                         f"{r['trials']:>7}{r['valid']:>7}{r['rejected']:>6}"
                         f"{t95 if t95 else '-':>8}{wall:>9.0f}"
                         f"  {'hand point' if r.get('hand_point') else 'searched'}")
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", default=",".join(ROWS), help=f"of {', '.join(ROWS)}")
    ap.add_argument("--trials", default="64,256", help="trial budgets, comma separated")
    ap.add_argument("--workers", type=int, default=None)
    args = ap.parse_args(argv)
    peak, instr = common.int_peak()
    print(f"lrqc {lrqc.__version__}, {os.cpu_count()} CPUs; medians on this host of 7 rounds "
          "alternating hand and tuned after tuning; speedup = median of the per-round ratios")
    print("integer peak, all threads: " + (f"{peak:.0f} GOPS ({instr}, bench/peak.c); /peak: "
                                           "the GEMM's GOPS over it\n" if peak
                                           else f"n/a: {instr}\n"))
    head = (f"{'shape':<36}{'function':<11}{'budget':>7}{'hand ms':>10}{'tuned ms':>10}"
            f"{'speedup':>10}{'hand/pk':>9}{'tuned/pk':>9}{'trials':>7}{'valid':>7}{'rej.':>6}"
            f"{'to 95%':>8}{'wall s':>9}  best")
    print(head)
    print("-" * len(head))
    for key in args.rows.split(","):
        label, text, dims = ROWS[key]
        for t in (int(x) for x in args.trials.split(",")):
            for line in run_row(f"{label} {','.join(map(str, dims))}", text, dims, t,
                                args.workers, peak):
                print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
