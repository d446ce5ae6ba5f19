"""KernelPlan: what the code generator needs to know about a base product at concrete sizes
(padded dims, groups, zero points), and which schemes it supports yet. No TVM here."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import LrqcError
from ..frontend.bind import bind_dims
from ..frontend.model import QuantOperand, Scheme
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

    @property
    def nibbles(self) -> bool:
        """Weights of 2..4 bits are stored two per byte (split-half nibble order)."""
        return self.qb.bits <= 4

    @property
    def qa(self):
        return self.scheme.a.quant

    @property
    def qb(self):
        return self.scheme.b.quant


def make_plan(s: Scheme, m: int, n: int, k: int, mr: int = 4) -> KernelPlan:
    notes = tuple(bind_dims(s, m, n, k))
    if s.product is not None or not (isinstance(s.a, QuantOperand) and isinstance(s.b, QuantOperand)):
        raise UnsupportedScheme(f"scheme '{s.name}': the code generator handles quantized a and b "
                                "operands so far (float, LPLR and LRAMM operands come next)")
    if s.a.residuals or s.b.residuals:
        raise UnsupportedScheme(f"scheme '{s.name}': residual terms are not compiled yet "
                                "(issue 4); lrqc.reference.matmul evaluates them")
    if s.static != "b":
        raise UnsupportedScheme(f"scheme '{s.name}': static: {s.static} is not compiled yet")
    qa, qb = s.a.quant, s.b.quant
    for q, role in ((qa, "a"), (qb, "b")):
        if not q.is_int:
            raise UnsupportedScheme(f"{role}: {quant_text(q)}: e*m* element formats are not "
                                    "compiled yet")
        if q.bits == 1 and q.signed:
            raise UnsupportedScheme(f"{role}: int1 (sign binarization) is not compiled yet")
    if qa.round == "stochastic":
        raise UnsupportedScheme("a: stochastic rounding of the per-call operand is not compiled")
    if not qb.signed or qb.calibrate != "maxabs":
        raise UnsupportedScheme(f"b: {quant_text(qb)}: weights must be signed and symmetric "
                                "(calibrate=maxabs) for the integer kernels so far")
    if qa.signed and qa.calibrate == "minmax":
        raise UnsupportedScheme("a: signed min-max activations are not compiled; use uintB")
    if qa.bits > 8 or qb.bits > 8:
        raise UnsupportedScheme("more than 8 bits")  # pragma: no cover - the language forbids it
    grouped = [q.vector for q in (qa, qb) if q.grouped]
    if len(set(grouped)) > 1:
        raise UnsupportedScheme(f"per_vector sizes differ ({grouped[0]} vs {grouped[1]})")
    v = grouped[0] if grouped else 0
    if v and v % 4:
        raise UnsupportedScheme(f"per_vector({v}): V must be a multiple of 4 for the VNNI layout")
    if v:
        kp = -(-k // v) * v
        groups = kp // v
    else:
        kp, groups = -(-k // 4) * 4, 1
        v = kp
    mp = -(-m // mr) * mr
    np_ = -(-n // 16) * 16
    offset = 128 if qa.signed else 0
    span = max(map(abs, int_range(qa))) + offset
    if s.accumulate == "int32" and span * max(map(abs, int_range(qb))) * kp >= 2**31:
        raise UnsupportedScheme(f"K={k} can overflow the int32 accumulator with these formats")
    return KernelPlan(s, m, n, k, mp, np_, kp, groups, v, offset, notes)
