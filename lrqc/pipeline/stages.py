"""The compilation pipeline as an ordered table of named stages (after Triton's `stages`):
each stage is a function from the Compilation the previous stage left to the next one, and
each has a text form that `lrqc build --emit` and `lrqc.compile(..., dump_dir=)` print.

    ir    Scheme -> IR Program after the passes (lrqc.ir, lrqc.passes), verified
    plan  Program -> one Part per compiled product, a KernelPlan per M bucket (lrqc.plan),
          verified, and the schedule rule of each bucket (backend/schedule)
    records  the tuning database's traces for the plans, when the caller passes a lookup
    te    plans -> one PrimFunc per function and bucket (backend/te): unscheduled, or TIR
          written as scheduled (the sparse products; lowrank_w on AVX-512)
    tir   -> the scheduled IRModule (a tuning record's trace, else the rule); the GEMMs take
          the call's row count and skip the row tiles past it (backend/rowbound)
    build -> the compiled module (LLVM, or CUDA with an LLVM host part)

Texts: ir, plan, te, tir, and of the built module llvm and asm (CPU) or cuda and ptx (CUDA);
every text but ir comes in one section per M bucket."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from ..backend import rowbound
from ..backend.building import compile_for
from ..backend.compat import Schedule, prim_func, tir, tvm
from ..backend.cuda import schedules as cuda_schedules
from ..backend.cuda import toolchain
from ..backend.schedule.protocol import ScheduleRule
from ..backend.schedule.rules import choose, instruction_proof
from ..backend.schedule.trace import replay
from ..backend.target import Target
from ..backend.te import sparse as te_sparse
from ..backend.te import sparse_quads
from ..frontend.model import Scheme
from ..ir import lower_ast, print_program
from ..ir import nodes as ir
from ..passes import run_passes
from ..plan import names
from ..plan.lower import Part, lower_program
from ..plan.model import KernelPlan
from ..plan.printer import print_plan
from ..plan.signature import ROW_FUNCTIONS, check_params
from .functions import bucket_rule, dense_functions, functions, schedule_function

Key = tuple[str, int, str]  # (part prefix, bucket rows m, function name)


@dataclass(frozen=True)
class Function:
    """One function of one bucket: TE written as a PrimFunc (te stage), then scheduled; or TIR
    written as scheduled."""

    key: Key
    plan: KernelPlan
    rule: ScheduleRule
    func: object  # tvm.tirx.PrimFunc
    scheduled: bool = False  # TIR written as scheduled (sparse products, te.outer_w)

    @property
    def symbol(self) -> str:
        prefix, m, fn = self.key
        return names.symbol(fn, m, prefix)


@dataclass(frozen=True)
class Compilation:
    """What the stages know so far. traces: {(prefix, m, fn): trace JSON} replayed instead of
    the rules (tuning records, lrqc tune's checks); sources: where each traced schedule came
    from (reported by builds)."""

    scheme: Scheme
    M: object
    N: int
    K: int
    target: Target
    traces: dict = field(default_factory=dict)
    sources: dict = field(default_factory=dict)
    # records(plans, rule, target) -> ({(m, fn): trace}, {(m, fn): source}): a tuning
    # database lookup (lrqc.tuning.records.recorded_traces), consulted when traces is empty
    records: Callable[..., tuple[dict, dict]] | None = None
    program: ir.Program | None = None
    parts: tuple[Part, ...] = ()
    rules: tuple[ScheduleRule, ...] = ()  # one per part (its largest bucket's)
    skipped: tuple = ()  # (rule, why) of faster rules that did not apply to the first part
    functions: tuple[Function, ...] = ()
    module: object = None  # the scheduled tvm.IRModule
    executable: object = None  # the compiled module


def stage_ir(c: Compilation) -> Compilation:
    return replace(c, program=run_passes(lower_ast(c.scheme)))


def stage_plan(c: Compilation) -> Compilation:
    parts = lower_program(c.program, c.M, c.N, c.K)
    chosen = [choose(c.target.family, part.plans[-1], c.target) for part in parts]
    return replace(c, parts=parts, rules=tuple(r for r, _ in chosen),
                   skipped=tuple(chosen[0][1]))


def stage_records(c: Compilation) -> Compilation:
    """Traces of the tuning database for a single product's buckets (chains keep their hand
    schedules; traces given by the caller win)."""
    if c.records is None or c.traces or len(c.parts) != 1 or c.parts[0].prefix:
        return c
    found, sources = c.records(c.parts[0].plans, c.rules[0], c.target)
    return replace(c, traces={("", m, fn): t for (m, fn), t in found.items()},
                   sources={("", m, fn): how for (m, fn), how in sources.items()})


def stage_te(c: Compilation) -> Compilation:
    out = []
    for part, rule in zip(c.parts, c.rules, strict=True):
        for plan in part.plans:
            brule = bucket_rule(plan, rule, c.target)
            for j, f in enumerate(te_sparse.functions(
                    plan, cuda=c.target.is_cuda, form=sparse_quads.form(c.target),
                    avx2=not c.target.is_cuda and "avx2" in c.target.features)):
                check_params(plan, f"{names.FN_SPARSE}{j}", [v.name for v in f.params], te=True)
                out.append(Function((part.prefix, plan.m, f"{names.FN_SPARSE}{j}"), plan, brule,
                                    f, scheduled=True))
            for fn, p2, r2, tensors in dense_functions(plan, c.target):  # the GEMM of p2
                mod = prim_func(tensors)
                check_params(plan, fn, [v.name for v in mod["main"].params], te=True)
                out.append(Function((part.prefix, plan.m, fn), p2, r2, mod))
            for fn, tensors in functions(plan, brule).items():
                if isinstance(tensors, tir.PrimFunc):  # TIR written as scheduled
                    check_params(plan, fn, [v.name for v in tensors.params], te=True)
                    out.append(Function((part.prefix, plan.m, fn), plan, brule, tensors,
                                        scheduled=True))
                    continue
                mod = prim_func(tensors)  # TVM 0.27: each parameter is named as its buffer
                check_params(plan, fn, [v.name for v in mod["main"].params], te=True)
                out.append(Function((part.prefix, plan.m, fn), plan, brule, mod))
    return replace(c, functions=tuple(out))


def stage_tir(c: Compilation) -> Compilation:
    with c.target.tvm():  # CUDA rules (dlight) read the current target
        funcs = {f.symbol: _scheduled(f, c.traces.get(f.key)).with_attr("global_symbol",
                                                                          f.symbol)
                 for f in c.functions}
    return replace(c, module=tvm.IRModule(funcs))


def _scheduled(f: Function, trace):
    """The scheduled PrimFunc of f (as written, a recorded trace replayed, or its rule), with
    the call's row count m_rows where it takes one (backend.rowbound)."""
    _, _, fn = f.key
    takes_rows = fn in ROW_FUNCTIONS
    if f.scheduled:
        func = f.func
    elif f.rule.family == "cuda":  # the CUDA schedules record how (HOW attribute)
        func = cuda_schedules.schedule(fn, f.func, f.plan, f.rule, trace)
    else:
        sch = Schedule(f.func)
        if trace is not None:
            replay(sch, trace)
        else:
            schedule_function(fn, sch, f.plan, f.rule)
        func = sch.mod["main"]
    func = rowbound.bound(func, takes_rows)
    if takes_rows:
        check_params(f.plan, fn, [v.name for v in func.params])
    return func


