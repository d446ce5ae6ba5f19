"""KernelPlan: what the code generator needs to know about a base product at concrete sizes
(padded dims, groups, zero points), and which schemes it supports yet. No TVM here."""

from __future__ import annotations

import numbers
from dataclasses import dataclass, replace
from math import lcm

from ..errors import LrqcError
from ..frontend.bind import bind_dims
from ..frontend.model import Dense, FloatOperand, LplrOperand, QuantOperand, Scheme
from ..frontend.unparse import quant_text
from ..reference.quant import int_range
from .segments import Segment, SparseProduct, segments_of, sparse_products_of, split_terms


class UnsupportedScheme(LrqcError):
    """The scheme is valid but the code generator does not handle it yet."""


@dataclass(frozen=True)
class KernelPlan:
    scheme: Scheme
    m: int
    n: int
    k: int
    mp: int  # M padded to the row tile
    np_: int  # N padded to 16 lanes
    kp: int  # K padded to the group size and to 4
    groups: int  # G: scale groups along K (1 for per_tensor / per_channel)
    vector: int  # V (kp // groups)
    a_offset: int  # added to A's codes to make them unsigned (128 for signed, 0 for unsigned)
    notes: tuple[str, ...] = ()
    float_gemm: bool = False  # quantized operands the integer path cannot hold: float fallback
    segments: tuple[Segment, ...] = ()  # dense/sparse terms as extra K segments (segments.py)
    kseg: int = 0  # A's quantized K per segment (0: kp, no segments)
    lowrank_a: object = None  # the LowRank term ending A's residuals: epilogue L_A (F_Aᵀ B)
    lowrank_b: object = None  # the LowRank term ending B's residuals: epilogue (A' L_B) F_Bᵀ
    dense_b: tuple = ()  # float path: B's dense terms, folded into the float weights
    sparse: tuple[SparseProduct, ...] = ()  # sparse terms: products added after the GEMM
    chunked: bool = False  # accumulate: int64 past int32's reach: the groups are K chunks of
    #   one scale whose int32 partial sums are added in int64 (te_base.gemm)

    @property
    def nseg(self) -> int:
        return max(1, len(self.segments))

    @property
    def kq(self) -> int:
        """K as A is quantized (one segment): the GEMM's K is nseg * kq."""
        return self.kseg or self.kp

    @property
    def gq(self) -> int:
        """Scale groups per segment."""
        return self.groups // self.nseg

    @property
    def rank_a(self) -> int:
        return self.lowrank_a.rank if self.lowrank_a is not None else 0

    @property
    def rank_b(self) -> int:
        return self.lowrank_b.rank if self.lowrank_b is not None else 0

    @property
    def compensated(self) -> bool:
        return bool(self.segments or self.sparse or self.rank_a or self.rank_b or self.dense_b)

    @property
    def b_quants(self) -> tuple:
        return tuple(sg.qb for sg in self.segments) or (self.qb,)

    @property
    def qa(self):
        return None if self.a_float else self.scheme.a.quant

    @property
    def qb(self):
        return None if self.b_float else self.scheme.b.quant

    @property
    def a_float(self) -> bool:
        return isinstance(self.scheme.a, FloatOperand)

    @property
    def b_float(self) -> bool:
        return isinstance(self.scheme.b, FloatOperand)

    @property
    def float_path(self) -> bool:
        """A float operand (or the float fallback): the product runs as a float32 GEMM."""
        return self.a_float or self.b_float or self.float_gemm

    @property
    def nibbles(self) -> bool:
        """Integer weights of 2..4 bits are stored two per byte (split-half nibble order)."""
        return not self.float_path and all(
            q.is_int and q.granularity != "per_block" and q.bits <= 4 for q in self.b_quants)

    @property
    def b_zero(self) -> bool:
        """Weights with zero points (unsigned or min-max): stored as code - b_offset, corrected
        in the epilogue by row sums of A's centered codes times the weights' zero points."""
        return not self.float_path and (not self.qb.signed or self.qb.calibrate == "minmax")

    @property
    def b_offset(self) -> int:
        """Subtracted from unsigned weight codes so they fit the signed int8 / nibble storage."""
        return 2 ** (self.qb.bits - 1) if not self.qb.signed else 0

    @property
    def stochastic_a(self) -> bool:
        """A rounds stochastically: quantize_a reads the reference's U[0, 1) draws (noise())."""
        return self.qa is not None and self.qa.round == "stochastic"

    def noise(self):
        """The draws lrqc.reference.quantize makes for A at this bucket's M rows: U[0, 1) of
        shape (M, K padded as the reference pads it) from the quantizer's seed, in C order
        (so the first m rows are those of a call with m rows), zero padded to Kp columns."""
        import numpy as np

        from ..reference.quant import padded_k

        kref = padded_k(self.qa, self.k)
        out = np.zeros((self.m, self.kq))
        out[:, :kref] = np.random.default_rng(self.qa.seed).random((self.m, kref))
        return out

    @property
    def zero_points(self) -> bool:
        """Whether the integer sums depend on zero points that come from the data (min-max
        quantizers, of A or of the weights): each call checks them (zero_point_problem)."""
        if self.float_path:
            return False
        quants = [sg.qa for sg in self.segments] or [self.qa]
        return self.b_zero or any(q.is_int and q.calibrate == "minmax" for q in quants)

    @property
    def mx(self) -> bool:
        return self.qa is not None and self.qa.granularity == "per_block"

    @property
    def half(self) -> str | None:
        """float16 or bfloat16 when the float path's GEMM can multiply 16-bit values exactly:
        each operand is a float of that type, or quantized symmetrically (maxabs) with its
        scale outside the K sum (per_tensor / per_channel: codes of at most 8 bits and e*m*
        element values are exact in both types), and B has no dense term folded in. The GEMM then multiplies A's codes by
        B's codes (products exact in float32, accumulated in float32) and applies the row and
        column scales in its epilogue; CUDA runs it on fp16/bf16 tensor cores. None: the
        float32 GEMM of dequantized values."""
        if not self.float_path or self.dense_b:
            return None
        fits = set(HALF_TYPES)
        for op in (self.scheme.a, self.scheme.b):
            fits &= _half_types(op)
        return next((t for t in HALF_TYPES if t in fits), None)




