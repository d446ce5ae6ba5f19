"""to_te for reading densely packed weight codes (lrqc/plan/packing.py): the placeholder of
the packed stream and the expression of one code, used by the integer GEMM (te.gemm's
b_unpack block, unpacked per tile by the schedule) and by A's low-rank term read from B's
codes (te.compensated.lowrank_w)."""

from __future__ import annotations

from ...plan import packing
from ...plan.model import KernelPlan
from ..compat import PrimExpr, te, tir


def packed_input(p: KernelPlan) -> te.Tensor:
    """The packed codes Bp[Np/16, ceil(Kp/16), 32·w] uint8: per 16-column panel a stream of
    64-code VNNI blocks (4 k x 16 columns: the integer GEMM), or of 16-code rows (one k, 16
    columns: the float GEMM's panels of weight-only products); either way ceil(Kp/16)
    groups of 256 codes."""
    return te.placeholder((p.np_ // 16, -(-p.kp // 16), packing.group_bytes(p.pack_bits)),
                          "uint8", name="Bp")


def code(b: te.Tensor, w: int, n: PrimExpr, row: PrimExpr, e: PrimExpr, length: int
         ) -> PrimExpr:
    """Code `e` (< length) of block `row` of panel n of the packed stream b (stream position
    length·row + e), as int8. length divides packing.GROUP (64 for VNNI blocks): every index
    is written so that `length` consecutive e read consecutive bytes with one shift each."""
    per = packing.GROUP // length  # blocks per group
    g, t = row // per, row % per
    u = None
    for p, offset, shift in packing.planes(w):
        nbytes = 32 * p
        if nbytes >= length:  # a plane byte row holds whole blocks: byte of block t % r
            r = nbytes // length
            byte, slot = offset + (t % r) * length + e, t // r
        else:  # one block spans several plane rows
            q = length // nbytes
            byte, slot = offset + e % nbytes, t * q + e // nbytes
        field = (b[n, g, byte] >> (slot * p).astype("uint8")) & tir.const(2**p - 1, "uint8")
        if shift:
            field = field << tir.const(shift, "uint8")
        u = field if u is None else u | field
    half = tir.const(2 ** (w - 1), "uint8")
    return (u ^ half).astype("int8") - half.astype("int8")
