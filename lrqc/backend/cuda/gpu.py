"""CUDA helpers shared by the rules in schedules/cuda/ (the GPU counterpart of tiles.py): the
dp4a integer GEMM tile with the dequantization (and low-rank) epilogue fused per thread, TVM's
dlight rules for every other function (quantization pass, row dot products, float GEMMs), and
nvcc: PTX for inspection, a fatbin per build for the archs asked for.

TVM 0.27 facts this relies on (notes section 3): code generation stores CUDA source and needs
no GPU; nvcc's PTX is made here; dlight's int8 tensor-core rule crashes in its software
pipeline, so integer GEMMs are scheduled here."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from ...errors import LrqcError
from ...plan import names
from ..compat import Schedule, tvm
from ..intrin.x86 import DP4A, register
from ..schedule.tiles import has_block, picks

# instruction patterns in PTX, for build reports and the compile-only tests
PTX_PATTERNS = {
    # A's codes unsigned, B's signed (either operand order): s32.s32 / u32.u32 would be wrong
    "dp4a": r"\bdp4a\.(?:u32\.s32|s32\.u32)",
    "wmma.s8": r"wmma\.mma\.sync[^\n]*\.s8",
    # f16 inputs are implicit in PTX (only the d and c types are written); bf16 are explicit
    "wmma.f16": r"wmma\.mma\.sync[^\n]*\.m16n16k16\.f32\.f32\b",
    "wmma.bf16": r"wmma\.mma\.sync[^\n]*\.f32\.bf16\.bf16\.f32",
    "mma.s8": r"(?m)^\s*mma\.sync[^\n]*\.s8",
    "fma.f32": r"\bfma\.rn\.f32",
}


def default_schedule(mod):
    """dlight's default GPU rules (matmul, GEMV, reductions, fallback) for a whole function,
    under the current target: every block bound to threads, reductions cross-thread."""
    from tvm.s_tir import dlight as dl

    return dl.ApplyDefaultSchedule(dl.gpu.Matmul(), dl.gpu.GEMV(), dl.gpu.Reduction(),
                                   dl.gpu.GeneralReduction(), dl.gpu.Fallback())(mod)


def _pick(extent: int, choices) -> int:
    return next((c for c in choices if extent % c == 0), 1)


def dp4a_knobs(plan) -> dict:
    """The dp4a GEMM's tuning space, name -> (candidates, hand choice): accumulator rows per
    thread "mi" (16 threads along the rows when the bucket has that many), 16-column groups per
    thread "nj" and the k chunk "kc" staged in shared memory (in 4-byte steps: knob values
    feed schedule steps unchanged, as MetaSchedule traces need). Every candidate divides its
    extent, so any combination is a valid tile."""
    rows = _pick(plan.mp, (64, 32, 16, 8, 4, 2, 1))
    ty = _dp4a_ty(plan)
    k4 = plan.vector // 4  # one group's k (all of k for single-group products)
    kc_hand = _pick(k4, (16, 8, 4, 2, 1))
    return {
        "mi": (tuple(v for v in (1, 2, 4) if plan.mp % (ty * v) == 0), rows // ty),
        "nj": (tuple(v for v in (1, 2, 4) if plan.np_ % (16 * v) == 0),
               _pick(plan.np_, (64, 32, 16)) // 16),
        "kc": (tuple(v for v in (4, 8, 16, 32) if k4 % v == 0) or (kc_hand,), kc_hand),
    }


def gemm_tile(plan, knob=None) -> dict:
    """Thread-block tile of the dp4a GEMM: rows = ty x mi, columns = tx x nj (16 threads along
    the columns, nj consecutive columns each), k chunk of 4 kc bytes staged in shared memory;
    knob(name, candidates, hand) picks the tunable ones (default: the hand choices)."""
    return {"ty": _dp4a_ty(plan), "tx": 16, **picks(dp4a_knobs(plan), knob)}


def _dp4a_ty(plan) -> int:
    """Threads along the rows of the dp4a tile: 16, or the bucket's rows when fewer."""
    return min(16, _pick(plan.mp, (64, 32, 16, 8, 4, 2, 1)))