HALF_TYPES = ("float16", "bfloat16")  # preferred first


def _half_types(op) -> set:
    """The 16-bit float types that hold an operand's GEMM values exactly (see KernelPlan.half)."""
    if isinstance(op, FloatOperand):
        return {op.dtype} & set(HALF_TYPES)
    q = op.quant
    if q.granularity not in ("per_tensor", "per_channel") or q.scale != "float32" \
            or q.calibrate == "minmax" or q.bits > 8:
        # (minmax zero points are not clamped: code - zero is unbounded for data of one sign)
        return set()
    return set(HALF_TYPES)  # codes of at most 8 bits; e*m* element values


def m_range(M) -> tuple[int, int]:
    """M as an int, a (lo, hi) pair, a range or 'lo..hi' -> (lo, hi) with 1 <= lo <= hi."""
    if isinstance(M, str):
        lo, sep, hi = M.partition("..")
        try:
            pair = (int(lo), int(hi)) if sep else (int(M), int(M))
        except ValueError:
            raise LrqcError(f"M: expected an integer or lo..hi, got {M!r}") from None
    elif isinstance(M, range):
        if M.step != 1 or not M:
            raise LrqcError(f"M: expected a non-empty range with step 1, got {M!r}")
        pair = (M.start, M.stop - 1)
    elif isinstance(M, tuple) and len(M) == 2:
        pair = (M[0], M[1])
    else:
        pair = (M, M)
    pair = tuple(int(v) if isinstance(v, numbers.Integral) and not isinstance(v, bool) else v
                 for v in pair)  # numpy integers too
    lo, hi = pair
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in pair) or not 1 <= lo <= hi:
        raise LrqcError(f"M: expected positive integers with lo <= hi, got {M!r}")
    return lo, hi


def m_buckets(lo: int, hi: int) -> tuple[int, ...]:
    """Compiled row counts for M in lo..hi: powers of two from 4 (the row tile) that are >= lo
    and < hi, then hi. A call with m rows runs in the smallest bucket >= m."""
    out, b = [], 4
    while b < hi:
        if b >= lo:
            out.append(b)
        b *= 2
    return tuple(out) + (hi,)


MX_ELEMENTS = ("int8", "e2m1", "e2m3")  # element values times 2^f fit int8 codes


