"""topicserve_ops: what an operator runs from a shell or a script against a deployed stack, never a function.

``client`` (the ``topicserve`` command: the API, the queue, results, the monitor), ``registry_cli`` (the
``topicserve-registry`` command: versions, stages, rollouts, gates) and ``lambda_config`` (editing a
function's environment: deploy, tests, benchmarks). They import the serving library (``topicserve``) and
nothing in the library imports them, so the Lambda layer does not ship them.
"""
