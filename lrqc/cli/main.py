"""The `lrqc` command: check | explain | eval (cli/check.py), build | run | bench
(cli/build.py), tune | cache (cli/tune.py). Prints; exit 0 ok, 1 user error (one line on
stderr: `lrqc: error: ...`, or a scheme error's `file:line:col: error:` with its caret), 2
internal error or argparse usage error, 130 interrupted. `lrqc --debug CMD` adds the full
traceback of any error (docs/cli.md)."""

from __future__ import annotations

import argparse
import os
import sys
import threading
import traceback
from collections.abc import Sequence

from .._version import __version__
from ..errors import LrqcError
from ..reference.data import DISTRIBUTIONS
from . import build, check, tune
from .common import error_line


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lrqc", description="Accurate low-bit matrix multiplication: "
                                "quantization schemes with residual compensation.")
    p.add_argument("--version", action="version", version=f"lrqc {__version__}")
    p.add_argument("--debug", action="store_true", help="print the full traceback of any "
                   "error (for bug reports)")
    sub = p.add_subparsers(dest="command", required=True)
    check.add_parsers(sub)
    build.add_parsers(sub, DISTRIBUTIONS)
    tune.add_parsers(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
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
    except BrokenPipeError:  # the reader left (`lrqc explain --format e4m3 | head`): quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no flush error at exit
        return 141
    except OSError as exc:  # the machine's files, not lrqc: a full disk
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
    def hook(info: threading.ExceptHookArgs) -> None:
        if info.exc_type is SystemExit:
            return
        if debug:
            traceback.print_exception(info.exc_type, info.exc_value, info.exc_traceback)
        print(f"lrqc: error in a background thread: {_one_line(info.exc_value)}",
              file=sys.stderr)
    return hook


if __name__ == "__main__":
    sys.exit(main())