def dp4a_gemm(sch, plan, acc: str = names.ACC, out: str = names.OUT, knob=None):
    """The integer GEMM on dp4a: block (bi, bj) -> threads (ti, tj) -> k chunks ko (A's and
    B's tiles, nibbles unpacked on the way, staged in shared memory by all threads) -> kk ->
    mi x nj accumulators per thread in registers -> dp4a on 4 k bytes. Single group: the
    output block (dequantization, zero-point correction, low-rank epilogue) runs per thread on
    its own accumulators. Per-group products: _dp4a_groups."""
    t = gemm_tile(plan, knob)
    if plan.groups > 1:
        _dp4a_groups(sch, plan, t, out)
        return
    blk = sch.get_sblock(acc)
    i, j, k = sch.get_loops(blk)
    bi, ti, ii, bj, tj, jj = _thread_tile(sch, i, j, t)
    ko, kk, kv = sch.split(k, [None, t["kc"], 4])
    sch.reorder(bi, bj, ti, tj, ko, kk, ii, jj, kv)
    sch.set_scope(blk, 0, "local")
    _stage(sch, blk, ko, t, 5)
    sch.unroll(ii)
    sch.unroll(jj)
    o = sch.get_sblock(out)
    sch.reverse_compute_at(o, tj)
    for lp in sch.get_loops(o)[6:]:  # under bi, bj, ti, tj: the thread's rows and columns
        sch.unroll(lp)
    sch.decompose_reduction(blk, ko)
    sch.tensorize(kv, register(DP4A))


def _dp4a_groups(sch, plan, t: dict, out: str):
    """Per-group products (per_vector, MX, dense residual segments): the output block, which
    sums the groups' scaled partial sums, is the anchor. Block -> threads -> group g -> the
    group's int32 partial sums for the thread's mi x nj outputs in registers (k chunks of the
    group staged in shared memory, dp4a) -> scaled and added to float32 registers; the low-rank
    epilogue per thread, and the output written once after the last group."""
    o = sch.get_sblock(out)
    i, j, g = sch.get_loops(o)
    bi, ti, ii, bj, tj, jj = _thread_tile(sch, i, j, t)
    sch.reorder(bi, bj, ti, tj, g, ii, jj)
    write = sch.cache_write(o, 0, "local")
    sch.reverse_compute_at(write, tj)
    for lp in sch.get_loops(write)[4:]:  # under bi, bj, ti, tj: the thread's outputs
        sch.unroll(lp)
    part = sch.get_sblock(names.PARTIAL)
    sch.compute_at(part, g)
    sch.set_scope(part, 0, "local")
    *rows_cols, pk = sch.get_loops(part)[5:]  # under bi, bj, ti, tj, g (unit loops dropped)
    ko, kk, kv = sch.split(pk, [None, t["kc"], 4])
    sch.reorder(ko, kk, *rows_cols, kv)
    _stage(sch, part, ko, t, 6)
    for lp in rows_cols:
        sch.unroll(lp)
    sch.unroll(ii)
    sch.unroll(jj)
    for side in ("a", "b"):  # the low-rank epilogue's sums over ranks, per thread
        if has_block(sch, names.LOWRANK_EPI + side):
            lr = sch.get_sblock(names.LOWRANK_EPI + side)
            sch.compute_at(lr, tj)
            sch.set_scope(lr, 0, "local")
    sch.decompose_reduction(part, ko)
    sch.decompose_reduction(o, g)
    sch.tensorize(kv, register(DP4A))


def _thread_tile(sch, i, j, t: dict) -> tuple:
    """Rows and columns of the output over blocks and threads: each thread's mi x nj outputs
    contiguous, so its local accumulator array is exactly that size (TVM compacts a buffer to
    its bounding box: strided thread tiles would waste registers)."""
    bi, ti, ii = sch.split(i, [None, t["ty"], t["mi"]])
    bj, tj, jj = sch.split(j, [None, t["tx"], t["nj"]])
    sch.bind(bi, "blockIdx.y")
    sch.bind(bj, "blockIdx.x")
    sch.bind(ti, "threadIdx.y")
    sch.bind(tj, "threadIdx.x")
    return bi, ti, ii, bj, tj, jj


def _stage(sch, blk, ko, t: dict, outer: int) -> None:
    """A's and B's tiles of block blk's k chunk ko in shared memory (nibbles unpacked from
    global straight into it), copied by all threads of the block; `outer` loops enclose each
    copy's own loops."""
    a_sh = sch.cache_read(blk, 0, "shared")
    if has_block(sch, names.UNPACK):
        b_sh = sch.get_sblock(names.UNPACK)
        sch.set_scope(b_sh, 0, "shared")
    else:
        b_sh = sch.cache_read(blk, 1, "shared")
    for cache in (a_sh, b_sh):
        sch.compute_at(cache, ko)
        fused = sch.fuse(*sch.get_loops(cache)[outer:])
        _, fy, fx = sch.split(fused, [None, t["ty"], t["tx"]])  # predicated where not a multiple
        sch.bind(fy, "threadIdx.y")
        sch.bind(fx, "threadIdx.x")


