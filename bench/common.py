"""Helpers shared by the CPU bench scripts (cpu.py, gemm_cpu.py, compensation_cpu.py,
tuning_cpu.py): the machine and its peaks (bench/peak.c), timing, torch's peers, compiling
lrqc kernels with progress lines, and the scheme texts of the compensation benches.

Importing this module first (before numpy) takes OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE out of
the environment, so that numpy's OpenBLAS picks its kernels and blocking as a plain install
does; BLAS_ENV_DROPPED says what was taken out (printed by cpu.py). When numpy was imported
before (a test run in-process), its OpenBLAS has read them already: NUMPY_PRELOADED says so.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path

BLAS_ENV = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
NUMPY_PRELOADED = "numpy" in sys.modules
BLAS_ENV_DROPPED = {} if NUMPY_PRELOADED else {
    k: os.environ.pop(k) for k in BLAS_ENV if k in os.environ}
os.environ.setdefault("TVM_THREAD_POOL_SPIN_COUNT", "0")  # idle TVM threads must not steal cores
# the build times printed are compile times: kernels are compiled afresh, not loaded from
# lrqc's compiled-kernel cache (LRQC_KERNEL_CACHE=1 loads them from it)
os.environ.setdefault("LRQC_KERNEL_CACHE", "0")

import numpy as np  # noqa: E402  (after the environment above: its OpenBLAS reads it once)

import lrqc  # noqa: E402
from lrqc.resources import host_cpu_flags  # noqa: E402

BENCH = Path(__file__).resolve().parent
TORCH_MISSING = "torch not installed (pip install -e '.[bench]')"


def log(msg: str) -> None:
    """A progress line on stderr (the tables go to stdout)."""
    print(msg, file=sys.stderr, flush=True)


# ---- the machine ---------------------------------------------------------------------------

def cpu_flags() -> set[str]:
    """The CPU's feature flags as /proc/cpuinfo names them (empty off Linux)."""
    return host_cpu_flags()


ISA = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni")


def machine() -> dict:
    """CPU model, CPU/core counts, the instruction sets that matter here, numpy's BLAS and
    torch: what cpu.py prints first."""
    info: dict = {"cpus": os.cpu_count() or 1}
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
        fields = {k.strip(): v.strip() for k, v in fields.items()}
        info["model"] = fields.get("Model name", "unknown")
        for key, name in (("Core(s) per socket", "cores_per_socket"), ("Socket(s)", "sockets"),
                          ("Thread(s) per core", "threads_per_core")):
            if fields.get(key, "").isdigit():
                info[name] = int(fields[key])
    except (OSError, subprocess.CalledProcessError):
        info["model"] = "unknown (no lscpu)"
    flags = cpu_flags()
    info["isa"] = {f: f in flags for f in ISA}
    try:
        from threadpoolctl import threadpool_info
        info["blas"] = [{k: d.get(k) for k in ("internal_api", "version", "architecture",
                                               "num_threads")}
                        for d in threadpool_info() if d.get("user_api") == "blas"]
    except ImportError:
        info["blas"] = []
    info["numpy"] = np.__version__
    info["blas_env_dropped"] = dict(BLAS_ENV_DROPPED)
    info["blas_env_kept"] = ({k: os.environ[k] for k in BLAS_ENV if k in os.environ}
                             if NUMPY_PRELOADED else {})
    info["lrqc"] = lrqc.__version__
    try:
        import torch
        info["torch"] = {"version": torch.__version__, "threads": torch.get_num_threads(),
                         "quantized_engine": torch.backends.quantized.engine}
    except ImportError:
        info["torch"] = None
    return info


# ---- peaks (bench/peak.c) --------------------------------------------------------------------

