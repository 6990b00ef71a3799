"""Build and deploy the stack with the AWS SAM CLI, register the models, write ``build/stack.json``.

    python infra/deploy.py [--stack-name topicserve] [--param Key=Value ...] [--no-promote]
    (or python -m infra.deploy ...)

The same ``sam build`` / ``sam deploy`` commands serve AWS and LocalStack: with ``AWS_ENDPOINT_URL`` unset
this deploys to the AWS account of your credentials; ``make deploy`` sets it to the local cloud
(http://127.0.0.1:4566) with dummy credentials. Steps, each printed as it runs:

1. assemble the encoder layer from ``build/models`` (``infra/encoder_layer.py``);
2. ``sam build --cached``: the serving layer's wheels for python3.13 / manylinux x86_64, the functions;
3. ``sam deploy`` of template.yaml (CloudFormation), parameters from ``--param``;
4. register what ``make models`` built in the stack's registry (idempotent: by sha256) and promote it
   (``--no-promote`` keeps whatever is in production), renewing the model functions' environments if a
   production version changed, so no warm environment keeps serving the old head;
5. write ``build/stack.json`` (API URL that works from this machine, API key, queue URL, tables, bucket,
   and with ``--param FunctionUrls=iam`` the functions' own URLs).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from infra import encoder_layer
from infra.localstack.localcloud.interpreters import python313
from infra.localstack.localcloud.settings import SAM_VENV
from topicserve.catalogue import MODEL_NAMES, SERVED_ENCODER
from topicserve.errors import RegistryError
from topicserve.rollout.seed import seed_routing_env
from topicserve_ops.lambda_config import environment, renew_environments, update_environments

if TYPE_CHECKING:  # annotations only (the boto3 stubs are in the development environment only)
    from mypy_boto3_cloudformation import CloudFormationClient
    from mypy_boto3_lambda import LambdaClient

    from topicserve.registry import Registry

REPO = Path(__file__).resolve().parents[1]
STACK_JSON = REPO / "build" / "stack.json"
IMAGES = REPO / "build" / "images"
MANIFEST = REPO / "build" / "models" / "manifest.json"
#: ``sam deploy`` without prompts: the flags every deploy of ours shares (app, benchmark and test stacks)
SAM_DEPLOY_FLAGS = (
    "--resolve-s3",
    "--no-confirm-changeset",
    "--no-fail-on-empty-changeset",
    "--capabilities",
    "CAPABILITY_IAM",
    "CAPABILITY_AUTO_EXPAND",
)


def say(message: str) -> None:
    print(f"==> {message}", flush=True)


def sam_env() -> dict[str, str]:
    """SAM needs a real ``python3.13`` first on PATH to build python3.13 layers (a pyenv shim won't do)."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(python313().parent), str(SAM_VENV / "bin"), env["PATH"]])
    env.setdefault("SAM_CLI_TELEMETRY", "0")
    env.setdefault("AWS_DEFAULT_REGION", env.get("AWS_REGION", "us-east-1"))
    return env


def sam(*args: str) -> None:
    command = [str(SAM_VENV / "bin" / "sam"), *args]
    say(" ".join(command[0:1] + list(args[:2])) + " ...")
    started = time.monotonic()
    subprocess.run(command, cwd=REPO, env=sam_env(), check=True)
    say(f"sam {args[0]} done in {time.monotonic() - started:.1f} s")


def sam_deploy(stack_name: str, *extra: str) -> None:
    """``sam deploy`` of ``stack_name`` without prompts (app and benchmark stacks)."""
    sam("deploy", "--stack-name", stack_name, *SAM_DEPLOY_FLAGS, *extra)


def stack_outputs(cloudformation: CloudFormationClient, stack: str) -> dict[str, str]:
    described = cloudformation.describe_stacks(StackName=stack)["Stacks"][0]
    return {o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])}


def local_endpoint() -> str | None:
    return os.environ.get("AWS_ENDPOINT_URL")


def api_base_url(outputs: dict[str, str]) -> str:
    endpoint = local_endpoint()
    if endpoint:  # LocalStack serves every REST API under one path-based URL
        return f"{endpoint.rstrip('/')}/_aws/execute-api/{outputs['ApiId']}/{outputs['ApiStage']}"
    return outputs["ApiUrl"]


#: ``CodeDeploymentType`` values (template.yaml) that shift traffic with CodeDeploy
CODE_DEPLOYMENTS = ("Canary10Percent5Minutes", "Linear10PercentEvery1Minute", "AllAtOnce")
ALIAS = "live"
AWS_TEMPLATE = REPO / "template.aws.yaml"  # next to template.yaml: its CodeUri paths are relative


#: A function URL's target in template.yaml (FunctionUrls=iam): ``TargetFunctionArn: !Ref <Function>``
URL_TARGET = re.compile(r"^(      TargetFunctionArn: !Ref )(\w+Function)$", re.MULTILINE)


