"""The verbs that generate or run code: build, run and bench (TVM loaded through lrqc.door)."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from .. import door, reference
from ..api import load_schemes, pick_scheme
from ..errors import LrqcError
from ..reference.data import pair
from ..reference.scheme import direct_scheme, rel_error
from .common import at_least, load_bias, load_npy, parse_dims, target_arg


def output_dir(path: str) -> Path | None:
    """Make sure a build can write into directory `path` before anything is compiled: created
    when missing, probed for writing; LrqcError saying why not. Returns the topmost folder
    this call created (None: none), which remove_created takes away again after a failure."""
    if not path.strip():
        raise LrqcError("-o: give the artifact's directory (an empty name would write into "
                        "the current one)")
    d = Path(path)
    if d.exists() and not d.is_dir():
        raise LrqcError(f"-o {path}: exists and is not a directory")
    created = next((p for p in reversed((d, *d.parents)) if not p.exists()), None)
    try:
        d.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=d).close()
    except OSError as exc:
        remove_created(d, created)
        raise LrqcError(f"-o {path}: cannot write there ({exc.strerror or exc})") from None
    return created


def remove_created(d: Path, top: Path | None) -> None:
    """Remove the empty folders from d up to top (what output_dir created)."""
    if top is None:
        return
    for p in (d, *d.parents):
        try:
            p.rmdir()
        except OSError:
            return
        if p == top:
            return


def output_file(path: str) -> Path:
    """The file np.save will write for `path` (it appends .npy when missing), checked before
    anything runs: not a directory, its folder exists and is writable; LrqcError why not."""
    if not path.strip():
        raise LrqcError("-o: give the file to write C to, e.g. C.npy")
    p = Path(path)
    if p.suffix != ".npy":
        p = p.with_name(p.name + ".npy")
    if Path(path).is_dir() or p.is_dir():
        raise LrqcError(f"-o {path}: is a directory; give a file name, e.g. {Path(path) / 'C.npy'}")
    folder = p.parent
    if not folder.is_dir():
        there = next((f for f in (folder, *folder.parents) if f.exists()), None)
        raise LrqcError(f"-o {path}: {there} is not a directory" if there is not None
                        and not there.is_dir() else f"-o {path}: no directory {folder}")
    if not os.access(folder, os.W_OK | os.X_OK) or (p.exists() and not os.access(p, os.W_OK)):
        raise LrqcError(f"-o {path}: cannot write {p} (permission denied)")
    return p


def rule_note(man: dict) -> str:
    """What the build report adds after the schedule rule of a manifest: why the GEMM is not
    on its target's fast path, where it is not."""
    if man["schedule_rule"] == "float32_tile":
        return "   note: a float32 GEMM (a float operand, or the float fallback below)"
    if man["fast_path"]:
        return ""
    if man.get("cuda"):
        return ("   note: TVM's dlight defaults (no lrqc GPU rule for this plan yet: per-group "
                "scales or a float operand)")
    arch = str(man["target"].get("mtriple") or platform.machine())  # a host target: no triple
    if not arch.startswith("x86"):
        return ("   note: the portable rule (lrqc has no integer-instruction rule for this "
                "architecture yet)")
    return ("   WARNING: not the fast path (the target lacks AVX-512 VNNI); expect lower speed "
            "than a VNNI build")


def cmd_build(args: argparse.Namespace) -> int:
    s = pick_scheme(load_schemes(args.file), args.scheme, args.file)
    m, n, k = parse_dims(args.dims, m_range=True)
    target = door.target().resolve(target_arg(args.target))  # unknown: LrqcError, nothing written
    emit = _emits(args.emit, target)
    created = output_dir(args.output)
    t0 = time.perf_counter()
    try:
        man = door.build_artifact(s, m, n, k, args.output, target, emit=emit,
                                  on_text=_print_stage)
    except BaseException:
        remove_created(Path(args.output), created)  # no empty folders behind a failed build
        raise
    print(f"built {s.name} M={man['dims']['M']} N={n} K={k} in {time.perf_counter() - t0:.2f} s "
          f"-> {args.output}/{man['lib']}")
    if len(man["m_buckets"]) > 1:
        print(f"  M buckets: {', '.join(map(str, man['m_buckets']))} (a call with m rows runs "
              "the smallest bucket >= m)")
    print(f"  target: {json.dumps(man['target'])}")
    print(f"  product: {man['product']}")
    print(f"  weights: {weights_text(man['weights'])}")
    print(f"  schedule rule: {man['schedule_rule']}{rule_note(man)}")
    cuda = man.get("cuda")
    if man.get("instruction"):
        print(f"  instruction: {man['instruction']}")
    for sym, how in man.get("schedules", {}).items():
        print(f"  {sym}: {how}")
    for note in man["notes"]:
        print(f"  note: {note}")
    if cuda:
        ins = ", ".join(f"{k} x{v}" for k, v in cuda["ptx_instructions"].items()) or "none"
        print(f"  device code: {cuda['fatbin']} (nvcc {cuda['cuda_version']}: SASS for "
              f"{', '.join(cuda['archs'])} + PTX of {cuda['archs'][-1]}), source {cuda['source']}")
        print(f"  PTX ({cuda['archs'][0]}) integer/float instructions: {ins}")
    if man["cross_compiled"]:
        print("  cross-compiled: lib.tar holds the object files; link and run it on the target")
    return 0