def code_limit(q) -> int:
    """Largest |integer code| the kernels see for quantizer q."""
    if q.granularity == "per_block" or not q.is_int:
        from ..reference.minifloat import ELEM_MAX, frac_bits

        return int(ELEM_MAX[q.fmt] * 2 ** frac_bits(q.fmt))
    return max(map(abs, int_range(q)))


def _integer_problem(q, role: str) -> str | None:
    """Why quantizer q cannot run on the integer units (codes must fit a byte), or None."""
    if q.granularity == "per_block" and q.fmt not in MX_ELEMENTS:
        return (f"{role}: {quant_text(q)}: MX elements {q.fmt} do not fit int8 codes (the "
                f"integer kernels take {', '.join(MX_ELEMENTS)})")
    if not q.is_int and q.granularity != "per_block" and q.fmt not in MX_ELEMENTS:
        return f"{role}: {quant_text(q)}: {q.fmt} codes (value x 2^f) do not fit int8"
    if q.bits == 1 and q.signed and q.scale != "float32":
        return f"{role}: int1 with two-level scales"
    return None


def make_plan(s: Scheme, m: int, n: int, k: int, mr: int = 4) -> KernelPlan:
    notes = tuple(bind_dims(s, m, n, k))
    if s.product is not None or isinstance(s.a, LplrOperand) or isinstance(s.b, LplrOperand):
        raise UnsupportedScheme(f"scheme '{s.name}': LPLR and LRAMM run as chains of kernels "
                                "(backend.chain), not as one plan")
    try:
        terms = {r: split_terms(s.operand(r)) for r in ("a", "b")}
    except ValueError as exc:
        raise UnsupportedScheme(f"scheme '{s.name}': {exc}") from None
    has_terms = any(t or low for t, low in terms.values())
    if isinstance(s.a, QuantOperand) and s.a.quant.round == "stochastic" \
            and (s.a.quant.granularity == "per_block" or has_terms):
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
    if not problem and (qa.granularity == "per_block") != (qb.granularity == "per_block"):
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
        note = f"integer path unavailable ({problem}): float32 GEMM fallback, not bit-exact"
        return _float_plan(s, m, n, k, mp, np_, notes + (note,))
    if chunked:
        notes += ((f"accumulate: {s.accumulate}: K={k} exceeds what one int32 sum holds "
                   f"exactly for these formats; int32 partial sums over {groups} chunks of "
                   f"{v} are added in int64 (the portable schedule)"),)
    plan = KernelPlan(s, m, n, k, mp, np_, kp, groups, v, offset, notes, chunked=chunked)
    return _integer_terms(plan, terms) if has_terms else plan


def a_offset(q) -> int:
    """Added to A-side codes so they are unsigned bytes (128 for signed formats)."""
    return 128 if q.signed or not q.is_int else 0


def int32_chunk(qa, qb) -> int:
    """The longest K (a multiple of 4) whose int32 sums of A's stored codes times B's codes
    cannot overflow: the kernels' GEMMs sum at most this many products in int32."""
    span = code_limit(qa) + a_offset(qa)
    return (2**31 - 1) // (span * centered_limit(qb)) // 4 * 4


def _check_overflow(s, qa, qb, width: int, k: int) -> None:
    """UnsupportedScheme when int32 sums of `width` products could overflow: accumulate
    (int32 or int64) promises exact sums. A single-group product past that width is cut into
    K chunks by make_plan instead."""
    if width > int32_chunk(qa, qb):
        raise UnsupportedScheme(f"scheme '{s.name}': K={k}: sums of {width} products (one "
                                "scale group, or a residual term) can exceed int32, and only "
                                "single-group products without residual terms are compiled "
                                "as int32 chunks added in int64")


def _integer_terms(p: KernelPlan, terms: dict) -> KernelPlan:
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
            raise UnsupportedScheme(f"scheme '{s.name}': sparse term of {'b' if sp.side == 'a' else 'a'}: {why}")
    if segs and p.b_zero:
        raise UnsupportedScheme(f"scheme '{s.name}': dense terms with weights that have zero "
                                "points (unsigned or min-max) are not compiled")
    quants = [q for sg in segs for q in (sg.qa, sg.qb)] or [p.qa, p.qb]
    quants += [sp.q for sp in prods]
    vs = sorted({q.vector for q in quants if q.grouped})
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
                   "call for A (kernel.last_notes)"),)
    return replace(p, kp=nseg * kq, groups=nseg * gq, vector=v, segments=segs, kseg=kq,
                   sparse=prods, lowrank_a=terms["a"][1], lowrank_b=terms["b"][1], notes=notes)


