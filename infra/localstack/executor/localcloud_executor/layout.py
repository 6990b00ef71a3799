"""Where the programs of an execution environment are (stdlib only: the ``localcloud`` CLI and the tests
recognise environments by these paths in their command lines)."""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
#: the environment's init, run as a folder: ``<LocalStack's python> -I -S <INIT_PROGRAM> <config.json>``
INIT_PROGRAM = PACKAGE_DIR / "init"
#: the runtime's first code: ``<the function's python> -I -S -B -u <BOOTSTRAP_SCRIPT> <handler>``
BOOTSTRAP_SCRIPT = PACKAGE_DIR / "bootstrap.py"
