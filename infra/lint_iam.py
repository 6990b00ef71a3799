"""Least-privilege check of the IAM policies template.yaml creates, offline.

    .localcloud/sam-venv/bin/python infra/lint_iam.py [--out build/lint/template.cfn.json]
        [--param Key=Value ...] [--auto-publish-alias live]   # e.g. the AWS code canary variant
    .venv/bin/checkov -f build/lint/template.cfn.json --framework cloudformation --check CKV_AWS_107,...

Why a transform first: the SAM template declares permissions as ``Policies:`` on AWS::Serverless::Function
(policy templates such as DynamoDBReadPolicy), which checkov's IAM checks do not read. The SAM translator
(the library CloudFormation itself runs for the SAM transform; it ships with the SAM CLI, hence that venv)
expands them into the AWS::IAM::Role resources that will really exist, with every statement spelled out.
This script writes that CloudFormation and then checks rules of our own that checkov does not know:

* no statement allows ``*`` actions or a ``service:*`` action;
* no statement grants on ``Resource: "*"``, except for actions AWS cannot scope (ListEventSourceMappings);
* managed policies: only those SAM attaches (basic execution; SQS polling for the SQS-fed batcher);
* each role's actions are exactly the set its function needs (a new permission is a reviewed change here).

Exit 1 with the violations listed, 0 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DUMMY_CODE = "s3://lint-bucket/code.zip"
PARAMETERS = {"AWS::Region": "us-east-1", "AWS::AccountId": "123456789012", "AWS::Partition": "aws"}

# What each function may do; the transform must produce exactly this, no more.
_READ_REGISTRY = {
    "dynamodb:GetItem",
    "dynamodb:Scan",
    "dynamodb:Query",
    "dynamodb:BatchGetItem",
    "dynamodb:DescribeTable",
}
_READ_ARTIFACTS = {
    "s3:GetObject",
    "s3:ListBucket",
    "s3:GetBucketLocation",
    "s3:GetObjectVersion",
    "s3:GetLifecycleConfiguration",
}
# + the caches (BatchGet/BatchWrite) and the rollout records (UpdateItem: atomic ADDs)
_MODEL = (
    _READ_REGISTRY
    | _READ_ARTIFACTS
    | {"dynamodb:BatchGetItem", "dynamodb:BatchWriteItem", "dynamodb:UpdateItem"}
)
_TUNE_ESM = {
    "lambda:ListEventSourceMappings",
    "lambda:GetEventSourceMapping",
    "lambda:UpdateEventSourceMapping",
}
EXPECTED_ACTIONS: dict[str, set[str]] = {
    "PredictLogregFunctionRole": _MODEL,
    "PredictRfFunctionRole": _MODEL,
    "PredictHgbFunctionRole": _MODEL,
    "PredictMlpFunctionRole": _MODEL,
    "PredictEnsembleFunctionRole": _MODEL,
    "PredictImageFunctionRole": _MODEL,  # the container-image predict function (PredictImageUri set)
    # + label feedback from the queue: a marker per counted item, the labelled texts archived under feedback/
    "BatcherFunctionRole": _MODEL | _TUNE_ESM | {"dynamodb:PutItem", "s3:PutObject"},
    # SQSSendMessagePolicy: SendMessage(Batch); + Powertools' idempotency records (Put/Get/Update/DeleteItem);
    # + label feedback's archive of labelled texts (s3:PutObject under feedback/)
    "ApiFunctionRole": _READ_REGISTRY
    | {
        "sqs:SendMessage*",
        "dynamodb:PutItem",
        "dynamodb:Query",
        "dynamodb:UpdateItem",
        "dynamodb:DeleteItem",
        "s3:PutObject",
    },
    "WarmerFunctionRole": {"lambda:InvokeFunction"},
    # the rollout gate: routing + records read, stage changes (TransactWriteItems of Updates)
    "GateFunctionRole": {
        "dynamodb:GetItem",
        "dynamodb:BatchGetItem",
        "dynamodb:Query",
        "dynamodb:UpdateItem",
    },
    # the drift monitor: its windows, the reference (registry record + artifact), the report objects
    # + the registry's routings (which version is in production), for live quality from label feedback
    "MonitorFunctionRole": {
        "dynamodb:Query",
        "dynamodb:GetItem",
        "dynamodb:BatchGetItem",
        "s3:GetObject",
        "s3:PutObject",
    },
    # the GPU worker (GpuWorker=true, AWS only): its tasks drain the bulk queue like the batcher does ...
    "WorkerTaskRole": {
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
        "sqs:ChangeMessageVisibility",
        "sqs:GetQueueAttributes",
        "dynamodb:GetItem",
        "dynamodb:BatchGetItem",
        "dynamodb:Query",
        "dynamodb:BatchWriteItem",
        "dynamodb:UpdateItem",
        "s3:GetObject",
    },
    # ... the task execution role pulls the image and writes logs, the instances join the cluster: AWS's
    # managed policies for exactly that, nothing of their own
    "WorkerExecutionRole": set(),
    "GpuInstanceRole": set(),
}
BASIC_EXECUTION = "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"
# SAM attaches AWSLambdaSQSQueueExecutionRole to a function with an SQS event (the poller's Receive/Delete/
# GetQueueAttributes); accepted for the batcher only, the one function that SQS feeds.
SQS_POLLER = "arn:aws:iam::aws:policy/service-role/AWSLambdaSQSQueueExecutionRole"
MANAGED_ALLOWED = {role: {BASIC_EXECUTION} for role in EXPECTED_ACTIONS} | {
    "BatcherFunctionRole": {BASIC_EXECUTION, SQS_POLLER},
    "WorkerExecutionRole": {"arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"},
    "GpuInstanceRole": {"arn:aws:iam::aws:policy/service-role/AmazonEC2ContainerServiceforEC2Role"},
}
# Actions that AWS does not scope to resources: the only statements allowed on Resource "*".
UNSCOPABLE_ACTIONS = {"lambda:ListEventSourceMappings"}
# Function code canaries (template.yaml: CodeDeploymentType + AutoPublishAlias, AWS only) add the service role
# SAM creates for CodeDeploy: AWS's managed policy for Lambda deployments, no statements of its own.
CODEDEPLOY_ROLE = "CodeDeployServiceRole"
CODEDEPLOY_FOR_LAMBDA = "arn:aws:iam::aws:policy/service-role/AWSCodeDeployRoleForLambda"
OPTIONAL_ACTIONS: dict[str, set[str]] = {CODEDEPLOY_ROLE: set()}
MANAGED_ALLOWED[CODEDEPLOY_ROLE] = {CODEDEPLOY_FOR_LAMBDA}


class _ManagedPolicies:
    """The translator asks IAM for managed policy ARNs; offline we name the one SAM attaches."""

    def load(self) -> dict[str, str]:
        return {
            "AWSLambdaBasicExecutionRole": BASIC_EXECUTION,
            "AWSLambdaSQSQueueExecutionRole": SQS_POLLER,
        }


def transform(
    template_path: Path, parameters: dict[str, str] | None = None, auto_publish_alias: str | None = None
) -> dict[str, Any]:
    """The CloudFormation the SAM transform makes of the template, for ``parameters`` (template defaults for
    the others). ``auto_publish_alias`` renders the AWS code canary variant: SAM cannot switch
    Globals.Function.AutoPublishAlias with a parameter, so the AWS deploy adds it (template.yaml,
    docs/ROLLOUT.md "Two levels of rollout")."""
    from samcli.yamlhelper import yaml_parse
    from samtranslator.translator.transform import transform as sam_transform

    os.environ.setdefault("AWS_DEFAULT_REGION", PARAMETERS["AWS::Region"])  # the translator asks boto3
    template = yaml_parse(template_path.read_text())
    if auto_publish_alias:
        template["Globals"]["Function"]["AutoPublishAlias"] = auto_publish_alias
    for resource in template["Resources"].values():
        props = resource.get("Properties", {})
        for key in ("CodeUri", "ContentUri"):
            if key in props:
                props[key] = DUMMY_CODE  # local paths are packaged by sam; irrelevant to permissions
    cfn: dict[str, Any] = sam_transform(template, {**PARAMETERS, **(parameters or {})}, _ManagedPolicies())
    return cfn


def _policies(role: dict[str, Any]) -> list[dict[str, Any]]:
    """A role's inline policies; a conditional one (``Fn::If``) counts with both branches, so the review
    covers what any parameter value can grant."""
    out: list[dict[str, Any]] = []
    for policy in role["Properties"].get("Policies", []):
        branches = policy["Fn::If"][1:] if isinstance(policy, dict) and "Fn::If" in policy else [policy]
        out.extend(b for b in branches if isinstance(b, dict) and "PolicyDocument" in b)
    return out


def _statements(role: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for policy in _policies(role):
        statements = policy["PolicyDocument"]["Statement"]
        out.extend(statements if isinstance(statements, list) else [statements])
    return out


def _partitioned(arn: Any) -> Any:
    """``!Sub "arn:${AWS::Partition}:..."`` (how a partition-agnostic template names AWS's managed policies)
    read for the partition the check assumes."""
    if isinstance(arn, dict) and isinstance(arn.get("Fn::Sub"), str):
        return arn["Fn::Sub"].replace("${AWS::Partition}", PARAMETERS["AWS::Partition"])
    return arn


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def violations(cfn: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    roles = {k: v for k, v in cfn["Resources"].items() if v["Type"] == "AWS::IAM::Role"}
    if set(roles) - set(OPTIONAL_ACTIONS) != set(EXPECTED_ACTIONS):
        problems.append(f"roles {sorted(roles)} differ from the reviewed set {sorted(EXPECTED_ACTIONS)}")
    for name, role in roles.items():
        for arn in map(_partitioned, role["Properties"].get("ManagedPolicyArns", [])):
            if arn not in MANAGED_ALLOWED.get(name, set()):
                problems.append(f"{name}: unexpected managed policy {arn}")
        actions: set[str] = set()
        for statement in _statements(role):
            if statement.get("Effect") != "Allow":
                continue
            for action in _as_list(statement["Action"]):
                actions.add(action)
                if action == "*" or action.endswith(":*"):
                    problems.append(f"{name}: wildcard action {action}")
            for resource in _as_list(statement.get("Resource", [])):
                if resource == "*" and set(_as_list(statement["Action"])) - UNSCOPABLE_ACTIONS:
                    problems.append(f"{name}: statement on Resource '*' ({statement['Action']})")
        expected = EXPECTED_ACTIONS.get(name, OPTIONAL_ACTIONS.get(name))
        if expected is not None and actions != expected:
            extra, missing = sorted(actions - expected), sorted(expected - actions)
            problems.append(f"{name}: actions differ from the reviewed set: extra {extra}, missing {missing}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--template", type=Path, default=REPO / "template.yaml")
    parser.add_argument("--out", type=Path, default=REPO / "build" / "lint" / "template.cfn.json")
    parser.add_argument("--param", action="append", default=[], help="template parameter Key=Value")
    parser.add_argument(
        "--auto-publish-alias", help="add Globals.Function.AutoPublishAlias (AWS code canaries)"
    )
    args = parser.parse_args(argv)
    parameters = dict(p.split("=", 1) for p in args.param)
    cfn = transform(args.template, parameters, args.auto_publish_alias)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(cfn, indent=1, default=str) + "\n")
    problems = violations(cfn)
    for problem in problems:
        print(f"IAM: {problem}", file=sys.stderr)
    roles = sum(1 for r in cfn["Resources"].values() if r["Type"] == "AWS::IAM::Role")
    print(f"{args.out}: {roles} roles, {len(problems)} least-privilege violations")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
