"""Tile helpers shared by the x86 schedule rules in schedules/x86/ and the pipeline's CPU
schedules of the other functions (quantization pass, float32 GEMMs in floats.py, row dot
products), and the streamed stores of large outputs. Order of
primitives matters in 0.27: split/reorder, then parallel/unroll/vectorize, then compute_at,
then decompose_reduction, then tensorize."""

from __future__ import annotations

from typing import Any

from ...plan import names
from ...plan.model import KernelPlan
from ..compat import NO_BLOCK, LoopRV, SBlockRV, Schedule, ScheduleError, TvmTarget, codegen, tir
from ..intrin import stream
from ..intrin.pairs import scale_pairs
from ..intrin.x86 import AVX2_16x4, AVXVNNI_16x4, VNNI_16x4, register
from ..rowbound import fence_after, row_tiles
from .protocol import Knob


def register_vnni() -> str:
    return register(VNNI_16x4)


def register_avxvnni() -> str:
    return register(AVXVNNI_16x4)


def register_avx2() -> str:
    return register(AVX2_16x4)


def register_scale_pairs(offset: int, narrow: tuple[str, str], avx2: bool = False) -> str:
    """The scale pairs' block, less A's zero correction offset·cs (none for 0), B's integer
    scales and column sums of the types `narrow` (intrin.pairs): vpdpwssd, or (avx2)
    vpmaddwd."""
    return register(*scale_pairs(offset, *narrow, avx2=avx2))


def has_block(sch: Schedule, name: str) -> bool:
    """Whether the scheduled function has a block called name (any other schedule error
    propagates)."""
    try:
        sch.get_sblock(name)
    except ScheduleError as exc:
        if NO_BLOCK not in str(exc):
            raise
        return False
    return True


def hand(name: str, candidates: tuple, choice: int) -> int:
    """The knob of hand schedules: always the hand choice (lrqc tune samples instead:
    lrqc.tuning.search.sampling_knob)."""
    return choice


def lanes_knob(knob: Knob, name: str, extent: int, hand_lanes: int) -> int:
    """A vector width for a loop of `extent` elements: the hand choice, or under tuning one of
    8..64 lanes that divides the extent."""
    cands = tuple(v for v in (8, 16, 32, 64) if extent % v == 0) or (1,)
    return knob(name, cands, hand_lanes if hand_lanes in cands else cands[0])


def finish_vnni(sch: Schedule, loops: dict[str, LoopRV | SBlockRV],
                intrin: str | None = None) -> None:
    init = sch.decompose_reduction(loops["blk"], loops["ko"])
    sch.vectorize(sch.get_loops(init)[-1])
    sch.tensorize(loops["jv"], intrin or register_vnni())


def wide_vectors() -> bool:
    """Whether the CPU target being scheduled for (TVM's current target) has AVX-512F: 16
    float32 lanes per register and 32 registers."""
    t = TvmTarget.current(allow_none=True)
    return t is not None and t.kind.name == "llvm" and bool(codegen.target_has_features("avx512f",
                                                                                          t))


GROUP_ROWS = 128  # rows per block of per-vector products with packed weights (see below)


