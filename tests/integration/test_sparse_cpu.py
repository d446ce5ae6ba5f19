"""The CPU sparse products (lrqc/backend/te/sparse.py) against numpy's integer products: with
unit scales and C = 0 the output is the int32 sum itself, so the comparison is exact. Shapes
cover every register tile (64, 32, 16 columns; a row count that is not a multiple of 16),
scale groups, odd and even counts of nonzeros (pairs padded with a zero code), int8 codes
(pairs summed in int16) and int16 codes (int32 products). End-to-end tests of sparse terms
against lrqc.reference are in test_compensation_cpu.py."""

from __future__ import annotations

import numpy as np
import pytest

from lrqc.backend.compat import compile_module, tensor, tvm
from lrqc.backend.te import sparse as te_sparse
from lrqc.plan.layout import csr_columns
from lrqc.runtime.buckets import sparse_tensors

TARGET = tvm.target.Target("llvm")


def _codes(rng, shape, density, limit):
    x = rng.integers(-limit, limit + 1, shape)
    x[rng.random(shape) >= density] = 0
    return x


def _run(f, args):
    ex = compile_module(tvm.IRModule({"main": f}), TARGET)
    ex["main"](*args)
    return args[-1].numpy()


CASES = [  # mp, kq, np_, groups, code dtype, density
    (8, 64, 64, 1, "int8", 0.3),
    (20, 96, 48, 3, "int8", 0.5),
    (16, 128, 96, 2, "int16", 0.2),
    (4, 32, 16, 1, "int8", 1.0),
    (12, 64, 32, 4, "int16", 0.05),
]


@pytest.mark.parametrize("mp,kq,np_,groups,dt,density", CASES)
def test_sparse_a_exact(mp, kq, np_, groups, dt, density):
    rng = np.random.default_rng(mp * kq + groups)
    limit = 127 if dt == "int8" else 256
    S = _codes(rng, (mp, kq), density, limit)
    D = rng.integers(-127, 128, (kq, np_))
    v = kq // groups
    want = np.einsum("mgv,gvn->mgn", S.reshape(mp, groups, v), D.reshape(groups, v, np_))
    ones_s, ones_d = np.ones((mp, groups), np.float32), np.ones((groups, np_), np.float32)
    static = te_sparse_codes(D, groups)
    args = [tensor(S.astype(dt)), tensor(ones_s), static["D"], tensor(ones_d),
            tensor(np.zeros((mp, np_), np.float32))]
    got = _run(te_sparse.sparse_a(mp, kq, np_, groups, dt), args)
    assert np.array_equal(got, want.sum(axis=1).astype(np.float32))


def te_sparse_codes(D, groups):
    """D as the runtime hands it to sparse_a: 64/32/16-column panels (buckets.sparse_tensors)."""
    class Codes:
        def params(self):
            return iter([("D", D.astype(np.int8)), ("sd", np.ones((groups, D.shape[1]),
                                                                   np.float32))])
    return sparse_tensors(Codes(), tvm.cpu(), panels=True)


@pytest.mark.parametrize("mp,kq,np_,groups,dt,density", CASES)
def test_sparse_b_exact(mp, kq, np_, groups, dt, density):
    rng = np.random.default_rng(mp + kq * groups)
    limit = 127 if dt == "int8" else 256
    Bs = _codes(rng, (np_, kq), density, limit)  # B's copy as rows n of K codes
    R = _codes(rng, (mp, kq), 1.0, 127 if dt == "int8" else 255)  # A's residual codes
    ptr, idx, val = csr_columns(Bs, groups)
    v = kq // groups
    want = np.einsum("mgv,ngv->mn", R.reshape(mp, groups, v), Bs.reshape(np_, groups, v))
    args = [tensor(np.ascontiguousarray(R.T).astype(dt)), tensor(np.ones((mp, groups),
            np.float32)), tensor(ptr), tensor(idx), tensor(val),
            tensor(np.ones((groups, np_), np.float32)), tensor(np.zeros((mp, np_), np.float32))]
    got = _run(te_sparse.sparse_b(mp, kq, np_, groups, dt), args)
    assert np.array_equal(got, want.astype(np.float32))
