"""x86 AVX-512 VNNI: u8 x s8 -> s32 GEMM tensorized to vpdpbusd, epilogue fused in the tile.

Skeleton from the TVM 0.27 probes: jo(par) -> io -> ko(kc 256) -> kk -> ii(4) -> jm(4) ->
[16 x 4 vpdpbusd]; 1.15-1.20 ms = 1.8 TOPS at 1024^3 per-channel int8 on Zen 5, 2 cores (probe
01_vnni_gemm, 2026-11). Per-vector scales: the output is the loop anchor and the per-group
accumulator is computed at g (probe 07: +14 % at V=64, +55 % at V=16)."""

NAME = "x86_vnni"
FAST = True
MEASURED = "1.8 TOPS at 1024^3 per-channel int8, Zen 5 2 cores (probe 01)"


def applies(plan, features):
    if "avx512vnni" not in features:
        return "target lacks avx512vnni"
    if plan.kp % 4:
        return "K not a multiple of 4"
    return None


def schedule(fn, sch, plan, tiles):
    if fn == "quantize_a":
        tiles.quantize_pass(sch)
        return
    n16 = plan.np_ // 16
    nr = tiles.pick_split(n16, (4, 2, 1))
    mr = tiles.pick_split(plan.mp, (4, 2, 1))
    if plan.groups == 1:
        kc = tiles.pick_split(plan.kp, (256, 128, 64, 32, 16, 8, 4))
        loops = tiles.vnni_gemm_tile(sch, "acc", mr, nr, kc)
        tiles.fuse_epilogue(sch, "C", loops["io"])
        tiles.finish_vnni(sch, loops)
        return
    out = sch.get_sblock("C")
    if fn == "int_acc":  # (Mp, G, Np) elementwise epilogue of the per-group accumulator
        i, g, j = sch.get_loops(out)
        io, ii = sch.split(i, [None, mr])
        jo, jm, jv = sch.split(j, [None, nr, 16])
        sch.reorder(jo, io, g, ii, jm, jv)
    else:
        i, j, g = sch.get_loops(out)
        io, ii = sch.split(i, [None, mr])
        jo, jm, jv = sch.split(j, [None, nr, 16])
        sch.reorder(jo, io, g, ii, jm, jv)
    sch.parallel(jo)
    sch.unroll(ii)
    sch.unroll(jm)
    sch.vectorize(jv)
    part = sch.get_sblock("partial")
    sch.compute_at(part, g)
    pi, pj, pk = sch.get_loops(part)[-3:]
    pjm, pjv = sch.split(pj, [nr, 16])
    pko, pkv = sch.split(pk, [None, 4])
    sch.reorder(pko, pi, pjm, pjv, pkv)
    sch.unroll(pi)
    sch.unroll(pjm)
    pinit = sch.decompose_reduction(part, pko)
    sch.vectorize(sch.get_loops(pinit)[-1])
    sch.tensorize(pjv, tiles.register_vnni())
    if fn != "int_acc":
        cinit = sch.decompose_reduction(out, g)
        sch.vectorize(sch.get_loops(cinit)[-1])