# mode: (the /proc/cpuinfo flags it needs, what it measures, unit)
PEAK_MODES = {
    "fma": (("avx2", "fma"), "vfmadd231ps, float32 FMA (256-bit)", "GFLOPS"),
    "fma512": (("avx512f",), "vfmadd231ps, float32 FMA (512-bit)", "GFLOPS"),
    "avx2": (("avx2",), "vpmaddwd on widened bytes + vpaddd", "GOPS"),
    "avx2_u8": (("avx2",), "vpmaddubsw + vpmaddwd by ones + vpaddd", "GOPS"),
    "avx2_u8_i16": (("avx2",), "vpmaddubsw + vpaddw (int16 accumulators)", "GOPS"),
    "avx2_s8": (("avx2",), "int8 x int8: vpsignb (A's sign onto B) + vpmaddubsw + vpmaddwd + "
                "vpaddd", "GOPS"),
    "vnni": (("avx512_vnni",), "vpdpbusd, AVX-512 VNNI (512-bit)", "GOPS"),
    "vnni_blocks": (("avx512_vnni",), "vpdpbusd with A's bytes broadcast and B's blocks loaded "
                    "from L1, 4 x 2 vectors of sums (a per_channel GEMM's inner loop)", "GOPS"),
    "vnni_groups": (("avx512_vnni",), "the same, per 16-k group: sums from zero, then "
                    "vcvtdq2ps, vmulps by A's scale, vfmadd by B's (per_vector(16), float "
                    "scales)", "GOPS"),
    "vnni_pairs": (("avx512_vnni",), "the same groups, two at a time as int16 pairs: vpermt2w, "
                   "vpmullw of integer scales, vpdpwssd (two-level integer scales)", "GOPS"),
    "vnni_pairs_offset": (("avx512_vnni",), "the same pairs less A's zero correction "
                          "(vpsubw of offset·cs: signed or centred min-max codes)", "GOPS"),
    "vnni_quads": (("avx512_vnni",), "a sparse product's nonzeros four at a time: four random "
                   "lines from L1, eight unpacks into quads, four vpdpbusd", "GOPS"),
    "avx2_quads": (("avx2",), "the same on AVX2: four random 32-byte lines from L1, eight "
                   "unpacks, four vpsignb + vpmaddubsw + vpmaddwd + vpaddd", "GOPS"),
    "avxvnni": (("avx_vnni",), "vpdpbusd, AVX-VNNI (256-bit)", "GOPS"),
    "amx": (("amx_int8",), "tdpbusd, AMX int8 tiles (16 x 16 x 64 per instruction)", "GOPS"),
}


def missing_flags(mode: str, flags: set[str] | None = None) -> list[str]:
    """The CPU flags `mode` needs that this CPU lacks."""
    flags = cpu_flags() if flags is None else flags
    return [f for f in PEAK_MODES[mode][0] if f not in flags]


def measure_peaks(modes=None, runs: int = 5, iters: int = 100_000_000) -> dict[str, float | str]:
    """{mode: GOPS (GFLOPS for fma), the median of `runs` runs of bench/peak.c on all threads,
    or the reason it is n/a} for every mode of PEAK_MODES (or `modes`)."""
    modes = list(PEAK_MODES) if modes is None else list(modes)
    flags = cpu_flags()
    out: dict[str, float | str] = {}
    runnable = []
    for mode in modes:
        lacks = missing_flags(mode, flags)
        if lacks:
            out[mode] = f"this CPU lacks {', '.join(lacks)}"
        else:
            runnable.append(mode)
    cc = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
    if runnable and cc is None:
        out.update({m: "no C compiler (cc, gcc)" for m in runnable})
        runnable = []
    if not runnable:
        return {m: out[m] for m in modes}
    with tempfile.TemporaryDirectory() as d:
        exe = Path(d) / "peak"
        build = subprocess.run([cc, "-O2", "-fopenmp", str(BENCH / "peak.c"), "-o", str(exe)],
                               capture_output=True, text=True)
        if build.returncode:
            err = (build.stderr.strip().splitlines() or ["?"])[-1][:80]
            out.update({m: f"bench/peak.c did not build: {err}" for m in runnable})
            runnable = []
        for mode in runnable:
            vals = []
            for _ in range(runs):
                r = subprocess.run([str(exe), mode, str(iters)], capture_output=True, text=True)
                if r.returncode:
                    out[mode] = (r.stdout.strip() or r.stderr.strip())[:80]
                    break
                vals.append(float(r.stdout.split()[0]))
            else:
                out[mode] = float(np.median(vals))
    return {m: out[m] for m in modes}


