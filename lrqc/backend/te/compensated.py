"""to_te for the per-call passes of compensated products (plans with segments or low-rank
terms; see plan/segments.py); the GEMM itself is gemm.py's, its low-rank epilogue epilogue.py's.

quantize_a makes, from one read of A, every per-call matrix the GEMM needs:
  Aq[Mp, S, Kq] uint8   the A-side codes of each K segment (Q(A), Q_n(R_A^(n)), Q_n(A_s); flipped
                        for the AVX2 signed rule: te.flipped),
  sa, zc [Mp, S*G]      their scales and zero corrections, segment after segment,
  dens[n]               density of each thresholded copy of A (B's sparse terms),
  R[Mp, Kq] float32     A's final residual (A's lowrank term), the max |R| of each row
                        (computed as each row of R is written), and
  T[Mp, w] float32      its sketch product R Ω (sketch: Ω = s, rsvd: the Gaussian test matrix),
  per sparse product    A's thresholded copy [Mp, Kq] or A's residual codes transposed
                        [Kq, Mp] (int16, centered) with their scales (sparse.py),
computing every residual in float64 with the reference's exact operations (quantize.py's
quantizer). lowrank_u makes U_B = A' L_B from the base codes, exact_w F_Aᵀ B from B in
float32 (other=exact, CPU), resid_tq and resid_z the randomized SVD's products of R with its
bases (CPU), lowrank_w F_Aᵀ B̂ from B's codes (other=packed); the GEMM adds U W after."""

from __future__ import annotations

from collections.abc import Callable

from ...frontend.model import Granularity
from ...plan import names
from ...plan.model import KernelPlan
from ...plan.segments import split_terms
from ...plan.signature import sketch_rt
from ...plan.support import a_offset
from ..compat import PrimExpr, te, tir
from . import flipped, unpack
from .bitstats import group_index
from .outer_dots import columns_form, outer_columns, outer_dots, outer_form
from .quantize import a_bits, dims, max_abs_stat, quantizer, statistics
from .sketch import chunk_sums, chunked, row_dots
from .sparse import code_dtype

F64 = "float64"


def sketch_width(p: KernelPlan, m: int | None = None) -> int:
    """Columns of the test matrix of A's lowrank term for a call with m rows (0: none)."""
    t = p.lowrank_a
    if t is None or t.method == "svd":
        return 0
    if t.method == "sketch":
        return 1
    return min(t.rank + t.oversample, p.m if m is None else m, p.k)


def _sparse_copy(p: KernelPlan, term, x, rows, tag: str, hi: te.Tensor | None = None):
    """(x_s, density, top): x_s(i, k) of a sparse term (keep |x| >= 2 th mean|x|_nonzero, or
    everything above max_density) and its density, statistics over the call's true rows only;
    top, given hi (the base quantizer's max |x| blocks), x_s's max |x_s| as a (1, 1) block
    taken from them with no pass over A (else None)."""
    M, K = p.m, p.k
    r1, r2 = te.reduce_axis((0, M), "r1"), te.reduce_axis((0, K), "r2")
    def live(i: PrimExpr) -> PrimExpr:
        return i < rows[0]
    zero = tir.const(0.0, F64)
    tot = te.compute((2,), lambda c: te.sum(tir.Select(
        live(r1), tir.Select(c == 0, tir.abs(x(r1, r2)), tir.Select(
            x(r1, r2) != zero, tir.const(1.0, F64), zero)), zero), axis=[r1, r2]),
        name=names.QUANT_STATS + names.SPARSE_SUMS + "_nz" + tag)
    cut = te.compute((1,), lambda _: tir.Select(  # one value: no division per element
        tot[1] > 0, 2.0 * term.threshold * tot[0] / tot[1], zero), name="a_cut" + tag)

    def kept(i: PrimExpr, k: PrimExpr) -> PrimExpr:
        v = x(i, k)
        return tir.all(tir.abs(v) >= cut[0], v != zero)

    s1, s2 = te.reduce_axis((0, M), "s1"), te.reduce_axis((0, K), "s2")
    cnt = te.compute((1,), lambda _: te.sum(tir.Select(
        tir.all(live(s1), kept(s1, s2)), tir.const(1.0, F64), zero), axis=[s1, s2]),
        name=names.QUANT_STATS + names.SPARSE_SUMS + "_kept" + tag)
    dens = te.compute((1,), lambda _: cnt[0] / (rows[0].astype(F64) * float(K)),
                      name="a_density" + tag)
    def dense() -> PrimExpr:
        return dens[0] > term.max_density

    def xs(i: PrimExpr, k: PrimExpr) -> PrimExpr:
        return tir.Select(tir.any(dense(), kept(i, k)), x(i, k), zero)

    return xs, dens, None if hi is None else _copy_top(hi, cut, dense, tag)


