"""Turn ``bench/results/<name>.json`` into PNG plots and ``bench/REPORT.md``.

    python -m bench.report [name]      (default: full if present, else quick)

Every serving figure is stated against the encoder ceiling measured in the same run, or against the
naive peer, and every goal of issues 6 and 15 gets a met / not met line with the measured reason. Also
writes ``results/summary.json`` (the headline figures, null where not measured) for quick and full runs.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from bench.common import REPO, RESULTS, ratio
from bench.cost import MILLION, PRICES

REPORT = REPO / "bench" / "REPORT.md"


def _f(value: Any, digits: int = 1, suffix: str = "") -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "n/a"
    return f"{value:,.{digits}f}{suffix}"


def _pct(value: Any) -> str:
    return "n/a" if value is None else f"{100 * value:.0f}%"


def plots(name: str, data: dict[str, Any]) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = []
    sweep = data["sections"].get("sweep")
    if sweep:
        points = sweep["points"]
        series: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
        for p in points:
            series.setdefault((p["path"], p["variant"], p["workload"]), []).append(p)
        for metric, ylabel, fname in (
            ("latency", "latency (ms, p50 solid / p99 dashed)", "latency"),
            ("throughput", "completed requests / s", "throughput"),
        ):
            fig, axes = plt.subplots(1, 2, figsize=(13, 5))
            for ax, path in zip(axes, ("sqs", "http"), strict=True):
                for (p_path, variant, workload), pts in sorted(series.items()):
                    if p_path != path:
                        continue
                    pts = sorted(pts, key=lambda p: p["offered_rps"])
                    x = [p["offered_rps"] for p in pts]
                    label = f"{variant} / {workload}"
                    if metric == "latency":
                        (line,) = ax.plot(x, [p["latency_ms"]["p50"] for p in pts], marker="o", label=label)
                        ax.plot(x, [p["latency_ms"]["p99"] for p in pts], ls="--", color=line.get_color())
                        ax.set_yscale("log")
                    else:
                        ax.plot(x, [p["throughput_rps"] for p in pts], marker="o", label=label)
                if metric == "latency" and path == "sqs":
                    ax.axhline(sweep["slo_ms"], color="red", lw=0.8, label="adaptive SLO")
                if metric == "throughput":
                    ax.axline((0, 0), slope=1, color="grey", lw=0.6, ls=":")
                ax.set_title(f"{path.upper()} path (capacity {sweep['capacity'][path]:.1f}/s)")
                ax.set_xlabel("offered load (requests / s)")
                ax.set_ylabel(ylabel)
                ax.legend(fontsize=7)
            fig.tight_layout()
            path_png = RESULTS / f"{name}-{fname}.png"
            fig.savefig(path_png, dpi=110)
            plt.close(fig)
            out.append(path_png.name)
    paths = data["sections"].get("cost", {}).get("paths")
    if paths:
        out.append(_cost_plot(name, paths, plt))
    cs = data["sections"].get("cold_starts")
    if cs:
        fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
        for ax, key, title in (
            (axes[0], "init_ms", "Init Duration (ms)"),
            (axes[1], "first_response_ms", "first response (ms)"),
        ):
            names = list(cs["raw"])
            values = [[s[key] for s in cs["raw"][n] if s["ok"] and s[key] is not None] for n in names]
            ax.boxplot(values, tick_labels=names, showfliers=True)
            for i, v in enumerate(values, start=1):
                ax.scatter([i] * len(v), v, s=8, alpha=0.5)
            ax.set_yscale("log")
            ax.set_title(title)
        fig.tight_layout()
        path_png = RESULTS / f"{name}-coldstarts.png"
        fig.savefig(path_png, dpi=110)
        plt.close(fig)
        out.append(path_png.name)
    return out


SERVICES = ("lambda", "api_gateway", "sqs", "dynamodb")


def _cost_plot(name: str, paths: dict[str, Any], plt: Any) -> str:
    """Dollars per million predictions per path, stacked by service (linear: a stacked bar on a log axis
    would hide its first segment)."""
    measured = [(k, v) for k, v in paths.items() if v]
    fig, ax = plt.subplots(figsize=(10, 0.6 * len(measured) + 1.8))
    left = [0.0] * len(measured)
    for service in SERVICES:
        widths = [v["by_service"].get(service, 0.0) for _, v in measured]
        ax.barh([k for k, _ in measured], widths, left=left, label=service)
        left = [a + b for a, b in zip(left, widths, strict=True)]
    for i, (_, v) in enumerate(measured):
        ax.text(v["usd_per_million"] * 1.05, i, f"${v['usd_per_million']:,.2f}", va="center", fontsize=8)
    ax.set_xlabel("USD per million predictions (AWS us-east-1 list prices)")
    ax.set_title("What a million predictions cost, from the billed durations measured here")
    ax.invert_yaxis()
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    path_png = RESULTS / f"{name}-cost.png"
    fig.savefig(path_png, dpi=110)
    plt.close(fig)
    return path_png.name


def _held(points: list[dict[str, Any]], slo_ms: float) -> float:
    """The highest load fraction up to which *every* point kept p99 <= SLO with < 1% errors (0: none)."""
    top = 0.0
    for p in sorted(points, key=lambda p: p["fraction"]):
        p99 = p["latency_ms"]["p99"]
        if p99 is None or p99 > slo_ms or p["error_rate"] >= 0.01:
            break
        top = p["fraction"]
    return top


def goals(data: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(goal, measured, verdict) rows."""
    s = data["sections"]
    rows: list[tuple[str, str, str]] = []
    ceiling = s.get("inprocess", {}).get("ceiling", {}).get("ceiling_texts_per_s")
    peer = s.get("inprocess", {}).get("peer", {}).get("throughput_median", {}).get("peer")
    cs = s.get("cold_starts", {}).get("stats")
    if cs:
        ours = cs["ours_int8"]["init_ms"]["p50"]
        rel = cs["ours_int8"]["init_p50_over_naive"]
        naive_init = cs.get("naive", {}).get("init_ms", {}).get("p50")
        build = (cs["ours_int8"].get("runtime_build_ms") or {}).get("p50")
        met = ours is not None and ours <= 500 and rel is not None and rel <= 0.2
        rows.append(
            (
                "init p50 <= 0.5 s and <= 1/5 of naive",
                f"{_f(ours, 0)} ms; {_f(rel, 2)}x naive ({_f(naive_init, 0)} ms); of ours, build_runtime "
                f"(registry reads, head download + sha256, model loads) {_f(build, 0)} ms, the rest "
                "interpreter + imports",
                "met"
                if met
                else ("half met (<= 1/5 of naive)" if rel is not None and rel <= 0.2 else "not met"),
            )
        )
    cap = s.get("capacity", {}).get("sqs", {}).get("sustained_texts_per_s")
    if cap is not None:
        r = ratio(cap, ceiling)
        rows.append(
            (
                "SQS path >= 90% of encoder ceiling (unique)",
                f"{_f(cap)} texts/s = {_pct(r)} of {_f(ceiling)}",
                "met" if r is not None and r >= 0.9 else "not met",
            )
        )
        r = ratio(cap, peer)
        rows.append(
            (
                "SQS path >= 4x naive peer",
                f"{_f(cap)} vs {_f(peer)} texts/s = {_f(r, 2)}x",
                "met" if r is not None and r >= 4 else "not met",
            )
        )
    peer_sec = s.get("inprocess", {}).get("peer")
    if peer_sec:
        r = peer_sec["four_heads_cost_ratio"]
        rows.append(
            (
                "four heads <= 1.15x one head",
                f"{_f(r, 3)}x (in-process batch, same texts)",
                "met" if r is not None and r <= 1.15 else "not met",
            )
        )
    sat = s.get("saturation_zipf")
    if sat and "+prediction_cache" in sat:
        on = sat["+prediction_cache"]["sustained_texts_per_s"]
        off_key = "+dedup" if "+dedup" in sat else "+batching"
        off = sat[off_key]["sustained_texts_per_s"]
        r = ratio(on, off)
        rows.append(
            (
                "Zipf: >= 3x throughput caches on vs off",
                f"{_f(on)} vs {_f(off)} ({off_key}) = {_f(r, 2)}x",
                "met" if r is not None and r >= 3 else "not met",
            )
        )
    http_hits = [
        p
        for p in s.get("sweep", {}).get("points", [])
        if p["path"] == "http"
        and p["variant"] == "caches"
        and p["hit_latency_ms"]["n"]
        and p["miss_latency_ms"]["n"]
    ]
    http_hits.sort(key=lambda p: p["fraction"])  # the lightest load: hit vs miss, not queueing
    lat = s.get("inprocess", {}).get("cache_latency")
    if http_hits or lat:
        parts, ok = [], False
        if http_hits:
            p = http_hits[0]
            r = ratio(p["hit_latency_ms"]["p50"], p["miss_latency_ms"]["p50"])
            parts.append(
                f"HTTP end to end {_pct(r)} ({_f(p['hit_latency_ms']['p50'], 0)} vs "
                f"{_f(p['miss_latency_ms']['p50'], 0)} ms)"
            )
        if lat:
            parts.append(f"in the service {_pct(lat['hit_over_miss_p50'])}")
            ok = lat["hit_over_miss_p50"] is not None and lat["hit_over_miss_p50"] <= 0.1
        rows.append(
            (
                "cache-hit latency <= 10% of miss",
                "; ".join(parts),
                ("met in the service; " if ok else "") + ("not met end to end" if http_hits else ""),
            )
        )
    w = s.get("warmers")
    if w:
        rows.append(
            (
                "warmers remove >= 80% of cold starts",
                f"{_pct(w['cold_starts_removed'])} "
                f"({w['without']['cold_starts']} -> {w['with']['cold_starts']} of "
                f"{w['without']['requests']})",
                "met" if (w["cold_starts_removed"] or 0) >= 0.8 else "not met",
            )
        )
    sw = s.get("sweep")
    if sw:
        ad = sorted([p for p in sw["points"] if p["variant"] == "adaptive"], key=lambda p: p["fraction"])
        top = _held(ad, sw["slo_ms"])
        fixed = []
        for variant, label in (("+prediction_cache", "fixed 100/1 s"), ("fixed_b10_w0", "fixed 10/0 s")):
            pts = [p for p in sw["points"] if p["variant"] == variant and p["workload"] == "unique"]
            if pts:
                fixed.append(f"{label} held up to {_pct(_held(pts, sw['slo_ms']))}")
        rows.append(
            (
                f"adaptive batcher p99 <= SLO ({sw['slo_ms']} ms) up to >= 85% of saturation",
                "held up to "
                + _pct(top)
                + " (points: "
                + ", ".join(f"{_pct(p['fraction'])}: p99 {_f(p['latency_ms']['p99'], 0)} ms" for p in ad)
                + "); on the same sweep: "
                + "; ".join(fixed),
                "met" if top >= 0.85 else "not met",
            )
        )
    return rows