def code_canary_template(source: Path = REPO / "template.yaml", target: Path = AWS_TEMPLATE) -> Path:
    """template.yaml plus ``AutoPublishAlias: live`` in ``Globals.Function``: the one line SAM cannot
    switch with a parameter (docs/ROLLOUT.md "Two levels of rollout"); written beside it, git-ignored. The
    function URLs then target each function's live alias (``!Ref <Function>.Alias``, which SAM resolves
    only when the alias exists), as the REST API's integrations and the SQS mapping do, so URL traffic is
    canaried and restored from SnapStart like the rest."""
    text = source.read_text()
    anchor = "\nGlobals:\n  Function:\n"
    if anchor not in text:
        raise SystemExit(f"{source}: no Globals.Function section to add AutoPublishAlias to")
    text = text.replace(anchor, f"{anchor}    AutoPublishAlias: {ALIAS}\n", 1)
    target.write_text(URL_TARGET.sub(r"\1\2.Alias", text))
    return target


def local_image_param(params: list[str]) -> str | None:
    """``PredictImageUri`` for the local cloud: the CPU image ``make images`` built, named by its digest
    (the executor maps the repository name to the archive and checks the digest). Unset on AWS (push the
    image to ECR and pass the parameter) and when the caller set it (``PredictImageUri=`` turns it off)."""
    if not local_endpoint() or any(p.startswith("PredictImageUri=") for p in params):
        return None
    index = IMAGES / "images.json"
    cpu = json.loads(index.read_text()).get("cpu") if index.is_file() else None
    if not cpu or not (REPO / cpu["archive"]).is_file():
        say("image function off: no CPU image (run `make images`)")
        return None
    return f"PredictImageUri=000000000000.dkr.ecr.us-east-1.amazonaws.com/topicserve-cpu@{cpu['digest']}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="sam build + sam deploy + model registration")
    parser.add_argument("--stack-name", default=os.environ.get("STACK_NAME", "topicserve"))
    parser.add_argument("--param", action="append", default=[], help="template parameter Key=Value")
    parser.add_argument("--no-promote", action="store_true", help="do not promote newly registered models")
    parser.add_argument("--skip-build", action="store_true", help="reuse .aws-sam/build")
    parser.add_argument("--output", type=Path, default=STACK_JSON, help="where to write the stack outputs")
    parser.add_argument(
        "--code-deployment",
        choices=["off", *CODE_DEPLOYMENTS],
        default="off",
        help="AWS only: publish a 'live' alias per model function and shift it with CodeDeploy",
    )
    args = parser.parse_args(argv)
    template = REPO / "template.yaml"
    snapstart = "SnapStart=PublishedVersions" in args.param
    if args.code_deployment != "off" or snapstart:
        if local_endpoint():
            what = "--code-deployment needs CodeDeploy" if not snapstart else "SnapStart needs AWS Lambda"
            print(f"{what}, which LocalStack community does not have", file=sys.stderr)
            return 2
        # both act on published versions only: deploy with the live alias
        template = code_canary_template()
        if args.code_deployment != "off":
            args.param.append(f"CodeDeploymentType={args.code_deployment}")
        say(f"{template.name} with AutoPublishAlias {ALIAS}: {' '.join(args.param)}")

    import boto3

    from topicserve.registry.manifest import load_manifest, register_manifest
    from topicserve.registry.store import Registry

    if not MANIFEST.is_file():
        print(f"{MANIFEST} is missing: run `make models` first", file=sys.stderr)
        return 1
    target = local_endpoint() or "AWS"
    say(f"deploying stack {args.stack_name!r} to {target}")
    layer = encoder_layer.build(
        MANIFEST, SERVED_ENCODER, REPO / "build" / "layers" / f"encoder-{SERVED_ENCODER}"
    )
    say(f"encoder layer: {layer.relative_to(REPO)}")
    image_param = local_image_param(args.param)
    if image_param:
        args.param.append(image_param)
        say(f"image function: {image_param}")
    if not args.skip_build:
        sam("build", "--cached", "--parallel", "--template-file", str(template))
    extra = ["--parameter-overrides", *args.param] if args.param else []
    image_uri = next((p.split("=", 1)[1] for p in args.param if p.startswith("PredictImageUri=")), "")
    if image_uri:  # sam deploy insists on a repository for every image function, even one given by URI
        extra += ["--image-repositories", f"PredictImageFunction={image_uri.split('@')[0].split(':')[0]}"]
    sam_deploy(args.stack_name, *extra)

    outputs = stack_outputs(boto3.client("cloudformation"), args.stack_name)
    registry = Registry(bucket=outputs["ArtifactsBucketName"], table=outputs["RegistryTableName"])
    before = {name: _production(registry, name) for name in MODEL_NAMES}
    say("registering models from build/models/manifest.json")
    register_manifest(registry, load_manifest(MANIFEST), root=REPO, promote_new=not args.no_promote, log=say)
    after = {name: _production(registry, name) for name in before}
    functions = [*outputs["PredictFunctionNames"].split(","), outputs["BatcherFunctionName"]]
    functions += [outputs["ImageFunctionName"]] if outputs.get("ImageFunctionName") else []
    lam = boto3.client("lambda")
    seeded = write_routing_seed(lam, functions, routing_seed(registry, load_manifest(MANIFEST)))
    stale = [f for f in functions if f not in seeded]
    if before != after and any(v is not None for v in before.values()) and stale:
        say("production versions changed: renewing the model functions' environments")
        renew_environments(lam, stale)

    apigateway = boto3.client("apigateway")
    api_key = apigateway.get_api_key(apiKey=outputs["ApiKeyId"], includeValue=True)["value"]
    stack = {
        "stack_name": args.stack_name,
        "endpoint_url": local_endpoint(),
        "region": boto3.session.Session().region_name,
        "api_url": api_base_url(outputs),
        "api_key": api_key,
        "api_key_id": outputs["ApiKeyId"],
        "queue_url": outputs["RequestsQueueUrl"],
        "dlq_url": outputs["RequestsDeadLetterQueueUrl"],
        "bucket": outputs["ArtifactsBucketName"],
        "tables": {
            "registry": outputs["RegistryTableName"],
            "cache": outputs["CacheTableName"],
            "results": outputs["ResultsTableName"],
            "rollout": outputs["RolloutTableName"],
            "monitor": outputs["MonitorTableName"],
        },
        "functions": {
            "predict": dict(zip(MODEL_NAMES, outputs["PredictFunctionNames"].split(","), strict=True)),
            "batcher": outputs["BatcherFunctionName"],
            "api": outputs["ApiFunctionName"],
            "warmer": outputs["WarmerFunctionName"],
            "gate": outputs["GateFunctionName"],
            "monitor": outputs["MonitorFunctionName"],
        },
        "function_urls": function_urls(outputs),
        "image_function": outputs.get("ImageFunctionName"),
        "bulk_queue_url": outputs.get("BulkQueueUrl"),
        "bulk_dlq_url": outputs.get("BulkDeadLetterQueueUrl"),
        "alarm_topic": outputs["AlarmTopicArn"],
        "dashboard": outputs["DashboardName"],
        "monitor_window_seconds": _parameter(args.param, "MonitorWindowSeconds", 300),
        "production_versions": after,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(stack, indent=2) + "\n")
    say(f"wrote {args.output}: API {stack['api_url']}")
    return 0


