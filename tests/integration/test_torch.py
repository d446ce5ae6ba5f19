"""lrqc.torch on a tiny model built here (no download): every shipped scheme through
quantize() gives, layer by layer, lrqc.reference's x Wᵀ + bias on that layer's real input;
leading dimensions, dtypes and inputs past max_tokens round-trip; a saved state_dict loads
into a fresh model without re-quantization and gives the same outputs; misuse raises
LrqcError; and lrqc imports and works without torch."""

from __future__ import annotations

import copy
import io
import pickle
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import lrqc
from lrqc.reference import matmul

from ..conftest import EXAMPLES

torch = pytest.importorskip("torch")
pytest.importorskip("tvm")
lt = pytest.importorskip("lrqc.torch")
nn = torch.nn

SCHEMES = {name: s for path in EXAMPLES for name, s in lrqc.load_schemes(path).items()}
W8 = lrqc.parse_schemes("scheme w8 {\n a: int8 per_channel\n b: int8 per_channel\n}")["w8"]


class Tiny(nn.Module):
    """Two Linear layers (one without bias) around a GELU, and a LayerNorm (no Linear)."""

    def __init__(self, k: int = 256, hidden: int = 128):
        super().__init__()
        torch.manual_seed(0)
        self.up = nn.Linear(k, hidden)
        self.act = nn.GELU()
        self.down = nn.Linear(hidden, k, bias=False)
        self.norm = nn.LayerNorm(k)

    def forward(self, x):
        return self.norm(self.down(self.act(self.up(x))))


def inputs_of(model, x):
    """Each Linear-like layer's input and output on x (forward hooks)."""
    seen = {}
    hooks = [m.register_forward_hook(lambda m, a, y, n=n: seen.__setitem__(n, (a[0], y)))
             for n, m in model.named_modules() if isinstance(m, (nn.Linear, lt.Linear))]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return seen


def rel(C, R) -> float:
    C, R = np.asarray(C, np.float64), np.asarray(R, np.float64)
    return float(np.abs(C - R).max() / np.abs(R).max())


@pytest.mark.parametrize("name", sorted(SCHEMES))
def test_every_example_scheme_matches_the_reference_layer_by_layer(name):
    s = SCHEMES[name]
    model = Tiny()
    float_model = copy.deepcopy(model)
    report = lt.quantize(model, s, max_tokens=128)
    assert [r.scheme for r in report.layers] == [name, name]
    x = torch.randn(2, 64, 256)  # 128 rows: LRAMM's rank 64 needs at least 64
    for layer, (inp, out) in inputs_of(model, x).items():
        lin = float_model.get_submodule(layer)
        a = inp.reshape(-1, inp.shape[-1]).numpy()
        bias = None if lin.bias is None else lin.bias.detach().double().numpy()
        ref = matmul(s, a, lin.weight.detach().numpy().T, bias=bias)
        assert rel(out.reshape(-1, out.shape[-1]).numpy(), ref) < 2e-6, layer


def test_reference_backend_gives_the_kernels_numbers():
    s = SCHEMES["lrqmm_w4a8_r16"]
    kern, refm = Tiny(), Tiny()
    lt.quantize(kern, s, max_tokens=32)
    report = lt.quantize(refm, s, max_tokens=32, backend="reference")
    assert {r.rule for r in report.layers} == {"reference"}
    x = torch.randn(20, 256)
    with torch.no_grad():
        assert rel(kern(x).numpy(), refm(x).numpy()) < 1e-5


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_leading_dims_dtypes_and_long_inputs_round_trip(dtype):
    lin = nn.Linear(64, 48)
    q = lt.Linear.from_linear(lin, W8, max_tokens=8)
    for shape in [(64,), (3, 64), (2, 5, 64), (1, 19, 64), (0, 64)]:  # 19 rows: 3 chunks of 8
        x = torch.randn(*shape).to(dtype)
        with torch.no_grad():
            y = q(x)
        assert y.shape == (*shape[:-1], 48) and y.dtype == dtype
        a = x.to(torch.float32).reshape(-1, 64).numpy()
        if a.shape[0]:
            ref = matmul(W8, a, lin.weight.detach().numpy().T,
                         bias=lin.bias.detach().double().numpy())
            tol = 2e-6 if dtype == torch.float32 else 1e-2  # the output rounded to dtype
            assert rel(y.reshape(-1, 48).float().numpy(), ref) < tol


