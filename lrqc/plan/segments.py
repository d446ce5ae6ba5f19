"""Residual terms as the code generator sees them (no TVM here).

Dense terms become extra K segments of the one integer GEMM: each segment pairs a code matrix
of A's side with one of B's side, with per-group scales, so concatenating them along K is exact
(docs/numerics.md, section 3):

    segment            A-side codes                    B-side codes
    base               Q(A)                            Q(B)
    a dense  term n    Q_n(R_A^(n))                    Q(B)
    b dense  term n    Q(A)                            Q_n(R_B^(n))

Sparse terms are products added to C after the GEMM (te/sparse.py), one per term, each
compiled twice: as a sparse product (zero codes skipped) and, where its codes fit the integer
GEMM (5- to 8-bit integers, no zero points), densely with the GEMM's machinery (sparse{j}_dense,
zeros multiplied). Both give the same integer sums; the faster one runs (DENSE_ABOVE):

    product            sparse operand                   dense operand
    b sparse term n    Q_n(A_s)   per call, zero-skip   Q_n(R_B^(n))  static, K x N codes
    a sparse term n    Q_n(B_s)   static, CSR           Q_n(R_A^(n))  per call, K x M codes

(A_s / B_s: the thresholded copy, or the whole operand above max_density.)

A lowrank term (the last on its operand) is not a segment: it becomes a rank-r epilogue
C += U W, with U = L_A, W = F_Aᵀ B for A's and U = A' L_B, W = F_Bᵀ for B's."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..frontend.model import Dense, LowRank, Operand, Quant, QuantOperand, Scheme, Sparse

# The density of a sparse term's sparse operand above which its dense formulation runs, per
# product side: where a sparse product costs as much as the dense one (a whole K segment of the
# integer GEMM). Same-run A/Bs on this machine (2 shared Zen 3 cores, AVX2, int8 codes, M x N x K
# = 256 x 4096 x 4096, best of 5-6, 2026-12-02), sparse / dense ms:
#   "a" (B's terms: A's copy, per call; sparse_a): 29 / 124 at 5 %, 62 / 141 at 15 %, 91-95 /
#       115-121 at 35 %, 113 / 111 at 45 %, 124 / 109 at 60 %, 205 / 113 at 90 %;
#   "b" (A's terms: B's copy, at pack; sparse_b): 18 / 114 at 5 %, 50 / 110 at 15 %, 76 / 130 at
#       20 %, 106 / 133 at 25 %, 123-130 / 97-116 at 35 %, 139 / 106 at 45 %, 198 / 111 at 60 %.
# The same shape on a 2-core CPU with AMX (2026-12-03), where the dense formulation runs on
# AMX tiles (2.4-2.7 ms at every density), sparse / dense ms:
#   "a": 2.3 / 2.4 at 1 %, 4.2 / 2.5 at 2 %, 7.5 / 2.7 at 5 %, 16 / 2.5 at 20 %;
#   "b": 1.1 / 3.0 at 1 %, 1.9 / 3.1 at 2 %, 4.2 / 2.9 at 5 %, 16 / 2.8 at 20 %.
# (There, with the VNNI rules instead, the dense formulation took 34-51 ms and the sparse one
# 27 ms at 35 %: the crossovers above hold for dense formulations on AVX2 or VNNI.)
# Read at each call (side a) and at pack (side b): tests set them to 0 or 1.
DENSE_ABOVE = {"a": 0.45, "b": 0.30}
DENSE_ABOVE_AMX = {"a": 0.01, "b": 0.035}  # dense formulations on AMX tiles


def crossover(side: str, amx: bool = False) -> float:
    """The density above which side's dense formulation runs (amx: it runs on AMX tiles)."""
    return (DENSE_ABOVE_AMX if amx else DENSE_ABOVE)[side]


def dense_wins(density: float, side: str, amx: bool = False) -> bool:
    """Whether a sparse operand of this density runs in the dense formulation (side: the
    product's, SparseProduct.side; amx: that formulation runs on AMX tiles)."""
    return density > crossover(side, amx)


