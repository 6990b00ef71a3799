"""Entry point of the executor: LocalStack selects it with ``LAMBDA_RUNTIME_EXECUTOR=localprocess``."""

from __future__ import annotations

from localstack.services.lambda_.invocation.plugins import RuntimeExecutorPlugin


class LocalProcessRuntimeExecutorPlugin(RuntimeExecutorPlugin):
    """Registered under the entry-point group ``localstack.lambda.runtime_executor`` (see pyproject.toml)."""

    name = "localprocess"

    def load(self, *args: object, **kwargs: object) -> type:
        # imported lazily, as LocalStack's own Docker plugin does: only when Lambda is first used
        from localcloud_executor.executor import LocalProcessRuntimeExecutor

        return LocalProcessRuntimeExecutor
