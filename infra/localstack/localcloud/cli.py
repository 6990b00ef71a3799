"""The command line: ``python3 -m infra.localstack.localcloud install|up|down|status|logs``."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time

from infra.localstack import localcloud
from infra.localstack.localcloud import supervisor
from infra.localstack.localcloud.console import log, tail
from infra.localstack.localcloud.installers import install
from infra.localstack.localcloud.settings import HOST, LOG_FILE, PORT


def cmd_install(_: argparse.Namespace) -> int:
    return install()


def cmd_up(_: argparse.Namespace) -> int:
    return supervisor.up()


def cmd_down(_: argparse.Namespace) -> int:
    return supervisor.down()


def cmd_status(_: argparse.Namespace) -> int:
    """Exit 0 when healthy, 3 otherwise (like `systemctl status`)."""
    info = supervisor.status()
    print(json.dumps(info, indent=2))
    return 0 if info["healthy"] else 3


def cmd_logs(args: argparse.Namespace) -> int:
    """The LocalStack log (functions' own logs go to CloudWatch Logs, as on AWS)."""
    print(tail(LOG_FILE, args.lines))
    if args.follow:
        with open(LOG_FILE, errors="replace") as f:
            f.seek(0, os.SEEK_END)
            try:
                while True:
                    line = f.readline()
                    if line:
                        print(line, end="", flush=True)
                    else:
                        time.sleep(0.3)
            except KeyboardInterrupt:
                return 0
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python3 -m infra.localstack.localcloud",
        description=localcloud.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("install", help="install LocalStack, DynamoDB Local, Java, runtimes, SAM CLI (idempotent)")
    sub.add_parser("up", help=f"start the local cloud on {HOST}:{PORT} (no-op when healthy)")
    sub.add_parser("down", help="stop what `up` started, children included")
    sub.add_parser("status", help="running / healthy / PID / port (exit 3 when not healthy)")
    logs = sub.add_parser("logs", help="show LocalStack's log")
    logs.add_argument("-n", "--lines", type=int, default=100)
    logs.add_argument("-f", "--follow", action="store_true")
    args = parser.parse_args(argv)
    handlers = {
        "install": cmd_install,
        "up": cmd_up,
        "down": cmd_down,
        "status": cmd_status,
        "logs": cmd_logs,
    }
    try:
        return handlers[args.cmd](args)
    except subprocess.CalledProcessError as exc:
        log(f"failed: {' '.join(map(str, exc.cmd))} (exit {exc.returncode})")
        return 1
