"""CUDA targets: every example scheme and base granularity compiles to CUDA and PTX
with the intended integer instructions (compile-only: nvcc, no GPU), artifacts carry a fatbin
for the archs asked for, and a machine without a GPU gets clear errors. Execution against
lrqc.reference is marked `gpu` and runs where TVM sees an NVIDIA GPU."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

import lrqc
from lrqc.backend.compat import Schedule, compile_module, prim_func, tensor, tvm
from lrqc.backend.cuda import dp4a, fatbin, toolchain
from lrqc.backend.schedule.rules import choose
from lrqc.backend.target import CUDA_ARCHS, resolve
from lrqc.backend.te import floating as te_float
from lrqc.backend.te import gemm as te_gemm
from lrqc.errors import InputError, LrqcError
from lrqc.pipeline import export
from lrqc.pipeline.functions import bucket_rule, functions, schedule_function
from lrqc.plan.buckets import bucket_plans
from lrqc.plan.support import make_plan
from lrqc.reference import matmul
from lrqc.reference.scheme import rel_error
from lrqc.runtime import device
from lrqc.runtime.artifact import load_kernel
from lrqc.tuning.db import Database, Record
from lrqc.tuning.records import current_key
from lrqc.tuning.search import (
    Progress,
    function_module,
    sampling_knob,
    search,
    space_knobs,
    trace_to_json,
    unit_safe,
)
from lrqc.tuning.tune import tune_scheme

pytestmark = [pytest.mark.filterwarnings("ignore::DeprecationWarning"),
              pytest.mark.skipif(shutil.which("nvcc") is None, reason="needs nvcc")]

DIMS = (16, 64, 128)
LRQC = [sys.executable, "-m", "lrqc.cli.main"]
TOL = 2e-6


def scheme(a: str, b: str):
    return lrqc.parse_schemes(f"scheme t {{\n a: {a}\n b: {b}\n}}")["t"]


def example(name: str):
    for path in sorted(__import__("pathlib").Path("examples").glob("*.lrq")):
        found = lrqc.load_schemes(path)
        if name in found:
            return found[name]
    raise KeyError(name)


def ptx_of(kernel, arch: str) -> dict:
    src = toolchain.cuda_source(kernel.module)
    assert "extern \"C\" __global__" in src
    return toolchain.count(toolchain.ptx(src, arch))


def _gpu():
    return device.gpu_present()


def test_cuda_targets_resolve_and_bad_ones_are_refused():
    assert resolve("cuda-sm90").archs == ("sm_90",)
    assert resolve("cuda -arch=sm_80").spec["arch"] == "sm_80"
    both = resolve("cuda -arch=sm_90,sm_80")
    assert both.spec["arch"] == "sm_80" and both.archs == ("sm_80", "sm_90")
    assert both.as_dict()["lrqc_archs"] == ["sm_80", "sm_90"]  # the manifest's form
    assert {"cuda", "dp4a", "mma_s8"} <= resolve({"kind": "cuda", "arch": "sm_80"}).features
    for bad, msg in (("cuda", "names no GPU architecture"), ("cuda -arch=sm_50", "not supported"),
                     ("cuda -O3", "only -arch=")):
        with pytest.raises(LrqcError, match=msg):
            resolve(bad)


@pytest.mark.parametrize("name", ["lrqmm_int8", "lrqmm_w4a8_r16", "full_int8", "sparse_int8",
                                  "mxfp4", "vsquant_w4a4", "lplr_w_a8", "lplr_w", "lramm_r64"])
def test_example_schemes_compile_to_ptx(name):
    """Each example's kernels as CUDA source and PTX for sm_80 and sm_90: dp4a for integer
    GEMMs, float FMAs for the float32 products of LPLR / LRAMM."""
    m = {"lrqmm_w4a8_r16": 32, "lramm_r64": 64}.get(name, 16)  # LRAMM: rank 64 <= M
    n, k = (96, 96) if name.startswith(("lplr", "lramm")) else DIMS[1:]
    kernel = lrqc.compile(example(name), m, n, k, target="cuda -arch=sm_80,sm_90")
    for arch in ("sm_80", "sm_90"):
        found = ptx_of(kernel, arch)
        if name in ("lplr_w", "lramm_r64"):  # float32 GEMMs (the numerical contract): K
            assert found.get("fma.f32", 0) >= 1, found  # reduced across a block's threads
        else:
            assert found.get("dp4a", 0) >= 16, found


@pytest.mark.parametrize("a,b,rule", [
    ("int8 per_tensor", "int8 per_tensor", "cuda_dp4a"),
    ("int8 per_channel", "int8 per_channel", "cuda_dp4a"),
    ("int8 per_channel", "int4 per_channel", "cuda_dp4a"),  # nibbles unpacked into shared
    ("int8 per_channel", "uint4 per_channel", "cuda_dp4a"),  # weight zero points
    ("int8 per_channel", "int3 per_channel", "cuda_dp4a"),  # 3-bit codes packed densely
    ("int8 per_vector(32)", "int6 per_vector(32)", "cuda_dp4a"),
    ("int8 per_channel + lowrank(rank=4)", "int8 per_channel + lowrank(rank=3)", "cuda_dp4a"),
    # per-group products: group by group in registers (dp4a._dp4a_groups)
    ("int8 per_tensor + dense()", "int8 per_channel", "cuda_dp4a"),  # K segments
    ("int8 per_vector(32)", "int4 per_vector(32)", "cuda_dp4a"),
    ("uint8 per_vector(16) calibrate=minmax", "uint4 per_vector(16, scale=uint8)", "cuda_dp4a"),
    ("int8 per_vector(32) + lowrank(rank=2)", "int8 per_vector(32) + lowrank(rank=3)",
     "cuda_dp4a"),
    ("e2m1 per_block(32, scale=e8m0)", "e2m1 per_block(32, scale=e8m0)", "cuda_dp4a"),
    ("e2m2 per_block(32, scale=e8m0)", "e2m2 per_block(32, scale=e8m0)", "cuda_dp4a"),
    ("e2m4 per_tensor", "e1m5 per_channel", "cuda_dp4a"),  # minifloat codes fit a byte
    ("fixed(8, max=4.0)", "int5 per_channel", "cuda_dp4a"),  # static scale, no max pass
])
def test_base_products_compile_with_the_expected_rule(a, b, rule):
    kernel = lrqc.compile(scheme(a, b), *DIMS, target="cuda-sm90")
    assert kernel.rule == rule
    assert ptx_of(kernel, "sm_90").get("dp4a", 0) >= 16
    assert kernel.schedules["gemm_m16"] == f"hand schedule {rule}"


def test_per_group_gemm_keeps_partial_and_output_sums_in_registers():
    """Per-group products (VS-Quant): per thread, the group's int32 partial sums and the
    float32 output sums live in registers across the groups; A's and B's k chunks of each
    group are staged in shared memory; the output is written once."""
    kernel = lrqc.compile(scheme("int8 per_vector(32)", "int4 per_vector(32)"), 64, 128, 256,
                          target="cuda-sm90")
    src = toolchain.cuda_source(kernel.module)
    body = src[src.rindex("gemm_m64_kernel("):]
    body = body[: body.index("\n}\n")]
    assert "int partial_local_ptr[16];" in body and "float C_local_ptr[16];" in body
    assert "for (int g = 0; g < 8; ++g)" in body and body.count("__shared__") == 2
    assert body.count("__dp4a(") >= 16 and body.count("C_ptr[") == 16


def test_tensor_cores_or_dp4a_chosen_per_bucket():
    """Buckets whose padded sizes fit 64 x 64 tiles run WMMA s8 (A's codes shifted to s8, +128
    column sums in the epilogue); smaller M buckets dp4a; the report says which per function."""
    for b in ("int8 per_channel", "int4 per_channel + lowrank(rank=3)", "uint4 per_channel",
              "int3 per_channel"):
        kernel = lrqc.compile(scheme("int8 per_channel", b), "1..128", 128, 256,
                              target="cuda-sm80")
        assert kernel.rule == "cuda_wmma"
        assert kernel.schedules["gemm_m4"] == "hand schedule cuda_dp4a"
        assert kernel.schedules["gemm_m64"] == "hand schedule cuda_wmma"
        assert kernel.schedules["gemm_m128"] == "hand schedule cuda_wmma"
        found = ptx_of(kernel, "sm_80")
        assert found.get("wmma.s8", 0) >= 8 and found.get("dp4a", 0) >= 16, found  # u32.s32


def test_wmma_k_loop_is_software_pipelined():
    """Double-buffered shared tiles: the copy of chunk k + 1 goes to the other half while chunk
    k multiplies (a prologue copy, then k_chunks - 1 steady-state iterations)."""
    kernel = lrqc.compile(scheme("int8 per_channel", "int8 per_channel"), 64, 64, 512,
                          target="cuda-sm90")
    src = toolchain.cuda_source(kernel.module)
    body = src[src.rindex("gemm_m64_kernel("):]
    body = body[: body.index("\n}\n")]
    assert "signed char a_s8_shared_ptr[2048];" in body  # 2 x (64 rows x 16 bytes)
    assert "signed char b_nk_shared_ptr[2048];" in body
    assert "k_0_0 < 31;" in body and "& 1) * 1024)" in body  # 32 chunks of 16 bytes
    assert body.count("wmma::mma_sync(") >= 2


@pytest.mark.parametrize("a", ["int8 per_channel calibrate=minmax", "int8 per_channel"])
def test_wmma_s8_formulation_is_the_u8_sum(a):
    """The tensor-core TE computes (a - 128) b summed, + 128 colsum(b): the same integers as
    the u8 formulation, checked here on the CPU by compiling both TEs for LLVM. Min-max A:
    zero corrections per row from the data; max-abs A: the static 128 (zc not read: a
    wrong zc buffer changes nothing)."""
    plan = make_plan(scheme(a, "int8 per_channel"), 64, 64, 128)
    rng = np.random.default_rng(3)
    aq = rng.integers(0, 256, (plan.mp, plan.kp)).astype("uint8")
    bp = rng.integers(-127, 128, (plan.np_ // 16, plan.kp // 4, 16, 4)).astype("int8")
    cs = bp.astype(np.int64).sum(axis=(1, 3)).reshape(1, plan.np_).astype(np.int32)
    zc = rng.integers(0, 256, (plan.mp, 1)).astype(np.int32)
    held = zc if plan.a_zero_static is None else np.full_like(zc, plan.a_zero_static)
    want = (aq.astype(np.int64) @ bp.transpose(0, 2, 1, 3).reshape(plan.np_, plan.kp).T
            - held * cs)
    for s8 in (False, True):
        ex = compile_module(prim_func(te_gemm.gemm(plan, int_only=True, s8=s8)),
                            tvm.target.Target("llvm"))
        out = tensor(np.zeros((plan.mp, plan.np_), np.int32))
        ex["main"](tensor(aq), tensor(bp), tensor(zc), tensor(cs), out)
        np.testing.assert_array_equal(out.numpy(), want)


HALF_CASES = [  # (a, b, KernelPlan.half, arch): float GEMMs whose values are exact in 16 bits
    ("float16", "int4 per_channel", "float16", "sm_75"),  # weight-only
    ("float16", "int4 per_channel + lowrank(rank=4)", "float16", "sm_90"),
    ("bfloat16", "int8", "bfloat16", "sm_80"),
    ("int8 per_channel", "float16", "float16", "sm_80"),
    ("e5m2 per_tensor", "e4m3 per_channel", "float16", "sm_90"),  # the float fallback
    ("e4m3 per_channel", "bfloat16", "bfloat16", "sm_90"),  # element values, not codes x 2^f
]


def test_float32_gemms_leave_out_dlights_matmul_rule(cache, monkeypatch):
    """dlight's matmul rule gave wrong float32 products on an H200 at most shapes tried
    (128x128x64: relative error 0.97); lrqc's defaults leave it out, and a block the other
    rules' analysis fails on goes to the next rule."""
    from lrqc.backend.compat import dlight

    called = []
    monkeypatch.setattr(dlight.gpu.Matmul, "apply", lambda *args: called.append(1))
    kernel = lrqc.compile(scheme("float32", "float32"), 128, 128, 64, target="cuda-sm90")
    assert kernel.schedules["gemm_m128"] == "TVM dlight default GPU schedule" and not called
    kernel = lrqc.compile(scheme("int8 per_vector(32)", "int6 per_vector(32)"), *DIMS,
                          target="cuda-sm90")  # per-group integer sums: Reduction asserts
    assert not called and ptx_of(kernel, "sm_90").get("dp4a", 0) >= 16