def cuda_source(module) -> str:
    """The CUDA C++ source TVM generated for a compiled module (its device import)."""
    module = getattr(module, "mod", module)  # an Executable or its runtime module
    for m in getattr(module, "imports", []):
        if m.kind == "cuda":
            return m.inspect_source("cuda") or m.inspect_source("")
    return ""


def nvcc_path() -> str:
    path = shutil.which("nvcc")
    if path is None:
        raise LrqcError("CUDA targets need nvcc (the CUDA toolkit) on PATH to build device code")
    return path


def cuda_version() -> str:
    """nvcc's release, e.g. '13.0'."""
    out = subprocess.run([nvcc_path(), "--version"], capture_output=True, text=True).stdout
    m = re.search(r"release (\d+\.\d+)", out)
    return m.group(1) if m else "unknown"


def _nvcc(source: str, args: list[str], suffix: str) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp) / "lrqc_kernels.cu", Path(tmp) / f"lrqc_kernels.{suffix}"
        src.write_text(source)
        res = subprocess.run([nvcc_path(), *args, "-O3", "-o", str(out), str(src)],
                             capture_output=True, text=True)
        if res.returncode != 0:
            raise LrqcError("nvcc failed on the generated CUDA source:\n"
                            + "\n".join((res.stderr or res.stdout).strip().splitlines()[-12:]))
        return out.read_bytes()


def ptx(source: str, arch: str) -> str:
    """PTX of the source for one arch (sm_XX)."""
    return _nvcc(source, ["--ptx", f"-arch={arch}"], "ptx").decode()


def fatbin(source: str, archs: list[str]) -> bytes:
    """A fatbin with SASS for every arch and PTX of the highest (forward compatible)."""
    gencode = [f"-gencode=arch=compute_{a[3:]},code=sm_{a[3:]}" for a in archs]
    top = archs[-1][3:]
    gencode.append(f"-gencode=arch=compute_{top},code=compute_{top}")
    return _nvcc(source, ["--fatbin", *gencode], "fatbin")


def count(ptx_text: str) -> dict:
    """{instruction: occurrences} of PTX_PATTERNS in a PTX text (non-zero only)."""
    out = {k: len(re.findall(p, ptx_text)) for k, p in PTX_PATTERNS.items()}
    return {k: v for k, v in out.items() if v}


def source_hash(source: str) -> str:
    return hashlib.sha256(source.encode()).hexdigest()


def gpu_present() -> bool:
    """Whether this machine can run CUDA code through TVM (a GPU and TVM's CUDA runtime)."""
    try:
        return bool(tvm.cuda(0).exist)
    except Exception:
        return False


os.environ.setdefault("TVM_CUDA_COMPILE_MODE", "nvcc")  # never NVRTC (needs cuda-bindings)


def device():
    return tvm.cuda(0)


def device_arch() -> str:
    """sm_XX of GPU 0."""
    return "sm_" + str(device().compute_version).replace(".", "")


def arch_mismatch(target: dict) -> str | None:
    """Why code built for the target's archs cannot run on GPU 0, or None."""
    archs = list(target.archs)
    have = device_arch()
    if have in archs:
        return None
    # the fatbin also holds PTX of its highest arch, which newer GPUs JIT-compile
    top = max(int(a[3:]) for a in archs)
    if int(have[3:]) > top:
        return None
    from ..target import CUDA_ARCHS

    fit = [a for a in CUDA_ARCHS if int(a[3:]) <= int(have[3:])]
    hint = (f"rebuild with --target 'cuda -arch={fit[-1]}'" if fit
            else f"lrqc builds for {', '.join(CUDA_ARCHS)} only")
    return (f"this kernel was built for {', '.join(archs)}, but GPU 0 ({device().device_name}) "
            f"is {have}: {hint}")


_SERVED: dict = {}  # source sha256 -> fatbin, for TVM's load-time compile hook
_PREVIOUS: list = []  # TVM's own hook (nvcc), for every other source
SERVED_HITS = [0]  # how many loads the hook answered from a fatbin (tests check it is used)


