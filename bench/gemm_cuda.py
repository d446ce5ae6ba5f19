"""CUDA GEMM benchmark: TOPS of lrqc's int8 GEMM and of its rank-16 compensated GEMM
at 4096^3 and 8192^3 next to torch._int_mm and torch's fp16 matmul on the same GPU, in one
run, and the overhead of the compensation (compensated / direct time, end to end: quantization
of A, A's residual factors, U and W of the epilogue, the GEMM). Also the weight-only product
float16 x int4 per_channel, whose GEMM runs on fp16 tensor cores, next to torch's fp16 matmul.

    python bench/gemm_cuda.py                       # needs an NVIDIA GPU that TVM can use
    python bench/gemm_cuda.py --shapes 4096,4096,4096 --repeat 10

Targets: lrqc int8 >= 0.7x torch._int_mm; compensation overhead <= 5 %. The GEMM
stage is timed alone (device-synchronised medians); "end to end" adds the per-call stages.
Peers are skipped with a note when torch (with CUDA) is missing.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

import lrqc
from lrqc.runtime import device

DIRECT = "scheme d {\n a: int8 per_channel\n b: int8 per_channel\n}"
W4A16 = "scheme w {\n a: float16\n b: int4 per_channel\n}"  # fp16 tensor cores (plan.half)
COMP16 = ("scheme c {\n a: int8 per_channel + lowrank(rank=16, method=rsvd, power_iters=1)\n"
          " b: int8 per_channel + lowrank(rank=16, method=rsvd, power_iters=1)\n}")


def torch_times(m, n, k, repeat):
    """{name: (seconds or None, note)} of torch._int_mm and fp16 matmul on cuda:0."""
    try:
        import torch
    except ImportError:
        return {"torch._int_mm": (None, "torch not installed"),
                "torch fp16 matmul": (None, "torch not installed")}
    if not torch.cuda.is_available():
        return {"torch._int_mm": (None, "torch has no CUDA"),
                "torch fp16 matmul": (None, "torch has no CUDA")}
    out = {}
    a8 = torch.randint(-127, 128, (m, k), dtype=torch.int8, device="cuda")
    b8 = torch.randint(-127, 128, (k, n), dtype=torch.int8, device="cuda")
    a16, b16 = a8.half(), b8.half()
    for name, fn in (("torch._int_mm", lambda: torch._int_mm(a8, b8)),
                     ("torch fp16 matmul", lambda: a16 @ b16)):
        try:
            out[name] = (_cuda_median(fn, torch.cuda.synchronize, repeat), "")
        except RuntimeError as exc:  # torch's errors, e.g. _int_mm shape limits: reported
            out[name] = (None, f"{type(exc).__name__}: {str(exc).splitlines()[0][:60]}")
    return out


def _cuda_median(fn, sync, repeat: int) -> float:
    fn()
    sync()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def lrqc_times(text, m, n, k, repeat, arch):
    """(gemm stage s, end-to-end s, rule) of a scheme's CUDA kernel."""
    s = next(iter(lrqc.parse_schemes(text).values()))
    kernel = lrqc.compile(s, m, n, k, target=f"cuda -arch={arch}")
    rng = np.random.default_rng(0)
    A = rng.random((m, k), dtype=np.float32)
    packed = kernel.pack(rng.random((k, n), dtype=np.float32))
    st = kernel.stage_times(A, packed, repeat=repeat)  # device-synchronised per stage
    return st["gemm"], sum(st.values()), kernel.rule


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shapes", default="4096,4096,4096;8192,8192,8192")
    ap.add_argument("--repeat", type=int, default=20)
    args = ap.parse_args(argv)
    if not device.gpu_present():
        print("bench/gemm_cuda.py: no NVIDIA GPU that TVM can use on this machine; run it on "
              "one (the kernels themselves build anywhere: lrqc build --target cuda-sm90)")
        return 2
    arch = device.device_arch()
    print(f"lrqc {lrqc.__version__}; GPU 0: {device.device().device_name} ({arch}); medians of "
          f"{args.repeat}, device-synchronised; TOPS = 2MNK / time\n")
    head = f"{'shape':<16}{'method':<34}{'ms':>10}{'TOPS':>8}{'/int_mm':>9}  note"
    print(head)
    print("-" * len(head))
    for shape in args.shapes.split(";"):
        m, n, k = (int(x) for x in shape.split(","))
        ops = 2.0 * m * n * k
        peers = torch_times(m, n, k, args.repeat)
        int_mm = peers["torch._int_mm"][0]
        rows = [(name, t, note) for name, (t, note) in peers.items()]
        d_gemm, d_all, rule = lrqc_times(DIRECT, m, n, k, args.repeat, arch)
        c_gemm, c_all, _ = lrqc_times(COMP16, m, n, k, args.repeat, arch)
        w_gemm, _, w_rule = lrqc_times(W4A16, m, n, k, args.repeat, arch)
        fp16 = peers["torch fp16 matmul"][0]
        rows += [("lrqc int8 per_channel (gemm)", d_gemm, f"rule {rule}"),
                 ("lrqc int8 per_channel (end to end)", d_all, ""),
                 ("lrqc LRQMM rank 16 (gemm)", c_gemm, ""),
                 ("lrqc LRQMM rank 16 (end to end)", c_all,
                  f"overhead {c_all / d_all:.3f}x (target <= 1.05)"),
                 ("lrqc fp16 x int4 per_channel (gemm)", w_gemm, f"rule {w_rule}" + (
                     f", {fp16 / w_gemm:.2f}x torch fp16 matmul" if fp16 else ""))]
        for name, t, note in rows:
            label = f"{m},{n},{k}"
            if t is None:
                print(f"{label:<16}{name:<34}{'n/a':>10}{'':>8}{'':>9}  {note}")
                continue
            ratio = f"{int_mm / t:8.2f}x" if int_mm else f"{'':>9}"
            print(f"{label:<16}{name:<34}{t * 1e3:>10.3f}{ops / t / 1e12:>8.1f}{ratio}  {note}")
        if int_mm:
            print(f"  target int8 >= 0.7x torch._int_mm: {int_mm / d_gemm:.2f}x "
                  f"({'met' if int_mm / d_gemm >= 0.7 else 'NOT met'})")
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
