"""The parameters of every compiled function of a kernel plan, by name and in order: the
contract between the tensor expressions (lrqc/backend/te: a PrimFunc's parameters are its
placeholders' and output blocks' names) and the runtime, which binds each argument by name
(lrqc/runtime/buckets.py). The pipeline's te stage checks every PrimFunc against params()
(check_params: a difference is a compiler bug). No TVM here.

The parameters depend on the plan alone: the schedule rule's formulation (plain, pairs, s8,
16-bit) changes how the GEMM computes, never what it reads and writes.

    quantize_a   A [U] -> a_codes sa zc [a_rowsum] [sqa ga]  integer path
                 A [U] -> a_float [a_row_scale]              float path
                 A [rows] [Omega_t] -> a_codes sa_all zc_all [a_rowsum] [dens] [a_resid
                   a_resid_top] [a_sketch] [a_sketch_rt] (per sparse product: its codes
                   and scales)
                   compensated
    gemm         Aq Bp sa zc sb cs [ra zb] [sqa ga sqb gb [cqb]] [Ua Wa] [Ub Wb] bias C m_rows
                 | Af Bf [saf sbf] [Ua Wa] [Ub Wb] bias C m_rows
    gemm_groups  as gemm: each K group scaled in float32, for the calls whose numbers leave
                 the GEMM's int16 pairs (scale_pairs; CPU: runtime.checks.pairs_hold)
    int_acc      Aq Bp zc cs [ra zb] C m_rows
    lowrank_u    Aq sa zc LBt lowrank_u | Af [saf] LBt lowrank_u
    lowrank_w    Fa Bp sb [zb] lowrank_w                   A's lowrank term, other=packed
    exact_w      Fa Bt exact_w                             A's lowrank term, other=exact,
    exact_w_bf16, exact_w_f16 (Bt in 16 bits)             K a multiple of 16; CPU
    resid_tq     Qt a_resid resid_tq                       A's lowrank term, method=rsvd;
    resid_z      a_resid Zt resid_z                        CPU
    sketch_ab    a_resid sketch_u rows sketch_a sketch_b   A's lowrank term, method=sketch; CPU
    sparse{j}    S ss D sd C (side a) | Rt sr ptr idx val ss C (side b)
    sparse{j}_dense  S ss Dv dcs sd Cin C (side a) | Rt sr Sv scs ss Cin C (side b): the same
                 product as a dense integer GEMM (Cin and C: the same buffer, C += ...); CPU

m_rows, the last parameter of gemm and int_acc, is a scalar: the call's row count. Their
schedules may skip the row tiles past it (lrqc/backend/rowbound.py), so C's rows from the
first tile past m_rows on are left as they were. It is added to the PrimFunc after scheduling:
the tensor expressions have every other parameter (te_params)."""

from __future__ import annotations

from dataclasses import replace

from ..frontend.model import Calibration, QuantOperand
from ..reference.quant import int_range
from . import names, ranges
from .model import KernelPlan
from .segments import SparseProduct
from .verify import PlanError

