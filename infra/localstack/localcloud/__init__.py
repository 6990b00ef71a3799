"""The local AWS cloud: LocalStack in host mode (no Docker) with a local-process Lambda executor.

    python3 -m infra.localstack.localcloud install|up|down|status|logs      (from the repository root)

Stdlib only, so that the machine's plain python3 (>= 3.11) runs it before anything else is installed
(``make localcloud`` is the first step on a fresh machine). Everything it installs or writes lives under
``<repo>/.localcloud/`` (ignored by git); see infra/localstack/README.md. One job per module:

    settings      pinned versions, paths, ports and timeouts (from LOCALCLOUD_* variables)
    interpreters  finding real pythonX.Y executables (not pyenv shims)
    installers    `install`: LocalStack's venv, the executor plugin, Lambda runtimes, DynamoDB Local,
                  Java, the javaagent jar (built from LoopbackDynamoDB.java), the SAM CLI
    supervisor    `up` / `down` / `status`: the LocalStack process, its PID file, health, and every
                  process of this local cloud (process trees: ``localcloud_executor.proctree``)
    clients       how clients reach it: endpoint, region, dummy credentials, boto3 clients
    console       progress lines and log tails
    cli           the command line (``__main__``)

Why host mode: there is no Docker engine on these machines, and LocalStack's community runtime only
runs Lambda functions in Docker unless a runtime-executor plugin is installed (ours:
``infra/localstack/executor``).
"""
