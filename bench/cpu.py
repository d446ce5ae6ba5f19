"""lrqc next to what a CPU user already has, in one run: the machine (CPU, instruction sets, the
peaks of bench/peak.c), then per shape numpy float32, torch's dynamic-quant Linear,
torch._int_mm and lrqc's w8a8, w8a7 (torch's own formats), w4a8, w4a4 and VS-Quant w4a4
kernels, then the time that
compensation (LRQMM low-rank terms, sparse residuals) adds to the direct kernel of the same
base, then 3-, 5- and 6-bit weights packed densely next to the int4 and int8 kernels
(bench/packing_cpu.py), then calls of fewer rows than their M bucket's (bench/rows_cpu.py),
then Linear layers on a few rows through lrqc.torch next to torch's (bench/layers_cpu.py),
then the targets, each met or NOT met.

    python bench/cpu.py                         # every section (minutes on 2 cores)
    python bench/cpu.py --quick                 # fewer rounds and peak runs
    python bench/cpu.py --sections gemm --shapes "16,4096,4096;2048,2048,2048"
    python bench/cpu.py --sections packing     # dense bit packing: 3/5/6-bit vs int4, int8
    python bench/cpu.py --sections rows        # m rows on a kernel for M = 1..512
    python bench/cpu.py --sections layers      # lrqc.torch Linear on 1, 16, 128 rows
    python bench/cpu.py --json run.json         # every number too, for later comparison

Timing: medians of interleaved rounds. Each callable is called twice to warm up (a first call
much slower than the median is noted: a one-time cost); one whose second call took over --slow
seconds and 10x the others' (torch._int_mm on CPU) is timed by that call alone. Then every
round times each other contender of a shape once, in turn (the order rotating by one per
round, with a pause of --gap seconds before each call: numpy's OpenBLAS threads spin for about
0.1 s after a call and slow whatever runs next), so a slow phase of a shared machine hits every
contender of the round; --warm N calls each contender N more times, untimed, right before its
timed call (back to back, as a model calls its layers). lrqc kernels are timed as a user calls
them: kernel(A, packed) on float32 A, B packed once ahead (the copy and quantization of A, the
GEMM and its epilogue).

Columns: GOPS = 2MNK / time; /numpy and /torch_dq: the peer's time over the row's (above 1:
faster than the peer); /peak: the row's GOPS over the roof (a bench/peak.c mode, all threads, no
memory traffic) of the instruction its GEMM issues: the schedule rule's instruction for lrqc
kernels, vfmadd231ps for numpy, fbgemm's for torch's Linear. Compensation: "vs direct" is the
median over rounds of (compensated time / direct time in the same round); U[0, 1) data (the
LRQMM setting, where a sparse threshold th keeps 1 - th of the entries; "other=packed": A's
low-rank term multiplies B's codes, not a float32 copy of B); error is
||C - AB||_F / ||AB||_F against float64. torch is optional (pip install -e '.[bench]'): without
it its rows say so. Progress lines (compilation) go to stderr.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # first: it sets the BLAS environment before numpy loads
import comp_bounds
import layers_cpu
import numpy as np
import packing_cpu
import rows_cpu

import lrqc

ROOT = Path(__file__).resolve().parent.parent
SECTIONS = ("peaks", "gemm", "compensation", "packing", "rows", "layers")

NUMPY, TORCH_DQ, INT_MM = "numpy float32", "torch dynamic-quant Linear", "torch._int_mm"
W8A8, W4A8, VSQ = "lrqc w8a8 per_channel", "lrqc w4a8 per_channel", "lrqc VS-Quant w4a4"
W4A4 = "lrqc w4a4 per_channel"  # VS-Quant's formats with one scale per row and column
# torch's own formats, like for like: its dynamic-quant Linear (quantize_dynamic's default
# qconfig) quantizes activations per tensor to 7 bits, min-max (reduce_range, so that
# vpmaddubsw's pair sums cannot saturate), and weights per tensor, symmetric int8
W8A7 = "lrqc w8a7 (torch's formats)"
# the gemm section's shapes: the targets' shapes (256,1024,1024: VS-Quant's README example)
GEMM_SHAPES = ("2048,2048,2048;512,3072,768;1024,1536,384;1024,384,1536;16,4096,4096;"
               "256,1024,1024")


def gemm_schemes() -> dict[str, lrqc.Scheme]:
    return {W8A8: common.scheme("a: int8 per_channel\n b: int8 per_channel"),
            W4A8: common.scheme("a: int8 per_channel\n b: int4 per_channel"),
            W4A4: common.scheme("a: uint4 per_channel\n b: int4 per_channel"),
            W8A7: common.scheme("a: uint7 per_tensor\n b: int8 per_tensor"),
            VSQ: lrqc.load_schemes(ROOT / "examples" / "vsquant.lrq")["vsquant_w4a4"]}


FLOOR_D, TRUNC_D = "direct int8 per_tensor floor", "direct int8 per_channel trunc"
R1, R16, R16B = "LRQMM rank 1", "LRQMM rank 16", "LRQMM rank 16, B only"
R1P = "LRQMM rank 1, other=packed"  # A's term times B's codes: no float32 B to read
R16P = "LRQMM rank 16, other=packed"
R16H = "LRQMM rank 16, B in bfloat16"  # B's values bfloat16's (a bfloat16 model's weights):
#   pack holds the exact B in 16 bits
SP5, SP35 = "sparse 5 %", "sparse 35 %"
DSEG = "dense segments"  # the cost of the sparse terms run as K segments of the GEMM
COMP = {  # name: (scheme body, the direct kernel it is compared with)
    FLOOR_D: (common.both(common.FLOOR), None),
    R1: (common.both(common.FLOOR, common.lowrank(1)), FLOOR_D),
    R1P: (f"a: {common.FLOOR} + {common.lowrank(1, 'packed')}\n"
          f" b: {common.FLOOR} + {common.lowrank(1)}", FLOOR_D),
    R16: (common.both(common.FLOOR, common.lowrank(16)), FLOOR_D),
    R16P: (f"a: {common.FLOOR} + {common.lowrank(16, 'packed')}\n"
           f" b: {common.FLOOR} + {common.lowrank(16)}", FLOOR_D),
    R16H: (common.both(common.FLOOR, common.lowrank(16)), FLOOR_D),
    R16B: (f"a: {common.FLOOR}\n b: {common.FLOOR} + {common.lowrank(16)}", FLOOR_D),
    TRUNC_D: (common.both(common.TRUNC_PC), None),
    SP5: (common.both(common.TRUNC_PC, common.sparse(5)), TRUNC_D),
    SP35: (common.both(common.TRUNC_PC, common.sparse(35)), TRUNC_D),
    DSEG: (common.both(common.TRUNC_PC, "dense(int8 per_tensor round=trunc)"), TRUNC_D),
}
COMP_CASES = {  # shape: the compensated rows measured there (other shapes: every row)
    "2048,2048,2048": [R1, R1P, R16, R16P],
    "256,4096,4096": [R1, R1P, R16, R16P, R16H, R16B, SP5, SP35, DSEG],
    "16,4096,4096": [R16B],
}


def bf16_values(B: np.ndarray) -> np.ndarray:
    """B's float32 values with the low 16 bits of each cleared: bfloat16 values (B rounded
    toward zero), as a bfloat16 model's weights widened to float32 are."""
    return (B.view(np.uint32) & np.uint32(0xFFFF0000)).view(np.float32)