# A's side, per call
A = "A"  # the float32 input, M x K
U = "U"  # the reference's stochastic-rounding draws
ROWS = "rows"  # the call's true row count (statistics of A's thresholded copies)
M_ROWS = "m_rows"  # the call's row count, a scalar (row tiles past it are skipped)
ROW_FUNCTIONS = (names.FN_GEMM, names.FN_ACC, names.FN_GEMM_GROUPS)  # take m_rows
OMEGA = "Omega_t"  # the test matrix of A's lowrank term (sketch, rsvd)
AQ, SA, ZC, RA = "Aq", "sa", "zc", "ra"  # A's codes, scales, zero corrections, row sums
AF, SAF = "Af", "saf"  # float path: A's values and (16-bit values) row scales
SA_ALL, ZC_ALL = "sa_all", "zc_all"  # compensated quantize_a: every segment's sa and zc
DENS = "dens"  # densities of A's thresholded copies
UA, WA, UB, WB = "Ua", "Wa", "Ub", "Wb"  # low-rank epilogue factors (Wb is packed)
BIAS = "bias"  # [1, Np] float32: added to every row of C in the epilogue (packed; zeros if none)
FA = "Fa"  # F_Aᵀ [r, Kq] of A's lowrank term (other=packed: lowrank_w multiplies B's codes)
SKETCH_U = "sketch_u"  # the vector u' of a power iteration of A's rank-1 sketch (sketch_ab)
QT, ZT = "Qt", "Zt"  # the randomized SVD's bases, transposed: [w, Mp] and [w, Kq]
# two-level integer scales (scale_pairs): A's per call, B's packed
SQA, GA = "sqa", "ga"  # A's integer scales [Mp, G] int16, its rows' float scales [Mp, 1]
SQB, GB = "sqb", "gb"  # B's integer scales in pairs of groups [G/2, Np, 2] int16; [1, Np]
CQB = "cqb"  # B's column sums per group as sqb (int16 pairs): the pairs' zero corrections
# the packed static operand (layout.PackedOperand.params)
BP, SB, CS, ZB = "Bp", "sb", "cs", "zb"
BF, SBF, ZBF = "Bf", "sbf", "zbf"
LBT = "LBt"
BT = "Bt"  # B transposed, N x K (A's lowrank term, other=exact): float32 or 16 bits (EXACT_W)
# the sparse products (te/sparse.py): per-call operand, static operand, output
SPARSE_A = ("S", "ss", "D", "sd")  # A's thresholded codes and scales, B's residual codes, scales
SPARSE_B = ("Rt", "sr", "ptr", "idx", "val", "ss")  # A's residual codes, scales; B's CSR, scales
SPARSE_A_STATIC = ("D", "sd")
SPARSE_B_STATIC = ("ptr", "idx", "val", "ss")
# the dense formulation (te/sparse.py: dense): the static codes as the GEMM's VNNI blocks
DENSE_A = ("S", "ss", "Dv", "dcs", "sd")  # + their column sums; B's residual
DENSE_B = ("Rt", "sr", "Sv", "scs", "ss")  # B's thresholded copy
DENSE_A_STATIC = ("Dv", "dcs", "sd")
DENSE_B_STATIC = ("Sv", "scs", "ss")
CIN = "Cin"  # C read by the dense formulation (the runtime passes C itself)


def functions(p: KernelPlan) -> tuple[str, ...]:
    """The compiled functions of plan p (in the order artifact manifests list them)."""
    fns: tuple[str, ...] = names.FLOAT_FUNCTIONS if p.float_path else names.FUNCTIONS
    return (*fns, *_given(p.rank_b, names.FN_LOWRANK_U),
            *_given(w_from_codes(p), names.FN_LOWRANK_W),
            *(f"{names.FN_SPARSE}{j}" for j in range(len(p.sparse))))


def dense_name(j: int) -> str:
    """The dense formulation of sparse product j."""
    return f"{names.FN_SPARSE}{j}{names.DENSE_SUFFIX}"


def dense_plan(p: KernelPlan, j: int) -> KernelPlan | None:
    """The single-product plan whose integer GEMM computes sparse product j densely: A's side
    the per-call codes (A's copy, or A's residual), B's side the static ones, both in the
    term's format, per-tensor (one scale group), no residual terms. None when the codes do not
    fit the GEMM (not 5- to 8-bit signed max-abs integers within ±127: signed fixed point's
    codes reach -128; or several scale groups per segment): that product runs sparse only."""
    if p.float_path or p.gq != 1 or not isinstance(p.scheme.a, QuantOperand):
        return None
    q = p.sparse[j].q
    if not (q.is_int and q.signed and q.calibrate == Calibration.MAXABS and 5 <= q.bits <= 8
            and min(int_range(q)) >= -127):
        return None
    op = QuantOperand(q)
    return replace(p, scheme=replace(p.scheme, name=f"{p.scheme.name}.{dense_name(j)}", a=op,
                                     b=op), notes=(), float_gemm=False, segments=(), kseg=0,
                   kp=p.kq, groups=1, vector=p.kq, a_offset=128, lowrank_a=None,
                   lowrank_b=None, dense_b=(), sparse=(), chunked=False)


