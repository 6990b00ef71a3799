"""Benchmarks through the local cloud: cold starts, warmers on a bursty trace, the request-rate sweep.

All of it drives the deployed stack (LocalStack + the local-process Lambda executor running the real
handlers under awslambdaric) with the product's own code paths: HTTP through the REST API with
:class:`topicserve_ops.client.Client`, SQS through :func:`topicserve.queue.send_all` and the batcher's event
source mapping. Variants are switched with configuration only (environment variables, the mapping's batch
size / window), never with benchmark-only code in the handlers.

Time is bounded everywhere: every point has a fixed duration and a drain deadline; a point that cannot
drain is cut (queue purged) and its unfinished requests count as errors. One job per module:

    stack       the deployed bench stack: its clients and configuration switches, the results table
    arrivals    arrival processes (Poisson, bursty) and the open-loop dispatcher that replays them
    sqs_path    SQS path variants, points and capacity (backlog drain), the batcher's time breakdown
    http_path   HTTP path points and capacity (closed loop), pre-warming
    sweep       the request-rate sweep over variants, workloads and fractions of capacity
    warmers     warmers on a bursty trace, with an emulated keep-alive
    coldstarts  cold starts of the three variants (ours int8, fp32 encoder, naive), package sizes
"""