@pytest.mark.parametrize("a,b,half,arch", HALF_CASES)
def test_float_gemms_run_on_16_bit_tensor_cores(a, b, half, arch):
    """fp16 / bf16 for the float pieces: A's and B's exact 16-bit values (codes, or a float16 /
    bfloat16 operand) multiplied by WMMA f16 / bf16 -> f32 in 64 x 64 tiles (the int8 rule's
    tile and pipeline); small buckets keep dlight's float32 GEMM."""
    kernel = lrqc.compile(scheme(a, b), "1..128", 128, 256, target=f"cuda -arch={arch}")
    assert kernel.plan.half == half and kernel.rule == "cuda_wmma_half"
    assert kernel.schedules["gemm_m64"] == kernel.schedules["gemm_m128"] \
        == "hand schedule cuda_wmma_half"
    assert kernel.schedules["gemm_m4"] == "TVM dlight default GPU schedule"
    found = ptx_of(kernel, arch)
    assert found.get("wmma.bf16" if half == "bfloat16" else "wmma.f16", 0) >= 8, found
    assert "wmma.s8" not in found


@pytest.mark.parametrize("a,b,arch", [
    ("float32", "int4 per_channel", "sm_90"),  # a float32 operand
    ("float16", "bfloat16", "sm_90"),  # no 16-bit type holds both
    ("float16", "int4 per_vector(32)", "sm_90"),  # scales inside the K sum
    ("float16", "int4 per_channel + dense()", "sm_90"),  # B's dense term folded into floats
    ("bfloat16", "int8", "sm_75"),  # bf16 tensor cores need sm_80
    ("float16", "uint4 per_channel", "sm_90"),  # minmax zero points: code - zero unbounded
])
def test_float_gemms_not_exact_in_16_bits_stay_float32(a, b, arch):
    kernel = lrqc.compile(scheme(a, b), 128, 128, 256, target=f"cuda -arch={arch}")
    assert kernel.schedules["gemm_m128"] == "TVM dlight default GPU schedule"
    found = ptx_of(kernel, arch)
    assert not {"wmma.f16", "wmma.bf16"} & set(found) and found.get("fma.f32", 0) >= 1, found