def group_output_tile(sch: Schedule, fn: str, plan: KernelPlan, mr: int, nr: int,
                      panel: bool = False) -> tuple[SBlockRV, LoopRV, LoopRV]:
    """Per-vector products: the output (reduced over the K groups g) is the loop anchor,
    jo(par) -> io -> g -> ii -> jm -> 16 columns vectorized; packed weights: jo -> ib -> g ->
    io, so each packed tile is unpacked once per block ib of up to GROUP_ROWS rows (whose
    output tile and A's columns of the group stay in L1 while g runs). Returns (output block,
    io, g)."""
    out = sch.get_sblock(names.OUT)
    loops = sch.get_loops(out)
    i, g, j = loops if fn == names.FN_ACC else (loops[0], loops[2], loops[1])
    jo, jm, jv = sch.split(j, [None, nr, 16])
    if plan.packed and not panel:
        rows = pick_split(plan.mp, (GROUP_ROWS, 64, 32, 16, 8, 4, 2, 1))  # every mr divides
        ib, i_in = sch.split(i, [None, rows])
        io, ii = sch.split(i_in, [None, mr])
        sch.reorder(jo, ib, g, io, ii, jm, jv)
        row_tiles(sch, ib, rows)  # a call's rows: the blocks and tiles past them are skipped
    else:
        io, ii = sch.split(i, [None, mr])
        sch.reorder(jo, io, g, ii, jm, jv)
    row_tiles(sch, io, mr)
    sch.parallel(jo)
    sch.unroll(ii)
    sch.unroll(jm)
    sch.vectorize(jv)
    if fn != names.FN_ACC:  # the low-rank epilogue once per output tile, outside the groups
        if plan.packed and not panel:
            lowrank_at(sch, jo, rows=4)
        else:
            lowrank_at(sch, io, tile_rows=mr)
    return out, io, g


def finish_group_output(sch: Schedule, fn: str, out: SBlockRV, g: LoopRV) -> None:
    """Initialise the output's reduction over the groups outside g (gemm only)."""
    if fn != names.FN_ACC:
        cinit = sch.decompose_reduction(out, g)
        sch.vectorize(sch.get_loops(cinit)[-1])


def unpack_at(sch: Schedule, loop: LoopRV) -> None:
    """Unpack the packed tile of B under `loop`, 32 lanes at a time (no-op for int8 weights)."""
    if not has_block(sch, names.UNPACK):
        return
    ub = sch.get_sblock(names.UNPACK)
    sch.compute_at(ub, loop)
    *k4, j, kk = loops_under(sch, ub, loop)  # (no k4 loop for a single block of 4 k)
    if k4:
        _, t = sch.split(k4[-1], [None, 4])  # the 4 blocks of a packed group: constant shifts
        sch.unroll(t)
    half, b = sch.split(sch.fuse(j, kk), [2, 32])  # 32 codes: contiguous bytes of every plane
    sch.unroll(half)
    sch.vectorize(b)


def loops_under(sch: Schedule, block: SBlockRV, anchor: LoopRV) -> list[LoopRV]:
    """The loops of `block` below `anchor` (compute_at leaves out those of extent 1)."""
    loops = sch.get_loops(block)
    at = sch.get(anchor)
    i = next(n for n, lp in enumerate(loops) if sch.get(lp).same_as(at))
    return list(loops[i + 1:])


def sum_pairs_at(sch: Schedule, name: str, loop: LoopRV, lanes: int = 8) -> SBlockRV:
    """Place the block adding the two vpmaddwd halves (reduction over its last loop h) under
    `loop`: h unrolled outside `lanes` vectorized columns."""
    b = sch.get_sblock(name)
    sch.reverse_compute_at(b, loop)
    j, h = sch.get_loops(b)[-2:]
    _, jv = sch.split(j, [None, lanes])
    sch.reorder(h, jv)
    sch.unroll(h)
    sch.vectorize(jv)
    return b


