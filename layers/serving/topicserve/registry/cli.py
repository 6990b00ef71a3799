"""``topicserve-registry``: the registry from a shell (works against AWS or LocalStack alike).

The endpoint comes from boto3's own settings (``AWS_ENDPOINT_URL``, ``AWS_REGION``), bucket and table from
``--bucket/--table`` or ``REGISTRY_BUCKET/REGISTRY_TABLE``. Output is JSON so it can be piped into jq.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from topicserve.errors import TopicServeError
from topicserve.registry.manifest import load_manifest, register_manifest
from topicserve.registry.model import Stage
from topicserve.registry.store import Registry


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="topicserve-registry", description=__doc__.splitlines()[0])
    parser.add_argument("--bucket", default=os.environ.get("REGISTRY_BUCKET"), help="artifacts bucket")
    parser.add_argument("--table", default=os.environ.get("REGISTRY_TABLE"), help="registry table")
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

    rb = sub.add_parser("rollback", help="put the previous production version back")
    rb.add_argument("name")

    res = sub.add_parser("resolve", help="the version of NAME at a stage")
    res.add_argument("name")
    res.add_argument("--stage", default="production", choices=[s.value for s in Stage])

    dl = sub.add_parser("download", help="download and sha256-verify an artifact")
    dl.add_argument("name")
    dl.add_argument("--version", type=int)
    dl.add_argument("--stage", default="production", choices=[s.value for s in Stage])
    dl.add_argument("--dest", default=".")
    return parser


def run(argv: Sequence[str] | None = None) -> Any:
    args = _parser().parse_args(argv)
    if not args.bucket or not args.table:
        raise TopicServeError("set --bucket/--table or REGISTRY_BUCKET/REGISTRY_TABLE")
    registry = Registry(bucket=args.bucket, table=args.table)
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
        case "promote":
            return registry.promote(args.name, args.version, Stage(args.stage)).to_dict()
        case "rollback":
            return registry.rollback(args.name).to_dict()
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
