"""Block and function names shared by to_te and the schedule rules (rules find blocks by name)."""

from __future__ import annotations

from .model import KernelPlan

QUANT_STATS = "a_stats"  # per-group max |A| (and min for minmax)
SPARSE_SUMS = "_sums"  # + QUANT_STATS prefix: a sparse copy's counts and sum of |A| (float64)
QUANT_SCALE = "a_scale"  # effective scale per group
QUANT_ZERO = "a_zero"  # zero-point correction per group
QUANT_CODES = "a_codes"  # u8 codes of A
BASE_CODES = "a_base_codes"  # u8 codes of A's base quantization, kept for its residual
QUANT_ROW_SCALE = "a_row_scale"  # float path with 16-bit values: A's scale per row
QUANT_FLOAT = "a_float"  # A as float32 for the float GEMM of products with a float operand
QUANT_ROWSUM = "a_rowsum"  # per-group sums of A's centered codes (for weights with zero points)
UNPACK = "b_unpack"  # sub-byte weights unpacked to int8 (per tile)
ACC = "acc"  # int32 accumulator (one K group)
A_S8 = "a_s8"  # A's codes shifted to s8 (tensor-core GEMMs multiply s8 by s8)
A_HALF = "a_half"  # A's exact 16-bit values (float GEMMs on fp16/bf16 tensor cores)
B_FLOAT = "b_float"  # B's 16-bit values widened to float32 (a panel at a time, CPU)
B_NK = "b_nk"  # B's codes as an N x K matrix, K contiguous (tensor-core GEMMs)
PARTIAL = "partial"  # int32 accumulator per K group (per_vector)
PARTIAL_START = PARTIAL + "_start"  # where each group's sum starts, -(its zero correction):
#   made the sum's initialization as the function is made (backend.compat.START)
PAIR_SUMS = "pair_sums"  # int32 Σ_g over K groups of group sums times integer scales (in
#   int16 pairs of groups: signature.scale_pairs)
ACC64 = "acc64"  # int64 sum of the int32 partial sums of K chunks (accumulate: int64)
PAIRS = "_pairs"  # suffix of the two-half accumulators of the vpmaddwd (AVX2) formulation
OUT = "C"  # float32 output (dequantization epilogue)
RESID = "a_resid"  # A's final residual (float32), for A's lowrank term
RESID_TOP = "a_resid_top"  # max |R| of each row of A's residual (its lowrank term's scaling)
SKETCH = "a_sketch"  # R Ω, the sketch product of A's residual
SKETCH_RT = "a_sketch_rt"  # Rᵀ (R s) of the rank-1 sketch, one partial sum per chunk of rows
SKETCH_A = "sketch_a"  # R u of the sketch's power iteration (sketch_ab)
SKETCH_B = "sketch_b"  # Rᵀ (R u), one partial sum per chunk of rows (sketch_ab)
LOWRANK_U = "lowrank_u"  # A' L_B
LOWRANK_W = "lowrank_w"  # F_Aᵀ B̂ from B's codes (A's lowrank term, other=packed); + "_b": B̂'s
#   16-column panels, + "_acc": the sums
EXACT_W = "exact_w"  # F_Aᵀ B from the exact B (A's lowrank term, other=exact; CPU)
RESID_TQ = "resid_tq"  # (Rᵀ Q)ᵀ: the randomized SVD's products of A's residual with a basis
RESID_Z = "resid_z"  # R Z (both: A's lowrank term, method=rsvd; CPU)
LOWRANK_EPI = "lowrank_epi"  # + a / b: Σ_r U[i, r] W[r, j] of the GEMM's low-rank epilogue
SPARSE_CODES = "a_sparse_codes"  # centered codes of A's thresholded copy (sparse product j)
RESID_CODES = "a_res_codes"  # centered codes of A's residual (sparse product j)
RESID_T = "a_res_t"  # the same, transposed to K x M
LANES = "_lanes"  # suffix of lane partial sums (a row dot product's 16, lanes_w's 64)
HALVES = "_halves"  # suffix of an outer-product form's sums over even and odd k
PARTS = "_parts"  # suffix of an outer-product form's sums over contiguous parts of k
FLOATS = "_floats"  # suffix of its rows widened to float32 a block of rows at a time
ACROSS = "_across"  # suffix of its other operand transposed: one k's values side by side
COLUMNS = "_columns"  # suffix of a column-form product's sums, one row per column of R

FN_QUANTIZE = "quantize_a"
FN_GEMM = "gemm"
FN_ACC = "int_acc"  # the integer accumulation alone, for exactness tests
FN_GEMM_GROUPS = "gemm_groups"  # the GEMM with each K group scaled in float32: a call whose
#   numbers leave the int16 pairs of the GEMM's integer scales (runtime.checks.pairs_hold)
FN_LOWRANK_U = "lowrank_u"  # U_B = A' L_B of B's lowrank term
FN_LOWRANK_W = "lowrank_w"  # F_Aᵀ B̂ of A's lowrank term (other=packed): the part in B's codes
FN_EXACT_W = "exact_w"  # F_Aᵀ B of A's lowrank term (other=exact) from B in float32, CPU
#   (the runtime's 16-bit copies of B: the two below)
FN_EXACT_W_BF16 = "exact_w_bf16"  # the same from B's exact bfloat16 copy (bits as uint16)
FN_EXACT_W_F16 = "exact_w_f16"  # the same from B's exact float16 copy
FN_RESID_TQ = "resid_tq"  # Qᵀ R of A's residual R (its randomized SVD), CPU
FN_RESID_Z = "resid_z"  # R Z of A's residual R (its randomized SVD), CPU
FN_SKETCH_AB = "sketch_ab"  # R u and Rᵀ R u of A's residual R (its rank-1 sketch), CPU
FN_SPARSE = "sparse"  # + j: C += deq(sparse product j), after the GEMM
DENSE_SUFFIX = "_dense"  # sparse{j}_dense: the same product as a dense integer GEMM
DENSE_CODES = "dense_a"  # its A side: the per-call codes as u8 (+ 128), M x K
FUNCTIONS = (FN_QUANTIZE, FN_GEMM, FN_ACC)
FLOAT_FUNCTIONS = (FN_QUANTIZE, FN_GEMM)  # no integer accumulation to expose
TUNED_FUNCTIONS = (FN_QUANTIZE, FN_GEMM, FN_LOWRANK_U)  # what lrqc tune searches


def symbol(fn: str, m: int, prefix: str = "") -> str:
    """The exported symbol of function fn for the M bucket of m rows (prefix: the part of a
    chain of kernels: runtime/chain.py)."""
    return f"{prefix}{fn}_m{m}"


def tuned_functions(plan: KernelPlan) -> tuple[str, ...]:
    """The functions of the plan lrqc tune searches (and builds report the schedule of)."""
    return tuple(fn for fn in TUNED_FUNCTIONS if fn != FN_LOWRANK_U or plan.rank_b)
