"""compile(): plan -> TE -> schedule rule -> one LLVM module with quantize_a, gemm and int_acc."""

from __future__ import annotations

from . import names, tiles
from . import te_base
from .compat import Schedule, compile_module, prim_func, tvm
from .kernel import Kernel
from .plan import make_plan
from .rules import choose
from .target import features, resolve


def family_of(target: dict) -> str:
    return "x86"  # the generic rule in schedules/x86 also serves non-x86 LLVM targets


def schedule_all(plan, rule):
    funcs = {
        names.FN_QUANTIZE: te_base.quantize_a(plan),
        names.FN_GEMM: te_base.gemm(plan),
        names.FN_ACC: te_base.gemm(plan, int_only=True),
    }
    out = {}
    for fn, tensors in funcs.items():
        sch = Schedule(prim_func(tensors))
        rule.schedule(fn, sch, plan, tiles)
        out[fn] = sch.mod["main"].with_attr("global_symbol", fn)
    return tvm.IRModule(out)


def compile(scheme, M: int, N: int, K: int, target=None) -> Kernel:
    """A Kernel for scheme at M x K @ K x N on `target` (None = this CPU)."""
    tdict = resolve(target)
    plan = make_plan(scheme, M, N, K)
    rule, _ = choose(family_of(tdict), plan, features(tdict))
    ex = compile_module(schedule_all(plan, rule), tvm.target.Target(tdict))
    return Kernel(plan, ex, tdict, rule.NAME, rule.FAST)
