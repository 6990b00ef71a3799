"""Drift monitor, on a schedule (and invoked on demand): the last closed window of served traffic against
the training reference; EMF metrics, a JSON + PNG report in S3, a flag.

``{"window": "2026-12-02T10:05:00Z"}`` in the event judges that window instead (the current one too:
whatever has been written so far).
"""

from __future__ import annotations

import json
import time
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from topicserve.bootstrap import build_monitor
from topicserve.monitoring.capture import window_start
from topicserve.monitoring.monitor import load_reference, render_png, run_window
from topicserve.observability import invocation, make_logger, make_metrics

logger = make_logger("monitor")
metrics = make_metrics("monitor")
monitor = build_monitor()
settings, s3, store, feedback = monitor.settings, monitor.s3, monitor.store, monitor.feedback
registry, thresholds = monitor.registry, monitor.thresholds
PREFIX = "reports/drift"  # where reports go: the function's S3 grant (template.yaml) names this prefix


@invocation(logger=logger, metrics=metrics)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    window = event.get("window") if isinstance(event, dict) else None
    window = window or window_start(
        time.time() - settings.monitor_window_seconds, settings.monitor_window_seconds
    )
    # resolved at every run (one GetItem; the file is downloaded again only for a new version), so a newly
    # registered reference is used from the next window on
    reference = load_reference(registry, settings.model_cache_dir)
    report = run_window(store, reference, window, thresholds)
    report["quality"] = feedback.report(registry, settings.models, window)  # live accuracy from labels
    _publish(report)
    keys = {}
    body = json.dumps(report, indent=1).encode()
    png = render_png(report, reference)
    for name, data, kind in (("json", body, "application/json"), ("png", png, "image/png")):
        for key in (f"{PREFIX}/{window}.{name}", f"{PREFIX}/latest.{name}"):
            s3.put_object(Bucket=settings.registry_bucket, Key=key, Body=data, ContentType=kind)
        keys[name] = f"s3://{settings.registry_bucket}/{PREFIX}/{window}.{name}"
    logger.info("drift report", extra={"window": window, "drift": report["drift"], "report": keys})
    return {"window": window, "drift": report["drift"], "report": keys, "summary": _summary(report)}


def _publish(report: dict[str, Any]) -> None:
    """One EMF blob per model (dimension ``model``) and one for the inputs (the function's own metrics,
    flushed when the handler returns); ``DriftDetected`` 0/1 drives the alarm."""
    from aws_lambda_powertools.metrics import EphemeralMetrics

    for model, m in report["models"].items():
        if m.get("psi") is None:
            continue
        blob = EphemeralMetrics(namespace=metrics.namespace, service="monitor")
        blob.add_dimension(name="model", value=model)
        blob.add_metric(name="PredictionPSI", unit=MetricUnit.NoUnit, value=m["psi"])
        blob.add_metric(name="ConfidenceChange", unit=MetricUnit.NoUnit, value=m["confidence_change"])
        blob.add_metric(name="MonitoredPredictions", unit=MetricUnit.Count, value=m["n"])
        blob.flush_metrics()
    for model, q in report.get("quality", {}).items():
        live = q["versions"].get(q["production"])
        if not live or live.get("accuracy") is None:
            continue
        blob = EphemeralMetrics(namespace=metrics.namespace, service="monitor")
        blob.add_dimension(name="model", value=model)
        blob.add_metric(name="LiveAccuracy", unit=MetricUnit.NoUnit, value=live["accuracy"])
        blob.add_metric(name="LabelledAnswers", unit=MetricUnit.Count, value=live["labelled"])
        blob.flush_metrics()
    below = any(q["production_below_reference"] for q in report.get("quality", {}).values())
    metrics.add_metric(name="AccuracyBelowReference", unit=MetricUnit.Count, value=int(below))
    e = report["embeddings"]
    if e.get("auc") is not None:
        metrics.add_metric(name="EmbeddingDriftAUC", unit=MetricUnit.NoUnit, value=e["auc"])
        metrics.add_metric(name="EmbeddingMeanShift", unit=MetricUnit.NoUnit, value=e["mean_shift"])
    metrics.add_metric(name="MonitoredEmbeddings", unit=MetricUnit.Count, value=e["n"])
    metrics.add_metric(name="DriftDetected", unit=MetricUnit.Count, value=int(report["drift"]))


def _summary(report: dict[str, Any]) -> dict[str, Any]:
    return {
        "models": {
            m: {k: v.get(k) for k in ("n", "psi", "confidence_change", "flags")}
            for m, v in report["models"].items()
        },
        "embeddings": report["embeddings"],
        "quality": report.get("quality", {}),
    }
