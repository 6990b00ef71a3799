"""Transitional: hands over to ``init/``, the environment's init program since it was split into modules.

Only a LocalStack whose executor was loaded before the split still launches this file
(``<python> -I -S .../init.py <config.json>``); the exec keeps the PID and the inherited invoke socket.
Delete this file once no such LocalStack is running (``make down && make up`` restarts one).
"""

import os
import sys

if __name__ == "__main__":
    program = os.path.join(os.path.dirname(os.path.abspath(__file__)), "init")
    os.execv(sys.executable, [sys.executable, "-I", "-S", program, *sys.argv[1:]])