B_OF = {R16H: bf16_values}  # rows whose B is B_OF[row](B)
B_BYTES = {R16H: 2}  # bytes per value of the exact B that A's term reads (default 4)


def parse_shapes(text: str) -> list[tuple[int, int, int]]:
    out = []
    for part in filter(None, (p.strip() for p in text.split(";"))):
        dims = [int(x) for x in part.split(",")]
        if len(dims) != 3 or min(dims) < 1:
            raise SystemExit(f"cpu.py: a shape is M,N,K with positive sizes, got {part!r}")
        out.append((dims[0], dims[1], dims[2]))
    return out


def key(m: int, n: int, k: int) -> str:
    return f"{m},{n},{k}"


def failure(exc: BaseException) -> str:
    """The first line of an exception, for a row that could not be measured."""
    line = (str(exc).strip().splitlines() or [""])[0]
    kind = "" if isinstance(exc, lrqc.LrqcError) else f"{type(exc).__name__}: "
    return f"not compiled: {kind}{line}"[:110]


def call_note(t: float | None, calls: int, first: float | None, rounds: int) -> str:
    """What the note column says about the calls: a contender measured by one call (slow), or
    a first call far slower than the median (a one-time cost the user pays once)."""
    if t is None:
        return ""
    if calls < rounds:
        return f"{calls} timed call (slow)"
    if first and first > max(0.1, 5 * t):
        return f"first call {first:.2f} s"
    return ""


def med(ts: list[float]) -> float | None:
    return float(np.median(ts)) if ts else None


# ---- 1. the machine --------------------------------------------------------------------------

def print_machine(info: dict) -> None:
    cores = (f"{info['cores_per_socket'] * info.get('sockets', 1)} cores, "
             f"{info.get('threads_per_core', 1)} thread(s) per core"
             if "cores_per_socket" in info else "cores unknown")
    print(f"CPU: {info['model']}; {info['cpus']} CPUs ({cores})")
    print("instruction sets: " + ", ".join(f"{f} {'yes' if v else 'no'}"
                                           for f, v in info["isa"].items()))
    blas = "; ".join(f"{b['internal_api']} {b['version']} ({b['architecture']} kernels, "
                     f"{b['num_threads']} threads)" for b in info["blas"]) or "unknown"
    print(f"numpy {info['numpy']}, BLAS: {blas}")
    if info["blas_env_dropped"]:
        print("  taken out of the environment before numpy loaded: " +
              ", ".join(f"{k}={v}" for k, v in info["blas_env_dropped"].items()))
    if info["blas_env_kept"]:
        print("  numpy was loaded before bench/common.py, so these still apply: " +
              ", ".join(f"{k}={v}" for k, v in info["blas_env_kept"].items()))
    t = info["torch"]
    print(f"torch {t['version']}, {t['threads']} threads, quantized engine {t['quantized_engine']}"
          if t else common.TORCH_MISSING)
    print(f"lrqc {info['lrqc']}")


