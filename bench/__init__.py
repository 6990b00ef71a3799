"""Benchmarks of the serving stack (issue 6): `make bench-quick` / `make bench`; see bench/REPORT.md.

What belongs here: measurement code and its raw results, never product code (variants are switched with
configuration of the deployed stack). ``run`` (the entry point), ``inprocess`` (encoder ceiling, peer,
heads, cache hits), ``cloud/`` (through the local cloud), ``naive/`` (the naive variant), ``texts``
(workloads), ``common`` (statistics, results files, the local cloud, stacks, invokes), ``lambda_report``
(REPORT-line parser, shared with the e2e tests), ``report`` (REPORT.md and plots), ``executor_overhead``
(the local executor's cold / warm overhead), ``results/`` (raw samples of each run).
"""
