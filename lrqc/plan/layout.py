"""pack(): the static operand B quantized by the reference quantizer and laid out for the
kernels as a PackedOperand: Bp[N/16, K/4, 16, 4] int8 (one 64-byte VNNI block per 16 columns x
4 k), scales sb[G, N] and column sums cs[G, N] per K-group, and the arrays of the float path,
the low-rank epilogue, the bias and the sparse products (fingerprint.py ties them to the kernel
they were made for). numpy only."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import ml_dtypes
import numpy as np

from ..errors import InputError
from ..frontend.model import FloatOperand, Granularity, Quant, QuantOperand
from ..frontend.unparse import quant_text
from ..reference.inputs import as_matrix, round_float
from ..reference.minifloat import frac_bits
from ..reference.quant import QArray, integer_codes, quantize
from ..reference.residual import TermResult, apply_terms, sparse_quant
from . import packing, ranges, segments
from . import signature as sig
from .model import KernelPlan
from .sparse_arrays import SparseCodes, SparseCsr, SparseDense
from .verify import PlanError

# PackedOperand's fields that the compiled functions read, with their parameter names
PARAMS = (("bp", sig.BP), ("sb", sig.SB), ("cs", sig.CS), ("zb", sig.ZB), ("sqb", sig.SQB),
          ("gb", sig.GB), ("cqb", sig.CQB), ("bf", sig.BF), ("sbf", sig.SBF), ("zbf", sig.ZBF),
          ("lbt", sig.LBT), ("wb", sig.WB), ("bias", sig.BIAS), ("b32t", sig.BT))
PARAM_NAMES = frozenset(name for _, name in PARAMS)


@dataclass(frozen=True, eq=False)
class PackedOperand:
    """pack()'s arrays; those a plan does not use are None. Each field's parameter name (PARAMS)
    is what runtime/manifest.py's LAYOUTS documents."""

    bp: np.ndarray | None = None  # Bp: the integer codes (VNNI blocks, or densely packed)
    sb: np.ndarray | None = None  # sb [G, Np] float32: scales per K-group
    cs: np.ndarray | None = None  # cs [G, Np] int32: column sums of the stored codes
    zb: np.ndarray | None = None  # zb [G, Np] int32: zero point - storage offset (b_zero)
    sqb: np.ndarray | None = None  # sqb [G/2, Np, 2] uint8 or int16: integer scales, groups
    #   in pairs (signature.scale_pairs)
    gb: np.ndarray | None = None  # gb [1, Np] float32: their columns' float scales
    cqb: np.ndarray | None = None  # cs as sqb (the pairs' zero corrections: zero_pairs)
    bf: np.ndarray | None = None  # Bf [Np/16, Kp, 16]: the float path's values (or 16-bit codes)
    sbf: np.ndarray | None = None  # sbf [1, Np] float32: column scales of 16-bit codes; or
    #   [Gb, Np]: the scales of weight-only codes per K group of B's quantizer
    zbf: np.ndarray | None = None  # zbf [Gb, Np] float32: their zero points - storage offset
    lbt: np.ndarray | None = None  # LBt [r, Kq] float32: B's lowrank factor L_Bᵀ
    wb: np.ndarray | None = None  # Wb [r, Np] float32: F_Bᵀ, the epilogue's W for B's term
    bias: np.ndarray | None = None  # bias [1, Np] float32: added to every row of C (zeros: none)
    b32t: np.ndarray | None = None  # Bᵀ (N x K float32) for A's lowrank term with
    #   other=exact: W = (Bᵀ F)ᵀ by exact_w (CPUs, K a multiple of 16; the runtime may hold it
    #   in 16 bits, buckets.held_bt) or numpy's BLAS
    #   (other=packed: None, lowrank_w reads bp)
    sparse: tuple[SparseCodes | SparseCsr | SparseDense, ...] = ()  # per sparse product
    notes: tuple[str, ...] = ()  # e.g. whether a sparse term's copy of B is sparse or dense

    def params(self) -> Iterator[tuple[str, np.ndarray]]:
        """(parameter name, array) of every array the compiled functions other than the sparse
        products may read (those: each of `sparse`'s params()); Bt only where exact_w runs
        (the runtime's static_tensors leaves it out elsewhere)."""
        for field, name in PARAMS:
            arr = getattr(self, field)
            if arr is not None:
                yield name, arr


