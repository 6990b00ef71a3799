"""One runtime process (the real ``awslambdaric`` under the function's interpreter) and its output."""

from __future__ import annotations

import contextlib
import math
import os
import queue
import select
import signal
import subprocess
import threading
import time
from typing import TYPE_CHECKING, Any

from runtime_api import RuntimeApiServer

if TYPE_CHECKING:
    from environment import Environment


class Pending:
    """One invocation handed to the runtime: request data in, result (or death) out."""

    def __init__(self, payload: dict[str, Any], deadline_ms: int) -> None:
        self.request_id: str = payload["invoke-id"]
        self.payload = payload
        self.deadline_ms = deadline_ms
        self.delivered_at: float | None = None
        self.result: bytes | None = None
        self.is_error = False


#: Runs an image's entrypoint inside its root filesystem, in a mount namespace of its own (host /bin/sh):
#: the image read-only, /proc, /dev and the environment's private /tmp mounted in it, then chroot and the
#: image's working directory. The network is the host's, so the Runtime API on 127.0.0.1 is reachable.
IMAGE_SCRIPT = r"""
R=$1 T=$2 W=$3; shift 3
mount --bind "$R" "$R" && mount -o remount,bind,ro "$R" && mount -t proc proc "$R/proc" &&
  mount --rbind /dev "$R/dev" && mount --bind "$T" "$R/tmp" || { echo "image mounts failed" >&2; exit 126; }
exec chroot "$R" /bin/sh -c 'cd "$1" || exit 126; shift; exec "$@"' sh "$W" "$@"
"""


def image_command(image: dict[str, Any], tmp: str) -> list[str]:
    """unshare (mount namespace, so nothing mounted here outlives the environment) + the script above."""
    return [
        "unshare", "--mount", "--fork", "--", "/bin/sh", "-c", IMAGE_SCRIPT, "sh",
        image["rootfs"], tmp, image["workdir"], *image["argv"],
    ]  # fmt: skip


class Runtime:
    """One runtime process (awslambdaric) with its own Runtime API server; replaced after a timeout/crash."""

    def __init__(self, env: Environment) -> None:
        self.env = env
        self.cond = threading.Condition()
        self.queue: queue.Queue[Pending | None] = queue.Queue()
        self.current: Pending | None = None
        self.init_done_at: float | None = None
        self.init_error: bytes | None = None
        self.init_reported = False
        self.dead = False
        self.exit_code: int | None = None
        self.peak_kb = 0
        self._out = bytearray()
        self._out_lock = threading.Lock()
        self.server = RuntimeApiServer(("127.0.0.1", 0), self)
        threading.Thread(target=self.server.serve_forever, name="runtime-api", daemon=True).start()
        cfg = env.config
        proc_env = dict(cfg["env"])
        proc_env["AWS_LAMBDA_RUNTIME_API"] = f"127.0.0.1:{self.server.server_address[1]}"
        image = cfg.get("image")
        if image:
            command, cwd = image_command(image, cfg["tmp"]), cfg["tmp"]
        else:
            proc_env["_LOCALCLOUD_PATH_FRONT"] = os.pathsep.join([cfg["task_root"], *cfg["layer_paths"]])
            proc_env["_LOCALCLOUD_PATH_BACK"] = cfg["runtime_dir"]
            # -I: no user site, no PYTHON* env, no script dir; -S: not even the interpreter's own
            # site-packages. The bootstrap then builds sys.path as Lambda does: task root, layers, stdlib,
            # runtime dir. -B: write no bytecode, because Lambda cannot (/var/task and /opt are read-only
            # there): otherwise the first environment would leave .pyc files in the shared unzipped code
            # and layers, and every later cold start here would be faster than any on AWS.
            command = [cfg["python"], "-I", "-S", "-B", "-u", cfg["bootstrap"], cfg["handler"]]
            cwd = cfg["task_root"]
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen(
            command,
            cwd=cwd,
            env=proc_env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            process_group=0,  # its own group: a timeout kills the handler and anything it spawned
        )
        self.pid = self.proc.pid
        assert self.proc.stdout is not None
        self._fd = self.proc.stdout.fileno()
        os.set_blocking(self._fd, False)
        threading.Thread(target=self._read_output, name="runtime-output", daemon=True).start()
        threading.Thread(target=self._watch, name="runtime-watch", daemon=True).start()

    # -- output capture ---------------------------------------------------------------------------
    def _read_output(self) -> None:
        while True:
            try:
                ready, _, _ = select.select([self._fd], [], [], 1.0)
            except (OSError, ValueError):
                return
            if ready and not self._read_available():
                return

    def _read_available(self) -> bool:
        """Read what the pipe holds now; False at EOF. Holding the lock lets drain() be a barrier."""
        with self._out_lock:
            while True:
                try:
                    chunk = os.read(self._fd, 65536)
                except BlockingIOError:
                    return True
                except OSError:
                    return False
                if not chunk:
                    return False
                self._out += chunk

    def take_output(self) -> str:
        """Everything the runtime printed so far and not yet taken. Reads the pipe first: whatever the
        handler wrote before posting its result is already in the pipe, so nothing of it is lost."""
        with contextlib.suppress(OSError, ValueError):
            self._read_available()
        with self._out_lock:
            data = bytes(self._out)
            self._out.clear()
        return data.decode("utf-8", errors="replace")

    # -- lifecycle --------------------------------------------------------------------------------
    def _watch(self) -> None:
        # reap with wait4 rather than Popen.wait: its rusage gives the peak RSS of a process that is gone
        _, status, usage = os.wait4(self.pid, 0)
        self.peak_kb = usage.ru_maxrss
        self.proc.returncode = self.exit_code = os.waitstatus_to_exitcode(status)
        with self.cond:
            self.dead = True
            self.cond.notify_all()
        self.queue.put(None)

    def wait_init(self, timeout: float | None) -> bool:
        with self.cond:
            return self.cond.wait_for(
                lambda: self.init_done_at is not None or self.init_error is not None or self.dead, timeout
            )

    @property
    def init_duration_ms(self) -> float | None:
        if self.init_done_at is None:
            return None
        return (self.init_done_at - self.started_at) * 1000

    def max_memory_mb(self) -> int:
        """Peak RSS (VmHWM) of the runtime process: what AWS reports as Max Memory Used. For an image the
        runtime is a child of unshare (same process group), so the largest peak in the group counts."""
        peaks = [kb for pid in self._group() if (kb := _peak_kb(pid)) is not None]
        if peaks:
            return math.ceil(max(peaks) / 1024)
        return math.ceil(self.peak_kb / 1024)  # the process is gone: its rusage, once reaped

    def _group(self) -> list[int]:
        if not self.env.config.get("image"):
            return [self.pid]
        members = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                with contextlib.suppress(OSError):
                    if os.getpgid(int(entry)) == self.pid:
                        members.append(int(entry))
        return members

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        with self.cond:
            self.cond.wait_for(lambda: self.dead, 5)
        self.queue.put(None)
        self.server.shutdown()
        self.server.server_close()


def _peak_kb(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None
