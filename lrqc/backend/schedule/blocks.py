"""The schedule of the plain u8 x s8 block formulation (C[j] += Σ_k A[k]·B[j, k] over 16
columns x 4 k, te.gemm's PLAIN sums) shared by the rules whose instruction implements that
block: VNNI's vpdpbusd and AVX2's vpmaddubsw + vpmaddwd by ones. The rules differ in the tensor
intrinsic and their tile preferences, not in the loop structure.

Single group: jo(par) -> io -> ko(k chunk) -> kk -> ii(unroll) -> jm(unroll) -> [16 x 4 block],
or (variant k_outer) jo -> ko -> io, or (variant k_inner, the hand order of packed weights in
buckets of one or two row tiles) jo -> io -> ko -> kk/f -> [packed weights unpacked for the f
blocks of a packed group of 16 k] -> f blocks -> ii -> jm -> block. Per-vector scales:
the output is the loop anchor and the per-group accumulator is computed at g. Two-level
integer scales summed as int16 pairs (te.gemm's pair sums, on rules with scale_pairs):
jo(par) -> io -> g2 -> [the two groups' int32 sums: ko -> g -> ii -> jm -> 16 x 4 blocks] ->
ii -> jm -> [one vpdpwssd per 16 columns, or on AVX2 two vpmaddwd], the output tile after the
last pair."""

from __future__ import annotations

from abc import abstractmethod
from typing import TYPE_CHECKING, ClassVar

from ...plan import names, ranges
from ...plan import signature as sig
from ...plan.model import KernelPlan
from ..compat import Schedule
from ..rowbound import row_tiles
from . import tiles
from .protocol import Knob, ScheduleRule

if TYPE_CHECKING:
    from ..target import Target

VARIANTS = ("rows_outer", "k_outer", "k_inner")
# the most row tiles of a bucket whose packed weights the hand schedules unpack next to their
# use (few_tiles)
INNER_TILES = 2


def variants(plan: KernelPlan) -> tuple[str, ...]:
    """The loop orders, the usual hand one first. Single group: each row tile runs the whole k
    loop ("rows_outer"; packed weights unpacked once per column panel), or every row tile of a
    column strip runs one k chunk before the next ("k_outer": the chunk of B stays in L1 for
    all rows; packed weights unpacked per chunk). Per-vector groups: each row tile runs every group
    with its output in registers ("rows_outer"; packed weights unpacked per panel), or each group
    runs over a block of rows ("k_outer"; packed weights unpacked per group and block). Same-run A/B
    on Zen 3 with the hand tiles (2026-12-02): rows_outer 1.5-2.1x faster for int8 x int4 at
    2048^3, 1024x384x1536, 512x3072x768 and 16/256x4096x4096, and for VS-Quant w4a4 1.3x at
    2048^3, 2.1x at 1024x384x1536. Single group with packed weights also: each row tile
    unpacks the weights of every packed group of 16 k (or every block, _inner_unpack) just
    before it uses them ("k_inner": no unpacked panel written to memory and read back). The
    hand order is hand_variant's, not always the first."""
    return VARIANTS if plan.groups == 1 and plan.packed else VARIANTS[:2]


def hand_variant(plan: KernelPlan, mr: int) -> str:
    """The loop order without tuning, for row tiles of mr rows: where the weights are packed
    and the bucket has at most INNER_TILES row tiles (few_tiles), k_inner for one group and
    k_outer for per-vector groups (each group unpacked for its block of rows); else
    rows_outer. At more tiles one unpacked panel, read by all of them, costs less than each
    tile unpacking every weight again. Int8 x int4 on a 2-core Zen 5 (AVX-512 VNNI, tiles
    of 4 rows), medians of 41 interleaved calls, rows_outer against k_inner: 1 x 4096 x
    4096 0.375 / 0.199 ms (int8 weights: 0.257), 4 x 4096 x 4096 0.441 / 0.248, 4 x 4096 x
    11008 0.885 / 0.419 (int8: 0.633), 8 x 4096 x 4096 0.446 / 0.330; at 16 rows 0.558 /
    0.548 and at 32 0.809 / 1.011.
    The AVX2 bytes rule (tiles of 2 rows) built for x86-avx2 on the same machine, 31 calls:
    int8 x int4 at 1 x 4096 x 4096 0.41 / 0.25 ms, at 4 x 4096 x 11008 1.50 / 1.25; at 8 x
    4096 x 4096 (four tiles) 0.79 / 0.87. Int8 x int4 with per_vector(16) scales (Zen 5,
    VNNI, 31 calls), rows_outer against k_outer: 1 x 4096 x 4096 0.502 / 0.303 ms, 8 x 4096
    x 4096 0.597 / 0.443, 16 x 4096 x 4096 0.812 / 1.339."""
    if not few_tiles(plan, mr):
        return "rows_outer"
    return "k_inner" if plan.groups == 1 else "k_outer"


