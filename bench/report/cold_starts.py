"""Cold-start section: forced cold starts per package variant (init, first response, memory, size)."""

from __future__ import annotations

from typing import Any

from bench.report.markdown import fmt, percentile_ms, table
from topicserve.catalogue import MODEL_NAMES


def section(cs: dict[str, Any]) -> list[str]:
    sizes = cs["package_sizes"]
    rows = []
    for k, v in cs["stats"].items():
        size = sizes.get(
            k, sizes["ours_int8"] if k in MODEL_NAMES else {}
        )  # every predict function: one package
        zipped = size.get("zipped_bytes") or size.get("archive_bytes")
        rows.append(
            [
                k,
                percentile_ms(v["init_ms"], "p50"),
                percentile_ms(v["init_ms"], "p95"),
                percentile_ms(v["first_response_ms"], "p50"),
                percentile_ms(v["first_response_ms"], "p95"),
                fmt(v["init_p50_over_naive"], 2),
                percentile_ms(v["max_memory_mb"], "p50"),
                percentile_ms(v.get("runtime_build_ms") or {"p50": None}, "p50"),
                fmt(size["unzipped_bytes"] / 2**20, 0) if size else "-",
                fmt(zipped / 2**20 if zipped else None, 0),
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
        "## Cold starts",
        "",
        f"{cs['stats']['ours_int8']['n']} forced cold starts per variant, interleaved (environments renewed "
        "before each); first response = a synchronous invoke of a real predict request, init included. "
        f"`baseline` is release {cs.get('baseline_release', '?')} (its serving library and handler, today's "
        "encoder layer): the A/B that guards init time.",
        "",
        *table(header, rows),
        f"Note: {cs['naive_note']}.",
        "",
        *first_answer(cs),
        *breakdown(cs),
    ]


def first_answer(cs: dict[str, Any]) -> list[str]:
    fa = cs.get("first_answer")
    if not fa:
        return []
    return [
        "First answer through the API after a forced cold start (REST API -> predict function, "
        f"{fa['ok']} of {len(fa['raw'])} answered): p50 {percentile_ms(fa['ms'], 'p50')} ms, p95 "
        f"{percentile_ms(fa['ms'], 'p95')} ms.",
        "",
    ]


def breakdown(cs: dict[str, Any]) -> list[str]:
    """Where init goes: imports by package (``-X importtime``, self time) and the runtime's own steps."""
    b = cs.get("breakdown")
    if not b:
        return []
    med = b["median_ms"]
    imports = sorted(b["imports_ms"].items(), key=lambda kv: -kv[1])
    steps = sorted(b["steps_ms"].items(), key=lambda kv: -kv[1]["ms"])
    rows = [["import " + k, fmt(v, 1), "main"] for k, v in imports if v >= 1.0]
    rows += [[k, fmt(v["ms"], 1), v["thread"]] for k, v in steps]
    return [
        "### Where init goes",
        "",
        f"`python -m bench.init_breakdown` ({b['rounds']} rounds, medians; the {b['model']} function's own "
        "interpreter with `-I -S -B` as the local executor starts it: no bytecode written, as on AWS). "
        f"The process took {fmt(med['process_wall_ms'], 0)} ms: the runtime client's import "
        f"{fmt(med['runtime_client_ms'], 0)} ms, the handler module's import "
        f"{fmt(med['handler_import_ms'], 0)} ms, of which `build_runtime()` "
        f"{fmt(med['build_runtime_ms'], 0)} ms. Steps on loader threads run while the main thread waits "
        "(the `main thread waits` rows), so the rows add up to more than the wall time; imports below 1 ms "
        "are left out.",
        "",
        *table(["step", "ms (median)", "thread"], rows),
    ]