# -- issue 15: encoder, cold start, cost, efficiency, adaptive sweep, summary ----------------------------
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


def _newcomer_row() -> tuple[str, str, str]:
    """From bench/results/newcomer.json (`python -m bench.newcomer`: a separate run, a fresh clone)."""
    path = RESULTS / "newcomer.json"
    goal = "make demo from nothing <= 12 min"
    if not path.is_file():
        return goal, "not measured: run `python -m bench.newcomer`", "not measured"
    nc = json.loads(path.read_text())
    phases = ", ".join(f"{name} {seconds / 60:.1f}" for name, seconds in nc["phases_s"].items())
    load = nc["machine_load_at_start"][0]
    when = f"load {load} at start, {nc['utc']}, {nc['git'][:8]}"
    measured = f"{nc['total_s'] / 60:.1f} min ({phases} min; {when})"
    ok = nc["returncode"] == 0 and nc["total_s"] <= nc["goal_s"]
    return goal, measured, "met" if ok else "not met"


USD_KEYS = (
    "sync_http",
    "sync_http_function_url",
    "sqs_unique",
    "sqs_unique_5",
    "sqs_zipf_cached",
    "sqs_zipf_uncached",
    "sqs_zipf_steady_cached",
    "sqs_zipf_steady_uncached",
    "naive_lambda",
    "naive_front_door",
    "naive_fair",
    "naive_fair_cold",
    "gpu_worker",
)


