"""Structural rules of template.yaml that the linters cannot know about."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from topicserve.catalogue import HEADS, MODEL_NAMES

TEMPLATE = Path(__file__).resolve().parents[2] / "template.yaml"


class CfnLoader(yaml.SafeLoader):
    """Reads CloudFormation short-form tags (!Ref, !GetAtt, ...) as {"Tag": value}."""


def _tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {suffix: value}


CfnLoader.add_multi_constructor("!", _tag)


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return yaml.load(TEMPLATE.read_text(), Loader=CfnLoader)


def resources(template: dict[str, Any], kind: str) -> dict[str, Any]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == kind}


def test_one_python_runtime_on_x86(template: dict[str, Any]) -> None:
    """Every zip function on python3.13 (per function: an image function may not name a runtime, not even
    one inherited from Globals), all on x86_64."""
    glob = template["Globals"]["Function"]
    assert "Runtime" not in glob and glob["Architectures"] == ["x86_64"]
    for name, fn in resources(template, "AWS::Serverless::Function").items():
        props = fn["Properties"]
        if props.get("PackageType") == "Image":
            assert not {"Runtime", "Handler", "Layers", "CodeUri"} & set(props), name
        else:
            assert props["Runtime"] == "python3.13" and props["Handler"] == "app.handler", name


def test_the_template_serves_the_catalogue(template: dict[str, Any]) -> None:
    """One predict function per head of topicserve.catalogue, under the logical id it names; the batcher
    and the API serve the whole catalogue; the warmer and the outputs name every predict function."""
    fns = resources(template, "AWS::Serverless::Function")
    predict = {
        name: fn["Properties"]["Environment"]["Variables"]["MODEL_NAMES"]
        for name, fn in fns.items()
        if fn["Properties"].get("CodeUri") == "functions/predict/"
    }
    assert predict == {h.function: h.name for h in HEADS}
    for name in ("BatcherFunction", "ApiFunction"):
        assert fns[name]["Properties"]["Environment"]["Variables"]["MODEL_NAMES"] == ",".join(MODEL_NAMES)
    text = TEMPLATE.read_text()
    for head in HEADS:
        assert text.count(f"!Ref {head.function}") >= 3, head  # warmer targets, invoke policy, outputs


def test_queue_visibility_is_at_least_six_function_timeouts(template: dict[str, Any]) -> None:
    params = template["Parameters"]
    assert params["QueueVisibilityTimeout"]["Default"] >= 6 * params["BatcherTimeout"]["Default"]
    queue = template["Resources"]["RequestsQueue"]["Properties"]
    assert queue["VisibilityTimeout"] == {"Ref": "QueueVisibilityTimeout"}
    assert "deadLetterTargetArn" in queue["RedrivePolicy"]


def test_batcher_reports_item_failures_with_a_window(template: dict[str, Any]) -> None:
    event = template["Resources"]["BatcherFunction"]["Properties"]["Events"]["Requests"]
    assert event["Type"] == "SQS"
    assert event["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    params = template["Parameters"]
    # a batch size above 10 needs a batching window of at least 1 s
    assert params["BatchSize"]["Default"] <= 10 or params["BatchingWindowSeconds"]["Default"] >= 1


def test_rest_api_with_key_and_schedule_warmers(template: dict[str, Any]) -> None:
    assert not resources(template, "AWS::Serverless::HttpApi"), "HTTP APIs do not run in LocalStack community"
    api = template["Resources"]["TopicApi"]["Properties"]
    assert api["Auth"]["ApiKeyRequired"] is True and api["Auth"]["UsagePlan"]["Throttle"]
    warm = template["Resources"]["WarmerFunction"]["Properties"]["Events"]["Warm"]
    assert warm["Type"] == "Schedule"  # not ScheduleV2: EventBridge Scheduler never fires in LocalStack


def test_schedules_can_really_be_switched_off(template: dict[str, Any]) -> None:
    """SAM turns ``Enabled: !If [...]`` into ``State: ENABLED`` whatever the condition (an intrinsic is a
    truthy dict), which left the warmer and the gate running on stacks deployed with them off; ``State``
    with ``Fn::If`` passes through to CloudFormation."""
    schedules = {
        name: event["Properties"]
        for name, fn in resources(template, "AWS::Serverless::Function").items()
        for event in fn["Properties"].get("Events", {}).values()
        if event["Type"] == "Schedule"
    }
    assert set(schedules) == {"WarmerFunction", "GateFunction", "MonitorFunction"}
    for name, props in schedules.items():
        assert "Enabled" not in props, f"{name}: use State, not Enabled"
        assert props["State"]["If"][1:] == ["ENABLED", "DISABLED"], name


def test_caches_have_ttl(template: dict[str, Any]) -> None:
    for name in ("CacheTable", "ResultsTable"):
        ttl = template["Resources"][name]["Properties"]["TimeToLiveSpecification"]
        assert ttl == {"AttributeName": "ttl", "Enabled": True}


def test_idempotency_records_are_the_api_functions_alone(template: dict[str, Any]) -> None:
    """Powertools' layout (partition key ``id``, TTL ``expiration``); only the API function is told the table,
    and its one statement on it allows exactly what Powertools does there, on that table only."""
    table = template["Resources"]["IdempotencyTable"]["Properties"]
    assert table["KeySchema"] == [{"AttributeName": "id", "KeyType": "HASH"}]
    assert table["BillingMode"] == "PAY_PER_REQUEST"
    assert table["TimeToLiveSpecification"] == {"AttributeName": "expiration", "Enabled": True}
    assert template["Parameters"]["IdempotencyWindowSeconds"]["Default"] == 3600
    told = {
        name
        for name, fn in resources(template, "AWS::Serverless::Function").items()
        if "IDEMPOTENCY_TABLE" in fn["Properties"].get("Environment", {}).get("Variables", {})
    }
    assert told == {"ApiFunction"}
    assert "IDEMPOTENCY_TABLE" not in template["Globals"]["Function"]["Environment"]["Variables"]
    api = template["Resources"]["ApiFunction"]["Properties"]
    variables = api["Environment"]["Variables"]
    assert variables["IDEMPOTENCY_TABLE"] == {"Ref": "IdempotencyTable"}
    assert variables["IDEMPOTENCY_WINDOW_SECONDS"] == {"Ref": "IdempotencyWindowSeconds"}
    on_table = [
        statement
        for policy in api["Policies"]
        if isinstance(policy, dict) and "Statement" in policy
        for statement in policy["Statement"]
        if "IdempotencyTable" in str(statement["Resource"])
    ]
    assert on_table == [
        {
            "Sid": "IdempotencyRecords",
            "Effect": "Allow",
            "Action": ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"],
            "Resource": {"GetAtt": "IdempotencyTable.Arn"},
        }
    ]
    assert "IdempotencyTable" not in str(
        {k: v for k, v in template["Resources"].items() if k not in ("ApiFunction", "IdempotencyTable")}
    )