def print_peaks(peaks: dict[str, float | str], runs: int) -> None:
    print(f"\npeaks, all threads (bench/peak.c, no memory traffic, medians of {runs} runs):")
    width = max([12, *(len(m) + 1 for m in peaks)])
    for mode, v in peaks.items():
        _, what, unit = common.PEAK_MODES[mode]
        val = f"{v:8.0f} {unit:<6}" if isinstance(v, float) else f"{'n/a':>8} {'':<6}"
        print(f"  {mode:<{width}}{val}  {what}" + ("" if isinstance(v, float) else f": {v}"))


# ---- 2. GEMMs next to numpy and torch --------------------------------------------------------

def gemm_shape(m, n, k, args, peaks, flags) -> list[dict]:
    shape = key(m, n, k)
    common.log(f"gemm {shape}:")
    rng = np.random.default_rng(0)
    A = rng.standard_normal((m, k)).astype(np.float32)
    B = rng.standard_normal((k, n)).astype(np.float32)
    calls: dict = {NUMPY: partial(np.matmul, A, B)}
    notes: dict[str, str] = {}
    roofs: dict[str, str | None] = {NUMPY: common.numpy_roof(flags),
                                    TORCH_DQ: common.torch_roof(flags)}
    for name, fn in common.torch_calls(A, B).items():
        if isinstance(fn, str):
            notes[name] = fn
        else:
            calls[name] = fn
    rules: dict[str, str] = {}
    for name, s in gemm_schemes().items():
        try:
            kernel, build = common.compile_kernel(s, m, n, k, name)
        except Exception as exc:  # a refusal (LrqcError) or a compiler failure: the row says so
            notes[name] = failure(exc)
            continue
        calls[name] = partial(kernel, A, kernel.pack(B))
        roofs[name], _ = common.roof_mode(kernel, flags)
        rules[name] = kernel.rule
        notes[name] = f"rule {kernel.rule}, build {build:.1f} s"
    common.log(f"  timing {len(calls)} contenders, {args.rounds} rounds")
    errors: dict[str, str] = {}
    first: dict[str, float] = {}
    times = common.interleaved(calls, args.rounds, args.slow, args.gap, errors, first, args.warm)
    notes.update(errors)
    t_np, t_dq = med(times.get(NUMPY, [])), med(times.get(TORCH_DQ, []))
    least = direct_bound(m, n, k, peaks.get(roofs.get(W8A8) or ""))
    rows = []
    for name in [NUMPY, TORCH_DQ, INT_MM, W8A8, W8A7, W4A8, W4A4, VSQ]:
        t = med(times.get(name, []))
        roof = roofs.get(name)
        peak = peaks.get(roof) if roof else None
        gops = 2.0 * m * n * k / t / 1e9 if t else None
        note = notes.get(name, "")
        note = "; ".join(filter(None, [note, call_note(t, len(times.get(name, [])),
                                                       first.get(name), args.rounds)]))
        rows.append({
            "shape": shape, "method": name, "ms": t * 1e3 if t else None, "gops": gops,
            "vs_numpy": t_np / t if t and t_np else None,
            "vs_torch_dq": t_dq / t if t and t_dq else None,
            "vs_peak": gops / peak if gops and isinstance(peak, float) else None,
            "roof": roof, "rule": rules.get(name), "calls": len(times.get(name, [])),
            "first_call_ms": first[name] * 1e3 if name in first else None, "note": note,
            **(least if name == W8A8 else {})})
    return rows


def direct_bound(m: int, n: int, k: int, peak: float | str | None) -> dict:
    """{"least_ms", "least_why"}: the least time of a call of lrqc's direct int8 kernel as it
    runs (a pass over A, then the GEMM) on this machine: its integer work at the measured
    peak of its instruction (peak: GOPS, from the peaks section) after the pass's bytes (A read
    in float32, its codes written) at the measured memory bandwidth; {} without the peak."""
    if not isinstance(peak, float):
        return {}
    gemm = 2.0 * m * n * k / (peak * 1e9) * 1e3
    nbytes = 5 * m * k
    pass_ms = nbytes / bandwidth() * 1e3
    return {"least_ms": gemm + pass_ms,
            "least_why": f"the GEMM at the {peak:.0f} GOPS peak: {gemm:.3g} ms, after A's pass "
                         f"({nbytes / 1e6:.3g} MB at {bandwidth() / 1e9:.1f} GB/s): "
                         f"{pass_ms:.3g} ms"}


def fmt(v, spec: str, width: int, suffix: str = "") -> str:
    return f"{format(v, spec) + suffix:>{width}}" if v is not None else f"{'n/a':>{width}}"


def print_head(head: str) -> None:
    """A table's header line and its rule."""
    print("\n" + head)
    print("-" * len(head))


def print_gemm_head() -> None:
    print_head(f"{'shape':<16}{'method':<28}{'ms':>10}{'GOPS':>8}{'/numpy':>8}{'/torch_dq':>10}"
               f"{'/peak':>7}  {'roof':<12}note")