def routing_seed(registry: Registry, manifest: dict[str, Any]) -> dict[str, tuple[int, str]]:
    """Each model's production ``(version, sha256)`` where the encoder layer ships that head as a seed
    (the manifest's heads): cold starts serve it without the registry (``topicserve.rollout.seed``)."""
    shipped = {entry["sha256"] for entry in manifest.get("heads", {}).values()}
    seed = {}
    for name in MODEL_NAMES:
        try:
            record = registry.resolve(name)
        except RegistryError:
            continue
        if record.sha256 in shipped:
            seed[name] = (record.version, record.sha256)
    return seed


def write_routing_seed(
    lam: LambdaClient, functions: list[str], seed: dict[str, tuple[int, str]]
) -> list[str]:
    """Set ``ROUTING_SEED`` where it differs (a change also starts fresh environments, as a promotion
    needs); returns the functions updated."""
    value = seed_routing_env(seed)
    changed = [f for f in functions if environment(lam, f).get("ROUTING_SEED") != value]
    if changed:
        say(f"routing seed {value}: {len(changed)} function(s)")
    update_environments(lam, changed, {"ROUTING_SEED": value})
    return changed


def function_urls(outputs: dict[str, str]) -> dict[str, Any] | None:
    """The functions' own URLs (``FunctionUrls=iam``; ``topicserve --function-url`` signs requests to them):
    ``{"predict": {model: url}, "api": url}``, or None when the stack has none. Kept as the stack reports
    them: the local cloud's are ``http://<id>.lambda-url.<region>.127.0.0.1:<port>/`` (its LOCALSTACK_HOST
    after the URL id), names with no DNS, which the client reaches through ``endpoint_url`` with that
    Host header (LocalStack routes function URLs by host)."""
    if "ApiFunctionUrl" not in outputs:
        return None
    predict = outputs["PredictFunctionUrls"].split(",")
    return {"predict": dict(zip(MODEL_NAMES, predict, strict=True)), "api": outputs["ApiFunctionUrl"]}


def _parameter(params: list[str], name: str, default: int) -> int:
    """A numeric template parameter as this deploy set it (``--param Name=Value``), else its default."""
    values = dict(p.split("=", 1) for p in params)
    return int(values.get(name, default))


def _production(registry: Registry, name: str) -> int | None:
    try:
        return registry.resolve(name).version
    except RegistryError:
        return None


if __name__ == "__main__":
    raise SystemExit(main())
