"""`python -m lrqc.cli ...`: the same as the `lrqc` command."""

import sys

from .main import main

sys.exit(main())