def print_gemm_rows(rows: list[dict]) -> None:
    for r in rows:
        print(f"{r['shape']:<16}{r['method']:<28}{fmt(r['ms'], '.3f', 10)}"
              f"{fmt(r['gops'], '.1f', 8)}{fmt(r['vs_numpy'], '.2f', 8, 'x')}"
              f"{fmt(r['vs_torch_dq'], '.2f', 10, 'x')}{fmt(r['vs_peak'], '.2f', 7)}"
              f"  {r['roof'] or '-':<12}{r['note']}")
    print(flush=True)


# ---- 3. compensation overhead ----------------------------------------------------------------

def comp_shape(m, n, k, args, peaks: dict) -> list[dict]:
    shape = key(m, n, k)
    common.log(f"compensation {shape}:")
    names = COMP_CASES.get(shape, [c for c, (_, d) in COMP.items() if d])
    names = [d for d in dict.fromkeys(COMP[c][1] for c in names)] + names  # directs first
    rng = np.random.default_rng(0)
    A = rng.random((m, k)).astype(np.float32)
    B = rng.random((k, n)).astype(np.float32)
    bs = {name: B_OF.get(name, lambda b: b)(B) for name in names}
    ref = A.astype(np.float64) @ B.astype(np.float64)
    refs = {name: A.astype(np.float64) @ b.astype(np.float64) if b is not B else ref
            for name, b in bs.items()}
    calls: dict = {NUMPY: partial(np.matmul, A, B)}
    kernels, notes, packs = {}, {}, {}
    for name in names:
        try:
            kernel, build = common.compile_kernel(common.scheme(COMP[name][0]), m, n, k, name)
        except Exception as exc:  # e.g. A's rank above M (LrqcError)
            notes[name] = failure(exc)
            continue
        kernels[name] = kernel
        packs[name] = kernel.pack(bs[name])
        calls[name] = partial(kernel, A, packs[name])
        notes[name] = f"rule {kernel.rule}, build {build:.1f} s"
    common.log(f"  timing {len(calls)} contenders, {args.rounds} rounds")
    first: dict[str, float] = {}
    times = common.interleaved(calls, args.rounds, args.slow, args.gap, first=first,
                               warm=args.warm)
    rows = []
    for name in [NUMPY] + names:
        ts = times.get(name, [])
        direct = COMP[name][1] if name in COMP else None
        ratio = None
        if ts and direct and times.get(direct):
            ratio = float(np.median([c / d for c, d in zip(ts, times[direct], strict=False)]))
        err, note = None, notes.get(name, "")
        if ts:
            C = calls[name]()
            err = common.rel(C, refs.get(name, ref))
            extra = "; ".join(filter(None, (short_note(n) for n in getattr(
                kernels.get(name), "last_notes", []))))
            note = "; ".join(filter(None, [note, call_note(med(ts), len(ts), first.get(name),
                                                           args.rounds), extra]))
        rows.append({"shape": shape, "method": name if name == NUMPY else f"lrqc {name}",
                     "case": name, "direct": direct, "ms": med(ts) * 1e3 if ts else None,
                     "rel_error": err, "vs_direct": ratio, "calls": len(ts),
                     "first_call_ms": first[name] * 1e3 if name in first else None,
                     "note": note, **sparse_bound(kernels.get(name), A, packs.get(name), peaks),
                     **lowrank_bound(kernels.get(name), m, n, k, peaks,
                                     B_BYTES.get(name, 4))})
    by_case = {r["case"]: r for r in rows}
    for r in rows:  # the ratio to the direct kernel the low-rank terms' work allows at best
        d = by_case.get(r["direct"]) if r["direct"] else None
        if r.get("floor_ms") is not None and d and d["ms"]:
            r["floor_ratio"] = (d["ms"] + r["floor_ms"]) / d["ms"]
    return rows


def lowrank_bound(kernel, m: int, n: int, k: int, peaks: dict, b_bytes: int = 4) -> dict:
    """The least time the kernel's low-rank terms can add here (bench/comp_bounds.py), the
    exact B held in b_bytes per value."""
    if kernel is None:
        return {}
    fma = peaks.get(common.numpy_roof())
    if not kernel.plan.lowrank_a and not kernel.plan.rank_b:  # (no bandwidth run for it)
        return {}
    return comp_bounds.least_extra_ms(kernel.plan, m, n, k, fma if isinstance(fma, float)
                                      else None, bandwidth(), b_bytes, common.cache_bytes())


def bandwidth() -> float:
    """common.memory_bandwidth, measured once per run."""
    if not _BANDWIDTH:
        _BANDWIDTH.append(common.memory_bandwidth())
    return _BANDWIDTH[0]


_BANDWIDTH: list[float] = []  # measured once per run