def test_state_dict_round_trip_needs_no_quantization(monkeypatch):
    model = Tiny()
    lt.quantize(model, {"up": SCHEMES["vsquant_w4a4"], "down": W8}, max_tokens=16)
    x = torch.randn(7, 256)
    with torch.no_grad():
        want = model(x)
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf)  # weights_only (torch's default): plain tensors, dicts, strings
    fresh = Tiny()
    monkeypatch.setattr(lt.Linear, "set_weight", lambda *a: pytest.fail("re-quantized"))
    lt.load(fresh, state)
    assert isinstance(fresh.up, lt.Linear) and fresh.up.scheme.name == "vsquant_w4a4"
    with torch.no_grad():
        assert torch.equal(fresh(x), want)


def test_rules_skip_and_report():
    model = Tiny()
    report = lt.quantize(model, {"up": W8, "*": None}, max_tokens=16)
    assert isinstance(model.up, lt.Linear) and type(model.down) is nn.Linear
    assert [(r.name, r.scheme) for r in report.layers] == [("up", "w8"), ("down", "float")]
    assert report.layers[0].packed_bytes < report.layers[0].float_bytes
    assert "1 of 2 Linear layers quantized" in report.table()
    model = Tiny()
    lt.quantize(model, W8, skip=["down"], max_tokens=16)
    assert type(model.down) is nn.Linear


def test_misuse_raises_lrqc_errors():
    with pytest.raises(lrqc.LrqcError, match="no torch.nn.Linear"):
        lt.quantize(nn.Sequential(nn.ReLU()), W8)
    with pytest.raises(lrqc.LrqcError, match="no Linear layer matched"):
        lt.quantize(Tiny(), {"nothing": W8})
    with pytest.raises(lrqc.LrqcError, match="lrqc.Scheme"):
        lt.quantize(Tiny(), "a: int8")
    static_a = lrqc.parse_schemes("scheme sa {\n a: int8\n b: int8\n static: a\n}")["sa"]
    with pytest.raises(lrqc.LrqcError, match="static: a"):
        lt.quantize(Tiny(), static_a)
    q = lt.Linear.from_linear(nn.Linear(64, 48), W8, max_tokens=8)
    with pytest.raises(lrqc.LrqcError, match=r"\(\.\.\., 64\)"):
        q(torch.randn(3, 65))
    with pytest.raises(lrqc.LrqcError, match="dtype"):
        q(torch.randn(3, 64, dtype=torch.float64))
    with pytest.raises(lrqc.LrqcError, match="dtype"):
        q(torch.ones(3, 64, dtype=torch.int32))
    with pytest.raises(lrqc.LrqcError, match="gradient"):
        q(torch.randn(3, 64, requires_grad=True))
    with pytest.raises(lrqc.LrqcError, match="max_tokens"):
        lt.Linear.from_linear(nn.Linear(64, 48), W8, max_tokens=0)
    with pytest.raises(lrqc.LrqcError, match="no lrqc layer"):
        lt.load(Tiny(), Tiny().state_dict())
    with pytest.raises(lrqc.LrqcError, match="lrqc.Scheme"):
        lt.Linear.from_linear(nn.Linear(64, 48), "w8")
    with pytest.raises(lrqc.LrqcError, match="quantize: expected a torch.nn.Module, got str"):
        lt.quantize("model", W8)
    with pytest.raises(lrqc.LrqcError, match="load: expected a torch.nn.Module and a state_dict"):
        lt.load(Tiny(), 5)
    with pytest.raises(lrqc.LrqcError, match="a torch.nn.Module and a state_dict .* got str"):
        lt.load("model", Tiny().state_dict())
    with pytest.raises(lrqc.LrqcError, match="skip: expected a name pattern or a list of them, "
                       "got int"):
        lt.quantize(Tiny(), W8, skip=5)
    with pytest.raises(lrqc.LrqcError, match="skip: expected name patterns .str., got 3"):
        lt.quantize(Tiny(), W8, skip=["up", 3])
    with pytest.raises(lrqc.LrqcError, match="meta device"):
        lt.Linear.from_linear(nn.Linear(64, 48, device="meta"), W8)


