"""The cost issue's item 2 in the report: the same streams of result chunks stored as the served grouped
DynamoDB items and as one S3 object per chunk (bench/results_storage.py), and the choice it supports."""

from __future__ import annotations

from typing import Any

from bench.report.markdown import fmt, table

_STREAMS = {"one_model": "one model per text", "five_models": "five models per text"}
_VARIANTS = {"grouped_items": "grouped DynamoDB items (served)", "s3_objects": "S3 object per chunk"}


def section(measured: dict[str, Any]) -> list[str]:
    """A table per variant and stream: units and dollars per million texts, write and page latency."""
    failed = [
        f"- {_STREAMS.get(k, k)}: not measured ({r['error']})" for k, r in measured.items() if "error" in r
    ]
    measured = {k: r for k, r in measured.items() if "variants" in r}
    if not measured:
        return ["### Results: grouped items against S3 objects per chunk", "", *failed, ""]
    rows = []
    for stream, runs in measured.items():
        for key, name in _VARIANTS.items():
            v = runs["variants"][key]
            units, usd = v["units_per_text"], v["usd_per_million_texts"]
            rows.append(
                [
                    f"{_STREAMS.get(stream, stream)}: {name}",
                    fmt(units["wru"], 3),
                    fmt(units["rru"], 3),
                    f"{fmt(units['s3_put'], 3)} / {fmt(units['s3_get'], 3)}",
                    fmt(usd["writes"], 3),
                    fmt(usd["reads"], 3),
                    fmt(usd["storage"], 4),
                    f"**{fmt(usd['total'], 3)}**",
                    fmt(v["write_ms_per_chunk_p50"], 1),
                    fmt(v["page_read_ms_p50"], 1),
                ]
            )
    first = next(iter(measured.values()))
    streams = "; ".join(
        f"{_STREAMS.get(k, k)}: {r['stream']['texts']} texts in {r['stream']['chunks']} chunks of up to "
        f"{r['stream']['chunk_texts_max']}, {fmt(r['stream']['chunk_payload_bytes_mean'], 0)} B compressed "
        f"per chunk; S3 writes cheaper only above {fmt(r['break_even']['write_chunk_bytes'], 0)} B a chunk "
        f"(~{fmt(r['break_even']['write_chunk_texts'], 0)} such texts)"
        for k, r in measured.items()
    )
    return [
        "### Results: grouped items against S3 objects per chunk, on the same streams",
        "",
        "Each stream is a finished batch's own result chunks, written and read back page by page "
        f"({first['limit']} results a page) both ways, alternating, {first['rounds']} rounds; every result "
        "was checked to come back once and in order. The S3 way keeps the progress in the `#meta` item as "
        "served (S3 cannot count atomically), so `completed` stays one read. Streams: "
        f"{streams}.",
        "",
        *table(
            [
                "stream: storage",
                "WRU / text",
                "RRU / text",
                "S3 PUT / GET per text",
                "writes $/M",
                "one read $/M",
                "storage $/M",
                "total $/M texts",
                "write ms / chunk p50",
                "page read ms p50",
            ],
            rows,
        ),
        *[
            f"- {_STREAMS.get(k, k)}: **{r['choice']['variant']}**: {r['choice']['reason']}"
            for k, r in measured.items()
        ],
        "",
    ]
