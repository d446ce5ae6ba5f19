"""CUDA, any arch from sm_61: the single-group integer GEMM (per_tensor / per_channel scales,
int2..int8 weights, zero points, low-rank epilogues) on dp4a (u8 x s8 -> s32, 4 k per
instruction), A's and B's tiles staged in shared memory, the epilogue fused per thread
(gpu.dp4a_gemm; tiles of up to 64 x 64 outputs, 16 x 16 threads, up to 4 x 4 accumulators
each: gpu.gemm_tile). The other functions (quantization pass, row dot products) get
gpu.per_block. Not run on a GPU yet: compiled and checked to PTX here."""

NAME = "cuda_dp4a"
FAMILY = "cuda"
FAST = True
MEASURED = "not measured on a GPU yet (compile-only host)"


def applies(plan, features):
    if "dp4a" not in features:
        return "target lacks dp4a (sm_61+)"
    if plan.float_path:
        return "a float operand: no integer GEMM"
    if plan.groups > 1:
        return "per-group scales (per_vector, MX, residual segments): not yet"
    return None


def handles(fn, plan) -> bool:
    """The functions this rule schedules itself (the rest: dlight)."""
    return fn in ("gemm", "int_acc") and plan.groups == 1


def knobs(plan, tiles) -> dict:
    """The tuning space (gpu.dp4a_knobs); lrqc tune samples it on a GPU."""
    return tiles.dp4a_knobs(plan)


def schedule(fn, sch, plan, tiles, knob=None):
    """knob(name, candidates, hand) -> a value (default: the hand choice)."""
    tiles.dp4a_gemm(sch, plan, knob=knob)
