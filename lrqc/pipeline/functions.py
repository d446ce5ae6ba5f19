"""The functions of one kernel plan, as the pipeline's te and tir stages make them: their
tensor expressions in the formulation of the plan's schedule rule (functions), and their
schedules (schedule_function: the rule for the integer GEMMs, the shared tile helpers for the
rest; CUDA rules are chosen per M bucket). lrqc tune searches the same functions with knobs."""

from __future__ import annotations

from ..backend.compat import IRModule, Schedule, tir
from ..backend.cuda import schedules as cuda_schedules
from ..backend.rowbound import ROW_TILES
from ..backend.schedule import floats, passes, tiles
from ..backend.schedule import sketch as sketch_schedule
from ..backend.schedule.lanes import dot_rows
from ..backend.schedule.outer import outer_columns_at, outer_dots_at
from ..backend.schedule.protocol import Formulation, Knob, ScheduleRule
from ..backend.schedule.rules import choose, rule_of
from ..backend.target import Target
from ..backend.te import compensated as te_comp
from ..backend.te import floating as te_float
from ..backend.te import gemm as te_gemm
from ..backend.te import outer_w
from ..backend.te import quantize as te_quantize
from ..backend.te import sketch as te_sketch
from ..backend.te import sparse as te_sparse
from ..plan import names
from ..plan import signature as sig
from ..plan.model import KernelPlan
from ..plan.signature import dense_index, dense_name, dense_plan, w_exact, w_from_codes


def functions(plan: KernelPlan, rule: ScheduleRule) -> dict:
    """{function name: TE tensors} of the plan's scheduled functions, the GEMM written in the
    rule's formulation; a PrimFunc where the function is TIR written as scheduled (lowrank_w
    as te.outer_w; the sparse products too: te/sparse.py)."""
    form = rule.formulation
    narrow = rule.family != "cuda" and not rule.wide_floats  # the CPU's AVX2-sized registers
    if plan.float_path:
        funcs = {names.FN_QUANTIZE: te_float.quantize_a(plan),
                 names.FN_GEMM: te_float.gemm(plan, half=form is Formulation.HALF)}
    else:
        pairs, s8 = form is Formulation.PAIRS, form is Formulation.S8
        signed = form is Formulation.SIGNED
        fast = rule.family != "cuda"
        funcs = {  # A's codes flipped where the GEMM reads them so (te.flipped)
            names.FN_QUANTIZE: (te_comp.quantize_a(plan, fast=fast, flip=signed,
                                                   narrow=narrow)
                                if plan.compensated
                                else te_quantize.quantize_a(plan, fast=fast, flip=signed)),
            names.FN_GEMM: te_gemm.gemm(plan, pairs=pairs, s8=s8, start=rule.sums_start,
                                        out_start=rule.output_start,
                                        scale_pairs=rule.scale_pairs, signed=signed),
            names.FN_ACC: te_gemm.gemm(plan, int_only=True, pairs=pairs, s8=s8,
                                       start=rule.sums_start, signed=signed),
        }
        if sig.scale_pairs(plan) and rule.family != "cuda":  # for calls the pairs cannot hold
            funcs[names.FN_GEMM_GROUPS] = te_gemm.gemm(plan, pairs=pairs, s8=s8,
                                                       start=rule.sums_start,
                                                       out_start=rule.output_start,
                                                       signed=signed)
    if plan.rank_b:
        funcs[names.FN_LOWRANK_U] = te_comp.lowrank_u(
            plan, flip=form is Formulation.SIGNED and not plan.float_path,
            narrow=narrow)
    if w_from_codes(plan) and outer_w.takes(plan, rule.wide_floats):
        funcs[names.FN_LOWRANK_W] = outer_w.outer_w(plan)
    elif w_from_codes(plan):
        funcs[names.FN_LOWRANK_W] = te_comp.lowrank_w(plan, lanes=rule.family != "cuda")
    if w_exact(plan) and rule.family != "cuda":  # the GPU's W: the host's BLAS
        for held, fn in sig.EXACT_W.items():  # B in float32 or an exact 16-bit copy
            funcs[fn] = te_comp.exact_w(plan, held, wide=rule.wide_floats)
    if sig.r_products(plan) and rule.family != "cuda":  # the GPU's: the host's BLAS
        funcs[names.FN_RESID_TQ] = te_comp.resid_tq(plan, wide=rule.wide_floats)
        funcs[names.FN_RESID_Z] = te_comp.resid_z(plan, wide=rule.wide_floats)
    if names.FN_SKETCH_AB in sig.cpu_functions(plan) and rule.family != "cuda":  # (the GPU's:
        #   the host's BLAS)
        funcs[names.FN_SKETCH_AB] = te_sketch.sketch_ab(plan)
    return funcs


