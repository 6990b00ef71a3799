"""Live quality per (model, version) from label feedback, against the version's offline accuracy. Pure.

What the monitor report, ``GET /v1/models`` and ``topicserve monitor`` show: per version the labelled
answers, accuracy with its 95 % Wilson interval, the expected calibration error (from the confidence bins),
the most-confused class pairs, and the offline test accuracy the registry recorded for that version
(``metrics.accuracy``). A version is ``below_reference`` when even the upper end of its live interval is
under the lower end of the offline one (Wilson at the recorded ``n_test``, or the point value when the
registry has no count): two intervals apart, so label noise in a small window does not raise the alarm.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from topicserve.feedback.model import QualitySums, wilson

#: (offline accuracy, the number of test texts it was measured on, 0 if unknown)
ReferenceAccuracy = tuple[float, int]


def reference_low(reference: ReferenceAccuracy) -> float:
    accuracy, n = reference
    return wilson(round(accuracy * n), n)[0] if n else accuracy


def version_quality(sums: QualitySums, reference: ReferenceAccuracy | None) -> dict[str, Any]:
    out = sums.summary()
    if reference is not None:
        out["reference_accuracy"] = round(reference[0], 4)
        out["reference_low"] = round(reference_low(reference), 4)
        out["below_reference"] = bool(sums.n) and out["accuracy_high"] < out["reference_low"]
    return out


def quality_report(
    sums: Mapping[tuple[str, str], QualitySums],
    references: Mapping[tuple[str, str], ReferenceAccuracy],
    production: Mapping[str, str],
) -> dict[str, Any]:
    """model -> its production version, and per version with labels its live quality."""
    report: dict[str, Any] = {}
    for (model, version), q in sorted(sums.items()):
        entry = report.setdefault(model, {"production": production.get(model), "versions": {}})
        entry["versions"][version] = version_quality(q, references.get((model, version)))
    for entry in report.values():
        live = entry["versions"].get(entry["production"]) or {}
        entry["production_below_reference"] = bool(live.get("below_reference"))
    return report


def references_from_metrics(
    metrics: Mapping[tuple[str, str], Mapping[str, Any]],
) -> dict[tuple[str, str], ReferenceAccuracy]:
    """(model, version) -> its offline accuracy, from registry version metrics that record one."""
    out: dict[tuple[str, str], ReferenceAccuracy] = {}
    for key, m in metrics.items():
        accuracy = m.get("accuracy")
        if isinstance(accuracy, int | float) and not isinstance(accuracy, bool):
            n = m.get("n_test")
            out[key] = (float(accuracy), int(n) if isinstance(n, int) and not isinstance(n, bool) else 0)
    return out


def quality_lines(quality: Mapping[str, Any]) -> list[str]:
    """The live-quality table ``topicserve monitor`` prints under the drift table."""
    if not quality:
        return ["live quality: no label feedback in this window"]
    head = f"{'model':<10} {'version':>7} {'stage':>10} {'labelled':>8} {'accuracy [95 % CI]':>24}"
    lines = [f"{head} {'ECE':>6}  ref"]
    for model, entry in quality.items():
        for version, q in entry["versions"].items():
            acc = (
                f"{q['accuracy']:.3f} [{q['accuracy_low']:.3f}, {q['accuracy_high']:.3f}]"
                if q.get("accuracy") is not None
                else "-"
            )
            ref = q.get("reference_accuracy")
            flag = "  BELOW REFERENCE" if q.get("below_reference") else ""
            lines.append(
                f"{model:<10} {version:>7} {q.get('stage') or '-':>10} {q['labelled']:>8} {acc:>24} "
                f"{'-' if q.get('ece') is None else format(q['ece'], '.3f'):>6}  "
                f"{'-' if ref is None else format(ref, '.3f')}{flag}"
            )
            confused = ", ".join(
                f"{c['true']} as {c['predicted']} ({c['count']})" for c in q.get("most_confused") or []
            )
            if confused:
                lines.append(f"{'':<10} most confused: {confused}")
    return lines
