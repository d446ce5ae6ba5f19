"""The least time a compensated kernel's low-rank terms add to its direct product on this
machine, from the work they must do and the machine's measured roofs: their float32
multiply-adds (they cannot run on the integer units) at the measured FMA peak, and the float32
bytes they must move from memory at the measured memory bandwidth; whichever is longer.
bench/cpu.py prints it beside each low-rank row and, for a missed target, the ratio the bound
allows, so a miss says what bounds it.

Work per call of an M x K by K x N product, A's term of rank r (sketch: r = 1, one test
vector) with oversampling p and q power iterations, w = r + p test columns (1 for sketch):
  A's factors   2 M K w (2 q + 2) flops for rsvd (R Ω, q times Rᵀ Q and R Z, Qᵀ R);
                2 M K (2 q + 2) for the sketch (t = R s, q times Rᵀ a and R u, b = Rᵀ a)
  W = F_Aᵀ B    2 r K N (the exact float32 B read once: 4 K N bytes; packed: its codes)
  U_B = A' L_B  2 M K r_B (B's term: L_B is packed with B)
  epilogue      2 M N (r + r_B)
Bytes: R written once (4 M K) and read once per pass (sketch, fused as lrqc runs it: q + 1;
rsvd: 2 q + 2), the exact B read once. Each of these touches of an array can find up to the
last-level cache's size of it still in the cache (from the touch before, or the call before:
a bench calls the kernel on the same arrays), so only the rest of it counts: an array that
fits the cache costs no memory traffic in this bound, however often it is read."""

from __future__ import annotations


def lowrank_traffic(plan, m: int, n: int, k: int, b_bytes: int = 4) -> list[tuple[int, int]]:
    """[(bytes, touches)] of the arrays the low-rank terms of a kernel plan move for one call of
    m rows: A's residual R (written once, read once per pass) and the exact B they multiply
    (other=exact: b_bytes per value, 2 where pack keeps a 16-bit copy); [] without them."""
    t = plan.lowrank_a
    if t is None:
        return []
    passes = t.power_iters + 1 if t.method == "sketch" else 2 * t.power_iters + 2
    out = [(4 * m * k, 1 + passes)]
    if t.other != "packed":
        out.append((b_bytes * k * n, 1))
    return out


def lowrank_work(plan, m: int, n: int, k: int, b_bytes: int = 4) -> tuple[float, float]:
    """(flops, bytes) of the low-rank terms of a kernel plan (lrqc's KernelPlan) for one call
    of m rows, every touch of lowrank_traffic's arrays counted; (0, 0) without low-rank
    terms."""
    flops = 0.0
    t = plan.lowrank_a
    if t is not None:
        q = t.power_iters
        if t.method == "sketch":
            flops += 2 * m * k * (2 * q + 2)
        else:
            w = min(t.rank + t.oversample, m, k)
            flops += 2 * m * k * w * (2 * q + 2)
        flops += 2 * t.rank * k * n
    flops += 2 * m * k * plan.rank_b + 2 * m * n * (plan.rank_a + plan.rank_b)
    return flops, float(sum(b * touches for b, touches in lowrank_traffic(plan, m, n, k,
                                                                          b_bytes)))


def least_extra_ms(plan, m: int, n: int, k: int, fma_gflops: float | None,
                   bandwidth: float | None, b_bytes: int = 4, cache_bytes: int = 0) -> dict:
    """{"floor_ms", "floor_why"} for a plan with low-rank terms (floor_ms None where a roof
    was not measured); {} without low-rank terms. Of each touch of an array, the bytes past
    cache_bytes (the last-level cache) count at the memory bandwidth: the rest may still be in
    the cache (module docstring), so only what cannot fit there bounds the call from below."""
    flops, _ = lowrank_work(plan, m, n, k, b_bytes)
    traffic = lowrank_traffic(plan, m, n, k, b_bytes)
    nbytes = sum(b * touches for b, touches in traffic)
    if not flops:
        return {}
    if not fma_gflops or not bandwidth:
        return {"floor_ms": None, "floor_why": "the FMA peak was not measured (add the peaks "
                "section)"}
    compute = flops / (fma_gflops * 1e9) * 1e3
    past = float(sum(max(0, b - cache_bytes) * touches for b, touches in traffic))
    memory = past / bandwidth * 1e3
    cached = f", {past / 1e6:.0f} MB past the {cache_bytes / 2**20:.0f} MiB last-level cache" \
        if cache_bytes else ""
    why = (f"{flops / 1e9:.2f} GFLOP float32 at the {fma_gflops:.0f} GFLOPS FMA peak: "
           f"{compute:.2f} ms; {nbytes / 1e6:.0f} MB{cached} at {bandwidth / 1e9:.1f} GB/s: "
           f"{memory:.2f} ms")
    return {"floor_ms": max(compute, memory), "floor_why": why}