def dense_index(fn: str) -> int | None:
    """j of function sparse{j}_dense; None for the other functions."""
    if not fn.endswith(names.DENSE_SUFFIX):
        return None
    return sparse_index(fn[: -len(names.DENSE_SUFFIX)])


def dense_functions(p: KernelPlan) -> tuple[str, ...]:
    """The dense formulations the plan compiles on CPUs (not listed by functions(): the
    runtime looks them up where the target has them)."""
    return tuple(dense_name(j) for j in range(len(p.sparse)) if dense_plan(p, j) is not None)


def dense_params(sp: SparseProduct) -> tuple[str, ...]:
    """The parameters of a sparse product's dense formulation, its output C last."""
    return (*(DENSE_A if sp.side == "a" else DENSE_B), CIN, names.OUT)


# exact_w's function by the type Bᵀ is held in: float32, or an exact 16-bit copy of it
# (bfloat16's bits as uint16, or float16) where every value of B is one
EXACT_W = {"float32": names.FN_EXACT_W, "uint16": names.FN_EXACT_W_BF16,
           "float16": names.FN_EXACT_W_F16}


def w_exact(p: KernelPlan) -> bool:
    """A's lowrank term multiplies the exact B (other=exact) and K is a multiple of 16: on
    CPUs exact_w computes W_A = F_Aᵀ B from pack's Bᵀ (float32, or its exact 16-bit copy:
    EXACT_W) in compiled products (other K: the host's BLAS)."""
    return p.lowrank_a is not None and p.lowrank_a.other != "packed" and p.k % 16 == 0


def cpu_functions(p: KernelPlan) -> tuple[str, ...]:
    """The functions the plan compiles on CPUs only, besides functions(): the dense
    formulations of its sparse products, gemm_groups (scale_pairs), exact_w in its three forms
    (EXACT_W), resid_tq and resid_z (the runtime looks them up where the target is a CPU)."""
    return (*dense_functions(p), *_given(scale_pairs(p), names.FN_GEMM_GROUPS),
            *_given(w_exact(p), *EXACT_W.values()),
            *_given(r_products(p), names.FN_RESID_TQ, names.FN_RESID_Z),
            *_given(sketch_rt(p) and p.lowrank_a is not None and p.lowrank_a.power_iters > 0,
                    names.FN_SKETCH_AB))


def sketch_rt(p: KernelPlan) -> bool:
    """A's lowrank term is a rank-1 sketch on the integer path: the compensated quantize_a
    also writes Rᵀ (R s) (per chunk of rows, names.SKETCH_RT), and on CPUs sketch_ab computes
    each power iteration's R u and Rᵀ R u (the others: the host's BLAS; with no power
    iteration, no sketch_ab)."""
    return (p.lowrank_a is not None and p.lowrank_a.method == "sketch" and not p.float_path)


def sketch_chunks(p: KernelPlan) -> int:
    """The chunks of rows whose shares of Rᵀ (R u) the sketch's passes sum apart (then added
    in order), each a task for a core: the most, up to 32, that divide the bucket's rows (68
    rows: 17 chunks of 4; a prime count of rows: one chunk)."""
    return max(c for c in range(1, 33) if p.mp % c == 0)


def r_products(p: KernelPlan) -> bool:
    """A's lowrank term is a randomized SVD on the integer path: on CPUs resid_tq and resid_z
    compute its products with A's residual R where quantize_a left it (the others: the host's
    BLAS)."""
    return (p.lowrank_a is not None and p.lowrank_a.method == "rsvd" and not p.float_path)


def w_from_codes(p: KernelPlan) -> bool:
    """A's lowrank term multiplies B as packed (other=packed): W_A = F_Aᵀ B̂ is computed from
    B's codes by lowrank_w (and pack keeps no float copy of B)."""
    return p.lowrank_a is not None and p.lowrank_a.other == "packed"


def sparse_index(fn: str) -> int | None:
    """j of function sparse{j}; None for the other functions."""
    rest = fn[len(names.FN_SPARSE):] if fn.startswith(names.FN_SPARSE) else ""
    return int(rest) if rest.isdigit() else None