def _copy_top(hi: te.Tensor, cut: te.Tensor, dense: Callable[[], PrimExpr], tag: str
              ) -> te.Tensor:
    """max |x_s| from the base statistic's max |x| per group: the largest |x|, g, is x_s's
    largest where the copy keeps it (dense, or g >= the cut and g != 0), and where it does not,
    the copy keeps nothing (every |x| <= g < cut, or all are 0): 0. A maximum is exact, so this
    is the reduction over x_s's values bit for bit (infinite where A holds a NaN or infinity,
    as the base's is). The rows past the call's are copies of its last row, or zero."""
    zero = tir.const(0.0, F64)
    r1, r2 = te.reduce_axis((0, hi.shape[0]), "t1"), te.reduce_axis((0, hi.shape[1]), "t2")
    g = te.compute((1,), lambda _: te.max(hi[r1, r2], axis=[r1, r2]), name="a_top" + tag)
    return te.compute((1, 1), lambda _, __: tir.Select(
        tir.any(dense(), tir.all(g[0] >= cut[0], g[0] != zero)), g[0], zero),
        name="a_copy_top" + tag)


def _per_tensor_max_abs(q) -> bool:
    """A quantizer whose one scale comes from max |x| over the whole tensor."""
    return q.granularity == Granularity.PER_TENSOR and max_abs_stat(q) \
        and not q.scale.startswith("uint")


