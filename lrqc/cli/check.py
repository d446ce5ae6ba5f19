"""The verbs that read schemes without compiling: check, explain and eval (no TVM)."""

from __future__ import annotations

import argparse
import sys
import traceback

from .. import reference
from ..api import pick_scheme, read_scheme_text
from ..errors import LrqcError
from ..explain import DEFAULT_EMITS, EMITS, explain, explain_format
from ..frontend.parser import parse
from ..frontend.schema import defaults_doc
from ..frontend.syntax import dump
from ..reference.data import DISTRIBUTIONS, pair
from .common import at_least, error_line, load, load_bias, load_npy, parse_dims


def cmd_check(args: argparse.Namespace) -> int:
    bad = 0
    for path in args.files:
        try:
            schemes = load(path)
        except LrqcError as exc:  # each file's errors, then the next file
            if getattr(args, "debug", False):
                traceback.print_exc()
            print(error_line(exc), file=sys.stderr)
            bad += 1
            continue
        print(f"{path}: ok ({len(schemes)} scheme{'s' if len(schemes) != 1 else ''}: "
              f"{', '.join(schemes)})")
    return 1 if bad else 0


def cmd_explain(args: argparse.Namespace) -> int:
    if args.format is not None:
        print(explain_format(args.format))
        if not (args.file or args.defaults):
            return 0
    if args.defaults:
        print(defaults_doc())
        if not args.file:
            return 0
    if not args.file:
        raise LrqcError("explain: give a scheme FILE (or --defaults, or --format FMT)")
    emit = DEFAULT_EMITS
    if args.emit is not None:
        emit = tuple(e.strip() for e in args.emit.split(",") if e.strip())
        for e in emit:
            if e not in EMITS:
                raise LrqcError(f"--emit: unknown stage {e!r}; choose from {', '.join(EMITS)}")
        if not emit:
            raise LrqcError(f"--emit: give some of {', '.join(EMITS)}")
    schemes = load(args.file)
    names = [args.scheme] if args.scheme else list(schemes)
    dims = parse_dims(args.dims, m_range=True) if args.dims else None
    syntax = None
    if "syntax" in emit:
        decls = {d.name: d for d in parse(read_scheme_text(args.file), args.file)}
    out = []
    for name in names:
        s = pick_scheme(schemes, name, args.file)
        if "syntax" in emit:
            syntax = dump(decls[name])
        out.append(f"### {s.name}\n" + explain(s, dims, emit, syntax))
    print("\n\n".join(out))
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    s = pick_scheme(load(args.file), args.scheme, args.file)
    dims = parse_dims(args.dims) if args.dims else None
    at_least("--seed", args.seed, 0)
    if (args.a is None) != (args.b is None):
        raise LrqcError("eval: give both --a and --b, or neither")
    if args.a is not None:
        A, B = (load_npy(p, n) for p, n in ((args.a, "--a"), (args.b, "--b")))
        if dims is not None and (A.shape[0], B.shape[-1], A.shape[-1]) != dims:
            raise LrqcError(f"--dims {dims} do not match the arrays: A {A.shape}, B {B.shape}")
        source = f"A={args.a} B={args.b}"
    else:
        if dims is None:
            raise LrqcError("eval: give --dims M=..,N=..,K=.. (or --a A.npy --b B.npy)")
        m, n, k = dims
        A, B = pair(args.dist, m, n, k, args.seed)
        source = f"{args.dist} data, seed {args.seed}"
    bias = None if args.bias is None else load_bias(args.bias, B.shape[1])
    report = reference.evaluate(s, A, B, bias=bias)
    if bias is not None:
        source += f", bias={args.bias}"
    print(f"scheme {s.name} ({args.file}), {source}")
    print(report.table())
    return 0


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    c = sub.add_parser("check", help="parse and check scheme files")
    c.add_argument("files", nargs="+", metavar="FILE")
    c.set_defaults(func=cmd_check)
    e = sub.add_parser("explain", help="IR, formula, cost, pack/run split and fallbacks of schemes")
    e.add_argument("file", nargs="?", metavar="FILE")
    e.add_argument("--scheme", help="scheme name (default: every scheme in FILE)")
    e.add_argument("--dims", help="bind dimensions, e.g. M=16,N=4096,K=4096")
    e.add_argument("--emit", help=f"sections: {','.join(EMITS)} (default "
                   f"{','.join(DEFAULT_EMITS)}; plan: the kernel plan of every M bucket; needs "
                   "--dims, M may be lo..hi)")
    e.add_argument("--defaults", action="store_true", help="print every default of the language")
    e.add_argument("--format", metavar="FMT", help="an element format's parameters and every "
                   "code: eXmY (e3m4), intN, uintN or 'fixed(4, max=1)'")
    e.set_defaults(func=cmd_explain)
    v = sub.add_parser("eval", help="error of a scheme vs direct quantization and float32")
    v.add_argument("file", metavar="FILE")
    v.add_argument("--scheme", help="scheme name (needed when FILE has several)")
    v.add_argument("--dims", help="M=..,N=..,K=.. for generated data")
    v.add_argument("--dist", choices=DISTRIBUTIONS, default="uniform", help="generated data")
    v.add_argument("--seed", type=int, default=0, help="seed of generated data")
    v.add_argument("--a", help="A as a .npy file (M x K)")
    v.add_argument("--b", help="B as a .npy file (K x N)")
    v.add_argument("--bias", metavar="BIAS.npy", help="N values added to every row of C, as a "
                   ".npy file of shape (N,) or (1, N)")
    v.set_defaults(func=cmd_eval)
