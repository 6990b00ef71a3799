"""The report's PNG plots: latency and throughput over the rate sweep, cost per path, cold starts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.cost import COLUMNS


def plots(name: str, data: dict[str, Any], results: Path) -> list[str]:
    """Write the run's plots into ``results`` as ``<name>-<what>.png``; their file names, in order."""
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
            path_png = results / f"{name}-{fname}.png"
            fig.savefig(path_png, dpi=110)
            plt.close(fig)
            out.append(path_png.name)
    paths = data["sections"].get("cost", {}).get("paths")
    if paths:
        out.append(cost_plot(name, paths, plt, results))
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
        path_png = results / f"{name}-coldstarts.png"
        fig.savefig(path_png, dpi=110)
        plt.close(fig)
        out.append(path_png.name)
        if cs.get("breakdown"):
            out.append(init_breakdown_plot(name, cs["breakdown"], plt, results))
    return out


def init_breakdown_plot(name: str, b: dict[str, Any], plt: Any, results: Path) -> str:
    """Imports by package and the runtime's steps, one bar each (a person sees the big ones at once)."""
    items = [(f"import {k}", v) for k, v in b["imports_ms"].items() if v >= 1.0]
    items += [(k, v["ms"]) for k, v in b["steps_ms"].items() if "waits" not in k]
    items.sort(key=lambda kv: kv[1])
    fig, ax = plt.subplots(figsize=(9, 0.32 * len(items) + 1.5))
    ax.barh([k for k, _ in items], [v for _, v in items], color="tab:blue")
    for i, (_, v) in enumerate(items):
        ax.text(v, i, f" {v:.0f}", va="center", fontsize=7)
    med = b["median_ms"]
    ax.set_xlabel("ms (median of rounds)")
    ax.set_title(
        f"Where init goes: process {med['process_wall_ms']:.0f} ms, handler import "
        f"{med['handler_import_ms']:.0f} ms (build_runtime {med['build_runtime_ms']:.0f} ms)",
        fontsize=9,
    )
    fig.tight_layout()
    path_png = results / f"{name}-init-breakdown.png"
    fig.savefig(path_png, dpi=110)
    plt.close(fig)
    return path_png.name


def cost_plot(name: str, paths: dict[str, Any], plt: Any, results: Path) -> str:
    """Dollars per million predictions per path, stacked by the cost table's columns (linear: a stacked bar
    on a log axis would hide its first segment). A bar over three times the next largest (the naive peer's
    cold starts) is cut at the axis, its total written at the edge, so the others stay readable."""
    measured = [(k, v) for k, v in paths.items() if v]
    fig, ax = plt.subplots(figsize=(10, 0.6 * len(measured) + 1.8))
    left = [0.0] * len(measured)
    for column, title in COLUMNS.items():
        widths = [v["by_column"].get(column, 0.0) for _, v in measured]
        ax.barh([k for k, _ in measured], widths, left=left, label=title)
        left = [a + b for a, b in zip(left, widths, strict=True)]
    totals = sorted((v["usd_per_million"] for _, v in measured), reverse=True)
    edge = 1.3 * totals[1] if len(totals) > 1 and totals[0] > 3 * totals[1] else None
    if edge is not None:
        ax.set_xlim(0, edge)
    for i, (_, v) in enumerate(measured):
        usd = v["usd_per_million"]
        cut = edge is not None and usd > edge
        x, align = (edge * 0.99, "right") if cut and edge else (usd * 1.02, "left")
        label = f"${usd:,.2f}" + (" (cut)" if cut else "")
        ax.text(x, i, label, va="center", ha=align, fontsize=8, color="white" if cut else "black")
    ax.set_xlabel("USD per million predictions (AWS us-east-1 list prices)")
    ax.set_title("What a million predictions cost, from the billed durations measured here")
    ax.invert_yaxis()
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    path_png = results / f"{name}-cost.png"
    fig.savefig(path_png, dpi=110)
    plt.close(fig)
    return path_png.name