def sparse_bound(kernel, A, packed, peaks: dict) -> dict:
    """For a kernel with sparse products: their time after the GEMM (stage_times "sparse", the
    median of 5), the time the bytes they must move take at the machine's memory bandwidth
    (common.memory_bandwidth: a two-thread copy of 256 MiB) and, where they ran four nonzeros
    at a time, the time their quads take at bench/peak.c's vnni_quads or avx2_quads rate (8 w
    ops a quad of w sums)."""
    if kernel is None or not kernel.plan.sparse:
        return {}
    ms = kernel.stage_times(A, packed)["sparse"] * 1e3
    nbytes = common.sparse_traffic(kernel, packed)
    kernel(A, packed)  # the notes of a call on A: which formulation each sparse term ran
    ran = [m.group(1) for m in map(RAN.search, kernel.last_notes) if m]
    out = {"sparse_ms": ms, "sparse_bytes": nbytes, "bandwidth": bandwidth(),
           "sparse_bound_ms": nbytes / bandwidth() * 1e3, "sparse_ran": ran}
    ran_quads = common.sparse_quads(kernel, packed)
    if ran_quads is not None:
        from lrqc.backend.te import sparse_quads
        quads, form = ran_quads
        rate = peaks.get(f"{form}_quads")
        if isinstance(rate, float):
            ops = 8 * sparse_quads.width(form)
            out.update(sparse_quads=quads, quads_mode=f"{form}_quads",
                       quads_ms=quads * ops / (rate * 1e9) * 1e3)
    return out


# "sparse: B's term 0 ran dense: A's copy density 0.350 > crossover 0.45" -> "B's term 0 ran
# dense: A's copy density 0.350 > crossover 0.45" (the kernel's notes of its last call)
RAN = re.compile(r"sparse: (\w's term \d+ ran .*?)(?: \(chosen at pack\))?$")


def short_note(note: str) -> str:
    """'sparse: B density 0.050 <= max_density 0.5: sparse B used' -> 'B density 0.050: sparse
    B used' (the kernel's notes of its last call)."""
    if RAN.search(note):  # print_comp_rows gives the formulations on their own line
        return ""
    m = re.match(r"sparse: (\w+ density [0-9.]+)[^:]*: (.*)", note)
    return f"{m.group(1)}: {m.group(2)}" if m else note


def print_comp_head() -> None:
    print_head(f"{'shape':<16}{'method':<38}{'ms':>10}{'rel. error':>11}{'vs direct':>11}  note")


def print_comp_rows(rows: list[dict]) -> None:
    for r in rows:
        print(f"{r['shape']:<16}{r['method']:<38}{fmt(r['ms'], '.3f', 10)}"
              f"{fmt(r['rel_error'], '.3e', 11)}"
              f"{fmt(r['vs_direct'], '.3f', 11, 'x') if r['direct'] else '':>11}  {r['note']}")
    for r in rows:
        if "sparse_ms" in r:
            quads = (f", instruction bound {r['quads_ms']:.1f} ms ({r['sparse_quads'] / 1e6:.2f}M "
                     f"quads of nonzeros at the {r['quads_mode']} peak)" if "quads_ms" in r
                     else "")
            print(f"{r['shape']:<16}{r['method']}: sparse products: {r['sparse_ms']:.1f} ms, "
                  f"memory bound {r['sparse_bound_ms']:.1f} ms ({r['sparse_bytes'] / 1e6:.0f} MB "
                  f"at {r['bandwidth'] / 1e9:.1f} GB/s){quads}; ran: {'; '.join(r['sparse_ran'])}")
        if "floor_why" in r:
            least = (f"at least {r['floor_ms']:.2f} ms more than direct" if r["floor_ms"]
                     is not None else "n/a")
            ratio = f" (>= {r['floor_ratio']:.2f}x)" if "floor_ratio" in r else ""
            print(f"{r['shape']:<16}{r['method']}: low-rank work: {least}{ratio}; "
                  f"{r['floor_why']}")
    print(flush=True)


# ---- 4. targets ------------------------------------------------------------------------------

# what VS-Quant's 16-k groups add to the integer products of the same formats, per group and
# vector of 16 sums next to its four vpdpbusd: on AVX-512 VNNI, where its two-level scales sum
# as int16 pairs, half of each pair's packing (vpermt2w), its scales' product (vpmullw) and
# its vpdpwssd, and half a vpsubw of A's zero correction (signed codes, or min-max codes
# stored centred); elsewhere a zeroing, the zero-point product and its subtraction, a
# conversion to float32, A's scale and an FMA; and outside the GEMM's loop, A's pass finds a
# minimum, maximum and two scales per group, and B's integer scales and column sums add a
# byte each per group and column (25 % more bytes than int4 codes: what bounds few rows)
GROUPS_WHY = ("per 16-k group and 16 sums next to its 4 vpdpbusd: with int16 pairs of "
              "integer scales (AVX-512 VNNI) half a vpermt2w, vpmullw and vpdpwssd each, and "
              "half a vpsubw for A's zero correction (AVX2: the same pairs per 8 sums, a shift "
              "and blend, vpmullw and vpmaddwd); else a zeroing, a zero-point correction, "
              "a conversion and two scalings; A's pass takes a minimum, maximum and two scales "
              "per group; B's integer scales and column sums add 25 % to int4 codes' bytes")


