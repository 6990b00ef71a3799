"""Probe handlers for the local-cloud e2e tests: they report what the execution environment looks like."""

import json
import os
import sys
import time

INIT_PID = os.getpid()
print(f"probe init in pid {INIT_PID}")  # init-phase output: must reach the logs of the first invocation


class ProbeError(Exception):
    """Raised on request, to check that the error type reaches the caller."""


def _environment() -> dict:
    return {
        "pid": os.getpid(),
        "python": f"{sys.version_info[0]}.{sys.version_info[1]}",
        "executable": sys.executable,
        "sys_path": sys.path,
        "cwd": os.getcwd(),
        "env": {
            k: v for k, v in os.environ.items() if k.startswith(("AWS_", "LAMBDA_", "_HANDLER", "PROBE_"))
        },
    }


def _imports() -> dict:
    found = {}
    for name in ("probe_layer", "boto3", "localstack", "yaml", "plux"):
        try:
            module = __import__(name)
            found[name] = getattr(module, "__file__", None) or "namespace"
        except ImportError:
            found[name] = None
    return found


def _api(event: dict) -> dict:
    body = {
        "method": event["httpMethod"],
        "path": event["path"],
        "headers": event.get("headers") or {},
        "query": event.get("queryStringParameters") or {},
        "body": event.get("body"),
    }
    return {
        "statusCode": 201,
        "headers": {"Content-Type": "application/json", "X-Probe": "yes"},
        "body": json.dumps(body),
    }


def handler(event, context):
    if "httpMethod" in event:
        return _api(event)
    action = event.get("action", "env")
    if action == "raise":
        raise ProbeError(event.get("message", "requested failure"))
    if action == "sleep":
        time.sleep(float(event["seconds"]))
    if action == "log":
        print(event["marker"])
    if action == "layer":
        import probe_layer

        return {
            "value": probe_layer.VALUE,
            "file": probe_layer.__file__,
            "imports": _imports(),
            **_environment(),
        }
    return {
        "request_id": context.aws_request_id,
        "function_name": context.function_name,
        "remaining_ms": context.get_remaining_time_in_millis(),
        **_environment(),
    }


def _table():
    import boto3

    return boto3.resource("dynamodb").Table(os.environ["PROBE_TABLE"])


def sqs_handler(event, context):
    """Fail every message whose body says so (partial batch response); record the batch in DynamoDB."""
    ok, failed, failures = [], [], []
    for record in event["Records"]:
        body = json.loads(record["body"])
        if body.get("fail"):
            failed.append(str(body["id"]))
            failures.append({"itemIdentifier": record["messageId"]})
        else:
            ok.append(str(body["id"]))
    _table().put_item(
        Item={
            "pk": f"batch#{context.aws_request_id}",
            "size": len(event["Records"]),
            "ok": ok,
            "failed": failed,
        }
    )
    return {"batchItemFailures": failures}


def scheduled_handler(event, context):
    """Record each scheduled (EventBridge) invocation."""
    _table().put_item(
        Item={
            "pk": f"schedule#{context.aws_request_id}",
            "source": event.get("source", ""),
            "detail_type": event.get("detail-type", ""),
            "at": int(time.time()),
        }
    )
    return {"ok": True}
