"""Tile helpers shared by the schedule rules in schedules/<target>/ (rules never import TVM;
they receive a Schedule and call these). Order of primitives matters in 0.27: split/reorder,
then parallel/unroll/vectorize, then compute_at, then decompose_reduction, then tensorize."""

from __future__ import annotations

from . import names
from .intrin import register as register_vnni


def block(sch, name):
    return sch.get_sblock(name)


def has_block(sch, name) -> bool:
    try:
        sch.get_sblock(name)
        return True
    except Exception:
        return False


def parallel_rows(sch, name, vector: int = 0):
    """Parallelize the outer loop of an elementwise/reduction block; vectorize its innermost
    spatial loop by `vector` lanes when asked."""
    b = sch.get_sblock(name)
    loops = sch.get_loops(b)
    sch.parallel(loops[0])
    if vector and len(loops) >= 2:
        _, vi = sch.split(loops[-1], [None, vector])
        sch.vectorize(vi)
    return b


def inline_all(sch, names_):
    for n in names_:
        if has_block(sch, n):
            sch.compute_inline(sch.get_sblock(n))


def quantize_pass(sch):
    """Parallel rows for the codes; the stats and scales are small or row reductions."""
    for n in (names.QUANT_STATS, names.QUANT_STATS + "_lo"):
        if has_block(sch, n) and len(sch.get_loops(sch.get_sblock(n))) >= 3:
            sch.parallel(sch.get_loops(sch.get_sblock(n))[0])
    parallel_rows(sch, names.QUANT_CODES)


def vnni_gemm_tile(sch, acc_name, mr, nr, kc):
    """jo(par) -> io -> ko -> kk -> ii(unroll) -> jm(unroll) -> [16 j x 4 k] for one accumulator
    block (M, N, K); returns the loops for epilogues and tensorize."""
    blk = sch.get_sblock(acc_name)
    i, j, k = sch.get_loops(blk)
    io, ii = sch.split(i, [None, mr])
    jo, jm, jv = sch.split(j, [None, nr, 16])
    ko, kk, kv = sch.split(k, [None, kc // 4, 4])
    sch.reorder(jo, io, ko, kk, ii, jm, jv, kv)
    sch.parallel(jo)
    sch.unroll(ii)
    sch.unroll(jm)
    return {"blk": blk, "jo": jo, "io": io, "ko": ko, "jv": jv}


def finish_vnni(sch, loops):
    init = sch.decompose_reduction(loops["blk"], loops["ko"])
    sch.vectorize(sch.get_loops(init)[-1])
    sch.tensorize(loops["jv"], register_vnni())


def fuse_epilogue(sch, out_name, at_loop, lanes=16):
    b = sch.get_sblock(out_name)
    sch.reverse_compute_at(b, at_loop)
    j = sch.get_loops(b)[-1]
    _, jv = sch.split(j, [None, lanes])
    sch.vectorize(jv)


def pick_split(extent: int, choices) -> int:
    """The first choice dividing extent (tiles that fit exactly, no predicates)."""
    for c in choices:
        if extent % c == 0:
            return c
    return 1
