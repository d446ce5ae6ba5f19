"""The buffers and argument lists of a compiled Kernel: Packed (the static operand pack()
prepared) and Bucket (one compiled row count: its functions, looked up once, its scratch
buffers and the argument lists each compiled function is called with).

Arguments are bound by name: a function's parameters are lrqc.plan.signature.params(plan, fn)
(the pipeline checks every compiled function against them), and each is the bucket's buffer of
that name (its scratch buffers and the compensated glue's, CompBuffers.buffers) or the packed
operand's tensor of that name (Packed.tensors: layout.PackedOperand.params). The binding is
made once per bucket; a call only looks up the packed operand's tensors."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

import numpy as np

from ..backend.compat import allocator, empty, tensor
from ..backend.schedule.rules import choose
from ..backend.target import Target
from ..backend.te import sparse_quads
from ..backend.te.sparse import tile
from ..errors import InputError
from ..plan import names, ranges, segments
from ..plan import signature as sig
from ..plan.layout import PARAM_NAMES, PARAMS, PackedOperand, SparseCodes, SparseCsr, SparseDense
from ..plan.model import KernelPlan
from ..plan.verify import PlanError
from .checks import pairs_hold
from .glue import CompBuffers, Tensor, on_cpu, view
from .linalg import Runner, parts_on, pmatmul

DENSE_KINDS = {"x86_amx": "amx", "x86_vnni": "vnni"}  # rule -> kind of segments.crossover
# (parameter name, the bucket's buffer, or None: the packed operand's tensor of that name)
Bound = tuple[tuple[str, Tensor | None], ...]


@dataclass
class Packed:
    """The static operand prepared by Kernel.pack: its numpy arrays and their TVM tensors by
    parameter name (tensors: those of the GEMM, lowrank_u, lowrank_w and exact_w; sparse: each
    sparse product's)."""

    arrays: PackedOperand
    tensors: dict[str, Tensor]
    fingerprint: dict[str, str]  # layout.fingerprint of the kernel that made it
    notes: tuple[str, ...] = ()  # e.g. whether a sparse term's copy of B is sparse or dense
    sparse: tuple[dict[str, Tensor], ...] = ()
    limits: tuple[float, float, float, float, int] | None = None  # direct.limits' numbers
    normal_gb: bool | None = None  # checks.pairs_hold: its column scales gb normal in float32


# the arrays each kernel's pack() made -> that kernel's fingerprint (Kernel.adopt checks it)
MADE: weakref.WeakKeyDictionary[PackedOperand, dict[str, str]] = weakref.WeakKeyDictionary()


def dense_kinds(plan: KernelPlan, target: Target) -> dict[int, str]:
    """{sparse product: the kind of segments.crossover}: "amx" or "vnni" where the AMX or the
    AVX-512 VNNI rule schedules its dense formulation (as pipeline.functions.dense_functions
    chooses), "vnni4" for VNNI's and "avx2q" for the others' with the sparse product four
    nonzeros at a time (sparse_quads.quads); absent: AVX2's crossovers."""
    if target.is_cuda:
        return {}
    out = {}
    form = sparse_quads.form(target)
    for j in range(len(plan.sparse)):
        p2 = sig.dense_plan(plan, j)
        if p2 is not None:
            kind = DENSE_KINDS.get(choose(target.family, p2, target)[0].name)
            if sparse_quads.quads(plan, j, form):  # the sparse form four at a time
                kind = {"vnni": "vnni4", None: "avx2q" if form == "avx2" else None}.get(kind, kind)
            if kind is not None:
                out[j] = kind
    return out


def sparse_operands(plan: KernelPlan, sparse: tuple, dev: Any, target: Target
                    ) -> tuple[dict[str, Tensor], ...]:
    """The tensors of every sparse product's static operand (sparse_tensors), laid out for the
    function the target compiles for it (te/sparse.py, te/sparse_quads.py)."""
    form = sparse_quads.form(target)
    return tuple(sparse_tensors(sp, dev, panels=not target.is_cuda,
                                quads=form if sparse_quads.quads(plan, j, form) else "")
                 for j, sp in enumerate(sparse))


def held_codes(plan: KernelPlan, target: Target) -> str:
    """How the target's functions hold a packed operand's arrays beyond their layout (the
    fingerprint's "held" entry), "" where as everywhere: B's sparse terms' residual codes as
    sparse_quads.panel_codes."""
    form = sparse_quads.form(target)
    quads = [str(j) for j, sp in enumerate(plan.sparse)
             if sp.side == "a" and sparse_quads.quads(plan, j, form)]
    how = {"vnni": "D + 128 in VNNI", "avx2": "D in AVX2"}.get(form, "")
    return f"sparse product {', '.join(quads)}: {how} quad panels" if quads else ""


def sparse_tensors(arrays: SparseCodes | SparseCsr | SparseDense, dev: Any, panels: bool,
                   quads: str = "") -> dict[str, Tensor]:
    """The tensors of one sparse product's static operand by parameter name. panels (the CPU
    functions): B's residual codes D[Kq, Np] as panels of W columns, Dp[Np/W, Kq, W]
    (te/sparse.py: sparse_a keeps a panel in L2 while every row adds to it); quads (a
    sparse_quads.form): as sparse_quads.panel_codes (the quads' column order)."""
    out = {}
    for name, v in arrays.params():
        if quads and name == sig.SPARSE_A_STATIC[0]:
            v = sparse_quads.panel_codes(v, quads)
        elif panels and name == sig.SPARSE_A_STATIC[0]:
            kq, np_ = v.shape
            w = tile(np_)
            v = np.ascontiguousarray(v.reshape(kq, np_ // w, w).transpose(1, 0, 2))
        out[name] = tensor(v, dev)
    return out


def static_tensors(arrays: PackedOperand, dev: Any, exact_w: bool
                   ) -> tuple[PackedOperand, dict[str, Tensor]]:
    """(arrays, their TVM tensors by parameter name) of pack()'s arrays on dev; Bᵀ gets a
    tensor only where exact_w reads it. In host memory the arrays returned are views of the
    tensors (aligned copies), so each array is held once; arrays of types numpy has no
    DLPack code for (ml_dtypes' bfloat16 and 8-bit floats, kind "V") stay as they are."""
    tensors: dict[str, Tensor] = {}
    views: dict[str, Any] = {}  # field -> its view
    if arrays.b32t is not None:
        arrays = held_bt(arrays, exact_w)
    for field, name in PARAMS:
        v = getattr(arrays, field)
        if v is None or (name == sig.BT and not exact_w):
            continue
        t = tensors[name] = tensor(v, dev)
        if on_cpu(t) and v.dtype.kind != "V":
            views[field] = view(t)
    return replace(arrays, **views), tensors


def held_bt(arrays: PackedOperand, exact_w: bool) -> PackedOperand:
    """arrays with Bᵀ (A's lowrank term, other=exact) as exact_w reads it best: where exact_w
    runs, an exact 16-bit copy (bfloat16's bits as uint16, else float16) when every value of
    B is one (weights from a bfloat16 or float16 model: half the bytes to hold and to read
    per call), with a note; elsewhere float32 (numpy's BLAS: a copy saved by a CPU kernel is
    widened back, exactly)."""
    bt = arrays.b32t
    if bt is None:
        return arrays
    if bt.dtype not in (np.float32, np.uint16, np.float16) or not bt.dtype.isnative:
        raise InputError(f"packed operand: Bᵀ of A's lowrank term held as {bt.dtype}, not "
                         "float32, bfloat16 bits (uint16) or float16: pack B again")
    if not exact_w:
        if bt.dtype == np.uint16:
            bt = (bt.astype(np.uint32) << 16).view(np.float32)
        notes = tuple(n for n in arrays.notes if not n.startswith(HELD_NOTE))
        return replace(arrays, b32t=bt.astype(np.float32, copy=False), notes=notes)
    if bt.dtype != np.float32:
        return arrays  # (held in 16 bits already: a saved pack)
    kind = _16_bit_kind(bt)
    if kind is None:
        return arrays
    bits = bt.view(np.uint32)
    held = (bits >> 16).astype(np.uint16) if kind == "bfloat16" else bt.astype(np.float16)
    note = (f"{HELD_NOTE}{kind} for A's lowrank term (every value of B is one: 2 bytes per "
            "weight instead of 4, the same numbers)")
    return replace(arrays, b32t=held, notes=(*arrays.notes, note))


HELD_NOTE = "B held as "  # the start of held_bt's note


def _16_bit_kind(bt: np.ndarray, rows: int = 256) -> str | None:
    """The 16-bit type that holds every value of the float32 bt exactly: "bfloat16" where
    each value's low 16 bits are zero, else "float16" where each value is a float16's (bit for
    bit, -0.0 included), else None; checked `rows` rows at a time (no temporary of bt's
    size)."""
    bits = bt.view(np.uint32)
    if not any(np.any(bits[r:r + rows] & 0xFFFF) for r in range(0, len(bt), rows)):
        return "bfloat16"
    for r in range(0, len(bt), rows):
        part = bt[r:r + rows]
        with np.errstate(over="ignore"):  # past float16's range: infinite, so not equal
            wide = part.astype(np.float16).astype(np.float32)
        if not np.array_equal(wide.view(np.uint32), part.view(np.uint32)):
            return None
    return "float16"


_LOOKUP = threading.Lock()  # module function lookups (a CUDA module links on the first one)


def _bind(plan: KernelPlan, fn: str, own: dict[str, Tensor], packed: frozenset[str]) -> Bound:
    """fn's arguments: each parameter from the bucket's buffers `own`, else from the packed
    operand (whose parameter names are `packed`); PlanError for one that neither holds."""
    out = []
    for name in sig.params(plan, fn):
        if name == sig.M_ROWS:  # a scalar: the call's row count (call_args)
            out.append((name, None))
            continue
        if name not in own and name not in packed:
            raise PlanError(f"kernel plan of '{plan.scheme.name}' at M={plan.m}: no buffer for "
                            f"parameter '{name}' of function '{fn}'")
        out.append((name, own.get(name)))
    return tuple(out)


def call_args(bound: Bound, t: dict[str, Tensor], rows: int | None = None) -> list[Any]:
    """The argument list of bound parameters, the packed operand's from t, m_rows `rows` (a
    function that takes m_rows is never called without it: TVM refuses None)."""
    return [rows if name == sig.M_ROWS else t[name] if b is None else b for name, b in bound]


class Bucket:
    """Functions and scratch buffers of one compiled row count; `lock` guards the buffers (held
    from the copy of A to the read of C). dense: the module has the CPU-only functions
    (signature.cpu_functions: the dense formulations, exact_w, resid_tq and resid_z)."""

    def __init__(self, plan: KernelPlan, module: Any, prefix: str = "", dev: Any = None,
                 dense: bool = True, kinds: dict[int, str] | None = None):
        p = self.plan = plan
        self.kinds = kinds or {}  # what each sparse product's dense formulation runs on
        self.module = module
        self.prefix = prefix
        self.lock = threading.Lock()
        self.rows = p.mp  # the rows of the last quantize_a's call: the GEMM computes those
        self._fns: dict[str, Any] = {}
        self.runner: Runner | None = None  # where compensate's numpy parts run (None: linalg's
        #   pool; the kernel's OpenMP threads where its loops run there: Kernel.threads)
        e = partial(empty, dev=dev)
        self.af = e((p.mp, p.kp), "float32") if p.float_path else None
        self.saf = e((p.mp,), "float32") if p.half else None  # A's row scales (16-bit values)
        self.aq = e((p.mp, p.kp), "uint8")
        self.sa = e((p.mp, p.groups), "float32")
        self.zc = e((p.mp, p.groups), "int32")
        self.c = e((p.mp, p.np_), "float32")
        self.new_c = allocator((p.mp, p.np_), "float32", self.c.device)  # fresh_output
        self.a = e((p.m, p.k), "float32")
        self.ra = e((p.mp, p.groups), "int32") if p.b_zero else None
        pairs = sig.scale_pairs(p)  # two-level integer scales the GEMM sums as int16 pairs
        self.sqa = e((p.mp, p.groups), "int16") if pairs else None
        self.ga = e((p.mp, 1), "float32") if pairs else None
        self.u = tensor(p.noise(), dev) if p.stochastic_a else None
        # W_A by exact_w (a CPU-only function, where the plan has it), else numpy's BLAS
        self.exact_w = dense and names.FN_EXACT_W in sig.cpu_functions(p)
        # the randomized SVD's products with R by resid_tq and resid_z (CPU), else numpy's
        self.r_products = dense and names.FN_RESID_TQ in sig.cpu_functions(p)
        # the rank-1 sketch's R u and Rᵀ R u by sketch_ab (CPU), else numpy's
        sketch_ab = dense and names.FN_SKETCH_AB in sig.cpu_functions(p)
        self.comp = CompBuffers(p, dev, self.exact_w, self.r_products, sketch_ab) \
            if p.compensated else None
        self.buffers = self._buffers()
        self.pairs = ranges.scale_pairs(p) if dense and sig.scale_pairs(p) else None  # gemm()
        own = (*(sig.EXACT_W.values() if self.exact_w else ()),
               *((names.FN_GEMM_GROUPS,) if self.pairs else ()),
               *((names.FN_RESID_TQ, names.FN_RESID_Z) if self.r_products else ()),
               *((names.FN_SKETCH_AB,) if sketch_ab else ()))
        self.bound = {fn: _bind(p, fn, self.buffers, PARAM_NAMES)
                      for fn in (*sig.functions(p), *own) if sig.sparse_index(fn) is None}
        self._quantize_args = call_args(self.bound[names.FN_QUANTIZE], {})  # all the bucket's
        # a caller's A (any rows up to the bucket's: te a_placeholder's free rows) may stand in
        # for the bucket's where no function but quantize_a reads A
        self.lends_a = on_cpu(self.a) and not any(
            sig.A in sig.params(p, fn) for fn in sig.functions(p) if fn != names.FN_QUANTIZE)
        self._a_at = [n for n, _ in self.bound[names.FN_QUANTIZE]].index(sig.A)
        self.sparse_bound = tuple(self._sparse_bound(j) for j in range(len(p.sparse)))
        # the dense formulations compiled (CPU targets): {j: their arguments}
        self.dense_bound = {sig.dense_index(fn): self._sparse_bound(sig.dense_index(fn), fn)
                            for fn in (sig.dense_functions(p) if dense else ())}

    def _buffers(self) -> dict[str, Tensor]:
        """The bucket's buffers by parameter name (two names where quantize_a's output is
        another function's input)."""
        p = self.plan
        a = self.a._create_view((p.m * p.k,))  # quantize_a takes A flat (any rows)
        own = {sig.A: a, sig.U: self.u, names.QUANT_CODES: self.aq, sig.AQ: self.aq,
               sig.SA: self.sa, sig.ZC: self.zc, sig.SA_ALL: self.sa, sig.ZC_ALL: self.zc,
               names.QUANT_ROWSUM: self.ra, sig.RA: self.ra, sig.SQA: self.sqa, sig.GA: self.ga,
               names.QUANT_FLOAT: self.af,
               sig.AF: self.af, names.QUANT_ROW_SCALE: self.saf, sig.SAF: self.saf,
               names.OUT: self.c}
        if self.comp is not None:
            own.update(self.comp.buffers())
            if not p.float_path:  # the compensated quantize_a writes every segment's codes
                own[names.QUANT_CODES] = self.aq._create_view((p.mp, p.nseg, p.kq))
        return {name: t for name, t in own.items() if t is not None}

    def _sparse_bound(self, j: int | None, fn: str | None = None) -> Bound:
        """The arguments of sparse product j's function fn (default: its sparse one); the
        dense formulation reads and writes C (Cin, C)."""
        if self.comp is None or j is None:
            raise PlanError(f"kernel plan of '{self.plan.scheme.name}': sparse products "
                            "without compensation buffers")
        own = {**self.comp.sparse_buffers(j), names.OUT: self.c, sig.CIN: self.c}
        a = self.plan.sparse[j].side == "a"
        static: tuple[str, ...]
        if fn is None:
            fn, static = f"{names.FN_SPARSE}{j}", sig.SPARSE_A_STATIC if a else sig.SPARSE_B_STATIC
        else:
            static = sig.DENSE_A_STATIC if a else sig.DENSE_B_STATIC
        return _bind(self.plan, fn, own, frozenset(static))

    def quantize(self, a: Tensor | None = None, rows: int | None = None) -> None:
        """quantize_a on the bucket's A, or on `a` (compat.lend: a flat tensor over the
        caller's A, where lends_a). rows: the call's (A's true rows; None: the bucket's), which
        the GEMM and int_acc that follow compute (the row tiles past them are skipped)."""
        self.rows = self.plan.mp if rows is None else rows
        args = self._quantize_args
        if a is not None:
            args = [*args[:self._a_at], a, *args[self._a_at + 1:]]
        self.fn(names.FN_QUANTIZE)(*args)

    def run(self, fn: str, packed: Packed, out: Tensor | None = None) -> None:
        """Function fn (gemm, lowrank_u, lowrank_w, exact_w, resid_tq, resid_z) on the
        bucket's buffers and the packed operand; out: a tensor of C's shape to write C into
        instead of the bucket's buffer."""
        bound = self.bound[fn]
        if out is not None:
            bound = tuple((name, out if name == names.OUT else b) for name, b in bound)
        self.fn(fn)(*call_args(bound, packed.tensors, self.rows))

    def gemm(self, m: int, packed: Packed) -> str:
        """The GEMM of a call of m rows: gemm, or gemm_groups where its numbers leave the int16
        pairs (checks.pairs_hold)."""
        pairs = self.pairs
        hold = pairs is None or pairs_hold(pairs, view(self.zc)[:m], view(self.ga)[:m], packed)
        return names.FN_GEMM if hold else names.FN_GEMM_GROUPS

    def fresh_output(self) -> Tensor:
        """A new tensor for the GEMM's C that the call can hand to its caller as it is (no copy
        of C out of the bucket's buffer; the sparse products add to it: sparse(packed, out))."""
        return self.new_c()

    def int_acc(self, packed: Packed, out: Tensor) -> None:
        """The integer accumulation into out (its output C)."""
        bound = tuple((name, out if name == names.OUT else b)
                      for name, b in self.bound[names.FN_ACC])
        args = call_args(bound, packed.tensors, self.rows)
        self.fn(names.FN_ACC)(*args)

    def compensate(self, m: int, packed: Packed) -> None:
        """The per-call work between quantize_a and the GEMM: U and W of the epilogue."""
        if self.comp is None:
            return
        if self.plan.rank_a:
            with parts_on(self.runner):
                self.comp.a_epilogue(m, self._w_of(packed), lambda fn: self.run(fn, packed))
        if self.plan.rank_b:
            self.run(names.FN_LOWRANK_U, packed)

    def _w_of(self, packed: Packed) -> Callable[[np.ndarray], np.ndarray]:
        """F_Aᵀ -> F_Aᵀ B (r x N) for A's lowrank term: from the exact B pack keeps (float32,
        or in 16 bits: held_bt; other=exact), or from B's codes by lowrank_w plus B's own
        terms (other=packed)."""
        comp = self.comp
        if comp is None:
            raise PlanError(f"kernel plan of '{self.plan.scheme.name}': no compensation buffers")
        if sig.w_from_codes(self.plan):
            def from_codes(ft: np.ndarray) -> np.ndarray:
                comp.set_fa(ft)
                self.run(names.FN_LOWRANK_W, packed)
                return comp.held_w(ft, packed.arrays)
            return from_codes
        b32t = packed.arrays.b32t  # pack keeps Bᵀ for A's lowrank term
        if b32t is None:
            raise PlanError(f"kernel plan of '{self.plan.scheme.name}': a packed operand "
                            "without B for A's lowrank term")
        if self.exact_w:
            def from_bt(ft: np.ndarray) -> np.ndarray:
                comp.set_fa(ft)
                self.run(sig.EXACT_W[str(b32t.dtype)], packed)
                return view(comp.Wx).T  # a W past float32 makes C infinite, as below
            return from_bt
        # (Bᵀ F)ᵀ: one row block of Bᵀ per core (2048^2 x 16: 1.4 ms against 1.8 for F B);
        # a W past float32 (B near its largest values) makes C infinite: _call refuses it
        return lambda ft: pmatmul(b32t, np.ascontiguousarray(ft.T, np.float32), True).T

    def sparse(self, packed: Packed, out: Tensor | None = None) -> list[str]:
        """C += the sparse products (after the GEMM), each in its sparse or dense formulation:
        B's terms by the density of A's copy this call (quantize_a's dens), A's terms as pack
        chose (B's copy as CSR or as VNNI blocks). out: the C the GEMM wrote, when not the
        bucket's own (run(..., out)). Returns notes on B's terms' choices."""
        notes = []
        for j, bound in enumerate(self.sparse_bound):
            sp, t = self.plan.sparse[j], packed.sparse[j]
            if sp.side == "b":
                dense = sig.DENSE_B_STATIC[0] in t
            elif j not in self.dense_bound:
                dense = False
                notes.append(segments.formulation_note("a", sp.n, 0.0, None))
            else:
                d = self.a_density(j)
                kind = self.kinds.get(j, "")
                dense = segments.dense_wins(d, "a", kind)
                notes.append(segments.formulation_note("a", sp.n, d, dense, kind))
            if dense:
                bound = self.dense_bound[j]
            fn = self.fn(sig.dense_name(j) if dense else f"{names.FN_SPARSE}{j}")
            if out is not None:
                bound = tuple((n, out if n in (names.OUT, sig.CIN) else b) for n, b in bound)
            fn(*call_args(bound, t))
        return notes

    def a_density(self, j: int) -> float:
        """The density of A's copy for sparse product j (side a) in the last quantize_a: its
        thresholded copy's, or 1 above max_density (the whole of A)."""
        comp = self.comp
        if comp is None or comp.dens is None:
            raise PlanError(f"kernel plan of '{self.plan.scheme.name}': no densities")
        sp = self.plan.sparse[j]
        d = float(view(comp.dens)[comp.a_copies.index(sp)])
        return 1.0 if d > sp.term.max_density else d

    def fn(self, name: str) -> Any:
        """The compiled function, looked up on first use (a cross-compiled module cannot run
        here) and kept: calls do not repeat the module lookup."""
        f = self._fns.get(name)
        if f is None:
            with _LOOKUP:
                f = self._fns[name] = self.module[names.symbol(name, self.plan.m, self.prefix)]
        return f