def fuse_epilogue(sch: Schedule, out_name: str, at_loop: LoopRV, lanes: int = 16,
                  rows: int | None = None, streamed: bool = False,
                  tile_rows: Any = None) -> SBlockRV:
    """The output block (dequantization, + the low-rank epilogue) computed in the tile under
    `at_loop`. With low-rank terms the block reduces over the ranks c
    (te.compensated.output) into a local copy of the tile, copied to C after (returned: the
    copy block): per block of rows x `lanes`, 2 x `lanes` or 4 x `lanes` columns
    (_register_block) the accumulators stay in registers while c runs outside them, unrolled
    (c -> rows unrolled -> lanes vectorized).
    Summing in C itself made every step a load and a store of C, whose rows of one tile sit a
    row stride apart in the same cache sets (2048^3, rank 16 + 16: 22 ms of epilogue against
    1.4 ms in the local tile). rows: None when at_loop is a row tile (its rows, a tuning
    sample perhaps, form the block: no split factor read from a sampled extent gets frozen
    into a trace), else the rows per block. tile_rows: with rows None, the row tile's rows
    where the schedule fixed them (an int; a tuning sample is not one). streamed: the copy is
    left to stream_out."""
    b = sch.get_sblock(out_name)
    sch.reverse_compute_at(b, at_loop)
    loops = sch.get_loops(b)
    if len(sch.get(b).iter_vars) == 2:  # elementwise: no low-rank terms
        _, jv = sch.split(loops[-1], [None, lanes])
        sch.vectorize(jv)
        under = loops_under(sch, b, at_loop)
        if rows is not None and len(under) == 3:  # over a panel's rows: only the call's
            row_tiles(sch, under[0], 1)
        return b
    copy = sch.cache_write(b, 0, "local")  # the sums in a local tile, not in C (below)
    sch.reverse_compute_at(copy, at_loop)
    _register_block(sch, b, at_loop, lanes, rows, tile_rows)
    if not streamed:  # else stream_out tensorizes the copy
        _, jv = sch.split(sch.get_loops(copy)[-1], [None, lanes])
        sch.vectorize(jv)
    return copy


def stream_out(sch: Schedule, out: SBlockRV, tile: LoopRV, root: LoopRV, rows: int) -> bool:
    """The float32 output block `out`, computed under `tile` (fuse_epilogue), writes its tile into a
    local buffer, copied to C with non-temporal stores (intrin.stream; the LLVM function
    imported at loop `root`); whether it did. rows: C's rows, whose last tiles end with sfence,
    for schedules whose parallel loop runs over column panels inside serial blocks of rows:
    each thread's tasks are the same panels in every block of rows, so each thread that
    streamed fences in the last block, which orders every store it made; or 0: no tile fences
    and an sfence follows the loop `tile` (rowbound.fence_after), for loops of row tiles a
    call may end early. Integer outputs (int_acc's) keep their plain stores; a low-rank
    epilogue's copy out of its local tile (fuse_epilogue(..., streamed=True)) is streamed as
    it is."""
    if not float_out(sch, out):
        return False
    reads = sch.get(out).reads
    if len(reads) == 1 and reads[0].source.scope() == "local":  # fuse_epilogue's copy already
        copy = out
    else:
        copy = sch.cache_write(out, 0, "local")
        sch.reverse_compute_at(copy, tile)
    *over_rows, j = loops_under(sch, copy, tile)  # none over the rows of a one-row tile
    top = over_rows[-1] if over_rows else j
    tile_rows = int(sch.get(top).extent) if over_rows else 1
    sch.tensorize(top, register(*stream.tile(tile_rows, int(sch.get(j).extent), rows)))
    sch.annotate(root, "pragma_import_llvm", stream.STORE_LL)
    if not rows:
        fence_after(sch, tile)
    return True


def float_out(sch: Schedule, out: SBlockRV) -> bool:
    """Whether block `out` writes float32 (C of a GEMM, not int_acc's integer sums)."""
    return str(sch.get(out).writes[0].source.dtype) == "float32"


# C of at least this many bytes (the bucket's rows x padded columns x 4) is streamed by the
# x86 rules' row-tile loops (store_tiles): more than both cores' L2 (1 MB each on a Zen 4), it
# would leave the cache before the caller reads it anyway. w8a8 per_channel on a Zen 4 (2
# cores, AVX-512 VNNI), plain against streamed stores in the same process: an FFN pair
# (1024 x 384 -> 1536, ReLU, -> 384; only the first C is streamed) 1.04x faster, and at
# 512 x 768 -> 3072 -> 768 too; calls interleaved with other work on other 6 MB buffers
# 1.19x at 1024x1536x384 (C 6 MB), 1.10x at 512x3072x768, 1.05x at 2048^3; back-to-back
# calls of one kernel, whose C reuses the memory of the C just freed while it is cached
# (plain stores then read it from there), 0.98-1.02x; at 0.5-1 MB (128-256x1024x1024,
# 512x384x384) 0.98-1.00x in every pattern.
STREAM_BYTES = 2 << 20


