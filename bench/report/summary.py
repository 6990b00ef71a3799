"""``summary.json``: one run's headline figures (null where the run did not measure them), the file the
README and docs quote."""

from __future__ import annotations

from typing import Any

from bench.report.figures import encoder_figures, usd_per_million, zipf_compute


def summary_json(data: dict[str, Any]) -> dict[str, Any]:
    """The headline figures of one run (the keys the README and docs quote; None where the run did not
    measure it)."""
    s = data["sections"]
    enc = encoder_figures(s)
    stats = s.get("cold_starts", {}).get("stats", {})
    zc = zipf_compute(s)
    return {
        "encoder_ceiling_texts_per_s": enc["ceiling"],
        "encoder_speedup_vs_ort_dynamic_int8": enc["speedup"],
        "init_p50_ms": {
            key: (stats.get(variant) or {}).get("init_ms", {}).get("p50")
            for key, variant in (("zip", "ours_int8"), ("image", "image"), ("naive", "naive"))
        },
        "first_answer_p50_ms": (s.get("cold_starts", {}).get("first_answer") or {}).get("ms", {}).get("p50"),
        "init_ab": init_ab(stats),
        "batcher_efficiency": s.get("efficiency", {}).get("efficiency"),
        "zipf_compute_reduction": zc["reduction"] if zc else None,
        "usd_per_million": usd_per_million(s),
        "usd_per_million_as_measured": usd_per_million(s, "paths_as_measured"),
        "usd_per_million_texts": usd_per_million(s, figure="usd_per_million_texts"),
        **{
            k: (s.get("cost", {}).get("derived") or {}).get(k)
            for k in (
                "dynamodb_write_units_per_unique_text",
                "five_models_cost_ratio",
                "five_models_paired",
                "five_models_batcher_ms_ratio_median",
                "x_cheaper_than_naive_fair",
                "zipf_steady_cached_over_uncached",
                "break_even_hits_per_write",
            )
        },
        "prices_date": s.get("cost", {}).get("prices_date"),
        "machine_load_at_start": data["machine"]["loadavg_at_start"][0],
        "command": data["command"],
    }


def init_ab(stats: dict[str, Any]) -> dict[str, Any] | None:
    """Init p50 of this checkout against the baseline release, measured interleaved in the same run."""
    current = (stats.get("ours_int8") or {}).get("init_ms", {}).get("p50")
    baseline = (stats.get("baseline") or {}).get("init_ms", {}).get("p50")
    if current is None or baseline is None:
        return None
    return {"current_ms": current, "baseline_ms": baseline, "ratio": round(current / baseline, 3)}
