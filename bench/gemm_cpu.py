"""CPU GEMM benchmark: lrqc kernels (int8 per_channel, w4a8, int8 per_vector(64), float16 x
int4) next to the machine's peaks (bench/peak.c: every mode this CPU has; /peak compares each
row with the roof of the instruction its GEMM issues), numpy float32, torch._int_mm and torch's
dynamic-quantized Linear, measured in one run (medians of back-to-back calls). Each lrqc row is
the whole per-call work (copy of A, quantize_a, GEMM with its epilogue); the note column splits
it. bench/cpu.py is the one-run overview (interleaved rounds, targets, JSON); this script adds
per_vector(64), float16 x int4 and the stage split.

    python bench/gemm_cpu.py                       # the default shapes
    python bench/gemm_cpu.py --shapes 1024,1024,1024 --repeat 5

Peers that this machine or install lacks (VNNI, torch) are printed as n/a with the reason.
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
from common import bench_args, median_time, roof_mode, torch_peers

import lrqc

SCHEMES = {
    "int8 per_channel": "a: int8 per_channel\n b: int8 per_channel",
    "w4a8 per_channel": "a: int8 per_channel\n b: int4 per_channel",
    "int8 per_vector(64)": "a: int8 per_vector(64)\n b: int8 per_vector(64)",
    "float16 x int4 per_channel": "a: float16\n b: int4 per_channel",  # weights in 16 bits
}
DEFAULT_SHAPES = "1024,1024,1024;2048,2048,2048;4096,4096,4096;16,4096,4096;256,4096,4096"


def main(argv=None) -> int:
    args = bench_args(__doc__, DEFAULT_SHAPES, argv)
    flags = common.cpu_flags()
    peaks = common.measure_peaks()
    print("peaks, all threads (bench/peak.c, medians of 5; /peak: against the roof column):")
    for mode, v in peaks.items():
        print(f"  {mode:<12}" + (f"{v:6.0f} {common.PEAK_MODES[mode][2]:<7}" if isinstance(v, float)
                                 else f"{'n/a':>6} {'':<7}") + f"{common.PEAK_MODES[mode][1]}"
              + ("" if isinstance(v, float) else f": {v}"))
    print(f"lrqc {lrqc.__version__}, {os.cpu_count()} CPUs; medians of up to {args.repeat} runs\n")
    head = (f"{'shape':<16}{'method':<34}{'ms':>10}{'GOPS':>9}{'/numpy':>8}{'/peak':>7}"
            f"{'/int_mm':>9}  {'roof':<12}note")
    print(head)
    print("-" * len(head))
    results = {}
    for shape in args.shapes.split(";"):
        m, n, k = (int(x) for x in shape.split(","))
        rng = np.random.default_rng(0)
        A = rng.standard_normal((m, k)).astype(np.float32)
        B = rng.standard_normal((k, n)).astype(np.float32)
        ops = 2.0 * m * n * k
        rows = [("numpy float32", median_time(partial(np.matmul, A, B), args.repeat, args.budget),
                 common.numpy_roof(flags), "")]
        peers = torch_peers(A, B, args.repeat, args.budget)
        peers.pop("C", None)
        for name, (t, note) in peers.items():
            roof = common.torch_roof(flags) if name == "torch dynamic-quant Linear" else None
            rows.append((name, t, roof, note))
        for name, body in SCHEMES.items():
            kernel, build = common.compile_kernel(common.scheme(body), m, n, k, f"lrqc {name}")
            packed = kernel.pack(B)
            t = median_time(partial(kernel, A, packed), args.repeat, args.budget)
            st = kernel.stage_times(A, packed, repeat=3)
            note = (f"rule {kernel.rule}, build {build:.1f} s; copy+quantize A "
                    f"{(st['copy_a'] + st['quantize_a']) * 1e3:.2f} ms, "
                    f"gemm {st['gemm'] * 1e3:.2f} ms")
            rows.append((f"lrqc {name}", t, roof_mode(kernel, flags)[0], note))
            time.sleep(0.2)
        base = rows[0][1]
        int_mm = dict((r[0], r[1]) for r in rows).get("torch._int_mm")
        for name, t, roof, note in rows:
            results[(shape, name)] = (t, roof)
            if t is None:
                print(f"{shape:<16}{name:<34}{'n/a':>10}{'':>9}{'':>8}{'':>7}{'':>9}  "
                      f"{'-':<12}{note}")
                continue
            gops = ops / t / 1e9
            peak = peaks.get(roof) if roof else None
            rp = f"{gops / peak:6.2f}" if isinstance(peak, float) else "   n/a"
            ri = f"{int_mm / t:8.2f}x" if int_mm else "      n/a"
            print(f"{shape:<16}{name:<34}{t * 1e3:10.3f}{gops:9.1f}{base / t:7.2f}x{rp:>7}"
                  f"{ri:>9}  {roof or '-':<12}{note}")
        print()
    key = "2048,2048,2048"
    if any(s == key for s, _ in results):
        pc = results[(key, "lrqc int8 per_channel")][0]
        w4 = results[(key, "lrqc w4a8 per_channel")][0]
        pv, im = results[(key, "lrqc int8 per_vector(64)")][0], results[(key, "torch._int_mm")][0]
        ops = 2.0 * 2048**3
        vnni = peaks.get("vnni")
        frac = ops / pc / 1e9 / vnni if isinstance(vnni, float) else None
        print("targets at 2048^3:")
        print("  per-channel int8 >= 0.95 of VNNI peak: " +
              (f"{frac:.2f} ({'met' if frac >= 0.95 else 'NOT met'})" if frac is not None
               else f"not measurable here: {vnni}"))
        print("  per-channel int8 >= 1.05x torch._int_mm: " +
              (f"{im / pc:.2f}x ({'met' if im / pc >= 1.05 else 'NOT met'})" if im else "n/a"))
        print(f"  int4 weights within 10 % of int8: {w4 / pc:.2f}x the int8 time "
              f"({'met' if w4 <= 1.10 * pc else 'NOT met'})")
        print(f"  per_vector(64) within 25 % of per-channel: {pv / pc:.2f}x "
              f"({'met' if pv <= 1.25 * pc else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
