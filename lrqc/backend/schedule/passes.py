"""CPU schedules of the per-call passes over A (quantize_a, the compensated pass and its row
dot products): rows in parallel, the max |x| (and min / max) statistics taken in 16 vector
lanes (split and rfactor: a maximum does not depend on the order it is taken in, so the
scales stay bit for bit those of the reference), codes left to LLVM's vectorizer, except
where they are chosen between float32 and float64 row by row (te.fastcodes: vectors of 16)."""

from __future__ import annotations

from ...plan import names
from ..compat import ExprRV, SBlockRV, Schedule, tir
from ..te import fastcodes
from ..te.outer_dots import OUTER_ROWS
from . import sketch
from .lanes import dot_rows, lanes_inside, rank_blocks
from .outer import outer_dots_at
from .protocol import Knob
from .tiles import block_names, hand, has_block, lanes_knob, pick_split


def parallel_rows(sch: Schedule, name: str, vector: int | ExprRV = 0) -> SBlockRV:
    """Parallelize the outer loop of an elementwise/reduction block; vectorize its innermost
    spatial loop by `vector` lanes when asked."""
    b = sch.get_sblock(name)
    loops = sch.get_loops(b)
    sch.parallel(loops[0])
    if not (isinstance(vector, int) and vector == 0) and len(loops) >= 2:  # an int or a sample
        _, vi = sch.split(loops[-1], [None, vector])
        sch.vectorize(vi)
    return b


def quantize_pass(sch: Schedule, knob: Knob | None = None) -> None:
    """One parallel loop over A's rows for the whole pass where every block works row by row
    (one_row_loop); otherwise (per-tensor statistics, float32 copies of A) parallel rows for
    the codes, the statistics (statistic) and every per-row block of scales. Under
    tuning (knob given) the codes loop is also split into vectors of a sampled width (by hand
    LLVM vectorizes it on its own)."""
    if not has_block(sch, names.QUANT_FLOAT) and one_row_loop(sch, knob):
        return
    own = (names.QUANT_STATS, names.QUANT_STATS + "_lo", fastcodes.AMB, names.QUANT_CODES,
           names.QUANT_FLOAT, names.QUANT_ROWSUM)
    for n in block_names(sch):
        if n not in own:
            rows_parallel(sch, sch.get_sblock(n))
    for n in own[:3]:
        if has_block(sch, n):
            statistic(sch, n)
    if has_block(sch, names.QUANT_FLOAT):
        if has_block(sch, names.QUANT_CODES):  # dequantized on the fly from the codes
            sch.compute_inline(sch.get_sblock(names.QUANT_CODES))
        ext = _last_extent(sch)
        lanes = lanes_knob(knob or hand, "float_lanes", ext, 16) if ext % 8 == 0 else 0
        parallel_rows(sch, names.QUANT_FLOAT, vector=lanes)
    elif has_block(sch, names.QUANT_CODES):
        ext = int(sch.get(sch.get_loops(sch.get_sblock(names.QUANT_CODES))[-1]).extent)
        lanes = lanes_knob(knob or hand, "code_lanes", ext, 16) \
            if _vector_codes(sch, knob) and ext % 8 == 0 else 0
        parallel_rows(sch, names.QUANT_CODES, vector=lanes)
    if has_block(sch, names.QUANT_ROWSUM):
        parallel_rows(sch, names.QUANT_ROWSUM)


