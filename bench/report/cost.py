"""Cost section: dollars per million predictions per path at AWS list prices, from the billed durations
and the counts the run measured (the model itself is bench/cost.py)."""

from __future__ import annotations

from typing import Any

from bench.common import ratio
from bench.cost import COLUMNS, MILLION, PRICES
from bench.report.markdown import fmt, table


def section(c: dict[str, Any]) -> list[str]:
    paths, raw, m = c.get("paths") or {}, c.get("paths_as_measured") or {}, c["measured"]
    basis = c.get("basis") or {}
    keep = basis.get("retention_seconds") or {}
    mon = basis.get("monitoring") or {}
    sizes = m.get("item_sizes", {})
    api = m.get("api", {})
    d = c.get("derived") or {}
    steady = m.get("zipf_steady") or {}
    five = m.get("five_models") or {}

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
        f"units, ${PRICES.ddb_storage_gb_month:.2f} per GB-month stored (item bytes + 100 B each), S3 "
        f"${PRICES.s3_put * 1000:.3f} per 1,000 PUT or LIST and ${PRICES.s3_get * 1000:.4f} per 1,000 GET, "
        f"${PRICES.s3_storage_gb_month:.3f} per GB-month, CloudWatch Logs "
        f"${PRICES.logs_ingested_gb:.2f} per GB ingested. A prediction is one text answered by one model: "
        "every figure is per million predictions, and a five-model row (`_5`) is a text answered by all "
        "five models, its per-text cost over five (`USD / M texts` is the per-text figure). Billed "
        "durations are the REPORT lines' (duration + init, rounded up to 1 ms) at the memory each function "
        "is configured with; init is its own column. `own work` takes the emulator's own measured share "
        f"({fmt(m.get('emulator_ms_per_text'), 1)} ms per text, see Efficiency) out of the batcher's billed "
        "ms, as AWS would bill the function's own work; `as measured` is the raw local figure.",
        "",
        *table(
            [
                "path",
                "USD / M (own work)",
                "USD / M (as measured)",
                "USD / M texts",
                *COLUMNS.values(),
                "x cheaper than naive_fair",
            ],
            [
                _usd_row(name, p, raw.get(name), (paths.get("naive_fair") or {}).get("usd_per_million"))
                for name, p in paths.items()
            ],
        ),
        "Units per path: billed ms per text of each function at its memory (as measured, and with the "
        "emulator's share taken out), DynamoDB read and write units per prediction over every table "
        "(monitoring's included), the item sizes they were computed from, S3 requests and log bytes per "
        "prediction, latency (the synchronous probes: per request; the SQS runs: from send to the result "
        "written; a five-model synchronous row: the slowest model's, a lower bound of a parallel fan-out).",
        "",
        *table(
            [
                "path",
                "billed ms / text @ MB (as measured)",
                "billed ms / text @ MB (own work)",
                "init ms / text",
                "RRU / pred.",
                "WRU / pred.",
                "item sizes (B)",
                "S3 req. / pred.",
                "log B / pred.",
                "p50 ms",
                "p99 ms",
                "what was measured",
            ],
            [_units_row(name, p, raw.get(name)) for name, p in paths.items()],
        ),
        "Counted per text: the SQS path's client submission (POST /v1/batches of "
        f"{api.get('texts', 'n/a')} texts, billed {per_call(api.get('post'))} ms) and one GET of its "
        f"results (billed {per_call(api.get('get'))} ms), each a REST API request and an api-function "
        "invocation; one SQS message per chunk of "
        f"{m.get('chunk_texts', 'n/a')} requests (SendMessageBatch of 10, one request per 64 KiB); the "
        "event source mapping's ReceiveMessage and DeleteMessageBatch; the batcher's invocations; DynamoDB: "
        "the #meta write, one result item per chunk and one conditional #meta update per invocation, the "
        "page's Query over chunk items and the #meta read, and the cache record reads and writes the "
        "batcher itself counted (its log: shared-tier reads, admitted writes), at the item sizes measured "
        f"in the tables (record {fmt(sizes.get('record'), 0)} B, result {fmt(sizes.get('result'), 0)} B; "
        "result chunks per run). The synchronous rows are one request per text count to a model's own "
        "predict function (unique texts, caches on: one record read that misses, no write); a five-model "
        "synchronous row is one text sent to all five functions. Storage: result items and #meta for "
        f"the results TTL ({fmt((keep.get('results_seconds') or 0) / 3600, 0)} h), admitted cache records "
        f"for theirs ({fmt((keep.get('cache_seconds') or 0) / 86400, 0)} days), billed from the item bytes "
        "plus 100 B per item (TTL deletion lags expiry: a lower bound). Logs: the measured bytes of each "
        "function's log events in the run's window (every line, EMF metrics included), priced per GB "
        "ingested; n/a (and priced 0) where the run did not measure them. S3: no serving path reads or "
        "writes S3 per prediction (the monitor's reports are in the fixed cost). Monitoring, at the "
        f"template's defaults: the served-answers ledger ({fmt(mon.get('ledger_sample'), 2)} of distinct "
        f"texts, one ~{fmt(mon.get('ledger_item_bytes'), 0)} B write per model), sampled embeddings "
        f"({fmt(mon.get('embedding_sample'), 2)} of the texts encoded, one "
        f"~{fmt(mon.get('embedding_item_bytes'), 0)} B item: 2 write units; the per-window cap only lowers "
        "it), one window-sums ADD per model per flush (the batcher after every batch; a predict function "
        f"every {fmt(mon.get('flush_seconds'), 0)} s, assumed at "
        f"{fmt(mon.get('sync_requests_per_second'), 1)} request/s per environment), and those items kept "
        f"{fmt((keep.get('monitor_seconds') or 0) / 86400, 0)} days; rollout records are written only while "
        "a shadow or canary runs (none at the defaults), label feedback only when labels arrive: neither is "
        "priced per prediction. `naive_fair` is the naive PyTorch function behind the same REST API with a "
        "stored result written, read and kept for the results TTL (what the goals compare with); it answers "
        "one model per request, so five models cost it the same per prediction. `naive_fair_cold` adds its "
        "cold starts at the share the warmers' bursty trace measured "
        f"({fmt((m.get('cold_share') or 0) * 100, 1)} %, init {fmt(m.get('naive_init_ms'), 0)} ms: a short "
        "bursty trace, so an upper bound). The steady-state Zipf rows project a unique run's per-text billed "
        f"ms (split into encode, {fmt(m.get('encode_ms_per_text'), 1)} ms per text encoded, and the rest) "
        f"onto the counts of {steady.get('requests', 'n/a')} requests of Zipf(1.1) served by the real cache "
        "code in-process (bench/admission.py): texts encoded, record reads and writes per request; the `_5` "
        "ones from the five-model run (its billed ms per text and its chunk sizes).",
        "",
    ]
    if five:
        lines += [
            f"Five models against one: {five.get('rounds', 'n/a')} interleaved rounds on the same texts, "
            "each round salted anew for both (`sqs_unique_paired` one model, `sqs_unique_5` five); a text "
            f"answered by five models costs {fmt(d.get('five_models_cost_ratio'), 2)}x one answered by one "
            "(per text, pooled over the rounds); the batcher's billed ms per text, median of the rounds' "
            f"ratios: {fmt(d.get('five_models_batcher_ms_ratio_median'), 2)}x.",
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
    if paths.get("sqs_unique") and paths.get("naive_fair"):
        lines += [f"Headline: {headline(paths)}", ""]
    return lines


def _why(name: str) -> str:
    return "no GPU on this machine" if name == "gpu_worker" else "not measured in this run"


def _usd_row(
    name: str, p: dict[str, Any] | None, raw: dict[str, Any] | None, fair: float | None
) -> list[str]:
    """One row of the dollars table: the totals, then each column's share (per million predictions)."""
    if not p:
        return [name, "n/a", "", "", *["" for _ in COLUMNS], _why(name)]
    by = p["by_column"]
    return [
        name,
        f"**{fmt(p['usd_per_million'], 3)}**",
        fmt((raw or {}).get("usd_per_million"), 3),
        fmt(p["usd_per_million_texts"], 3),
        *[fmt(by.get(k, 0.0), 3) for k in COLUMNS],
        fmt(ratio(fair, p["usd_per_million"]), 1),
    ]


def _units_row(name: str, p: dict[str, Any] | None, raw: dict[str, Any] | None) -> list[str]:
    """One row of the units table."""
    if not p:
        return [name, "n/a", *["" for _ in range(9)], _why(name)]
    u, lat = p["units"], p.get("latency_ms") or {}

    def ms(units: dict[str, Any] | None) -> str:
        rows = (units or {}).get("billed_ms_per_text") or []
        return "; ".join(f"{r['function']} {fmt(r['billed_ms'], 1)} @ {fmt(r['memory_mb'], 0)}" for r in rows)

    return [
        name,
        ms((raw or {}).get("units")),
        ms(u),
        fmt(u["init_ms_per_text"], 1),
        fmt(u["rru"], 3),
        fmt(u["wru"], 3),
        ", ".join(f"{k} {fmt(v, 0)}" for k, v in p["item_bytes"].items()),
        fmt(u["s3_requests"], 0),
        fmt(u["log_bytes"], 0),
        fmt(lat.get("p50"), 0),
        fmt(lat.get("p99"), 0),
        p["note"],
    ]


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
    """Apply the cost model as it stands (bench/cost.py) to what the run measured, so the report and
    summary.json are regenerated from the measured inputs alone: a run saved before a column or a path
    was added gets them (n/a where it lacks the measurement), and a run that stopped before the cost
    model was applied (its last step) still gets one, item sizes missing falling back to ItemSizes'."""
    c = data["sections"].get("cost")
    if not (c and c.get("measured")):
        return
    from bench.cost import report

    stopped = not c.get("paths")
    c.update(report(c["measured"]))
    if stopped:
        c["recomputed"] = (
            "the run stopped before its last step (cold starts, the naive peer, item sizes): the cost "
            "model was applied by bench/report/cost.py to what it had measured, with default item sizes"
        )
