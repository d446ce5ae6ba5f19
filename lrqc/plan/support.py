"""make_plan: a KernelPlan from a scheme at concrete sizes, and every check of what the
integer kernels can hold exactly (codes in a byte, int32 sums, zero points): a scheme the
kernels cannot compute exactly is refused (UnsupportedScheme) or, for the base product only,
planned as a float32 GEMM with a note saying so. No TVM here."""

from __future__ import annotations

from dataclasses import replace
from math import lcm

import numpy as np

from ..errors import UnsupportedScheme
from ..frontend.bind import MAX_ELEMENTS, bind_dims
from ..frontend.model import (
    Calibration,
    Dense,
    FloatOperand,
    Granularity,
    LowRank,
    LplrOperand,
    Quant,
    QuantOperand,
    Rounding,
    Scheme,
    Sparse,
)
from ..frontend.unparse import quant_text
from ..reference.minifloat import code_max, elem_max, fits_int8
from ..reference.quant import int_range
from .model import KernelPlan
from .segments import Segment, SparseProduct, segments_of, sparse_products_of, split_terms

# each operand's (dense and sparse terms, final lowrank term): segments.split_terms
_Terms = dict[str, tuple[tuple[Dense | Sparse, ...], LowRank | None]]



def code_limit(q: Quant) -> int:
    """Largest |integer code| the kernels see for quantizer q (signed fixed point: 2^(b-1))."""
    if q.granularity == Granularity.PER_BLOCK or not q.is_int:
        return code_max(q.fmt)
    return max(map(abs, int_range(q)))


def _integer_problem(q: Quant, role: str) -> str | None:
    """Why quantizer q cannot run on the integer units (codes must fit a byte), or None.
    Element formats do when their codes value x 2^f lie in [-127, 127] (minifloat.fits_int8:
    e1m0..e1m6, e2m0..e2m4, e3m0 and MX int8)."""
    if (q.granularity == Granularity.PER_BLOCK or not q.is_int) and not fits_int8(q.fmt):
        what = "MX elements " if q.granularity == Granularity.PER_BLOCK else ""
        return (f"{role}: {quant_text(q)}: {what}{q.fmt} codes (value x 2^f, up to "
                f"{code_max(q.fmt)}) do not fit int8 (the integer kernels take eXmY whose "
                "codes lie in [-127, 127]: e1m0..e1m6, e2m0..e2m4, e3m0, and MX int8)")
    if q.bits == 1 and q.signed and q.scale != "float32" and not q.is_fixed:
        return f"{role}: int1 with two-level scales"
    return None


def make_plan(s: Scheme, m: int, n: int, k: int, mr: int = 4) -> KernelPlan:
    """The KernelPlan of scheme s at M=m, N=n, K=k (rows padded to mr), with a note when B's
    quantizer asks for pack=dense and this product cannot keep its codes packed."""
    plan = _make_plan(s, m, n, k, mr)
    _check_buffers(plan)
    qb = plan.qb
    if qb is not None and qb.pack == "dense" and not plan.packed:
        why = ("its float32 GEMM multiplies B's values with its residual terms folded in"
               if plan.float_path else "a segment's codes need 8 bits")
        plan = replace(plan, notes=plan.notes + (
            f"b: pack=dense not applied: {why}; B is stored as the layouts say",))
    return plan


def _check_buffers(p: KernelPlan) -> None:
    """UnsupportedScheme where a buffer of the compiled kernel would hold more than
    MAX_ELEMENTS values (its indices are int32): A's codes or C with M padded to whole row
    tiles, B's codes or values with K padded and concatenated over the K segments, N padded to
    whole blocks. bind_dims checks the operands as the reference holds them; this, the
    kernel's own buffers, which are larger."""
    for what, rows, cols in (("A's codes", p.mp, p.kp), ("B's codes", p.kp, p.np_),
                             ("C", p.mp, p.np_)):
        if rows * cols > MAX_ELEMENTS:
            segs = f" in {p.nseg} K segments of {p.kseg}" if p.segments else ""
            raise UnsupportedScheme(
                f"scheme '{p.scheme.name}': at M={p.m}, N={p.n}, K={p.k} the compiled kernel's "
                f"{what} ({rows} x {cols}: M padded to {p.mp}, N to {p.np_}, K to {p.kp}{segs})"
                f" hold {rows * cols} values, more than {MAX_ELEMENTS} (2^31 - 1, the kernels' "
                "index range); compile a smaller product (the numpy reference evaluates this one)")


