"""The GPU worker's AWS form (template.yaml, condition GpuWorkerOn), rendered with GpuWorker=true through
the real SAM transform and linted as CloudFormation would see it with the condition on.

Off (the default, the local stack) none of it exists; on: an ECS cluster on GPU EC2 capacity (capacity
provider over an auto scaling group from the ECS GPU-optimised AMI), a task definition asking for a GPU, a
service scaled by target tracking on the bulk queue's visible messages per running task, down to zero,
and least-privilege roles (tests/security and infra/lint_iam.py review them like the functions' roles).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.security.test_security import SAM_PYTHON
from tests.unit.test_code_deploy import of_type, render

REPO = Path(__file__).resolve().parents[2]
ON = {
    "GpuWorker": "true",
    "GpuWorkerImageUri": "123456789012.dkr.ecr.us-east-1.amazonaws.com/w:gpu",
    "GpuSubnetIds": "subnet-0a1b2c3d,subnet-4e5f6a7b",
}


@pytest.fixture(scope="module")
def on(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str, Path]:
    if not SAM_PYTHON.exists():
        pytest.skip("the SAM CLI venv is missing: run `make localcloud`")
    tmp = tmp_path_factory.mktemp("gpu")
    cfn, output = render(tmp, *[a for k, v in ON.items() for a in ("--param", f"{k}={v}")])
    assert cfn is not None, output[-4000:]
    for name, value in ON.items():  # what CloudFormation would resolve: the condition on
        cfn["Parameters"][name]["Default"] = value
    path = tmp / "gpu-on.cfn.json"
    path.write_text(json.dumps(cfn))
    return cfn, output, path


def test_gpu_worker_is_off_by_default() -> None:
    import yaml

    from tests.unit.test_template import TEMPLATE, CfnLoader

    template = yaml.load(TEMPLATE.read_text(), Loader=CfnLoader)
    assert template["Parameters"]["GpuWorker"]["Default"] == "false"
    gpu = {k for k, v in template["Resources"].items() if v.get("Condition") == "GpuWorkerOn"}
    assert {"GpuCluster", "WorkerTaskDefinition", "WorkerService", "WorkerBacklogScaling"} <= gpu
    bulk = {k for k, v in template["Resources"].items() if v.get("Condition") == "BulkQueueOn"}
    assert bulk == {"BulkQueue", "BulkDeadLetterQueue"}  # GpuWorker implies them (BulkQueueOn's Or)
    kinds = {template["Resources"][k]["Type"] for k in gpu}
    assert {
        t for t in (v["Type"] for v in template["Resources"].values()) if t.startswith("AWS::ECS")
    } <= kinds


def test_rendered_with_the_worker_on_lints_clean(
    on: tuple[dict[str, Any], str, Path], tmp_path: Path
) -> None:
    """IAM (the transform's roles, lint_iam) and both linters on the template with the worker's defaults
    switched on, as `make lint` runs them on the template as it is."""
    _, output, _ = on
    assert "0 least-privilege violations" in output, output[-3000:]
    text = (REPO / "template.yaml").read_text()
    for name, value in ON.items():
        head = f"  {name}:\n"
        start = text.index(head)
        default = text.index("    Default:", start)
        line_end = text.index("\n", default)
        text = text[:default] + f'    Default: "{value}"' + text[line_end:]
    switched = tmp_path / "template.yaml"
    switched.write_text(text)
    assert_lints_clean(switched)


def assert_lints_clean(template: Path) -> None:
    """cfn-lint and `sam validate --lint` pass on ``template`` (as `make lint` runs them)."""
    for command in (
        [str(Path(sys.executable).parent / "cfn-lint"), str(template)],
        [str(SAM_PYTHON.parent / "sam"), "validate", "--lint", "--template", str(template)],
    ):
        proc = subprocess.run(
            command,
            cwd=REPO,
            capture_output=True,
            text=True,
            check=False,
            env={**os.environ, "AWS_DEFAULT_REGION": "us-east-1", "SAM_CLI_TELEMETRY": "0"},
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr


def test_gpu_task_capacity_and_backlog_scaling(on: tuple[dict[str, Any], str, Path]) -> None:
    cfn, _, _ = on
    (task,) = of_type(cfn, "AWS::ECS::TaskDefinition").values()
    (container,) = task["Properties"]["ContainerDefinitions"]
    assert {"Type": "GPU", "Value": "1"} in container["ResourceRequirements"]
    assert container["StopTimeout"] >= 60, "SIGTERM must leave time to answer the batch in hand"
    (provider,) = of_type(cfn, "AWS::ECS::CapacityProvider").values()
    assert provider["Properties"]["AutoScalingGroupProvider"]["ManagedTerminationProtection"] == "ENABLED"
    image = cfn["Resources"]["GpuLaunchTemplate"]["Properties"]["LaunchTemplateData"]["ImageId"]["Fn::If"][2]
    assert "/aws/service/ecs/optimized-ami/amazon-linux-2/gpu/" in image
    (target,) = of_type(cfn, "AWS::ApplicationAutoScaling::ScalableTarget").values()
    assert target["Properties"]["MinCapacity"] == 0
    (policy,) = of_type(cfn, "AWS::ApplicationAutoScaling::ScalingPolicy").values()
    metrics = policy["Properties"]["TargetTrackingScalingPolicyConfiguration"][
        "CustomizedMetricSpecification"
    ]
    by_id = {m["Id"]: m for m in metrics["Metrics"]}
    assert by_id["visible"]["MetricStat"]["Metric"]["MetricName"] == "ApproximateNumberOfMessagesVisible"
    assert by_id["tasks"]["MetricStat"]["Metric"]["MetricName"] == "RunningTaskCount"
    assert by_id["backlog_per_task"]["Expression"] == "visible / MAX([tasks, 1])"
    assert [m["Id"] for m in metrics["Metrics"] if m.get("ReturnData", True)] == ["backlog_per_task"]