def few_tiles(plan: KernelPlan, mr: int | object) -> bool:
    """Whether the weights are packed and the bucket has at most INNER_TILES row tiles of mr
    rows: the hand schedules unpack them next to their use rather than per column panel. A
    tile size lrqc tune samples (not a number) counts as many tiles: its trace must not
    depend on the value drawn."""
    return plan.packed and isinstance(mr, int) and plan.mp <= INNER_TILES * mr


def avx2_blocks_refused(plan: KernelPlan, target: Target, refused: str | None) -> str | None:
    """Why an AVX2 rule of this module's blocks does not apply, or None: it needs the target's
    AVX2, int32 sums (not int64 chunks), groups of whole blocks of 4 k, and its instruction's
    range proof (refused: the proof's refusal, None where it holds)."""
    if "avx2" not in target.features:
        return "target lacks avx2"
    if plan.chunked:
        return "int64 accumulation over K chunks (the portable rule)"
    if plan.groups > 1 and plan.vector % 4:
        return f"per-group vectors of {plan.vector} (not whole blocks of 4 k)"
    return refused


def schedule(fn: str, sch: Schedule, plan: KernelPlan, pick: dict, intrin: str,
             steps: int = 1, variant: str | None = None, avx2: bool = False) -> None:
    """Schedule function fn (the GEMM or its integer sums) with the picked tiles (mr, nr and
    for single-group products kc, in blocks), the block tensorized to `intrin` (a registered
    name) over `steps` 4-byte k steps (dividing Kp / 4, or the group's V / 4); groups summed
    as int16 pairs with vpdpwssd, or (avx2) vpmaddwd."""
    if tiles.has_block(sch, names.PAIR_SUMS):
        _scale_pairs(sch, plan, pick["mr"], pick["nr"], intrin, steps, avx2)
    elif plan.groups == 1:
        _single_group(sch, plan, pick["mr"], pick["nr"], pick["kc"], intrin, steps,
                      variant or hand_variant(plan, pick["mr"]))
    else:
        rows_outer = (variant or hand_variant(plan, pick["mr"])) == "rows_outer"
        _groups(fn, sch, plan, pick["mr"], pick["nr"], intrin, steps, rows_outer)




def _single_group(sch, plan, mr, nr, kc, intrin, steps, variant):
    blk = sch.get_sblock("acc")
    i, j, k = sch.get_loops(blk)
    io, ii = sch.split(i, [None, mr])
    jo, jm, jv = sch.split(j, [None, nr, 16])
    ko, kk, kv = sch.split(k, [None, kc, 4 * steps])  # kc blocks of steps x 4 k per chunk
    k_outer = variant == "k_outer"
    unpack = ko if k_outer else jo  # packed weights: per k chunk, or the whole panel
    if k_outer:
        sch.reorder(jo, ko, io, kk, ii, jm, jv, kv)
    elif variant == "k_inner":
        outer, kk = _inner_unpack(sch, plan, kk, kc, steps)
        sch.reorder(jo, io, ko, *((outer,) if outer is not None else ()), kk, ii, jm, jv, kv)
        unpack = kk if outer is None else outer
    else:
        sch.reorder(jo, io, ko, kk, ii, jm, jv, kv)
    row_tiles(sch, io, mr)  # a call's rows: the tiles past them are skipped
    sch.parallel(jo)
    sch.unroll(ii)
    sch.unroll(jm)
    tiles.unpack_at(sch, unpack)
    if k_outer:
        tiles.fuse_epilogue(sch, "C", jo, rows=4)
    else:
        tiles.store_tiles(sch, plan, "C", io, jo, mr, isinstance(nr, int))
    tiles.finish_vnni(sch, {"blk": blk, "ko": ko, "jv": jv}, intrin)