def _emits(text: str | None, target) -> tuple[str, ...]:
    """--emit's stage names, checked against what the target has."""
    if text is None:
        return ()
    emit = tuple(e.strip() for e in text.split(",") if e.strip())
    have = door.emit_names(target)
    if not emit:
        raise LrqcError(f"--emit: give some of {', '.join(have)}")
    for e in emit:
        if e in door.emit_names() and e not in have:
            kind = "CPU" if target.is_cuda else "CUDA"  # the other kind of target has it
            raise LrqcError(f"--emit: {e} is for {kind} targets; this target has "
                            f"{', '.join(have)}")
        if e not in have:
            raise LrqcError(f"--emit: unknown stage {e!r}; choose from {', '.join(have)}")
    return emit


def weights_text(w: dict) -> str:
    """The manifest's weight storage in one line."""
    bits = w["code_bits"]
    how = {8: "int8 codes", 16: "16-bit values", 32: "float32 values"}.get(
        bits, f"{bits}-bit codes packed densely")
    return (f"{how}: {w['bytes_per_weight']:.4g} bytes per weight (codes {w['codes']} B, "
            f"scales and column sums {w['scales']} B, bias and factors {w['other']} B)")


def _print_stage(name: str, text: str) -> None:
    print(f"==== {name} ====\n{text}", flush=True)
    sys.stdout.flush()


def cmd_run(args: argparse.Namespace) -> int:
    out = output_file(args.output)
    kernel = door.load_kernel(args.dir)  # a file or a folder that is no artifact: LrqcError
    A, B = (load_npy(p, f) for p, f in ((args.a, "--a"), (args.b, "--b")))
    bias = None if args.bias is None else load_bias(args.bias, B.shape[1])
    C = kernel.run(A, B, bias=bias)
    kind = str(C.dtype)
    if kind == "bfloat16":  # numpy's .npy has no bfloat16: widened exactly to float32
        C, kind = C.astype(np.float32), "bfloat16 values, stored as float32"
    np.save(out, C)
    print(f"wrote {out}: {C.shape[0]}x{C.shape[1]} {kind} (rule {kernel.rule})")
    for note in kernel.last_notes:
        print(f"note: {note}")
    return 0


# untimed calls first, for at least this long: on a 2-core VM (a Zen 3), calls ran at one
# core's speed until 50-100 ms of sustained work had brought the second core up (int8 x int8 at
# 256 x 1024 x 1024: 4.7 ms, then 2.4), so a single warm-up call timed the slow phase
WARM_S = 0.25


def _median_time(fn, repeat: int) -> float:
    """The median time of `repeat` calls of fn after WARM_S seconds (at least one call) of
    untimed ones."""
    until = time.perf_counter() + WARM_S
    fn()
    while time.perf_counter() < until:
        fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


# what each of Kernel.stage_times' steps does, in the order a call runs them
STAGES = {
    "copy_a": "A copied into the kernel's aligned buffer (a call reads A where it lies "
              "instead, where it can: C-contiguous float32 on the CPU)",
    "quantize_a": "the pass over A: its codes and scales, and the per-call operands of its "
                  "residual terms (R and R times the test matrix, sparse copies)",
    "compensate": "A's low-rank factors and the epilogue's U and W (B's U = A' L_B)",
    "gemm": "the integer GEMM, its scales and epilogue (bias, low-rank terms)",
    "sparse": "the sparse products added to C",
}


def print_stages(stages: dict[str, float], repeat: int) -> None:
    """The steps of one call and their median times (lrqc bench --stages)."""
    print(f"steps of a call, each timed on its own (median of {repeat} runs, ms):")
    for name in [*STAGES, *(n for n in stages if n not in STAGES)]:
        if name in stages:
            print(f"  {name:<12}{stages[name] * 1e3:9.3f}  {STAGES.get(name, '')}")


