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

import threading
from typing import Any, TypeAlias

AwsClient: TypeAlias = Any


_session_lock = threading.Lock()
_session: Any = None


def _botocore_session() -> Any:
    """One botocore session per process (it caches the endpoint and service model data its clients
    share); creating clients from it is serialised because botocore sessions are not thread-safe."""
    global _session
    import botocore.session

    if _session is None:
        _session = botocore.session.get_session()
    return _session


def aws_client(service: str, *, serving: bool = True) -> AwsClient:
    """A client. For serving (the default), a plain botocore client with short timeouts: a backend outage
    must cost a request milliseconds, not the default 60 s read timeout, so the degraded path (serve
    without the cache) stays fast; and plain botocore because importing boto3 also imports s3transfer,
    ~80 ms of every cold start (measured with ``-X importtime``) for transfer helpers serving never uses
    (the registry downloads with ``get_object``). Tooling (deploy, registry CLI: ``serving=False``) keeps
    boto3 with its patient defaults and managed multipart uploads of large artifacts. Imported here,
    lazily: the pure parts of the library must not need an AWS SDK."""
    from botocore.config import Config

    if not serving:
        import boto3

        return boto3.client(service)
    config = Config(connect_timeout=2, read_timeout=5, retries={"max_attempts": 2, "mode": "standard"})
    with _session_lock:
        return _botocore_session().create_client(service, config=config)


class LazyClient:
    """A serving client made at its first call. The registry's S3 client serves only head downloads, which
    a cold start with the deploy's seed heads never makes: building it (botocore loads S3's service model,
    the largest it has) would be init time spent for nothing."""

    def __init__(self, service: str) -> None:
        self._service = service
        self._client: AwsClient = None
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = aws_client(self._service)
        return getattr(self._client, name)
