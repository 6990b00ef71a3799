"""LocalStack start-up hooks: bind DynamoDB Local to 127.0.0.1; keep one unparseable SQS body from failing
its whole poll.

DynamoDB Local:

DynamoDB Local has no host option: ``ServerRunner`` builds ``new org.eclipse.jetty.server.Server(port)``,
which listens on all interfaces, and LocalStack starts it with ``java ... -jar DynamoDBLocal.jar -port N``.
We keep LocalStack's command line (heap, agent, library path, options) and only swap
``-jar DynamoDBLocal.jar`` for our launcher ``localcloud.LoopbackDynamoDB`` (in the
``ddb-local-loader-0.1.jar`` that ``localcloud install`` builds from ``localcloud/LoopbackDynamoDB.java``):
it creates the server through DynamoDB Local's own ``createServerFromCommandLineArgs``, sets the host of
its Jetty connectors, then starts it.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

from localstack.runtime import hooks

LOG = logging.getLogger(__name__)
LAUNCHER = "localcloud.LoopbackDynamoDB"


@hooks.on_infra_start()
def bind_dynamodb_local_to_loopback() -> None:
    host = os.environ.get("LOCALCLOUD_DDB_HOST")
    if not host:
        return
    from localstack.services.dynamodb.packages import dynamodblocal_package
    from localstack.services.dynamodb.server import DynamodbServer

    original = DynamodbServer._create_shell_command
    if getattr(original, "_localcloud", False):
        return

    def _create_shell_command(self: Any) -> list[str]:
        cmd: list[str] = original(self)
        agent = dynamodblocal_package.get_installer().get_ddb_agent_jar_path()
        if "-jar" not in cmd or not os.path.isfile(agent):
            LOG.warning("localcloud: cannot bind DynamoDB Local to %s (unexpected command %s)", host, cmd)
            return cmd
        i = cmd.index("-jar")
        jar = cmd[i + 1]
        return [
            *cmd[:i],
            f"-Dlocalcloud.ddb.host={host}",
            "-cp",
            f"{jar}{os.pathsep}{agent}",
            LAUNCHER,
            *cmd[i + 2 :],
        ]

    _create_shell_command._localcloud = True  # type: ignore[attr-defined]
    DynamodbServer._create_shell_command = _create_shell_command  # type: ignore[method-assign]


class _TolerantJson:
    """``json`` for LocalStack's SQS poller: a body Python cannot read is reported as "not JSON".

    The poller json-decodes every message body to apply event filters and catches only
    ``JSONDecodeError``. A body nested past the recursion limit, or holding an integer past Python's
    4,300-digit limit, raises ``RecursionError`` / ``ValueError`` instead, which fails the *whole poll*:
    that message and every neighbour received with it cycle until maxReceiveCount and land in the DLQ
    without the function ever seeing them. AWS's poller does not parse bodies at all (without filters),
    so the function would answer them; with this shim the body passes through unparsed, as AWS passes it.
    """

    JSONDecodeError = json.JSONDecodeError

    @staticmethod
    def loads(document: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return json.loads(document, *args, **kwargs)
        except json.JSONDecodeError:
            raise
        except (RecursionError, ValueError) as exc:
            text = document if isinstance(document, str) else ""
            raise json.JSONDecodeError(f"unreadable here: {type(exc).__name__}", text, 0) from None

    @staticmethod
    def dumps(value: Any, *args: Any, **kwargs: Any) -> str:
        return json.dumps(value, *args, **kwargs)


@hooks.on_infra_start()
def tolerate_unparseable_sqs_bodies() -> None:
    from localstack.services.lambda_.event_source_mapping.pollers import sqs_poller

    if not isinstance(sqs_poller.json, _TolerantJson):
        sqs_poller.json = _TolerantJson()  # type: ignore[assignment]