def test_chunks_below_the_schemes_rank_say_to_raise_max_tokens():
    """A layer whose scheme needs at least r rows per product (a rank-r term on A), fed more rows
    than max_tokens in chunks of fewer than r: the error says so (and what to change)."""
    s = lrqc.parse_schemes("scheme r {\n a: int8 per_tensor + lowrank(rank=6)\n b: int8 "
                           "per_channel\n}")["r"]
    q = lt.Linear.from_linear(nn.Linear(32, 16), s, max_tokens=8)
    with torch.no_grad():
        assert q(torch.randn(8, 32)).shape == (8, 16) and q(torch.randn(16, 32)).shape == (16, 16)
        with pytest.raises(lrqc.LrqcError, match=r"10 rows run in 2 chunks of at most "
                           r"max_tokens=8 rows \(5 in the last\), and this scheme needs at "
                           r"least 6 rows per product \(its rank\): quantize with a larger "
                           "max_tokens"):
            q(torch.randn(10, 32))
        with pytest.raises(lrqc.LrqcError, match=r"5 rows: this scheme needs at least 6 rows per "
                           r"product \(its rank\)"):
            q(torch.randn(5, 32))


def test_several_threads_share_a_layer():
    q = lt.Linear.from_linear(nn.Linear(64, 48), W8, max_tokens=32)
    xs = [torch.randn(1 + i, 64) for i in range(8)]
    with torch.no_grad():
        want = [q(x) for x in xs]
    with ThreadPoolExecutor(4) as pool, torch.no_grad():
        got = list(pool.map(q, xs * 4))
    assert all(torch.equal(g, w) for g, w in zip(got, want * 4, strict=True))


