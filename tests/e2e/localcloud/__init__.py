"""The local cloud itself on a probe stack: invokes, layers, API Gateway, SQS, schedules, process tree."""
