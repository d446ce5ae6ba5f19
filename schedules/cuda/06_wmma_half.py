"""CUDA sm_75+ (bf16: sm_80+): float GEMMs on fp16 / bf16 tensor cores (WMMA m16n16k16,
f32 accumulation) when every value they multiply is exact in 16 bits (KernelPlan.half:
weight-only products such as `a: float16` x `b: int4 per_channel`, and the float fallback of
per_tensor / per_channel e*m* codes). The GEMM multiplies A's and B's values (codes, or a float
operand rounded to its type) cast to 16 bits while staged in shared memory, and applies the
row and column scales in its epilogue: products are exact in float32, so only the order of
the float32 sums differs from the float32 GEMM. Same tile and software pipeline as the int8
tensor-core rule (gpu.wmma_gemm). Not run on a GPU yet: compiled and checked to PTX here."""

NAME = "cuda_wmma_half"
FAMILY = "cuda"
FAST = True
HALF = True  # te_float.gemm's 16-bit formulation
MEASURED = "not measured on a GPU yet (compile-only host)"


def applies(plan, features):
    if not plan.float_path:
        return "an integer product (the int8 rules take it)"
    if plan.half is None:
        return ("values not exact in 16 bits (a float32 operand, scales inside the K sum, "
                "or B's dense terms folded into float weights)")
    need = "mma_bf16" if plan.half == "bfloat16" else "mma_f16"
    if need not in features:
        return f"target lacks {plan.half} tensor cores ({'sm_80' if need == 'mma_bf16' else 'sm_75'}+)"
    if plan.mp % 64 or plan.np_ % 64 or plan.kp % 32:
        return f"sizes {plan.mp}x{plan.np_}x{plan.kp} do not fit 64 x 64 tiles (K a multiple of 32)"
    return None


def handles(fn, plan) -> bool:
    return fn == "gemm"


def unit_safe(plan) -> tuple:
    """Knobs that may take 1 where the hand choice is 2 (their traces replay into the same
    loops at every value: a compile-only test replays each corner)."""
    return ("wy", "wx", "fy", "fx")


def knobs(plan, tiles) -> dict:
    """The tuning space (gpu.wmma_knobs); lrqc tune samples it on a GPU."""
    return tiles.wmma_knobs(plan)


def schedule(fn, sch, plan, tiles, knob=None):
    """knob(name, candidates, hand) -> a value (default: the hand choice)."""
    tiles.wmma_gemm(sch, plan, knob=knob)