def int_peaks() -> list[tuple[float, str]]:
    """(GOPS, instruction) of bench/peak.c for every integer dot product this CPU has, the one
    lrqc's widest rule issues first (AMX tdpbusd, VNNI vpdpbusd, else AVX2 vpmaddwd); [] without
    AVX2 or a C compiler."""
    peaks = measure_peaks(["amx", "vnni", "avx2", "avx2_u8", "avx2_u8_i16"])
    return [(v, PEAK_MODES[m][1]) for m, v in peaks.items() if isinstance(v, float)]


def int_peak() -> tuple[float | None, str]:
    """(GOPS, instruction) of the first of int_peaks(), or (None, why)."""
    flags = cpu_flags()
    if "avx512_vnni" not in flags and "avx2" not in flags:
        return None, "this CPU has neither AVX-512 VNNI nor AVX2"
    peaks = int_peaks()
    return peaks[0] if peaks else (None, "no C compiler")


def _rule_instruction(rule: str, plan=None) -> tuple[str, str]:
    """(the instruction a schedule rule declares, its range proof for the plan: it says how
    many pair sums an int16 lane adds); "" for what is unknown."""
    try:
        from lrqc.backend.schedule.rules import load_rules
        r = next((r for r in load_rules("x86") if r.name == rule), None)
        if r is None:
            return "", ""
        return str(r.instruction), str((r.proof(plan) if plan is not None else None) or "")
    except Exception:  # lrqc's internals move: the rule's name alone still says a lot
        return "", ""


def roof_mode(kernel, flags: set[str] | None = None) -> tuple[str | None, str]:
    """(bench/peak.c mode, the text it was chosen from) of the instruction the kernel's GEMM
    issues: the kernel's or its schedule rule's declared `instruction`, else the rule's name.
    vpmaddubsw accumulated by vpaddw (int16) -> avx2_u8_i16; vpsignb (int8 x int8 with A's sign
    on B) -> avx2_s8; vpmaddubsw -> avx2_u8; vpmaddwd -> avx2; vpdpbusd -> vnni (avxvnni for an
    AVX-VNNI rule or a CPU without AVX-512 VNNI); AMX's tdpbusd -> amx; the float32 tile ->
    fma; plain loops (the generic rule) -> None."""
    flags = cpu_flags() if flags is None else flags
    rule = str(getattr(kernel, "rule", ""))
    instr, proof = _rule_instruction(rule, getattr(kernel, "plan", None))
    instr = str(getattr(kernel, "instruction", "") or instr)
    text = f"{rule} {instr}".lower()
    steps = re.search(r"adds (\d+) per lane", proof)
    if steps and int(steps.group(1)) > 1:
        return "avx2_u8_i16", f"{rule}: vpmaddubsw, {steps.group(1)} pair sums per int16 lane"
    if rule.startswith("float") or "vfmadd" in text:
        return "fma", text.strip()
    if "tdpbusd" in text or "amx" in text:
        return "amx", text.strip()
    if "avxvnni" in text or "avx_vnni" in text:
        return "avxvnni", text.strip()
    if "vpdpbusd" in text or "vnni" in text:
        return ("vnni" if "avx512_vnni" in flags or "avx_vnni" not in flags else "avxvnni",
                text.strip())
    if "vpaddw" in text or "i16" in text:
        return "avx2_u8_i16", text.strip()
    if "vpsignb" in text or "signed" in text:
        return "avx2_s8", text.strip()
    if "vpmaddubsw" in text or "bytes" in text or "u8" in text:
        return "avx2_u8", text.strip()
    if "vpmaddwd" in text or "avx2" in text:
        return "avx2", text.strip()
    return None, text.strip()


def numpy_roof(flags: set[str] | None = None) -> str:
    """The peak.c mode of numpy's float32 GEMM: 512-bit FMA where the CPU has AVX-512F (the
    BLAS picks its AVX-512 kernels there: `blas` in the machine section says which), else
    256-bit FMA."""
    flags = cpu_flags() if flags is None else flags
    return "fma512" if "avx512f" in flags else "fma"


