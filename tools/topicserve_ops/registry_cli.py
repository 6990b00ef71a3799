"""``topicserve-registry``: the registry from a shell (works against AWS or LocalStack alike).

The endpoint comes from boto3's own settings (``AWS_ENDPOINT_URL``, ``AWS_REGION``), bucket and tables from
``--bucket/--table/--rollout-table`` or ``REGISTRY_BUCKET/REGISTRY_TABLE/ROLLOUT_TABLE``, or else from a
deployed stack's ``build/stack.json`` (``--stack``; for the local cloud it also gives the endpoint). Output
is JSON so it can be piped into jq.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from topicserve.aws import aws_client
from topicserve.catalogue import MODEL_NAMES
from topicserve.errors import TopicServeError
from topicserve.registry.manifest import load_manifest, register_manifest
from topicserve.registry.model import Stage
from topicserve.registry.store import Registry
from topicserve.rollout.gates import Thresholds
from topicserve.rollout.records import RolloutStore
from topicserve.rollout.runner import rollout_status, run_gates


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="topicserve-registry", description=__doc__.splitlines()[0])
    parser.add_argument("--bucket", default=os.environ.get("REGISTRY_BUCKET"), help="artifacts bucket")
    parser.add_argument("--table", default=os.environ.get("REGISTRY_TABLE"), help="registry table")
    parser.add_argument(
        "--rollout-table",
        default=os.environ.get("ROLLOUT_TABLE"),
        help="rollout records table (gate, status)",
    )
    parser.add_argument("--stack", default="build/stack.json", help="stack outputs to read what is not set")
    sub = parser.add_subparsers(dest="command", required=True)

    reg = sub.add_parser("register", help="upload an artifact as the next version of NAME")
    reg.add_argument("name")
    reg.add_argument("artifact")
    reg.add_argument("--format", default="onnx")
    reg.add_argument("--metrics", type=json.loads, default={}, help="JSON object")
    reg.add_argument("--hyperparameters", type=json.loads, default={}, help="JSON object")
    reg.add_argument("--labels", type=json.loads, default=[], help="JSON list")
    reg.add_argument("--stage", default="none", choices=[s.value for s in Stage])
    reg.add_argument("--description", default="")

    man = sub.add_parser("register-manifest", help="register everything in build/models/manifest.json")
    man.add_argument("manifest", nargs="?", default="build/models/manifest.json")
    man.add_argument("--root", default=".", help="folder the manifest's paths are relative to")
    man.add_argument("--promote", action="store_true", help="promote newly registered versions")

    lst = sub.add_parser("list", help="versions of NAME (or of every model)")
    lst.add_argument("name", nargs="?")

    for verb, text in (("show", "one version"), ("lineage", "a version and its ancestors")):
        p = sub.add_parser(verb, help=text)
        p.add_argument("name")
        p.add_argument("version", type=int)

    pro = sub.add_parser("promote", help="move a version to a stage (production archives the old one)")
    pro.add_argument("name")
    pro.add_argument("version", type=int)
    pro.add_argument("--stage", default="production", choices=[s.value for s in Stage])
    pro.add_argument("--weight", type=float, help="canary traffic share in (0, 1]")
    pro.add_argument("--reason", default="", help="recorded in the history")

    for verb, text in (
        ("shadow", "score every request on the side, never answer"),
        ("canary", "answer a share"),
    ):
        p = sub.add_parser(verb, help=f"{verb} a version: {text}")
        p.add_argument("name")
        p.add_argument("version", type=int)
        p.add_argument("--weight", type=float, help="canary traffic share in (0, 1]")
        p.add_argument("--reason", default="", help="recorded in the history")

    rb = sub.add_parser("rollback", help="undo the rollout: the canary, else the shadow, else production")
    rb.add_argument("name")
    rb.add_argument("--production", action="store_true", help="put the previous production version back")
    rb.add_argument("--reason", default="", help="recorded in the history")

    st = sub.add_parser("rollout-status", help="routing, candidate records, gate preview and history")
    st.add_argument("name", nargs="?")

    gate = sub.add_parser("gate", help="evaluate every shadow and canary now (--apply: act on it)")
    gate.add_argument("--apply", action="store_true")

    res = sub.add_parser("resolve", help="the version of NAME at a stage")
    res.add_argument("name")
    res.add_argument("--stage", default="production", choices=[s.value for s in Stage])

    dl = sub.add_parser("download", help="download and sha256-verify an artifact")
    dl.add_argument("name")
    dl.add_argument("--version", type=int)
    dl.add_argument("--stage", default="production", choices=[s.value for s in Stage])
    dl.add_argument("--dest", default=".")
    return parser


def _actor() -> str:
    return f"cli:{os.environ.get('USER') or 'unknown'}"


def _store(args: argparse.Namespace) -> RolloutStore:
    if not args.rollout_table:
        raise TopicServeError("set --rollout-table or ROLLOUT_TABLE (the stack output RolloutTable)")
    return RolloutStore(args.rollout_table, aws_client("dynamodb", serving=False))


def _status(args: argparse.Namespace, names: list[str]) -> dict[str, Any]:
    store = _store(args) if args.rollout_table else None
    registry = Registry(bucket=args.bucket, table=args.table)
    return rollout_status(registry, store, Thresholds.from_env(), names)


def _fill_from_stack(args: argparse.Namespace) -> None:
    """What ``make deploy`` wrote: bucket, tables and, for the local cloud, its endpoint and dummy keys."""
    path = Path(args.stack)
    if (args.bucket and args.table) or not path.is_file():
        return
    stack = json.loads(path.read_text())
    args.bucket = args.bucket or stack["bucket"]
    args.table = args.table or stack["tables"]["registry"]
    args.rollout_table = args.rollout_table or stack["tables"].get("rollout")
    if stack.get("endpoint_url"):
        for key, value in (
            ("AWS_ENDPOINT_URL", stack["endpoint_url"]),
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
            ("AWS_DEFAULT_REGION", stack.get("region") or "us-east-1"),
        ):
            os.environ.setdefault(key, value)


def _registry(args: argparse.Namespace) -> Registry:
    _fill_from_stack(args)
    if not args.bucket or not args.table:
        raise TopicServeError("set --bucket/--table or REGISTRY_BUCKET/REGISTRY_TABLE")
    return Registry(bucket=args.bucket, table=args.table)


def open_registry(stack: str | os.PathLike[str] = "build/stack.json") -> Registry:
    """The registry this command would use, for scripts (``training.candidate --register``): bucket and
    table from REGISTRY_BUCKET / REGISTRY_TABLE, else from the deployed stack's outputs, which also point
    boto3 at the local cloud. Raises :class:`TopicServeError` when neither says."""
    return _registry(_parser().parse_args(["--stack", os.fspath(stack), "list"]))


def run(argv: Sequence[str] | None = None) -> Any:
    args = _parser().parse_args(argv)
    registry = _registry(args)
    match args.command:
        case "register":
            return registry.register(
                args.name,
                args.artifact,
                format=args.format,
                metrics=args.metrics,
                hyperparameters=args.hyperparameters,
                labels=args.labels,
                stage=Stage(args.stage),
                description=args.description,
            ).to_dict()
        case "register-manifest":
            records = register_manifest(
                registry,
                load_manifest(args.manifest),
                root=args.root,
                promote_new=args.promote,
                log=lambda line: print(line, file=sys.stderr),
            )
            return {name: record.to_dict() for name, record in records.items()}
        case "list":
            return [v.to_dict() for v in registry.list(args.name)]
        case "show":
            return registry.show(args.name, args.version).to_dict()
        case "lineage":
            return [v.to_dict() for v in registry.lineage(args.name, args.version)]
        case "promote" | "shadow" | "canary":
            stage = Stage(args.stage) if args.command == "promote" else Stage(args.command)
            registry.promote(
                args.name, args.version, stage, weight=args.weight, reason=args.reason, actor=_actor()
            )
            return _status(args, [args.name])
        case "rollback":
            registry.rollback(args.name, production=args.production, reason=args.reason, actor=_actor())
            return _status(args, [args.name])
        case "rollout-status":
            return _status(args, [args.name] if args.name else list(MODEL_NAMES))
        case "gate":
            return run_gates(
                registry, _store(args), Thresholds.from_env(), MODEL_NAMES, apply=args.apply, actor=_actor()
            )
        case "resolve":
            return registry.resolve(args.name, Stage(args.stage)).to_dict()
        case "download":
            record = (
                registry.show(args.name, args.version)
                if args.version is not None
                else registry.resolve(args.name, Stage(args.stage))
            )
            return {"path": str(registry.download(record, args.dest)), "sha256": record.sha256}
    raise AssertionError(args.command)  # argparse enforces the choices


def main(argv: Sequence[str] | None = None) -> int:
    try:
        result = run(argv)
    except TopicServeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    json.dump(result, sys.stdout, indent=2, sort_keys=True)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
