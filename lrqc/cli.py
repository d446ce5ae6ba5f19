"""The `lrqc` command: check | explain | eval. Prints; exit 0 ok, 1 user error, 2 internal error."""

from __future__ import annotations

import argparse
import sys
import traceback

from . import __version__
from .errors import LrqcError

EXAMPLE = "examples/lrqmm.lrq"


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
        if dims[key] < 1:
            raise LrqcError(f"--dims: {key} must be a positive integer, got {dims[key]}")
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
    if not 1 <= pair[0] <= pair[1]:
        raise LrqcError(f"--dims: M={val.strip()}: need 1 <= lo <= hi")
    return pair


def _load(path):
    from .api import load_schemes

    return load_schemes(path)


def cmd_check(args) -> int:
    bad = 0
    for path in args.files:
        try:
            schemes = _load(path)
        except LrqcError as exc:
            print(exc, file=sys.stderr)
            bad += 1
            continue
        print(f"{path}: ok ({len(schemes)} scheme{'s' if len(schemes) != 1 else ''}: "
              f"{', '.join(schemes)})")
    return 1 if bad else 0


def cmd_explain(args) -> int:
    from .api import pick_scheme
    from .explain import DEFAULT_EMITS, EMITS, explain
    from .frontend.schema import defaults_doc

    if args.defaults:
        print(defaults_doc())
        if not args.file:
            return 0
    if not args.file:
        raise LrqcError("explain: give a scheme FILE (or --defaults)")
    emit = DEFAULT_EMITS
    if args.emit:
        emit = tuple(e.strip() for e in args.emit.split(",") if e.strip())
        for e in emit:
            if e not in EMITS:
                raise LrqcError(f"--emit: unknown stage {e!r}; choose from {', '.join(EMITS)}")
    schemes = _load(args.file)
    names = [args.scheme] if args.scheme else list(schemes)
    dims = parse_dims(args.dims) if args.dims else None
    syntax = None
    if "syntax" in emit:
        from pathlib import Path

        from .frontend.parser import parse
        from .frontend.syntax import dump

        decls = {d.name: d for d in parse(Path(args.file).read_text(), args.file)}
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

    from . import reference
    from .api import pick_scheme
    from .reference.data import pair

    s = pick_scheme(_load(args.file), args.scheme, args.file)
    dims = parse_dims(args.dims) if args.dims else None
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
    import numpy as np

    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise LrqcError(f"{flag}: cannot load {path}: {exc}") from None


def build_parser() -> argparse.ArgumentParser:
    from .reference.data import DISTRIBUTIONS

    p = argparse.ArgumentParser(prog="lrqc", description="Accurate low-bit matrix multiplication: "
                                "quantization schemes with residual compensation.")
    p.add_argument("--version", action="version", version=f"lrqc {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("check", help="parse and check scheme files")
    c.add_argument("files", nargs="+", metavar="FILE")
    c.set_defaults(func=cmd_check)
    e = sub.add_parser("explain", help="IR, formula, cost, pack/run split and fallbacks of schemes")
    e.add_argument("file", nargs="?", metavar="FILE")
    e.add_argument("--scheme", help="scheme name (default: every scheme in FILE)")
    e.add_argument("--dims", help="bind dimensions, e.g. M=16,N=4096,K=4096")
    e.add_argument("--emit", help="sections: syntax,ast,ir,formula,cost,stages,notes")
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
    from .cli_build import add_parsers

    add_parsers(sub, DISTRIBUTIONS)
    from .cli_tune import add_parsers as add_tune_parsers

    add_tune_parsers(sub)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except LrqcError as exc:
        print(exc, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception:  # a bug in lrqc: say so, with the trace for the report
        print("lrqc: internal error (please report it with this trace):", file=sys.stderr)
        traceback.print_exc()
        return 2


if __name__ == "__main__":
    sys.exit(main())