def _inner_unpack(sch, plan, kk, kc, steps):
    """(the loop to unpack packed weights at, the blocks' loop) for k_inner: per f blocks,
    f = the blocks of one packed group of 16 k (4 // steps), where f divides every k chunk kc
    may be (tiles.unpack_at then shifts by constants): (kk / f, the f blocks); else per block
    (None, kk: unpacked under kk, every block a whole packed group where f is 1, else its
    shifts computed)."""
    f = max(1, 4 // steps)
    chunks = (kc,) if isinstance(kc, int) else tiles.k_chunks(plan, steps) or (1,)
    if f == 1 or any(c % f for c in chunks):
        return None, kk
    outer, inner = sch.split(kk, [None, f])
    return outer, inner


def _groups(fn, sch, plan, mr, nr, intrin, steps, rows_outer):
    out, io, g = tiles.group_output_tile(sch, fn, plan, mr, nr, panel=rows_outer)
    part = sch.get_sblock("partial")
    sch.compute_at(part, g if rows_outer or not plan.packed else io)
    pi, pj, pk = sch.get_loops(part)[-3:]
    pjm, pjv = sch.split(pj, [nr, 16])
    pko, pkv = sch.split(pk, [None, 4 * steps])
    sch.reorder(pko, pi, pjm, pjv, pkv)
    sch.unroll(pi)
    sch.unroll(pjm)
    tiles.unpack_at(sch, sch.get_loops(out)[0] if rows_outer else g)
    pinit = sch.decompose_reduction(part, pko)
    sch.vectorize(sch.get_loops(pinit)[-1])
    sch.tensorize(pjv, intrin)
    tiles.finish_group_output(sch, fn, out, g)


def _scale_pairs(sch, plan, mr, nr, intrin, steps, avx2):
    out = sch.get_sblock(names.OUT)
    i, j, *chunks = sch.get_loops(out)  # the chunks of groups, where there are several
    io, ii = sch.split(i, [None, mr])
    jo, jm, jv = sch.split(j, [None, nr, 16])
    sch.reorder(jo, io, *chunks, ii, jm, jv)
    row_tiles(sch, io, mr)  # a call's rows: the tiles past them are skipped
    sch.parallel(jo)
    sch.unroll(ii)
    sch.unroll(jm)
    sch.vectorize(jv)
    tot = sch.get_sblock(names.PAIR_SUMS)
    anchor = chunks[0] if chunks else io
    tinit, tg2, tjv = _pairs_loop(sch, tot, anchor)
    part = sch.get_sblock(names.PARTIAL)
    sch.compute_at(part, tg2)
    pi, pg, pj, pk = sch.get_loops(part)[-4:]
    pjm, pjv = sch.split(pj, [None, 16])
    pko, pkv = sch.split(pk, [None, 4 * steps])
    sch.reorder(pko, pg, pi, pjm, pjv, pkv)
    pinit = sch.decompose_reduction(part, pko)
    *outer, lanes = sch.get_loops(pinit)[-4:]
    sch.vectorize(lanes)
    for lp in (*outer, pg, pi, pjm):
        sch.unroll(lp)
    tiles.unpack_at(sch, tg2 if few_tiles(plan, mr) else jo)  # per two groups, or the panel
    sch.tensorize(pjv, intrin)
    sp = ranges.pairs_of(plan)
    sch.tensorize(tjv, tiles.register_scale_pairs(sp.offset, sp.narrow, avx2))
    if chunks:  # the output tile starts from the bias, then adds each chunk's total
        cinit = sch.decompose_reduction(out, chunks[0])
        sch.vectorize(sch.get_loops(cinit)[-1])


def _pairs_loop(sch, blk, anchor):
    """A chunk's total of pair sums at `anchor`: its groups two at a time
    outside rows and 16-column vectors, both unrolled, the total's start vectorized. Returns
    (its init block, the pairs' loop, the 16 columns to tensorize)."""
    sch.compute_at(blk, anchor)
    ti, tj, tg = sch.get_loops(blk)[-3:]  # rows, columns, the chunk's groups
    tjm, tjv = sch.split(tj, [None, 16])
    tg2, th = sch.split(tg, [None, 2])
    sch.reorder(tg2, ti, tjm, tjv, th)
    init = sch.decompose_reduction(blk, tg2)
    *outer, lanes = sch.get_loops(init)[-3:]
    sch.vectorize(lanes)
    for lp in (*outer, ti, tjm):
        sch.unroll(lp)
    return init, tg2, tjv


class DotBlockRule(ScheduleRule):
    """The base of the rules whose instruction is the whole u8·s8 block summed per 4 k
    (vpdpbusd in its 512-bit and 256-bit forms): they apply where the target has `feature`,
    take single-group products and per-group vectors of whole blocks of 4 k, and schedule
    with this module's loop structure; a rule names its feature, its tensor intrinsic and its
    tile preferences (rows, 16-column blocks)."""

    instruction = "vpdpbusd"
    fast = True
    sums_start = True
    feature: ClassVar[str]
    rows_pref: ClassVar[tuple[int, ...]] = (4, 2, 1)
    cols_pref: ClassVar[tuple[int, ...]] = (4, 2, 1)
    # (rows, column blocks) of the hand tile of single-group products with packed weights in
    # buckets of one or two such tiles (few_tiles: the weights unpacked next to their use);
    # None: the preferences above
    packed_few_rows: ClassVar[tuple[int, int] | None] = None
    # the most rows of a bucket whose groups summed as int16 pairs take tiles of 8 rows x 1
    # column block by hand (products of at least 128 columns); 0: the preferences above
    pairs_few_rows: ClassVar[int] = 0

    @abstractmethod
    def intrinsic(self) -> str:
        """The registered tensor intrinsic of the 16 x 4 block."""

    def why_not(self, plan: KernelPlan, target: Target) -> str | None:
        if self.feature not in target.features:
            return f"target lacks {self.feature}"
        if plan.chunked:
            return "int64 accumulation over K chunks (the portable rule)"
        if plan.groups > 1 and plan.vector % 4:
            return (f"per-group vectors of {plan.vector} (not whole blocks of 4 k: the portable "
                    "rule)")
        return None

    def variants(self, plan: KernelPlan) -> tuple:
        """Loop orders lrqc tune explores (variants()): rows outer, k chunks outer, and for
        packed weights their unpacking in the k loop; groups summed as int16 pairs have one."""
        return VARIANTS[:1] if self.pairs(plan) else variants(plan)

    def pairs(self, plan: KernelPlan) -> bool:
        """Whether the rule sums the plan's groups as int16 pairs of integer scales."""
        return self.scale_pairs and sig.scale_pairs(plan)

    def unit_safe(self, plan: KernelPlan) -> tuple:
        """Knobs that are pure split factors (the same tile structure at every value)."""
        return () if plan.packed else ("nr",)

    def knobs(self, plan: KernelPlan) -> dict:
        """The tuning space (tiles.tile_knobs): rows per tile, 16-column blocks per tile and
        the k chunk (hand 64 steps of 4 bytes = 256), the hand tiles the rule's preferences;
        per-group products hold a tile of int32 partial sums next to the float32 output tile,
        so their hand tile takes at most 2 column blocks where N has 8 or more (VS-Quant w4a4
        on a 2-core Xeon with AVX-512 VNNI, lrqc tune, 2026-12-03: 4 x 2 faster than the 4 x 4
        hand tile by 1.06-1.29x at six shapes from 256x1024x1024 to 2048^3); narrower products
        keep the wider tile and so fewer parallel tasks (at 16x64x128 the second task of 2 x 2
        cost a thread wake-up: 0.023 ms against 0.001 ms on one).
        lrqc tune checks candidates on the host, so it samples them only where the host has
        the instruction; tests compile every corner of the space."""
        rows, cols = self.rows_pref, self.cols_pref
        if plan.groups > 1 and (plan.np_ >= 128 or self.pairs(plan)):  # int32 partials (of
            #   two groups, in pairs) and the output tile: registers
            cols = tuple(c for c in cols if c <= 2) or (1,)
        if self.pairs(plan) and plan.mp <= self.pairs_few_rows and plan.np_ >= 128:
            rows, cols = (8, *rows), (1,)
        few = self.packed_few_rows
        if few and plan.packed and plan.groups == 1 and plan.mp % few[0] == 0 \
                and plan.mp <= INNER_TILES * few[0]:
            rows, cols = (few[0], *rows), (few[1], *cols)
        return tiles.tile_knobs(plan, rows, cols)

    def schedule(self, fn: str, sch: Schedule, plan: KernelPlan, knob: Knob | None = None,
                 variant: str | None = None) -> None:
        schedule(fn, sch, plan, tiles.picks(self.knobs(plan), knob), self.intrinsic(),
                 variant=variant)
