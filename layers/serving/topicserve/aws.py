"""boto3 clients: the one factory (:func:`aws_client`) and their static types.

boto3 builds its clients at run time from service models and ships no type information; its stubs
(``boto3-stubs``, ``mypy-boto3-<service>``) are installed in the development environment only, never in
the layer. So the per-service client types (:data:`DynamoDBClient`, :data:`S3Client`, :data:`SQSClient`,
:data:`LambdaClient`) are imported for the type checker alone (``if TYPE_CHECKING:``, annotations are
strings at run time), and :func:`aws_client` returns each service's type to mypy. :data:`AwsClient`, an
alias of ``Any``, remains for a client whose service is not a literal, and for parameters that accept the
tests' moto clients and in-memory fakes as well.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Literal, TypeAlias, overload

if TYPE_CHECKING:  # development environment only: the stubs are not in the layer
    from mypy_boto3_dynamodb import DynamoDBClient as DynamoDBClient
    from mypy_boto3_lambda import LambdaClient as LambdaClient
    from mypy_boto3_s3 import S3Client as S3Client
    from mypy_boto3_sqs import SQSClient as SQSClient

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


@overload
def aws_client(service: Literal["dynamodb"], *, serving: bool = True) -> DynamoDBClient: ...
@overload
def aws_client(service: Literal["s3"], *, serving: bool = True) -> S3Client: ...
@overload
def aws_client(service: Literal["sqs"], *, serving: bool = True) -> SQSClient: ...
@overload
def aws_client(service: Literal["lambda"], *, serving: bool = True) -> LambdaClient: ...
@overload
def aws_client(service: str, *, serving: bool = True) -> AwsClient: ...
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

        # boto3-stubs type the literal service names only; the overloads above carry each one's type
        return boto3.client(service)  # type: ignore[call-overload]
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
