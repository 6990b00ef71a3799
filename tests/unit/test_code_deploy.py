"""Function code canaries (template.yaml: CodeDeploymentType, Globals.Function.DeploymentPreference), checked
on what the real SAM transform makes of the template.

The transform runs through infra/lint_iam.py in the SAM CLI's venv (.localcloud/sam-venv, the translator
CloudFormation itself runs), as tests/security does: samtranslator is not in the test venv.

* off (the default, ``make deploy`` into LocalStack, which has no CodeDeploy): no alias, no version, no
  CodeDeploy resource, traffic on the functions themselves, as before; the alarms exist only under a false
  condition;
* on (the AWS variant: AutoPublishAlias added, since SAM cannot switch it with a parameter, plus a type):
  a ``live`` alias with a CodeDeploy deployment group for each model function and the batcher, API and SQS
  traffic on the alias, the alias error alarms as rollback triggers, and no new IAM permission.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra import lint_iam
from tests.security.test_security import SAM_PYTHON, run
from tests.unit.test_template import TEMPLATE, CfnLoader
from topicserve.catalogue import HEADS

#: the name docs/ROLLOUT.md "Two levels of rollout" tells the AWS deploy to add; the alarms' Resource
#: dimension names it
ALIAS = "live"
CANARY = "Canary10Percent5Minutes"
CANARIED = [h.function for h in HEADS] + ["BatcherFunction"]
CODEDEPLOY_TYPES = ("AWS::CodeDeploy::Application", "AWS::CodeDeploy::DeploymentGroup")
INVOKED = re.compile(r"\$\{(\w+?)(?:\.Arn)?\}/invocations")


def render(tmp: Path, *args: str) -> tuple[dict[str, Any] | None, str]:
    """(CloudFormation, output) of the transform; None when it failed. lint_iam's exit status is not
    looked at here: its least-privilege verdict is tests/security's business (compared below)."""
    out = tmp / "template.cfn.json"
    proc = run(SAM_PYTHON, "infra/lint_iam.py", "--out", out, *args)
    return (json.loads(out.read_text()) if out.exists() else None), proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    if not SAM_PYTHON.exists():
        pytest.skip("the SAM CLI venv is missing: run `make localcloud`")
    cfn = {}
    for mode, args in {
        "off": (),
        "on": ("--auto-publish-alias", ALIAS, "--param", f"CodeDeploymentType={CANARY}"),
    }.items():
        template, output = render(tmp_path_factory.mktemp(mode), *args)
        assert template is not None, output[-4000:]
        cfn[mode] = template
    return cfn


def of_type(cfn: dict[str, Any], *kinds: str) -> dict[str, Any]:
    return {k: v for k, v in cfn["Resources"].items() if v["Type"] in kinds}


def invoked(cfn: dict[str, Any]) -> set[str]:
    """Logical ids the REST API's integrations invoke (a function, or a SAM alias when there is one)."""
    paths = cfn["Resources"]["TopicApi"]["Properties"]["Body"]["paths"]
    return {
        target
        for methods in paths.values()
        for method in methods.values()
        for target in INVOKED.findall(method["x-amazon-apigateway-integration"]["uri"]["Fn::Sub"])
    }


def sqs_target(cfn: dict[str, Any]) -> Any:
    (mapping,) = of_type(cfn, "AWS::Lambda::EventSourceMapping").values()
    return mapping["Properties"]["FunctionName"]


def alias_alarms(cfn: dict[str, Any]) -> dict[str, Any]:
    """The code-canary alarms (the monitoring alarms are not about aliases)."""
    return {k: v for k, v in of_type(cfn, "AWS::CloudWatch::Alarm").items() if k.endswith("AliasErrorsAlarm")}


