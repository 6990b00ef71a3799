"""Turn ``bench/results/<name>.json`` into PNG plots and ``bench/REPORT.md``.

    python -m bench.report [name]      (default: full if present, else quick)

Every serving figure is stated against the encoder ceiling measured in the same run, or against the
naive peer, and every goal gets a met / not met line with the measured reason. Also
writes ``results/summary.json`` (the headline figures, null where not measured) for quick and full runs.

One module per part of the report: ``goals`` (the verdict tables), ``cost``, ``efficiency``,
``inprocess`` (ceiling, peer, rollout cost), ``capacity`` (backlog drains), ``sweep``, ``warmers``,
``cold_starts``, ``plots`` and ``summary``; ``figures`` holds what several of them state, ``markdown``
the formatting, ``document`` puts them in order.
"""

from bench.report.document import REPORT, write

__all__ = ["REPORT", "write"]
