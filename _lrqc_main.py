"""The `lrqc` command's entry point, outside the lrqc package so that it runs before any of
lrqc's modules load: loading them takes about a second, and Ctrl-C in that second ends the
command with "lrqc: interrupted" and status 130, as it does later, not with Python's traceback.
lrqc.cli.main does the rest (docs/cli.md)."""

from __future__ import annotations

import sys


def main() -> int:
    try:
        from lrqc.cli import main as run  # the package's imports: Ctrl-C may land in them

        return run()
    except KeyboardInterrupt:  # before lrqc.cli.main's own handler is in place
        print("lrqc: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