def one_row_loop(sch: Schedule, knob: Knob | None) -> bool:
    """Every block of the pass under one parallel loop over A's rows (merged loops), so each
    row is read from memory once and its statistics, scales, codes and row sums follow while
    it sits in cache; False (nothing changed) where a block does not work row by row (a
    per-tensor statistic)."""
    blocks = [sch.get_sblock(n) for n in block_names(sch)]
    rows = int(sch.get(sch.get_loops(sch.get_sblock(names.QUANT_CODES))[0]).extent)
    for b in blocks:
        loops, iters = sch.get_loops(b), sch.get(b).iter_vars
        if not loops or int(iters[0].iter_type) == REDUCE \
                or int(sch.get(loops[0]).extent) != rows:
            return False
    for n in (names.QUANT_STATS, names.QUANT_STATS + "_lo", fastcodes.AMB):
        if has_block(sch, n):
            max_lanes(sch, sch.get_sblock(n))
    if _vector_codes(sch, knob):
        k = sch.get_loops(sch.get_sblock(names.QUANT_CODES))[-1]
        ext = int(sch.get(k).extent)
        if ext % 8 == 0:
            sch.vectorize(sch.split(k, [None, lanes_knob(knob or hand, "code_lanes", ext,
                                                          16)])[1])
    firsts = [sch.get_loops(sch.get_sblock(n))[0] for n in block_names(sch)]
    sch.parallel(sch.merge(*firsts) if len(firsts) > 1 else firsts[0])
    return True


def _vector_codes(sch: Schedule, knob: Knob | None) -> bool:
    """Whether the codes loop is split into vectors by the schedule: under tuning, and where
    the codes are chosen row by row between float32 and float64 (fastcodes: TVM's vectorizer
    keeps that choice one branch per vector; LLVM's, left to itself, ran the float32 codes
    one element at a time). Elsewhere LLVM vectorizes the loop on its own."""
    return knob is not None or has_block(sch, fastcodes.AMB)


def _last_extent(sch) -> int:
    loops = sch.get_loops(sch.get_sblock(names.QUANT_FLOAT))
    return int(sch.get(loops[-1]).extent)


def compensated_pass(sch: Schedule, knob: Knob | None = None, wide: bool = True) -> None:
    """te.compensated.quantize_a: parallel rows everywhere (segments unrolled so each copy of
    the codes expression folds its segment select), row dot products as in row_dots_at, 4
    rows to a block where they divide the rows (each load of the test matrix's 16 lanes then
    serves 4 rows: R Ω with 24 columns at 2048 x 2048, 3.3 -> 2.7 ms for the whole pass; 2
    where the rule's targets lack AVX-512's registers, `wide`: lanes.DOT_BLOCK), each row's
    max |R| right after the row, R Ω (where nothing stands between) right after each
    block of R's rows (sketch.sketch_with_resid); the residual's vector width is a tuning
    knob. With the rank-1 sketch's Rᵀ (R s) (te.sketch), R's chunks of rows run in parallel
    instead, and R s and its share of Rᵀ (R s) follow each row too (no blocks of 4 rows).
    Without a low-rank term on A (no residual R), each run of blocks that work row by row
    shares one parallel loop over the rows (row_runs)."""
    fused = has_block(sch, names.SKETCH_RT)
    merged = fused and sketch.codes_with_resid(sch)
    after_r = not fused and has_block(sch, names.SKETCH)  # R Ω right after R's rows
    for name in block_names(sch):
        loops = sch.get_loops(sch.get_sblock(name))
        if name.startswith(names.QUANT_STATS + names.SPARSE_SUMS):
            statistic(sch, name, sums=True)
        elif name.startswith(names.QUANT_STATS):
            statistic(sch, name)
        elif merged and name == names.RESID:
            lanes = lanes_knob(knob or hand, name + "_lanes", int(sch.get(loops[-1]).extent),
                               16)
            sch.vectorize(sch.split(loops[-1], [None, lanes])[1])
        elif merged and name == names.QUANT_CODES:
            sch.unroll(loops[-2])
            if int(sch.get(loops[-1]).extent) % 16 == 0:
                sch.vectorize(sch.split(loops[-1], [None, 16])[1])
        elif name == names.QUANT_CODES:
            sch.parallel(loops[0])
            sch.unroll(loops[1])
            if _vector_codes(sch, None) and int(sch.get(loops[2]).extent) % 16 == 0:
                sch.vectorize(sch.split(loops[2], [None, 16])[1])  # (fastcodes' row choice)
        elif name in (names.RESID, names.BASE_CODES) or name.startswith(names.SPARSE_CODES):
            if not (after_r and name == names.RESID):  # (then its blocks of rows: below)
                sch.parallel(loops[0])  # (R in chunks of rows: the chunks)
            lanes = lanes_knob(knob or hand, name + "_lanes", int(sch.get(loops[-1]).extent),
                               16)
            _, kv = sch.split(loops[-1], [None, lanes])
            sch.vectorize(kv)
        elif name.startswith(names.RESID_T):
            transposed_at(sch, name, names.RESID_CODES + name[len(names.RESID_T):])
    if after_r:  # R Ω in blocks of rows that divide R's (16-lane loads of Ω per block)
        rows = int(sch.get(sch.get_loops(sch.get_sblock(names.RESID))[0]).extent)
        outer = has_block(sch, names.SKETCH + names.ACROSS)  # (te.outer_dots, AVX2)
        block = OUTER_ROWS[False] if outer else dot_rows(rows, wide)
        if not sketch.sketch_with_resid(sch, knob, block, wide):
            sch.parallel(sch.get_loops(sch.get_sblock(names.RESID))[0])
            if outer:
                outer_dots_at(sch, names.SKETCH, False)
            else:
                row_dots_at(sch, names.SKETCH, knob, rows=block, wide=wide)
            after_r = False
    if has_block(sch, names.RESID_TOP) and not after_r:  # each row's max |R| in cache
        sketch.top_after(sch, sch.get_loops(sch.get_sblock(names.RESID))[int(fused)])
    if fused:
        row = sch.get_loops(sch.get_sblock(names.RESID))[1]
        sketch.dots_under(sch, names.SKETCH, row, after=True)
        sketch.sums_under(sch, names.SKETCH_RT, row)
    if merged:
        sketch.scores_before_codes(sch)
    if not has_block(sch, names.RESID):
        row_runs(sch)


