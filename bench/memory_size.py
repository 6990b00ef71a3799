"""Billed cost per text of the encoder at one and two vCPUs: the memory-size question measured.

    python -m bench.memory_size [--texts 60] [--rounds 3]

Lambda gives CPU in proportion to memory: one vCPU at 1,769 MB, two at 3,538 MB. The local executor does
not throttle CPU by memory, so a function deployed at two sizes there runs at the same speed and proves
nothing; what can be measured here is the other half of the rule, in process: the served encoder with one
intra-op thread (what 1,769 MB buys) against two (3,538 MB), interleaved, one text per call as serving
runs it. The cost per million texts is billed ms x GB x the list price. Below 1,769 MB the share of a vCPU
shrinks with the memory, so a CPU-bound encoder takes proportionally longer for the same GB-seconds (and
more latency): the rule, not a measurement. Needs two idle cores; the machine's load is recorded.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Any

from bench.common import REPO, save, say
from bench.cost import compute_usd_per_million
from bench.texts import test_texts

SIZES = {1: 1769, 2: 3538}  # intra-op threads -> the memory (MB) that buys as many vCPUs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    from topicserve.bootstrap import load_encoder
    from topicserve.settings import Settings

    folder = REPO / "build" / "layers" / "encoder-int8" / "python" / "topicserve_encoder"
    encoders = {t: load_encoder(Settings(encoder_dir=str(folder), encoder_threads=t)) for t in SIZES}
    texts = test_texts(args.texts)
    for encoder in encoders.values():
        encoder.encode(texts[:3])  # first runs allocate: not part of a warm text
    raw: dict[int, list[float]] = {t: [] for t in SIZES}
    for r in range(args.rounds):
        for threads in sorted(SIZES, key=lambda t: (t + r) % len(SIZES)):  # order rotated per round
            started = time.perf_counter()
            for text in texts:
                encoders[threads].encode([text])
            raw[threads].append((time.perf_counter() - started) * 1000 / len(texts))
        say(
            f"  round {r + 1}/{args.rounds}: "
            + ", ".join(f"{t} thread(s) {raw[t][-1]:.1f} ms/text" for t in SIZES)
        )
    sizes: dict[str, Any] = {}
    for threads, memory in SIZES.items():
        ms = statistics.median(raw[threads])
        sizes[str(memory)] = {
            "vcpus": threads,
            "ms_per_text": round(ms, 2),
            "usd_per_million_texts": round(compute_usd_per_million(ms, memory), 4),
        }
    one, two = sizes[str(SIZES[1])], sizes[str(SIZES[2])]
    result = {
        "sizes": sizes,
        "speedup_two_vcpus": round(one["ms_per_text"] / two["ms_per_text"], 2),
        "cost_ratio_two_over_one": round(two["usd_per_million_texts"] / one["usd_per_million_texts"], 2),
        "load_at_start": os.getloadavg()[0],
        "raw_ms_per_text": {str(t): v for t, v in raw.items()},
    }
    save("memory-size", result, " ".join(["python -m bench.memory_size", *(argv or sys.argv[1:])]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
