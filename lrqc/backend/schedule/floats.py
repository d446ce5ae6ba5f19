"""The CPU schedules of the float32 GEMMs: the GEMM of products with a float operand (and the
float fallback) on every x86/LLVM target, and the float32 product of A's low-rank factor with
B's dequantized codes in 16-column panels (lowrank_w). They share the x86 rules' tile helpers
(tiles.py)."""

from __future__ import annotations

from ...plan import names
from ...plan.model import KernelPlan
from ..compat import Schedule
from ..rowbound import row_tiles
from . import tiles
from .protocol import Knob


def float_knobs(plan: KernelPlan) -> dict:
    """The float32 GEMM's tuning space: rows per tile and the k chunk (name -> (candidates,
    hand choice)). By hand 4 rows of 16 columns (8 accumulators of 8 lanes: AVX2 keeps both
    FMA units busy), 8 rows where registers hold 16 lanes (AVX-512: 8 accumulators again;
    1.6x faster than 4 rows at 2048³ on Zen 5)."""
    rows = (8, 4, 2, 1) if tiles.wide_vectors() else (4, 2, 1)
    return {"mr": (tuple(v for v in (1, 2, 4, 8) if plan.mp % v == 0),
                   tiles.pick_split(plan.mp, rows)),
            "kc": (tuple(v for v in (32, 64, 128, 256, 512) if plan.kp % v == 0) or (1,),
                   tiles.pick_split(plan.kp, (256, 128, 64, 32, 16, 8, 4, 2, 1)))}


CODES_ROWS = 64  # weight-only products with at most this many rows widen B per k chunk


def float_gemm(sch: Schedule, plan: KernelPlan, knob: Knob | None = None) -> None:
    """The float32 GEMM of te.floating: jo(par) -> io -> ko -> kk -> ii(unroll, mr rows) ->
    [16 columns vectorized], accumulators of one tile in registers, output copied at io. B's
    16-bit values or integer codes (block B_FLOAT) are widened once per panel jo; for integer
    codes and at most CODES_ROWS rows, once per k chunk instead, with every row tile running
    that chunk while it sits in L1 (jo -> ko -> io: widening the whole panel would write and
    read back as many float32 bytes as B in float32 had, at every call)."""
    pick = tiles.picks(float_knobs(plan), knob)
    blk = sch.get_sblock(names.ACC)
    i, j, k = sch.get_loops(blk)
    io, ii = sch.split(i, [None, pick["mr"]])
    jo, jv = sch.split(j, [None, 16])
    ko, kk = sch.split(k, [None, pick["kc"]])
    k_outer = plan.float_codes and plan.mp <= CODES_ROWS
    sch.reorder(*((jo, ko, io) if k_outer else (jo, io, ko)), kk, ii, jv)
    row_tiles(sch, io, pick["mr"])  # a call's rows: the tiles past them are skipped
    sch.parallel(jo)
    sch.unroll(ii)
    sch.vectorize(jv)
    if tiles.has_block(sch, names.B_FLOAT):
        wide = sch.get_sblock(names.B_FLOAT)
        sch.compute_at(wide, ko if k_outer else jo)
        own = tiles.loops_under(sch, wide, ko if k_outer else jo)
        if plan.packed and len(own) == 2:  # the 16 k rows of a packed group unrolled:
            sch.unroll(sch.split(own[0], [None, 16])[1])  # constant shifts
        sch.vectorize(sch.get_loops(wide)[-1])
    if k_outer:
        tiles.fuse_epilogue(sch, names.OUT, jo, rows=4)
    else:
        tiles.store_tiles(sch, plan, names.OUT, io, jo, pick["mr"], isinstance(pick["mr"], int))
    init = sch.decompose_reduction(blk, ko)
    sch.vectorize(sch.get_loops(init)[-1])



def panel_gemm(sch: Schedule, out: str, knob: Knob | None = None) -> None:
    """A float32 GEMM out[c, j] = Σ_k X[c, k] P[j / 16, k, j % 16] over 16-column panels P that
    are computed once per panel (dequantized codes: te.compensated.lowrank_w; blocks out + "_b"
    for P, out + "_acc" for the sums): jo(par) -> P -> io -> ko -> kk -> ii (unrolled) -> 16
    columns vectorized, out copied at io, as float_gemm. P's 16 columns are two unrolled halves
    of 8 lanes: codes 4·j + kk of columns 0..7 and of 8..15 lie in separate 32-code halves
    of a block, so each half reads its planes with one shift (plan/packing.py)."""
    blk = sch.get_sblock(out + "_acc")
    i, j, k = sch.get_loops(blk)
    rows, kext = int(sch.get(i).extent), int(sch.get(k).extent)
    mr = (knob or tiles.hand)(out + "_mr", tuple(v for v in (1, 2, 4, 8) if rows % v == 0),
                        tiles.pick_split(rows, (8, 4, 2, 1) if tiles.wide_vectors() else (4, 2, 1)))
    io, ii = sch.split(i, [None, mr])
    jo, jv = sch.split(j, [None, 16])
    ko, kk = sch.split(k, [None, tiles.pick_split(kext, (256, 128, 64, 32, 16))])
    sch.reorder(jo, io, ko, kk, ii, jv)
    sch.parallel(jo)
    sch.unroll(ii)
    sch.vectorize(jv)
    panel = sch.get_sblock(out + "_b")
    sch.compute_at(panel, jo)
    half, lanes = sch.split(sch.get_loops(panel)[-1], [2, 8])  # a 32-code half is 8 columns
    sch.unroll(half)
    sch.vectorize(lanes)
    tiles.fuse_epilogue(sch, out, io, tile_rows=mr)
    init = sch.decompose_reduction(blk, ko)
    sch.vectorize(sch.get_loops(init)[-1])