def torch_roof(flags: set[str] | None = None) -> str | None:
    """The peak.c mode of the instruction fbgemm's int8 GEMM (torch's dynamic-quant Linear)
    issues here: vpdpbusd with AVX-512 VNNI, vpmaddubsw + vpmaddwd on AVX2 alone; None on
    AVX-512 without VNNI (512-bit vpmaddubsw, which peak.c does not measure)."""
    flags = cpu_flags() if flags is None else flags
    if "avx512_vnni" in flags:
        return "vnni"
    if "avx512f" in flags or "avx2" not in flags:
        return None
    return "avx2_u8"


# ---- timing ----------------------------------------------------------------------------------

def median_time(fn, repeat: int, budget_s: float) -> float:
    """Median seconds of up to `repeat` calls after one warm-up, stopping after `budget_s`
    (a warm-up slower than budget_s / 3 is the measurement)."""
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


def interleaved(calls: dict[str, Callable[[], object]], rounds: int, slow_s: float = 1.0,
                gap_s: float = 0.0, errors: dict[str, str] | None = None,
                first: dict[str, float] | None = None, warm: int = 0) -> dict[str, list[float]]:
    """{name: seconds of each timed call}. Every callable is called twice first (warm-up), the
    seconds of its first call in first[name] (a one-time cost). One whose second call took over
    slow_s and over 10x the median second call is measured by that call alone and left out of
    the rounds (torch._int_mm on CPU, 50-100x slower than the rest). One whose first call raised
    an exception is left out, its first line in errors[name] (torch refuses some shapes with
    RuntimeErrors). Then `rounds` rounds each time every other callable once, in turn, so a
    slow phase of a shared machine hits all of them alike; the order rotates by one each
    round, so no callable always runs right after the same other one (BLAS and OpenMP threads
    that spin after a call slow what runs next). gap_s: a pause before each timed call; warm:
    untimed calls of the same callable right before it (after the pause), so its own threads
    are awake and others' have stopped spinning: calls as a model makes them, back to back."""

    def timed(fn) -> float:
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0

    first = {} if first is None else first
    for name, fn in calls.items():
        try:
            first[name] = timed(fn)
        except Exception as exc:
            if errors is None:
                raise
            errors[name] = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:80]
    second = {name: timed(calls[name]) for name in calls if name in first}
    typical = float(np.median(list(second.values()))) if second else 0.0
    times: dict[str, list[float]] = {name: [] for name in calls}
    live = []
    for name, t in second.items():
        if t > slow_s and t > 10 * typical:
            times[name].append(t)
        else:
            live.append(name)
    for r in range(rounds):
        shift = r % len(live) if live else 0
        for name in live[shift:] + live[:shift]:
            if gap_s:
                time.sleep(gap_s)
            for _ in range(warm):
                calls[name]()
            times[name].append(timed(calls[name]))
    return times


# ---- torch's peers ---------------------------------------------------------------------------

def torch_calls(A: np.ndarray, B: np.ndarray, int_mm: bool = True
                ) -> dict[str, Callable[[], object] | str]:
    """{name: a call computing A @ B the torch way, or why there is none}: torch's
    dynamic-quantized int8 Linear (a torch.nn.Linear(K, N) holding B through
    torch.ao.quantization.quantize_dynamic, applied to the float32 M x K input: what a torch user
    runs) and torch._int_mm on int8 codes (unless int_mm=False)."""
    names = ["torch dynamic-quant Linear"] + (["torch._int_mm"] if int_mm else [])
    try:
        import torch
    except ImportError:
        return dict.fromkeys(names, TORCH_MISSING)
    torch.set_num_threads(os.cpu_count() or 1)
    out: dict[str, Callable[[], object] | str] = {}
    lin = torch.nn.Linear(B.shape[0], B.shape[1], bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.from_numpy(np.ascontiguousarray(B.T, dtype=np.float32)))
    with warnings.catch_warnings():  # torch.ao.quantization is deprecated in favour of torchao
        warnings.simplefilter("ignore")
        # quantize_dynamic swaps the children of the module it is given, never that module
        # itself: a bare Linear would stay float32, so it goes in as a Sequential's child
        q = torch.ao.quantization.quantize_dynamic(torch.nn.Sequential(lin), {torch.nn.Linear},
                                                   dtype=torch.qint8)[0]
    x = torch.from_numpy(np.ascontiguousarray(A, dtype=np.float32))

    def linear():
        with torch.no_grad():
            return q(x)

    quantized = type(q).__module__.startswith("torch.ao.nn.quantized")
    out["torch dynamic-quant Linear"] = linear if quantized else (
        f"quantize_dynamic left the Linear as {type(q).__name__} (float32)")
    if int_mm:
        a8 = torch.randint(-127, 128, A.shape, dtype=torch.int8)
        b8 = torch.randint(-127, 128, B.shape, dtype=torch.int8)
        out["torch._int_mm"] = lambda: torch._int_mm(a8, b8)
    return out


