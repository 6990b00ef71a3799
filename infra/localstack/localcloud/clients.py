"""How clients reach the local cloud: endpoint, region, dummy credentials, and boto3 clients bound to them.

The same SAM / boto3 / AWS CLI commands as for AWS, pointed at LocalStack. boto3 is imported only when a
client is made, so this module stays importable by plain python3 like the rest of the package.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, TypeAlias, overload

from infra.localstack.localcloud.settings import HOST, PORT

if TYPE_CHECKING:  # the boto3 stubs: development environment only
    from mypy_boto3_apigateway import APIGatewayClient
    from mypy_boto3_cloudformation import CloudFormationClient
    from mypy_boto3_cloudwatch import CloudWatchClient
    from mypy_boto3_dynamodb import DynamoDBClient, DynamoDBServiceResource
    from mypy_boto3_lambda import LambdaClient
    from mypy_boto3_logs import CloudWatchLogsClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient

#: the services the repository's code calls (each has its mypy-boto3 stubs in requirements-dev.txt)
Service: TypeAlias = Literal[
    "apigateway", "cloudformation", "cloudwatch", "dynamodb", "lambda", "logs", "s3", "sqs"
]

ENDPOINT = f"http://{HOST}:{PORT}"
REGION = "us-east-1"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}  # LocalStack takes any


def aws_env() -> dict[str, str]:
    """Variables that point AWS SDKs and CLIs (boto3, SAM) at the local cloud."""
    return {
        "AWS_ENDPOINT_URL": ENDPOINT,
        **CREDENTIALS,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "SAM_CLI_TELEMETRY": "0",
    }


@overload
def client(service: Literal["apigateway"], **config: Any) -> APIGatewayClient: ...
@overload
def client(service: Literal["cloudformation"], **config: Any) -> CloudFormationClient: ...
@overload
def client(service: Literal["cloudwatch"], **config: Any) -> CloudWatchClient: ...
@overload
def client(service: Literal["dynamodb"], **config: Any) -> DynamoDBClient: ...
@overload
def client(service: Literal["lambda"], **config: Any) -> LambdaClient: ...
@overload
def client(service: Literal["logs"], **config: Any) -> CloudWatchLogsClient: ...
@overload
def client(service: Literal["s3"], **config: Any) -> S3Client: ...
@overload
def client(service: Literal["sqs"], **config: Any) -> SQSClient: ...
def client(
    service: Service, **config: Any
) -> (
    APIGatewayClient
    | CloudFormationClient
    | CloudWatchClient
    | DynamoDBClient
    | LambdaClient
    | CloudWatchLogsClient
    | S3Client
    | SQSClient
):
    """A boto3 client of the local cloud; ``config``: botocore ``Config`` options (none: boto3's defaults)."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        service,
        config=Config(**config) if config else None,
        endpoint_url=ENDPOINT,
        region_name=REGION,
        aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )


def resource(service: Literal["dynamodb"]) -> DynamoDBServiceResource:
    """A boto3 resource (a DynamoDB Table) of the local cloud."""
    import boto3

    return boto3.resource(
        service,
        endpoint_url=ENDPOINT,
        region_name=REGION,
        aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )
