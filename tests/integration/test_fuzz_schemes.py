"""Fuzzing of scheme text: mutations of the shipped examples (tokens and characters deleted,
duplicated, replaced and inserted, numbers swapped for huge, negative, zero and non-integer ones,
odd unicode and control characters, calls nested deep). Parsing and the reference must raise
nothing but LrqcError and never hang; an accepted scheme gives finite reference numbers; a few
accepted schemes are compiled and must be refused with an LrqcError or match the reference.

The default run checks a few hundred texts; `pytest -m slow
tests/integration/test_fuzz_schemes.py` a few thousand."""

from __future__ import annotations

import contextlib
import random
import re
import signal

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lrqc
from lrqc.frontend.bind import bind_dims
from lrqc.frontend.model import LowRank, LplrOperand, QuantOperand
from lrqc.frontend.unparse import unparse

from ..conftest import EXAMPLES

TEXTS = [p.read_text() for p in EXAMPLES]
_TOKEN = re.compile(r"\s+|#[^\n]*|[A-Za-z_]\w*|[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|.",
                    re.DOTALL)
POOL = sorted({t for text in TEXTS for t in _TOKEN.findall(text) if not t.isspace()
               and not t.startswith("#")} | {
    "nan", "inf", "-inf", "NaN", "per_vector(", "per_block(", "pad=false", "pad=true", "static:",
    "accumulate:", "output:", "int64", "float16", "bfloat16", "float64", "uint1", "int1", "e5m2",
    "round=stochastic", "seed=", "calibrate=minmax", "scale=uint6", "per_channel", "dense(",
    "sparse(", "lowrank(", "lplr(", "product:", "scheme", "{", "}", "(", ")", ",", "+", "=", ":",
    "method=svd", "method=dsvd", "normalize_shift=true", "bits=(1, 2, 3)", "()", "a:", "b:"})
NUMBERS = ["0", "-0", "-1", "1", "2", "3", "7", "1.5", "-2.5", "1e999", "-1e999", "1e-999",
           "1e308", "2147483648", "4294967296", "65537", "1e5", ".5", "9" * 5000, "1" + "0" * 40,
           "0.0", "-1e-300", "64", "100000"]
CHARS = ["\x00", "\t", "\f", "\v", "\r", "\x1c", "\x1e", "\x85", "\u2028", "\u2029", "\ufeff",
         "\u00a0", "é", "€", "𝟘", "\u200b", "(", ")", "{", "}", ",", "=", "+", ":", "#", "\n",
         "-", ".", "_", "0", "9", "'", '"', "\\"]
CALLS = ["per_vector", "per_block", "dense", "sparse", "lowrank", "lplr", "int8", "f"]
NAMES = [t for t in POOL if re.fullmatch(r"[A-Za-z_]\w*", t)] + [
    f"{u}int{b}" for u in ("", "u") for b in range(1, 9)] + ["e4m3", "e2m3", "e3m2", "per_tensor"]
# pieces that keep a scheme valid more often than random tokens: options and residual terms
PIECES = [" round=stochastic seed=3", " calibrate=minmax", " calibrate=maxabs", " pad=false",
          " per_vector(7)", " per_vector(64, scale=uint4 per_channel)", " per_block(16)",
          " round=floor", " round=nearest_away", " per_channel", " + dense(int1)",
          " + dense(uint2 per_vector(5))", " + sparse(uint3 per_channel, threshold=0)",
          " + sparse(threshold=1000000, max_density=0)", " + lowrank(rank=3, method=svd)",
          " + lowrank(method=sketch, power_iters=64, seed=4294967295)",
          " + lowrank(rank=1, oversample=1048576)", " + dense(e2m1 per_block(32))"]


class Draws:
    """What a mutation draws: integers and choices, from hypothesis or from a seeded Random."""

    def __init__(self, data=None, rng: random.Random | None = None):
        self.data, self.rng = data, rng

    def int(self, lo: int, hi: int) -> int:
        if self.data is not None:
            return self.data.draw(st.integers(lo, hi))
        return self.rng.randint(lo, hi)

    def choice(self, seq):
        return seq[self.int(0, len(seq) - 1)]


