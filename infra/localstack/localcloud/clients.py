"""How clients reach the local cloud: endpoint, region, dummy credentials, and boto3 clients bound to them.

The same SAM / boto3 / AWS CLI commands as for AWS, pointed at LocalStack. boto3 is imported only when a
client is made, so this module stays importable by plain python3 like the rest of the package.
"""

from __future__ import annotations

from typing import Any

from infra.localstack.localcloud.settings import HOST, PORT

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


def _target() -> dict[str, str]:
    return {
        "endpoint_url": ENDPOINT,
        "region_name": REGION,
        "aws_access_key_id": CREDENTIALS["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    }


def client(service: str, **config: Any) -> Any:
    """A boto3 client of the local cloud; ``config``: botocore ``Config`` options (none: boto3's defaults)."""
    import boto3
    from botocore.config import Config

    return boto3.client(service, config=Config(**config) if config else None, **_target())


def resource(service: str) -> Any:
    """A boto3 resource (e.g. a DynamoDB Table) of the local cloud."""
    import boto3

    return boto3.resource(service, **_target())