def pack_codes(codes: np.ndarray, np_: int, kp: int) -> np.ndarray:
    """codes (N, K') int -> Bp (np_/16, kp/4, 16, 4) int8, zero padded."""
    n, k = codes.shape
    full = np.zeros((np_, kp), np.int8)
    full[:n, :k] = codes
    return np.ascontiguousarray(full.reshape(np_ // 16, 16, kp // 4, 4).transpose(0, 2, 1, 3))


def pack_dense(bp: np.ndarray, w: int) -> np.ndarray:
    """Bp (n16, k4, 16, 4) with w-bit codes -> (n16, ceil(k4 / 4), 32·w) uint8: each panel's
    codes in the VNNI blocks' order (block after block, element 4·j + kk within one) packed
    densely (plan/packing.py)."""
    return packing.pack_stream(bp.reshape(bp.shape[0], -1), w)


def unpack_dense(b: np.ndarray, w: int, k4: int) -> np.ndarray:
    """Inverse of pack_dense for k4 blocks of 4 k: (n16, k4, 16, 4) int8."""
    codes = packing.unpack_stream(b, w, k4 * 64)
    return codes.astype(np.int8).reshape(b.shape[0], k4, 16, 4)


def unpack_codes(bp: np.ndarray) -> np.ndarray:
    """Inverse of pack_codes: (N', K') int8."""
    a, b, c, d = bp.shape
    return bp.transpose(0, 2, 1, 3).reshape(a * c, b * d)


StaticTerms = tuple[QArray, list[TermResult]]  # Q(B) and B's residual terms (static_terms)


def pack(p: KernelPlan, B: Any, q: QArray | None = None, dense: bool = True,
         bias: np.ndarray | None = None, kinds: dict[int, str] | None = None) -> PackedOperand:
    """Quantize and lay out B (K x N) for plan p. q: B's quantized copy when it is known
    exactly (LPLR's factor codes, chain.py), instead of the plan's quantizer applied to B; B
    must then be its dequantized value. dense: the target compiles the sparse products' dense
    formulations (CPUs); kinds: {sparse product: the instruction its dense formulation runs
    on} (its crossover: segments.crossover). bias: N values (checked: reference.inputs.as_bias)
    the epilogue adds to every row of C, in float32; None: zeros."""
    B = as_matrix(B, "B", float32=True)  # the kernels compute with B in float32, as with A
    if B.shape != (p.k, p.n):
        raise InputError(f"B: expected shape {p.k}x{p.n} (K x N) for this kernel, got "
                         f"{B.shape[0]}x{B.shape[1]}")
    st = None
    if p.compensated:
        st = static_terms(p, B) if q is None else (q, [])
    if p.half:
        out = _pack_half(p, p.half, B, q)
    elif p.float_codes:
        out = _pack_float_codes(p, B, q)
    elif p.float_path:
        out = PackedOperand(bf=_pack_float(p, B, st, exact=q is not None))
    elif p.segments:
        out = _pack_segments(p, B, _terms(p, st))
    else:
        out = _pack_int(p, B, q)
    if p.compensated:
        out = _with_lowrank(p, out, B, st)
    if p.sparse:
        sparse, notes = _sparse_arrays(p, B, _terms(p, st), dense, kinds or {})
        out = replace(out, sparse=sparse, notes=notes)
    return replace(out, bias=bias_row(p, bias))


def bias_row(p: KernelPlan, bias: np.ndarray | None) -> np.ndarray:
    """The epilogue's bias [1, Np] float32 (zero padded); InputError for a value beyond
    float32's range, where the kernels compute."""
    row = np.zeros((1, p.np_), np.float32)
    if bias is not None:
        with np.errstate(over="ignore"):
            row[0, : p.n] = bias
        if not np.isfinite(row).all():
            j = int(np.argwhere(~np.isfinite(row[0]))[0][0])
            raise InputError(f"bias[{j}] = {float(bias[j]):.6g} is beyond float32's range "
                             "(about 3.4e38), where the kernels add it")
    return row


def _b_quant(p: KernelPlan) -> Quant:
    """B's quantizer; PlanError for a float B (whose plans take the float path)."""
    if p.qb is None:
        raise PlanError(f"kernel plan of '{p.scheme.name}': B is a float operand; its integer "
                        "layout does not exist")
    return p.qb


def _terms(p: KernelPlan, st: StaticTerms | None) -> StaticTerms:
    """The static terms of a quantized B (segments and sparse products have them)."""
    if st is None:
        raise PlanError(f"kernel plan of '{p.scheme.name}': residual terms of a float B")
    return st


def _pack_int(p: KernelPlan, B: np.ndarray, q: QArray | None = None) -> PackedOperand:
    qb = _b_quant(p)
    q = quantize(B, qb, "b") if q is None else q  # rows = N, columns = K (padded when grouped)
    codes = integer_codes(q)  # centered codes (zero 0 for symmetric); MX values times 2^f
    G, V = p.groups, p.vector
    full = np.zeros((p.np_, p.kp), np.int64)
    full[: p.n, : codes.shape[1]] = codes
    zbs = None
    if p.b_zero:  # store code - offset = centered + (zero - offset); padding: centered 0
        zb = np.zeros((G, p.np_), np.int64)
        zb[:, : p.n] = _per_group(q.zero, G).T - p.b_offset
        full[: p.n] += np.repeat(zb[:, : p.n].T, V, axis=1)
        lo, hi = packing.code_range(p.pack_bits)
        if not p.compensated and p.a_zero_static is not None:  # A's own zero meets K's
            full[: p.n, p.k:] = np.clip(full[: p.n, p.k:], lo, hi)  # padding: any code adds 0
        if full.min() < lo or full.max() > hi:
            pad = f"a multiple of {V}" if qb.grouped else f"{p.kp} (no padding)"
            raise InputError(f"B: a zero point lies outside {quant_text(qb)}'s code range (a "
                             f"column of one sign?), so K's padding ({p.k} to {p.kp}) cannot "
                             f"be stored; use K {pad} or calibrate=maxabs")
        zbs = zb.astype(np.int32)
    bp = pack_codes(full.astype(np.int8), p.np_, p.kp)
    cs = full.reshape(p.np_, G, V).sum(axis=2).T.astype(np.int32)  # (G, np_)
    sb = np.zeros((G, p.np_), np.float32)
    sb[:, : p.n] = _per_group(code_scale(q), G).T
    sqb, gb = _scale_pairs(p, q) if sig.scale_pairs(p) else (None, None)
    cqb = _pairs(cs, G, ranges.pairs_of(p).narrow[1]) if sig.zero_pairs(p) else None
    return PackedOperand(bp=pack_dense(bp, p.pack_bits) if p.packed else bp, sb=sb, cs=cs,
                         zb=zbs, sqb=sqb, gb=gb, cqb=cqb)


def _pairs_ints(p: KernelPlan, q: QArray) -> np.ndarray:
    """B's two-level integer scales [G, Np] (padded columns 0)."""
    if q.scale_int is None or q.gamma is None:
        raise PlanError(f"kernel plan of '{p.scheme.name}': B's quantized copy has no "
                        "two-level scales")
    ints = np.zeros((p.groups, p.np_), np.int64)
    ints[:, : p.n] = _per_group(q.scale_int, p.groups).T
    return ints


def _pairs(x: np.ndarray, G: int, dtype: str) -> np.ndarray:
    """[G, Np] -> dtype [G/2, Np, 2]: groups 2h and 2h + 1 next to each other per column
    (exact: signature.scale_pairs bounds every value, ScalePairs.narrow chooses the type)."""
    return np.ascontiguousarray(x.astype(dtype).reshape(G // 2, 2, -1).transpose(0, 2, 1))


def _scale_pairs(p: KernelPlan, q: QArray) -> tuple[np.ndarray, np.ndarray]:
    """sqb [G/2, Np, 2] (B's integer scales in pairs of groups) and gb [1, Np] float32
    (each column's float scale) of two-level scales; padded columns 0."""
    ints = _pairs_ints(p, q)  # (checks that q has them)
    gb = np.zeros((1, p.np_), np.float32)
    gb[0, : p.n] = np.asarray(q.gamma)[:, 0]
    return _pairs(ints, p.groups, ranges.pairs_of(p).narrow[0]), gb


def _pack_float(p: KernelPlan, B: np.ndarray, st: StaticTerms | None = None,
                exact: bool = False) -> np.ndarray:
    """Bf[Np/16, Kp, 16] float32: B rounded to its float type, or dequantized (any quantizer:
    the reference's own numpy quantization), or B itself when it is the exact value of a given
    quantized copy (exact), zero padded."""
    b = p.scheme.b
    if exact:
        vals = B
    elif isinstance(b, FloatOperand):
        vals = round_float(B, b.dtype, "B")
    else:
        vals = quantize(B, _b_quant(p), "b").dequantize()  # K x N
        for t in st[1] if st else ():  # B's dense terms, exact in float
            if t.q is not None:
                vals = vals + t.approx
    full = np.zeros((p.kp, p.np_), np.float32)
    full[: p.k, : p.n] = vals
    return np.ascontiguousarray(full.reshape(p.kp, p.np_ // 16, 16).transpose(1, 0, 2))


def _pack_half(p: KernelPlan, half: str, B: np.ndarray,
               q: QArray | None = None) -> PackedOperand:
    """Float GEMMs whose values are exact in 16 bits (KernelPlan.half): Bf[Np/16, Kp, 16] in
    that type (exactly) holding B rounded to its float type, or a quantized B's codes - zero
    (element values for e*m*; q: its exact quantized copy, if given), and sbf[1, Np] the
    column scales (1 for a float B). half: p.half."""
    sbf = np.zeros((1, p.np_), np.float32)
    b = p.scheme.b
    if isinstance(b, FloatOperand):
        vals = round_float(B, b.dtype, "B")
        sbf[0, : p.n] = 1.0
    else:
        q = quantize(B, _b_quant(p), "b") if q is None else q
        vals = q.centered()[:, : p.k].T  # K x N
        sbf[0, : p.n] = np.broadcast_to(np.asarray(q.scale, np.float64)[:, 0], (p.n,))
    full = np.zeros((p.kp, p.np_), np.float32)
    full[: p.k, : p.n] = vals
    bf = full.reshape(p.kp, p.np_ // 16, 16).transpose(1, 0, 2)
    return PackedOperand(bf=np.ascontiguousarray(bf.astype(_numpy_dtype(half))), sbf=sbf)


def _pack_float_codes(p: KernelPlan, B: np.ndarray, q: QArray | None = None) -> PackedOperand:
    """Weight-only products (KernelPlan.float_codes): B's stored codes (code - 2^(b-1) for
    unsigned formats) in 16-column panels, code (k, c) of panel n at stream position 16·k + c,
    packed densely (plan/packing.py) as bp[Np/16, ceil(Kp/16), 32·w] uint8, or a byte each as
    bp[Np/16, Kp, 16] int8; sbf[Gb, Np] the scales per K group of B's quantizer and, with zero
    points, zbf[Gb, Np] the zero points minus the same offset (float32)."""
    q = quantize(B, _b_quant(p), "b") if q is None else q
    full = np.zeros((p.np_, p.kp), np.int64)
    full[: p.n, : p.k] = q.codes[:, : p.k].astype(np.int64) - p.b_offset
    panels = full.reshape(p.np_ // 16, 16, p.kp).transpose(0, 2, 1)  # (n16, Kp, 16)
    bp = (packing.pack_stream(panels.reshape(p.np_ // 16, -1), p.pack_bits) if p.packed
          else np.ascontiguousarray(panels.astype(np.int8)))
    groups = -(-p.k // p.b_group)
    sbf = np.zeros((groups, p.np_), np.float32)
    with np.errstate(over="ignore"):
        sbf[:, : p.n] = _per_group(q.scale, groups).T
    zbf = None
    if p.float_zero:
        zbf = np.zeros((groups, p.np_), np.float32)
        zbf[:, : p.n] = _per_group(q.zero, groups).T - p.b_offset
    return PackedOperand(bp=bp, sbf=sbf, zbf=zbf)


def _numpy_dtype(name: str) -> Any:
    """numpy's dtype for a TVM type name (bfloat16: ml_dtypes', which TVM depends on)."""
    if name == "bfloat16":
        return ml_dtypes.bfloat16
    return np.dtype(name)


def _per_group(arr: np.ndarray, groups: int) -> np.ndarray:
    """(N or 1, G or 1) per-column (or per-tensor) values -> (N or 1, groups). Groups past the
    quantizer's own (a compensated kernel pads K to 16 lanes) hold K padding only, whose
    centered codes are 0: they repeat the last group's values (in range, like every other)."""
    arr = np.asarray(arr, dtype=np.float64)
    if arr.shape[1] == 1:
        return np.repeat(arr, groups, axis=1)
    return np.pad(arr, ((0, 0), (0, groups - arr.shape[1])), mode="edge")


def static_terms(p: KernelPlan, B: np.ndarray) -> StaticTerms | None:
    """(Q(B), B's residual terms as lrqc.reference computes them: TermResult list), or None
    for a float B."""
    b = p.scheme.b
    if not isinstance(b, QuantOperand):
        return None
    q = quantize(B, b.quant, "b")
    return q, apply_terms(b.residuals, B - q.dequantize(), "b")


def _pack_segments(p: KernelPlan, B: np.ndarray, st: StaticTerms) -> PackedOperand:
    """Codes of every segment's B side side by side along K (segment s at columns s*Kq..),
    with per-group scales and column sums."""
    qb, terms = st
    src = {"base": qb, **{f"res:{n}": t.q for n, t in enumerate(terms) if isinstance(t.q, QArray)}}
    kq, gq, v = p.kq, p.gq, p.vector
    full = np.zeros((p.np_, p.kp), np.int64)
    sb = np.zeros((p.groups, p.np_), np.float32)
    for s, sg in enumerate(p.segments):
        full[:, s * kq:(s + 1) * kq], sb[s * gq:(s + 1) * gq] = _codes_scales(p, src[sg.b])
    bp = pack_codes(full.astype(np.int8), p.np_, p.kp)
    cs = full.reshape(p.np_, p.groups, v).sum(axis=2).T.astype(np.int32)
    return PackedOperand(bp=pack_dense(bp, p.pack_bits) if p.packed else bp, sb=sb, cs=cs)


def _codes_scales(p: KernelPlan, q: QArray) -> tuple[np.ndarray, np.ndarray]:
    """Centered codes (Np, Kq) int64 and scales (G, Np) float32 of B's quantized copy q."""
    codes = integer_codes(q)
    full = np.zeros((p.np_, p.kq), np.int64)
    full[: p.n, : codes.shape[1]] = codes
    sc = np.zeros((p.gq, p.np_), np.float32)
    sc[:, : p.n] = _per_group(code_scale(q), p.gq).T
    return full, sc


def code_scale(q: QArray) -> np.ndarray:
    """The scales of q's integer codes (integer_codes): q's own, or for element formats
    (eXmY, MX), whose codes are their values times 2^f, q's times 2^-f."""
    qq = q.quant
    frac = 0 if qq.is_int and qq.granularity != Granularity.PER_BLOCK else frac_bits(qq.fmt)
    return q.scale * 2.0**-frac


def csr_columns(full: np.ndarray, groups: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CSR of the nonzero codes of each row n of full (Np, Kq), split by scale group:
    (ptr[Np * G + 1], idx[nnz] = k, val[nnz] int16); idx/val hold one dummy when empty."""
    n, k = np.nonzero(full)
    v = full.shape[1] // groups
    ptr = np.zeros(full.shape[0] * groups + 1, np.int64)
    np.cumsum(np.bincount(n * groups + k // v, minlength=full.shape[0] * groups), out=ptr[1:])
    vals = full[n, k]
    if not vals.size:
        k, vals = np.zeros(1, np.int64), np.zeros(1, np.int64)
    return ptr.astype(np.int32), k.astype(np.int32), vals.astype(np.int16)


def _sparse_arrays(p: KernelPlan, B: np.ndarray, st: StaticTerms, dense: bool,
                   kinds: dict[int, str]
                   ) -> tuple[tuple[SparseCodes | SparseCsr | SparseDense, ...], tuple[str, ...]]:
    """(static operands of the sparse products (te/sparse.py), notes): side a, B's residual
    codes and scales (+ VNNI blocks for a dense formulation); side b, B's thresholded copy (or
    B) as CSR, or as VNNI blocks where segments.dense_wins, with notes on both choices."""
    out: list[SparseCodes | SparseCsr | SparseDense] = []
    notes = []
    for j, sp in enumerate(p.sparse):
        has_dense = dense and sig.dense_plan(p, j) is not None
        if sp.side == "a":
            rq = st[1][sp.n].q
            if not isinstance(rq, QArray):
                raise PlanError(f"kernel plan of '{p.scheme.name}': B's sparse term {sp.n} "
                                "has no quantized residual")
            full, sc = _codes_scales(p, rq)
            d = np.ascontiguousarray(full.T.astype(np.int8))
            dv = pack_codes(full, p.np_, p.kq) if has_dense else None
            out.append(SparseCodes(d, sc, dv, full.sum(axis=1, dtype=np.int32)[None]))
            continue
        q, note = sparse_quant(B, sp.term, "b", "B")
        full, sc = _codes_scales(p, q)
        density = float(np.count_nonzero(full)) / max(1, p.n * p.k)
        kind = kinds.get(j, "")
        run_dense = has_dense and segments.dense_wins(density, "b", kind)
        notes += [str(note), segments.formulation_note(
            "b", sp.n, density, run_dense if has_dense else None, kind)]
        if run_dense:
            out.append(SparseDense(pack_codes(full, p.np_, p.kq),
                                   full.sum(axis=1, dtype=np.int32)[None], sc))
        else:
            out.append(SparseCsr(*csr_columns(full, p.gq), sc))
    return tuple(out), tuple(notes)


def _with_lowrank(p: KernelPlan, out: PackedOperand, B: np.ndarray,
                  st: StaticTerms | None) -> PackedOperand:
    """out with B's lowrank factors as lbt[r, Kq] and wb[r, Np] (= F_Bᵀ), and B itself as
    float32 (K x N) when A has a lowrank term that multiplies the exact B (other=exact: its
    epilogue needs F_Aᵀ B per call); with other=packed no float copy of B is kept."""
    if p.rank_b:
        factors = _terms(p, st)[1][-1].factors
        if factors is None:
            raise PlanError(f"kernel plan of '{p.scheme.name}': B's last term is not lowrank")
        L, Ft = factors
        lbt = np.zeros((p.rank_b, p.kq), np.float32)
        lbt[:, : p.k] = L.T
        wb = np.zeros((p.rank_b, p.np_), np.float32)
        wb[:, : p.n] = Ft
        out = replace(out, lbt=lbt, wb=wb)
    if p.rank_a and not sig.w_from_codes(p):  # other=packed: lowrank_w reads the codes
        out = replace(out, b32t=np.ascontiguousarray(np.asarray(B, np.float32).T))
    return out