def sparse_why(r: dict, direct: dict | None) -> str:
    """What bounds a sparse row's ratio to its direct kernel: its products' time against the
    larger of their memory and instruction bounds (sparse_bound), and the ratio that bound
    allows (the pass over A's residuals and copies not counted)."""
    least = max(r["sparse_bound_ms"], r.get("quads_ms", 0.0))
    what = "an instruction" if r.get("quads_ms", 0.0) > r["sparse_bound_ms"] else "a memory"
    allows = (f"; they allow >= {(direct['ms'] + least) / direct['ms']:.2f}"
              if direct and direct.get("ms") else "")
    return (f"sparse products {r['sparse_ms']:.1f} ms against {what} bound of "
            f"{least:.1f}{allows}")


def groups_why(peaks: dict) -> str:
    """Why per-vector scales cost what they do: GROUPS_WHY, and where bench/peak.c measured
    them, the least ratio to per_channel that float scaling per group allows (vnni_blocks /
    vnni_groups: the inner loops alone, from L1) and the ones int16 pairs of two-level integer
    scales allow (vnni_blocks / vnni_pairs; less A's zero correction: vnni_pairs_offset)."""
    modes = ("vnni_blocks", "vnni_groups", "vnni_pairs", "vnni_pairs_offset")
    blocks, groups, pairs, zeros = (peaks.get(m) for m in modes)
    if not all(isinstance(v, float) and v > 0 for v in (blocks, groups, pairs, zeros)):
        return GROUPS_WHY
    return (f"{GROUPS_WHY}; the inner loops alone (bench/peak.c) allow >= "
            f"{blocks / groups:.2f} with float scales per group (vnni_blocks / vnni_groups), "
            f">= {blocks / pairs:.2f} with int16 pairs of integer scales (vnni_pairs), "
            f">= {blocks / zeros:.2f} less A's zero correction (vnni_pairs_offset)")


def targets(gemm: list[dict], comp: list[dict], peaks: dict,
            flags: set[str], packed: list[dict] | None = None) -> tuple[list[dict], int]:
    """([{target, value, goal, at_least, met (None: n/a), why}], how many targets of a fixed
    shape were not measured because their shape or section did not run). The gemm targets
    "at every shape" apply to each shape the gemm section ran."""
    g = {(r["shape"], r["method"]): r for r in gemm}
    c = {(r["shape"], r["case"]): r for r in comp}
    shapes = list(dict.fromkeys(r["shape"] for r in gemm))
    out: list[dict] = []
    skipped = 0

    def add(what, value, why, goal, at_least=True):
        met = None if value is None else (value >= goal if at_least else value <= goal)
        out.append({"target": what, "value": value, "goal": goal, "at_least": at_least,
                    "met": met, "why": why})

    def gemm_ratio(shape, method, col):
        r = g.get((shape, method))
        if r is None or r[col] is None:
            peer = {"vs_numpy": NUMPY, "vs_torch_dq": TORCH_DQ}[col]
            why = (r["note"] if r and r["ms"] is None else
                   g.get((shape, peer), {}).get("note") or "not measured")
            return None, why
        return r[col], ""

    for shape in shapes:
        value, why = gemm_ratio(shape, W8A8, "vs_torch_dq")
        r, dq = g.get((shape, W8A8)), g.get((shape, TORCH_DQ))
        if value is not None and value < 1.2 and r and r.get("least_ms") and dq and dq["ms"]:
            why = (f"the roofs allow <= {dq['ms'] / r['least_ms']:.2f} here: "
                   f"{r['least_ms']:.3g} ms, {r['least_why']}{instruction_why(r, dq, peaks)}")
        if value is not None and value < 1.2:
            why = "; ".join(filter(None, [why, like_for_like(g.get((shape, W8A7)))]))
        add(f"w8a8 per_channel / torch dynamic-quant Linear at {shape}", value, why, goal=1.2)
        add(f"w4a8 per_channel / numpy float32 at {shape}", *gemm_ratio(shape, W4A8, "vs_numpy"),
            goal=1.6 if shape == "2048,2048,2048" else 1.3)
        add(f"VS-Quant w4a4 / numpy float32 at {shape}", *gemm_ratio(shape, VSQ, "vs_numpy"),
            goal=1.0)
        v, p = g.get((shape, VSQ), {}).get("ms"), g.get((shape, W4A4), {}).get("ms")
        ratio = v / p if v and p else None
        add(f"VS-Quant w4a4 time / w4a4 per_channel's at {shape}", ratio,
            "not measured" if ratio is None else groups_why(peaks) if ratio > 1.3 else "",
            goal=1.3,
            at_least=False)
    skipped += sum(s not in shapes for s in ("2048,2048,2048", "256,1024,1024"))  # fixed shapes
    comp_goals = [(R1, "2048,2048,2048", 1.05), (R1, "256,4096,4096", 1.05),
                  (R1P, "2048,2048,2048", 1.05), (R1P, "256,4096,4096", 1.05),
                  (R16, "2048,2048,2048", 1.15), (R16, "256,4096,4096", 1.20),
                  (R16P, "2048,2048,2048", 1.15), (R16P, "256,4096,4096", 1.20),
                  (R16B, "16,4096,4096", 1.05), (R16B, "256,4096,4096", 1.05),
                  (SP5, "256,4096,4096", 1.3)]
    for case, shape, goal in comp_goals:
        r = c.get((shape, case))
        if r is None:
            skipped += 1
            continue
        why = r["note"] if r["vs_direct"] is None else ""
        if r["vs_direct"] is not None and r["vs_direct"] > goal and "floor_ratio" in r:
            why = f"the low-rank work allows >= {r['floor_ratio']:.2f} here"
        if r["vs_direct"] is not None and r["vs_direct"] > goal and "sparse_ms" in r:
            why = sparse_why(r, c.get((shape, r["direct"])))
        add(f"{case} / direct at {shape}", r["vs_direct"], why, goal, at_least=False)
    r, d = c.get(("256,4096,4096", SP35)), c.get(("256,4096,4096", DSEG))
    if r is None or d is None:
        skipped += 1
    else:  # the same scheme's terms as dense K segments cost what DSEG's dense terms cost
        v = r["ms"] / d["ms"] if r["ms"] and d["ms"] else None
        add(f"{SP35} / {DSEG} at 256,4096,4096", v, "" if v else "not measured", 1.0,
            at_least=False)
    packing_cpu.targets(packed or [], add)
    what = "w8a8 per_channel / the vpdpbusd peak at 2048,2048,2048"
    if "avx512_vnni" not in flags:
        out.append({"target": what, "value": None, "goal": 0.9, "at_least": True, "met": None,
                    "why": "VNNI machines only: this CPU lacks avx512_vnni"})
    elif (r := g.get(("2048,2048,2048", W8A8))) is None:
        skipped += 1
    else:
        peak = peaks.get("vnni")
        v = r["gops"] / peak if r["gops"] and isinstance(peak, float) else None
        why = "" if v is not None else "the vnni peak was not measured (add the peaks section)"
        if v is not None and v < 0.9 and r.get("least_ms") and r["roof"] == "vnni":
            m, n, k = map(int, r["shape"].split(","))
            allow = 2.0 * m * n * k / (r["least_ms"] * 1e6) / peak
            why = f"the roofs allow <= {allow:.2f} here: {r['least_why']}"
        add(what, v, why, 0.9)
    return out, skipped