def sparse_static_scale(sp) -> str:
    """The name of sparse product sp's static scales (B's side: its residual's or its
    copy's), in either formulation."""
    return SPARSE_A[3] if sp.side == "a" else SPARSE_B[5]


def sparse_outputs(p: KernelPlan, j: int) -> tuple[str, str]:
    """(codes, scales): the names of sparse product j's per-call operand, which the
    compensated quantize_a writes (te/compensated.py: sparse_operand)."""
    sp = p.sparse[j]
    if sp.side == "a":
        return f"{names.SPARSE_CODES}{j}", f"{SA}_s{sp.n}"
    return f"{names.RESID_T}{j}", f"{SA}_r{sp.n}"


def sparse_params(sp: SparseProduct) -> tuple[str, ...]:
    """The parameters of a sparse product's function, its output C last."""
    return (*(SPARSE_A if sp.side == "a" else SPARSE_B), names.OUT)


def _given(cond: object, *names_: str) -> tuple[str, ...]:
    """names_ when cond holds, else ()."""
    return names_ if cond else ()


def _epilogue(p: KernelPlan) -> tuple[str, ...]:
    """What a GEMM's epilogue reads besides the sums: the low-rank factors, then the bias
    (every GEMM adds it; an output summed over K groups of scales starts from it)."""
    return _given(p.rank_a, UA, WA) + _given(p.rank_b, UB, WB) + (BIAS,)


def scale_pairs(p: KernelPlan) -> bool:
    """The plan's per-vector product has two-level integer scales whose group sums and scale
    products fit int16 pairs, their total int32 (plan.ranges.scale_pairs), an even number of
    groups and no compensation: quantize_a also writes A's integer scales and row scales
    (sqa, ga), pack keeps B's (sqb, gb), and the GEMM takes them, so a rule may sum the groups
    as int16 pairs (ScheduleRule.scale_pairs); on CPUs gemm_groups, the same product with
    each group scaled in float32, runs the calls whose numbers the pairs cannot hold."""
    sp = ranges.scale_pairs(p)
    return sp is not None and sp.usable


def zero_pairs(p: KernelPlan) -> bool:
    """scale_pairs with zero corrections (A's signed codes' storage offset, or its zero points
    from the data): the GEMM also reads B's column sums per group in pairs (cqb) and
    subtracts offset·cs from each group sum in int16; with data zero points (A's codes stored
    centred on them where they lie within reach: ranges.ScalePairs.centred), a call with a
    group that is not centred runs gemm_groups instead."""
    sp = ranges.scale_pairs(p)
    return sp is not None and sp.usable and sp.zeros > 0


def stats_see_non_finite(p: KernelPlan) -> bool:
    """quantize_a takes A's max |x| statistics on float32 bit patterns (te quantize), where a
    NaN or an infinity makes its row's scale non-finite: the kernel checks A's scales after the
    pass instead of reading A once more. Plans quantizing A to integer codes by max |x| or by
    min and max (taken on bit patterns in the order of the values: a NaN or an infinity makes
    the max +inf or the min -inf; no MX, fixed point, int1 or float A); with compensation, A's
    first segment's scales are those of A's own codes (segments.py: base first) and see it,
    whatever the terms."""
    q = p.qa
    return (q is not None and not p.float_path and not p.mx and not p.a_float
            and not q.is_fixed and not (q.is_int and q.signed and q.bits == 1))


def _quantize_a(p: KernelPlan) -> tuple[str, ...]:
    if p.compensated and not p.float_path:
        sketch = p.lowrank_a is not None and p.lowrank_a.method != "svd"
        a_copies = any(sp.side == "a" for sp in p.sparse)
        return (A, *_given(a_copies or sketch_rt(p), ROWS), *_given(sketch, OMEGA),
                names.QUANT_CODES, SA_ALL, ZC_ALL, *_given(p.b_zero, names.QUANT_ROWSUM),
                *_given(a_copies, DENS),
                *_given(p.lowrank_a is not None, names.RESID, names.RESID_TOP),
                *_given(sketch, names.SKETCH), *_given(sketch_rt(p), names.SKETCH_RT),
                *(n for j in range(len(p.sparse)) for n in sparse_outputs(p, j)))
    noise = _given(p.stochastic_a and not p.mx, U)  # (te/quantize.py: MX draws none)
    if p.float_path:
        return (A, *noise, names.QUANT_FLOAT, *_given(p.half, names.QUANT_ROW_SCALE))
    return (A, *noise, names.QUANT_CODES, SA, ZC, *_given(p.b_zero, names.QUANT_ROWSUM),
            *_given(scale_pairs(p), SQA, GA))


