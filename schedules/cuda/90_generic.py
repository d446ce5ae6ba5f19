"""CUDA fallback for every plan: TVM's dlight rules (threads bound per output element,
reductions across threads), no instruction chosen by lrqc. Float GEMMs whose values are not
exact in 16 bits (and small M buckets of those that are) use it, as do the integer sums of
per-group products (Kernel.int_accumulate)."""

NAME = "cuda_generic"
FAMILY = "cuda"
FAST = False
MEASURED = "not measured on a GPU yet (compile-only host)"


def applies(plan, features):
    if "cuda" not in features:
        return "not a CUDA target"
    return None


def handles(fn, plan) -> bool:
    return False


def schedule(fn, sch, plan, tiles):  # pragma: no cover - handles() is always False
    raise NotImplementedError
