"""The local cloud's process tree: loopback-only servers, isolated function interpreters, no orphans."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from infra.localstack.executor.localcloud_executor import layout, proctree
from infra.localstack.localcloud import settings, supervisor
from tests.e2e.conftest import LocalCloud, Stack

pytestmark = pytest.mark.e2e


def _listening_inodes() -> dict[str, str]:
    """socket inode -> local address, for TCP sockets in LISTEN state (IPv4 and IPv6)."""
    out = {}
    for table, v6 in (("/proc/net/tcp", False), ("/proc/net/tcp6", True)):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state != "0A":
                continue
            addr_hex = local.split(":")[0]
            if v6:
                addr = "::" if set(addr_hex) == {"0"} else addr_hex
                if addr_hex.endswith("0100007F") and addr_hex.startswith("0000000000000000FFFF0000"):
                    addr = "127.0.0.1"
                elif addr_hex == "00000000000000000000000001000000":
                    addr = "::1"
            else:
                addr = ".".join(str(b) for b in reversed(bytes.fromhex(addr_hex)))
            out[inode] = addr
    return out


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    except OSError:
        pass
    return inodes


@pytest.fixture
def tree(localcloud: LocalCloud, probe_stack: Stack, invoke: Any) -> list[int]:
    if localcloud.pid is None:
        pytest.skip("the running LocalStack was not started by localcloud: its process tree is unknown")
    # make sure there is at least one environment and DynamoDB Local (Java) up
    invoke(probe_stack.outputs["EchoFunctionName"], {"action": "env"})
    localcloud.client("dynamodb").list_tables()
    return [localcloud.pid, *proctree.descendants(localcloud.pid)]


def test_every_server_binds_loopback(tree: list[int]) -> None:
    listening = _listening_inodes()
    bound = {}
    for pid in tree:
        for inode in _socket_inodes(pid):
            if inode in listening:
                bound[(pid, inode)] = listening[inode]
    assert bound, "found no listening sockets at all"
    exposed = {k: v for k, v in bound.items() if v != "127.0.0.1"}
    assert not exposed, f"servers not on 127.0.0.1: {exposed}"


def test_function_processes_are_isolated_children_of_localstack(tree: list[int]) -> None:
    # this local cloud's environments only: another one (another checkout, another port) may be running
    bootstrap = str(layout.BOOTSTRAP_SCRIPT)
    runtimes = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            mine = any(a.decode(errors="replace") == bootstrap for a in argv)
            if mine and supervisor.belongs_here(int(entry)):
                runtimes.append((int(entry), [a.decode() for a in argv if a]))
    assert runtimes, "no function process found"
    for pid, argv in runtimes:
        assert pid in tree, f"function process {pid} is not below LocalStack (orphan?)"
        assert "-I" in argv and "-S" in argv, argv
        assert not argv[0].startswith(str(settings.VENV)), "function runs under LocalStack's interpreter"