def stage_build(c: Compilation) -> Compilation:
    """The compiled module, not yet linked: the kernel's loader links it (link_now) or writes
    it to a library (its machine code generated once either way)."""
    return replace(c, executable=compile_for(c.module, c.target))


def link_now(c: Compilation) -> None:
    """Link a host CPU target's module now: TVM links lazily, on the first function lookup
    (which JIT-compiles the whole LLVM module), so the kernel's first call would take that
    time instead. A module written to a library (threads="openmp", an artifact) skips this:
    writing it generates the machine code again."""
    if not c.target.is_cuda and not c.target.is_cross and c.functions:
        c.executable[c.functions[0].symbol]


STAGES: dict[str, Callable[[Compilation], Compilation]] = {
    "ir": stage_ir,
    "plan": stage_plan,
    "records": stage_records,
    "te": stage_te,
    "tir": stage_tir,
    "build": stage_build,
}


# ---- the text of each stage ----

def _buckets(c: Compilation) -> list[tuple[str, KernelPlan]]:
    return [(part.prefix, plan) for part in c.parts for plan in part.plans]


def _section(prefix: str, plan: KernelPlan) -> str:
    part = f"product {prefix[:-1]}, " if prefix else ""
    return f"== {part}M bucket {plan.m} =="


def text_ir(c: Compilation) -> str:
    return print_program(c.program)


def text_plan(c: Compilation) -> str:
    out = []
    for part, rule in zip(c.parts, c.rules, strict=True):
        for plan in part.plans:
            brule = bucket_rule(plan, rule, c.target)
            proof = instruction_proof(plan, brule.name, c.target.family)
            out.append(f"{_section(part.prefix, plan)}\n{print_plan(plan)}\n"
                       f"  rule        {brule.name} ({c.target.family})"
                       + (f"\n  instruction {proof}" if proof else ""))
    if c.skipped:
        out.append("== faster rules that did not apply ==\n"
                   + "\n".join(f"  {name}: {why}" for name, why in c.skipped))
    return "\n".join(out)


def _per_bucket(c: Compilation, body: Callable[[Function], str]) -> str:
    out = []
    for prefix, plan in _buckets(c):
        fs = [f for f in c.functions if f.key[:2] == (prefix, plan.m)]
        out.append(_section(prefix, plan) + "\n" + "\n".join(body(f) for f in fs))
    return "\n".join(out)