def row_runs(sch: Schedule) -> None:
    """Each run of consecutive blocks that work row by row (an outer loop over A's rows of
    its own, over a data-parallel axis of that extent) merged into one parallel loop over the
    rows, so that a row read by the first is in cache for the others: the blocks between two
    runs reduce over all rows (a per-tensor statistic, a sparse copy's threshold or density)
    or are the transposed copies (by tiles of k). A sparse scheme's pass made about ten
    passes over A, one per statistic and set of codes; merged, on a 2-core Zen 3 (one process
    each, two runs): 23.3 -> 22.2 ms at 2048 x 4096 (A 32 MiB), 2.3 ms either way at 256 x
    4096, where A stays in the last-level cache: the pass's float64 arithmetic bounds it."""
    rows = int(sch.get(sch.get_loops(sch.get_sblock(names.QUANT_CODES))[0]).extent)
    runs: list[list] = [[]]
    for name in block_names(sch):
        blk = sch.get_sblock(name)
        loops = sch.get_loops(blk)
        if loops and int(sch.get(loops[0]).extent) == rows \
                and not name.startswith((names.RESID_T, names.RESID_CODES)) \
                and len(sch.get_child_blocks(loops[0])) == 1 \
                and any(int(v.iter_type) != REDUCE and int(v.dom.extent) == rows
                        for v in sch.get(blk).iter_vars):
            runs[-1].append(loops[0])
        elif runs[-1]:
            runs.append([])
    for run in runs:
        if len(run) > 1:
            sch.parallel(sch.merge(*run))