def dense_functions(plan: KernelPlan, target: Target) -> list[tuple[str, KernelPlan,
                                                                    ScheduleRule, list]]:
    """(name, plan, rule, TE tensors) of the dense formulation of every sparse product that
    has one (signature.dense_plan; CPU targets only): the GEMM of its own plan, scheduled by
    the x86 rule that applies to that plan (the term's format decides the instruction)."""
    if target.is_cuda:
        return []
    out = []
    for j in range(len(plan.sparse)):
        p2 = dense_plan(plan, j)
        if p2 is not None:
            rule = choose(target.family, p2, target)[0]
            out.append((dense_name(j), p2, rule, te_sparse.dense(
                plan, j, pairs=rule.formulation is Formulation.PAIRS,
                signed=rule.formulation is Formulation.SIGNED)))
    return out


def _cin_first(sch: Schedule) -> None:
    """The dense formulation's C (Cin) read at the start of each row tile whose sums run
    under it, into a local tile, so its lines arrive while the sums run: C comes from the
    GEMM's streamed stores (from memory), and a tile's rows are 16 KB apart at N = 4096, which
    no prefetcher follows. At 256 x 4096 x 4096 (35 %, a 2-core Zen 4, alternating processes)
    9.88-9.92 against 9.97-10.01 ms (A's copy's term) and 10.05-10.14 against 10.18-10.27
    (B's), the GEMM 9.5. Schedules whose epilogue runs after a panel's sums (the k-outer
    variant, AMX's tiles: the loop over rows there holds no sums) keep it as it is."""
    out = sch.get_sblock(names.OUT)
    reads = [r.source.name for r in sch.get(out).reads]
    tile = next((lp for lp in sch.get_loops(out)
                 if ROW_TILES in sch.get(lp).annotations), None)
    if sig.CIN not in reads or tile is None or not any(
            sch.get(b).name_hint.startswith(names.ACC) for b in sch.get_child_blocks(tile)):
        return
    cin = sch.cache_read(out, reads.index(sig.CIN), "local")
    sch.compute_at(cin, tile, index=-2)  # the first position in the tile: before its sums
    cols = sch.get_loops(cin)[-1]
    if int(sch.get(cols).extent) % 16 == 0:
        sch.vectorize(sch.split(cols, [None, 16])[1])


def _dense_codes(sch: Schedule) -> None:
    """The u8 copy of the dense formulation's A side: rows in parallel, 16 codes a vector;
    from A's residual codes transposed (Rt, K x M: A's terms), in 16 x 16 tiles, blocks of 16
    rows in parallel, so each tile's 16 lines of Rt are read from L1 (row by row, every code is
    a line of Rt apart: the dense product of A's terms at 256 x 4096 x 4096 on AMX took 3.36 ms,
    3.07 in tiles, against 2.46 for the GEMM, same run)."""
    blk = sch.get_sblock(names.DENSE_CODES)
    i, k = sch.get_loops(blk)
    rows, ks = (int(sch.get(lp).extent) for lp in (i, k))
    if sch.get(blk).reads[0].source.name == "Rt" and rows % 16 == 0 and ks % 16 == 0:
        io, ii = sch.split(i, [None, 16])
        ko, ki = sch.split(k, [None, 16])
        sch.reorder(io, ko, ii, ki)
        sch.parallel(io)
        sch.unroll(ki)
        return
    sch.parallel(i)
    if ks % 16 == 0:
        sch.vectorize(sch.split(k, [None, 16])[1])


def fixed_rows(mod: IRModule, plan: KernelPlan) -> IRModule:
    """The module with A fixed at the bucket's rows (quantize_a takes a flat A of any rows up
    to them: te a_placeholder's free rows): what tuning schedules, runs and measures; its
    traces replay onto the free-rows function, whose loops are the same."""
    func = mod["main"]
    a = next((b for b in func.params if b.name == sig.A
              and not all(isinstance(d, tir.IntImm) for d in b.shape)), None)
    if a is None:
        return mod
    fixed = tir.decl_buffer((plan.m * plan.k,), a.dtype, a.name)
    return IRModule({"main": func.specialize({a: fixed})})


def variants(fn: str, plan: KernelPlan, rule: ScheduleRule) -> tuple:
    """The structural alternatives (loop orders) of fn's schedule; the hand one (variant
    None) is the rule's choice, usually the first."""
    if fn == names.FN_GEMM and not plan.float_path:
        return tuple(rule.variants(plan))
    return (None,)


