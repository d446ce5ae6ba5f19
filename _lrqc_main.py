"""The `lrqc` command's entry point, outside the lrqc package so that it runs before any of
lrqc's modules load: loading them takes about a second, and Ctrl-C in that second ends the
command with "lrqc: interrupted" and status 130, as it does later, not with Python's traceback
(nor with the ImportError that a C extension makes of an interruption in its import).
lrqc.cli.main does the rest (docs/cli.md)."""

from __future__ import annotations

import os
import signal
import sys


def _interrupted(signum: int, frame: object) -> None:
    """SIGINT while lrqc loads: nothing has been done or written yet; leave at once."""
    os.write(2, b"lrqc: interrupted\n")
    os._exit(130)


def main() -> int:
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # not when ignored
        signal.signal(signal.SIGINT, _interrupted)
    from lrqc.cli import main as run  # the package's imports: Ctrl-C may land in them

    if signal.getsignal(signal.SIGINT) is _interrupted:
        signal.signal(signal.SIGINT, signal.default_int_handler)  # lrqc.cli.main's own handling
    try:
        return run()
    except KeyboardInterrupt:  # in the instant before lrqc.cli.main's handler is in place
        print("lrqc: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
