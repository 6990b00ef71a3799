"""``python -m bench.report [name]``: regenerate the report from a run's raw results (no cloud needed)."""

import sys

from bench.common import RESULTS
from bench.report import write

default = "full" if (RESULTS / "full.json").exists() else "quick"
write(sys.argv[1] if len(sys.argv) > 1 else default)
