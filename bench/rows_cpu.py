"""bench/cpu.py's rows section: what a call of m rows costs on a kernel compiled for an M range
(1..hi, its buckets 4, 8, .., 64, 96, 128, 192, .., hi), the way lrqc.torch and variable-length
inputs use kernels, next to torch's dynamic-quant Linear at the same m (which takes any m).

Per m, in the same interleaved rounds: the range kernel on the call's m rows; the same kernel
on A padded with copies of its last row to its bucket's rows (what every call of that bucket
cost when GEMMs computed all of their bucket's rows); a kernel compiled for exactly m rows;
and torch's Linear. `range/exact` near 1 says the call pays for its rows, `padded/range`
what skipping the bucket's padding saves (the quantization pass and call overheads still
cover the bucket or the call alike).
"""

from __future__ import annotations

from functools import partial

import common
import numpy as np

from lrqc.plan.buckets import m_buckets

RANGE, PADDED, EXACT = "range kernel", "range, padded", "exact kernel"
TORCH_DQ = "torch dynamic-quant Linear"
SCHEME = "a: int8 per_channel\n b: int8 per_channel"
SHAPE = "512,1024,1024"  # hi, N, K
ROWS = (65, 100, 200, 300, 444, 512)


def rows_section(hi: int, n: int, k: int, rows: tuple[int, ...], args) -> list[dict]:
    """The table's rows: one per m (interleaved rounds of the four contenders at each m)."""
    common.log(f"rows 1..{hi},{n},{k}:")
    s = common.scheme(SCHEME)
    rng = np.random.default_rng(0)
    B = rng.standard_normal((k, n)).astype(np.float32)
    kernel, build = common.compile_kernel(s, f"1..{hi}", n, k, "w8a8 on an M range")
    packed = kernel.pack(B)
    buckets = m_buckets(1, hi)
    out = []
    for m in rows:
        bucket = next(b for b in buckets if b >= m)
        A = rng.standard_normal((m, k)).astype(np.float32)
        padded = np.concatenate([A, np.repeat(A[-1:], bucket - m, axis=0)])
        exact, _ = common.compile_kernel(s, m, n, k, f"w8a8 for {m} rows")
        calls = {RANGE: partial(kernel, A, packed), PADDED: partial(kernel, padded, packed),
                 EXACT: partial(exact, A, exact.pack(B))}
        note = ""
        torch_call = common.torch_calls(A, B, int_mm=False).get(TORCH_DQ)
        if isinstance(torch_call, str):
            note = torch_call
        elif torch_call is not None:
            calls[TORCH_DQ] = torch_call
        errors: dict[str, str] = {}
        times = common.interleaved(calls, args.rounds, args.slow, args.gap, errors, {},
                                   args.warm)
        med = {name: float(np.median(ts)) * 1e3 for name, ts in times.items() if ts}
        r, e, p, t = (med.get(x) for x in (RANGE, EXACT, PADDED, TORCH_DQ))
        out.append({"shape": f"{m},{n},{k}", "m": m, "bucket": bucket, "range_ms": r,
                    "padded_ms": p, "exact_ms": e, "torch_dq_ms": t,
                    "range_vs_exact": r / e if r and e else None,
                    "padded_vs_range": p / r if p and r else None,
                    "torch_dq_vs_range": t / r if t and r else None,
                    "note": "; ".join(filter(None, [note, *errors.values()]))})
    return out


def _f(v, spec: str, width: int) -> str:
    return f"{format(v, spec):>{width}}" if v is not None else f"{'n/a':>{width}}"


def print_rows(rows: list[dict], hi: int) -> None:
    line = (f"{'shape':<16}{'bucket':>7}{'range ms':>10}{'padded':>9}{'exact':>9}"
            f"{'torch_dq':>10}{'range/exact':>12}{'padded/range':>13}{'/torch_dq':>10}  note")
    print(f"\nw8a8 per_channel compiled for M = 1..{hi}, called with m rows "
          "(padded: A padded to its bucket's rows; exact: a kernel for m rows)")
    print(line + "\n" + "-" * len(line))
    for r in rows:
        print(f"{r['shape']:<16}{r['bucket']:>7}{_f(r['range_ms'], '.3f', 10)}"
              f"{_f(r['padded_ms'], '.3f', 9)}{_f(r['exact_ms'], '.3f', 9)}"
              f"{_f(r['torch_dq_ms'], '.3f', 10)}{_f(r['range_vs_exact'], '.2f', 12)}"
              f"{_f(r['padded_vs_range'], '.2f', 13)}{_f(r['torch_dq_vs_range'], '.2f', 10)}"
              f"  {r['note']}")
    print(flush=True)


def parse_rows(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split(",") if v.strip())