def instruction_why(r: dict, dq: dict, peaks: dict) -> str:
    """Where lrqc's exact int8 x int8 takes more instructions than torch's: the two peaks."""
    ours, theirs = peaks.get(r.get("roof") or ""), peaks.get(dq.get("roof") or "")
    if r.get("roof") != "avx2_s8" or not isinstance(ours, float) or not isinstance(theirs,
                                                                                   float):
        return ""
    return (f"; exact int8 x int8 takes 4 instructions per 32 multiply-adds (vpsignb, "
            f"vpmaddubsw, vpmaddwd, vpaddd: {ours:.0f} GOPS), torch's 3 ({dq['roof']}, "
            f"{theirs:.0f} GOPS: vpmaddubsw on activations of 7 bits, whose pair sums cannot "
            "saturate)")


def like_for_like(r: dict | None) -> str:
    """lrqc on torch's own formats (7-bit activations) against torch, where measured."""
    if not r or r.get("vs_torch_dq") is None:
        return ""
    return (f"on torch's own formats (7-bit activations per tensor, int8 weights per tensor) "
            f"lrqc runs at {r['vs_torch_dq']:.2f}x torch's speed")


def print_targets(out: list[dict], skipped: int) -> None:
    print("targets:")
    for t in out:
        op = ">=" if t["at_least"] else "<="
        value = f"{t['value']:.2f}" if t["value"] is not None else "n/a"
        verdict = {True: "met", False: "NOT met", None: f"n/a: {t['why']}"}[t["met"]]
        if t["met"] is not None and t["why"]:
            verdict += f" ({t['why']})"
        print(f"  {t['target']:<62}{value:>7}  {op} {t['goal']:<5}  {verdict}")
    if skipped:
        print(f"  ({skipped} more not measured: their shapes or sections were not run)")


# ---- main ------------------------------------------------------------------------------------