def params(p: KernelPlan, fn: str) -> tuple[str, ...]:
    """The parameter names of function fn of plan p, in order (outputs last, then m_rows).
    PlanError for a function the plan does not compile."""
    own = te_params(p, fn)
    return (*own, M_ROWS) if fn in ROW_FUNCTIONS else own


def te_params(p: KernelPlan, fn: str) -> tuple[str, ...]:
    """params(p, fn) of the tensor expressions: all but the scalar m_rows."""
    j = sparse_index(fn)
    if j is not None and j < len(p.sparse):
        return sparse_params(p.sparse[j])
    j = dense_index(fn)
    if j is not None and j < len(p.sparse) and dense_plan(p, j) is not None:
        return dense_params(p.sparse[j])
    if fn == names.FN_QUANTIZE:
        return _quantize_a(p)
    if fn == names.FN_GEMM and p.float_codes:
        return (AF, BP, SBF, *_given(p.float_zero, ZBF), *_epilogue(p), names.OUT)
    if fn == names.FN_GEMM and p.float_path:
        return (AF, BF, *_given(p.half, SAF, SBF), *_epilogue(p), names.OUT)
    if fn == names.FN_GEMM or (fn == names.FN_GEMM_GROUPS and scale_pairs(p)):
        return (AQ, BP, SA, ZC, SB, CS, *_given(p.b_zero, RA, ZB),
                *_given(scale_pairs(p), SQA, GA, SQB, GB), *_given(zero_pairs(p), CQB),
                *_epilogue(p), names.OUT)
    if fn == names.FN_ACC and not p.float_path:
        return (AQ, BP, ZC, CS, *_given(p.b_zero, RA, ZB), names.OUT)
    if fn == names.FN_LOWRANK_W and w_from_codes(p) and not p.float_path:
        return (FA, BP, SB, *_given(p.b_zero, ZB), names.LOWRANK_W)
    if fn in EXACT_W.values() and w_exact(p):
        return (FA, BT, names.EXACT_W)
    if fn == names.FN_RESID_TQ and r_products(p):
        return (QT, names.RESID, names.RESID_TQ)
    if fn == names.FN_RESID_Z and r_products(p):
        return (names.RESID, ZT, names.RESID_Z)
    if fn == names.FN_SKETCH_AB and names.FN_SKETCH_AB in cpu_functions(p):
        return (names.RESID, SKETCH_U, ROWS, names.SKETCH_A, names.SKETCH_B)
    if fn == names.FN_LOWRANK_U and p.rank_b:
        a = (AF, *_given(p.half, SAF)) if p.float_path else (AQ, SA, ZC)
        return a + (LBT, names.LOWRANK_U)
    raise PlanError(f"kernel plan of '{p.scheme.name}' at M={p.m}: no function '{fn}' (it "
                    f"compiles {', '.join(functions(p))})")


def check_params(p: KernelPlan, fn: str, have: list[str] | tuple[str, ...],
                 te: bool = False) -> None:
    """PlanError unless `have`, the parameter names of the PrimFunc built for function fn of
    plan p, are params(p, fn): the tensor expressions and the runtime's argument lists would
    disagree (a compiler bug). At the te stage (before m_rows is added) pass te=True."""
    want = te_params(p, fn) if te else params(p, fn)
    if tuple(have) != want:
        raise PlanError(f"kernel plan of '{p.scheme.name}' at M={p.m}: function '{fn}' has "
                        f"parameters {list(have)}, its signature says {list(want)}")
