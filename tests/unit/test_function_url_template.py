"""The function URL front door (template.yaml: FunctionUrls, condition FunctionUrlsOn), as written and as the
real SAM transform renders it (through infra/lint_iam.py in the SAM CLI's venv, as test_code_deploy does).

Off by default (the REST API with its key is the front door); with ``iam``: one AWS_IAM URL per predict
function and for the API function, their outputs, no permission that opens a URL to anyone (AWS_IAM
alone: same-account principals whose own policy allows lambda:InvokeFunctionUrl + lambda:InvokeFunction),
no new IAM role or action; in the AWS variant with published versions, each URL on the live alias.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.security.test_security import SAM_PYTHON
from tests.unit.test_code_deploy import ALIAS, of_type, render
from tests.unit.test_gpu_worker_template import assert_lints_clean
from tests.unit.test_template import TEMPLATE, CfnLoader
from topicserve.catalogue import HEADS

REPO = Path(__file__).resolve().parents[2]
SERVED = [h.function for h in HEADS] + ["ApiFunction"]  # the functions behind the REST API


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return yaml.load(TEMPLATE.read_text(), Loader=CfnLoader)


def urls(cfn: dict[str, Any]) -> dict[str, Any]:
    return of_type(cfn, "AWS::Lambda::Url")


def test_off_by_default_and_one_iam_url_per_served_function(template: dict[str, Any]) -> None:
    param = template["Parameters"]["FunctionUrls"]
    assert param["Default"] == "none" and param["AllowedValues"] == ["none", "iam"]
    assert template["Conditions"]["FunctionUrlsOn"] == {"Equals": [{"Ref": "FunctionUrls"}, "iam"]}
    found = urls(template)
    assert {u["Properties"]["TargetFunctionArn"]["Ref"] for u in found.values()} == set(SERVED)
    for name, url in found.items():
        assert url["Condition"] == "FunctionUrlsOn", name
        assert url["Properties"] == {
            "AuthType": "AWS_IAM",
            "TargetFunctionArn": {"Ref": name.removesuffix("Url")},
        }, name
    for name, fn in of_type(template, "AWS::Serverless::Function").items():
        assert "FunctionUrlConfig" not in fn["Properties"], f"{name}: SAM's URL cannot take the condition"
    assert "FunctionUrlConfig" not in template["Globals"]["Function"]
    assert not of_type(template, "AWS::Lambda::Permission"), "a permission would open the URLs further"


def test_outputs_give_each_url(template: dict[str, Any]) -> None:
    outputs = template["Outputs"]
    predict = outputs["PredictFunctionUrls"]
    assert predict["Condition"] == "FunctionUrlsOn"
    separator, parts = predict["Value"]["Join"]
    assert separator == "," and parts == [{"GetAtt": f"{h.function}Url.FunctionUrl"} for h in HEADS]
    names = outputs["PredictFunctionNames"]["Value"]["Join"][1]
    assert [p["GetAtt"].removesuffix("Url.FunctionUrl") for p in parts] == [n["Ref"] for n in names]
    assert outputs["ApiFunctionUrl"] == {
        "Condition": "FunctionUrlsOn",
        "Description": outputs["ApiFunctionUrl"]["Description"],
        "Value": {"GetAtt": "ApiFunctionUrl.FunctionUrl"},
    }


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    if not SAM_PYTHON.exists():
        pytest.skip("the SAM CLI venv is missing: run `make localcloud`")
    from infra.deploy import code_canary_template

    tmp = tmp_path_factory.mktemp("furl")
    aws = code_canary_template(TEMPLATE, tmp / "template.aws.yaml")  # lint_iam replaces the code paths
    cfn = {}
    for mode, args in {
        "off": [],
        "iam": ["--param", "FunctionUrls=iam"],
        "iam-alias": ["--template", str(aws), "--param", "FunctionUrls=iam"],
    }.items():
        out, output = render(tmp_path_factory.mktemp(mode), *args)
        assert out is not None, output[-4000:]
        assert "0 least-privilege violations" in output, output[-3000:]
        cfn[mode] = out
    return cfn


def test_the_transform_adds_urls_and_nothing_else(rendered: dict[str, dict[str, Any]]) -> None:
    """Same roles and permissions as the default stack: the URLs add no IAM and open nothing."""
    off, on = rendered["off"], rendered["iam"]
    assert set(urls(on)) == {f"{f}Url" for f in SERVED}
    assert of_type(on, "AWS::IAM::Role") == of_type(off, "AWS::IAM::Role")
    permissions = of_type(on, "AWS::Lambda::Permission")
    assert permissions == of_type(off, "AWS::Lambda::Permission")
    for name, permission in permissions.items():
        props = permission["Properties"]
        assert props["Action"] == "lambda:InvokeFunction" and "FunctionUrlAuthType" not in props, name
        assert props["Principal"] != "*", name


def test_published_versions_put_each_url_on_the_live_alias(rendered: dict[str, dict[str, Any]]) -> None:
    """infra.deploy's AWS variant (AutoPublishAlias: canaries, SnapStart): URL traffic goes where the REST
    API's and the SQS mapping's go, the alias, not the unpublished $LATEST."""
    on = rendered["iam-alias"]
    for name, url in urls(on).items():
        function = name.removesuffix("Url")
        assert url["Properties"]["TargetFunctionArn"] == {"Ref": f"{function}Alias{ALIAS}"}, name
        assert of_type(on, "AWS::Lambda::Alias")[f"{function}Alias{ALIAS}"]


def test_with_urls_on_the_template_lints_clean(tmp_path: Path) -> None:
    """cfn-lint and sam validate --lint on the template with FunctionUrls' default switched to iam, as
    `make lint` runs them on the template as it is."""
    if not SAM_PYTHON.exists():
        pytest.skip("the SAM CLI venv is missing: run `make localcloud`")
    text = TEMPLATE.read_text()
    head = "  FunctionUrls:\n    Type: String\n    Default: none\n"
    assert head in text
    switched = tmp_path / "template.yaml"
    switched.write_text(text.replace(head, "  FunctionUrls:\n    Type: String\n    Default: iam\n", 1))
    assert_lints_clean(switched)
