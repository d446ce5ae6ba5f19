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

from ..errors import LrqcError
from . import names
from .tiles import has_block
from .compat import Schedule, tvm
from .intrin import DP4A, register


# instruction patterns in PTX, for build reports and the compile-only tests
PTX_PATTERNS = {
    # A's codes unsigned, B's signed (either operand order): s32.s32 / u32.u32 would be wrong
    "dp4a": r"\bdp4a\.(?:u32\.s32|s32\.u32)",
    "wmma.s8": r"wmma\.mma\.sync[^\n]*\.s8",
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


def gemm_tile(plan) -> dict:
    """Thread-block tile of the dp4a GEMM: rows = ty x mi, columns = tx x nj (16 threads along
    the columns, nj consecutive columns each), k chunk of kc bytes staged in shared memory."""
    rows = _pick(plan.mp, (64, 32, 16, 8, 4, 2, 1))
    ty = min(16, rows)
    cols = _pick(plan.np_, (64, 32, 16))
    return {"ty": ty, "mi": rows // ty, "tx": 16, "nj": cols // 16,
            "kc": _pick(plan.kp, (64, 32, 16, 8, 4))}


def dp4a_gemm(sch, plan, acc: str = names.ACC, out: str = names.OUT, tile=None):
    """The single-group integer GEMM: block (bi, bj) -> threads (ti, tj) -> k chunks ko (A's
    and B's tiles, nibbles unpacked on the way, staged in shared memory by all threads) ->
    kk -> mi x nj accumulators per thread in registers -> dp4a on 4 k bytes. The output block
    (dequantization, zero-point correction, low-rank epilogue) runs per thread on its own
    accumulators."""
    t = tile or gemm_tile(plan)
    blk = sch.get_sblock(acc)
    i, j, k = sch.get_loops(blk)
    # each thread's mi x nj outputs contiguous: a local accumulator array of exactly that size
    # (TVM compacts a buffer to its bounding box, so strided thread tiles would waste registers)
    bi, ti, ii = sch.split(i, [None, t["ty"], t["mi"]])
    bj, tj, jj = sch.split(j, [None, t["tx"], t["nj"]])
    ko, kk, kv = sch.split(k, [None, t["kc"] // 4, 4])
    sch.reorder(bi, bj, ti, tj, ko, kk, ii, jj, kv)
    sch.bind(bi, "blockIdx.y")
    sch.bind(bj, "blockIdx.x")
    sch.bind(ti, "threadIdx.y")
    sch.bind(tj, "threadIdx.x")
    sch.set_scope(blk, 0, "local")
    a_sh = sch.cache_read(blk, 0, "shared")
    if has_block(sch, names.UNPACK):  # nibbles: unpacked from global straight into shared
        b_sh = sch.get_sblock(names.UNPACK)
        sch.set_scope(b_sh, 0, "shared")
    else:
        b_sh = sch.cache_read(blk, 1, "shared")
    for cache in (a_sh, b_sh):
        sch.compute_at(cache, ko)
        _cooperative(sch, cache, t["ty"], t["tx"])
    sch.unroll(ii)
    sch.unroll(jj)
    o = sch.get_sblock(out)
    sch.reverse_compute_at(o, tj)
    for lp in sch.get_loops(o)[6:]:  # under bi, bj, ti, tj: the thread's rows and columns
        sch.unroll(lp)
    sch.decompose_reduction(blk, ko)
    sch.tensorize(kv, register(DP4A))


def _cooperative(sch, block, ty: int, tx: int):
    """All threads of the block copy the tile: its loops fused, split over (ty, tx)."""
    loops = sch.get_loops(block)[5:]  # under bi, bj, ti, tj, ko: the copy's own loops
    fused = sch.fuse(*loops)
    _, fy, fx = sch.split(fused, [None, ty, tx])  # predicated where the tile is not a multiple
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
    archs = target.get("lrqc_archs") or [target["arch"]]
    have = device_arch()
    if have in archs:
        return None
    # the fatbin also holds PTX of its highest arch, which newer GPUs JIT-compile
    top = max(int(a[3:]) for a in archs)
    if int(have[3:]) > top:
        return None
    from .target import CUDA_ARCHS

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


def wmma_tile(plan) -> dict:
    """Tensor-core tile: 2 x 2 warps per block, each 2 x 2 fragments of 16 x 16 (a 64 x 64
    output tile), k chunks of 16 bytes (one fragment wide: WMMA loads need 32-byte aligned
    fragment pointers, which a second fragment 16 bytes into a 32-byte row would break). Which
    plans fit it is the rule's call (schedules/cuda/05_wmma.py applies())."""
    return {"wy": 2, "wx": 2, "fy": 2, "fx": 2, "kf": 1}


def wmma_gemm(sch, plan, acc: str = names.ACC, out: str = names.OUT, tile=None):
    """The single-group integer GEMM on tensor cores (WMMA m16n16k16 s8 x s8 -> s32): block
    (bi, bj) -> warp (wy x wx) -> k chunks ko, software-pipelined (A's codes shifted to s8 and
    B's N x K view staged in double-buffered shared memory by all threads, 4 bytes per
    thread-copy) -> 16-k steps -> fy x fx fragments per warp; each warp's accumulators stored to shared memory, then the output block
    (dequantization, zero-point correction, low-rank epilogue) computed from them by the warp's
    32 threads."""
    from .intrin_wmma import register_all

    intrin = register_all()
    t = tile or wmma_tile(plan)
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
    warps = t["wy"] * t["wx"]
    for name in (names.A_S8, names.B_NK):  # global -> shared, shifted / re-laid on the way
        b = sch.get_sblock(name)
        sch.set_scope(b, 0, "shared")
        sch.compute_at(b, ko)
        fused = sch.fuse(*sch.get_loops(b)[-2:])
        _, f1, f2, f3 = sch.split(fused, [None, warps, 32, 4])
        sch.bind(f1, "threadIdx.y")
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


def schedule(fn: str, tensors_mod, plan, rule):
    """The scheduled PrimFunc of function fn: the rule's own schedule where it has one; GEMMs
    without one (per-group, float) dlight's defaults; other functions per_block (dlight's
    defaults if that fails). Under the current target; the function's HOW attribute says
    which."""
    sch = Schedule(tensors_mod)
    if rule.handles(fn, plan):
        rule.schedule(fn, sch, plan, _Helpers)
        how = f"hand schedule {rule.NAME}"
    elif fn in (names.FN_GEMM, names.FN_ACC):  # GEMMs without a rule: dlight's matmul rules
        sch, how = None, "TVM dlight default GPU schedule"
    else:
        try:
            per_block(sch)
            how = "lrqc per-block GPU schedule (cross-thread reductions)"
        except Exception:  # a block shape per_block does not know: dlight's rules
            sch, how = None, "TVM dlight default GPU schedule"
    func = sch.mod["main"] if sch is not None else default_schedule(tensors_mod)["main"]
    return func.with_attr(HOW, how)


HOW = "lrqc_schedule"  # function attribute: how lrqc scheduled it (for the build report)


def per_block(sch, threads: int = 256):
    """Every block of a function (quantization pass, row dot products, float GEMMs) as its own
    kernel: elementwise blocks one thread per element; reductions one thread block per output
    element (the spatial loops fused onto blockIdx.x), its threads splitting the reduced
    elements (coalesced along the innermost axis) and combining them with a cross-thread
    reduction. (dlight's fallback reduces per-tensor statistics in one thread, reading and
    writing global memory per element.)"""
    for b in sch.get_child_blocks(sch.get_sblock("root")):
        if not sch.get_loops(b):
            sch.add_unit_loop(b)
        loops = sch.get_loops(b)
        kinds = [int(iv.iter_type) for iv in sch.get(b).iter_vars]
        if len(kinds) != len(loops) or kinds != sorted(kinds):
            raise ValueError(f"block {sch.get(b).name_hint}: loops do not follow its axes")
        ns = kinds.count(0)
        spatial, red = loops[:ns], loops[ns:]
        if red:
            if spatial:
                sch.bind(sch.fuse(*spatial) if len(spatial) > 1 else spatial[0], "blockIdx.x")
            r = sch.fuse(*red) if len(red) > 1 else red[0]
            extent = int(sch.get(r).extent)
            t = min(threads, 1 << max(0, (extent - 1).bit_length()))
            _, tx = sch.split(r, [None, t])
            sch.bind(tx, "threadIdx.x")
        else:
            f = sch.fuse(*loops) if len(loops) > 1 else loops[0]
            extent = int(sch.get(f).extent)
            t = min(threads, 1 << max(0, (extent - 1).bit_length()))
            bo, tx = sch.split(f, [None, t])
            sch.bind(bo, "blockIdx.x")
            sch.bind(tx, "threadIdx.x")


class _Helpers:
    """What a CUDA rule receives as `tiles` (rules never import TVM)."""

    dp4a_gemm = staticmethod(dp4a_gemm)
    wmma_gemm = staticmethod(wmma_gemm)
