"""CLI commands of auto-tuning: `lrqc tune` (TVM imported lazily) and `lrqc cache ls | show |
verify | prune | export | import` over the tuning database (lrqc.tuning.db)."""

from __future__ import annotations

import json
import re

from .errors import LrqcError


def parse_duration(text: str | None) -> float | None:
    """'90', '90s', '10m', '1h' -> seconds."""
    if text is None:
        return None
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", text)
    if not m:
        raise LrqcError(f"--time-budget {text!r}: expected a number with s, m or h (e.g. 10m)")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)]


def cmd_tune(args) -> int:
    from .api import load_schemes, pick_scheme
    from .backend.tune import TUNED_FUNCTIONS, tune_scheme
    from .cli import parse_dims
    from .cli_build import _target_arg

    s = pick_scheme(load_schemes(args.file), args.scheme, args.file)
    m, n, k = parse_dims(args.dims, m_range=True)
    if args.trials < 1:
        raise LrqcError("--trials must be at least 1")
    only = None
    if args.only:
        only = tuple(f.strip() for f in args.only.split(",") if f.strip())
        bad = [f for f in only if f not in TUNED_FUNCTIONS]
        if bad or not only:
            raise LrqcError(f"--only {args.only!r}: expected some of {', '.join(TUNED_FUNCTIONS)}")
    rows = tune_scheme(s, m, n, k, _target_arg(args.target), trials=args.trials,
                       budget_s=parse_duration(args.time_budget), workers=args.workers,
                       rpc=args.rpc, key=args.key, cost_model=args.cost_model, functions=only)
    print(f"{'kernel':<16}{'status':<12}{'tuned ms':>10}{'hand ms':>10}{'speedup':>9}"
          f"{'trials':>8}{'valid':>7}{'rejected':>10}{'wall s':>8}")
    for r in rows:
        if "tuned_ms" in r:
            status = "recorded" if r["tuned_ms"] <= r["hand_ms"] else "hand faster"
            print(f"{r['symbol']:<16}{status:<12}{r['tuned_ms']:>10.3f}{r['hand_ms']:>10.3f}"
                  f"{r['hand_ms'] / r['tuned_ms']:>8.2f}x{r['trials']:>8}{r['valid']:>7}"
                  f"{r['rejected']:>10}{r['wall_s']:>8.0f}")
        else:
            print(f"{r['symbol']:<16}{r['status']}")
    return 0


def _pick(db, prefixes):
    recs = db.all()
    if not prefixes:
        return recs
    out = []
    for p in prefixes:
        hit = [r for r in recs if r.hash.startswith(p)]
        if not hit:
            raise LrqcError(f"no tuning record {p!r} (lrqc cache ls lists them)")
        out += hit
    return out


def cmd_cache(args) -> int:
    from .tuning.db import Database, tuning_dir

    db = Database()
    if args.action == "ls":
        recs = db.all()
        print(f"{len(recs)} tuning record(s) in {tuning_dir()}")
        for r in recs:
            print("  " + r.summary())
    elif args.action == "show":
        for r in _pick(db, args.records):
            k = r.key
            print(f"record {r.hash}\n  scheme:\n    " + k["scheme"].strip().replace("\n", "\n    "))
            print(f"  function {k['function']}, M={k['m']} N={k['n']} K={k['k']}")
            print(f"  target {json.dumps(k['target'])}\n  features {', '.join(k['features'])}")
            print(f"  versions {json.dumps(k['versions'])}")
            print(f"  tuned {r.tuned_ms:.3f} ms, hand {r.hand_ms:.3f} ms; {r.trials} trials, "
                  f"{r.valid} valid, {r.rejected} rejected, {r.wall_s:.0f} s")
    elif args.action == "verify":
        return _verify(db, _pick(db, args.records))
    elif args.action == "prune":
        return _prune(db, args)
    elif args.action == "export":
        if not args.records:
            raise LrqcError("lrqc cache export FILE [RECORD...]")
        path, picks = args.records[0], _pick(db, args.records[1:])
        print(f"exported {db.export(path, picks)} record(s) to {path}")
    elif args.action == "import":
        if len(args.records) != 1:
            raise LrqcError("lrqc cache import FILE")
        print(f"imported {db.import_(args.records[0])} record(s) into {tuning_dir()}")
    return 0


