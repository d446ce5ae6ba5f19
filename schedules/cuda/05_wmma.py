"""CUDA sm_75+: the single-group integer GEMM on tensor cores (WMMA m16n16k16 s8 x s8 -> s32;
A's u8 codes shifted to s8, + 128 cs in the epilogue: te_base.gemm(s8=True)) when the plan's
padded sizes fit 64 x 64 output tiles (gpu.wmma_tile) and K >= 32 (the pipeline's two
chunks); other shapes
(small M buckets) take the dp4a rule. The k loop is software-pipelined over double-buffered
shared memory. Not run on a GPU yet:
compiled and checked to PTX here."""

NAME = "cuda_wmma"
FAMILY = "cuda"
FAST = True
S8 = True  # te_base.gemm's s8 formulation
MEASURED = "not measured on a GPU yet (compile-only host)"


def applies(plan, features):
    if "mma_s8" not in features:
        return "target lacks int8 tensor cores (sm_75+)"
    if plan.float_path:
        return "a float operand: no integer GEMM"
    if plan.groups > 1:
        return "per-group scales: not yet"
    if plan.mp % 64 or plan.np_ % 64 or plan.kp % 32:
        return f"sizes {plan.mp}x{plan.np_}x{plan.kp} do not fit 64 x 64 tiles (K a multiple of 32)"
    return None


def handles(fn, plan) -> bool:
    return fn in ("gemm", "int_acc")


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
