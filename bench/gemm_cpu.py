"""CPU GEMM benchmark: lrqc kernels next to the machine's integer peaks (VNNI vpdpbusd where
the CPU has it; AVX2 vpmaddwd on widened bytes, and vpmaddubsw + vpmaddwd, the byte form torch's
int8 uses), numpy float32, torch._int_mm and torch's dynamic-quantized
Linear, measured in one run (medians). Each lrqc row is the whole per-call work (copy of A,
quantize_a, GEMM with its epilogue); the note column splits it.

    python bench/gemm_cpu.py                       # the default shapes
    python bench/gemm_cpu.py --shapes 1024,1024,1024 --repeat 5

Peers that this machine or install lacks (VNNI, torch) are printed as n/a with the reason.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from functools import partial
from pathlib import Path

os.environ.setdefault("TVM_THREAD_POOL_SPIN_COUNT", "0")  # idle TVM threads must not steal cores

import numpy as np

import lrqc
from lrqc.backend.target import host_cpu_flags

SCHEMES = {
    "int8 per_channel": "a: int8 per_channel\n b: int8 per_channel",
    "w4a8 per_channel": "a: int8 per_channel\n b: int4 per_channel",
    "int8 per_vector(64)": "a: int8 per_vector(64)\n b: int8 per_vector(64)",
    "float16 x int4 per_channel": "a: float16\n b: int4 per_channel",  # weights in 16 bits
}
DEFAULT_SHAPES = "1024,1024,1024;2048,2048,2048;4096,4096,4096;16,4096,4096;256,4096,4096"


def median_time(fn, repeat: int, budget_s: float) -> float:
    t0 = time.perf_counter()
    fn()
    first = time.perf_counter() - t0
    if first > budget_s / 3:  # a very slow peer (torch._int_mm on CPU): one timed run is enough
        return first
    times, start = [], time.perf_counter()
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        if time.perf_counter() - start > budget_s and len(times) >= 2:
            break
    return float(np.median(times))


PEAK_MODES = {  # bench/peak.c modes: what each measures
    "vnni": "VNNI vpdpbusd",
    "avx2": "AVX2 vpmaddwd on widened bytes",
    "avx2_u8": "AVX2 vpmaddubsw + vpmaddwd by ones (exact only where its int16 pair sums fit)",
}


def int_peaks() -> list[tuple[float, str]]:
    """(GOPS, instruction) of bench/peak.c for every integer dot product this CPU has, the one
    lrqc's fastest rule issues first (VNNI vpdpbusd, else AVX2 vpmaddwd); [] without AVX2 or a
    C compiler."""
    flags = host_cpu_flags()
    modes = (["vnni"] if "avx512_vnni" in flags else []) + (
        ["avx2", "avx2_u8"] if "avx2" in flags else [])
    cc = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
    if not modes or cc is None:
        return []
    src = Path(__file__).with_name("peak.c")
    out = []
    with tempfile.TemporaryDirectory() as d:
        exe = Path(d) / "peak"
        subprocess.run([cc, "-O2", "-fopenmp", str(src), "-o", str(exe)], check=True,
                       capture_output=True)
        for mode in modes:
            runs = [float(subprocess.run([str(exe), mode, "100000000"], capture_output=True,
                                         text=True, check=True).stdout.split()[0])
                    for _ in range(5)]
            out.append((float(np.median(runs)), PEAK_MODES[mode]))
    return out


def int_peak() -> tuple[float | None, str]:
    """(GOPS, instruction) of the peak the /peak columns compare with: the instruction lrqc's
    fastest rule on this CPU issues (VNNI vpdpbusd, else AVX2 vpmaddwd)."""
    flags = host_cpu_flags()
    if "avx512_vnni" not in flags and "avx2" not in flags:
        return None, "this CPU has neither AVX-512 VNNI nor AVX2"
    peaks = int_peaks()
    return peaks[0] if peaks else (None, "no C compiler")


def torch_peers(A, B, repeat, budget, int_mm: bool = True):
    """{name: (median seconds or None, note)} of torch._int_mm (unless int_mm=False) and
    torch's dynamic-quantized int8 Linear on A @ B; the Linear's output is kept under "C"."""
    try:
        import torch
    except ImportError:
        return {"torch._int_mm": (None, "torch not installed (pip install -e '.[bench]')"),
                "torch dynamic-quant Linear": (None, "torch not installed")}
    torch.set_num_threads(os.cpu_count() or 1)
    out = {}
    a8 = torch.randint(-127, 128, A.shape, dtype=torch.int8)
    b8 = torch.randint(-127, 128, B.shape, dtype=torch.int8)
    try:
        if int_mm:
            out["torch._int_mm"] = (median_time(lambda: torch._int_mm(a8, b8), repeat, budget), "")
    except RuntimeError as exc:  # torch refuses some shapes (its errors are RuntimeErrors)
        out["torch._int_mm"] = (None, str(exc).splitlines()[0][:60])
    lin = torch.nn.Linear(B.shape[0], B.shape[1], bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.from_numpy(B.T.astype(np.float32)))
    with warnings.catch_warnings():  # torch.ao.quantization is deprecated in favour of torchao
        warnings.simplefilter("ignore")
        q = torch.ao.quantization.quantize_dynamic(lin, {torch.nn.Linear}, dtype=torch.qint8)
    x = torch.from_numpy(A)
    with torch.no_grad():
        out["torch dynamic-quant Linear"] = (median_time(lambda: q(x), repeat, budget), "")
        out["C"] = q(x).numpy()
    return out


def bench_args(doc: str, shapes: str, argv=None):
    """--shapes, --repeat, --budget of the bench scripts."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--shapes", default=shapes, help="M,N,K;M,N,K;...")
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--budget", type=float, default=20.0, help="seconds per measurement at most")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    args = bench_args(__doc__, DEFAULT_SHAPES, argv)
    peaks = int_peaks()
    peak, instr = peaks[0] if peaks else int_peak()
    vnni = "avx512_vnni" in host_cpu_flags()
    print("integer peaks, all threads (bench/peak.c, medians of 5; /peak is the first):")
    for gops, what in peaks or [(None, instr)]:
        print(f"  {gops:.0f} GOPS: {what}" if gops else f"  n/a: {what}")
    print(f"lrqc {lrqc.__version__}, {os.cpu_count()} CPUs; medians of up to {args.repeat} runs\n")
    head = (f"{'shape':<16}{'method':<34}{'ms':>10}{'GOPS':>9}{'/numpy':>8}{'/peak':>7}"
            f"{'/int_mm':>9}  note")
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
                 "")]
        peers = torch_peers(A, B, args.repeat, args.budget)
        peers.pop("C", None)
        for name, (t, note) in peers.items():
            rows.append((name, t, note))
        for name, body in SCHEMES.items():
            s = lrqc.parse_schemes(f"scheme s {{ {body} }}")["s"]
            t0 = time.perf_counter()
            kernel = lrqc.compile(s, M=m, N=n, K=k)
            build = time.perf_counter() - t0
            packed = kernel.pack(B)
            t = median_time(partial(kernel, A, packed), args.repeat, args.budget)
            st = kernel.stage_times(A, packed, repeat=3)
            note = (f"rule {kernel.rule}, build {build:.1f} s; copy+quantize A "
                    f"{(st['copy_a'] + st['quantize_a']) * 1e3:.2f} ms, "
                    f"gemm {st['gemm'] * 1e3:.2f} ms")
            rows.append((f"lrqc {name}", t, note))
            time.sleep(0.2)
        base = rows[0][1]
        int_mm = dict((r[0], r[1]) for r in rows).get("torch._int_mm")
        for name, t, note in rows:
            results[(shape, name)] = t
            if t is None:
                print(f"{shape:<16}{name:<34}{'n/a':>10}{'':>9}{'':>8}{'':>7}{'':>9}  {note}")
                continue
            gops = ops / t / 1e9
            rp = f"{gops / peak:6.2f}" if peak else "   n/a"
            ri = f"{int_mm / t:8.2f}x" if int_mm else "      n/a"
            print(f"{shape:<16}{name:<34}{t * 1e3:10.3f}{gops:9.1f}{base / t:7.2f}x{rp:>7}"
                  f"{ri:>9}  {note}")
        print()
    key = "2048,2048,2048"
    if any(s == key for s, _ in results):
        pc = results.get((key, "lrqc int8 per_channel"))
        w4 = results.get((key, "lrqc w4a8 per_channel"))
        pv, im = results.get((key, "lrqc int8 per_vector(64)")), results.get((key, "torch._int_mm"))
        ops = 2.0 * 2048**3
        print("targets at 2048^3:")
        frac = f"{ops / pc / 1e9 / peak:.2f}" if peak else "n/a"
        print("  per-channel int8 >= 0.95 of VNNI peak: " +
              (f"{frac} ({'met' if ops / pc / 1e9 >= 0.95 * peak else 'NOT met'})" if vnni else
               f"not measurable here: this CPU lacks VNNI ({frac} of the {instr} peak)"))
        print("  per-channel int8 >= 1.05x torch._int_mm: " +
              (f"{im / pc:.2f}x ({'met' if im / pc >= 1.05 else 'NOT met'})" if im else "n/a"))
        print(f"  int4 weights within 10 % of int8: {w4 / pc:.2f}x the int8 time "
              f"({'met' if w4 <= 1.10 * pc else 'NOT met'})")
        print(f"  per_vector(64) within 25 % of per-channel: {pv / pc:.2f}x "
              f"({'met' if pv <= 1.25 * pc else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
