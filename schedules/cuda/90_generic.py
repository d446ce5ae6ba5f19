"""CUDA fallback for every plan: TVM's dlight rules (threads bound per output element,
reductions across threads), no integer instruction chosen by lrqc. Per-group products (per_vector, MX,
residual segments) and products with a float operand use it until they get their own rule."""

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