def store_tiles(sch: Schedule, plan: KernelPlan, out_name: str, io: LoopRV, jo: LoopRV,
                tile_rows: Any = None, fixed: bool = True) -> None:
    """The epilogue of the output block `out_name` computed per row tile `io` of the parallel
    column panels `jo` (fuse_epilogue; tile_rows as there), its float32 tile stored to C with
    non-temporal stores where C has at least STREAM_BYTES on an x86 target (stream_out, the
    fence after io: rows past a call's are never computed). fixed: whether the tile's rows
    and columns are the schedule's own numbers; under lrqc tune they are sampled, and the
    streamed copy (a tensor intrinsic named by its tile's size) would not follow a new sample,
    so tuning's candidates store plainly. So does every schedule made with no target set
    (lrqc tune's, whose records therefore replay with plain stores)."""
    t = TvmTarget.current(allow_none=True)  # the target being scheduled for
    x86 = t is not None and t.kind.name == "llvm" and bool(codegen.target_has_features("sse2", t))
    big = plan.mp * plan.np_ * 4 >= STREAM_BYTES
    fixed = fixed and isinstance(tile_rows, int | None)
    if not (x86 and big and fixed and float_out(sch, sch.get_sblock(out_name))):
        fuse_epilogue(sch, out_name, io, tile_rows=tile_rows)
        return
    out = fuse_epilogue(sch, out_name, io, tile_rows=tile_rows, streamed=True)
    stream_out(sch, out, io, jo, 0)


# float32 lanes of a low-rank epilogue's register block (rows x columns) where registers hold
# 16 lanes and there are 32 of them (AVX-512): 16 registers' worth, so up to 4 rows take 4
# vectors of columns (elsewhere, and where the rows are a tuning sample, 2). At 4 rows x 64
# columns on a Zen 4 (2 cores), 2048^3 with ranks 16 + 16, the GEMM stage took 22.8 ms
# against 24.3 at 4 x 32 (without the epilogue 20.7): each broadcast of U serves 4 vectors of
# W, not 2
EPI_LANES_WIDE = 256


def _register_block(sch, blk, anchor, lanes: int, rows, tile_rows=None):
    """A small reduction C[i, j] = Σ_c ... placed under `anchor`: c outside rows x lanes
    accumulators, c and the rows unrolled, lanes vectorized, the init before c. compute_at
    drops unit loops (one row, rank 1): the loops under the anchor are matched to i, j, c by
    what the block's bindings still use. The columns of a block: 4 vectors of lanes where the
    block's rows are known (rows, or tile_rows: an int, not a tuning sample, whose extent a
    replayed trace could change) and they fit EPI_LANES_WIDE on AVX-512, else 2 (or 1)."""
    loops = sch.get_loops(blk)
    at = next(n for n, lp in enumerate(loops) if sch.get(lp).same_as(sch.get(anchor)))
    under = list(loops[at + 1:])
    c_bound = not isinstance(sch.get(loops[-1]).body.iter_values[2], tir.IntImm)
    c = under.pop() if c_bound else None
    j = under.pop()
    i = under.pop() if under else None
    width = int(sch.get(j).extent)
    io, ii = None, i
    if i is not None and rows is not None:
        per = pick_split(int(sch.get(i).extent), (rows, 2, 1))
        io, ii = sch.split(i, [None, per])
        row_tiles(sch, io, per)  # over a panel's rows in blocks: only the call's
    known = rows if rows is not None else tile_rows if isinstance(tile_rows, int) else None
    vecs = next(v for v in (4, 2, 1) if width % (v * lanes) == 0 and (
        v <= 2 or wide_vectors() and known is not None and known * v * lanes <= EPI_LANES_WIDE))
    jo, jm, jv = sch.split(j, [None, vecs, lanes])
    if i is not None:
        sch.reorder(*([io] if io is not None else []), jo, *([c] if c is not None else []),
                    ii, jm, jv)
        sch.unroll(ii)
        sch.unroll(jm)
    elif c is not None:
        sch.reorder(jo, c, jm, jv)
        sch.unroll(jm)
    sch.vectorize(jv)
    if c is not None:
        sch.unroll(c)
        init = sch.decompose_reduction(blk, c)
        sch.vectorize(sch.get_loops(init)[-1])


