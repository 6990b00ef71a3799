"""Cost section: dollars per million predictions per path at AWS list prices, from the billed durations
and the counts the run measured (the model itself is bench/cost.py)."""

from __future__ import annotations

from typing import Any

from bench.common import ratio
from bench.cost import MILLION, PRICES
from bench.report.figures import SERVICES
from bench.report.markdown import fmt, table


def section(c: dict[str, Any]) -> list[str]:
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
                f"**{fmt(p['usd_per_million'], 3)}**",
                fmt((raw.get(name) or {}).get("usd_per_million"), 3),
                *[fmt(by.get(k, 0.0), 3) for k in SERVICES],
                fmt(ratio(fair, p["usd_per_million"]), 1),
                p["note"],
            ]
        )
    sizes = m.get("item_sizes", {})
    api = m.get("api", {})
    d = c.get("derived") or {}
    steady = m.get("zipf_steady") or {}

    def per_call(b: dict[str, Any] | None) -> str:
        return fmt(b["billed_ms"] / max(1, b["invocations"]), 0) if b else "n/a"

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
        f"({fmt(m.get('emulator_ms_per_text'), 1)} ms per text, see Efficiency) out of the batcher's billed "
        "ms, as AWS would bill the function's own work; the second is the raw local figure.",
        "",
        *table(
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
        f"in the tables (record {fmt(sizes.get('record'), 0)} B, result chunk "
        f"{fmt(sizes.get('result_chunk'), 0)} B). `naive_fair` is the naive PyTorch function behind the same "
        "REST API with a stored result written and read (what the goals compare with); `naive_fair_cold` "
        "adds its cold starts at the share the warmers' bursty trace measured "
        f"({fmt((m.get('cold_share') or 0) * 100, 1)} %, init {fmt(m.get('naive_init_ms'), 0)} ms: a short "
        "bursty trace, so an upper bound). `sqs_unique_5` is per text with all five models (five "
        "predictions). The steady-state Zipf rows project the unique run's per-text billed ms (split into "
        f"encode, {fmt(m.get('encode_ms_per_text'), 1)} ms per text encoded, and the rest) onto the "
        "counts of "
        f"{steady.get('requests', 'n/a')} requests of Zipf(1.1) served by the real cache code in-process "
        "(bench/admission.py): texts encoded, record reads and writes per request.",
        "",
    ]
    if steady:
        on, off, every = steady["on"], steady["off"], steady["on_admit_all"]
        lines += [
            "Admission on the steady-state stream (per request): "
            f"caches off encode {fmt(off['encoded_per_request'], 3)}; caches on encode "
            f"{fmt(on['encoded_per_request'], 3)}, read {fmt(on['reads_per_request'], 3)} and write "
            f"{fmt(on['writes_per_request'], 3)} records with the doorkeeper (answer hit rate "
            f"{fmt(on['answer_hit_rate'] * 100, 1)} %), against {fmt(every['writes_per_request'], 3)} writes "
            f"writing every record (hit rate {fmt(every['answer_hit_rate'] * 100, 1)} %). Break-even: a "
            f"record write pays back after {fmt(d.get('break_even_hits_per_write'), 1)} shared hits (a hit "
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
            f"{fmt((volume or 0) / 1e6, 2)} million predictions a month.",
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
        f"At AWS list prices, a million predictions cost **${fmt(sqs, 2)}** on the SQS batch path (unique "
        f"texts, one model, results stored and fetched) against **${fmt(fair, 2)}** for the naive "
        "per-request "
        "PyTorch Lambda behind the same REST API with a stored result "
        f"(${fmt(usd.get('naive_lambda'), 2)} bare): **{fmt(ratio(fair, sqs), 1)}x cheaper**; the "
        "synchronous "
        f"path costs ${fmt(usd.get('sync_http'), 2)} behind the REST API and "
        f"${fmt(usd.get('sync_http_function_url'), 2)} behind a function URL (bench/REPORT.md)."
    )


def complete_cost(data: dict[str, Any]) -> None:
    """A run that stopped before the cost model was applied (its last step) still gets one, from what it
    measured: the paths it lacks stay null, item sizes missing fall back to the defaults of ItemSizes."""
    c = data["sections"].get("cost")
    if c and c.get("measured") and not c.get("paths"):
        from bench.cost import report

        c.update(report({"item_sizes": {}, **c["measured"]}))
        c["recomputed"] = (
            "the run stopped before its last step (cold starts, the naive peer, item sizes): the cost "
            "model was applied by bench/report/cost.py to what it had measured, with default item sizes"
        )
