"""What the command-line verbs share: how errors print, and how options, sizes, scheme files
and .npy arrays are read (every failure an LrqcError naming the option or file)."""

from __future__ import annotations

import json
import os

import numpy as np

from ..api import load_schemes, no_scheme
from ..errors import LrqcError, SchemeError
from ..files import regular_file
from ..frontend.model import Scheme
from ..reference.inputs import as_bias

F32_MAX = float(np.finfo(np.float32).max)


def error_line(exc: BaseException) -> str:
    """How the CLI prints an LrqcError: `lrqc: error: MESSAGE`; a located scheme error keeps
    its compiler-style `file:line:col: error:` lines and caret."""
    if isinstance(exc, SchemeError) and exc.span is not None:
        return str(exc)
    text = str(exc)
    return "lrqc: error: " + (text.removeprefix("error: "))


def at_least(flag: str, value: int | None, least: int) -> None:
    """LrqcError unless an integer option is >= least."""
    if value is not None and value < least:
        raise LrqcError(f"{flag} must be at least {least}, got {value}")


MAX_DIM = 2**31 - 1  # sizes index int32 buffers


def parse_dims(text: str, m_range: bool = False) -> tuple:
    """'M=1024,N=512,K=256' -> (M, N, K). With m_range, M may be lo..hi (returned as a pair)."""
    dims = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, eq, val = part.partition("=")
        key = key.strip().upper()
        if not eq or key not in ("M", "N", "K"):
            raise LrqcError(f"--dims: expected M=..,N=..,K=.., got {part!r}")
        if key in dims:
            raise LrqcError(f"--dims: {key} given twice")
        if key == "M" and m_range and ".." in val:
            dims[key] = m_range_text(val)
            continue
        try:
            dims[key] = int(val)
        except ValueError:
            ranged = key == "M" and ".." in val  # here M is one row count
            raise LrqcError(f"--dims: {key} must be a positive integer"
                            + (" or lo..hi" if key == "M" and m_range else "")
                            + f", got {val.strip()!r}"
                            + ("; M=lo..hi is for build, tune and explain" if ranged else "")
                            ) from None
        if not 1 <= dims[key] <= MAX_DIM:
            raise LrqcError(f"--dims: {key} must be a positive integer up to {MAX_DIM}, "
                            f"got {dims[key]}")
    missing = [k for k in "MNK" if k not in dims]
    if missing:
        raise LrqcError(f"--dims: missing {', '.join(missing)} (expected M=..,N=..,K=..)")
    return dims["M"], dims["N"], dims["K"]


def m_range_text(val: str) -> tuple[int, int]:
    lo, _, hi = val.partition("..")
    try:
        pair = int(lo), int(hi)
    except ValueError:
        raise LrqcError(f"--dims: M=lo..hi needs two integers, got {val.strip()!r}") from None
    if not 1 <= pair[0] <= pair[1] <= MAX_DIM:
        raise LrqcError(f"--dims: M={val.strip()}: need 1 <= lo <= hi <= {MAX_DIM}")
    return pair


def load(path: str | os.PathLike[str]) -> dict[str, Scheme]:
    """The schemes of a file (LrqcError when it cannot be read, has errors or holds no scheme:
    every command needs one)."""
    schemes = load_schemes(path)
    if not schemes:
        raise no_scheme(str(path))
    return schemes


def load_array(path: str, flag: str) -> np.ndarray:
    """The array of a .npy file, or LrqcError naming the flag and the file."""
    regular_file(path, f"{flag}: cannot load {path}")  # a FIFO or device: no hang
    try:  # mapped first: a header claiming more than the file holds is an error, not a huge
        arr = np.load(path, allow_pickle=False, mmap_mode="r")  # allocation
        arr = np.array(arr) if isinstance(arr, np.ndarray) else arr
    except IsADirectoryError:
        raise LrqcError(f"{flag}: cannot load {path}: it is a directory") from None
    except OSError as exc:
        raise LrqcError(f"{flag}: cannot load {path}: {exc.strerror or exc}") from None
    except (ValueError, EOFError) as exc:  # not a .npy file, truncated, or pickled objects
        why = str(exc).splitlines()[0][:200] if is_npy(path) else "not a .npy file"
        if why.startswith("mmap length"):  # numpy's words for a file cut short
            why = "the file holds fewer bytes than its header's shape needs (truncated?)"
        raise LrqcError(f"{flag}: cannot load {path}: {why}") from None
    if not isinstance(arr, np.ndarray):  # an .npz archive
        raise LrqcError(f"{flag}: {path} is an .npz archive; give one array as a .npy file")
    return arr


def load_npy(path: str, flag: str) -> np.ndarray:
    """A 2-D array from a .npy file, or LrqcError naming the flag and the file."""
    arr = load_array(path, flag)
    if arr.ndim != 2:
        raise LrqcError(f"{flag}: {path}: expected a 2-D matrix, got shape {arr.shape}")
    return arr


def load_bias(path: str, n: int) -> np.ndarray:
    """--bias FILE: a .npy array of the N values added to every row of C, shape (N,) or (1, N)
    (as_bias), as float64; LrqcError naming the flag and the file otherwise."""
    bias = as_bias(load_array(path, "--bias"), n, f"--bias {path}")
    big = np.abs(bias) > F32_MAX
    if big.any():  # C is computed (kernels) and compared (eval) in float32
        j = int(np.argmax(big))
        raise LrqcError(f"--bias {path}: bias[{j}] = {bias[j]:.6g} is beyond float32's range "
                        "(about 3.4e38)")
    return bias


def is_npy(path: str) -> bool:
    with open(path, "rb") as f:
        return f.read(6) == b"\x93NUMPY"


def target_arg(text: str | None) -> str | dict | None:
    """--target as given: a name, or a TVM target dict written as JSON."""
    if text is None:
        return None
    if text.lstrip().startswith("{"):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise LrqcError(f"--target: invalid JSON ({exc})") from None
    return text
