"""Infrastructure of the project: the local cloud (``localstack/``), the deploy (``deploy.py``: sam build
+ sam deploy + model registration) and the IAM least-privilege lint (``lint_iam.py``).

Importable as a package from the repository root (and from the venv, where the project is installed
editable); ``infra.localstack.localcloud`` must stay stdlib-only: plain python3 runs it before any venv
exists.
"""
