"""Output of the localcloud commands: progress on stderr, so that `status` stays machine-readable."""

from __future__ import annotations

import sys
from pathlib import Path


def log(msg: str) -> None:
    """Progress goes to stderr so that `status` output stays machine-readable on stdout."""
    print(f"[localcloud] {msg}", file=sys.stderr, flush=True)


def tail(path: Path, n: int) -> str:
    """The last ``n`` lines of a log file ("" when there is none)."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""