def torch_peers(A, B, repeat, budget, int_mm: bool = True):
    """{name: (median seconds or None, note)} of torch._int_mm (unless int_mm=False) and
    torch's dynamic-quantized int8 Linear on A @ B; the Linear's output is kept under "C"."""
    out: dict = {}
    for name, fn in torch_calls(A, B, int_mm).items():
        try:
            out[name] = (None, fn) if isinstance(fn, str) else (median_time(fn, repeat, budget), "")
        except RuntimeError as exc:  # torch refuses some shapes (its errors are RuntimeErrors)
            out[name] = (None, str(exc).splitlines()[0][:60])
            continue
        if name == "torch dynamic-quant Linear" and not isinstance(fn, str):
            out["C"] = fn().numpy()
    return out


# ---- lrqc kernels and schemes ----------------------------------------------------------------

def scheme(body: str) -> lrqc.Scheme:
    """The scheme of `body` (its operand lines), as `scheme s { body }`."""
    return lrqc.parse_schemes(f"scheme s {{\n{body}\n}}")["s"]


def compile_kernel(s: lrqc.Scheme, m: int, n: int, k: int, label: str):
    """(kernel, build seconds) of lrqc.compile, with progress lines on stderr."""
    log(f"  compiling {label} for {m},{n},{k} ...")
    t0 = time.perf_counter()
    kernel = lrqc.compile(s, M=m, N=n, K=k)
    build = time.perf_counter() - t0
    log(f"    {build:.1f} s, rule {kernel.rule}")
    return kernel, build


FLOOR = "int8 per_tensor round=floor"  # the LRQMM base (arXiv:2409.18772)
TRUNC_PC = "int8 per_channel round=trunc"  # the sparse-residual base (arXiv:2403.06924)
TRUNC_PT = "int8 per_tensor round=trunc"


def both(base: str, term: str = "") -> str:
    """Scheme body with the same operand spec (base, + term) on a and b."""
    op = base + (f" + {term}" if term else "")
    return f"a: {op}\n b: {op}"


def lowrank(r: int, other: str = "") -> str:
    """LRQMM's low-rank term: a rank-1 sketch, or a randomized SVD (one power iteration);
    other="packed": the term on A multiplies B as the kernel holds it (its codes)."""
    tail = f", other={other}" if other else ""
    if r == 1:
        return f"lowrank(rank=1, method=sketch, power_iters=1{tail})"
    return f"lowrank(rank={r}, method=rsvd, oversample=8, power_iters=1{tail})"


def sparse(density_pct: int) -> str:
    """A sparse residual term that keeps about density_pct % of entries on U[0, 1) data (its
    threshold is 1 - density)."""
    return f"sparse(threshold={1 - density_pct / 100:g}, max_density=0.5)"


def cache_bytes() -> int:
    """The size of this CPU's largest cache (the last level) from Linux's sysfs, or 0 where
    it does not say."""
    best = 0
    base = "/sys/devices/system/cpu/cpu0/cache"
    try:
        entries = sorted(os.listdir(base))
    except OSError:  # no such folder, or not readable
        return 0
    for entry in entries:
        try:
            with open(os.path.join(base, entry, "size")) as f:
                text = f.read().strip()
        except OSError:
            continue
        m = re.fullmatch(r"(\d+)([KMG]?)", text)
        if m:
            best = max(best, int(m.group(1)) * {"": 1, "K": 2**10, "M": 2**20, "G": 2**30}[
                m.group(2)])
    return best