def _compile(code, *rest):
    text = code.decode() if isinstance(code, bytes) else str(code)
    found = _SERVED.get(source_hash(text))
    if found is not None:
        SERVED_HITS[0] += 1
        return found
    if not _PREVIOUS or _PREVIOUS[0] is None:
        raise LrqcError("no CUDA compiler hook for a module without a fatbin")
    return _PREVIOUS[0](code, *rest)


def serve_fatbin(binary: bytes, sha256: str) -> None:
    """Make TVM's load-time CUDA compile hook return this precompiled fatbin for the source it
    was built from (an exported CUDA module carries source, which TVM compiles when loading it:
    notes section 4), so loading an artifact runs no compiler. Any other source (kernels
    compiled in this process) goes to TVM's own hook (nvcc)."""
    import importlib

    import tvm_ffi

    importlib.import_module("tvm.support.nvcc")  # registers TVM's hook, kept for the rest
    if not _PREVIOUS:
        _PREVIOUS.append(tvm_ffi.get_global_func("tvm_callback_cuda_compile", allow_missing=True))
    _SERVED[sha256] = binary
    tvm_ffi.register_global_func("tvm_callback_cuda_compile", _compile, override=True)


def fatbin_contents(binary: bytes) -> list[tuple[str, str]]:
    """[(kind, arch)] of the images in a fatbin: ("sass", "sm_90"), ("ptx", "sm_90"), ... (read
    from the container's entry headers: a build-report and test aid, no CUDA tool needed)."""
    import struct

    magic, _, hsz, size = struct.unpack_from("<IHHQ", binary, 0)
    if magic != 0xBA55ED50:
        raise LrqcError("not a CUDA fatbin (bad magic)")
    out, off = [], hsz
    while off < hsz + size:
        kind, _, ehs, esize = struct.unpack_from("<HHIQ", binary, off)
        arch = struct.unpack_from("<I", binary, off + 28)[0]
        out.append(({1: "ptx", 2: "sass"}.get(kind, f"kind{kind}"), f"sm_{arch}"))
        off += ehs + esize
    return out


def wmma_knobs(plan) -> dict:
    """The tensor-core GEMM's tuning space, name -> (candidates, hand choice): warps per block
    along rows and columns ("wy", "wx") and 16 x 16 fragments per warp ("fy", "fx"), so any
    combination's block tile divides the bucket's padded sizes (which the rule checks are
    multiples of 64). Hand: 2 x 2 warps of 2 x 2 fragments (a 64 x 64 output tile). The k
    chunk "kf" stays one fragment: WMMA loads need 32-byte aligned fragment pointers, which a
    second int8 fragment 16 bytes into a 32-byte row breaks, and with 16-bit values two
    fragments make a 16-row tile's staging buffer larger than its accumulator tile (see
    wmma_gemm's storage_align)."""
    def along(extent):
        return ((1, 2, 4) if extent % 128 == 0 else (1, 2)), (1, 2)

    (wy, fy), (wx, fx) = along(plan.mp), along(plan.np_)
    return {"wy": (wy, 2), "wx": (wx, 2), "fy": (fy, 2), "fx": (fx, 2), "kf": ((1,), 1)}


def wmma_tile(plan, knob=None) -> dict:
    """The tensor-core tile (wmma_knobs) at the hand choices, or as knob picks them. Which
    plans fit it is the rule's call (schedules/cuda/05_wmma.py applies())."""
    return picks(wmma_knobs(plan), knob)


