"""KernelPlan: what the code generator needs to know about a base product at concrete sizes
(padded dims, groups, zero points), and which schemes it supports yet. No TVM here."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import LrqcError
from ..frontend.bind import bind_dims
from ..frontend.model import FloatOperand, LplrOperand, QuantOperand, Scheme
from ..frontend.unparse import quant_text
from ..reference.quant import int_range


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
        q = self.qb
        return (not self.float_path and q.is_int and q.granularity != "per_block"
                and q.bits <= 4)

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
        out = np.zeros((self.m, self.kp))
        out[:, :kref] = np.random.default_rng(self.qa.seed).random((self.m, kref))
        return out

    @property
    def mx(self) -> bool:
        return self.qa is not None and self.qa.granularity == "per_block"




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
        raise UnsupportedScheme(f"scheme '{s.name}': LPLR and LRAMM products are not compiled "
                                "yet; lrqc.reference.matmul (and `lrqc eval`) evaluates them")
    if any(isinstance(op, QuantOperand) and op.residuals for op in (s.a, s.b)):
        raise UnsupportedScheme(f"scheme '{s.name}': residual terms are not compiled yet; "
                                "lrqc.reference.matmul (and `lrqc eval`) evaluates them")
    if isinstance(s.a, QuantOperand) and s.a.quant.round == "stochastic" \
            and s.a.quant.granularity == "per_block":
        raise UnsupportedScheme("a: stochastic rounding of MX activations is not compiled")
    mp = -(-m // mr) * mr
    np_ = -(-n // 16) * 16
    if isinstance(s.a, FloatOperand) or isinstance(s.b, FloatOperand):
        return _float_plan(s, m, n, k, mp, np_, notes)
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
    if v:
        kp = -(-k // v) * v
        groups = kp // v
    else:
        kp, groups = -(-k // 4) * 4, 1
        v = kp
    offset = 128 if qa.signed or not qa.is_int else 0
    if not problem:
        span = code_limit(qa) + offset
        limit_b = code_limit(qb) if qb.signed and qb.calibrate == "maxabs" else 2 ** qb.bits
        if s.accumulate == "int32" and span * limit_b * kp >= 2**31:
            problem = f"K={k} can overflow the int32 accumulator with these formats"
    if problem:
        note = f"integer path unavailable ({problem}): float32 GEMM fallback, not bit-exact"
        return _float_plan(s, m, n, k, mp, np_, notes + (note,))
    return KernelPlan(s, m, n, k, mp, np_, kp, groups, v, offset, notes)


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