def cmd_bench(args: argparse.Namespace) -> int:
    s = pick_scheme(load_schemes(args.file), args.scheme, args.file)
    m, n, k = parse_dims(args.dims)
    at_least("--repeat", args.repeat, 1)
    at_least("--seed", args.seed, 0)
    target = door.target().resolve(target_arg(args.target))
    lacks = target.host_lacks()
    if lacks:
        raise LrqcError(f"lrqc bench runs the kernel on this machine, which lacks "
                        f"{', '.join(lacks)}; build for that machine with `lrqc build` instead")
    A, B = pair(args.dist, m, n, k, args.seed)
    A = A.astype(np.float32)
    ref = A.astype(np.float64) @ B
    a32, b32 = A, B.astype(np.float32)
    t_np = _median_time(lambda: a32 @ b32, args.repeat)  # numpy first: TVM's spinning threads
    kernel = door.compile(s, m, n, k, target)  # would slow OpenBLAS down
    per_call, static = kernel.split(A, B)
    packed = kernel.pack(static)
    C = kernel(per_call, packed)
    t_k = _median_time(lambda: kernel(per_call, packed), args.repeat)
    direct = reference.matmul(direct_scheme(s, m, n, k), A, B)
    ops = 2.0 * m * n * k
    rows = [
        ("numpy float32", rel_error(a32 @ b32, ref), t_np),
        (f"lrqc {s.name} [{kernel.rule}]", rel_error(C, ref), t_k),
        ("direct quant (reference)", rel_error(direct, ref), None),
    ]
    print(f"{s.name}: M={m} N={n} K={k}, {args.dist} data; median of {args.repeat} runs")
    print(f"{'method':<40}{'rel. error':>12}{'time ms':>10}{'GOPS':>9}{'vs numpy':>10}")
    for name, err, t in rows:
        tt = f"{t * 1e3:10.3f}{ops / t / 1e9:9.1f}{t_np / t:9.2f}x" if t else ""
        print(f"{name:<40}{err:>12.4e}{tt}")
    if args.stages:
        print_stages(kernel.stage_times(per_call, packed, repeat=args.repeat), args.repeat)
    for note in [*kernel.plan.notes, *kernel.last_notes]:
        print(f"note: {note}")
    if not kernel.fast and not kernel.plan.float_path:
        print(f"note: schedule rule {kernel.rule} is not the fast path (no AVX-512 VNNI on this "
              "target)")
    return 0


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser],
                dists: tuple[str, ...]) -> None:
    b = sub.add_parser("build", help="compile a scheme ahead of time: DIR/lib.so + manifest.json")
    b.add_argument("file", metavar="FILE")
    b.add_argument("--scheme", help="scheme name (needed when FILE has several)")
    b.add_argument("--dims", required=True, help="M=..,N=..,K=..; M=lo..hi builds buckets "
                   "(4, 8, .., 64, then powers of two and 1.5 times them, and hi) so M may vary "
                   "per call")
    b.add_argument("--target", help="host (default), x86-amx, x86-avx512-vnni, x86-avxvnni, "
                   "x86-avx2, "
                   "aarch64, cuda-sm80, cuda-sm90, 'cuda -arch=sm_80,sm_90', or a TVM target "
                   "dict as JSON")
    b.add_argument("-o", "--output", required=True, metavar="DIR", help="the artifact's folder "
                   "(made where missing; the build writes lib.so and manifest.json into it)")
    b.add_argument("--emit", help="print compilation stages as they run: ir, plan, te, tir, "
                   "llvm, asm (CUDA targets: cuda, ptx instead of llvm, asm), comma-separated; "
                   "one section per M bucket")
    b.set_defaults(func=cmd_build)
    r = sub.add_parser("run", help="run a built artifact on .npy inputs")
    r.add_argument("dir", metavar="DIR")
    r.add_argument("--a", required=True, metavar="A.npy", help="A (M x K) as a .npy file")
    r.add_argument("--b", required=True, metavar="B.npy", help="B (K x N) as a .npy file")
    r.add_argument("--bias", metavar="BIAS.npy", help="N values added to every row of C, as a "
                   ".npy file of shape (N,) or (1, N)")
    r.add_argument("-o", "--output", required=True, metavar="C.npy", help="where C is written")
    r.set_defaults(func=cmd_run)
    c = sub.add_parser("bench", help="compile a scheme and time it next to numpy float32")
    c.add_argument("file", metavar="FILE")
    c.add_argument("--scheme", help="scheme name (needed when FILE has several)")
    c.add_argument("--dims", required=True, help="M=..,N=..,K=.. of the generated data")
    c.add_argument("--target", help="as for build; it must run on this machine (default host)")
    c.add_argument("--dist", choices=dists, default="uniform", help="generated data")
    c.add_argument("--seed", type=int, default=0, help="seed of generated data")
    c.add_argument("--repeat", type=int, default=9, help="timed calls of each contender (the "
                   "median is printed)")
    c.add_argument("--stages", action="store_true", help="also time each step of a call on "
                   "its own: the pass over A, the compensation, the GEMM, the sparse products")
    c.set_defaults(func=cmd_bench)
