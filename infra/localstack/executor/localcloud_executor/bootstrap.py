"""Runtime bootstrap: the first code that runs in a function's process, under the function's own Python.

Started by the environment's init (``init/``) as ``<python3.X> -I -S -B -u bootstrap.py <handler>``, so the
interpreter brings nothing but its standard library (no site-packages, no user site, no PYTHON*
variables). Here we build the import path Lambda's Python runtime has, and hand over to the real runtime
interface client, ``awslambdaric``:

    task root, layers' python/lib/pythonX.Y/site-packages, layers' python/, stdlib, runtime dir

(the runtime dir, like /var/runtime on AWS, holds awslambdaric and boto3 and comes last, so a function's
own boto3 wins). Nothing from LocalStack's venv can be imported: a function that imports a package it did
not package fails here as it would on Lambda.

Stdlib only and compatible with every Python runtime we serve (3.11+).
"""

import os
import sys
import threading
import time


def _split(value: str) -> list[str]:
    return [p for p in value.split(os.pathsep) if p]


def _watch_parent(parent: int) -> None:
    """Exit when the environment's init goes away (killed with LocalStack): never leave a function behind."""
    while True:
        time.sleep(0.5)
        if os.getppid() != parent:
            os._exit(1)


def main() -> None:
    front = _split(os.environ.pop("_LOCALCLOUD_PATH_FRONT", ""))
    back = _split(os.environ.pop("_LOCALCLOUD_PATH_BACK", ""))
    sys.path[:] = [*front, *[p for p in sys.path if p not in front], *back]
    threading.Thread(
        target=_watch_parent, args=(os.getppid(),), name="localcloud-parent-watch", daemon=True
    ).start()
    handler = sys.argv[1]
    sys.argv = [sys.argv[0], handler]
    from awslambdaric.__main__ import main as ric_main

    ric_main(sys.argv)


if __name__ == "__main__":
    main()
