"""Compensated GEMM benchmark: time and relative error (vs float64) of direct quantization and
of every compensation method (LRQMM low-rank at rank 1, 8, 16, 32; sparse residuals at densities
5/20/35 %; dense residuals), next to numpy float32 and torch's dynamic-quantized Linear, in one
run (medians). Each lrqc row is the whole per-call work: copy and quantization of A, A's
residual sketch and factors, U and W of the epilogue, the GEMM. "overhead" is the row's time
over the direct quantization of the same base scheme: the median ratio of back-to-back pairs
of calls (robust to the slow phases of a shared machine; the ms column is a plain median).

    python bench/compensation_cpu.py                              # the default shapes
    python bench/compensation_cpu.py --shapes 256,4096,4096 --repeat 5

Data: U[0, 1) for A and B (the LRQMM setting; the sparse thresholds give densities 1 - th).
"""

from __future__ import annotations

import os
import sys
import time
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # first: it sets the BLAS environment before numpy loads
import numpy as np
from common import FLOOR, TRUNC_PC, TRUNC_PT, bench_args, both, lowrank, median_time, rel, sparse

import lrqc

# (row name, scheme body, name of its direct baseline)
SCHEMES = [
    ("direct int8 per_tensor floor", both(FLOOR), None),
    *[(f"LRQMM rank {r}", both(FLOOR, lowrank(r)), "direct int8 per_tensor floor")
      for r in (1, 8, 16, 32)],
    ("direct int8 per_channel trunc", both(TRUNC_PC), None),
    *[(f"sparse density {d} %", both(TRUNC_PC, sparse(d)), "direct int8 per_channel trunc")
      for d in (5, 20, 35)],
    ("direct int8 per_tensor trunc", both(TRUNC_PT), None),
    ("dense residual", both(TRUNC_PT, "dense(int8 per_tensor round=trunc)"),
     "direct int8 per_tensor trunc"),
]
DEFAULT_SHAPES = "2048,2048,2048;4096,4096,4096;16,4096,4096;256,4096,4096"


def paired_ratio(direct, comp, repeat: int) -> float:
    """Median over `repeat` adjacent pairs of (compensated time / direct time): each pair runs
    back to back, so a slow phase of this shared machine hits both sides of a ratio."""
    ratios = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        direct()
        t1 = time.perf_counter()
        comp()
        ratios.append((time.perf_counter() - t1) / (t1 - t0))
    return float(np.median(ratios))


def run_shape(m, n, k, args, results):
    rng = np.random.default_rng(0)
    A = rng.random((m, k)).astype(np.float32)
    B = rng.random((k, n)).astype(np.float32)
    ref = A.astype(np.float64) @ B.astype(np.float64)
    rows = [("numpy float32", median_time(lambda: A @ B, args.repeat, args.budget),
             rel(A @ B, ref), "", "")]
    peers = common.torch_peers(A, B, args.repeat, args.budget, int_mm=False)
    t, note = peers["torch dynamic-quant Linear"]
    rows.append(("torch dynamic-quant Linear", t, rel(peers["C"], ref) if t else None, "", note))
    times, calls = {}, {}
    for name, body, direct in SCHEMES:
        try:
            kernel, build = common.compile_kernel(common.scheme(body), m, n, k, f"lrqc {name}")
        except lrqc.LrqcError as exc:  # e.g. A's rank above M
            rows.append((f"lrqc {name}", None, None, "", str(exc).splitlines()[0].split(": ")[-1]))
            continue
        packed = kernel.pack(B)
        C = kernel(A, packed)
        t = median_time(partial(kernel, A, packed), args.repeat, args.budget)
        times[name] = t
        calls[name] = (lambda kn, pk: lambda: kn(A, pk))(kernel, packed)
        st = kernel.stage_times(A, packed, repeat=3)
        split = ", ".join(f"{key} {v * 1e3:.2f}" for key, v in st.items())
        notes = "; ".join(n for n in kernel.last_notes if "B density" not in n)
        note = f"build {build:.1f} s; ms: {split}" + (f"; {notes}" if notes else "")
        ratio = paired_ratio(calls[direct], calls[name], args.repeat) if direct else 1.0
        over = f"{ratio:.3f}x" if direct else ""
        rows.append((f"lrqc {name}", t, rel(C, ref), over, note))
        results[(m, n, k, name)] = ratio
        time.sleep(0.2)
    shape = f"{m},{n},{k}"
    for name, t, err, over, note in rows:
        tt = f"{t * 1e3:10.3f}" if t else f"{'n/a':>10}"
        ee = f"{err:11.3e}" if err is not None else f"{'':>11}"
        print(f"{shape:<16}{name:<36}{tt}{ee}{over:>10}  {note}")
    print(flush=True)


def main(argv=None) -> int:
    args = bench_args(__doc__, DEFAULT_SHAPES, argv)
    print(f"lrqc {lrqc.__version__}, {os.cpu_count()} CPUs; medians of up to {args.repeat} runs; "
          "U[0,1) data; error = ||C - AB||_F / ||AB||_F against float64\n")
    head = f"{'shape':<16}{'method':<36}{'ms':>10}{'rel. error':>11}{'overhead':>10}  note"
    print(head)
    print("-" * len(head))
    results: dict = {}
    shapes = [tuple(int(x) for x in sh.split(",")) for sh in args.shapes.split(";")]
    for m, n, k in shapes:
        run_shape(m, n, k, args, results)
    print("targets (compensated / direct time, end to end):")
    for m, n, k in shapes:
        r1, r16 = results[(m, n, k, "LRQMM rank 1")], results.get((m, n, k, "LRQMM rank 16"), 0)
        print(f"  {m},{n},{k}: rank 1 {r1:.3f}x (<= 1.05: {'met' if r1 <= 1.05 else 'NOT met'}), "
              f"rank 16 {r16:.3f}x (<= 1.10: {'met' if r16 <= 1.10 else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
