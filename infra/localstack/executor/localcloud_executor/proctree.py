"""Processes as ``/proc`` shows them: start times, the parent -> children tree, command lines.

Stdlib only: the executor (inside LocalStack) and the ``localcloud`` CLI (plain python3, before any venv
exists; imported as ``infra.localstack.executor.localcloud_executor.proctree``) both walk process trees.
Function environments run in sessions of their own, so a process-group signal would miss them: whoever
stops a tree collects it here first.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (state, ppid, ...); None when gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2 :].split()


def start_time(pid: int) -> str | None:
    """Process start time (clock ticks since boot): with the PID, it names a process even when the PID is
    recycled. None when the process is gone (a zombie is as good as gone)."""
    fields = _stat_fields(pid)
    if fields is None or fields[0] == "Z":
        return None
    return fields[19]


def pids() -> list[int]:
    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for pid in pids():
        fields = _stat_fields(pid)
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(pid)
    return children


def descendants(pid: int) -> list[int]:
    """All processes below ``pid``, whatever their process group or session."""
    tree = _children_map()
    out: list[int] = []
    stack = list(tree.get(pid, []))
    while stack:
        child = stack.pop()
        out.append(child)
        stack.extend(tree.get(child, []))
    return out


def environ(pid: int) -> dict[str, str]:
    """The environment a process started with (empty when it is gone or not ours to read)."""
    try:
        data = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
    except OSError:
        return {}
    return dict(item.split("=", 1) for item in data.split("\0") if "=" in item)


def cwd(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return None


def argv(pid: int) -> list[str] | None:
    """A process's command line (None when it is gone; empty for a kernel thread)."""
    try:
        data = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return None
    args = data.split("\0")
    if args[-1] == "":  # each argument ends with a NUL
        args.pop()
    return args


def command_lines() -> Iterator[tuple[int, list[str]]]:
    """(pid, argv) of every process but this one."""
    for pid in pids():
        args = argv(pid) if pid != os.getpid() else None
        if args is not None:
            yield pid, args