def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n".join(line for line in __doc__.splitlines()
                                                   if line.startswith("    python")))
    ap.add_argument("--sections", default=",".join(SECTIONS),
                    help=f"comma separated, of {', '.join(SECTIONS)} (default: all)")
    ap.add_argument("--shapes", default=GEMM_SHAPES, help="the gemm section's M,N,K;M,N,K;...")
    ap.add_argument("--packing-shapes", default=packing_cpu.SHAPES,
                    help="the packing section's shapes")
    ap.add_argument("--rows-shape", default=rows_cpu.SHAPE,
                    help=f"the rows section's hi,N,K (default {rows_cpu.SHAPE}: M = 1..hi)")
    ap.add_argument("--rows", default=",".join(map(str, rows_cpu.ROWS)),
                    help="the rows section's row counts (comma separated)")
    ap.add_argument("--layer-shapes", default=layers_cpu.SHAPES,
                    help=f"the layers section's in,out;... (default {layers_cpu.SHAPES})")
    ap.add_argument("--layer-rows", default=",".join(map(str, layers_cpu.ROWS)),
                    help="the layers section's row counts (comma separated)")
    ap.add_argument("--comp-shapes", default=";".join(COMP_CASES),
                    help="the compensation section's shapes (a shape of its own list measures "
                         "its cases; any other shape every case)")
    ap.add_argument("--quick", action="store_true",
                    help="3 rounds, 3 peak runs of half the iterations")
    ap.add_argument("--rounds", type=int, help="timed rounds per shape (default 7; --quick 3)")
    ap.add_argument("--peak-runs", type=int, help="runs of each peak (default 5; --quick 3)")
    ap.add_argument("--peak-iters", type=int, help="iterations of a peak run (default 1e8)")
    ap.add_argument("--gap", type=float, default=0.15,
                    help="seconds of pause before each timed call (default 0.15)")
    ap.add_argument("--warm", type=int, default=0,
                    help="untimed calls of a contender right before each of its timed calls "
                         "(default 0): back to back, as inside a model, where each runtime's "
                         "threads are awake and the others' have stopped spinning")
    ap.add_argument("--slow", type=float, default=1.0,
                    help="a contender whose second warm-up call takes over this many seconds and "
                         "10x the others' is measured by that call alone (default 1)")
    ap.add_argument("--json", metavar="PATH", help="also write every number here")
    args = ap.parse_args(argv)
    args.sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    bad = [s for s in args.sections if s not in SECTIONS]
    if bad:
        ap.error(f"--sections: unknown {', '.join(bad)} (of {', '.join(SECTIONS)})")
    args.rounds = args.rounds or (3 if args.quick else 7)
    args.peak_runs = args.peak_runs or (3 if args.quick else 5)
    args.peak_iters = args.peak_iters or (50_000_000 if args.quick else 100_000_000)
    if args.rounds < 1 or args.peak_runs < 1 or args.peak_iters < 1:
        ap.error("--rounds, --peak-runs and --peak-iters must be at least 1")
    if args.warm < 0:
        ap.error("--warm must be at least 0")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    t_start = time.perf_counter()
    flags = common.cpu_flags()
    info = common.machine()
    print_machine(info)
    peaks: dict[str, float | str] = {}
    if "peaks" in args.sections:
        common.log("peaks: bench/peak.c ...")
        peaks = common.measure_peaks(runs=args.peak_runs, iters=args.peak_iters)
        print_peaks(peaks, args.peak_runs)
    print(f"\ntiming: medians of {args.rounds} interleaved rounds after a warm-up; "
          f"{args.gap:g} s pause before each call" +
          (f", then {args.warm} untimed calls of the same contender" if args.warm else "") +
          ("" if peaks or "gemm" not in args.sections else
           "; /peak: n/a (the peaks section did not run)"), flush=True)
    gemm: list[dict] = []
    if "gemm" in args.sections:
        print_gemm_head()
        for m, n, k in parse_shapes(args.shapes):
            rows = gemm_shape(m, n, k, args, peaks, flags)
            print_gemm_rows(rows)
            gemm += rows
    comp: list[dict] = []
    if "compensation" in args.sections:
        print_comp_head()
        for m, n, k in parse_shapes(args.comp_shapes):
            rows = comp_shape(m, n, k, args, peaks)
            print_comp_rows(rows)
            comp += rows
    packed: list[dict] = []
    if "packing" in args.sections:
        for i, (m, n, k) in enumerate(parse_shapes(args.packing_shapes)):
            rows = packing_cpu.packing_shape(m, n, k, args)
            packing_cpu.print_rows(rows, head=i == 0)
            packed += rows
    by_rows: list[dict] = []
    if "rows" in args.sections:
        (hi, n, k), = parse_shapes(args.rows_shape)
        by_rows = rows_cpu.rows_section(hi, n, k, rows_cpu.parse_rows(args.rows), args)
        rows_cpu.print_rows(by_rows, hi)
    layers: list[dict] = []
    if "layers" in args.sections:
        layers = layers_cpu.layers_section(layers_cpu.parse_shapes(args.layer_shapes),
                                           rows_cpu.parse_rows(args.layer_rows), args)
        layers_cpu.print_rows(layers)
    out, skipped = targets(gemm, comp, peaks, flags, packed)
    print_targets(out, skipped)
    print(f"\n(whole run: {time.perf_counter() - t_start:.0f} s)")
    if args.json:
        record = {"when": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "argv": sys.argv[1:]
                  if argv is None else list(argv), "machine": info,
                  "peaks": {m: {"value": v if isinstance(v, float) else None,
                                "unit": common.PEAK_MODES[m][2],
                                "what": common.PEAK_MODES[m][1],
                                "note": "" if isinstance(v, float) else v}
                            for m, v in peaks.items()},
                  "rounds": args.rounds, "gemm": gemm, "compensation": comp,
                  "packing": packed, "rows": by_rows, "layers": layers,
                  "targets": out}
        Path(args.json).write_text(json.dumps(record, indent=1) + "\n")
        print(f"numbers written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