def memory_bandwidth(mib: int = 256, repeat: int = 5) -> float:
    """The machine's memory bandwidth in bytes/s: the best of `repeat` copies of a float64
    array of `mib` MiB (far past the caches), two threads each copying one half (numpy's copy
    releases the GIL), counting the bytes read and written."""
    src = np.ones(mib * 2**20 // 8)
    dst = np.empty_like(src)
    half = src.size // 2
    best = float("inf")
    for _ in range(repeat):
        parts = [threading.Thread(target=np.copyto, args=(dst[s], src[s]))
                 for s in (slice(0, half), slice(half, None))]
        t0 = time.perf_counter()
        for t in parts:
            t.start()
        for t in parts:
            t.join()
        best = min(best, time.perf_counter() - t0)
    return 2 * src.nbytes / best


def sparse_traffic(kernel, packed) -> int:
    """The bytes the sparse products of a kernel's last call must move at least: per product,
    the sparse operand's nonzeros (A's thresholded codes are read whole; B's CSR: its row
    pointers, indices and values), the dense operand's rows that some nonzero touches, the
    scales, and C read and written once."""
    bk = kernel._buckets[-1]  # the largest bucket: the bench calls it with M rows
    p, total = bk.plan, 0
    for j, sp in enumerate(p.sparse):
        c_bytes = 2 * p.mp * p.np_ * 4
        if sp.side == "a":
            S = bk.comp.sparse[j][0].numpy()
            d = packed.arrays.sparse[j].d
            rows = int(np.count_nonzero(S.any(axis=0)))
            total += S.nbytes + rows * d.shape[1] * d.itemsize + c_bytes
        elif not hasattr(packed.arrays.sparse[j], "idx"):  # B's copy for the dense formulation
            total += packed.arrays.sparse[j].v.nbytes + bk.comp.sparse[j][0].numpy().nbytes \
                + c_bytes
        else:
            csr = packed.arrays.sparse[j]
            Rt = bk.comp.sparse[j][0].numpy()
            rows = int(np.unique(csr.idx).size)
            total += csr.ptr.nbytes + csr.idx.nbytes + csr.val.nbytes \
                + rows * Rt.shape[1] * Rt.itemsize + c_bytes
    return total


def sparse_quads(kernel, packed) -> tuple[int, str] | None:
    """(quads, form): the quads of nonzeros (four nonzeros by w = 64 sums on AVX-512 VNNI, 32
    on AVX2: one step of bench/peak.c's vnni_quads or avx2_quads) that the sparse products of a
    kernel's last call ran, where every product ran sparse four at a time, and the form they
    ran in ("vnni", "avx2"); None otherwise (a dense formulation, or another loop). Each row's
    (B's terms: A's copy per call) or column's (A's terms: B's CSR) list of nonzeros is padded
    to a multiple of four per scale group, and runs once per w columns of C (B's terms) or w
    rows (A's terms)."""
    from lrqc.backend.te import sparse_quads
    bk = kernel._buckets[-1]  # the largest bucket: the bench calls it with M rows
    p = bk.plan
    form = sparse_quads.form(kernel.target)
    if not form or bk.comp is None:
        return None
    w = sparse_quads.width(form)
    ran = " ".join(kernel.last_notes)
    total = 0
    for j, sp in enumerate(p.sparse):
        term = f"{'B' if sp.side == 'a' else 'A'}'s term {sp.n} ran sparse"
        if term not in ran or not sparse_quads.quads(p, j, form):
            return None
        if sp.side == "a":
            S = bk.comp.sparse[j][0].numpy()
            nnz = np.count_nonzero(S.reshape(p.mp, p.gq, -1), axis=2)
            total += int(((nnz + 3) // 4).sum()) * (p.np_ // w)
        else:
            lengths = np.diff(packed.arrays.sparse[j].ptr.astype(np.int64))
            total += int(((lengths + 3) // 4).sum()) * (p.mp // w)
    return total, form


def rel(C, ref) -> float:
    """||C - ref||_F / ||ref||_F."""
    return float(np.linalg.norm(C - ref) / np.linalg.norm(ref))


def bench_args(doc: str, shapes: str, argv=None):
    """--shapes, --repeat, --budget of gemm_cpu.py and compensation_cpu.py."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--shapes", default=shapes, help="M,N,K;M,N,K;...")
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--budget", type=float, default=20.0, help="seconds per measurement at most")
    return ap.parse_args(argv)
