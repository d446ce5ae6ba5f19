"""The `lrqc` command: check | explain | eval here, build | run | bench in cli_build, tune |
cache in cli_tune. Prints; exit 0 ok, 1 user error (one line on stderr: `lrqc: error: ...`, or
a scheme error's `file:line:col: error:` with its caret), 2 internal error or argparse usage
error, 130 interrupted. `lrqc --debug CMD` adds the full traceback of any error (docs/cli.md)."""

from __future__ import annotations

import argparse
import sys
import threading
import traceback

from .. import __version__
from ..errors import LrqcError, SchemeError

EXAMPLE = "examples/lrqmm.lrq"


MAX_DIM = 2**31 - 1  # sizes index int32 buffers


def error_line(exc: BaseException) -> str:
    """How the CLI prints an LrqcError: `lrqc: error: MESSAGE`; a located scheme error keeps
    its compiler-style `file:line:col: error:` lines and caret."""
    if isinstance(exc, SchemeError) and exc.span is not None:
        return str(exc)
    text = str(exc)
    return "lrqc: error: " + (text.removeprefix("error: "))


def at_least(flag: str, value, least: int) -> None:
    """LrqcError unless an integer option is >= least."""
    if value is not None and value < least:
        raise LrqcError(f"{flag} must be at least {least}, got {value}")


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
            dims[key] = _range(val)
            continue
        try:
            dims[key] = int(val)
        except ValueError:
            raise LrqcError(f"--dims: {key} must be a positive integer"
                            + (" or lo..hi" if key == "M" and m_range else "")
                            + f", got {val.strip()!r}") from None
        if not 1 <= dims[key] <= MAX_DIM:
            raise LrqcError(f"--dims: {key} must be a positive integer up to {MAX_DIM}, "
                            f"got {dims[key]}")
    missing = [k for k in "MNK" if k not in dims]
    if missing:
        raise LrqcError(f"--dims: missing {', '.join(missing)} (expected M=..,N=..,K=..)")
    return dims["M"], dims["N"], dims["K"]


def _range(val: str) -> tuple[int, int]:
    lo, _, hi = val.partition("..")
    try:
        pair = int(lo), int(hi)
    except ValueError:
        raise LrqcError(f"--dims: M=lo..hi needs two integers, got {val.strip()!r}") from None
    if not 1 <= pair[0] <= pair[1] <= MAX_DIM:
        raise LrqcError(f"--dims: M={val.strip()}: need 1 <= lo <= hi <= {MAX_DIM}")
    return pair


def _load(path):
    from ..api import load_schemes

    return load_schemes(path)


def cmd_check(args) -> int:
    bad = 0
    for path in args.files:
        try:
            schemes = _load(path)
        except LrqcError as exc:
            print(error_line(exc), file=sys.stderr)
            bad += 1
            continue
        print(f"{path}: ok ({len(schemes)} scheme{'s' if len(schemes) != 1 else ''}: "
              f"{', '.join(schemes)})")
    return 1 if bad else 0


def cmd_explain(args) -> int:
    from ..api import pick_scheme
    from ..explain import DEFAULT_EMITS, EMITS, explain
    from ..frontend.schema import defaults_doc

    if args.defaults:
        print(defaults_doc())
        if not args.file:
            return 0
    if not args.file:
        raise LrqcError("explain: give a scheme FILE (or --defaults)")
    emit = DEFAULT_EMITS
    if args.emit is not None:
        emit = tuple(e.strip() for e in args.emit.split(",") if e.strip())
        for e in emit:
            if e not in EMITS:
                raise LrqcError(f"--emit: unknown stage {e!r}; choose from {', '.join(EMITS)}")
        if not emit:
            raise LrqcError(f"--emit: give some of {', '.join(EMITS)}")
    schemes = _load(args.file)
    names = [args.scheme] if args.scheme else list(schemes)
    dims = parse_dims(args.dims, m_range=True) if args.dims else None
    syntax = None
    if "syntax" in emit:
        from ..api import read_scheme_text
        from ..frontend.parser import parse
        from ..frontend.syntax import dump

        decls = {d.name: d for d in parse(read_scheme_text(args.file), args.file)}
    out = []
    for name in names:
        s = pick_scheme(schemes, name, args.file)
        if "syntax" in emit:
            syntax = dump(decls[name])
        out.append(f"### {s.name}\n" + explain(s, dims, emit, syntax))
    print("\n\n".join(out))
    return 0


def cmd_eval(args) -> int:
    import numpy as np

    from .. import reference
    from ..api import pick_scheme
    from ..reference.data import pair

    s = pick_scheme(_load(args.file), args.scheme, args.file)
    dims = parse_dims(args.dims) if args.dims else None
    at_least("--seed", args.seed, 0)
    if (args.a is None) != (args.b is None):
        raise LrqcError("eval: give both --a and --b, or neither")
    if args.a is not None:
        A, B = (_load_npy(p, n) for p, n in ((args.a, "--a"), (args.b, "--b")))
        if dims is not None and (A.shape[0], B.shape[-1], A.shape[-1]) != dims:
            raise LrqcError(f"--dims {dims} do not match the arrays: A {A.shape}, B {B.shape}")
        source = f"A={args.a} B={args.b}"
    else:
        if dims is None:
            raise LrqcError("eval: give --dims M=..,N=..,K=.. (or --a A.npy --b B.npy)")
        m, n, k = dims
        A, B = pair(args.dist, m, n, k, args.seed)
        source = f"{args.dist} data, seed {args.seed}"
    report = reference.evaluate(s, A, B)
    print(f"scheme {s.name} ({args.file}), {source}")
    print(report.table())
    del np
    return 0


