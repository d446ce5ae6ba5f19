"""CLI commands of auto-tuning: `lrqc tune` and `lrqc cache ls | show | verify | prune | export |
import` over the tuning database (lrqc.tuning.db), and `lrqc cache kernels [clear]` over the
compiled kernels lrqc.compile keeps (lrqc.pipeline.cache). Imports without TVM: the tuner
(lrqc.tuning.tune), targets and devices are reached through lrqc.door."""

from __future__ import annotations

import argparse
import json
import re
import shutil
import stat
import time

from .. import door
from ..api import load_schemes, parse_schemes, pick_scheme
from ..errors import LrqcError
from ..files import kernels_dir, usable_folder
from ..plan.buckets import bucket_plans
from ..plan.names import TUNED_FUNCTIONS, tuned_functions
from ..tuning.db import (
    PRUNE_HINT,
    BadRecord,
    Database,
    Record,
    ms_digits,
    shown_ms,
    tuning_dir,
    usable_tuning_dir,
)
from .common import at_least, parse_dims, target_arg


def parse_duration(text: str | None) -> float | None:
    """'90', '90s', '10m', '1h' -> seconds (positive)."""
    if text is None:
        return None
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", text)
    if not m:
        raise LrqcError(f"--time-budget {text!r}: expected a number with s, m or h (e.g. 10m)")
    secs = float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)]
    if not secs > 0:
        raise LrqcError(f"--time-budget {text!r}: must be > 0")
    return secs


def cmd_tune(args: argparse.Namespace) -> int:
    s = pick_scheme(load_schemes(args.file), args.scheme, args.file)
    m, n, k = parse_dims(args.dims, m_range=True)
    at_least("--trials", args.trials, 1)
    at_least("--workers", args.workers, 1)
    if args.key and not args.rpc:
        raise LrqcError("--key names a device at an RPC tracker: give --rpc HOST:PORT too")
    only = None
    if args.only is not None:
        only = tuple(f.strip() for f in args.only.split(",") if f.strip())
        bad = [f for f in only if f not in TUNED_FUNCTIONS]
        if bad or not only:
            raise LrqcError(f"--only {args.only!r}: expected some of {', '.join(TUNED_FUNCTIONS)}")
    usable_tuning_dir(write=True)
    rows = door.tuning().tune_scheme(s, m, n, k, target_arg(args.target), trials=args.trials,
                       budget_s=parse_duration(args.time_budget), workers=args.workers,
                       rpc=args.rpc, key=args.key, cost_model=args.cost_model, functions=only)
    print(f"{'kernel':<16}{'status':<12}{'tuned ms':>10}{'hand ms':>10}{'speedup':>9}"
          f"{'trials':>8}{'valid':>7}{'rejected':>10}{'wall s':>8}")
    for r in rows:
        if "tuned_ms" in r:
            status = "recorded" if r["tuned_ms"] <= r["hand_ms"] else "hand faster"
            tuned, hand = ms_digits(r["tuned_ms"]), ms_digits(r["hand_ms"])
            print(f"{r['symbol']:<16}{status:<12}{tuned:>10}{hand:>10}"
                  f"{r['hand_ms'] / r['tuned_ms']:>8.2f}x{r['trials']:>8}{r['valid']:>7}"
                  f"{r['rejected']:>10}{r['wall_s']:>8.0f}")
        else:
            print(f"{r['symbol']:<16}{r['status']}")
    failed = [r["symbol"] for r in rows if r.get("failed")]
    if failed:
        raise LrqcError(f"tuning failed for {', '.join(failed)} (see above): nothing recorded "
                        "for it")
    return 0


def _pick(entries, prefixes) -> list:
    """The (path, Record | BadRecord) entries whose hash starts with one of the prefixes (all
    without prefixes); LrqcError for a prefix that matches none."""
    if not prefixes:
        return entries
    for p in prefixes:
        if not any(path.stem.startswith(p) for path, _ in entries):
            raise LrqcError(f"no tuning record {p!r} (lrqc cache ls lists them)")
    return [(path, r) for path, r in entries if any(path.stem.startswith(p) for p in prefixes)]


