"""Figures derived from one run's sections that more than one part of the report states: the goal
tables, the section texts and summary.json read them from here so that they cannot disagree."""

from __future__ import annotations

from typing import Any

from bench.common import ratio
from bench.cost import PATHS

#: the paths summary.json names, in the cost table's order (the keys of older runs among them)
USD_KEYS = PATHS


def usd_per_million(
    s: dict[str, Any], which: str = "paths", figure: str = "usd_per_million"
) -> dict[str, float | None]:
    """USD per million predictions per path: ``paths`` with the emulator's measured share taken out of
    the batcher's billed ms (as AWS would bill the function's own work), ``paths_as_measured`` raw;
    ``figure="usd_per_million_texts"`` per million texts (all the models a text was asked of)."""
    paths = s.get("cost", {}).get(which) or {}
    return {k: (paths.get(k) or {}).get(figure) for k in USD_KEYS}


def encoder_figures(s: dict[str, Any]) -> dict[str, Any]:
    """The encoder's ceiling and speed-up over today's (ONNX Runtime dynamic INT8): the in-process
    section's ``encoder`` comparison when the run has one, else today's ceiling and no speed-up."""
    inp = s.get("inprocess", {})
    enc = inp.get("encoder")
    if enc:
        return {
            "ceiling": enc.get("ceiling_texts_per_s"),
            "today": enc.get("today_texts_per_s"),
            "speedup": enc.get("speedup_vs_ort_dynamic_int8"),
            "served": enc.get("served_config"),
            "before": enc.get("today_config"),
            "model_speedup": enc.get("speedup_vs_best_today_config"),
            "best_before": enc.get("best_today_config"),
        }
    return {"ceiling": inp.get("ceiling", {}).get("ceiling_texts_per_s"), "today": None, "speedup": None}


def zipf_compute(s: dict[str, Any]) -> dict[str, Any] | None:
    """Billed batcher milliseconds per request on the Zipf stream, per saturation variant, and the
    reduction caches on / off (off = +dedup, which differs from +prediction_cache by the caches alone).
    ``ideal``: the reduction in texts encoded per request, what free cache lookups would give."""
    sat = s.get("saturation_zipf") or {}
    per: dict[str, dict[str, float | None]] = {}
    for variant, run in sat.items():
        bt = run.get("batcher_time", {})
        b = bt.get("bill")
        if not b:
            continue
        done = max(1, run["completed"])
        encoded = sum((x.get("encoded") or 0) for x in bt.get("batches", []))
        per[variant] = {"billed_ms_per_request": b["billed_ms"] / done, "encoded_per_request": encoded / done}
    on, off = per.get("+prediction_cache"), per.get("+dedup") or per.get("+batching")
    if not on or not off:
        return None
    return {
        "per_variant": per,
        "off_variant": "+dedup" if "+dedup" in per else "+batching",
        "reduction": ratio(off["billed_ms_per_request"], on["billed_ms_per_request"]),
        "ideal": ratio(off["encoded_per_request"], on["encoded_per_request"]),
        "stream": sat["+prediction_cache"]["texts"],
    }


def unfinished_share(point: dict[str, Any]) -> float:
    """The share of a sweep point's requests without an ok answer. On the SQS path these are almost all
    requests still queued or in flight when the point's drain window closed (the queue is then purged so
    the next point starts empty): work cut off, not failed requests. On the HTTP path, responses other than
    200. The raw results keep the runner's key for it, ``error_rate``."""
    return float(point["error_rate"])


def held_up_to(points: list[dict[str, Any]], slo_ms: float) -> float:
    """The highest load fraction up to which *every* point kept p99 <= SLO with < 1% of its requests
    unfinished (0: none)."""
    top = 0.0
    for p in sorted(points, key=lambda p: p["fraction"]):
        p99 = p["latency_ms"]["p99"]
        if p99 is None or p99 > slo_ms or unfinished_share(p) >= 0.01:
            break
        top = p["fraction"]
    return top


def adaptive_sweep(s: dict[str, Any]) -> tuple[list[dict[str, Any]], float, int] | None:
    sw = s.get("sweep")
    if not sw:
        return None
    ad = sorted([p for p in sw["points"] if p["variant"] == "adaptive"], key=lambda p: p["fraction"])
    return ad, held_up_to(ad, sw["slo_ms"]), sw["slo_ms"]