def lowrank_at(sch: Schedule, loop: LoopRV, lanes: int = 16, rows: int | None = None,
               tile_rows: Any = None) -> None:
    """The low-rank epilogue blocks of outputs that reduce over K groups
    (te.compensated.lowrank_blocks) computed under `loop`, before the output tile, each a
    register block like fuse_epilogue's (rows, tile_rows as there)."""
    for side in ("a", "b"):
        if not has_block(sch, names.LOWRANK_EPI + side):
            continue
        blk = sch.get_sblock(names.LOWRANK_EPI + side)
        sch.compute_at(blk, loop)
        _register_block(sch, blk, loop, lanes, rows, tile_rows)


def tile_knobs(plan: KernelPlan, rows_pref: tuple[int, ...], cols_pref: tuple[int, ...],
               step: int = 1) -> dict:
    """The integer GEMM's tuning space shared by the x86 rules: name -> (candidates, hand
    choice). Rows per output tile ("mr"), 16-column blocks per tile ("nr") and, for
    single-group products, the k chunk ("kc", in tensorized blocks of `step` 4-byte steps:
    32..512 bytes); the hand choice is the first of the rule's preferences that divides the
    extent (rows_pref, cols_pref; the k chunk prefers 256 bytes)."""
    rows = tuple(v for v in (1, 2, 4, 8) if plan.mp % v == 0)
    cols = tuple(v for v in (1, 2, 4) if (plan.np_ // 16) % v == 0)
    units = plan.kp // (4 * step)
    kcs = k_chunks(plan, step)
    out = {"mr": (rows, pick_split(plan.mp, rows_pref)),
           "nr": (cols, pick_split(plan.np_ // 16, cols_pref))}
    if plan.groups == 1:
        hand = tuple(v // step for v in (64, 32, 16, 8, 4, 2, 1) if v >= step)
        out["kc"] = (kcs or (1,), pick_split(units, hand))
    return out


def k_chunks(plan: KernelPlan, step: int = 1) -> tuple[int, ...]:
    """The k chunks lrqc tune may give a single-group product (tile_knobs' "kc", in blocks of
    `step` 4-byte steps: 32..512 bytes dividing Kp), or () where none divides it (then 1)."""
    units = plan.kp // (4 * step)
    return tuple(v // step for v in (8, 16, 32, 64, 128) if v >= step and units % (v // step) == 0)


def picks(knobs: dict, knob: Knob | None = None) -> dict:
    """name -> the value of each knob of a rule's space: knob(name, candidates, hand) under
    tuning, else the hand choice."""
    return {name: (knob or hand)(name, c, h) for name, (c, h) in knobs.items()}


def pick_split(extent: int, choices: tuple[int, ...]) -> int:
    """The first choice dividing extent (tiles that fit exactly, no predicates)."""
    for c in choices:
        if extent % c == 0:
            return c
    return 1


def block_names(sch: Schedule) -> list[str]:
    """Names of the blocks of the PrimFunc, in order."""
    return [sch.get(b).name_hint for b in sch.get_child_blocks(sch.get_sblock("root"))]