def statistic(sch: Schedule, name: str, sums: bool = False) -> None:
    """A reduction of A's values to one number per tensor (two reduced loops: rows and
    columns), row or K group: per tensor, partial results per row in parallel
    (whole_tensor_stat); otherwise the rows in parallel. Maxima and minima are then taken in
    vector lanes (max_lanes), and with sums=True float64 sums too: a sparse copy's counts
    (whole numbers, exact in any order) and its sum of |x|, whose order moves the threshold
    it sets by float64 rounding only, as numpy's own pairwise order does (a scalar float64
    sum waits on each add's latency: the whole pass of a sparse 5 % scheme at 256 x 4096
    took 3.95 ms, 3.55 with the lanes)."""
    blk = sch.get_sblock(name)
    if sum(int(v.iter_type) == REDUCE for v in sch.get(blk).iter_vars) == 2:
        blk = whole_tensor_stat(sch, name)
    else:
        rows_parallel(sch, blk)
    max_lanes(sch, blk, sums)


def rows_parallel(sch: Schedule, blk: SBlockRV) -> None:
    """The block's outer loop in parallel where it is a data-parallel loop of several rows."""
    loops = sch.get_loops(blk)
    iters = sch.get(blk).iter_vars
    if loops and iters and int(iters[0].iter_type) != REDUCE \
            and int(sch.get(loops[0]).extent) > 1:
        sch.parallel(loops[0])


REDUCE = 2  # IterVar.iter_type of a reduced block axis (0: data parallel)
LANES = 16  # float64 lanes of a vectorized maximum: two AVX-512 or four AVX2 registers