def test_lrqc_works_without_torch():
    code = ("import sys; sys.modules['torch'] = None\n"
            "import numpy as np, lrqc\n"
            "s = lrqc.parse_schemes('scheme s {\\n a: int8\\n b: int8\\n}')['s']\n"
            "c = lrqc.reference.matmul(s, np.ones((2, 4)), np.ones((4, 3)), bias=np.ones(3))\n"
            "assert c.shape == (2, 3)\n"
            "try:\n    import lrqc.torch\nexcept ImportError as e:\n"
            "    assert isinstance(e, lrqc.LrqcError) and 'lrqc[torch]' in str(e)\n"
            "else:\n    raise SystemExit('lrqc.torch imported without torch')\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]


def test_copies_pickles_and_empty_inputs():
    model = Tiny()
    lt.quantize(model, W8, max_tokens=16)
    x = torch.randn(5, 256)
    with torch.no_grad():
        want = model(x)
        for other in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
            assert torch.equal(other(x), want)
        assert model(torch.randn(0, 256)).shape == (0, 256)
        assert model.up(torch.randn(2, 0, 256)).shape == (2, 0, 128)
    empty = lt.Linear(64, 32, W8, max_tokens=8)  # no weight yet: its state says so
    fresh = lt.Linear.from_state(empty.state_dict()["_extra_state"])
    with pytest.raises(lrqc.LrqcError, match="no weight"):
        fresh(torch.randn(2, 64))


def test_misuse_leaves_the_model_as_it_was():
    lin = nn.Linear(64, 32)
    with pytest.raises(lrqc.LrqcError, match="from_linear"):
        lt.quantize(lin, W8)
    model = Tiny()
    lt.quantize(model, W8, skip="down", max_tokens=16)  # one pattern, not its letters
    assert type(model.down) is nn.Linear and isinstance(model.up, lt.Linear)
    with pytest.raises(lrqc.LrqcError, match="quantized already"):
        lt.quantize(nn.Sequential(model.up), W8)
    with pytest.raises(lrqc.LrqcError, match="rule 'up'"):
        lt.quantize(Tiny(), {"up": "w8"})
    model = Tiny()  # the second layer fails (rank 64 > 32 rows): nothing is replaced
    with pytest.raises(lrqc.LrqcError, match="layer up"):
        lt.quantize(model, {"down": W8, "up": SCHEMES["lramm_r64"]}, max_tokens=32)
    assert type(model.up) is nn.Linear and type(model.down) is nn.Linear


def test_load_checks_sizes_keys_and_damage():
    model = Tiny()
    lt.quantize(model, W8, max_tokens=16)
    state = model.state_dict()
    with pytest.raises(lrqc.LrqcError,
                       match="'up' is 256 -> 64 in the model, 256 -> 128 in the state"):
        lt.load(Tiny(k=256, hidden=64), state)
    extra = dict(state, stray=torch.zeros(1))
    fresh = Tiny()
    with pytest.raises(lrqc.LrqcError, match="stray"):
        lt.load(fresh, extra)
    assert type(fresh.up) is nn.Linear  # as it was
    loose = lt.load(Tiny(), extra, strict=False)  # keys the model lacks are left out
    assert isinstance(loose.up, lt.Linear) and isinstance(loose.down, lt.Linear)
    part = nn.Module()
    part.up = nn.Linear(256, 128)  # no 'down': its lrqc layer is left out with strict=False
    with pytest.raises(lrqc.LrqcError, match="lrqc layer 'down', the model has no such"):
        lt.load(part, state)
    assert type(part.up) is nn.Linear  # as it was
    assert isinstance(lt.load(part, state, strict=False).up, lt.Linear)
    damaged = copy.deepcopy(state)
    arrays = damaged["up._extra_state"]["arrays"]
    arrays["bias"] = arrays["bias"].clone()
    arrays["bias"][0, 0] += 1
    with pytest.raises(lrqc.LrqcError, match="damaged"):
        lt.load(Tiny(), damaged)


def test_damaged_layer_states_are_refused_naming_the_layer():
    """A state with its packed weight's arrays dropped, an extra state that is not an lrqc
    layer's where the model has a Linear, or a scheme that does not fit: refused at load,
    naming the layer (never a layer without weights found at its first forward)."""
    model = Tiny()
    lt.quantize(model, W8, max_tokens=16)
    state = model.state_dict()
    no_arrays = copy.deepcopy(state)
    del no_arrays["up._extra_state"]["arrays"]
    with pytest.raises(lrqc.LrqcError, match="layer 'up': lrqc.torch.Linear: the layer's state "
                       "is damaged: it lacks 'arrays'"):
        lt.load(Tiny(), no_arrays)
    for junk in ("garbage", {}):
        bad = dict(state)
        bad["up._extra_state"] = junk
        with pytest.raises(lrqc.LrqcError, match="layer 'up': its state 'up._extra_state' is "
                           "not an lrqc layer's"):
            lt.load(Tiny(), bad)
    class Tagged(nn.Linear):  # a Linear subclass with an extra state of its own loads as ever
        def get_extra_state(self):
            return {"tag": "mine"}

        def set_extra_state(self, state):
            self.tag = state["tag"]

    def tagged():
        return nn.Sequential(nn.Linear(64, 32), nn.ReLU(), Tagged(32, 16))

    mixed = tagged()
    lt.quantize(mixed, {"0": W8}, max_tokens=16)
    buf = io.BytesIO()
    torch.save(mixed.state_dict(), buf)
    buf.seek(0)
    again = lt.load(tagged(), torch.load(buf, weights_only=False))
    assert again[2].tag == "mine" and isinstance(again[0], lt.Linear)
    x = torch.randn(3, 64)
    with torch.no_grad():
        assert torch.equal(again(x), mixed(x))
    other = copy.deepcopy(state)
    other["up._extra_state"]["scheme"] = other["up._extra_state"]["scheme"].replace(
        "per_channel", "per_tensor", 1)
    with pytest.raises(lrqc.LrqcError, match="layer 'up': packed: made for another kernel"):
        lt.load(Tiny(), other)


def test_forward_errors_name_the_layer():
    model = Tiny()
    lt.quantize(model, W8, max_tokens=16)
    x = torch.randn(3, 256)
    x[1, 7] = float("nan")
    with pytest.raises(lrqc.LrqcError, match=r"layer up \(lrqc.torch.Linear\(256 -> 128\)\)"):
        model(x)


def test_layers_run_on_torchs_openmp_threads():
    """threads="auto" puts the kernels' parallel loops on torch's OpenMP threads where torch
    runs on OpenMP (this build: libgomp), with the numbers of TVM's thread pool."""
    from lrqc.backend import openmp

    lin = nn.Linear(96, 72)
    x = torch.randn(3, 11, 96)
    auto = lt.Linear.from_linear(lin, W8, max_tokens=64)
    pool = lt.Linear.from_linear(lin, W8, max_tokens=64, threads="tvm")
    on_omp = "parallel backend: OpenMP" in torch.__config__.parallel_info()
    assert auto.threads == ("openmp" if on_omp and lrqc.resources.loaded_libgomp() else "tvm")
    assert f"threads={auto.threads}" in repr(auto) and pool.threads == "tvm"
    before = openmp.launches()
    with torch.no_grad():
        assert torch.equal(auto(x), pool(x))
    assert (openmp.launches() > before) == (auto.threads == "openmp")
    with pytest.raises(lrqc.LrqcError, match="threads must be one of"):
        lt.Linear.from_linear(lin, W8, threads="gomp")


def test_auto_threads_are_the_compilers_choice(monkeypatch):
    """A layer's threads="auto" is lrqc.compile's: a compensated kernel (low-rank terms on both
    operands) joins torch's OpenMP threads as a direct one does, and where the OpenMP launcher
    cannot be built the layer falls back to TVM's pool instead of failing; the failed build is
    tried once per compiler."""
    from lrqc.backend import openmp

    lin = nn.Linear(64, 32)
    x = torch.randn(5, 64)
    lrq = lt.Linear.from_linear(lin, SCHEMES["lrqmm_int8"], max_tokens=16)
    direct = lt.Linear.from_linear(lin, W8, max_tokens=16)
    assert lrq.threads == lrq.kernel.threads == direct.threads
    monkeypatch.setattr(openmp, "_SHIM", [])
    monkeypatch.setattr(openmp, "_FAILED", {})
    monkeypatch.setattr(openmp, "loaded_libgomp", lambda: "/lib/libgomp.so.1")
    monkeypatch.setenv("CC", "false")
    calls = []
    real = openmp._compile
    monkeypatch.setattr(openmp, "_compile", lambda out: calls.append(out) or real(out))
    a = lt.Linear.from_linear(lin, W8, max_tokens=24)
    b = lt.Linear.from_linear(lin, W8, max_tokens=40)
    assert a.threads == b.threads == "tvm" and len(calls) == 1
    with torch.no_grad():
        want = lt.Linear.from_linear(lin, W8, max_tokens=24, backend="reference")(x)
        assert torch.allclose(a(x), want, rtol=1e-5, atol=1e-6) and torch.equal(a(x), b(x))
    with pytest.raises(lrqc.LrqcError, match="threads='openmp'"):
        lt.Linear.from_linear(lin, W8, max_tokens=48, threads="openmp")


def test_the_short_forward_gives_the_general_forwards_results():
    """float32 contiguous inputs within max_tokens take the layer's short path (the kernel's
    short call, no conversions); every other input takes the general one: the same numbers,
    and the same errors naming the layer."""
    lin = nn.Linear(64, 40)
    q = lt.Linear.from_linear(lin, W8, max_tokens=32)
    assert q._short is not None
    x = torch.randn(2, 9, 64)
    with torch.no_grad():
        want = q._forward(x)
        got = q(x)
        assert got.shape == (2, 9, 40) and torch.equal(got, want)
        wide = torch.randn(9, 128)[:, ::2]  # not contiguous: the general path
        assert torch.equal(q(wide), q._forward(wide.contiguous()))
        long = torch.randn(70, 64)  # past max_tokens: chunks
        assert torch.equal(q(long)[:32], q(long[:32]))
        x[1, 3, 5] = float("inf")
        with pytest.raises(lrqc.LrqcError, match=r"lrqc.torch.Linear\(64 -> 40\): A: contains "
                                                 "non-finite values"):
            q(x)
    copy_ = pickle.loads(pickle.dumps(q))  # the short path found again (not pickled)
    assert copy_._short is not None and copy_._packed is not q._packed
    with torch.no_grad():
        assert torch.equal(copy_(x[0]), q(x[0]))