def wmma_gemm(sch, plan, acc: str = names.ACC, out: str = names.OUT, knob=None):
    """A GEMM on tensor cores: the single-group integer GEMM (WMMA m16n16k16 s8 x s8 -> s32,
    A's codes shifted to s8: block names.A_S8) or the float GEMM of 16-bit values (f16 / bf16
    -> f32, block names.A_HALF). Block (bi, bj) -> warp (wy x wx) -> k chunks ko,
    software-pipelined (A's tile and B's N x K view staged in double-buffered shared memory by
    all threads, 4 elements per thread-copy) -> 16-k steps -> fy x fx fragments per warp; each
    warp's accumulators stored to shared memory, then the output block (scales, zero-point
    correction, low-rank epilogue) computed from them by the warp's 32 threads."""
    from ..intrin.cuda import register_all

    s8 = has_block(sch, names.A_S8)
    a_name = names.A_S8 if s8 else names.A_HALF
    intrin = register_all("int8" if s8 else plan.half)
    t = wmma_tile(plan, knob)
    blk = sch.get_sblock(acc)
    if has_block(sch, names.UNPACK):
        sch.compute_inline(sch.get_sblock(names.UNPACK))
    i, j, k = sch.get_loops(blk)
    i, ii = sch.split(i, [None, 16])
    j, jj = sch.split(j, [None, 16])
    k, kk = sch.split(k, [None, 16])
    sch.reorder(i, j, k, ii, jj, kk)
    outer = sch.blockize(ii)
    bi, wy, fy = sch.split(i, [None, t["wy"], t["fy"]])
    bj, wx, fx = sch.split(j, [None, t["wx"], t["fx"]])
    ko, ki = sch.split(k, [None, t["kf"]])
    sch.reorder(bi, bj, wy, wx, ko, ki, fy, fx)
    sch.bind(bi, "blockIdx.y")
    sch.bind(bj, "blockIdx.x")
    warp = sch.fuse(wy, wx)
    sch.bind(warp, "threadIdx.y")
    for name in (a_name, names.B_NK):  # global -> shared, converted / re-laid on the way
        b = sch.get_sblock(name)
        sch.set_scope(b, 0, "shared")
        sch.compute_at(b, ko)
        fused = sch.fuse(*sch.get_loops(b)[-2:])
        _, f1y, f1x, f2, f3 = sch.split(fused, [None, t["wy"], t["wx"], 32, 4])
        sch.bind(sch.fuse(f1y, f1x), "threadIdx.y")  # (no product of knobs: traces need RVs)
        sch.bind(f2, "threadIdx.x")
        sch.vectorize(f3)
    a_frag = sch.cache_read(outer, 0, "wmma.matrix_a")
    b_frag = sch.cache_read(outer, 1, "wmma.matrix_b")
    sch.compute_at(a_frag, ki)
    sch.compute_at(b_frag, ki)
    acc_sh = sch.cache_write(outer, 0, "shared")
    store = sch.cache_write(outer, 0, "wmma.accumulator")
    sch.reverse_compute_at(store, warp)
    si, sj = sch.get_loops(store)[-2:]
    si0, si1 = sch.split(si, [None, 16])
    sj0, sj1 = sch.split(sj, [None, 16])
    sch.reorder(si0, sj0, si1, sj1)
    init = sch.decompose_reduction(outer, ko)
    for frag, role in ((a_frag, "load_a"), (b_frag, "load_b")):
        fi, fj = sch.get_loops(frag)[-2:]
        fi0, fi1 = sch.split(fi, [None, 16])
        fj0, fj1 = sch.split(fj, [None, 16])
        sch.reorder(fi0, fj0, fi1, fj1)
        sch.tensorize(fi1, intrin[role])
    sch.tensorize(sch.get_loops(sch.get_child_blocks(init)[0])[-2], intrin["init"])
    sch.tensorize(si1, intrin["store"])
    # rows of the shared accumulator tile padded to 8 words past a multiple of 32 (fragment
    # stores stay 32-byte aligned; threads reading a column back hit other banks). With one
    # fragment of k per chunk this also keeps the tile larger than either staging buffer:
    # TVM's StorageRewrite would otherwise reuse one for it and then reject the store's typed
    # access pointer (float32 into float16 memory)
    sch.storage_align(sch.get_child_blocks(sj0)[0], 0, axis=0, factor=32, offset=8)
    sch.tensorize(sch.get_loops(blk)[-3], intrin["compute"])
    # software pipeline over the k chunks: the next chunk's A and B tiles are copied into the
    # other half of double-buffered shared memory while the fragments of this one multiply
    # (TVM's InjectSoftwarePipeline; the fragment loads stay inside the compute stage, which
    # is what makes it work: dlight's WMMA rule pipelines them too and crashes, notes s. 3)
    sch.annotate(ko, "software_pipeline_stage", [0, 0, 1])
    sch.annotate(ko, "software_pipeline_order", [0, 1, 2])
    # the shared accumulator tile feeds the output block directly, per warp
    sch.compute_inline(acc_sh)
    o = sch.get_sblock(out)
    sch.reverse_compute_at(o, warp)
    ol = sch.get_loops(o)
    n_out = 2 if len(sch.get(o).iter_vars) == 2 else 3  # i, j (, ranks c)
    spatial = ol[len(ol) - n_out: len(ol) - n_out + 2]
    fused = sch.fuse(*spatial)
    _, tx = sch.split(fused, [None, 32])
    sch.bind(tx, "threadIdx.x")