def usd_per_million(s: dict[str, Any], which: str = "paths") -> dict[str, float | None]:
    """USD per million predictions per path: ``paths`` with the emulator's measured share taken out of
    the batcher's billed ms (as AWS would bill the function's own work), ``paths_as_measured`` raw."""
    paths = s.get("cost", {}).get(which) or {}
    return {k: (paths.get(k) or {}).get("usd_per_million") for k in USD_KEYS}


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


def _adaptive(s: dict[str, Any]) -> tuple[list[dict[str, Any]], float, int] | None:
    sw = s.get("sweep")
    if not sw:
        return None
    ad = sorted([p for p in sw["points"] if p["variant"] == "adaptive"], key=lambda p: p["fraction"])
    return ad, _held(ad, sw["slo_ms"]), sw["slo_ms"]


def summary_json(data: dict[str, Any]) -> dict[str, Any]:
    """The headline figures of one run (issue 15's keys; None where the run did not measure it)."""
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
        "batcher_efficiency": s.get("efficiency", {}).get("efficiency"),
        "zipf_compute_reduction": zc["reduction"] if zc else None,
        "usd_per_million": usd_per_million(s),
        "usd_per_million_as_measured": usd_per_million(s, "paths_as_measured"),
        **{
            k: (s.get("cost", {}).get("derived") or {}).get(k)
            for k in (
                "dynamodb_write_units_per_unique_text",
                "five_models_cost_ratio",
                "x_cheaper_than_naive_fair",
                "zipf_steady_cached_over_uncached",
                "break_even_hits_per_write",
            )
        },
        "prices_date": s.get("cost", {}).get("prices_date"),
        "machine_load_at_start": data["machine"]["loadavg_at_start"][0],
        "command": data["command"],
    }


