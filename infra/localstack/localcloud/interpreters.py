"""Finding real pythonX.Y executables: LocalStack, the SAM CLI and each Lambda runtime need one."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
from pathlib import Path

from infra.localstack.localcloud.console import log


def find_python(version: str) -> Path | None:
    """Find a real pythonX.Y executable (not a pyenv shim, which SAM and venvs cannot use reliably).

    Order: env LOCALCLOUD_PYTHON<XY> (e.g. LOCALCLOUD_PYTHON313), pyenv's versions dir, PATH.
    """
    env = os.environ.get(f"LOCALCLOUD_PYTHON{version.replace('.', '')}")
    if env:
        return Path(env) if Path(env).is_file() else None
    pyenv_root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    candidates = sorted(glob.glob(str(pyenv_root / "versions" / f"{version}*" / "bin" / f"python{version}")))
    candidates += sorted(glob.glob(f"/root/.pyenv/versions/{version}*/bin/python{version}"))
    for cand in candidates:
        if os.access(cand, os.X_OK):
            return Path(cand)
    on_path = shutil.which(f"python{version}")
    if on_path and "/shims/" not in on_path:
        return Path(on_path)
    if on_path:  # a shim: ask it where the real interpreter is
        try:
            real = subprocess.run(
                [on_path, "-c", "import sys; print(sys.executable)"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
            return Path(real) if real else None
        except (subprocess.CalledProcessError, OSError):
            return None
    return None


def python313() -> Path:
    """LocalStack 2026.3.0 imports only on Python 3.13: fail with a useful message when it is missing."""
    py = find_python("3.13")
    if py is None:
        log("Python 3.13 not found. LocalStack needs it. Install it (e.g. `pyenv install 3.13`) or point")
        log("LOCALCLOUD_PYTHON313 at a python3.13 executable.")
        raise SystemExit(2)
    return py
