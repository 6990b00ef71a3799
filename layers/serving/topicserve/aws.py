"""boto3 clients: the one factory (:func:`aws_client`) and their static type (:data:`AwsClient`).

boto3 builds its clients at run time from service models and ships no type information, and its stubs
(boto3-stubs) are not a dependency of the layer or the development environment. So every boto3 client
(DynamoDB, S3, SQS, Lambda), whether made by :func:`aws_client` or passed in by a
caller (the tests pass moto clients or in-memory fakes with the same methods), is annotated ``AwsClient``,
an alias of ``Any``: what comes back from a call is checked by the code that reads it, not by mypy.
To have mypy check the calls, point this alias (or one per service) at the boto3-stubs client classes,
e.g. ``mypy_boto3_dynamodb.DynamoDBClient``.
"""

from __future__ import annotations

from typing import Any, TypeAlias

AwsClient: TypeAlias = Any


def aws_client(service: str, *, serving: bool = True) -> AwsClient:
    """A boto3 client. For serving (the default), short timeouts: a backend outage must cost a request
    milliseconds, not the default 60 s read timeout, so the degraded path (serve without the cache) stays
    fast. Tooling (deploy, registry CLI: ``serving=False``) keeps boto3's patient defaults, since it uploads
    large artifacts. boto3 is imported here, lazily: the pure parts of the library must not need it."""
    import boto3
    from botocore.config import Config

    if not serving:
        return boto3.client(service)
    config = Config(connect_timeout=2, read_timeout=5, retries={"max_attempts": 2, "mode": "standard"})
    return boto3.client(service, config=config)