def schedule_into(fn: str, sch, plan, rule, knob=None) -> str | None:
    """Schedule function fn in sch with lrqc's own GPU schedules (the rule's GEMM, per_block
    for the other functions); knob(name, candidates, hand) picks the tunable choices (lrqc
    tune). Returns how, or None when fn is left to dlight (GEMMs without a rule, blocks
    per_block does not know; sch is then partly scheduled and must be dropped)."""
    if rule.handles(fn, plan):
        rule.schedule(fn, sch, plan, _Helpers, knob=knob)
        return f"hand schedule {rule.NAME}"
    if fn in (names.FN_GEMM, names.FN_ACC):  # GEMMs without a rule: dlight's matmul rules
        return None
    try:
        per_block(sch, knob=knob)
    except Exception:  # a block shape per_block does not know: dlight's rules
        return None
    return PER_BLOCK


PER_BLOCK = "lrqc per-block GPU schedule (cross-thread reductions)"
DLIGHT = "TVM dlight default GPU schedule"


def schedule(fn: str, tensors_mod, plan, rule, trace=None):
    """The scheduled PrimFunc of function fn: a tuning record's trace when given, else
    schedule_into, else dlight's defaults. Under the current target; the function's HOW
    attribute says which."""
    sch = Schedule(tensors_mod)
    if trace is not None:
        from ...tuning.search import replay

        replay(sch, trace)
        how = "tuning record"
    else:
        how = schedule_into(fn, sch, plan, rule)
    func = sch.mod["main"] if how else default_schedule(tensors_mod)["main"]
    return func.with_attr(HOW, how or DLIGHT)


HOW = "lrqc_schedule"  # function attribute: how lrqc scheduled it (for the build report)


PER_BLOCK_THREADS = (64, 128, 256, 512)  # lrqc tune's candidates; hand 256


def per_block(sch, threads: int = 256, knob=None):
    """Every block of a function (quantization pass, row dot products, float GEMMs) as its own
    kernel: elementwise blocks one thread per element; reductions one thread block per output
    element (the spatial loops fused onto blockIdx.x), its threads splitting the reduced
    elements (coalesced along the innermost axis) and combining them with a cross-thread
    reduction. (dlight's fallback reduces per-tensor statistics in one thread, reading and
    writing global memory per element.) threads: per thread block, at most; knob may pick
    it (lrqc tune) for the blocks with at least PER_BLOCK_THREADS[-1] threads' worth of work,
    the others keep the hand count (a sampled count is a trace variable: it can only feed
    schedule steps, not Python arithmetic)."""
    plan = []
    for b in sch.get_child_blocks(sch.get_sblock("root")):
        if not sch.get_loops(b):
            sch.add_unit_loop(b)
        loops = sch.get_loops(b)
        kinds = [int(iv.iter_type) for iv in sch.get(b).iter_vars]
        if len(kinds) != len(loops) or kinds != sorted(kinds):
            raise ValueError(f"block {sch.get(b).name_hint}: loops do not follow its axes")
        ns = kinds.count(0)
        spatial, red = loops[:ns], loops[ns:]
        extent = 1
        for lp in red or loops:
            extent *= int(sch.get(lp).extent)
        plan.append((spatial, red, loops, extent))
    big = PER_BLOCK_THREADS[-1]
    tuned = threads
    if knob is not None and any(e >= big for *_, e in plan):
        tuned = knob("threads", PER_BLOCK_THREADS, threads)
    for spatial, red, loops, extent in plan:
        t = tuned if extent >= big else min(threads, 1 << max(0, (extent - 1).bit_length()))
        if red:
            if spatial:
                sch.bind(sch.fuse(*spatial) if len(spatial) > 1 else spatial[0], "blockIdx.x")
            r = sch.fuse(*red) if len(red) > 1 else red[0]
            _, tx = sch.split(r, [None, t])
            sch.bind(tx, "threadIdx.x")
        else:
            f = sch.fuse(*loops) if len(loops) > 1 else loops[0]
            bo, tx = sch.split(f, [None, t])
            sch.bind(bo, "blockIdx.x")
            sch.bind(tx, "threadIdx.x")


class _Helpers:
    """What a CUDA rule receives as `tiles` (rules never import TVM)."""

    dp4a_gemm = staticmethod(dp4a_gemm)
    dp4a_knobs = staticmethod(dp4a_knobs)
    wmma_gemm = staticmethod(wmma_gemm)
    wmma_knobs = staticmethod(wmma_knobs)
