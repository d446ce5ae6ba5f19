"""The schedule of the AMX int8 tile rule (schedules/x86/05_amx.py): u8 x s8 GEMMs whose k
extent is whole 64-byte tile rows, with one scale group or groups of at least MIN_VECTOR k
(_groups).

Loops: ib (blocks of rows, serial) -> jo (16·C columns, parallel) -> io (R tiles of `rows`
rows) -> [the R x C tile block over the whole k extent: intrin.amx]. The output tile (dequant
and any low-rank epilogue) is computed under io while the block's int32 sums are in L1. Rows
come in blocks of at most A_BLOCK_BYTES of A's codes, so the block of A every column panel reads
stays in L2 (2048^3 on a 2-core Sapphire Rapids class VM: 2.5 -> 3.5 TOPS, same run); the
block size is the one tunable knob ("mt")."""

from __future__ import annotations

from ...plan import names
from ...plan.model import KernelPlan
from ..compat import Schedule
from ..intrin import amx
from ..intrin.x86 import register
from . import tiles

A_BLOCK_BYTES = 1 << 20
# the least k per scale group the rule takes: each group's tile sums are stored and dequantized
# into the output tile, which per_vector(64) pays more for than the tiles save (int8 x int8 on a
# 2-core Sapphire Rapids class VM, same run, ms AMX / VNNI: 2048^3 V=64 30.9 / 25.3, V=128
# 19.9 / 23.9, V=256 14.4 / 21.2; 256x4096x4096 V=64 14.2 / 12.3, V=128 8.3 / 10.3)
MIN_VECTOR = 128
# rows of the low-rank epilogue's register block (x 32 columns: 16 accumulators; 2048^3 at
# rank 16 + 16: 5.6 ms with 8 rows, 5.9 with 4, 7.1 with the tile's 32)
EPILOGUE_ROWS = 8


def shape(plan: KernelPlan) -> tuple[int, int, int]:
    """(rows per tile, R row tiles, C column tiles) of the plan's tile block: 16 rows where
    16 divides the padded rows (else the largest divisor below 16: small M buckets), 2 x 2
    tiles where the extents allow (4 accumulators: tdpbusd's latency hidden), else fewer."""
    rows = next(r for r in range(16, 0, -1) if plan.mp % r == 0)
    R = 2 if plan.mp % (2 * rows) == 0 else 1
    C = 2 if (plan.np_ // 16) % 2 == 0 else 1
    return rows, R, C


def knobs(plan: KernelPlan) -> dict:
    """Tile blocks per block of rows ("mt"): hand the largest divisor of the padded rows' tile
    blocks whose codes fit A_BLOCK_BYTES (one tile block where none does); candidates the hand
    choice and up to 7 of the largest divisors."""
    rows, R, _ = shape(plan)
    blocks = plan.mp // (rows * R)
    divisors = [v for v in range(1, blocks + 1) if blocks % v == 0]
    fit = [v for v in divisors if v * rows * R * plan.kp <= A_BLOCK_BYTES]
    hand = fit[-1] if fit else 1
    return {"mt": (tuple(sorted({hand, *divisors[-7:]})), hand)}


def schedule(sch: Schedule, plan: KernelPlan, pick: dict, fn: str = names.FN_GEMM) -> None:
    """Schedule the integer GEMM (block names.ACC, output names.OUT) with pick["mt"] tile
    blocks per block of rows; products with several scale groups: _groups."""
    if plan.groups > 1:
        _groups(sch, plan, pick, fn)
        return
    rows, R, C = shape(plan)
    intrin = register(*amx.tiles(rows, R, C, plan.kp))
    zero = register(*amx.zero(rows, R, C))
    blk = sch.get_sblock(names.ACC)
    i, j, k = sch.get_loops(blk)
    ib, io, ii = sch.split(i, [None, pick["mt"], R * rows])
    jo, jv = sch.split(j, [None, 16 * C])
    ko, kv = sch.split(k, [None, plan.kp])  # one step: the init goes above it
    sch.reorder(ib, jo, io, ko, ii, jv, kv)
    sch.parallel(jo)
    tiles.unpack_at(sch, jo)
    out = tiles.fuse_epilogue(sch, names.OUT, io, rows=EPILOGUE_ROWS, streamed=True)
    tiles.stream_out(sch, out, io, ib, plan.mp)
    init = sch.decompose_reduction(blk, ko)  # right before the tiles: their pair (intrin.amx)
    sch.tensorize(sch.get_loops(init)[-2], zero)
    sch.tensorize(ii, intrin)


def _groups(sch: Schedule, plan: KernelPlan, pick: dict, fn: str) -> None:
    """Products with several scale groups (per-vector scales of whole tile rows, K segments):
    the output tile is the loop anchor, ib (rows, serial) -> jo (par) -> io -> g -> the tile
    block's int32 sums over the group's V bytes of k (names.PARTIAL, zero + tiles as above),
    stored to a tile in L1 (4 KB for 2 x 2 tiles of 16 rows) that the group's dequantization
    adds to the float32 output tile (C's block, in L1 while g runs)."""
    rows, R, C = shape(plan)
    intrin = register(*amx.tiles(rows, R, C, plan.vector))
    zero = register(*amx.zero(rows, R, C))
    out = sch.get_sblock(names.OUT)
    loops = sch.get_loops(out)
    i, g, j = loops if fn == names.FN_ACC else (loops[0], loops[2], loops[1])
    ib, io, ii = sch.split(i, [None, pick["mt"], R * rows])
    jo, jv = sch.split(j, [None, 16 * C])
    sch.reorder(ib, jo, io, g, ii, jv)
    sch.parallel(jo)
    sch.vectorize(jv)
    part = sch.get_sblock(names.PARTIAL)
    sch.transform_layout(part, ("write", 0), lambda i, g, j: (g, i, j))  # a 2-D tile per g
    sch.compute_at(part, g)
    tiles.unpack_at(sch, jo)
    pi, pj, pk = sch.get_loops(part)[-3:]
    pko, _ = sch.split(pk, [None, plan.vector])  # one step: the init goes above it
    sch.reorder(pko, pi, pj)
    init = sch.decompose_reduction(part, pko)
    sch.tensorize(sch.get_loops(init)[-2], zero)
    sch.tensorize(pi, intrin)
    if fn != names.FN_ACC:
        tiles.lowrank_at(sch, io)
    tiles.finish_group_output(sch, fn, out, g)
