"""Residual terms as the code generator sees them (no TVM here).

Dense and sparse terms become extra K segments of the one integer GEMM: each segment pairs a
code matrix of A's side with one of B's side, with per-group scales, so concatenating them
along K is exact (methods note section 3):

    segment            A-side codes                    B-side codes
    base               Q(A)                            Q(B)
    a dense  term n    Q_n(R_A^(n))                    Q(B)
    a sparse term n    Q_n(R_A^(n))                    Q_n(B_s)   (B_s, or B above max_density)
    b dense  term n    Q(A)                            Q_n(R_B^(n))
    b sparse term n    Q_n(A_s)                        Q_n(R_B^(n))

A lowrank term (the last on its operand) is not a segment: it becomes a rank-r epilogue
C += U W, with U = L_A, W = F_Aᵀ B for A's and U = A' L_B, W = F_Bᵀ for B's."""

from __future__ import annotations

from dataclasses import dataclass

from ..frontend.model import Dense, LowRank, QuantOperand, Scheme, Sparse


@dataclass(frozen=True)
class Segment:
    """One K segment: sources "base", "res:n" (the operand's residual quantized by its term n)
    or "sparse:n" (the thresholded copy that the other operand's term n asks for)."""

    a: str
    b: str
    qa: object
    qb: object


def split_terms(op) -> tuple[tuple, LowRank | None]:
    """(dense and sparse terms, the final lowrank term or None) of a quantized operand.
    Raises ValueError for orders the code generator does not compile."""
    if not isinstance(op, QuantOperand):
        return (), None
    terms, low = [], None
    for t in op.residuals:
        if low is not None:
            raise ValueError("a residual term after lowrank(...) (the low-rank factors are "
                             "computed per call, so no term may follow them)")
        if isinstance(t, LowRank):
            low = t
        else:
            terms.append(t)
    return tuple(terms), low


def segments_of(s: Scheme) -> tuple[Segment, ...]:
    """Segments of the integer GEMM, base first; () when there are no dense/sparse terms."""
    a_terms, _ = split_terms(s.a)
    b_terms, _ = split_terms(s.b)
    if not a_terms and not b_terms:
        return ()
    qa, qb = s.a.quant, s.b.quant
    segs = [Segment("base", "base", qa, qb)]
    for n, t in enumerate(a_terms):
        segs.append(Segment(f"res:{n}", "base" if isinstance(t, Dense) else f"sparse:{n}",
                            t.quant, qb if isinstance(t, Dense) else t.quant))
    for n, t in enumerate(b_terms):
        segs.append(Segment("base" if isinstance(t, Dense) else f"sparse:{n}", f"res:{n}",
                            qa if isinstance(t, Dense) else t.quant, t.quant))
    return tuple(segs)


def sparse_terms(op) -> tuple[Sparse, ...]:
    terms, _ = split_terms(op)
    return tuple(t for t in terms if isinstance(t, Sparse))
