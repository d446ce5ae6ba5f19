"""Validation of arrays given to the API: 2-D, real, finite, matching K (as_matrix, check_pair),
a bias of N values (as_bias); clear InputError otherwise. The type of C (to_output)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from ..errors import InputError

F32_LIMIT = 2.0**128 - 2.0**103  # the smallest magnitude that float32 rounds to infinity


def real_array(x: npt.ArrayLike, name: str) -> np.ndarray:
    """x as a numpy array of a real number type (no copy when it is one), or InputError. The
    narrow types of ml_dtypes (bfloat16, the float8, float6 and float4 formats, int4 and the
    like, which numpy's dtype kinds do not call real) arrive as float32 arrays: every value of
    theirs is one."""
    try:
        arr = np.asarray(x)
    except Exception as exc:  # noqa: BLE001  (ragged lists, failing __array__ and the like)
        raise InputError(f"{name}: cannot be read as an array ({exc})") from None
    if arr.dtype.type.__module__.split(".")[0] == "ml_dtypes":
        return arr.astype(np.float32)
    if arr.dtype.kind not in "biuf":
        raise InputError(f"{name}: dtype {arr.dtype} is not a real number type "
                         "(expected float, int, bool or one of ml_dtypes' types)")
    return arr


def as_matrix(x: npt.ArrayLike, name: str, dtype: npt.DTypeLike = np.float64,
              float32: bool = False, finite_later: bool = False) -> np.ndarray:
    """x as a 2-D array of dtype (float64, or float32 for the compiled kernels; no copy when it
    already is one), or InputError naming the shape/dtype problem. Every value must be finite;
    with dtype float32, or float32=True (operands the kernels keep in float64 but compute with in
    float32), also finite in float32. finite_later: an x already of dtype is returned unchecked
    for finiteness (a kernel whose own pass over it finds non-finite values, then calls
    as_matrix again for the error)."""
    arr = real_array(x, name)
    if arr.ndim != 2:
        raise InputError(f"{name}: expected a 2-D matrix, got shape {arr.shape}")
    if arr.size == 0:
        raise InputError(f"{name}: empty matrix of shape {arr.shape}")
    src = arr
    with np.errstate(over="ignore"):
        arr = arr.astype(dtype, copy=False)
    if finite_later and arr is src:
        return arr
    finite = all_finite(arr)
    if finite and not (float32 and arr.dtype.itemsize > 4 and np.abs(arr).max() >= F32_LIMIT):
        return arr
    bad = np.argwhere(~np.isfinite(arr) if not finite else np.abs(arr) >= F32_LIMIT)[0]
    where = f"first at [{bad[0]}, {bad[1]}] = {src[tuple(bad)]}"
    if np.isfinite(src[tuple(bad)]):
        raise InputError(f"{name}: contains values beyond the float32 range ({where}); the "
                         "compiled kernels compute in float32 (largest finite value 3.4e38)")
    raise InputError(f"{name}: contains non-finite values ({where})")


def all_finite(arr: np.ndarray) -> bool:
    """Whether every entry of arr is finite. A contiguous float array first takes one BLAS dot
    product with itself: a NaN or infinity makes it NaN or infinity, while a finite sum of
    squares (non-negative, so nothing cancels) proves every entry finite; only where it is not
    finite (non-finite entries, or squares past the float range) are the entries checked one
    by one. Several times faster than the entry-by-entry check on large arrays."""
    if arr.dtype in (np.float32, np.float64) and arr.flags.c_contiguous and arr.size >= 4096:
        flat = arr.reshape(-1)
        with np.errstate(over="ignore", invalid="ignore"):
            if np.isfinite(np.dot(flat, flat)):
                return True
    return bool(np.all(np.isfinite(arr)))


def check_pair(a: npt.ArrayLike, b: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    A, B = as_matrix(a, "A"), as_matrix(b, "B")
    check_k(A.shape, B.shape)
    return A, B


def check_k(a: tuple[int, ...], b: tuple[int, ...]) -> None:
    """InputError unless A's shape (M x K) and B's (K x N) agree on K."""
    if a[1] != b[0]:
        raise InputError(f"shape mismatch: A is {a[0]}x{a[1]} (M x K) but B is "
                         f"{b[0]}x{b[1]} (K x N): K differs ({a[1]} vs {b[0]})")


def as_bias(bias: npt.ArrayLike, n: int, name: str = "bias") -> np.ndarray:
    """A bias as float64 of shape (n,): N real, finite values added to every row of C, given as
    shape (N,) or (1, N) in any real dtype; InputError naming `name` otherwise."""
    arr = real_array(bias, name)
    if arr.ndim == 2 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 1:
        raise InputError(f"{name}: expected a vector of N={n} values (shape ({n},) or (1, {n})), "
                         f"got shape {arr.shape}")
    if arr.shape[0] != n:
        raise InputError(f"{name}: has {arr.shape[0]} values but C has N={n} columns")
    out = arr.astype(np.float64)
    if not np.all(np.isfinite(out)):
        bad = int(np.argwhere(~np.isfinite(out))[0][0])
        raise InputError(f"{name}: contains non-finite values (first at [{bad}] = {arr[bad]})")
    return out


FLOAT_MAX = {"float16": 65504.0, "bfloat16": 3.3895313892515355e38,
             "float32": float(np.finfo(np.float32).max)}


def round_float(x: np.ndarray, dtype: str, name: str = "a float operand") -> np.ndarray:
    """x rounded to a float storage type and back to float64 (bfloat16: round to nearest even).
    InputError when a value lies beyond the type's range: an operand declared float16 holds
    float16 values, and 1e5 is none (it would silently become inf)."""
    if dtype == "float64":
        return x
    with np.errstate(over="ignore"):
        if dtype == "bfloat16":
            u = x.astype(np.float32).view(np.uint32).astype(np.uint64)
            u = (u + 0x7FFF + ((u >> 16) & 1)) & 0xFFFF0000
            out = u.astype(np.uint32).view(np.float32).astype(np.float64)
        else:
            out = x.astype(dtype).astype(np.float64)
    check_float_range(out, dtype, name)
    return out


def check_float_range(rounded: np.ndarray, dtype: str, name: str) -> None:
    """InputError when values rounded to `dtype` (finite before) became infinite."""
    if not np.all(np.isfinite(rounded)):
        bad = np.argwhere(~np.isfinite(rounded))[0]
        raise InputError(f"{name}: a value at {list(map(int, bad))} lies beyond {dtype}'s range "
                         f"(largest finite {FLOAT_MAX[dtype]:.6g}); scale it down or declare a "
                         "wider type")


OUTPUT_TYPES = ("float32", "float16", "bfloat16", "float64")


def output_dtype(name: str) -> np.dtype:
    """The numpy dtype of C for `output: name` (bfloat16 from ml_dtypes)."""
    if name == "bfloat16":  # ml_dtypes on first use: it takes longer to import than lrqc
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


def to_output(c: np.ndarray, name: str) -> np.ndarray:
    """C rounded once (to nearest even) to the scheme's output type, as an array of that type.
    Values beyond the type's range become +-inf: that is the declared behaviour of a narrow
    output (float16's largest finite value is 65504)."""
    dt = output_dtype(name)
    if c.dtype == dt:
        return c
    with np.errstate(over="ignore"):
        return c.astype(dt)