def cmd_cache(args: argparse.Namespace) -> int:
    if args.action == "kernels":
        return _kernels(args.records, args.all)
    usable_tuning_dir()
    db = Database()
    action, rest = args.action, args.records
    if args.all and action != "prune":
        raise LrqcError("--all applies to `lrqc cache prune` only")
    if action in ("ls", "prune") and rest:
        raise LrqcError(f"lrqc cache {action} takes no arguments, got {' '.join(rest)}")
    if action in ("export", "import") and not rest or action == "import" and len(rest) != 1:
        raise LrqcError(f"usage: lrqc cache {action} FILE" + (" [RECORD...]"
                                                               if action == "export" else ""))
    if action == "import":
        print(f"imported {db.import_(rest[0])} record(s) into {tuning_dir()}")
        return 0
    entries = db.scan()
    if action == "ls":
        print(f"{len(entries)} tuning record(s) in {tuning_dir()}")
        for path, r in entries:
            print("  " + (f"{path.stem}  BAD: {_bad(r)}" if isinstance(r, BadRecord)
                          else r.summary()))
    elif action == "show":
        bad = 0
        for path, r in _pick(entries, rest):
            if isinstance(r, BadRecord):
                print(f"record {path.stem}\n  BAD: {_bad(r)}")
                bad += 1
                continue
            k = r.key
            print(f"record {r.hash}\n  scheme:\n    " + k["scheme"].strip().replace("\n", "\n    "))
            print(f"  function {k['function']}, M={k['m']} N={k['n']} K={k['k']}")
            print(f"  target {json.dumps(k['target'])}\n  features {', '.join(k['features'])}")
            print(f"  versions {json.dumps(k['versions'])}")
            print(f"  tuned {shown_ms(r.tuned_ms)}, hand {shown_ms(r.hand_ms)}; {r.trials} trials, "
                  f"{r.valid} valid, {r.rejected} rejected, {r.wall_s:.0f} s")
        return 1 if bad else 0
    elif action == "verify":
        return _verify(_pick(entries, rest))
    elif action == "prune":
        return _prune(db, entries, args.all)
    elif action == "export":
        picks = _pick(entries, rest[1:])
        bad = [path.stem for path, r in picks if isinstance(r, BadRecord)]
        if bad and rest[1:]:
            raise LrqcError(f"cannot export bad tuning record(s) {', '.join(bad)} (lrqc cache "
                            "verify says why)")
        n = db.export(rest[0], [r for _, r in picks if not isinstance(r, BadRecord)])
        skipped = f" (skipped {len(bad)} bad record(s): `lrqc cache prune` removes them)" \
            if bad else ""
        print(f"exported {n} record(s) to {rest[0]}{skipped}")
    return 0


def _bad(exc) -> str:
    return f"{exc.why}; {PRUNE_HINT}"


def _current(rec):
    """(scheme, plan, target, whether the record's key is what this lrqc/TVM/LLVM would make);
    LrqcError when its scheme, sizes, function or target mean nothing to this lrqc."""
    tuner, k = door.tuning(), rec.key
    schemes = parse_schemes(k["scheme"], f"record {rec.hash}")
    if len(schemes) != 1:
        raise LrqcError(f"its key holds {len(schemes)} schemes, not one")
    scheme = next(iter(schemes.values()))
    target = door.target().resolve(k["target"])  # a target TVM refuses: LrqcError
    m, n = (k["n"], k["m"]) if scheme.static == "a" else (k["m"], k["n"])  # plans of Cᵀ
    plan = bucket_plans(scheme, m, n, k["k"])[0]
    if k["function"] not in tuned_functions(plan):
        raise LrqcError(f"lrqc tunes no function {k['function']!r} of this scheme")
    return scheme, plan, target, tuner.current_key(plan, k["function"], target) == k


def judge(rec: Record, here: set) -> tuple[str, str]:
    """(verdict, why) of one good record: "ok", "stale" (not what this lrqc/TVM/LLVM would
    make: no build finds it), "skipped" (this machine cannot run its target), or "wrong" (its
    schedule does not compile, or the kernel it gives differs from lrqc.reference)."""
    try:
        scheme, plan, target, current = _current(rec)
    except LrqcError as exc:
        return "stale", str(exc).splitlines()[0]
    if not current:
        return "stale", "made with other versions or features"
    if target.is_cuda:
        why_not = door.device().device_of(target)[1]
        if why_not:
            return "skipped", why_not
    else:
        lacks = sorted(set(rec.key["features"]) - here)
        if lacks:
            return "skipped", f"this CPU lacks {', '.join(lacks)}"
    why = door.tuning().check_candidate(scheme, plan, target, rec.trace, rec.key["function"])
    return ("ok", "") if why is None else ("wrong", why)


