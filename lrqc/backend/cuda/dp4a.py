"""The integer GEMM on dp4a (u8 x s8 -> s32, 4 k per instruction) for rule cuda_dp4a: A's and
B's k chunks staged in shared memory (packed codes unpacked on the way), register tiles per
thread, the dequantization (and low-rank) epilogue fused per thread; per-group products group
by group in registers."""

from __future__ import annotations

from ...plan import names
from ...plan.model import KernelPlan
from ..compat import Schedule
from ..intrin.x86 import DP4A, register
from ..schedule.protocol import Knob
from ..schedule.tiles import has_block, pick_split, picks

ROWS = (64, 32, 16, 8, 4, 2, 1)  # rows of a tile, largest first


def dp4a_knobs(plan: KernelPlan) -> dict:
    """The dp4a GEMM's tuning space, name -> (candidates, hand choice): accumulator rows per
    thread "mi" (16 threads along the rows when the bucket has that many), 16-column groups per
    thread "nj" and the k chunk "kc" staged in shared memory (in 4-byte steps: knob values
    feed schedule steps unchanged, as MetaSchedule traces need). Every candidate divides its
    extent, so any combination is a valid tile."""
    rows = pick_split(plan.mp, ROWS)
    ty = _dp4a_ty(plan)
    k4 = plan.vector // 4  # one group's k (all of k for single-group products)
    kc_hand = pick_split(k4, (16, 8, 4, 2, 1))
    return {
        "mi": (tuple(v for v in (1, 2, 4) if plan.mp % (ty * v) == 0), rows // ty),
        "nj": (tuple(v for v in (1, 2, 4) if plan.np_ % (16 * v) == 0),
               pick_split(plan.np_, (64, 32, 16)) // 16),
        "kc": (tuple(v for v in (4, 8, 16, 32) if k4 % v == 0) or (kc_hand,), kc_hand),
    }


def gemm_tile(plan: KernelPlan, knob: Knob | None = None) -> dict:
    """Thread-block tile of the dp4a GEMM: rows = ty x mi, columns = tx x nj (16 threads along
    the columns, nj consecutive columns each), k chunk of 4 kc bytes staged in shared memory;
    knob(name, candidates, hand) picks the tunable ones (default: the hand choices)."""
    return {"ty": _dp4a_ty(plan), "tx": 16, **picks(dp4a_knobs(plan), knob)}


def _dp4a_ty(plan) -> int:
    """Threads along the rows of the dp4a tile: 16, or the bucket's rows when fewer."""
    return min(16, pick_split(plan.mp, ROWS))


def dp4a_gemm(sch: Schedule, plan: KernelPlan, acc: str = names.ACC, out: str = names.OUT,
              knob: Knob | None = None) -> None:
    """The integer GEMM on dp4a: block (bi, bj) -> threads (ti, tj) -> k chunks ko (A's and
    B's tiles, packed codes unpacked on the way, staged in shared memory by all threads) -> kk ->
    mi x nj accumulators per thread in registers -> dp4a on 4 k bytes. Single group: the
    output block (dequantization, zero-point correction, low-rank epilogue) runs per thread on
    its own accumulators. Per-group products: _dp4a_groups."""
    t = gemm_tile(plan, knob)
    if plan.groups > 1:
        _dp4a_groups(sch, t, out)
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


def _dp4a_groups(sch, t: dict, out: str):
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
    """A's and B's tiles of block blk's k chunk ko in shared memory (packed codes unpacked from
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