@pytest.mark.parametrize("a,b,half,arch", HALF_CASES)
def test_16_bit_formulation_of_whole_kernels_matches_the_reference_on_the_cpu(
        a, b, half, arch, monkeypatch):
    """What cuda_wmma_half computes, emulated on the CPU: each case's whole kernel with its
    GEMM in the 16-bit formulation (values cast to float16 while staged; LLVM computes
    bfloat16 in float32, so those cases check the rest), against lrqc.reference."""
    real = te_float.gemm
    monkeypatch.setattr(te_float, "gemm", lambda p, half=False: real(p, half=True))
    s = scheme(a, b)
    kernel = lrqc.compile(s, 64, 64, 128, tuned=False)
    assert kernel.plan.half == half
    rng = np.random.default_rng(2)
    A, B = rng.standard_normal((64, 128)), rng.standard_normal((128, 64))
    ref = matmul(s, A.astype(np.float32).astype(np.float64), B)
    assert rel_error(kernel.run(A, B), ref) < TOL


@pytest.mark.parametrize("a,b", [("float16", "int4 per_channel"), ("bfloat16", "int8")])
def test_16_bit_formulation_is_the_float32_one_when_values_are_exact(a, b):
    """te_float.gemm(half=True) casts A's and B's values to the plan's 16-bit type while
    staging them: compiled for the CPU here, it gives the float32 formulation's numbers on
    exact values, and (float16) differs on one value that is not exact, so the cast is there."""
    plan = make_plan(scheme(a, b), 64, 64, 128)
    rng = np.random.default_rng(3)
    top = 2048 if plan.half == "float16" else 256  # integers exact in the type
    af = rng.integers(-top, top + 1, (plan.mp, plan.kp)).astype(np.float32)
    bf = rng.integers(-127, 128, (plan.np_ // 16, plan.kp, 16)).astype(plan.half)  # stored
    saf, sbf = rng.random(plan.mp).astype(np.float32), rng.random((1, plan.np_)).astype(np.float32)
    bias = rng.standard_normal((1, plan.np_)).astype(np.float32)
    fns = [compile_module(prim_func(te_float.gemm(plan, half=h)), tvm.target.Target("llvm"))
           for h in (False, True)]

    def run(f, a_vals):
        out = tensor(np.zeros((plan.mp, plan.np_), np.float32))
        f["main"](tensor(a_vals), tensor(bf), tensor(saf), tensor(sbf), tensor(bias), out)
        return out.numpy()

    np.testing.assert_array_equal(run(fns[1], af), run(fns[0], af))
    if plan.half == "float16":  # (TVM's LLVM backend computes bfloat16 in float32 anyway)
        inexact = af.copy()
        inexact[0, 0] = top + 1  # rounds to top in 16 bits
        assert not np.array_equal(run(fns[1], inexact)[0], run(fns[0], inexact)[0])


def test_dp4a_gemm_keeps_each_threads_accumulators_in_registers():
    """The per-thread tile is contiguous (a strided one made TVM allocate a 49 x 49 local
    array): mi x nj int32 accumulators, A's and B's tiles in shared memory."""
    kernel = lrqc.compile(scheme("int8 per_channel", "int8 per_channel"), 32, 256, 512,
                          target="cuda-sm90")
    assert kernel.rule == "cuda_dp4a"  # 32 rows: below the tensor-core tile
    t = dp4a.gemm_tile(kernel.plan)
    assert (t["ty"], t["mi"], t["tx"], t["nj"]) == (16, 2, 16, 4)
    src = toolchain.cuda_source(kernel.module)
    body = src[src.rindex("gemm_m32_kernel("):]  # the definition
    body = body[: body.index("\n}\n")]
    assert "int acc_local_ptr[8];" in body
    assert "__shared__" in body and body.count("__dp4a(") == 8


def test_quantization_statistics_reduce_across_threads():
    """A per-tensor max over M x K is a cross-thread reduction (warp shuffles), each thread
    reading a strided, coalesced share; not one thread walking the whole tensor."""
    kernel = lrqc.compile(scheme("int8 per_tensor", "int8 per_channel"), 256, 64, 512,
                          target="cuda-sm90")
    assert kernel.schedules["quantize_a_m256"].startswith("lrqc per-block GPU schedule")
    src = toolchain.cuda_source(kernel.module)
    body = src[src.rindex("quantize_a_m256_kernel(float"):]
    body = body[: body.index("\n}\n")]
    assert "__shfl_down_sync" in body and "< 512;" in body  # 131072 elements / 256 threads


def test_sparse_products_compile_to_thread_per_column_kernels():
    """Sparse residual terms: the per-call copy's zero-skip product and the static copy's CSR
    product as CUDA kernels (integer sums per group, one float multiply-add per group)."""
    for a, b in (("int8 per_channel + sparse(threshold=0.9)", "int8 per_channel"),
                 ("int8 per_channel", "int8 per_channel + sparse(threshold=0.9)")):
        kernel = lrqc.compile(scheme(a, b), *DIMS, target="cuda-sm90")
        src = toolchain.cuda_source(kernel.module)
        assert "sparse0_m16_kernel" in src
        found = ptx_of(kernel, "sm_90")
        assert found.get("fma.f32", 0) >= 1 and found.get("dp4a", 0) >= 4, found


@pytest.mark.skipif(_gpu(), reason="this machine has a GPU")
def test_running_without_a_gpu_says_so():
    kernel = lrqc.compile(scheme("int8 per_channel", "int8 per_channel"), *DIMS,
                          target="cuda-sm90")
    with pytest.raises(InputError, match="no CUDA GPU"):
        kernel.run(np.ones((16, 128)), np.ones((128, 64)))


def test_artifact_carries_a_fatbin_for_every_arch(tmp_path):
    out = tmp_path / "art"
    res = subprocess.run([*LRQC, "build", "examples/lrqmm.lrq",
                          "--scheme", "lrqmm_int8", "--dims", "M=1..16,N=64,K=128",
                          "--target", "cuda -arch=sm_80,sm_90", "-o", str(out)],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "device code: device.fatbin" in res.stdout and "dp4a x" in res.stdout
    man = json.loads((out / "manifest.json").read_text())
    cuda = man["cuda"]
    assert cuda["archs"] == ["sm_80", "sm_90"] and cuda["cuda_version"] == toolchain.cuda_version()
    assert cuda["ptx_instructions"]["dp4a"] >= 16
    src = (out / "device.cu").read_text()
    assert toolchain.source_hash(src) == cuda["source_sha256"]
    images = fatbin.fatbin_contents((out / "device.fatbin").read_bytes())
    assert ("sass", "sm_80") in images and ("sass", "sm_90") in images
    assert ("ptx", "sm_90") in images
    if not _gpu():
        res = subprocess.run([*LRQC, "run", str(out), "--a", "x.npy",
                              "--b", "y.npy", "-o", str(tmp_path / "c.npy")],
                             capture_output=True, text=True)
        assert res.returncode != 0 and "no CUDA GPU" in res.stderr
        assert "Traceback" not in res.stderr


def test_load_time_compile_hook_serves_the_built_fatbin_and_delegates_the_rest(monkeypatch):
    """TVM compiles an exported CUDA module's source when loading it; lrqc's hook returns the
    artifact's fatbin for that source (no compiler on the deploy side) and hands any other
    source (kernels compiled in the same process) to TVM's own hook."""
    import tvm_ffi

    original = tvm_ffi.get_global_func("tvm_callback_cuda_compile")
    seen = []
    served = fatbin.FatbinHook()
    try:
        served.serve(b"FATBIN", toolchain.source_hash("// the built source"))
        assert served.previous is not None  # TVM's own, kept
        served.previous = lambda code, *rest: seen.append(str(code)) or b"NVCC"
        hook = tvm_ffi.get_global_func("tvm_callback_cuda_compile")
        assert bytes(hook("// the built source")) == b"FATBIN"
        assert served.hits == 1 and not seen
        assert bytes(hook("// another source")) == b"NVCC" and seen == ["// another source"]
    finally:  # TVM's own hook back, for whatever runs next in this process
        tvm_ffi.register_global_func("tvm_callback_cuda_compile", original, override=True)


def test_builds_compile_cuda_source_with_lrqcs_nvcc_for_every_arch(monkeypatch):
    """On a machine with a GPU TVM compiles a module's CUDA source as it builds it. Within a
    build (HOOK.build_for, which every CUDA build enters) lrqc's hook answers with nvcc's
    fatbin for every arch asked for: never NVRTC, which cannot link the mixed-sign __dp4a TVM
    declares, nor one arch only. Other threads, and calls after the build, go to TVM's own
    hook, told to use nvcc."""
    import threading

    import tvm_ffi

    entered = []
    real = fatbin.HOOK.build_for
    monkeypatch.setattr(fatbin.HOOK, "build_for", lambda archs: entered.append(archs)
                        or real(archs))
    kernel = lrqc.compile(scheme("int8 per_channel", "int4 per_channel"), *DIMS,
                          target="cuda -arch=sm_80,sm_90")
    assert [list(a) for a in entered] == [["sm_80", "sm_90"]]
    src = toolchain.cuda_source(kernel.module)
    assert "__dp4a(unsigned int srcA, int srcB, int c)" in src  # what NVRTC cannot link
    original = tvm_ffi.get_global_func(fatbin.HOOK_NAME)
    seen: list[str] = []
    monkeypatch.delenv("TVM_CUDA_COMPILE_MODE", raising=False)
    try:
        fatbin.HOOK._register()
        monkeypatch.setattr(fatbin.HOOK, "previous",
                            lambda code, *rest: seen.append(str(code)) or b"TVM")
        # a loaded artifact's fatbin of the same source (other archs) does not answer a build,
        # and another hook registered since is replaced when a build starts
        monkeypatch.setitem(fatbin.HOOK.served, toolchain.source_hash(src), b"LOADED")
        tvm_ffi.register_global_func(fatbin.HOOK_NAME, lambda *args: b"OTHER", override=True)
        built = fatbin.HOOK.built
        other: list[bytes] = []
        with real(["sm_80", "sm_90"]):
            hook = tvm_ffi.get_global_func(fatbin.HOOK_NAME)  # as TVM calls it
            binary = bytes(hook(src))
            worker = threading.Thread(target=lambda: other.append(bytes(hook("// elsewhere"))))
            worker.start()
            worker.join()
        images = fatbin.fatbin_contents(binary)
        assert {("sass", "sm_80"), ("sass", "sm_90"), ("ptx", "sm_90")} <= set(images)
        assert fatbin.HOOK.built == built + 1
        assert other == [b"TVM"] and bytes(hook("// after")) == b"TVM"
        assert seen == ["// elsewhere", "// after"] and bytes(hook(src)) == b"LOADED"
        assert __import__("os").environ["TVM_CUDA_COMPILE_MODE"] == "nvcc"
    finally:
        tvm_ffi.register_global_func(fatbin.HOOK_NAME, original, override=True)


def test_cuda_artifacts_need_nvcc_and_their_fatbin(tmp_path, monkeypatch):
    s = scheme("int8 per_channel", "int8 per_channel")
    monkeypatch.setattr(toolchain.shutil, "which", lambda name: None)
    with pytest.raises(LrqcError, match="need nvcc"):
        export.build_artifact(s, 16, 64, 128, tmp_path / "none", "cuda-sm90")
    assert not (tmp_path / "none").exists()  # refused before anything was written


def test_tune_without_a_gpu_says_so_and_refuses_empty_selections(capsys):
    if not _gpu():
        with pytest.raises(LrqcError, match="measures and checks candidates on a GPU.*--rpc"):
            tune_scheme(scheme("int8 per_channel", "int8 per_channel"), *DIMS,
                        target="cuda-sm90")
    with pytest.raises(LrqcError, match="nothing to tune"):
        tune_scheme(scheme("int8 per_channel", "int8 per_channel"), *DIMS,
                    functions=("lowrank_u",))


TUNE_CASES = [  # (a, b, dims, function, rule, knobs, PTX instruction)
    ("int8 per_channel", "int8 per_channel", (128, 128, 256), "gemm", "cuda_wmma",
     {"wy", "wx", "fy", "fx"}, "wmma.s8"),
    ("int8 per_channel", "int4 per_channel + lowrank(rank=3)", (32, 128, 256), "gemm",
     "cuda_dp4a", {"nj", "kc"}, "dp4a"),  # (mi: only 2, as 1 drops loops in replays)
    ("int8 per_vector(32)", "int4 per_vector(32)", (64, 128, 256), "gemm", "cuda_dp4a",
     {"mi", "nj", "kc"}, "dp4a"),
    ("float16", "int4 per_channel", (128, 256, 256), "gemm", "cuda_wmma_half",
     {"wy", "wx", "fy", "fx"}, "wmma.f16"),
    ("int8 per_channel", "int8 per_channel", (128, 128, 256), "quantize_a", "cuda_wmma",
     {"threads"}, None),
]


def _replayed(plan, rule, fn, picks):
    """Function fn scheduled the way MetaSchedule replays a sample of the space: the hand
    trace made with sampled decisions, the decisions set to picks, applied to a fresh
    schedule."""
    from tvm.s_tir.schedule import Trace

    sch = Schedule(prim_func(functions(plan, rule)[fn]))
    order = []

    def knob(name, cands, hand):
        order.append(name)
        return sampling_knob(sch, unit_safe(fn, plan, rule))(name, cands, hand)

    schedule_function(fn, sch, plan, rule, knob)
    trace = sch.trace
    samples = [i for i in trace.insts if i.kind.name == "SampleCategorical"]
    for inst, name in zip(samples, [n for n in order if n in picks], strict=False):
        cands = [int(c) for c in inst.attrs[0]]
        trace = trace.with_decision(inst, cands.index(picks[name]), remove_postproc=True)
    fresh = Schedule(prim_func(functions(plan, rule)[fn]))
    Trace.apply_json_to_schedule(trace.as_json(remove_postproc=True), fresh)  # as stored
    return fresh


@pytest.mark.parametrize("a,b,dims,fn,rule,knobs,instr", TUNE_CASES)
def test_cuda_tuning_spaces_replay_and_compile_at_every_corner(a, b, dims, fn, rule, knobs,
                                                                 instr):
    """lrqc tune --target cuda samples the CUDA rules' knobs (tensor-core warps and fragments
    per warp, dp4a accumulators per thread and k chunk, threads per block of the other
    functions). Each knob at its smallest and largest value, the others at the hand choice,
    replayed as MetaSchedule replays samples, compiles to CUDA (and the GEMMs to PTX with
    their instruction)."""
    t = resolve("cuda-sm90")
    plan = make_plan(scheme(a, b), *dims)
    r = bucket_rule(plan, choose("cuda", plan, t)[0], t)
    assert r.name == rule
    with t.tvm():
        space = space_knobs(plan, r, fn)
        assert set(space) == knobs, space
        hand = {}
        schedule_function(fn, Schedule(prim_func(functions(plan, r)[fn])), plan, r,
                          lambda n, c, h: hand.setdefault(n, h))
        for name, cands in space.items():
            for value in (cands[0], cands[-1]):
                sch = _replayed(plan, r, fn, {**{k: hand[k] for k in space}, name: value})
                src = toolchain.cuda_source(compile_module(sch.mod, t.tvm()))
                assert "__global__" in src
                if name == "threads":  # the per-block kernels' thread count follows the knob
                    assert f"__launch_bounds__({value})" in src and "__shfl" in src
                if instr:
                    found = toolchain.count(toolchain.ptx(src, "sm_90"))
                    assert found.get(instr, 0) >= 2, (name, value)


class _FakeRunner:
    """A MetaSchedule runner for a machine without a GPU: every candidate 'measured' at a
    made-up time (the search's plumbing is what is tested, never its numbers)."""

    @staticmethod
    def make():
        from tvm.ir.utils import derived_object
        from tvm.s_tir.meta_schedule.runner import PyRunner, PyRunnerFuture, RunnerResult

        @derived_object
        class Future(PyRunnerFuture):
            def __init__(self, secs):
                super().__init__()
                self.secs = secs

            def done(self):
                return True

            def result(self):
                return RunnerResult([self.secs], None)

        @derived_object
        class Runner(PyRunner):
            def __init__(self):
                super().__init__()
                self.n = 0

            def run(self, runner_inputs):
                out = []
                for _ in runner_inputs:
                    self.n += 1
                    out.append(Future(1e-3 * (1 + self.n % 7)))
                return out

        return Runner()


def test_cuda_search_builds_candidates_and_builds_replay_them(cache, tmp_path):
    """The CUDA search without a GPU, up to measuring: MetaSchedule samples lrqc's tensor-core
    space (no schedule rules; GPU limits checked), builds every candidate to a CUDA module and
    records it; a recorded trace then replays into a whole kernel, which `lrqc build`-style
    compilation reports as a tuning record and compiles to WMMA. (Measuring and checking need
    the GPU: the gpu test below.)"""
    t = resolve("cuda-sm80")
    s = scheme("int8 per_channel", "int8 per_channel")
    plan = bucket_plans(s, 128, 128, 256)[0]
    rule = bucket_rule(plan, choose("cuda", plan, t)[0], t)
    assert rule.name == "cuda_wmma"
    runner = _FakeRunner.make()
    progress = Progress(6, 0.0, out=__import__("io").StringIO())
    msdb = search(function_module(plan, rule, "gemm"), plan, rule, "gemm", t,
                  tmp_path / "work", 6, None, 1, None, None, "random", progress, runner=runner)
    assert runner.n >= 4 and progress.valid == progress.done >= 4
    top = msdb.get_top_k(msdb.commit_workload(function_module(plan, rule, "gemm")), 2)
    assert top
    trace = trace_to_json(top[0].trace)
    db = Database()
    rec = Record(current_key(plan, "gemm", t), trace, 0.5, 1.0)
    db.put(rec)
    kernel = lrqc.compile(s, 128, 128, 256, target="cuda-sm80")
    assert kernel.schedules["gemm_m128"].startswith(f"tuning record {rec.hash}")
    assert ptx_of(kernel, "sm_80").get("wmma.s8", 0) >= 2


def test_tune_cuda_through_an_rpc_tracker_on_loopback(cache):
    """CUDA tuning from this machine through a tracker and server on loopback: candidates are
    built here and sent to the server. A server without a GPU (this CI machine) makes every
    measurement fail, and lrqc tune says why and keeps the hand schedule; with a GPU, the
    candidates are checked on it against the hand schedule (check_remote) and recorded."""
    pytest.importorskip("tornado")
    from tvm.rpc.server import Server
    from tvm.rpc.tracker import Tracker

    target = f"cuda -arch={_gpu_arch()}" if _gpu() else "cuda-sm90"
    tracker = Tracker(host="127.0.0.1", port=9190, port_end=9290, silent=True)
    server = Server(host="127.0.0.1", port=9300, port_end=9400, key="lrqc-cuda",
                    tracker_addr=("127.0.0.1", tracker.port), silent=True)
    try:
        rows = tune_scheme(scheme("int8 per_channel", "int8 per_channel"), 128, 128, 256,
                           target=target, trials=2, rpc=f"127.0.0.1:{tracker.port}",
                           key="lrqc-cuda", cost_model="random", functions=("gemm",))
    finally:
        server.terminate()
        tracker.terminate()
    assert rows[0]["trials"] == 2
    if _gpu():
        assert rows[0]["status"] == "recorded", rows
    else:
        assert rows[0]["valid"] == 0
        assert rows[0]["status"].startswith("no valid candidate (every measurement failed; "
                                            "the first: "), rows


GPU_CASES = ["lrqmm_int8", "lrqmm_w4a8_r16", "full_int8", "sparse_int8", "mxfp4", "vsquant_w4a4",
             "lplr_w_a8", "lplr_w", "lramm_r64"]


def _gpu_arch():
    """The GPU's arch when lrqc builds for it (else the gpu tests skip)."""
    if not _gpu():
        pytest.skip("needs an NVIDIA GPU that TVM can use")
    if device.device_arch() not in CUDA_ARCHS:
        pytest.skip(f"GPU arch {device.device_arch()} is not one lrqc builds for")
    return device.device_arch()


@pytest.mark.gpu
@pytest.mark.parametrize("name", GPU_CASES)
@pytest.mark.parametrize("dims", [(40, 96, 96), (128, 128, 256)])  # dp4a; tensor cores
def test_cuda_kernels_match_the_reference(name, dims):
    arch = _gpu_arch()
    m, n, k = dims
    if name == "lramm_r64":  # rank 64 needs M >= 64
        m += 32
    rng = np.random.default_rng(1)
    A, B = rng.random((m, k)), rng.random((k, n))
    s = example(name)
    kernel = lrqc.compile(s, m, n, k, target=f"cuda -arch={arch}")
    ref = matmul(s, A.astype(np.float32).astype(np.float64), B)
    assert rel_error(kernel.run(A, B), ref) < TOL


@pytest.mark.gpu
@pytest.mark.parametrize("b", ["int8 per_channel", "int4 per_channel", "uint4 per_channel",
                               "int4 per_channel + lowrank(rank=3)"])
def test_cuda_bucketed_kernels_and_integer_sums(b):
    """A range build runs dp4a buckets (m = 3) and tensor-core buckets (m = 64, 100); the
    integer sums match the CPU kernel's exactly."""
    arch = _gpu_arch()
    s = scheme("int8 per_channel", b)
    kernel = lrqc.compile(s, "1..128", 128, 256, target=f"cuda -arch={arch}")
    cpu = lrqc.compile(s, "1..128", 128, 256)
    rng = np.random.default_rng(5)
    B = rng.standard_normal((256, 128))
    packed, packed_cpu = kernel.pack(B), cpu.pack(B)
    for m in (3, 64, 100):
        A = rng.standard_normal((m, 256))
        ref = matmul(s, A.astype(np.float32).astype(np.float64), B)
        assert rel_error(kernel(A, packed), ref) < TOL, m
        np.testing.assert_array_equal(kernel.int_accumulate(A, packed),
                                      cpu.int_accumulate(A, packed_cpu))


@pytest.mark.gpu
@pytest.mark.parametrize("a,b,half,arch", HALF_CASES)
def test_cuda_16_bit_float_gemms_match_the_reference(a, b, half, arch):
    gpu_arch = _gpu_arch()
    if half == "bfloat16" and int(gpu_arch[3:]) < 80:
        pytest.skip(f"bf16 tensor cores need sm_80, this GPU is {gpu_arch}")
    s = scheme(a, b)
    kernel = lrqc.compile(s, "1..128", 128, 256, target=f"cuda -arch={gpu_arch}")
    rng = np.random.default_rng(7)
    B = rng.standard_normal((256, 128))
    packed = kernel.pack(B)
    for m in (3, 64, 128):  # dlight's float32 GEMM, then WMMA f16 / bf16
        A = rng.standard_normal((m, 256))
        ref = matmul(s, A.astype(np.float32).astype(np.float64), B)
        assert rel_error(kernel(A, packed), ref) < TOL, m


@pytest.mark.gpu
@pytest.mark.parametrize("dims", [(128, 128, 64), (128, 128, 83), (64, 64, 64), (40, 96, 96),
                                  (128, 128, 256), (96, 128, 32)])
def test_cuda_float32_gemms_match_the_reference(dims):
    """dlight's float32 GEMM (float operands not exact in 16 bits: LRAMM's and LPLR's float
    products), at the shapes where dlight's matmul rule was wrong and where it was right."""
    arch = _gpu_arch()
    m, n, k = dims
    s = scheme("float32", "float32")
    kernel = lrqc.compile(s, m, n, k, target=f"cuda -arch={arch}")
    rng = np.random.default_rng(3)
    A, B = rng.standard_normal((m, k)), rng.standard_normal((k, n))
    ref = matmul(s, A.astype(np.float32).astype(np.float64), B)
    assert rel_error(kernel.run(A, B), ref) < TOL


@pytest.mark.gpu
def test_tune_cuda_on_the_gpu_records_and_builds_use_it(cache):
    """lrqc tune --target cuda on this machine's GPU: candidates measured there and checked
    against lrqc.reference, records kept, and builds replaying them still match it."""
    arch = _gpu_arch()
    target = f"cuda -arch={arch}"
    s = scheme("int8 per_channel", "int4 per_channel")
    rows = tune_scheme(s, "64..128", 256, 256, target=target, trials=6, cost_model="random",
                       functions=("gemm", "quantize_a"))
    assert rows and all(r["status"] == "recorded" for r in rows), rows
    kernel = lrqc.compile(s, "64..128", 256, 256, target=target)
    assert all(v.startswith(("tuning record", "hand schedule (tuning record"))
               for v in kernel.schedules.values()), kernel.schedules
    rng = np.random.default_rng(9)
    B = rng.standard_normal((256, 256))
    packed = kernel.pack(B)
    for m in (64, 100):
        A = rng.standard_normal((m, 256))
        ref = matmul(s, A.astype(np.float32).astype(np.float64), B)
        assert rel_error(kernel(A, packed), ref) < TOL, m


@pytest.mark.gpu
def test_cuda_artifact_runs_from_its_fatbin(tmp_path, monkeypatch):
    """Loading an artifact compiles nothing: its module's fatbin is lrqc's, served at load
    (built without a GPU) or made by lrqc's nvcc as the build compiled it (with one)."""
    arch = _gpu_arch()
    s = scheme("int8 per_channel", "int4 per_channel")
    built = fatbin.HOOK.built
    export.build_artifact(s, "1..128", 128, 256, tmp_path, f"cuda -arch={arch}")
    built = fatbin.HOOK.built - built
    hits = fatbin.HOOK.hits

    def no_compiler(*_args):
        raise AssertionError("a CUDA compiler ran while loading or running the artifact")

    monkeypatch.setattr(toolchain, "_nvcc", no_compiler)
    monkeypatch.setattr(fatbin.HOOK, "previous", no_compiler)
    kernel = load_kernel(tmp_path)
    rng = np.random.default_rng(2)
    for m in (16, 128):
        A, B = rng.standard_normal((m, 256)), rng.standard_normal((256, 128))
        C = kernel.run(A, B)
        assert rel_error(C, matmul(s, A.astype(np.float32).astype(np.float64), B)) < TOL
    assert fatbin.HOOK.hits > hits or built  # the module's fatbin is lrqc's


def test_weight_only_packed_codes_compile():
    """a: float32 x packed 3-bit weights: the float32 GEMM widens B's codes on the device
    (TVM's default GPU schedule) and compiles to PTX for every arch asked for."""
    kernel = lrqc.compile(scheme("float32", "int3 per_channel"), *DIMS, target="cuda-sm80")
    assert kernel.plan.float_codes and kernel.plan.pack_bits == 3
    assert ptx_of(kernel, "sm_80").get("fma.f32", 0) >= 1
