"""M buckets: the row counts compiled for an M range, and the plans of every bucket (with the
transposed plan of `static: a` schemes). No TVM here."""

from __future__ import annotations

import numbers
from dataclasses import replace
from typing import Any, TypeGuard

from ..errors import LrqcError, UnsupportedScheme
from ..frontend.bind import check_dim
from ..frontend.model import (
    Dense,
    Granularity,
    LowRank,
    LplrOperand,
    Quant,
    QuantOperand,
    Scheme,
    Sparse,
)
from .model import KernelPlan
from .segments import swap_roles
from .support import make_plan


def m_range(M: object) -> tuple[int, int]:
    """M as an int, a (lo, hi) pair, a range or 'lo..hi' -> (lo, hi) with 1 <= lo <= hi
    (LrqcError for anything else)."""
    pair: tuple[object, object]
    if isinstance(M, str):
        first, sep, last = M.partition("..")
        try:
            pair = (int(first), int(last)) if sep else (int(M), int(M))
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
    lo, hi = (plain(v) for v in pair)  # numpy integers too
    if not (_is_int(lo) and _is_int(hi)) or not 1 <= lo <= hi:
        raise LrqcError(f"M: expected positive integers with lo <= hi, got {M!r}")
    return lo, hi


def plain(v: Any) -> Any:
    """An integer size as a Python int (numpy's fixed-width integers would overflow in the
    arithmetic on it), anything else unchanged (for the checks that refuse it)."""
    return int(v) if isinstance(v, numbers.Integral) and not isinstance(v, bool) else v


def _is_int(v: object) -> TypeGuard[int]:
    return isinstance(v, int) and not isinstance(v, bool)


def m_buckets(lo: int, hi: int) -> tuple[int, ...]:
    """Compiled row counts for M in lo..hi: the sizes 4, 8, .., 64 (powers of two from the row
    tile), then 96, 128, 192, 256, 384, .. (powers of two and 1.5 times them) that are >= lo
    and < hi, then hi. A call with m rows runs in the smallest bucket >= m, so above 64 rows
    at most a third of a bucket's rows are padding (a power-of-two ladder: up to a half)."""
    out, b = [], 4
    while b < hi:
        if b >= lo:
            out.append(b)
        b = b * 2 if b < 64 else b * 4 // 3 if b & (b - 1) else b * 3 // 2
    return tuple(out) + (hi,)




def bucket_plans(scheme: Scheme, M: object, N: int, K: int) -> tuple[KernelPlan, ...]:
    """One KernelPlan per compiled row count for M (an int, (lo, hi), range or 'lo..hi').
    static: a compiles the transposed product Cᵀ = Bᵀ Aᵀ, in which B is the per-call operand
    (its quantizer applies to Bᵀ's rows = B's columns, exactly as for role b) and A the static
    one: the plans are those of the transposed scheme, with M and N exchanged."""
    lo, hi = m_range(M)
    if scheme.static == "a":
        if lo != hi:
            raise UnsupportedScheme("static: a: M is the static operand's row count; a range "
                                    "lo..hi applies to the per-call operand's rows only")
        if any(isinstance(t, LowRank) for role in ("a", "b")
               for t in getattr(scheme.operand(role), "residuals", ())):
            raise UnsupportedScheme(
                f"scheme '{scheme.name}': static: a with lowrank terms is not compiled: the "
                "transposed kernel would multiply A's term by B's codes instead of B (and B's "
                "by A instead of A's codes), and draw its random test vectors for the "
                "transposed residuals; use static: b")
        t = replace(scheme, a=scheme.b, b=scheme.a, static="b")
        check_dim("N", N)  # named as the user names them: the plan's M is N
        check_dim("K", K)
        try:
            return (make_plan(t, N, hi, K),)
        except UnsupportedScheme as exc:  # named as the user names the operands
            raise UnsupportedScheme(swap_roles(str(exc))) from None
    # buckets of fewer rows than A's lowrank terms factor at would serve no call (a call of
    # m < rank rows is refused by the kernel): the first bucket holds at least that many
    least = first_rows(scheme, lo, hi)
    plans = tuple(make_plan(scheme, m, N, K) for m in m_buckets(least, hi))
    if least > lo:  # said where the kernel is built, not first at a call
        fewer = f"{lo} row" + ("" if lo == 1 else "s") if least - 1 == lo else \
            f"{lo} to {least - 1} rows"
        note = (f"M={lo}..{hi}: a call needs at least {least} rows (A's rank-{least} "
                f"factorization); calls of {fewer} are refused")
        plans = tuple(replace(p, notes=p.notes + (note,)) for p in plans)
    if lo < hi and any(q.bits == 1 and q.signed and not q.is_fixed
                       and q.granularity == Granularity.PER_TENSOR
                       for q in per_call_quants(scheme)):
        raise UnsupportedScheme(f"scheme '{scheme.name}': int1 per_tensor codes of A scale by "
                                "mean |A| over all of A's rows, which an M range's row padding "
                                "would change: compile it for one M, or use per_channel")
    return plans


def chain_rows(scheme: Scheme, M: object) -> int | tuple[int, int]:
    """The rows a chain's products are built for: M, a range's low end raised to the fewest
    rows a call can have (least_rows: a rank-r factorization of A's rows starts at r), as an
    int where that leaves one size."""
    lo, hi = m_range(M)
    lo = first_rows(scheme, lo, hi)
    return lo if lo == hi else (lo, hi)


def first_rows(scheme: Scheme, lo: int, hi: int) -> int:
    """The fewest rows of a range lo..hi that a call can have: lo raised to least_rows."""
    return max(lo, min(least_rows(scheme), hi))


def least_rows(scheme: Scheme) -> int:
    """The fewest rows a call can have: a rank-r factorization of A's rows (a lowrank term on
    A, LPLR activations, LRAMM's product) needs at least r of them (1 without one)."""
    a = scheme.a
    ranks = [t.rank for t in a.residuals if isinstance(t, LowRank)] \
        if isinstance(a, QuantOperand) else []
    if isinstance(a, LplrOperand):
        ranks.append(a.rank)
    if scheme.product is not None:
        ranks.append(scheme.product.rank)
    return max([1, *ranks])


def per_call_quants(scheme: Scheme) -> list[Quant]:
    """The quantizers applied to A on every call: its own, its residual terms', and those of
    B's sparse terms (which requantize a thresholded copy of A)."""
    out: list[Quant] = []
    for role in ("a", "b"):
        op = scheme.operand(role)
        if not isinstance(op, QuantOperand):
            continue
        if role == "a":
            out.append(op.quant)
        out += [t.quant for t in op.residuals if isinstance(t, (Dense, Sparse))
                and t.quant is not None and (role == "a" or isinstance(t, Sparse))]
    return out
