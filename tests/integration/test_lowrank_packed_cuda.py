"""A's lowrank term with other=packed on CUDA targets: lowrank_w (F_Aᵀ B̂ from B's codes)
compiles to CUDA kernels and PTX (compile-only: nvcc, no GPU); where TVM sees an NVIDIA GPU
the kernels match lrqc.reference (marked `gpu`)."""

from __future__ import annotations

import re
import shutil

import numpy as np
import pytest

import lrqc
from lrqc.backend.cuda import toolchain
from lrqc.backend.target import CUDA_ARCHS
from lrqc.reference import matmul
from lrqc.reference.scheme import rel_error
from lrqc.runtime import device

pytestmark = [pytest.mark.filterwarnings("ignore::DeprecationWarning"),
              pytest.mark.skipif(shutil.which("nvcc") is None, reason="needs nvcc")]

TOL = 2e-6
WEIGHTS = ["int8 per_channel", "int4 per_channel + lowrank(rank=3)",
           "uint4 per_vector(16) calibrate=minmax", "int8 per_vector(32) + dense(int8)"]


def scheme(b: str) -> lrqc.Scheme:
    return lrqc.parse_schemes("scheme t {\n a: int8 per_channel + lowrank(rank=4, other=packed)"
                              f"\n b: {b}\n}}")["t"]


@pytest.mark.parametrize("b", WEIGHTS)
def test_lowrank_w_compiles_to_cuda_kernels(b):
    kernel = lrqc.compile(scheme(b), 16, 64, 128, target="cuda-sm90")
    src = toolchain.cuda_source(kernel.module)
    assert re.search(r"__global__ void (__launch_bounds__\(\d+\) )?lowrank_w_m16_kernel", src)
    assert toolchain.count(toolchain.ptx(src, "sm_90")).get("fma.f32", 0) >= 1


def test_rank1_lowrank_w_keeps_the_panel_form_on_cuda():
    """A rank-1 term on int8 weights, which CPUs sum in 64 lanes per panel (te
    compensated.lanes_w), compiles in the panel form for CUDA, whose schedules know it."""
    s = lrqc.parse_schemes("scheme t {\n a: int8 per_tensor + lowrank(rank=1, method=sketch, "
                           "other=packed)\n b: int8 per_channel\n}")["t"]
    src = toolchain.cuda_source(lrqc.compile(s, 16, 64, 128, target="cuda-sm90").module)
    assert re.search(r"__global__ void (__launch_bounds__\(\d+\) )?lowrank_w_m16_kernel", src)
    assert "lowrank_w_fa" not in src and "lowrank_w_b" in src


def test_lowrank_times_exact_b_has_no_exact_w_on_cuda():
    """CUDA keeps W = F_Aᵀ B of other=exact and the randomized SVD's products with A's
    residual on the host's BLAS: no exact_w, resid_tq or resid_z is compiled or listed, and no
    float32 Bᵀ goes to the device."""
    from lrqc.runtime.manifest import functions

    s = lrqc.parse_schemes("scheme t {\n a: int8 per_channel + lowrank(rank=4)\n"
                           " b: int8 per_channel\n}")["t"]
    kernel = lrqc.compile(s, 16, 64, 128, target="cuda-sm90")
    src = toolchain.cuda_source(kernel.module)
    assert "exact_w" not in src and "resid_tq" not in src and "resid_z" not in src
    assert not any(fn.startswith(("exact_w", "resid_")) for fn in functions(kernel))


@pytest.mark.gpu
@pytest.mark.parametrize("b", WEIGHTS)
def test_lowrank_w_on_the_gpu_matches_the_reference(b):
    if not device.gpu_present():
        pytest.skip("needs an NVIDIA GPU")
    arch = device.device_arch()
    if arch not in CUDA_ARCHS:
        pytest.skip(f"GPU arch {arch} is not one lrqc builds for")
    s = scheme(b)
    kernel = lrqc.compile(s, "4..40", 96, 128, target=f"cuda -arch={arch}")
    rng = np.random.default_rng(2)
    B = rng.standard_normal((128, 96))
    packed = kernel.pack(B)
    assert packed.arrays.b32t is None
    for m in (4, 40):
        A = rng.standard_normal((m, 128))
        ref = matmul(s, A.astype(np.float32).astype(np.float64), B)
        assert rel_error(kernel(A, packed), ref) < TOL, m