def alarm_of(cfn: dict[str, Any], function: str) -> tuple[str, dict[str, Any]]:
    found = [
        (name, alarm)
        for name, alarm in alias_alarms(cfn).items()
        if {"Name": "FunctionName", "Value": {"Ref": function}} in alarm["Properties"]["Dimensions"]
    ]
    assert len(found) == 1, f"{function}: {len(found)} alias error alarms"
    return found[0]


def test_types_switch_deployment_preference_and_default_is_off() -> None:
    """One parameter: its values are the mapping's keys, "off" (the default) disables the preference."""
    template = yaml.load(TEMPLATE.read_text(), Loader=CfnLoader)
    param = template["Parameters"]["CodeDeploymentType"]
    mapping = template["Mappings"]["CodeDeployment"]
    assert param["Default"] == "off" and set(param["AllowedValues"]) == set(mapping)
    assert {k: v["Enabled"] for k, v in mapping.items()} == {k: str(k != "off").lower() for k in mapping}
    assert template["Conditions"]["CodeDeployOn"] == {
        "Not": [{"Equals": [{"Ref": "CodeDeploymentType"}, "off"]}]
    }
    assert "AutoPublishAlias" not in template["Globals"]["Function"], (
        "an alias here is permanent, LocalStack too"
    )


def test_off_deploys_as_before(rendered: dict[str, dict[str, Any]]) -> None:
    off = rendered["off"]
    assert not of_type(off, "AWS::Lambda::Alias", "AWS::Lambda::Version", *CODEDEPLOY_TYPES)
    assert lint_iam.CODEDEPLOY_ROLE not in off["Resources"]
    assert invoked(off) >= {h.function for h in HEADS} and not any("Alias" in t for t in invoked(off))
    assert sqs_target(off) == {"Ref": "BatcherFunction"}
    alarms = alias_alarms(off)
    assert alarms and all(a["Condition"] == "CodeDeployOn" for a in alarms.values())


def test_on_gives_each_model_function_and_the_batcher_a_canaried_live_alias(
    rendered: dict[str, dict[str, Any]],
) -> None:
    on = rendered["on"]
    resources = on["Resources"]
    assert "ServerlessDeploymentApplication" in resources and lint_iam.CODEDEPLOY_ROLE in resources
    assert set(of_type(on, "AWS::CodeDeploy::DeploymentGroup")) == {f"{f}DeploymentGroup" for f in CANARIED}
    for function in CANARIED:
        alias = resources[f"{function}Alias{ALIAS}"]
        assert alias["Properties"]["Name"] == ALIAS
        assert alias["UpdatePolicy"]["CodeDeployLambdaAliasUpdate"]["DeploymentGroupName"] == {
            "Ref": f"{function}DeploymentGroup"
        }
        group = resources[f"{function}DeploymentGroup"]["Properties"]
        assert group["DeploymentConfigName"]["Fn::Sub"][1] == {"ConfigName": CANARY}
        assert "DEPLOYMENT_STOP_ON_ALARM" in group["AutoRollbackConfiguration"]["Events"]
        condition, watching, _ = group["AlarmConfiguration"]["Fn::If"]
        name, alarm = alarm_of(on, function)
        assert condition == "CodeDeployOn" and {"Name": {"Ref": name}} in watching["Alarms"]
        props = alarm["Properties"]
        assert alarm["Condition"] == "CodeDeployOn"
        assert (props["Namespace"], props["MetricName"]) == ("AWS/Lambda", "Errors")
        assert {"Name": "Resource", "Value": {"Fn::Sub": f"${{{function}}}:{ALIAS}"}} in props["Dimensions"]
    others = set(of_type(on, "AWS::Lambda::Function")) - set(CANARIED)
    assert others >= {"ApiFunction", "WarmerFunction"}
    for function in others:  # opted out: an alias from Globals, shifted at once
        assert f"{function}DeploymentGroup" not in resources
        assert "UpdatePolicy" not in resources[f"{function}Alias{ALIAS}"]