def _load_npy(path, flag):
    """A 2-D array from a .npy file, or LrqcError naming the flag and the file."""
    import numpy as np

    from ..files import regular_file

    regular_file(path, f"{flag}: cannot load {path}")  # a FIFO or device: no hang
    try:  # mapped first: a header claiming more than the file holds is an error, not a huge
        arr = np.load(path, allow_pickle=False, mmap_mode="r")  # allocation
        arr = np.array(arr) if isinstance(arr, np.ndarray) else arr
    except IsADirectoryError:
        raise LrqcError(f"{flag}: cannot load {path}: it is a directory") from None
    except OSError as exc:
        raise LrqcError(f"{flag}: cannot load {path}: {exc.strerror or exc}") from None
    except (ValueError, EOFError) as exc:  # not a .npy file, truncated, or pickled objects
        why = str(exc).splitlines()[0][:200] if _is_npy(path) else "not a .npy file"
        raise LrqcError(f"{flag}: cannot load {path}: {why}") from None
    if not isinstance(arr, np.ndarray):  # an .npz archive
        raise LrqcError(f"{flag}: {path} holds several arrays (.npz); give one .npy array")
    if arr.ndim != 2:
        raise LrqcError(f"{flag}: {path}: expected a 2-D matrix, got shape {arr.shape}")
    return arr


def _is_npy(path) -> bool:
    with open(path, "rb") as f:
        return f.read(6) == b"\x93NUMPY"


def build_parser() -> argparse.ArgumentParser:
    from ..reference.data import DISTRIBUTIONS

    p = argparse.ArgumentParser(prog="lrqc", description="Accurate low-bit matrix multiplication: "
                                "quantization schemes with residual compensation.")
    p.add_argument("--version", action="version", version=f"lrqc {__version__}")
    p.add_argument("--debug", action="store_true", help="print the full traceback of any "
                   "error (for bug reports)")
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("check", help="parse and check scheme files")
    c.add_argument("files", nargs="+", metavar="FILE")
    c.set_defaults(func=cmd_check)
    e = sub.add_parser("explain", help="IR, formula, cost, pack/run split and fallbacks of schemes")
    e.add_argument("file", nargs="?", metavar="FILE")
    e.add_argument("--scheme", help="scheme name (default: every scheme in FILE)")
    e.add_argument("--dims", help="bind dimensions, e.g. M=16,N=4096,K=4096")
    e.add_argument("--emit", help="sections: syntax,ast,ir,formula,cost,stages,notes,plan "
                   "(plan: the kernel plan of every M bucket; needs --dims, M may be lo..hi)")
    e.add_argument("--defaults", action="store_true", help="print every default of the language")
    e.set_defaults(func=cmd_explain)
    v = sub.add_parser("eval", help="error of a scheme vs direct quantization and float32")
    v.add_argument("file", metavar="FILE")
    v.add_argument("--scheme", help="scheme name (needed when FILE has several)")
    v.add_argument("--dims", help="M=..,N=..,K=.. for generated data")
    v.add_argument("--dist", choices=DISTRIBUTIONS, default="uniform", help="generated data")
    v.add_argument("--seed", type=int, default=0, help="seed of generated data")
    v.add_argument("--a", help="A as a .npy file (M x K)")
    v.add_argument("--b", help="B as a .npy file (K x N)")
    v.set_defaults(func=cmd_eval)
    from .build import add_parsers

    add_parsers(sub, DISTRIBUTIONS)
    from .tune import add_parsers as add_tune_parsers

    add_tune_parsers(sub)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    debug = args.debug
    hook = threading.excepthook
    threading.excepthook = _thread_hook(debug)
    try:
        return args.func(args)
    except LrqcError as exc:
        return _fail(debug, error_line(exc), 1)
    except KeyboardInterrupt:
        print("lrqc: interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        return _fail(debug, "lrqc: error: out of memory (the sizes asked for need more memory "
                     "than this machine has)", 1)
    except OSError as exc:  # the machine's files, not lrqc: a full disk, a lost pipe
        where = f": {exc.filename}" if exc.filename else ""
        return _fail(debug, f"lrqc: error: {exc.strerror or exc}{where}", 1)
    except Exception as exc:  # noqa: BLE001 - a bug in lrqc: one line, the trace with --debug
        return _fail(debug, f"lrqc: internal error ({_one_line(exc)}); rerun with `lrqc "
                     "--debug ...` and report its traceback", 2)
    finally:
        threading.excepthook = hook


def _fail(debug: bool, line: str, code: int) -> int:
    if debug:
        traceback.print_exc()
    print(line, file=sys.stderr)
    return code


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__


def _thread_hook(debug: bool):
    """Errors in threads of libraries lrqc drives (TVM's RPC and build pools): one line, the
    traceback with --debug."""
    def hook(info):
        if info.exc_type is SystemExit:
            return
        if debug:
            traceback.print_exception(info.exc_type, info.exc_value, info.exc_traceback)
        print(f"lrqc: error in a background thread: {_one_line(info.exc_value)}",
              file=sys.stderr)
    return hook


if __name__ == "__main__":
    sys.exit(main())
