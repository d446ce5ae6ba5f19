"""CUDA, any arch from sm_61: integer GEMMs on dp4a (u8 x s8 -> s32, 4 k per instruction) with
A's and B's k chunks staged in shared memory (nibbles unpacked on the way) and register tiles
per thread (gpu.dp4a_gemm; tiles of up to 64 x 64 outputs, 16 x 16 threads, up to 4 x 4
accumulators each: gpu.gemm_tile / dp4a_knobs). Single-group products (per_tensor /
per_channel, int2..int8 weights, zero points, low-rank epilogues) fuse the epilogue per thread;
per-group products (per_vector, two-level scales, MX, dense residual segments) run group by
group, the group's int32 partial sums and the float32 output sums in registers
(gpu._dp4a_groups). Buckets that fit tensor-core tiles take cuda_wmma instead. The other
functions (quantization pass, row dot products) get gpu.per_block. Not run on a GPU yet:
compiled and checked to PTX here."""

NAME = "cuda_dp4a"
FAMILY = "cuda"
FAST = True
MEASURED = "not measured on a GPU yet (compile-only host)"


def applies(plan, features):
    if "dp4a" not in features:
        return "target lacks dp4a (sm_61+)"
    if plan.float_path:
        return "a float operand: no integer GEMM"
    if plan.chunked:
        return "int64 accumulation over K chunks (dlight)"
    if plan.groups > 1 and plan.vector % 4:
        return f"per-group vectors of {plan.vector} (not whole dp4a blocks of 4: dlight)"
    return None


def handles(fn, plan) -> bool:
    """The functions this rule schedules itself (the rest: dlight): the GEMM, and the integer
    sums of single-group products (int_accumulate; per group: dlight's matmul rule)."""
    return fn == "gemm" or (fn == "int_acc" and plan.groups == 1)


def knobs(plan, tiles) -> dict:
    """The tuning space (gpu.dp4a_knobs); lrqc tune samples it on a GPU."""
    return tiles.dp4a_knobs(plan)


def schedule(fn, sch, plan, tiles, knob=None):
    """knob(name, candidates, hand) -> a value (default: the hand choice)."""
    tiles.dp4a_gemm(sch, plan, knob=knob)
