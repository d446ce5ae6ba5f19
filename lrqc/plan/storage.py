"""storage(): what pack() keeps of the static operand for a plan, in bytes, from the plan's
shapes alone (the manifest's `weights` entry, `lrqc build`'s report, bench/cpu.py). numpy
free; no TVM."""

from __future__ import annotations

from typing import Any

from . import packing, ranges
from . import signature as sig
from .model import KernelPlan


def storage(p: KernelPlan) -> dict[str, Any]:
    """What pack() keeps of B for plan p, from its shapes alone: bits per stored code
    (`code_bits`: 8 for int8 codes, w < 8 packed densely, 16 / 32 for a float path's values),
    bytes of the codes (`codes`), of their scales, column sums and zero points (and two-level
    scales' integers where the GEMM reads them: signature.scale_pairs) (`scales`), of
    the low-rank factors and bias (`other`; sparse products' arrays depend on the data and are
    left out), and `bytes_per_weight`: all of them over N x K."""
    g, n16 = p.groups, p.np_ // 16
    if p.float_path and not p.float_codes:
        bits = 16 if p.half else 32
        codes, scales = p.np_ * p.kp * bits // 8, (p.np_ * 4 if p.half else 0)
    elif p.float_codes:
        bits = p.pack_bits
        codes = n16 * -(-p.kp // 16) * packing.group_bytes(bits) if p.packed else p.np_ * p.kp
        scales = -(-p.k // p.b_group) * p.np_ * 4 * (2 if p.float_zero else 1)
    else:
        bits = p.pack_bits
        codes = (n16 * -(-p.kp // 16) * packing.group_bytes(bits) if p.packed
                 else p.np_ * p.kp)
        scales = g * p.np_ * 4 * (3 if p.b_zero else 2)
        if sig.scale_pairs(p):  # two-level scales' integers and column sums (a byte or int16
            #   each: ranges.ScalePairs.narrow) and column scales
            sqb, cqb = ranges.pairs_of(p).narrow
            scales += g * p.np_ * (_size(sqb) + (_size(cqb) if sig.zero_pairs(p) else 0)) \
                + p.np_ * 4
    other = p.np_ * 4 + p.rank_b * (p.kq + p.np_) * 4
    if p.rank_a and not sig.w_from_codes(p):
        other += p.k * p.n * 4  # B itself in float32 for A's lowrank term (other=exact): at
        #   most (on CPUs, B's values all bfloat16's or float16's: 2 bytes each)
    total = codes + scales + other
    return {"code_bits": bits, "codes": codes, "scales": scales, "other": other,
            "bytes_per_weight": round(total / (p.n * p.k), 4)}


def _size(dtype: str) -> int:
    """Bytes of one integer of the two-level scales' arrays (uint8, int8 or int16)."""
    return 2 if dtype == "int16" else 1