def formulation_note(side: str, n: int, density: float, dense: bool | None,
                     amx: bool = False) -> str:
    """What last_notes says of sparse term n (side a: B's term, A's copy per call; side b:
    A's term, B's copy at pack); dense None: no dense formulation compiled for it."""
    what = f"sparse: {'B' if side == 'a' else 'A'}'s term {n} ran "
    if dense is None:
        return what + ("sparse (no dense formulation compiled: its codes do not fit the "
                       "integer GEMM, or the target is a GPU)")
    cross = crossover(side, amx)
    rel = ">" if density > cross else "<="
    return (what + ("dense" if dense else "sparse") + f": {'A' if side == 'a' else 'B'}'s copy"
            f" density {density:.3f} {rel} crossover {cross:g}{' (AMX)' if amx else ''}"
            + ("" if side == "a" else " (chosen at pack)"))


def swap_operands(note: str) -> str:
    """A note of the transposed kernel (static: a computes Bᵀ Aᵀ) in the user's names: its A
    is the user's B and the other way round."""
    return re.sub(r"\b[AB]\b", lambda m: "B" if m.group(0) == "A" else "A", note)


@dataclass(frozen=True)
class Segment:
    """One K segment: sources "base", "res:n" (the operand's residual quantized by its term n)
    or "sparse:n" (the thresholded copy that the other operand's term n asks for)."""

    a: str
    b: str
    qa: Quant
    qb: Quant


def split_terms(op: Operand) -> tuple[tuple[Dense | Sparse, ...], LowRank | None]:
    """(dense and sparse terms, the final lowrank term or None) of a quantized operand.
    Raises ValueError for orders the code generator does not compile."""
    if not isinstance(op, QuantOperand):
        return (), None
    terms: list[Dense | Sparse] = []
    low: LowRank | None = None
    for t in op.residuals:
        if low is not None:
            raise ValueError("a residual term after lowrank(...) (the low-rank factors are "
                             "computed per call, so no term may follow them)")
        if isinstance(t, LowRank):
            low = t
        else:
            terms.append(t)
    return tuple(terms), low


@dataclass(frozen=True)
class SparseProduct:
    """deq(Q(X_s) · Q(R)) of one sparse term. side "a": the term is B's (number n): the sparse
    operand is A's thresholded copy (per call), the dense one B's residual (static); side "b":
    the term is A's: B's copy (static, CSR) times A's residual (per call)."""

    side: str
    n: int
    term: Sparse

    @property
    def q(self) -> Quant:
        """The term's quantizer (both the copy and the residual use it)."""
        q = self.term.quant
        if q is None:  # elaborate gives every sparse term one (the operand's format by default)
            raise TypeError(f"sparse term without a quantizer: {self.term!r}")
        return q


def segments_of(s: Scheme) -> tuple[Segment, ...]:
    """Segments of the integer GEMM, base first; () when there are no dense terms."""
    a_terms, _ = split_terms(s.a)
    b_terms, _ = split_terms(s.b)
    if not any(isinstance(t, Dense) for t in a_terms + b_terms):
        return ()
    if not (isinstance(s.a, QuantOperand) and isinstance(s.b, QuantOperand)):
        raise TypeError(f"scheme '{s.name}': dense terms as K segments need two quantized "
                        "operands")
    qa, qb = s.a.quant, s.b.quant
    segs = [Segment("base", "base", qa, qb)]
    segs += [Segment(f"res:{n}", "base", t.quant, qb)
             for n, t in enumerate(a_terms) if isinstance(t, Dense)]
    segs += [Segment("base", f"res:{n}", qa, t.quant)
             for n, t in enumerate(b_terms) if isinstance(t, Dense)]
    return tuple(segs)


def sparse_products_of(s: Scheme) -> tuple[SparseProduct, ...]:
    """The sparse products, B's terms (side "a") first."""
    out = [SparseProduct("a", n, t) for n, t in enumerate(split_terms(s.b)[0])
           if isinstance(t, Sparse)]
    return tuple(out + [SparseProduct("b", n, t) for n, t in enumerate(split_terms(s.a)[0])
                        if isinstance(t, Sparse)])