def test_on_sends_api_and_sqs_traffic_to_the_alias(rendered: dict[str, dict[str, Any]]) -> None:
    on = rendered["on"]
    assert invoked(on) >= {f"{h.function}Alias{ALIAS}" for h in HEADS}
    assert not invoked(on) & set(CANARIED), "an integration still invokes a function's unpublished version"
    assert sqs_target(on) == {"Ref": f"BatcherFunctionAlias{ALIAS}"}


def test_on_adds_no_permission(rendered: dict[str, dict[str, Any]]) -> None:
    """The CodeDeploy service role carries only AWS's managed policy for Lambda deployments; the functions'
    roles are those of the default stack (whose own review is tests/security's)."""
    on, off = rendered["on"], rendered["off"]
    roles = of_type(on, "AWS::IAM::Role")
    assert {k: v for k, v in roles.items() if k != lint_iam.CODEDEPLOY_ROLE} == of_type(off, "AWS::IAM::Role")
    problems = lint_iam.violations(on)
    assert not [p for p in problems if p.startswith(lint_iam.CODEDEPLOY_ROLE)], problems
    assert any(p.startswith("roles ") for p in problems) == any(
        p.startswith("roles ") for p in lint_iam.violations(off)
    ), "the CodeDeploy service role is not in lint_iam's reviewed set"
    role = roles[lint_iam.CODEDEPLOY_ROLE]["Properties"]
    assert role["ManagedPolicyArns"] == [lint_iam.CODEDEPLOY_FOR_LAMBDA] and "Policies" not in role


def test_a_type_without_the_alias_fails_the_transform(tmp_path: Path) -> None:
    """Turning canaries on with the parameter alone must fail loudly, not deploy without them."""
    if not SAM_PYTHON.exists():
        pytest.skip("the SAM CLI venv is missing: run `make localcloud`")
    template, output = render(tmp_path, "--param", f"CodeDeploymentType={CANARY}")
    assert template is None and "requires AutoPublishAlias" in output, output[-2000:]


def test_deploy_writes_the_aws_variant_with_the_one_line(tmp_path: Path) -> None:
    """`infra/deploy.py --code-deployment TYPE` builds template.aws.yaml: template.yaml plus the alias, and
    the function URLs (FunctionUrls=iam) on it (``!Ref <Function>.Alias``, which needs the alias)."""
    from infra.deploy import code_canary_template

    target = code_canary_template(TEMPLATE, tmp_path / "template.aws.yaml")
    aws = yaml.load(target.read_text(), Loader=CfnLoader)
    base = yaml.load(TEMPLATE.read_text(), Loader=CfnLoader)
    assert aws["Globals"]["Function"].pop("AutoPublishAlias") == ALIAS
    urls = [k for k, v in base["Resources"].items() if v["Type"] == "AWS::Lambda::Url"]
    assert urls
    for name in urls:
        props = aws["Resources"][name]["Properties"]
        function = base["Resources"][name]["Properties"]["TargetFunctionArn"]["Ref"]
        assert props["TargetFunctionArn"] == {"Ref": f"{function}.Alias"}, name
        props["TargetFunctionArn"] = {"Ref": function}
    assert aws == base


def test_snapstart_is_one_parameter_for_every_zip_function(rendered: dict[str, dict[str, Any]]) -> None:
    """SnapStart (None / PublishedVersions) reaches every zip function, whose published versions the alias
    sends traffic to; never the image function, which SnapStart does not take."""
    for mode in ("off", "on"):
        for name, fn in of_type(rendered[mode], "AWS::Lambda::Function").items():
            image = fn["Properties"].get("PackageType") == "Image"
            expected = "None" if image else {"Ref": "SnapStart"}
            assert fn["Properties"]["SnapStart"] == {"ApplyOn": expected}, (mode, name)


def test_snapstart_is_refused_against_the_local_cloud(monkeypatch: pytest.MonkeyPatch) -> None:
    from infra.deploy import main

    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:4566")
    assert main(["--param", "SnapStart=PublishedVersions"]) == 2
