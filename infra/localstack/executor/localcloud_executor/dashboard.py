"""``AWS::CloudWatch::Dashboard`` for LocalStack community's CloudFormation, which has the CloudWatch
dashboard API (PutDashboard / GetDashboard / DeleteDashboards) but no resource provider for it: without
this, the template's dashboard is skipped as an unsupported resource and its ``Ref`` reads "unknown".

A plain resource provider over the API, as LocalStack's own providers are written (registered through
this package's ``localstack.cloudformation.resource_providers`` entry point).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import localstack.services.cloudformation.provider_utils as util
from localstack.services.cloudformation.resource_provider import (
    CloudFormationResourceProviderPlugin,
    OperationStatus,
    ProgressEvent,
    ResourceProvider,
    ResourceRequest,
)

Properties = dict[str, Any]


class CloudWatchDashboardProvider(ResourceProvider[Properties]):
    TYPE = "AWS::CloudWatch::Dashboard"
    SCHEMA = util.get_schema_path(Path(__file__))

    def create(self, request: ResourceRequest[Properties]) -> ProgressEvent[Properties]:
        model = request.desired_state
        if not model.get("DashboardName"):
            model["DashboardName"] = util.generate_default_name(
                stack_name=request.stack_name, logical_resource_id=request.logical_resource_id
            )
        request.aws_client_factory.cloudwatch.put_dashboard(
            DashboardName=model["DashboardName"], DashboardBody=model["DashboardBody"]
        )
        return ProgressEvent(status=OperationStatus.SUCCESS, resource_model=model)

    def update(self, request: ResourceRequest[Properties]) -> ProgressEvent[Properties]:
        model = request.desired_state
        model["DashboardName"] = model.get("DashboardName") or request.previous_state["DashboardName"]
        request.aws_client_factory.cloudwatch.put_dashboard(
            DashboardName=model["DashboardName"], DashboardBody=model["DashboardBody"]
        )
        return ProgressEvent(status=OperationStatus.SUCCESS, resource_model=model)

    def delete(self, request: ResourceRequest[Properties]) -> ProgressEvent[Properties]:
        model = request.desired_state
        request.aws_client_factory.cloudwatch.delete_dashboards(DashboardNames=[model["DashboardName"]])
        return ProgressEvent(status=OperationStatus.SUCCESS, resource_model=model)

    def read(self, request: ResourceRequest[Properties]) -> ProgressEvent[Properties]:
        raise NotImplementedError


class CloudWatchDashboardProviderPlugin(CloudFormationResourceProviderPlugin):
    name = "AWS::CloudWatch::Dashboard"

    def __init__(self) -> None:
        self.factory: type[ResourceProvider[Properties]] | None = None

    def load(self) -> None:
        self.factory = CloudWatchDashboardProvider
