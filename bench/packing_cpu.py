"""bench/cpu.py's packing section: weights of 3, 5 and 6 bits packed densely next to the int4
and int8 kernels of the same product, weight-only (a: float32) and w·a8 (a: int8 per_channel),
with numpy float32 in the same rounds. Per row: the bits of each stored code, the bytes per
weight of everything pack() keeps of B (codes, scales, bias: lrqc.plan.layout.storage), the
median time, and its ratios to the int4 and int8 rows of the same mode (above 1: slower).
Targets: 3-bit weights within 15 % of int4's time, with at least 25 % less weight memory.
"""

from __future__ import annotations

from functools import partial

import common
import numpy as np

from lrqc.plan.storage import storage

NUMPY = "numpy float32"
BITS = (8, 4, 3, 5, 6)
MODES = (("weight-only", "float32"), ("w·a8", "int8 per_channel"))
SHAPES = "2048,2048,2048;16,4096,4096"


def name(mode: str, bits: int) -> str:
    return f"{mode} int{bits}"


def packing_shape(m: int, n: int, k: int, args) -> list[dict]:
    """The rows of one shape (interleaved rounds of every kernel and numpy)."""
    shape = f"{m},{n},{k}"
    common.log(f"packing {shape}:")
    rng = np.random.default_rng(0)
    A = rng.standard_normal((m, k)).astype(np.float32)
    B = rng.standard_normal((k, n)).astype(np.float32)
    calls: dict = {NUMPY: partial(np.matmul, A, B)}
    info: dict[str, dict] = {NUMPY: {"mode": "-", "bits": 32, "bpw": 4.0, "codes": 4 * n * k,
                                     "note": ""}}
    for mode, a in MODES:
        for bits in BITS:
            label = name(mode, bits)
            s = common.scheme(f"a: {a}\n b: int{bits} per_channel")
            try:
                kernel, build = common.compile_kernel(s, m, n, k, label)
            except Exception as exc:  # a refusal or compiler failure: the row says so
                info[label] = {"mode": mode, "bits": None, "bpw": None, "codes": None,
                               "note": f"{type(exc).__name__}: {exc}"[:120]}
                continue
            st = storage(kernel.plan)
            calls[label] = partial(kernel, A, kernel.pack(B))
            info[label] = {"mode": mode, "bits": st["code_bits"], "bpw": st["bytes_per_weight"],
                           "codes": st["codes"],
                           "note": f"rule {kernel.rule}, build {build:.1f} s"}
    common.log(f"  timing {len(calls)} contenders, {args.rounds} rounds")
    errors: dict[str, str] = {}
    times = common.interleaved(calls, args.rounds, args.slow, args.gap, errors, {}, args.warm)
    med = {label: float(np.median(ts)) for label, ts in times.items() if ts}
    rows = []
    for label, row in info.items():
        t = med.get(label)
        mode = row["mode"]
        t4, t8 = med.get(name(mode, 4)), med.get(name(mode, 8))
        rows.append({"shape": shape, "method": label, **row,
                     "ms": t * 1e3 if t else None,
                     "vs_int4": t / t4 if t and t4 else None,
                     "vs_int8": t / t8 if t and t8 else None,
                     "vs_numpy": med[NUMPY] / t if t and NUMPY in med else None,
                     "note": "; ".join(filter(None, [row["note"], errors.get(label, "")]))})
    return rows


def _f(v, spec: str, width: int) -> str:
    return f"{format(v, spec):>{width}}" if v is not None else f"{'n/a':>{width}}"


def print_rows(rows: list[dict], head: bool) -> None:
    if head:
        line = (f"{'shape':<16}{'method':<22}{'bits':>5}{'B/weight':>10}{'ms':>10}"
                f"{'/int4':>7}{'/int8':>7}{'numpy/':>8}  note")
        print("\n" + line + "\n" + "-" * len(line))
    for r in rows:
        print(f"{r['shape']:<16}{r['method']:<22}{_f(r['bits'], 'd', 5)}"
              f"{_f(r['bpw'], '.4f', 10)}{_f(r['ms'], '.3f', 10)}{_f(r['vs_int4'], '.2f', 7)}"
              f"{_f(r['vs_int8'], '.2f', 7)}{_f(r['vs_numpy'], '.2f', 8)}  {r['note']}")
    print(flush=True)


def targets(rows: list[dict], add) -> None:
    """add(what, value, why, goal, at_least) for each shape and mode measured: 3-bit time over
    int4's (at most 1.15) and the bytes of 3-bit codes over int4's (at most 0.75; `why` gives
    the ratio of everything pack() keeps, scales, column sums and bias included)."""
    by = {(r["shape"], r["method"]): r for r in rows}
    for shape in dict.fromkeys(r["shape"] for r in rows):
        for mode, _ in MODES:
            r3, r4 = by.get((shape, name(mode, 3))), by.get((shape, name(mode, 4)))
            if r3 is None or r4 is None:
                continue
            add(f"{mode} int3 time / int4 at {shape}", r3["vs_int4"],
                "" if r3["vs_int4"] else "not measured", 1.15, False)
            if r3["codes"] and r4["codes"]:
                add(f"{mode} int3 weight codes / int4's at {shape}", r3["codes"] / r4["codes"],
                    f"all of B's bytes: {r3['bpw'] / r4['bpw']:.4f}", 0.75, False)