def text_te(c: Compilation) -> str:
    return _per_bucket(c, lambda f: f"# {f.symbol}"
                       + (" (TIR written as scheduled)" if f.scheduled else "")
                       + "\n" + f.func.script())


def text_tir(c: Compilation) -> str:
    return _per_bucket(c, lambda f: f"# {f.symbol}\n" + c.module[f.symbol].script())


def _host(c: Compilation, kind: str) -> str:
    return c.executable.mod.inspect_source(kind)


def _cuda_source(c: Compilation) -> str:
    return toolchain.cuda_source(c.executable.mod)


def _by_bucket(c: Compilation, text: str, starts: str, other: str = "(?!)") -> str:
    """text cut into its functions (each starts at a line matching `starts`, whose group 1 is
    the function's name; a line matching `other` starts module-level text such as debug
    information) and grouped by M bucket: a function belongs to the bucket whose
    symbol it names, a helper (the parallel loop bodies LLVM outlines) to the bucket of the
    function that refers to it; what belongs to no bucket comes last."""
    chunks, cur = [], ("", [])
    for line in text.splitlines():
        m = re.match(starts, line)
        if m or (cur[0] and re.match(other, line)):
            chunks.append(cur)
            cur = (m.group(1) if m else "", [])
        cur[1].append(line)
    chunks.append(cur)
    owner: dict[int, int] = {}
    buckets = _buckets(c)
    for b, (prefix, plan) in enumerate(buckets):
        syms = [f.symbol for f in c.functions if f.key[:2] == (prefix, plan.m)]
        pat = re.compile(r"(?<![A-Za-z0-9])(" + "|".join(map(re.escape, syms)) + r")(?![0-9])")
        owner.update({i: b for i, (name, _) in enumerate(chunks) if name and pat.search(name)})
    bodies = ["\n".join(lines) for _, lines in chunks]
    found = True
    while found:  # helpers named in an owned function's body, transitively
        found = False
        for i, (name, _) in enumerate(chunks):
            if not name or i in owner:
                continue
            pat = re.compile(r"(?<![\w.$])" + re.escape(name) + r"(?![\w.$])")
            refs = [j for j in owner if pat.search(bodies[j])]
            if refs:
                owner[i], found = owner[refs[0]], True
    out = []
    for b, (prefix, plan) in enumerate(buckets):
        mine = [bodies[i] for i in sorted(owner) if owner[i] == b]
        out.append(_section(prefix, plan) + "\n" + "\n".join(mine))
    rest = [bodies[i] for i in range(len(chunks)) if i not in owner]
    if any(r.strip() for r in rest):
        out.append("== module (no bucket: headers, debug information, TVM's runtime helpers) ==\n"
                   + "\n".join(rest))
    return "\n".join(out)


def text_llvm(c: Compilation) -> str:
    return _by_bucket(c, _host(c, "ll"), r"^define [^@]*@\"?([\w.$]+)",
                      r"^(declare |attributes #|!)")


def text_asm(c: Compilation) -> str:
    return _by_bucket(c, _host(c, "asm"), r"^\s*\.type\s+\"?([\w.$]+)\"?,\s*@function",
                      r"^\s*\.section\s+\.(debug|note)")


def text_cuda(c: Compilation) -> str:
    return _by_bucket(c, _cuda_source(c),
                      r"^extern \"C\" __global__ void (?:__launch_bounds__\([^)]*\) )?([\w$]+)\(")


def text_ptx(c: Compilation) -> str:
    ptx = toolchain.ptx(_cuda_source(c), c.target.archs[0])
    return _by_bucket(c, ptx, r"^\.visible \.entry ([\w$]+)\(")


# emit name -> (the stage after which it exists, its text); CPU and CUDA emits differ
EMITS: dict[str, tuple[str, Callable[[Compilation], str]]] = {
    "ir": ("ir", text_ir),
    "plan": ("plan", text_plan),
    "te": ("te", text_te),
    "tir": ("tir", text_tir),
    "llvm": ("build", text_llvm),
    "asm": ("build", text_asm),
    "cuda": ("build", text_cuda),
    "ptx": ("build", text_ptx),
}
CPU_ONLY, CUDA_ONLY = ("llvm", "asm"), ("cuda", "ptx")
# files of dump_dir: texts with section lines, not sources a tool could read back
FILE_NAMES = {e: f"{e}.txt" for e in EMITS}


def emits_for(target: Target) -> tuple[str, ...]:
    """The emit names that exist for the target."""
    skip = CPU_ONLY if target.is_cuda else CUDA_ONLY
    return tuple(e for e in EMITS if e not in skip)


def run_stages(c: Compilation, emit: tuple[str, ...] = (),
               on_text: Callable[[str, str], None] | None = None) -> Compilation:
    """Run every stage in order; after each, the requested emits that exist by then are
    passed to on_text(emit name, text)."""
    for name, stage in STAGES.items():
        c = stage(c)
        for e in emit:
            if EMITS[e][0] == name and on_text is not None:
                on_text(e, EMITS[e][1](c))
    return c
