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
# product side and per instruction that the dense formulation runs on (the schedule rule of its
# integer GEMM): where a sparse product costs as much as the dense one (a whole K segment of the
# integer GEMM). Same-run A/Bs at M x N x K = 256 x 4096 x 4096, int8 codes, medians of 5,
# sparse / dense ms ("a": B's terms, A's copy per call, sparse_a; "b": A's terms, B's copy at
# pack, sparse_b):
#   VNNI (x86_vnni; 2-core AMD Zen 4, 2026-12-04), the sparse products four nonzeros at a time
#   (te/sparse_quads.py: kind "vnni4"):
#     "a": 2.3 / 10.5 at 2 %, 3.1 / 10.4 at 5 %, 5.7 / 10.7 at 10 %, 8.5 / 10.5 at 20 %,
#       15.3 / 10.6 at 35 %;
#     "b": 4.6 / 10.9 at 5 %, 7.4 / 10.7 at 10 %, 13.0 / 14.1 at 15 %, 10.4 / 10.4 at 20 %;
#     later the same day, "a" with the next panel prefetched into L2:
#       7.5 / 10.3 at 20 %, 9.7 / 10.3 at 25 %, 12.4 / 10.4 at 30 %;
#     "b" with the codes of four entries serving the four tiles of rows of M = 256 at once:
#       6.4 / 10.8 at 10 %, 9.0 / 11.0 at 15 %, 11.8 / 10.8 at 20 %, 15.7 / 10.6 at 25 %
#       (pack decides with the largest bucket's rows: where they make fewer tiles a pass, the
#       sparse form is slower than measured here and 0.18 chooses it a little too long);
#   and in pairs (te/sparse.py, where the quads do not apply: kind "vnni"):
#     "a": 2.5 / 10.0 at 2 %, 4.5 / 10.3 at 5 %, 9.5 / 10.6 at 10 %, 15.7 / 10.3 at 20 %;
#     "b": 5.1 / 10.7 at 5 %, 8.9 / 10.8 at 10 %, 14.7 / 10.3 at 15 %;
#   AVX2 (x86_avx2, the same Zen 4 running kernels compiled for x86-avx2, 2026-12-04):
#     "a": 7.4 / 44 at 5 %, 20 / 45 at 20 %, 32 / 40 at 35 %, 36 / 40 at 45 %;
#     "b": 5.2 / 41 at 5 %, 21 / 40 at 20 %, 34 / 41 at 35 %, 44 / 40 at 45 %;
#   AMX (x86_amx; 2-core Xeon, 2026-12-03; the dense formulation 2.4-3.1 ms at every density):
#     "a": 2.3 / 2.4 at 1 %, 4.2 / 2.5 at 2 %, 7.5 / 2.7 at 5 %, 16 / 2.5 at 20 %;
#     "b": 1.1 / 3.0 at 1 %, 1.9 / 3.1 at 2 %, 4.2 / 2.9 at 5 %, 16 / 2.8 at 20 %;
#   "a" again once A's copy was listed 64 codes at a time (te/sparse_csr.py: masked), whole
#   calls with the formulation forced, interleaved in one process (2-core Zen 4, 2026-12-07;
#   sparse / dense ms, in brackets sparse with the copy listed code by code as before):
#     VNNI four at a time: 17.0 / 21.0 (17.5) at 20 %, 19.8 / 21.4 (20.9) and 20.5 / 21.7
#       (21.7) at 30 %, 21.1 / 21.5 (22.2) at 33 %, 21.7 / 21.7 (23.0) at 35 %, 21.1 / 21.1
#       (22.9) at 36 %, 23.0 / 21.2 (23.9) at 40 %;
#     VNNI in pairs (N = 4080): 21.4 / 23.3 (21.9) at 10 %, 27.9 / 24.1 (28.1) at 15 %;
#     AVX2: 77.6 / 87.9 (80.3) at 40 %, 87.2 / 91.5 (91.6) at 50 %, 89.1 / 85.9 (91.8) at 60 %;
#   AVX2 on an AVX2 CPU (2-core Zen 3, 2026-12-07), the dense formulation now on the signed
#   rule (vpsignb + vpmaddubsw, x86_avx2_signed), one term at a time, whole calls with the
#   formulation forced, medians of 5-7 interleaved calls, sparse / dense ms (the GEMM alone
#   about 44):
#     "a": 71.9 / 81.7 at 20 %, 70.0 / 79.5 at 25 %, 76.2 / 78.6 and 77.7 / 77.6 at 30 %,
#       82.5 / 78.1 at 35 %;
#     "b": 76.2 / 83.9 at 20 %, 80.2 / 77.0 at 25 %, 91.2 / 82.3 at 30 %, 103.5 / 77.2 at 40 %;
#   the same, later, with the sparse products four nonzeros at a time (te/sparse_quads.py's
#   AVX2 form, kind "avx2q"; max_density 0.9):
#     "a": 61.3 / 76.9 at 30 %, 65.3 / 76.3 at 40 %, 69.1 / 77.5 at 50 %, 77.4 / 86.1 at 60 %,
#       93.3 / 79.6 at 80 %;
#     "b": 60.0 / 76.6 at 20 %, 61.6 / 78.0 at 30 %, 66.5 / 84.7 at 35 %, 79.9 / 83.9 at 40 %,
#       76.5 / 80.4 at 45 %; another run 69.3 / 72.2 at 45 %, 68.5 / 68.7 at 55 %, 71.7 / 71.9
#       at 65 %.
# Other rules take the AVX2 table, measured with the dense formulation on the signed rule:
# AVX-VNNI's 256-bit form, whose dense formulation is faster (chosen later than it could be,
# never where it is slower), and the widened-bytes rule (weights with the code -128) and the
# portable one, whose dense formulations are slower (1.07-1.29x for widened bytes): for them the
# dense formulation may run a little below the density where it starts to win. On AMX the
# sparse products were measured in pairs; the quads that CPUs with AMX now run would move those
# crossovers up (not measured). Read at each call
# (side a) and at pack (side b, with the kind of the kernel's largest M bucket): tests set them.
DENSE_ABOVE = {"a": 0.3, "b": 0.22}
DENSE_ABOVE_VNNI = {"a": 0.12, "b": 0.12}
DENSE_ABOVE_VNNI4 = {"a": 0.35, "b": 0.18}
DENSE_ABOVE_AMX = {"a": 0.01, "b": 0.035}
DENSE_ABOVE_AVX2Q = {"a": 0.65, "b": 0.55}
KIND_NAMES = {"vnni": "VNNI", "vnni4": "VNNI, four at a time", "amx": "AMX",
              "avx2q": "AVX2, four at a time"}


