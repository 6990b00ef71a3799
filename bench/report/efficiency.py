"""Efficiency section: the batcher's billed milliseconds per text against the encoder's own, in process,
and on the Zipf stream what the caches save per request."""

from __future__ import annotations

from typing import Any

from bench.report.markdown import fmt, table


def section(eff: dict[str, Any] | None, zc: dict[str, Any] | None) -> list[str]:
    lines = ["## Efficiency: billed time against the encoder's own", ""]
    if eff:
        ms = eff["ms_per_text"]
        own = ms["billed"] - eff["emulator_ms_per_text"]
        lines += [
            f"The capacity run's {eff['texts']} unique texts ({eff['invocations']} batcher invocations), "
            "then the same texts tokenised and encoded in this process with the batcher's encoder batch size "
            f"({eff['encoder']['batch_size']}). Efficiency = in-process ms/text / billed ms/text = "
            f"**{fmt(eff['efficiency'], 2)}**; without the emulator's share "
            f"{fmt(eff['efficiency_without_emulator'], 2)}.",
            "",
            *table(
                ["ms per text", "value", "what"],
                [
                    [
                        "encoder in process",
                        fmt(eff["encoder_in_process_ms_per_text"], 2),
                        "tokenise + encode, median of rounds",
                    ],
                    ["batcher billed", fmt(ms["billed"], 2), "REPORT lines (init included)"],
                    ["of which init", fmt(ms["init"], 2), "cold starts inside the window"],
                    [
                        "of which encode (its own timer)",
                        fmt(ms["encode_in_function"], 2),
                        f"{fmt(eff['encode_in_function_over_in_process'], 2)}x in process: CPU shared "
                        "with the emulator",
                    ],
                    [
                        "emulator: cache calls to DynamoDB Local",
                        fmt(ms["cache_dynamodb_local"], 2),
                        "the batcher's cache timer",
                    ],
                    [
                        "emulator: result writes to DynamoDB Local",
                        fmt(ms["result_writes_dynamodb_local"], 2),
                        "same rows rewritten from here in batch-sized calls, timed",
                    ],
                    [
                        "emulator: executor's fixed cost",
                        fmt(ms["executor_fixed"], 2),
                        f"empty-batch invocation {fmt(eff['empty_invoke_ms']['median'], 1)} ms x invocations",
                    ],
                    ["billed less the emulator's", fmt(own, 2), "the function's own work"],
                ],
            ),
        ]
    if zc:
        rows = [
            [k, fmt(v["billed_ms_per_request"], 1), fmt(v["encoded_per_request"], 3)]
            for k, v in zc["per_variant"].items()
        ]
        lines += [
            f"Zipf(1.1) stream of {zc['stream']} requests (backlog drain): caches cut billed batcher ms per "
            f"request **{fmt(zc['reduction'], 2)}x** ({zc['off_variant']} -> +prediction_cache); texts "
            f"encoded per request fall {fmt(zc['ideal'], 2)}x, the most free cache lookups could give on "
            "this stream.",
            "",
            *table(["variant", "billed ms / request", "texts encoded / request"], rows),
        ]
    return lines