def mutate(d: Draws, text: str) -> str:
    """One mutation of `text`."""
    toks = _TOKEN.findall(text)
    kind = d.choice(["delete", "duplicate", "replace", "insert", "number", "char", "char_delete",
                     "nest", "bom", "long", "word", "piece", "piece"])
    i = d.int(0, len(toks) - 1)
    if kind == "delete":
        del toks[i]
    elif kind == "duplicate":
        toks.insert(i, toks[i])
    elif kind == "replace":
        toks[i] = d.choice(POOL)
    elif kind == "insert":
        toks.insert(i, " " + d.choice(POOL) + " ")
    elif kind == "word":
        names = [j for j, t in enumerate(toks) if re.fullmatch(r"[A-Za-z_]\w*", t)] or [i]
        toks[d.choice(names)] = d.choice(NAMES)
    elif kind == "piece":  # a term at the end of an operand line, an option after a format
        piece = d.choice(PIECES)
        if piece.startswith(" +"):
            lines = re.finditer(r"^\s*[ab]:[^\n#]*", text, re.MULTILINE)
            ends = [m.end() for m in lines] or [len(text)]
        else:
            ends = [m.end() for m in re.finditer(r"\b(u?int\d|e\dm\d)\b", text)] or [len(text)]
        p = d.choice(ends)
        return text[:p] + piece + text[p:]
    elif kind == "number":
        nums = [j for j, t in enumerate(toks) if re.fullmatch(r"[-+]?[\d.].*", t)] or [i]
        toks[d.choice(nums)] = d.choice(NUMBERS)
    elif kind == "nest":
        n = d.int(1, 40)
        call = d.choice(CALLS)
        toks.insert(i, f"{call}(" * n + d.choice(["1", "", "int8", "x=1"]) + ")" * d.int(0, n))
    elif kind == "bom":
        return "\ufeff" + text
    elif kind == "long":
        toks.insert(i, d.choice(["x", "9", "int", "(", " ", "#"]) * d.int(50, 3000))
    else:
        text = "".join(toks)
        p = d.int(0, len(text))
        if kind == "char":
            return text[:p] + d.choice(CHARS) + text[p:]
        return text[:p] + text[p + 1:]
    return "".join(toks)


def mutated(d: Draws) -> str:
    text = d.choice(TEXTS)
    for _ in range(d.int(1, 4)):
        text = mutate(d, text)
    return text