def schedule_function(fn: str, sch: Schedule, plan: KernelPlan, rule: ScheduleRule,
                      knob: Knob | None = None, variant: str | None = None) -> str | None:
    """Schedule function fn of plan in sch. knob(name, candidates, hand) picks each tunable
    choice (None: the hand choices; lrqc tune passes a sampler); variant: one of variants().
    CUDA: returns how it was scheduled, or None when fn is left to TVM's dlight rules."""
    if rule.family == "cuda":
        return cuda_schedules.schedule_into(fn, sch, plan, rule, knob)
    wide = rule.wide_floats  # the float32 products' blocks by the target's vector registers
    if fn == names.FN_QUANTIZE:
        if plan.compensated and not plan.float_path:
            passes.compensated_pass(sch, knob, wide)
        else:
            passes.quantize_pass(sch, knob)
    elif plan.float_path and fn == names.FN_GEMM:
        floats.float_gemm(sch, plan, knob)  # one float32 tile for every x86/LLVM target
    elif fn == names.FN_LOWRANK_U and tiles.has_block(sch, names.LOWRANK_U + names.ACROSS):
        outer_dots_at(sch, names.LOWRANK_U, wide)  # AVX2: A' widened a block of rows
    elif fn == names.FN_LOWRANK_U:
        passes.row_dots_at(sch, names.LOWRANK_U, knob, dot_rows(plan.mp, wide), wide)
    elif fn in sig.EXACT_W.values() and tiles.has_block(sch, names.EXACT_W + names.ACROSS):
        outer_dots_at(sch, names.EXACT_W, wide)  # Bᵀ in float32, 16 ranks a block
    elif fn in sig.EXACT_W.values():  # DOT_BLOCK's rows of Bᵀ a block (4 on AVX-512: 2.2-2.4 ms
        # against 3.9 for numpy's BLAS on 2 threads at N = K = 4096, rank 16, B (64 MB) warm in
        # the last-level cache, AMX Xeon, 2 cores; from memory at its measured 27-29 GB/s, B's
        # read alone is 2.3 ms)
        passes.row_dots_at(sch, names.EXACT_W, knob, dot_rows(plan.n, wide), wide)
    elif fn == names.FN_RESID_Z and tiles.has_block(sch, names.RESID_Z + names.ACROSS):
        outer_dots_at(sch, names.RESID_Z, wide)  # AVX2: R's rows as broadcasts
    elif fn == names.FN_RESID_Z:  # DOT_BLOCK's rows of R a block (4 on AVX-512: R Z at 2048 x
        # 2048, 24 ranks, 0.85 ms against 1.2-1.3 for numpy's BLAS on 2 threads, same run; AMX
        # Xeon, 2 cores)
        passes.row_dots_at(sch, names.RESID_Z, knob, dot_rows(plan.mp, wide), wide)
    elif fn == names.FN_SKETCH_AB:
        sketch_schedule.sketch_ab(sch)
    elif fn == names.FN_RESID_TQ and tiles.has_block(sch, names.RESID_TQ + names.ACROSS):
        outer_columns_at(sch, names.RESID_TQ)  # AVX2: 4 of R's columns a block
    elif fn == names.FN_RESID_TQ:
        passes.col_dots_at(sch, names.RESID_TQ, knob, wide)
    elif fn == names.FN_LOWRANK_W and tiles.has_block(sch, names.LOWRANK_W + "_fa"):  # lanes_w
        passes.lanes_w_at(sch, names.LOWRANK_W, knob, rule.wide_floats)
    elif fn == names.FN_LOWRANK_W:  # F_Aᵀ times B's dequantized 16-column panels
        floats.panel_gemm(sch, names.LOWRANK_W, knob)
    else:
        rule.schedule(fn, sch, plan, knob=knob, variant=variant)
        if dense_index(fn) is not None:
            _dense_codes(sch)
            _cin_first(sch)
    return None


def bucket_rule(plan: KernelPlan, rule: ScheduleRule, target: Target) -> ScheduleRule:
    """The rule of one M bucket: CUDA rules are chosen per bucket (tensor cores need 64-row
    tiles; small buckets take dp4a), CPU rules once per kernel (its largest bucket)."""
    if rule.family == "cuda":
        return choose("cuda", plan, target)[0]
    return rule


def hand_source(fn: str, plan: KernelPlan, rule: ScheduleRule) -> str:
    """How function fn of the plan is scheduled on a CPU without a tuning record."""
    name = rule_of(plan, rule)[0]
    return f"hand schedule {name}" if fn == names.FN_GEMM else "hand schedule"