def crossover(side: str, kind: str = "") -> float:
    """The density above which side's dense formulation runs; kind: the instruction it runs on
    ("amx", "vnni", "vnni4" or "avx2q" where the sparse product takes four nonzeros at a time,
    or "" for the others: buckets.dense_kinds)."""
    table = {"amx": DENSE_ABOVE_AMX, "vnni": DENSE_ABOVE_VNNI, "vnni4": DENSE_ABOVE_VNNI4,
             "avx2q": DENSE_ABOVE_AVX2Q}.get(kind, DENSE_ABOVE)
    return table[side]


def dense_wins(density: float, side: str, kind: str = "") -> bool:
    """Whether a sparse operand of this density runs in the dense formulation (side: the
    product's, SparseProduct.side; kind: the instruction that formulation runs on)."""
    return density > crossover(side, kind)


def formulation_note(side: str, n: int, density: float, dense: bool | None,
                     kind: str = "") -> str:
    """What last_notes says of sparse term n (side a: B's term, A's copy per call; side b:
    A's term, B's copy at pack); dense None: no dense formulation compiled for it."""
    what = f"sparse: {'B' if side == 'a' else 'A'}'s term {n} ran "
    if dense is None:
        return what + ("sparse (no dense formulation compiled: its codes do not fit the "
                       "integer GEMM, or the target is a GPU)")
    cross = crossover(side, kind)
    rel = ">" if density > cross else "<="
    named = f" ({KIND_NAMES[kind]})" if kind in KIND_NAMES else ""
    return (what + ("dense" if dense else "sparse") + f": {'A' if side == 'a' else 'B'}'s copy"
            f" density {density:.3f} {rel} crossover {cross:g}{named}"
            + ("" if side == "a" else " (chosen at pack)"))


def swap_operands(note: str) -> str:
    """A note of the transposed kernel (static: a computes Bᵀ Aᵀ) in the user's names: its A
    is the user's B and the other way round."""
    return re.sub(r"\b[AB]\b", lambda m: "B" if m.group(0) == "A" else "A", note)


def swap_roles(message: str) -> str:
    """A refusal of the transposed scheme (static: a) in the user's names: A and B swapped as
    in swap_operands, and the roles a and b where the planner names them ("sparse term of b",
    "b: int1 ...", "b-side") and a segment's sources (A's x B's), leaving the article "a" of
    the prose alone."""
    other = {"a": "b", "b": "a"}
    message = re.sub(r"(?<=\bterm of )[ab]\b|(?<=: )[ab](?=: )|(?<=^)[ab](?=: )|\b[ab](?=-side\b)",
                     lambda m: other[m.group(0)], message)
    message = re.sub(r"(segment )(\S+) x (\S+?)(?=: )", r"\1\3 x \2", message)  # (A's x B's)
    return swap_operands(message)


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