@contextlib.contextmanager
def time_limit(seconds: int):
    """Fail (not hang) when the body runs longer than `seconds` (a hard limit, SIGALRM)."""
    def fire(signum, frame):
        raise TimeoutError(f"no answer within {seconds} s")

    if not hasattr(signal, "SIGALRM"):  # not on this platform: hypothesis' deadline only
        yield
        return
    old = signal.signal(signal.SIGALRM, fire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def max_rank(s: lrqc.Scheme) -> int:
    ranks = [s.product.rank] if s.product is not None else []
    for op in (s.a, s.b):
        if isinstance(op, LplrOperand):
            ranks.append(op.rank)
        if isinstance(op, QuantOperand):
            ranks += [r.rank for r in op.residuals if isinstance(r, LowRank)]
    return max(ranks, default=0)


def dims_for(s: lrqc.Scheme, room: int = 1) -> tuple[int, int, int]:
    """Small sizes (M=8, N=16, K=32), grown to `room` times the scheme's ranks (up to 96)."""
    r = room * min(max_rank(s), 96)
    return max(8, r), max(16, r), max(32, r)


def check_text(text: str) -> list[str]:
    """Parse `text` and run every accepted scheme through the reference: only LrqcError may come
    out; an accepted scheme's numbers are finite. Returns the names of the accepted schemes
    that also ran."""
    try:
        schemes = lrqc.parse_schemes(text, "fuzz.lrq")
    except lrqc.LrqcError as exc:
        assert str(exc).strip() and len(str(exc)) < 2000, repr(str(exc)[:3000])
        return []
    ran = []
    for s in schemes.values():
        m, n, k = dims_for(s)
        rng = np.random.default_rng(0)
        A, B = rng.standard_normal((m, k)), rng.standard_normal((k, n))
        try:
            C = lrqc.reference.matmul(s, A, B)
        except lrqc.LrqcError:
            continue
        assert C.shape == (m, n) and np.all(np.isfinite(C)), (s, C)
        ran.append(s.name)
    return ran


SETTINGS = {"deadline": 5000, "suppress_health_check": list(HealthCheck), "derandomize": True,
                "database": None}


@settings(max_examples=300, **SETTINGS)
@given(st.data())
def test_mutated_examples_give_only_lrqc_errors(data):
    text = mutated(Draws(data=data))
    with time_limit(20):
        check_text(text)


@pytest.mark.slow
@pytest.mark.long
@settings(max_examples=4000, **{**SETTINGS, "derandomize": False})
@given(st.data())
def test_mutated_examples_give_only_lrqc_errors_slow(data):
    text = mutated(Draws(data=data))
    with time_limit(20):
        check_text(text)


ORIGINALS = {unparse(s) for text in TEXTS for s in lrqc.parse_schemes(text).values()}


def accepted_sample(count: int, seed: int) -> list[tuple[int, lrqc.Scheme]]:
    """The first `count` mutated schemes (seeded Random from `seed` on) that differ from the
    examples and bind at their compile sizes."""
    out, seen = [], set(ORIGINALS)
    while len(out) < count:
        seed += 1
        try:
            schemes = lrqc.parse_schemes(mutated(Draws(rng=random.Random(seed))))
        except lrqc.LrqcError:
            continue
        for s in schemes.values():
            text = unparse(s)
            if text in seen:
                continue
            seen.add(text)
            with contextlib.suppress(lrqc.LrqcError):
                bind_dims(s, *dims_for(s, room=2))
                out.append((seed, s))
    return out[:count]


def test_accepted_mutations_compile_to_the_reference_or_are_refused():
    """Kernels of accepted mutated schemes: refused with an LrqcError, or the reference's numbers
    within float32 rounding (sizes twice the ranks: a full-rank LPLR's factors are ill-conditioned,
    their products hundreds of times |A| |B|, beyond any float32 bound in |A| |B|)."""
    pytest.importorskip("tvm")
    from .test_backend_cpu import data

    compiled = 0
    for seed, s in accepted_sample(8, seed=100):
        m, n, k = dims_for(s, room=2)
        A, B = data(m, n, k, seed=seed)
        R = lrqc.reference.matmul(s, A, B)
        try:
            C = lrqc.compile(s, m, n, k).run(A, B)
        except lrqc.LrqcError:
            continue
        compiled += 1
        # float32 sums as in test_backend_cpu, one bound per term, and the output type's rounding
        terms = 1 + sum(len(getattr(op, "residuals", ())) for op in (s.a, s.b))
        bound = (np.abs(A) @ np.abs(B)).max() * 4 * terms
        tol = 2.0**-22 * k**0.5 * bound + OUTPUT_ULP[s.output] * np.abs(R).max()
        err = np.abs(C.astype(np.float64) - R).max()
        where = f"seed {seed} M={m} N={n} K={k}"
        assert err <= tol, f"{where}: error {err:.3g} > {tol:.3g}\n{unparse(s)}"
    assert compiled >= 3  # the sample exercises the compiler, not only its refusals


OUTPUT_ULP = {"float32": 0.0, "float64": 0.0, "float16": 2.0**-10, "bfloat16": 2.0**-7}


@pytest.mark.parametrize("v", [2, 4, 5, 9])
@pytest.mark.parametrize("term", ["dense", "sparse"])
def test_residual_per_vector_of_any_length_compiles_or_is_refused(term, v):
    """Residual terms whose vectors are not whole blocks of 4 k (or a single one) used to
    crash TVM's schedule of the vpmaddwd / vpdpbusd rules."""
    pytest.importorskip("tvm")
    from .test_backend_cpu import data

    s = lrqc.parse_schemes(f"scheme s {{\n a: int8 per_channel + {term}(int8 per_vector({v}))\n"
                           " b: int8 per_channel\n}")["s"]
    m, n, k = 8, 16, 40
    A, B = data(m, n, k)
    try:
        kernel = lrqc.compile(s, m, n, k)
    except lrqc.LrqcError:
        return
    R = lrqc.reference.matmul(s, A, B)
    tol = 2.0**-22 * k**0.5 * (np.abs(A) @ np.abs(B)).max() * 8
    assert np.abs(kernel.run(A, B) - R).max() <= tol