def quantize_a(p: KernelPlan, fast: bool = False, flip: bool = False, narrow: bool = False
               ) -> list[te.Tensor]:
    """Tensors of the compensated per-call pass: inputs [A, (rows), (Omega_t)], outputs
    [Aq, sa, zc, (ra), (dens), (R, max |R|), (T), (Rᵀ T per chunk: te.sketch)]. fast: codes
    from float32 in rows where proven exact (fastcodes); flip: Aq flipped (te.flipped);
    narrow: a CPU target with AVX2's registers (_residual)."""
    M, K, Mp, Kq, G, V = dims(p)
    A, x, bits = a_bits(p, free_rows=True)  # a caller's A read where it lies (lends_a)
    inputs, outputs = [A], []
    # the base's statistics, which sparse copies of A read too (their max |x_s|)
    stats = statistics(p.qa, x, dims(p), bits=bits) if max_abs_stat(p.qa) else None
    x32 = (lambda i, k: x(i, k).astype("float32")) if fast else None  # (exact: x's values)
    base = quantizer(p.qa, x, dims(p), offset=p.a_offset, bits=bits, stats=stats,
                     x32=x32)  # sees NaN
    held, Aq = _held_codes(p, base, flip)
    sources = {"base": (held, *base[1:])}
    a_terms, _ = split_terms(p.scheme.a)
    def resid(i: PrimExpr, k: PrimExpr) -> PrimExpr:
        return x(i, k) - base[3](i, k, held(i, k))
    for n, t in enumerate(a_terms):
        src = quantizer(t.quant, resid, dims(p), offset=a_offset(t.quant), tag=f"_r{n}")
        sources[f"res:{n}"] = src
        resid = (lambda prev, d: lambda i, k: prev(i, k) - d(i, k))(resid, src[3])
    b_terms, _ = split_terms(p.scheme.b)
    dens = []
    rows = te.placeholder((1,), "int32", name="rows")
    if any(sp.side == "a" for sp in p.sparse) or sketch_rt(p):
        inputs.append(rows)
        for sp in p.sparse:
            if sp.side == "a":
                known = stats is not None and _per_tensor_max_abs(sp.q)
                xs, d, top = _sparse_copy(p, sp.term, x, rows, f"_s{sp.n}",
                                          stats[0] if known else None)
                dens.append(d)
                xs32 = (lambda i, k, xs=xs: xs(i, k).astype("float32")) if fast else None
                sources[f"sparse:{sp.n}"] = quantizer(
                    sp.q, xs, dims(p), offset=a_offset(sp.q), tag=f"_s{sp.n}",
                    stats=None if top is None else (top, None, group_index(sp.q)), x32=xs32)
    segs = [sources[sg.a] for sg in p.segments] or [base]
    S = len(segs)

    def pick(which: Callable[[tuple], PrimExpr], s_idx: PrimExpr) -> PrimExpr:
        """segs[s_idx][which] as a chain of selects (s_idx is a constant after unrolling)."""
        out = None
        for s in reversed(range(S)):
            here = which(segs[s])
            out = here if out is None else tir.if_then_else(s_idx == s, here, out)
        return out

    if Aq is None:
        Aq = te.compute((Mp, S, Kq), lambda i, s, k: flipped.maybe(
            pick(lambda src: src[0](i, k), s).astype("uint8"), flip), name=names.QUANT_CODES)
    sa = te.compute((Mp, S * G), lambda i, g: pick(lambda src: src[1][i, g % G], g // G),
                    name="sa_all")
    zc = te.compute((Mp, S * G), lambda i, g: pick(lambda src: src[2][i, g % G], g // G),
                    name="zc_all")
    outputs += [Aq, sa, zc]
    if p.b_zero:  # one segment (plan.py): row sums of A's centered codes per group
        r = te.reduce_axis((0, V), "r")
        outputs.append(te.compute((Mp, G), lambda i, g: te.sum(
            flipped.stored(Aq[i, 0, g * V + r], flip) - zc[i, g], axis=r), name=names.QUANT_ROWSUM))
    if dens:
        outputs.append(te.compute((len(dens),), lambda n: pick_const(dens, n), name="dens"))
    if p.lowrank_a is not None:
        _residual(p, resid, rows, narrow, inputs, outputs)
    for j, sp in enumerate(p.sparse):
        key = f"sparse:{sp.n}" if sp.side == "a" else f"res:{sp.n}"
        outputs += sparse_operand(p, sources[key], sp.side, j)
    return inputs + outputs


def _residual(p: KernelPlan, resid: Callable[[PrimExpr, PrimExpr], PrimExpr], rows: te.Tensor,
              narrow: bool, inputs: list[te.Tensor], outputs: list[te.Tensor]) -> None:
    """quantize_a's tensors of A's lowrank term, appended: R (float32), each row's max |R|,
    Ω (given transposed) and T = R Ω (narrow: the outer-product form where outer_form takes
    it) where it has a test matrix, and the rank-1 sketch's Rᵀ T per chunk."""
    _, K, Mp, Kq, _, _ = dims(p)
    rr = chunked(p) if sketch_rt(p) else (Mp,)  # R's rows (in chunks: te.sketch)
    R = te.compute((*rr, Kq), lambda *ik: resid(_row(rr, ik), ik[-1]).astype("float32"),
                   name=names.RESID)
    outputs += [R, lane_top(R, rr, K, Kq)]
    w = sketch_width(p)
    if not w:
        return
    Om = te.placeholder((w, Kq), "float32", name="Omega_t")
    inputs.append(Om)
    if narrow and rr == (Mp,) and outer_form(w, Mp, Kq, False):
        T = outer_dots(R, Om, Mp, w, Kq, names.SKETCH, False)
    else:
        T = row_dots(lambda *ik: R[ik], Om, rr, w, Kq, names.SKETCH)
    outputs.append(T)
    if sketch_rt(p):  # Rᵀ T as the rows of R are written
        outputs.append(chunk_sums(p, R, lambda c, r: T[c, r, 0], rows, names.SKETCH_RT))


def _row(rows: tuple[int, ...], ik: tuple) -> PrimExpr:
    """The matrix row of index ik[:-1] in rows (i, or chunk c and row r: c P + r)."""
    return ik[0] if len(rows) == 1 else ik[0] * rows[1] + ik[1]


def lane_top(R: te.Tensor, rows: tuple[int, ...], k: int, kq: int) -> te.Tensor:
    """max |R[*i, k]| over A's k < K per row i (K's padding to kq, a multiple of 16, holds
    0 - deq(Q(0)), not 0, for codes with a zero point), as 16 lane maxima over k chunks (block
    name + "_lanes") then their maximum, so the k loop vectorizes without rfactor."""
    assert kq % 16 == 0, kq  # the compensated plans' K quantum (plan/support.py)
    ko = te.reduce_axis((0, kq // 16), "ko")
    zero = tir.const(0.0, "float32")
    part = te.compute((*rows, 16), lambda *ix: te.max(tir.Select(
        ko * 16 + ix[-1] < k, tir.abs(R[(*ix[:-1], ko * 16 + ix[-1])]), zero), axis=ko),
        name=names.RESID_TOP + names.LANES)
    kk = te.reduce_axis((0, 16), "kk")
    return te.compute(rows, lambda *i: te.max(part[(*i, kk)], axis=kk), name=names.RESID_TOP)


def _held_codes(p: KernelPlan, base: tuple, flip: bool) -> tuple[Callable, te.Tensor | None]:
    """(held, Aq): the base codes as stored, held(i, k) (float64, offset included), for the
    residuals to read back rather than recompute (each residual's statistic and codes would
    repeat the base quotient and rounding, and their own quotient repeats the residual: at
    256 x 4096 the sparse 5 % pass took 3.5 ms). One segment: Aq itself (flip: flipped,
    te.flipped), computed first; several: names.BASE_CODES, which Aq's base segment copies."""
    Mp, Kq = p.mp, p.kq
    if p.nseg == 1:
        Aq = te.compute((Mp, 1, Kq), lambda i, s, k: flipped.maybe(base[0](i, k, "uint8"), flip),
                        name=names.QUANT_CODES)
        return (lambda i, k: flipped.stored(Aq[i, 0, k], flip).astype(F64)), Aq
    bc = te.compute((Mp, Kq), lambda i, k: base[0](i, k, "uint8"), name=names.BASE_CODES)
    return (lambda i, k: bc[i, k].astype(F64)), None


def sparse_operand(p: KernelPlan, src: tuple, side: str, j: int) -> list[te.Tensor]:
    """The per-call operand of sparse product j: centered codes and their (Mp, G) scales.
    side "a": A's thresholded copy as [Mp, Kq] (the sparse operand, zero codes skipped);
    side "b": A's residual codes transposed, [Kq, Mp] (the dense operand of B's CSR copy)."""
    code, sa, zc, _ = src
    V, dt = p.vector, code_dtype(p.sparse[j].q)
    def cen(i: PrimExpr, k: PrimExpr) -> PrimExpr:  # (code(.., dt): fastcodes where it has x32)
        return (code(i, k, "int32") - zc[i, k // V]).astype(dt)
    if side == "a":
        return [te.compute((p.mp, p.kq), cen, name=f"{names.SPARSE_CODES}{j}"), sa]
    ra = te.compute((p.mp, p.kq), cen, name=f"{names.RESID_CODES}{j}")
    return [te.compute((p.kq, p.mp), lambda k, i: ra[i, k], name=f"{names.RESID_T}{j}"), sa]


def pick_const(tensors: list[te.Tensor], n: PrimExpr) -> PrimExpr:
    out = tensors[-1][0]
    for j in reversed(range(len(tensors) - 1)):
        out = tir.if_then_else(n == j, tensors[j][0], out)
    return out


def lowrank_u(p: KernelPlan, flip: bool = False, narrow: bool = False) -> list[te.Tensor]:
    """U_B[i, r] = Σ_k A'[i, k] L_B[k, r] with A' the base segment's dequantized codes (or, on
    the float path, Af, times its row scales saf with 16-bit values: KernelPlan.half):
    [Aq|Af, (sa, zc | saf), LBt, UB] (flip: Aq flipped, te.flipped). narrow (a CPU rule without
    AVX-512's registers): where outer_form takes it, outer_dots' narrow form, A' widened to
    float32 a block of rows at a time (lowrank_u + FLOATS); else row dots (row_dots)."""
    Mp, Kq, G, V, r = p.mp, p.kq, p.gq, p.vector, p.rank_b
    LBt = te.placeholder((r, Kq), "float32", name="LBt")
    outer = narrow and outer_form(r, Mp, Kq, False)

    def product(x: Callable[..., PrimExpr], floats: te.Tensor | None = None) -> te.Tensor:
        if not outer:
            return row_dots(x, LBt, Mp, r, Kq, names.LOWRANK_U)
        if floats is None:  # (else A's values, already float32)
            floats = te.compute((Mp, Kq), x, name=names.LOWRANK_U + names.FLOATS)
        return outer_dots(floats, LBt, Mp, r, Kq, names.LOWRANK_U, False)

    if p.float_path:
        Af = te.placeholder((Mp, Kq), "float32", name="Af")
        if not p.half:
            return [Af, LBt, product(lambda i, k: Af[i, k], Af)]
        saf = te.placeholder((Mp,), "float32", name="saf")
        return [Af, saf, LBt, product(lambda i, k: Af[i, k] * saf[i])]
    S = p.nseg
    Aq = te.placeholder((Mp, S * Kq), "uint8", name="Aq")
    sa = te.placeholder((Mp, S * G), "float32", name="sa")
    zc = te.placeholder((Mp, S * G), "int32", name="zc")

    def deq(i: PrimExpr, k: PrimExpr) -> PrimExpr:
        g = k // V
        return (flipped.stored(Aq[i, k], flip) - zc[i, g]).astype("float32") * sa[i, g]

    return [Aq, sa, zc, LBt, product(deq)]


def exact_w(p: KernelPlan, held: str, *, wide: bool) -> list[te.Tensor]:
    """W_Aᵀ[n, c] = Σ_k B[k, n] F_A[k, c] for A's lowrank term with the exact B (other=exact,
    K a multiple of 16), from pack's Bᵀ (N x K, rows contiguous) held as `held` (float32, or
    an exact 16-bit copy: bfloat16's bits as uint16, float16; each value widened to float32
    exactly) and Fa = F_Aᵀ (r x Kq), B read in its stored order: [Fa, Bt, exact_w]. A float32
    Bᵀ whose shapes outer_form takes on the kind of target `wide` says (wide_floats), as
    outer products (outer_dots); otherwise 16-lane dot products (row_dots)."""
    r, K = p.rank_a, p.k
    Fa = te.placeholder((r, p.kq), "float32", name="Fa")
    Bt = te.placeholder((p.n, K), held, name="Bt")

    def b(n: PrimExpr, k: PrimExpr) -> PrimExpr:
        if held == "uint16":  # bfloat16: the upper half of a float32
            return tir.reinterpret("float32", Bt[n, k].astype("uint32") << 16)
        return Bt[n, k].astype("float32")

    if held == "float32" and outer_form(r, p.n, K, wide):
        return [Fa, Bt, outer_dots(Bt, Fa, p.n, r, K, names.EXACT_W, wide)]
    return [Fa, Bt, row_dots(b, Fa, p.n, r, K, names.EXACT_W)]


def resid_tq(p: KernelPlan, *, wide: bool) -> list[te.Tensor]:
    """(Qᵀ R)[c, k] = Σ_i Qt[c, i] R[i, k] for A's residual R as quantize_a left it and a basis
    Q given transposed (w x Mp, zero past the call's rows; R's rows past them are finite: the
    residuals of copies of the call's last row, then of zero rows), each sum over the rows in
    order (narrow: outer_columns, where columns_form takes it): [Qt, a_resid, resid_tq]."""
    Mp, Kq, w = p.mp, p.kq, sketch_width(p)
    Qt = te.placeholder((w, Mp), "float32", name="Qt")
    R = te.placeholder((Mp, Kq), "float32", name=names.RESID)
    if not wide and columns_form(w, Kq):
        return [Qt, R, outer_columns(Qt, R, Mp, w, Kq, names.RESID_TQ)]
    i = te.reduce_axis((0, Mp), "i")
    return [Qt, R, te.compute((w, Kq), lambda c, k: te.sum(Qt[c, i] * R[i, k], axis=i),
                              name=names.RESID_TQ)]


def resid_z(p: KernelPlan, *, wide: bool) -> list[te.Tensor]:
    """(R Z)[i, c] = Σ_k R[i, k] Zt[c, k] for A's residual R and a basis Z given transposed
    (w x Kq, zero past K: R's padding columns are not): [a_resid, Zt, resid_z]. On AVX2's
    registers (not wide), where outer_form takes it, in the narrow outer-product form;
    otherwise a 16-lane dot product of each row of R with each row of Zt (row_dots: its w
    columns do not fill AVX-512's 16-lane vectors)."""
    Mp, Kq, w = p.mp, p.kq, sketch_width(p)
    R = te.placeholder((Mp, Kq), "float32", name=names.RESID)
    Zt = te.placeholder((w, Kq), "float32", name="Zt")
    if not wide and outer_form(w, Mp, Kq, wide):
        return [R, Zt, outer_dots(R, Zt, Mp, w, Kq, names.RESID_Z, wide)]
    return [R, Zt, row_dots(lambda i, k: R[i, k], Zt, Mp, w, Kq, names.RESID_Z)]


def lowrank_w(p: KernelPlan, lanes: bool = False) -> list[te.Tensor]:
    """W_A[c, n] = Σ_k F_A[k, c] B̂[k, n] for A's lowrank term with other=packed, B̂ read from the
    packed codes Bp (int8 VNNI blocks or packed densely): each code dequantized as the
    reference does, sb[g, n] (code - zb[g, n]) (zb: weights with zero points), summed over the
    K segments that hold B's own values (the base codes and each dense term's; segments of A's
    dense terms repeat the base codes and are skipped). B's lowrank and sparse terms are added
    by the runtime (glue.py). A float32 GEMM of Fa (r x Kq) with 16-column panels of B̂
    (block lowrank_w_b, dequantized once per panel; floats.panel_gemm): [Fa, Bp, sb, (zb),
    lowrank_w]. With lanes (CPU targets), a rank-1 term on int8 codes with one scale per
    column (lanes_form) takes lanes_w instead."""
    Np, Kp, Kq, G, V, r = p.np_, p.kp, p.kq, p.gq, p.vector, p.rank_a
    Fa = te.placeholder((r, Kq), "float32", name="Fa")
    if lanes and lanes_form(p):
        return lanes_w(p, Fa)
    if p.packed:
        b_in = unpack.packed_input(p)

        def code(n: PrimExpr, k: PrimExpr, j: PrimExpr) -> PrimExpr:
            return unpack.code(b_in, p.pack_bits, n, k // 4, j * 4 + k % 4, 64)
    else:
        b_in = te.placeholder((Np // 16, Kp // 4, 16, 4), "int8", name="Bp")

        def code(n: PrimExpr, k: PrimExpr, j: PrimExpr) -> PrimExpr:
            return b_in[n, k // 4, j, k % 4]
    sb = te.placeholder((p.groups, Np), "float32", name="sb")
    zb = [te.placeholder((G, Np), "int32", name="zb")] if p.b_zero else []
    held = [s for s, sg in enumerate(p.segments) if s == 0 or sg.b != "base"] or [0]

    def deq(n: PrimExpr, k: PrimExpr, j: PrimExpr) -> PrimExpr:
        out = None
        for s in held:
            c = code(n, s * Kq + k, j).astype("int32")
            if zb:  # one segment (make_plan refuses dense terms on weights with zero points)
                c = c - zb[0][k // V, n * 16 + j]
            v = c.astype("float32") * sb[s * G + k // V, n * 16 + j]
            out = v if out is None else out + v
        return out

    panel = te.compute((Np // 16, Kq, 16), deq, name=names.LOWRANK_W + "_b")
    k = te.reduce_axis((0, Kq), "k")
    acc = te.compute((r, Np), lambda c, j: te.sum(Fa[c, k] * panel[j // 16, k, j % 16], axis=k),
                     name=names.LOWRANK_W + "_acc")
    out = te.compute((r, Np), lambda c, j: acc[c, j], name=names.LOWRANK_W)
    return [Fa, b_in, sb, *zb, out]


def byte_columns(p: KernelPlan) -> bool:
    """B's codes a byte each (VNNI blocks, not packed densely), one K segment, one scale per
    column of B (per tensor or per channel), no zero points: lowrank_w reads the blocks where
    they lie (lanes_w at rank 1, te.outer_w above)."""
    return not p.packed and not p.segments and p.gq == 1 and not p.b_zero


def lanes_form(p: KernelPlan) -> bool:
    """lowrank_w as lanes_w: rank 1 on byte_columns' plans."""
    return p.rank_a == 1 and byte_columns(p)


def lanes_w(p: KernelPlan, Fa: te.Tensor) -> list[te.Tensor]:
    """W_A[0, n] = sb[0, n] Σ_k F_A[k] code[k, n] (lanes_form's plans): each 64-code block of
    Bp (16 columns x 4 consecutive k) read as it lies, converted and multiplied by F_A's 4
    values repeated 16 times (block lowrank_w_fa, made once per call), into 64 lane sums per
    16-column panel (lowrank_w_lanes), whose groups of 4 are summed and scaled at the end: 0.4
    ms against 2.0 at 256 x 4096 x 4096 for the panel form, whose 16-lane loads of a panel
    gather codes 4 bytes apart."""
    Np, Kq = p.np_, p.kq
    b_in = te.placeholder((Np // 16, p.kp // 4, 16, 4), "int8", name="Bp")
    sb = te.placeholder((p.groups, Np), "float32", name="sb")
    fa4 = te.compute((Kq // 4, 64), lambda q, lane: Fa[0, q * 4 + lane % 4],
                     name=names.LOWRANK_W + "_fa")
    q = te.reduce_axis((0, Kq // 4), "q")
    part = te.compute((Np // 16, 64), lambda n, lane: te.sum(
        fa4[q, lane] * b_in[n, q, lane // 4, lane % 4].astype("float32"), axis=q),
        name=names.LOWRANK_W + names.LANES)
    kk = te.reduce_axis((0, 4), "kk")
    acc = te.compute((1, Np), lambda c, j: te.sum(part[j // 16, (j % 16) * 4 + kk], axis=kk),
                     name=names.LOWRANK_W + "_acc")
    out = te.compute((1, Np), lambda c, j: acc[c, j] * sb[0, j], name=names.LOWRANK_W)
    return [Fa, b_in, sb, out]