def goals15(data: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(goal, measured, verdict) rows of issue 15."""
    s = data["sections"]
    rows: list[tuple[str, str, str]] = []
    enc = encoder_figures(s)
    rows.append(
        (
            "encoder >= 1.5x today's ceiling (same run, equal fidelity)",
            f"served now ({enc.get('served')}) {_f(enc['ceiling'])} texts/s vs served before "
            f"({enc.get('before')}) {_f(enc['today'])}: {_f(enc['speedup'], 2)}x, from the thread count; "
            f"the model alone {_f(enc.get('model_speedup'), 2)}x at its best ({enc.get('best_before')})"
            if enc["speedup"] is not None
            else f"ceiling {_f(enc['ceiling'])} texts/s; no variant comparison in this run",
            "met" if (enc["speedup"] or 0) >= 1.5 else "not met",
        )
    )
    stats = s.get("cold_starts", {}).get("stats", {})
    if stats:
        zip_p50 = stats.get("ours_int8", {}).get("init_ms", {}).get("p50")
        image_p50 = stats.get("image", {}).get("init_ms", {}).get("p50")
        rows.append(
            (
                "init p50 <= 0.35 s (predict functions)",
                f"zip {_f(zip_p50, 0)} ms, image {_f(image_p50, 0)} ms "
                f"({stats['ours_int8']['n']} forced cold starts each)",
                "met" if zip_p50 is not None and zip_p50 <= 350 else "not met",
            )
        )
    usd = usd_per_million(s)
    naive = usd["naive_lambda"]
    for key, label in (("sqs_unique", "unique texts"), ("sqs_zipf_cached", "Zipf, caches on")):
        r = ratio(naive, usd[key])
        if usd[key] is not None or naive is not None:
            rows.append(
                (
                    f"SQS path >= 10x cheaper per prediction than the naive Lambda ({label})",
                    f"${_f(usd[key], 2)} vs ${_f(naive, 2)} per million = {_f(r, 1)}x cheaper",
                    "not measured" if r is None else ("met" if r >= 10 else "not met"),
                )
            )
    eff = s.get("efficiency")
    if eff:
        ms = eff["ms_per_text"]
        rows.append(
            (
                "batcher efficiency >= 0.85 (encoder in-process ms/text / billed ms/text)",
                f"{_f(eff['efficiency'], 2)} ({_f(eff['encoder_in_process_ms_per_text'], 1)} / "
                f"{_f(ms['billed'], 1)} ms per text); without the emulator's "
                f"{_f(eff['emulator_ms_per_text'], 1)} ms/text: {_f(eff['efficiency_without_emulator'], 2)}",
                "met" if (eff["efficiency"] or 0) >= 0.85 else "not met",
            )
        )
    zc = zipf_compute(s)
    if zc:
        per = zc["per_variant"]
        rows.append(
            (
                "Zipf(1.1): caches cut billed compute per request >= 3x",
                f"{_f(per[zc['off_variant']]['billed_ms_per_request'], 1)} ({zc['off_variant']}) vs "
                f"{_f(per['+prediction_cache']['billed_ms_per_request'], 1)} billed ms/request = "
                f"{_f(zc['reduction'], 2)}x over {zc['stream']} requests; texts encoded per request "
                f"{_f(zc['ideal'], 2)}x fewer",
                "met" if (zc["reduction"] or 0) >= 3 else "not met",
            )
        )
    ad = _adaptive(s)
    if ad:
        points, top, slo = ad
        fractions = [p["fraction"] for p in points]
        full = bool(fractions) and min(fractions) <= 0.1 and max(fractions) >= 1.5
        rows.append(
            (
                f"adaptive batcher judged on a full sweep 10-150% (p99 <= {slo} ms up to >= 85%)",
                f"held up to {_pct(top)}; "
                + ", ".join(f"{_pct(p['fraction'])}: p99 {_f(p['latency_ms']['p99'], 0)} ms" for p in points),
                ("met" if top >= 0.85 else "not met") if full else "not judged: the sweep lacks 10-150%",
            )
        )
    rows.append(_newcomer_row())
    rows.append(("summary.json with the headline keys", "written by bench/report.py", "met"))
    return rows


def cost_goals(data: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(goal, measured, verdict) rows of the cost issue, from the run's cost section."""
    c = data["sections"].get("cost") or {}
    usd = usd_per_million(data["sections"])
    d = c.get("derived") or {}

    def row(
        goal: str, value: float | None, limit: float, text: str, higher: bool = False
    ) -> tuple[str, str, str]:
        if value is None:
            return goal, "not measured in this run", "not measured"
        ok = value >= limit if higher else value <= limit
        return goal, text, "met" if ok else "not met"

    unique, fair = usd.get("sqs_unique"), usd.get("naive_fair")
    return [
        row("bulk, unique texts, one model <= $0.50 / M", unique, 0.50, f"${_f(unique, 3)} / M"),
        row(
            "bulk >= 5x cheaper than the naive function behind the same front door with a stored result",
            d.get("x_cheaper_than_naive_fair"),
            5.0,
            f"{_f(d.get('x_cheaper_than_naive_fair'), 1)}x (naive fair ${_f(fair, 2)} / M)",
            higher=True,
        ),
        row(
            "Zipf(1.1) steady state (20,000 requests): caches on <= 0.6x caches off",
            d.get("zipf_steady_cached_over_uncached"),
            0.6,
            f"{_f(d.get('zipf_steady_cached_over_uncached'), 2)}x "
            f"(${_f(usd.get('sqs_zipf_steady_cached'), 3)} vs ${_f(usd.get('sqs_zipf_steady_uncached'), 3)}"
            " / M, projected)",
        ),
        row(
            "a text answered by all five models <= 1.3x one model",
            d.get("five_models_cost_ratio"),
            1.3,
            f"{_f(d.get('five_models_cost_ratio'), 2)}x",
        ),
        row(
            "DynamoDB write units per unique text, bulk path, all tables, one model <= 1",
            d.get("dynamodb_write_units_per_unique_text"),
            1.0,
            f"{_f(d.get('dynamodb_write_units_per_unique_text'), 3)} WRU",
        ),
    ]


def section_cost(c: dict[str, Any]) -> list[str]:
    paths, raw, m = c.get("paths") or {}, c.get("paths_as_measured") or {}, c["measured"]
    fair = (paths.get("naive_fair") or {}).get("usd_per_million")
    rows = []
    for name, p in paths.items():
        if not p:
            why = "no GPU on this machine" if name == "gpu_worker" else "not measured in this run"
            rows.append([name, "n/a", "", *["" for _ in SERVICES], "", why])
            continue
        by = p["by_service"]
        rows.append(
            [
                name,
                f"**{_f(p['usd_per_million'], 3)}**",
                _f((raw.get(name) or {}).get("usd_per_million"), 3),
                *[_f(by.get(k, 0.0), 3) for k in SERVICES],
                _f(ratio(fair, p["usd_per_million"]), 1),
                p["note"],
            ]
        )
    sizes = m.get("item_sizes", {})
    api = m.get("api", {})
    d = c.get("derived") or {}
    steady = m.get("zipf_steady") or {}

    def per_call(b: dict[str, Any] | None) -> str:
        return _f(b["billed_ms"] / max(1, b["invocations"]), 0) if b else "n/a"

    lines = [
        "## Cost: dollars per million predictions at AWS prices",
        "",
        f"Prices of {c.get('prices_date', 'n/a')} (us-east-1 list): Lambda "
        f"${PRICES.lambda_request * MILLION:.2f}/M requests + ${PRICES.lambda_gb_second:.10f} per GB-s, "
        f"REST API ${PRICES.rest_api_request * MILLION:.2f}/M (a function URL: nothing per request), SQS "
        f"${PRICES.sqs_request * MILLION:.2f}/M requests per 64 KiB chunk, DynamoDB on demand "
        f"${PRICES.ddb_write_unit * MILLION:.3f}/M write units, ${PRICES.ddb_read_unit * MILLION:.3f}/M read "
        "units. Billed durations are the REPORT lines' (duration + init, rounded up to 1 ms) at the memory "
        "each function is configured with. The first column takes the emulator's own measured share "
        f"({_f(m.get('emulator_ms_per_text'), 1)} ms per text, see Efficiency) out of the batcher's billed "
        "ms, as AWS would bill the function's own work; the second is the raw local figure.",
        "",
        *_table(
            [
                "path",
                "USD / M (own work)",
                "USD / M (as measured)",
                *SERVICES,
                "x cheaper than naive_fair",
                "what was measured",
            ],
            rows,
        ),
        "Counted per prediction: the SQS path's client submission (POST /v1/batches of "
        f"{api.get('texts', 'n/a')} texts, billed {per_call(api.get('post'))} ms) and one GET of its "
        f"results (billed {per_call(api.get('get'))} ms), each a REST API request and an api-function "
        "invocation; one SQS message per chunk of "
        f"{m.get('chunk_texts', 'n/a')} requests (SendMessageBatch of 10, one request per 64 KiB); the "
        "event source mapping's ReceiveMessage and DeleteMessageBatch; the batcher's invocations; DynamoDB: "
        "the #meta write, one result item per chunk and one conditional #meta update per invocation, the "
        "page's Query over chunk items and the #meta read, and the cache record reads and writes the "
        "batcher itself counted (its log: shared-tier reads, admitted writes), at the item sizes measured "
        f"in the tables (record {_f(sizes.get('record'), 0)} B, result chunk "
        f"{_f(sizes.get('result_chunk'), 0)} B). `naive_fair` is the naive PyTorch function behind the same "
        "REST API with a stored result written and read (what the goals compare with); `naive_fair_cold` "
        "adds its cold starts at the share the warmers' bursty trace measured "
        f"({_f((m.get('cold_share') or 0) * 100, 1)} %, init {_f(m.get('naive_init_ms'), 0)} ms: a short "
        "bursty trace, so an upper bound). `sqs_unique_5` is per text with all five models (five "
        "predictions). The steady-state Zipf rows project the unique run's per-text billed ms (split into "
        f"encode, {_f(m.get('encode_ms_per_text'), 1)} ms per text encoded, and the rest) onto the counts of "
        f"{steady.get('requests', 'n/a')} requests of Zipf(1.1) served by the real cache code in-process "
        "(bench/admission.py): texts encoded, record reads and writes per request.",
        "",
    ]
    if steady:
        on, off, every = steady["on"], steady["off"], steady["on_admit_all"]
        lines += [
            "Admission on the steady-state stream (per request): "
            f"caches off encode {_f(off['encoded_per_request'], 3)}; caches on encode "
            f"{_f(on['encoded_per_request'], 3)}, read {_f(on['reads_per_request'], 3)} and write "
            f"{_f(on['writes_per_request'], 3)} records with the doorkeeper (answer hit rate "
            f"{_f(on['answer_hit_rate'] * 100, 1)} %), against {_f(every['writes_per_request'], 3)} writes "
            f"writing every record (hit rate {_f(every['answer_hit_rate'] * 100, 1)} %). Break-even: a "
            f"record write pays back after {_f(d.get('break_even_hits_per_write'), 1)} shared hits (a hit "
            "saves an encode at the measured ms and pays an eventually consistent read).",
            "",
        ]
    fixed = c.get("fixed")
    if fixed:
        parts = ", ".join(f"{k} ${v:.2f}" for k, v in fixed["items"].items())
        volume = fixed.get("break_even_predictions_per_month")
        lines += [
            f"Fixed cost before any prediction: **${fixed['usd_per_month']:.2f} per month** ({parts}; the "
            "template's default schedules, per-run billed ms and the metric count assumed as listed in "
            "`bench/cost.py::Fixed`). Against the fair naive peer that pays back from "
            f"{_f((volume or 0) / 1e6, 2)} million predictions a month.",
            "",
        ]
    if paths.get("sqs_unique") and fair:
        lines += [f"Headline: {headline(paths)}", ""]
    return lines


def headline(paths: dict[str, Any]) -> str:
    """The sentence for the README: the fair comparison."""
    usd = {k: (v or {}).get("usd_per_million") for k, v in paths.items()}
    fair, sqs = usd.get("naive_fair"), usd.get("sqs_unique")
    return (
        f"At AWS list prices, a million predictions cost **${_f(sqs, 2)}** on the SQS batch path (unique "
        f"texts, one model, results stored and fetched) against **${_f(fair, 2)}** for the naive per-request "
        "PyTorch Lambda behind the same REST API with a stored result "
        f"(${_f(usd.get('naive_lambda'), 2)} bare): **{_f(ratio(fair, sqs), 1)}x cheaper**; the synchronous "
        f"path costs ${_f(usd.get('sync_http'), 2)} behind the REST API and "
        f"${_f(usd.get('sync_http_function_url'), 2)} behind a function URL (bench/REPORT.md)."
    )


def section_efficiency(eff: dict[str, Any] | None, zc: dict[str, Any] | None) -> list[str]:
    lines = ["## Efficiency: billed time against the encoder's own", ""]
    if eff:
        ms = eff["ms_per_text"]
        own = ms["billed"] - eff["emulator_ms_per_text"]
        lines += [
            f"The capacity run's {eff['texts']} unique texts ({eff['invocations']} batcher invocations), "
            "then the same texts tokenised and encoded in this process with the batcher's encoder batch size "
            f"({eff['encoder']['batch_size']}). Efficiency = in-process ms/text / billed ms/text = "
            f"**{_f(eff['efficiency'], 2)}**; without the emulator's share "
            f"{_f(eff['efficiency_without_emulator'], 2)}.",
            "",
            *_table(
                ["ms per text", "value", "what"],
                [
                    [
                        "encoder in process",
                        _f(eff["encoder_in_process_ms_per_text"], 2),
                        "tokenise + encode, median of rounds",
                    ],
                    ["batcher billed", _f(ms["billed"], 2), "REPORT lines (init included)"],
                    ["of which init", _f(ms["init"], 2), "cold starts inside the window"],
                    [
                        "of which encode (its own timer)",
                        _f(ms["encode_in_function"], 2),
                        f"{_f(eff['encode_in_function_over_in_process'], 2)}x in process: CPU shared "
                        "with the emulator",
                    ],
                    [
                        "emulator: cache calls to DynamoDB Local",
                        _f(ms["cache_dynamodb_local"], 2),
                        "the batcher's cache timer",
                    ],
                    [
                        "emulator: result writes to DynamoDB Local",
                        _f(ms["result_writes_dynamodb_local"], 2),
                        "same rows rewritten from here in batch-sized calls, timed",
                    ],
                    [
                        "emulator: executor's fixed cost",
                        _f(ms["executor_fixed"], 2),
                        f"empty-batch invocation {_f(eff['empty_invoke_ms']['median'], 1)} ms x invocations",
                    ],
                    ["billed less the emulator's", _f(own, 2), "the function's own work"],
                ],
            ),
        ]
    if zc:
        rows = [
            [k, _f(v["billed_ms_per_request"], 1), _f(v["encoded_per_request"], 3)]
            for k, v in zc["per_variant"].items()
        ]
        lines += [
            f"Zipf(1.1) stream of {zc['stream']} requests (backlog drain): caches cut billed batcher ms per "
            f"request **{_f(zc['reduction'], 2)}x** ({zc['off_variant']} -> +prediction_cache); texts "
            f"encoded per request fall {_f(zc['ideal'], 2)}x, the most free cache lookups could give on "
            "this stream.",
            "",
            *_table(["variant", "billed ms / request", "texts encoded / request"], rows),
        ]
    return lines


def _row(*cells: Any) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    return [_row(*header), _row(*["---"] * len(header)), *[_row(*r) for r in rows], ""]


def _lat(summary: dict[str, Any], key: str) -> str:
    return _f(summary[key], 0)


def section_inprocess(inp: dict[str, Any]) -> list[str]:
    c, p, cache = inp["ceiling"], inp["peer"], inp["cache_latency"]
    ceiling, peer = c["ceiling_texts_per_s"], p["throughput_median"]["peer"]
    lat = p["latency_ms"]
    four = p.get("four_heads", {})
    return [
        "## 1. Ceiling: the raw INT8 encoder",
        "",
        f"{c['texts']} 20NG test texts, {c['rounds']} interleaved rounds. Best batch size: "
        f"**{c['best_batch']}**, ceiling **{_f(ceiling)} texts/s**.",
        "",
        *_table(
            ["variant", "texts/s (median)", "% of ceiling"],
            [[k, _f(v), _pct(ratio(v, ceiling))] for k, v in c["throughput_median"].items()],
        ),
        "## 6. Peer: the naive per-request loop, and 7. four heads for one",
        "",
        f"Same texts, {p['rounds']} interleaved rounds. Peer = sentence-transformers (PyTorch fp32) + "
        "pickled "
        f"scikit-learn logistic regression, one request at a time ({p['peer_texts']} texts; ours batched on "
        f"{p['batched_texts']} texts).",
        "",
        *_table(
            ["variant", "texts/s (median)", "% of ceiling", "x peer"],
            [
                [k, _f(v), _pct(ratio(v, ceiling)), _f(ratio(v, peer), 2)]
                for k, v in p["throughput_median"].items()
            ],
        ),
        f"Per-request latency p50: peer {_f(lat['peer']['p50'])} ms, ours "
        f"{_f(lat['ours_per_request']['p50'])} ms "
        f"(peer / ours {_f(p['p50_peer_over_ours_per_request'], 2)}x).",
        "",
        f"Four heads for a text cost **{_f(p['four_heads_cost_ratio'], 3)}x** one head: (encode + all four "
        "heads) "
        "/ encode inside the same calls (an upper bound, immune to drift); paired wall-clock ratio of "
        "one-head and "
        f"four-head calls on the same batches: median {_f(four.get('paired_wall_ratio_median'), 3)}x over "
        f"{four.get('rounds')} rounds. The heads alone per text (ms): "
        + ", ".join(f"{k} {v:.4f}" for k, v in p["head_ms_per_text"].items())
        + ".",
        "",
        f"Cache-hit latency in the service (LRU tier): p50 {_f(cache['hit_ms']['p50'], 3)} ms vs miss "
        f"{_f(cache['miss_ms']['p50'], 1)} ms ({_pct(cache['hit_over_miss_p50'])}).",
        "",
        *_rollout_cost(inp.get("rollout_cost")),
    ]


def _rollout_cost(rc: dict[str, Any] | None) -> list[str]:
    if not rc:
        return []
    med = rc["ms_per_text_median"]
    share = rc["heads_over_encoder_median"]
    return [
        "### What a rollout costs a request",
        "",
        f"{rc['texts']} fresh texts in requests of {rc['batch']}, {rc['rounds']} interleaved rounds "
        "(caches off). A shadow scoring every text costs "
        f"**{_f(rc['shadow_over_production'], 3)}x** production alone per text; a 20% canary "
        f"{_f(rc['canary_over_production'], 3)}x. Inside the calls, heads / encoder: "
        + ", ".join(f"{k} {_pct(v)}" for k, v in share.items())
        + ".",
        "",
        *_table(["variant", "ms per text (median)"], [[k, _f(v, 2)] for k, v in med.items()]),
    ]


def section_capacity(cap: dict[str, Any], ceiling: float | None, cloud: dict[str, Any]) -> list[str]:
    q = cap["sqs"]
    sustained = q["sustained_texts_per_s"]
    bt = q.get("batcher_time", {}).get("shares", {})
    return [
        "## Capacity",
        "",
        f"SQS path, backlog of {q['texts']} unique texts (BatchSize 100, window 1 s, all caches on): "
        "sustained "
        f"**{_f(sustained)} texts/s** ({_pct(ratio(sustained, ceiling))} of the ceiling), mean batch "
        f"{_f(q['mean_batch_size'])}, {q['completed']}/{q['texts']} completed. Where the batcher's time went "
        f"(its own timers over its billed duration): encode {_pct(bt.get('encode_ms'))}, cache lookups + "
        "writes "
        f"{_pct(bt.get('cache_ms'))}, heads {_pct(bt.get('heads_ms'))}, other (parsing, result writes) "
        f"{_pct(bt.get('other_ms'))}. HTTP path (2 closed-loop callers, caches off): {_f(cap['http_rps'])} "
        "req/s "
        f"({_pct(ratio(cap['http_rps'], ceiling))} of the ceiling).",
        "",
        f"Local cloud: {'started by the benchmark' if cloud.get('started_by_bench') else 'shared, reused'}; "
        f"SQS event source settings: {cloud.get('esm_settings')}. The batcher's encoder batch size: "
        f"{cloud.get('encode_batch_size') or 'the default (32)'} (the best batch size measured for the "
        "ceiling in this run).",
        "",
    ]


def section_saturation(sat: dict[str, Any], ceiling: float | None) -> list[str]:
    base = sat.get("+batching", next(iter(sat.values())))["sustained_texts_per_s"]
    rows = []
    for k, v in sat.items():
        t = v["sustained_texts_per_s"]
        rows.append([k, _f(t), _f(ratio(t, base), 2), _pct(ratio(t, ceiling)), _f(v["mean_batch_size"])])
    return [
        "## Zipf workload at saturation (backlog drain, SQS path)",
        "",
        *_table(["variant", "texts/s", "x +batching", "% of ceiling", "mean batch"], rows),
    ]


def section_sweep(sw: dict[str, Any], ceiling: float | None) -> list[str]:
    rows = []
    for p in sw["points"]:
        lat = p["latency_ms"]
        rows.append(
            [
                p["path"],
                p["variant"],
                p["workload"],
                _pct(p["fraction"]),
                _f(p["offered_rps"]),
                _f(p["throughput_rps"]),
                _pct(ratio(p["throughput_rps"], ceiling)),
                _lat(lat, "p50"),
                _lat(lat, "p95"),
                _lat(lat, "p99"),
                _pct(p["error_rate"]),
                _pct(p["cache_hit_ratio"]),
                _f(p["mean_batch_size"]),
            ]
        )
    header = [
        "path",
        "variant",
        "workload",
        "load",
        "offered /s",
        "throughput /s",
        "% ceiling",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "errors",
        "pred. cache hits",
        "mean batch",
    ]
    cap = sw["capacity"]
    return [
        "## 4-5. Request-rate sweep (open-loop Poisson arrivals)",
        "",
        f"Capacity used for the offered loads: SQS {_f(cap['sqs'])}/s, HTTP {_f(cap['http'])}/s. Latency = "
        "result written (SQS) or response received (HTTP) minus the *scheduled* arrival. Adaptive SLO "
        f"{sw['slo_ms']} ms.",
        "",
        *_table(header, rows),
    ]


def section_warmers(w: dict[str, Any]) -> list[str]:
    trace = w["trace"]
    rows = [
        [
            f"{k} warmers",
            _pct(w[k]["cold_share"]),
            w[k]["cold_starts"],
            _lat(w[k]["latency_ms"], "p50"),
            _lat(w[k]["latency_ms"], "p99"),
        ]
        for k in ("without", "with")
    ]
    return [
        "## 3. Warmers on a bursty trace",
        "",
        f"{w['without']['requests']} requests over {_f(trace['duration_s'], 0)} s in bursts with "
        "heavy-tailed idle "
        f"gaps (lognormal, CV {_f(trace['gap_cv'], 2)}; {_pct(trace['share_of_gaps_over_keepalive'])} of "
        "gaps "
        f"longer than the keep-alive). Keep-alive {w['keepalive_s']} s, emulated: the replay reclaims an "
        "environment idle that long (the shared LocalStack's own keep-alive is fixed at 10 min); warmer "
        "every "
        f"{w['warm_every_s']} s.",
        "",
        *_table(["", "cold share", "cold starts", "p50 ms", "p99 ms"], rows),
        f"Cold starts removed: **{_pct(w['cold_starts_removed'])}**; p99 with / without: "
        f"{_f(w['p99_ratio_with_over_without'], 2)}x. A cold start left with warmers comes from a burst: a "
        "request "
        "arriving while the one warm environment is busy gets a new (cold) environment.",
        "",
    ]


def section_cold(cs: dict[str, Any]) -> list[str]:
    sizes = cs["package_sizes"]
    rows = []
    for k, v in cs["stats"].items():
        zipped = sizes[k].get("zipped_bytes") or sizes[k].get("archive_bytes")
        rows.append(
            [
                k,
                _lat(v["init_ms"], "p50"),
                _lat(v["init_ms"], "p95"),
                _lat(v["first_response_ms"], "p50"),
                _lat(v["first_response_ms"], "p95"),
                _f(v["init_p50_over_naive"], 2),
                _lat(v["max_memory_mb"], "p50"),
                _lat(v.get("runtime_build_ms") or {"p50": None}, "p50"),
                _f(sizes[k]["unzipped_bytes"] / 2**20, 0),
                _f(zipped / 2**20 if zipped else None, 0),
            ]
        )
    header = [
        "variant",
        "init p50 ms",
        "init p95 ms",
        "first response p50 ms",
        "p95 ms",
        "init / naive",
        "max memory MB",
        "of init: build_runtime p50 ms",
        "unzipped MiB",
        "zipped / image archive MiB",
    ]
    return [
        "## 2. Cold starts",
        "",
        f"{cs['stats']['ours_int8']['n']} forced cold starts per variant, interleaved (environments renewed "
        "before each); first response = a synchronous invoke of a real predict request, init included.",
        "",
        *_table(header, rows),
        f"Note: {cs['naive_note']}.",
        "",
    ]


def _complete_cost(data: dict[str, Any]) -> None:
    """A run that stopped before the cost model was applied (its last step) still gets one, from what it
    measured: the paths it lacks stay null, item sizes missing fall back to the defaults of ItemSizes."""
    c = data["sections"].get("cost")
    if c and c.get("measured") and not c.get("paths"):
        from bench.cost import report

        c.update(report({"item_sizes": {}, **c["measured"]}))
        c["recomputed"] = (
            "the run stopped before its last step (cold starts, the naive peer, item sizes): the cost "
            "model was applied by bench/report.py to what it had measured, with default item sizes"
        )


def write(name: str) -> Path:
    data = json.loads((RESULTS / f"{name}.json").read_text())
    _complete_cost(data)
    images = plots(name, data)
    s = data["sections"]
    m = data["machine"]
    kind = "quick subset" if data.get("quick") else "full set"
    lines = [
        "# Benchmark report",
        "",
        f"Generated by `bench/report.py` from [`results/{name}.json`](results/{name}.json) ({kind}; command "
        f"`{data['command']}`; {m['utc']}; {m['cores']} cores, {m['cpu']}; load average at start "
        f"{m['loadavg_at_start']}; run took {_f(data.get('elapsed_s'), 0)} s).",
        "",
        "Method: variants are interleaved inside one run (this machine's speed drifts up to 3x between "
        "runs); "
        "figures are medians over rounds, and the headline numbers are ratios to the INT8 encoder ceiling "
        "or to "
        "the naive peer measured in the same run. Cloud figures go through LocalStack and the local-process "
        "Lambda executor on the same 2 cores as the client, so absolute latencies include LocalStack's own "
        "CPU time (and DynamoDB Local's: a 25-item BatchWriteItem takes ~300 ms here).",
        "",
        "## Goals",
        "",
        *_table(["goal", "measured", "verdict"], [list(g) for g in goals(data)]),
        "## Goals of issue 15",
        "",
        *_table(["goal", "measured", "verdict"], [list(g) for g in goals15(data)]),
        "## Goals of the cost issue (23)",
        "",
        *_table(["goal", "measured", "verdict"], [list(g) for g in cost_goals(data)]),
    ]
    if s.get("cost", {}).get("measured"):
        lines += section_cost(s["cost"])
        if s["cost"].get("recomputed"):
            lines += [f"Note: {s['cost']['recomputed']}", ""]
    if s.get("efficiency") or zipf_compute(s):
        lines += section_efficiency(s.get("efficiency"), zipf_compute(s))
    ceiling = s.get("inprocess", {}).get("ceiling", {}).get("ceiling_texts_per_s")
    if "inprocess" in s:
        lines += section_inprocess(s["inprocess"])
    if "capacity" in s:
        lines += section_capacity(s["capacity"], ceiling, data.get("local_cloud", {}))
    if "saturation_zipf" in s:
        lines += section_saturation(s["saturation_zipf"], ceiling)
    if "sweep" in s:
        lines += section_sweep(s["sweep"], ceiling)
    if "warmers" in s:
        lines += section_warmers(s["warmers"])
    if "cold_starts" in s:
        lines += section_cold(s["cold_starts"])
    if images:
        lines += ["## Plots", "", *[f"![{i}](results/{i})" for i in images], ""]
    for other in sorted(RESULTS.glob("*.json")):
        if other.stem == name:
            continue
        odata = json.loads(other.read_text())
        if "sections" not in odata:  # not a bench.run result (init-ab-*.json, gpu_check-*.json)
            continue
        kind = "quick subset" if odata.get("quick") else "full set"
        lines += [
            f"## Goals in the other run: [`results/{other.name}`](results/{other.name}), full report "
            f"[`results/{other.stem}.md`](results/{other.stem}.md) ({kind}, "
            f"{odata['machine']['utc']}, load average at start {odata['machine']['loadavg_at_start']})",
            "",
            *_table(["goal", "measured", "verdict"], [list(g) for g in goals(odata)]),
        ]
    text = "\n".join(lines) + "\n"
    REPORT.write_text(text)
    summary_path = RESULTS / ("summary.json" if name in ("quick", "full") else f"{name}-summary.json")
    summary_path.write_text(json.dumps(summary_json(data), indent=1) + "\n")
    # the same report kept beside the run's results (REPORT.md always shows the latest run)
    (RESULTS / f"{name}.md").write_text(text.replace("](results/", "]("))
    print(f"wrote {REPORT.relative_to(REPO)} and bench/results/{name}.md", file=sys.stderr)
    return REPORT


if __name__ == "__main__":
    default = "full" if (RESULTS / "full.json").exists() else "quick"
    write(sys.argv[1] if len(sys.argv) > 1 else default)
