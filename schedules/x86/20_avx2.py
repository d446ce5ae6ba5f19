"""x86 AVX2 without VNNI: the same u8 x s8 blocks tensorized to vpmaddwd on bytes widened to
int16 (intrinsic lrqc_avx2_16x4_pairs_u8s8s32), accumulating two interleaved half sums per
column that one vectorized add joins before the epilogue (the TE's PAIRS formulation).

Tile search on Zen 3 (2 cores, no AVX-512), 256x1024x1024 u8·s8, exact: rows 2 x 16 columns x
k-chunk 256: 165-182 GOPS; 1 x 32: 192; 2 x 32: 120; 4 x 16: 131 (medians of 15, noisy host).
The plain-loop generic rule runs the same product at about 7 GOPS. Nibble weights: the whole
16-column panel is unpacked once per jo, 32 contiguous bytes per vector (2026-11-22, gemm only:
2048^3 int4 174-194 GOPS vs int8 146-175; 16x4096x4096 int4 153 vs int8 138)."""

from __future__ import annotations

from lrqc.backend.compat import Schedule
from lrqc.backend.rowbound import row_tiles
from lrqc.backend.schedule import tiles
from lrqc.backend.schedule.protocol import Formulation, Knob, ScheduleRule
from lrqc.backend.target import Target
from lrqc.plan.model import KernelPlan

VARIANTS = ("rows_outer", "k_outer")


class X86Avx2(ScheduleRule):
    name = "x86_avx2"
    family = "x86"
    instruction = "vpmaddwd"
    fast = False  # the fast path is VNNI; lrqc build says so
    measured = "165-190 GOPS at 256x1024x1024 int8, Zen 3 2 cores (2026-11-22)"
    formulation = Formulation.PAIRS

    def why_not(self, plan: KernelPlan, target: Target) -> str | None:
        if "avx2" not in target.features:
            return "target lacks avx2"
        if plan.chunked:
            return "int64 accumulation over K chunks (the portable rule)"
        if plan.groups > 1 and (plan.vector < 8 or plan.vector % 4):
            return (f"per-group vectors of {plan.vector} (whole blocks of 4 k pairs, at least "
                    "two: the portable rule)")
        return None

    def unit_safe(self, plan: KernelPlan) -> tuple:
        """Knobs that are pure split factors (1 or not, every schedule step sees the same
        loops): the 16-column blocks per tile, except with packed weights, whose per-tile
        unpack loses its unit block loop to compute_at."""
        return () if plan.packed else ("nr",)

    def variants(self, plan: KernelPlan) -> tuple:
        """Loop orders lrqc tune explores as separate design spaces (the hand schedule is the
        first): each row tile runs the whole k loop ("rows_outer"), or every row tile of a
        column strip runs one k chunk before the next ("k_outer": the chunk of B stays in L1
        for all rows, the accumulators of the strip live in memory; the output tile is written
        per strip). Same-run A/B on Zen 3, int8 x int8, hand tiles (2026-12-02): rows_outer
        1.6-1.8x faster at 512x3072x768, 1024x1536x384 and 16x4096x4096."""
        return VARIANTS if plan.groups == 1 else VARIANTS[:1]

    def knobs(self, plan: KernelPlan) -> dict:
        """The tuning space (tiles.tile_knobs): rows per tile and 16-column blocks per tile
        (hand 1 x 2 for single-group products, 2 x 1 per group: its tile needs a row loop) and
        the k chunk of single-group products; lrqc tune samples them. Same-run A/B on Zen 3
        (2026-12-02), int8 x int8: 1 x 2 1.2x faster than 2 x 1 at 2048^3, 1.8x at
        512x3072x768 and 1024x384x1536; with low-rank epilogues 1 x 2 as fast as or faster
        than 4 x 1 and 2 x 2 (rank 16 on B at 256x4096x4096: 1.8x; rank 1 on both at 2048^3:
        1.4x; rank 16 on both at 2048^3: 1.06x)."""
        rows = (1, 2) if plan.groups == 1 else (2, 1)
        return tiles.tile_knobs(plan, rows, (2, 1))

    def schedule(self, fn: str, sch: Schedule, plan: KernelPlan, knob: Knob | None = None,
                 variant: str | None = None) -> None:
        pick = tiles.picks(self.knobs(plan), knob)
        if plan.groups == 1:
            _single_group(sch, plan, pick["mr"], pick["nr"], pick["kc"], variant or VARIANTS[0])
        else:
            _groups(fn, sch, plan, pick["mr"], pick["nr"])


def _single_group(sch, plan, mr, nr, kc, variant):
    blk = sch.get_sblock("acc_pairs")
    i, j, h, k4, t = sch.get_loops(blk)
    io, ii = sch.split(i, [None, mr])
    jo, jm, jv = sch.split(j, [None, nr, 16])
    ko, kk = sch.split(k4, [None, kc])
    if variant == "k_outer":
        sch.reorder(jo, ko, io, kk, ii, jm, jv, h, t)
    else:
        sch.reorder(jo, io, ko, kk, ii, jm, jv, h, t)
    row_tiles(sch, io, mr)  # a call's rows: the tiles past them are skipped
    sch.parallel(jo)
    sch.unroll(ii)
    sch.unroll(jm)
    tiles.unpack_at(sch, jo)  # packed weights: the whole 16-column panel once per jo (L2-sized)
    anchor = jo if variant == "k_outer" else io
    tiles.sum_pairs_at(sch, "acc", anchor)
    if variant == "k_outer":
        tiles.fuse_epilogue(sch, "C", anchor, rows=4)
    else:
        tiles.store_tiles(sch, plan, "C", io, jo,
                          fixed=isinstance(mr, int) and isinstance(nr, int))
    tiles.finish_vnni(sch, {"blk": blk, "ko": ko, "jv": jv}, tiles.register_avx2())


def _groups(fn, sch, plan, mr, nr):
    out, io, g = tiles.group_output_tile(sch, fn, plan, mr, nr)
    at = io if plan.packed else g
    part = sch.get_sblock("partial")
    sch.compute_at(part, at)
    pj, ph = sch.get_loops(part)[-2:]
    _, pjv = sch.split(pj, [None, 8])
    sch.reorder(ph, pjv)
    sch.unroll(ph)
    sch.vectorize(pjv)
    pairs = sch.get_sblock("partial_pairs")
    sch.compute_at(pairs, at)
    pi, pj, ph, pk, pt = sch.get_loops(pairs)[-5:]
    pjm, pjv = sch.split(pj, [nr, 16])
    sch.reorder(pk, pi, pjm, pjv, ph, pt)
    sch.unroll(pi)
    sch.unroll(pjm)
    tiles.unpack_at(sch, g)
    pinit = sch.decompose_reduction(pairs, pk)
    sch.vectorize(sch.get_loops(pinit)[-1])
    sch.tensorize(pjv, tiles.register_avx2())
    tiles.finish_group_output(sch, fn, out, g)