def max_lanes(sch: Schedule, blk: SBlockRV, sums: bool = False) -> None:
    """A max or min reduction over its innermost loop taken in LANES (or LANES / 2) vector
    lanes (split and rfactor into per-lane partial results, then the lanes reduced), when they
    divide the loop's extent at least twice; sums (whose order would change their rounding)
    only where `sums` allows them; other shapes stay as they are. LLVM does not vectorize a
    floating-point reduction itself."""
    store = sch.get(blk).body
    kinds = (tir.Max, tir.Min, tir.Add) if sums else (tir.Max, tir.Min)
    if not isinstance(store, tir.BufferStore) or not isinstance(store.value, kinds):
        return
    r = sch.get_loops(blk)[-1]
    ext = int(sch.get(r).extent)
    lanes = next((v for v in (LANES, LANES // 2) if ext % v == 0 and ext >= 2 * v), 0)
    if not lanes:
        return
    _, lane = sch.split(r, [None, lanes])
    rf = sch.rfactor(lane, len(store.indices))  # the lanes innermost in the partial buffer
    sch.vectorize(sch.get_loops(rf)[-1])


def whole_tensor_stat(sch: Schedule, name: str) -> SBlockRV:
    """A reduction over all rows and columns (per-tensor max, sums of a sparse copy): partial
    results per row in parallel (rfactor over the rows; returns that block), then the few
    values they reduce to."""
    blk = sch.get_sblock(name)
    rows = sch.get_loops(blk)[-2]
    rf = sch.rfactor(rows, 0)
    loops = sch.get_loops(rf)
    sch.reorder(loops[-2], *loops[:-2])  # the rows outermost
    sch.parallel(sch.get_loops(rf)[0])
    return rf


def transposed_at(sch: Schedule, name: str, src: str) -> None:
    """out[k, i] = src[i, k]: 16 x 16 tiles, k tiles parallel, each tile of src computed
    row-major (16 k vectorized) just before its transposed copy."""
    out = sch.get_sblock(name)
    k, i = sch.get_loops(out)
    ko, ki = sch.split(k, [None, 16])
    io, ii = sch.split(i, [None, 4 if int(sch.get(i).extent) % 16 else 16])
    sch.reorder(ko, io, ki, ii)
    sch.parallel(ko)
    sch.compute_at(sch.get_sblock(src), io)
    sch.vectorize(sch.get_loops(sch.get_sblock(src))[-1])


def row_dots_at(sch: Schedule, name: str, knob: Knob | None = None, rows: int = 1,
                wide: bool = True) -> None:
    """te.sketch.row_dots: the 16-lane partials computed per block of `rows` rows
    (compute_at the block; rows must divide the row count), blocks parallel; per block of
    ranks (a tuning knob, `<name>_ranks`) the k chunks run outside the rows and ranks, so one
    16-lane load of a row's values (the dequantized codes) serves every rank of the block and
    one of the other operand's every row, their 16-lane sums in registers. Past K_CHUNK k
    chunks, K runs in pieces of K_CHUNK outside the rank blocks, so each piece of the rows and
    of every rank stays in L1 while all ranks use it. Each sum is taken in the same order
    whatever the blocks (k chunk after k chunk). wide: the rule's targets have AVX-512's
    registers (lanes.DOT_BLOCK's ranks a block by hand)."""
    out = sch.get_sblock(name)
    i = sch.get_loops(out)[0]
    if rows > 1:
        i, _ = sch.split(i, [None, rows])
    sch.parallel(i)
    part = sch.get_sblock(name + names.LANES)
    sch.compute_at(part, i)
    rank_blocks(sch, name, part, rows, knob, wide)


def col_dots_at(sch: Schedule, name: str, knob: Knob | None = None, wide: bool = True
                ) -> None:
    """te.compensated.resid_tq (out[c, k] = Σ_i X[c, i] Y[i, k]): the columns k in pieces of
    COL_PIECE[wide] (wide: the rule's targets have AVX-512's registers), up to COL_CHUNK
    pieces a chunk, chunks in parallel (at least two where there are two pieces); in a chunk,
    rows i in blocks of COL_ROWS[wide], each block over every piece of the chunk, and per
    piece the sums of a block of ranks c (a tuning knob, `<name>_ranks`) for every row of the
    block, so one vector load of a row's piece serves the block's ranks, whose sums stay in
    registers; the chunk's sums (ranks x chunk) in L2 between row blocks. A thread walks its
    chunk's part of each row in order (a chunk of a row is a contiguous run of memory), not
    one piece of every row. Each sum runs over the rows in order whatever the blocks and the
    threads."""
    blk = sch.get_sblock(name)
    c, k, i = sch.get_loops(blk)
    ranks, cols, rows = (int(sch.get(lp).extent) for lp in (c, k, i))
    piece = next(v for v in (COL_PIECE[wide], 16, 1) if cols % v == 0)
    pieces = cols // piece
    chunk = max(v for v in range(1, min(COL_CHUNK, max(1, pieces // 2)) + 1) if pieces % v == 0)
    kt, ko, kv = sch.split(k, [None, chunk, piece])
    cands = tuple(v for v in (6, 4, 8, 3, 2) if ranks % v == 0) or (1,)
    cb = (knob or hand)(name + "_ranks", cands, cands[0])
    co, ci = sch.split(c, [None, cb])
    io, ii = sch.split(i, [None, pick_split(rows, (COL_ROWS[wide], 16, 8, 4, 2, 1))])
    sch.reorder(kt, io, ko, co, ii, ci, kv)
    sch.parallel(kt)
    acc = sch.cache_write(blk, 0, "global")  # the chunk's sums: compacted to ranks x chunk
    sch.reverse_compute_at(acc, kt)
    sch.unroll(ci)
    sch.vectorize(kv)
    init = sch.decompose_reduction(blk, io)
    sch.vectorize(sch.get_loops(init)[-1])
    sch.vectorize(sch.get_loops(acc)[-1])


# resid_tq on AVX-512 (wide): 64 columns (4 vectors) x 6 ranks of sums in registers, rows 32 at a
# time, chunks of 16 pieces (1024 columns) a thread: Rᵀ Q at 2048 x 2048 with 24 ranks 0.72 ms
# against 1.56 for numpy's BLAS (Xeon with AMX, 2 cores, same run; 1.23 with one piece of every
# row per step, whose 8 KB strides defeat the prefetchers); 256 x 4096: 0.21 against 0.53. Without
# AVX-512 (where outer.outer_columns_at does not take Rᵀ Q: Q's columns not a multiple of 8) a
# piece of 16 columns (2 of AVX2's 16 registers, 6 ranks: 12 of them; chunks of 256
# columns): 64 spilled its 48 registers of sums to the stack; on a Zen 3 (2 cores), 2048 x 2048,
# 24 ranks, 5.5-6.8 ms -> 2.3-2.5 (pieces of 32 with 3 ranks: 2.9-3.9, of 8 with 12: 4.7); and
# blocks of 8 rows, whose pieces, 8 KB apart at K = 2048, share one set of its 8-way L1: 2.15 ->
# 1.81 ms (16 rows: 1.84, 4: 3.9); at 256 x 4096, 0.46 -> 0.40
COL_PIECE, COL_ROWS, COL_CHUNK = {True: 64, False: 16}, {True: 32, False: 8}, 16




def lanes_w_at(sch: Schedule, name: str, knob: Knob | None = None, wide: bool = False
               ) -> None:
    """te.compensated.lanes_w: per block of 16-column panels (in parallel) their 64 lane sums
    each, with the reduction outside the panels and lanes (each step one 64-byte load of
    codes per panel, 64 lanes vectorized, the panels unrolled: one load of F_A's repeated
    values serves every panel of the block), then their groups of 4 and the scales; F_A's
    repeated values (name + "_fa") first, rows in parallel. Panels a block (the knob
    `<name>_panels`; lrqc tune does not search lowrank_w): up to LANES_W_PANELS where the
    target has AVX-512's 32 vector registers (`wide`) and at least LANES_W_TASKS blocks are
    left to run in parallel, else 1 (64 lanes already take half of AVX2's 16 registers)."""
    out = sch.get_sblock(name)
    panels = int(sch.get(sch.get_loops(out)[-1]).extent) // 16
    cands = tuple(v for v in (1, 2, 4, 8) if panels % v == 0)
    pick = max(v for v in cands if v == 1 or (
        wide and v <= LANES_W_PANELS and panels // v >= LANES_W_TASKS))
    nb = (knob or hand)(name + "_panels", cands, pick)
    jo, jv = sch.split(sch.get_loops(out)[-1], [None, 16 * nb])
    sch.parallel(jo)
    sch.compute_at(sch.get_sblock(name + "_acc"), jo)
    part = sch.get_sblock(name + names.LANES)
    sch.compute_at(part, jo)
    if nb == 1:  # (lanes, q): the panel's loop is gone
        lanes_inside(sch, part)
    else:
        n, lane, q = sch.get_loops(part)[-3:]
        sch.reorder(q, n, lane)
        sch.unroll(n)
        sch.vectorize(lane)
        init = sch.decompose_reduction(part, q)
        sch.vectorize(sch.get_loops(init)[-1])
    sch.vectorize(sch.split(sch.get_loops(out)[-1], [None, 16])[1])
    fa = sch.get_sblock(name + "_fa")
    rows, lanes = sch.get_loops(fa)
    sch.parallel(rows)
    sch.vectorize(lanes)


# lanes_w's panels a block on AVX-512: at 256 x 4096 x 4096 (B's 16 MB of codes read once)
# 0.28-0.29 ms against 0.31 for 4 and 0.58-0.60 for one panel; at 2048^3 0.11 against 0.12
# and 0.20 (2-core Zen 5, same runs; the bytes' bound at 60 GB/s: 0.27 ms). 8 panels' 32
# vectors of sums take every AVX-512 register (the loop spills a few), 4 fit with room; 8 ran
# a little faster all the same. Blocks left to run in parallel: at least LANES_W_TASKS, so
# small N keeps its cores busy (N = 128: 8 panels, one at a time)
LANES_W_PANELS, LANES_W_TASKS = 8, 16