def _verify(entries) -> int:
    """Re-check records that this lrqc/TVM/LLVM and this machine can run against
    lrqc.reference; 1 when any is bad, stale or wrong."""
    here, condemned = door.target().host_target().features, 0
    for path, r in entries:
        if isinstance(r, BadRecord):
            print(f"{path.stem}: BAD: {_bad(r)}")
            condemned += 1
            continue
        verdict, why = judge(r, here)
        print(f"{r.hash}: " + {"ok": "ok", "stale": f"stale ({why}; {PRUNE_HINT})",
                               "skipped": f"skipped ({why})",
                               "wrong": f"WRONG: {why}; {PRUNE_HINT}"}[verdict])
        condemned += verdict in ("stale", "wrong")
    return 1 if condemned else 0


def _prune(db, entries, everything: bool) -> int:
    """Remove what `lrqc cache verify` condemns: bad, stale and wrong records (everything:
    every record)."""
    here, removed = door.target().host_target().features, 0
    for path, r in entries:
        if everything:
            why = "--all"
        elif isinstance(r, BadRecord):
            why = f"bad: {r.why}"
        else:
            verdict, why = judge(r, here)
            if verdict not in ("stale", "wrong"):
                continue
            why = f"{verdict}: {why}"
        db.remove_path(path)
        print(f"removed {path.stem} ({why})")
        removed += 1
    print(f"removed {removed} record(s)")
    return 0


def _kernels(rest: list[str], everything: bool) -> int:
    """`lrqc cache kernels`: the compiled kernels kept, one line each (newest use first);
    `lrqc cache kernels clear`: remove everything in their folder."""
    if everything or rest not in ([], ["clear"]):
        raise LrqcError("usage: lrqc cache kernels [clear]")
    root = usable_folder(kernels_dir(), "the kernel cache")
    items = sorted(root.iterdir()) if root.is_dir() else []
    entries = [(used, d) for d in items if not d.name.startswith(".")
               and (used := _mtime(d / "manifest.json")) is not None]
    if rest == ["clear"]:
        for d in items:
            try:
                if d.is_symlink() or not d.is_dir():
                    d.unlink()
                else:
                    shutil.rmtree(d)
            except FileNotFoundError:  # removed meanwhile (a compile replacing it)
                pass
            except OSError as exc:
                raise LrqcError(f"cannot remove {d}: {exc.strerror or exc}") from None
        other = len(items) - len(entries)
        print(f"removed {len(entries)} compiled kernel(s) from {root}"
              + (f", and {other} other item(s)" if other else ""))
        return 0
    sizes = {d: _size(d) for _, d in entries}
    print(f"{len(entries)} compiled kernel(s), {sum(sizes.values()) / 2**20:.1f} MiB, in {root}")
    for used, d in sorted(entries, key=lambda e: e[0], reverse=True):
        size = sizes[d]
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(used))
        print(f"  {d.name[:12]}  {_kernel_line(d)}  {size / 2**20:.1f} MiB, used {when}")
    if len(items) > len(entries):
        print(f"  and {len(items) - len(entries)} other item(s): unfinished or not an entry "
              "(`lrqc cache kernels clear` removes them)")
    return 0


def _mtime(path) -> float | None:
    """A regular file's modification time; None where there is none (or it just went)."""
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime if stat.S_ISREG(st.st_mode) else None


def _size(d) -> int:
    """The bytes of an entry's files (those still there)."""
    total = 0
    try:
        for f in d.iterdir():
            total += f.stat().st_size if f.is_file() else 0
    except OSError:  # the entry went meanwhile (replaced, or trimmed)
        pass
    return total


def _kernel_line(d) -> str:
    """Scheme, dims and schedule rule of a cached kernel, from its manifest."""
    try:
        info = json.loads((d / "manifest.json").read_text())
        return (f"{info['scheme_name']}  M={info['dims']['M']} N={info['dims']['N']} "
                f"K={info['dims']['K']}  {info['schedule_rule']}")
    except (OSError, ValueError, KeyError, TypeError):
        return "unreadable manifest (compiled again on its next use)"


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
                       "FILE | import FILE; the compiled kernels: kernels [clear]")
    c.add_argument("action", choices=("ls", "show", "verify", "prune", "export", "import",
                                      "kernels"))
    c.add_argument("records", nargs="*", metavar="ARG", help="record hashes (prefixes), or FILE")
    c.add_argument("--all", action="store_true", help="prune: every record, not only the bad, "
                   "stale and wrong ones")
    c.set_defaults(func=cmd_cache)