def zero_point_problem(p: KernelPlan, zc, zb) -> str | None:
    """Why the integer sums of this call could overflow int32, or None. Min-max zero points
    are not clamped: data of one sign far from zero (1e4 + U[0, 1) in uint8) puts them far
    outside the codes, and then code - zero (A's zc: zero + storage offset, per row and group;
    B's zb: zero - storage offset, per group and column) no longer has the bounds the plan
    checked. Every product sum of a group of V must stay below 2^31: the centered one, the
    zero-point corrections zc * colsum(B) and rowsum(A - zA) * zb."""
    import numpy as np

    top = 2**31 - 1
    v = p.vector
    for s in range(p.nseg):
        qa = p.segments[s].qa if p.segments else p.qa
        qb = p.segments[s].qb if p.segments else p.qb
        za = np.asarray(zc[:, s * p.gq:(s + 1) * p.gq], np.int64)
        dev_a, zc_max = centered_limit(qa), int(np.abs(za).max())
        if qa.is_int and qa.calibrate == "minmax":
            dev_a = max(dev_a, _deviation(qa, za - a_offset(qa)))
        dev_b, zb_max = centered_limit(qb), 0
        if p.b_zero and zb is not None:
            zb_n = np.asarray(zb[:, : p.n], np.int64)
            dev_b, zb_max = max(dev_b, _deviation(qb, zb_n + p.b_offset)), int(np.abs(zb_n).max())
        if max(dev_a * dev_b, zc_max * 128, dev_a * zb_max) * v > top:
            return (f"min-max zero points far outside the codes (data of one sign far from "
                    f"zero: A's codes lie up to {dev_a} from their zero point, B's up to "
                    f"{dev_b}): the integer sums over groups of {v} would overflow int32; use "
                    "calibrate=maxabs or a signed format, center the data, or shorter "
                    "per_vector groups")
    return None


def _deviation(q, z) -> int:
    """The largest |code - z| of quantizer q over zero points z."""
    lo, hi = int_range(q)
    return int(max(abs(lo - z.min()), abs(hi - z.min()), abs(lo - z.max()), abs(hi - z.max())))


def centered_limit(q) -> int:
    """Largest |code - zero point| of integer quantizer q."""
    return code_limit(q) if q.signed and q.calibrate == "maxabs" else 2 ** q.bits


def _sparse_problem(sp) -> str | None:
    q = sp.q
    if q.granularity == "per_block" or not q.is_int:
        return f"{quant_text(q)}: sparse terms take integer formats"
    if q.round == "stochastic":
        return "stochastic rounding of per-call sparse operands is not compiled"
    if sp.side == "a" and (q.calibrate == "minmax" or not q.signed):
        return "B-side residual codes with zero points are not compiled"
    return None


def _segment_problem(sg) -> str | None:
    if sg.qb.calibrate == "minmax" or not sg.qb.signed:
        return "B-side residual codes with zero points are not compiled"
    for q in (sg.qa, sg.qb):
        if q.granularity == "per_block" or not q.is_int:
            return f"{quant_text(q)}: residual segments take integer formats"
        if q.round == "stochastic" and q is sg.qa:
            return "stochastic rounding of per-call residuals is not compiled"
    return None


def _float_terms(p: KernelPlan, terms: dict) -> KernelPlan:
    """Products with a float operand: B's lowrank term as the epilogue, B's dense terms folded
    into the float weights (exact in float). Anything else is not compiled."""
    (a_t, a_low), (b_t, b_low) = terms["a"], terms["b"]
    if a_t or a_low is not None or any(not isinstance(t, Dense) for t in b_t):
        raise UnsupportedScheme(f"scheme '{p.scheme.name}': with a float operand, only lowrank "
                                "and dense terms on the weights (b) are compiled")
    kq = -(-p.k // 16) * 16 if b_low is not None else p.kp
    return replace(p, lowrank_b=b_low, dense_b=tuple(b_t), kp=kq, vector=kq)


def _float_plan(s: Scheme, m, n, k, mp, np_, notes) -> KernelPlan:
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