def _make_plan(s: Scheme, m: int, n: int, k: int, mr: int = 4) -> KernelPlan:
    notes = tuple(bind_dims(s, m, n, k))
    if s.product is not None or isinstance(s.a, LplrOperand) or isinstance(s.b, LplrOperand):
        raise UnsupportedScheme(f"scheme '{s.name}': LPLR and LRAMM run as chains of kernels "
                                "(runtime/chain.py), not as one plan")
    try:
        terms = {r: split_terms(s.operand(r)) for r in ("a", "b")}
    except ValueError as exc:
        raise UnsupportedScheme(f"scheme '{s.name}': {exc}") from None
    has_terms = any(t or low for t, low in terms.values())
    if isinstance(s.a, QuantOperand) and s.a.quant.round == Rounding.STOCHASTIC \
            and (s.a.quant.granularity == Granularity.PER_BLOCK or has_terms):
        raise UnsupportedScheme("a: stochastic rounding of MX activations, or of activations "
                                "with residual terms, is not compiled")
    mp = -(-m // mr) * mr
    np_ = -(-n // 16) * 16
    if isinstance(s.a, FloatOperand) or isinstance(s.b, FloatOperand):
        plan = _float_plan(s, m, n, k, mp, np_, notes)
        return _float_terms(plan, terms) if has_terms else plan
    qa, qb = s.a.quant, s.b.quant
    problem = _integer_problem(qa, "a") or _integer_problem(qb, "b")
    grouped = [q.vector for q in (qa, qb) if q.grouped]
    if not problem and len(set(grouped)) > 1:
        problem = f"per_vector sizes differ ({grouped[0]} vs {grouped[1]})"
    if not problem and grouped and grouped[0] % 4:
        problem = f"per_vector({grouped[0]}): V must be a multiple of 4 for the integer layout"
    mx = (qa.granularity == Granularity.PER_BLOCK, qb.granularity == Granularity.PER_BLOCK)
    if not problem and mx[0] != mx[1]:
        problem = "MX (per_block) on one operand only"
    v = grouped[0] if grouped else 0
    chunked = False
    if v:
        kp = -(-k // v) * v
        groups = kp // v
    else:
        kp, groups = -(-k // 4) * 4, 1
        v = kp
        chunk = int32_chunk(qa, qb)
        if not problem and kp > chunk and not has_terms:  # int32 or int64: exact sums
            groups = -(-kp // chunk)  # int32 partials per chunk, summed in int64
            v = -(-kp // (groups * 4)) * 4
            kp, chunked = groups * v, True
    offset = a_offset(qa)
    if not problem:
        _check_overflow(s, qa, qb, v, k)
    if problem:
        if has_terms:
            raise UnsupportedScheme(f"scheme '{s.name}': residual terms are compiled on the "
                                    f"integer path only, which this product cannot take "
                                    f"({problem})")
        _check_float_range(s, qa, qb, k)
        note = f"integer path unavailable ({problem}): float32 GEMM fallback, not bit-exact"
        return _float_plan(s, m, n, k, mp, np_, notes + (note,))
    if chunked:
        notes += ((f"accumulate: {s.accumulate}: K={k} exceeds what one int32 sum holds "
                   f"exactly for these formats; int32 partial sums over {groups} chunks of "
                   f"{v} are added in int64 (the portable schedule)"),)
    plan = KernelPlan(s, m, n, k, mp, np_, kp, groups, v, offset, notes, chunked=chunked)
    return _integer_terms(plan, terms) if has_terms else plan


def a_offset(q: Quant) -> int:
    """Added to A-side codes so they are unsigned bytes: 2^(b-1) for signed b-bit integers
    (128 for int8; int7's codes then lie in [0, 127], where a vpmaddubsw pair sum with int8
    weights cannot saturate: lrqc.plan.ranges), 128 for e*m* element values, 0 for unsigned."""
    if not q.is_int:
        return 128
    return 2 ** (q.bits - 1) if q.signed else 0


def int32_chunk(qa: Quant, qb: Quant) -> int:
    """The longest K (a multiple of 4) whose int32 sums of A's stored codes times B's codes
    cannot overflow: the kernels' GEMMs sum at most this many products in int32."""
    span = code_limit(qa) + a_offset(qa)
    return (2**31 - 1) // (span * centered_limit(qb)) // 4 * 4


FLOAT32_MAX = float(np.finfo(np.float32).max)


def element_max(q: Quant) -> float:
    """The largest |value| the float32 fallback GEMM multiplies for quantizer q, before its
    scales: an element format's largest value, an integer format's largest code."""
    if q.granularity == Granularity.PER_BLOCK or not q.is_int:
        return elem_max(q.fmt)
    return float(code_limit(q))


def _check_float_range(s: Scheme, qa: Quant, qb: Quant, k: int) -> None:
    """UnsupportedScheme where the float32 fallback's sums of K products of A's and B's
    element values, taken before the scales, can pass float32's range for any data (e7m0 on
    both sides: 2^64 each, and max-abs calibration maps every row's and column's largest value
    to it), so no call could give the reference's numbers."""
    ea, eb = element_max(qa), element_max(qb)
    if ea * eb * k > FLOAT32_MAX:
        raise UnsupportedScheme(
            f"scheme '{s.name}': the float32 GEMM fallback multiplies A's and B's element "
            f"values before their scales: up to {ea:.3g} x {eb:.3g} a product, {k} products a "
            f"sum, past float32's range ({FLOAT32_MAX:.3g}); give one side a format of a "
            "smaller range (e6m1 or narrower, or integer codes)")


def _check_overflow(s: Scheme, qa: Quant, qb: Quant, width: int, k: int) -> None:
    """UnsupportedScheme when int32 sums of `width` products could overflow: accumulate
    (int32 or int64) promises exact sums. A single-group product past that width is cut into
    K chunks by make_plan instead."""
    if width > int32_chunk(qa, qb):
        raise UnsupportedScheme(f"scheme '{s.name}': K={k}: sums of {width} products (one "
                                "scale group, or a residual term) can exceed int32, and only "
                                "single-group products without residual terms are compiled "
                                "as int32 chunks added in int64")


def _integer_terms(p: KernelPlan, terms: _Terms) -> KernelPlan:
    """The plan with dense terms as K segments, sparse terms as sparse products and lowrank
    terms as epilogues."""
    s = p.scheme
    segs, prods = segments_of(s), sparse_products_of(s)
    for sg in segs[1:]:
        why = (_integer_problem(sg.qa, "a") or _integer_problem(sg.qb, "b")
               or _segment_problem(sg))
        if why:
            raise UnsupportedScheme(f"scheme '{s.name}': residual segment {sg.a} x {sg.b}: {why}")
    for sp in prods:
        why = _integer_problem(sp.q, sp.side) or _sparse_problem(sp)
        if why:
            other = "b" if sp.side == "a" else "a"
            raise UnsupportedScheme(f"scheme '{s.name}': sparse term of {other}: {why}")
    if segs and p.b_zero:
        raise UnsupportedScheme(f"scheme '{s.name}': dense terms with weights that have zero "
                                "points (unsigned or min-max) are not compiled")
    quants: list[Quant | None] = [q for sg in segs for q in (sg.qa, sg.qb)] or [p.qa, p.qb]
    quants += [sp.q for sp in prods]
    vs = sorted({q.vector for q in quants if q is not None and q.grouped})
    if len(vs) > 1:
        raise UnsupportedScheme(f"scheme '{s.name}': residual terms with per_vector sizes "
                                f"{vs} (one V for every segment is compiled)")
    if p.mx and (segs or prods or terms["a"][1] is not None or terms["b"][1] is not None):
        raise UnsupportedScheme(f"scheme '{s.name}': residual terms on MX operands are not "
                                "compiled")
    v = vs[0] if vs else 0
    quantum = lcm(v or 4, 16)  # the epilogue's row dot products read K in 16-lane chunks
    kq = -(-p.k // quantum) * quantum
    gq, v = (kq // v, v) if v else (1, kq)
    nseg = max(1, len(segs))
    for sg in segs:
        _check_overflow(s, sg.qa, sg.qb, v, p.k)
    for sp in prods:
        if centered_limit(sp.q) ** 2 * v >= 2**31:
            raise UnsupportedScheme(f"scheme '{s.name}': K={p.k} can overflow the int32 "
                                    "accumulator of a sparse term")
    notes = p.notes
    if prods:
        notes += (("sparse terms: products added to C after the GEMM: A's thresholded copy "
                   "skips its zero codes per call, B's is stored as CSR at pack; whether a copy "
                   "is sparse or the dense operand (density above max_density, then every "
                   "element is multiplied) is decided at pack for B (packed.notes) and per "
                   "call for A (kernel.last_notes); on CPUs each also compiles as a dense "
                   "integer GEMM, run where the copy's density exceeds the measured crossover "
                   "(per call for B's terms, at pack for A's; kernel.last_notes says which "
                   "ran)"),)
    return replace(p, kp=nseg * kq, groups=nseg * gq, vector=v, segments=segs, kseg=kq,
                   sparse=prods, lowrank_a=terms["a"][1], lowrank_b=terms["b"][1], notes=notes)


def zero_point_problem(p: KernelPlan, zc: np.ndarray, zb: np.ndarray | None) -> str | None:
    """Why the integer sums of this call could overflow int32, or None. Min-max zero points
    are not clamped: data of one sign far from zero (1e4 + U[0, 1) in uint8) puts them far
    outside the codes, and then code - zero (A's zc: zero + storage offset, per row and group;
    B's zb: zero - storage offset, per group and column) no longer has the bounds the plan
    checked. Every product sum of a group of V must stay below 2^31: the centered one, the
    zero-point corrections zc * colsum(B) and rowsum(A - zA) * zb."""
    top = 2**31 - 1
    v = p.vector
    for s in range(p.nseg):
        dev = _segment_deviations(p, s, zc, zb)
        if dev is None:  # a float GEMM: no integer sums
            return None
        dev_a, dev_b, zc_max, zb_max = dev
        if max(dev_a * dev_b, zc_max * 128, dev_a * zb_max) * v > top:
            return (f"min-max zero points far outside the codes (data of one sign far from "
                    f"zero: A's codes lie up to {dev_a} from their zero point, B's up to "
                    f"{dev_b}): the integer sums over groups of {v} would overflow int32; use "
                    "calibrate=maxabs or a signed format, center the data, or shorter "
                    "per_vector groups")
    return None


def code_deviations(p: KernelPlan, zc: np.ndarray, zb: np.ndarray | None) -> tuple[int, int]:
    """(the largest |code - zero point| of A's codes, of B's) over every K segment of a call
    (zc: its rows' zero corrections; zb: B's zero points or None): at most 255 each where the
    zero points lie within the codes' range, more where min-max zero points lie outside it
    (zero_point_problem). (255, 255) for a float GEMM."""
    devs = [_segment_deviations(p, s, zc, zb) for s in range(p.nseg)]
    if any(d is None for d in devs):
        return 255, 255
    return (max(max(d[0] for d in devs if d is not None), 255),
            max(max(d[1] for d in devs if d is not None), 255))


def _segment_deviations(p: KernelPlan, s: int, zc: np.ndarray, zb: np.ndarray | None
                        ) -> tuple[int, int, int, int] | None:
    """K segment s's (A's largest |code - zero|, B's, max |zc|, max |zb|), or None for a
    float GEMM."""
    qa = p.segments[s].qa if p.segments else p.qa
    qb = p.segments[s].qb if p.segments else p.qb
    if qa is None or qb is None:
        return None
    za_lo, za_hi = _span(zc[:, s * p.gq:(s + 1) * p.gq])
    dev_a, zc_max = centered_limit(qa), max(-za_lo, za_hi)
    if qa.is_int and qa.calibrate == Calibration.MINMAX:
        off = a_offset(qa)
        dev_a = max(dev_a, _deviation(qa, za_lo - off, za_hi - off))
    dev_b, zb_max = _b_deviation(p, qb, zb)
    return dev_a, dev_b, zc_max, zb_max


def _b_deviation(p: KernelPlan, qb: Quant, zb: np.ndarray | None) -> tuple[int, int]:
    """(B's largest |code - zero point| under quantizer qb, max |zb|)."""
    if not (p.b_zero and zb is not None):
        return centered_limit(qb), 0
    zb_lo, zb_hi = _span(zb[:, : p.n])
    dev = _deviation(qb, zb_lo + p.b_offset, zb_hi + p.b_offset)
    return max(centered_limit(qb), dev), max(-zb_lo, zb_hi)


def b_deviation(p: KernelPlan, zb: np.ndarray | None) -> int:
    """B's largest |code - zero point| over the K segments (at least 255: code_deviations),
    from the packed operand's zero points alone."""
    qbs = [sg.qb for sg in p.segments] if p.segments else [p.qb]
    return max([255] + [_b_deviation(p, q, zb)[0] for q in qbs if q is not None])


def _span(z: np.ndarray) -> tuple[int, int]:
    """(min, max) of integer zero points, as Python integers (one pass each, no widening)."""
    return int(z.min()), int(z.max())


def _deviation(q: Quant, z_lo: int, z_hi: int) -> int:
    """The largest |code - z| of quantizer q over zero points z in [z_lo, z_hi]."""
    lo, hi = int_range(q)
    return max(abs(lo - z_lo), abs(hi - z_lo), abs(lo - z_hi), abs(hi - z_hi))


def float32_codes(q: Quant) -> bool:
    """Whether CPU kernels may take q's codes from float32 in the rows where that is proven
    exact (lrqc.backend.te.fastcodes): integer codes from a scale (max |x| or min-max, not
    fixed point, 1-bit signs or MX blocks), rounded to nearest, down or toward zero."""
    return q.is_int and not q.is_fixed and not (q.signed and q.bits == 1) \
        and q.granularity != Granularity.PER_BLOCK and q.round in (
            Rounding.NEAREST, Rounding.NEAREST_AWAY, Rounding.FLOOR, Rounding.TRUNC)


def centered_limit(q: Quant) -> int:
    """Largest |code - zero point| of integer quantizer q."""
    return code_limit(q) if q.signed and q.calibrate == Calibration.MAXABS else 2 ** q.bits


def _sparse_problem(sp: SparseProduct) -> str | None:
    q = sp.q
    if q.granularity == Granularity.PER_BLOCK or not q.is_int:
        return f"{quant_text(q)}: sparse terms take integer formats"
    if q.round == Rounding.STOCHASTIC:
        return "stochastic rounding of per-call sparse operands is not compiled"
    if q.calibrate == Calibration.MINMAX or not q.signed:
        # centered codes (code - zero point) are stored as int16, and a per-call zero point
        # far outside the codes (a residual whose values all lie close together) would wrap
        return ("B-side residual codes with zero points are not compiled" if sp.side == "a"
                else "sparse terms of A with zero points (unsigned or calibrate=minmax) are not "
                "compiled: their per-call codes minus zero point are not proven to fit int16")
    return None


def _segment_problem(sg: Segment) -> str | None:
    if sg.qb.calibrate == Calibration.MINMAX or not sg.qb.signed:
        return "B-side residual codes with zero points are not compiled"
    for q in (sg.qa, sg.qb):
        if q.granularity == Granularity.PER_BLOCK or not q.is_int:
            return f"{quant_text(q)}: residual segments take integer formats"
        if q.round == Rounding.STOCHASTIC and q is sg.qa:
            return "stochastic rounding of per-call residuals is not compiled"
    return None


def _float_terms(p: KernelPlan, terms: _Terms) -> KernelPlan:
    """Products with a float operand: B's lowrank term as the epilogue, B's dense terms folded
    into the float weights (exact in float). Anything else is not compiled."""
    (a_t, a_low), (b_t, b_low) = terms["a"], terms["b"]
    if a_t or a_low is not None or any(not isinstance(t, Dense) for t in b_t):
        raise UnsupportedScheme(f"scheme '{p.scheme.name}': with a float operand, only lowrank "
                                "and dense terms on the weights (b) are compiled")
    kq = -(-p.k // 16) * 16 if b_low is not None else p.kp
    dense_b = tuple(t for t in b_t if isinstance(t, Dense))  # all of b_t (checked above)
    return replace(p, lowrank_b=b_low, dense_b=dense_b, kp=kq, vector=kq)


def _float_plan(s: Scheme, m: int, n: int, k: int, mp: int, np_: int,
                notes: tuple[str, ...]) -> KernelPlan:
    """Plan of the float32 GEMM: a quantized `a` keeps its own K grouping (quantize_a makes its
    codes exactly, then dequantizes); a quantized `b` is dequantized by the reference in pack."""
    if isinstance(s.a, QuantOperand):
        q = s.a.quant
        v = q.vector if q.grouped else 0
        kp = -(-k // v) * v if v else k
        groups, v = (kp // v, v) if v else (1, kp)
        offset = 128 if q.signed or not q.is_int else 0
        return KernelPlan(s, m, n, k, mp, np_, kp, groups, v, offset, notes, float_gemm=True)
    return KernelPlan(s, m, n, k, mp, np_, k, 1, k, 0, notes, float_gemm=True)
