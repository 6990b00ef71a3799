"""The LocalStack plugin project (its own pyproject.toml; installed editable into LocalStack's venv).

Only ``localcloud_executor.proctree`` and ``localcloud_executor.layout`` are imported from outside that venv
(by the localcloud CLI and the tests, as ``infra.localstack.executor.localcloud_executor.*``): both are
stdlib only. The rest imports LocalStack and runs inside it.
"""