def _current(rec):
    """(scheme, plan, whether the record's key is what this lrqc/TVM/LLVM would make)."""
    from .api import parse_schemes
    from .backend.build import bucket_plans
    from .backend.tune import record_key

    k = rec.key
    scheme = next(iter(parse_schemes(k["scheme"]).values()))
    m, n = (k["n"], k["m"]) if scheme.static == "a" else (k["m"], k["n"])  # plans of Cᵀ
    plan = bucket_plans(scheme, m, n, k["k"])[0]
    return scheme, plan, record_key(plan, k["function"], k["target"]) == k


def _verify(db, recs) -> int:
    """Re-check records that this lrqc/TVM/LLVM and this CPU can run against lrqc.reference."""
    from .backend.kernel import device_of
    from .backend.target import features, host_target_dict, is_cuda
    from .backend.tune import check_candidate

    bad = 0
    here = features(host_target_dict())
    for r in recs:
        scheme, plan, current = _current(r)
        if not current:
            print(f"{r.hash}: stale (made with other versions or features; `lrqc cache prune` "
                  "removes it)")
            bad += 1
            continue
        if is_cuda(r.key["target"]):
            why_not = device_of(r.key["target"])[1]
            if why_not:
                print(f"{r.hash}: skipped ({why_not})")
                continue
        else:
            lacks = sorted(set(r.key["features"]) - here)
            if lacks:
                print(f"{r.hash}: skipped (this CPU lacks {', '.join(lacks)})")
                continue
        why = check_candidate(scheme, plan, r.key["target"], r.trace, r.key["function"])
        print(f"{r.hash}: {'ok' if why is None else 'WRONG: ' + why}")
        bad += why is not None
    return 1 if bad else 0


def _prune(db, args) -> int:
    """Remove corrupt and stale records (--all: every record)."""
    removed = 0
    for path in db.paths():
        try:
            r = db.read(path)
        except LrqcError:
            path.unlink()
            removed += 1
            continue
        try:
            stale = not _current(r)[2]
        except LrqcError:  # its scheme no longer parses: stale too
            stale = True
        if args.all or stale:
            db.remove(r)
            removed += 1
    print(f"removed {removed} record(s)")
    return 0


def add_parsers(sub):
    t = sub.add_parser("tune", help="auto-tune a scheme's kernels for this target (MetaSchedule)")
    t.add_argument("file", metavar="FILE")
    t.add_argument("--scheme")
    t.add_argument("--dims", required=True, help="M=..,N=..,K=.. (M=lo..hi tunes every bucket)")
    t.add_argument("--target", help="as for lrqc build (CUDA: on this machine's GPU, or on the "
                   "GPU of an --rpc tracker's server)")
    t.add_argument("--trials", type=int, default=64, help="measured candidates per kernel")
    t.add_argument("--time-budget", help="stop after this long, e.g. 10m (checked every 16 "
                   "trials)")
    t.add_argument("--workers", type=int, help="parallel candidate builds (default: the cores)")
    t.add_argument("--rpc", metavar="HOST:PORT", help="measure on devices of a TVM RPC tracker")
    t.add_argument("--key", help="the device key at the tracker (with --rpc)")
    t.add_argument("--cost-model", choices=("xgb", "random"), help="default: xgb when xgboost "
                   "is installed, else random")
    t.add_argument("--only", metavar="FN[,FN]", help="tune only these functions: gemm, "
                   "quantize_a, lowrank_u (default: all the scheme has)")
    t.set_defaults(func=cmd_tune)
    c = sub.add_parser("cache", help="the tuning database: ls | show | verify | prune | export "
                       "FILE | import FILE")
    c.add_argument("action", choices=("ls", "show", "verify", "prune", "export", "import"))
    c.add_argument("records", nargs="*", metavar="ARG", help="record hashes (prefixes), or FILE")
    c.add_argument("--all", action="store_true", help="prune: every record, not only stale ones")
    c.set_defaults(func=cmd_cache)
