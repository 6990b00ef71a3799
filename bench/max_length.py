"""Tokens are the floor: each head's accuracy and the encoder's cost per text at max lengths 128-256.

Once the writes are gone, the encoder's own compute is most of a prediction's bill, and it grows with the
tokens read (20NG texts average ~140 tokens; the encoder reads up to ``max_length``). The model was trained
at 128 tokens, serving reads 256. This measures, on the same test texts, the served heads' accuracy from
embeddings made at each length, and the encoder's milliseconds per text at each length interleaved (the
lengths take turns over the same chunks of texts, one text per call as served), and says whether a
shorter length keeps every head within ``--tolerance`` (0.5 point) of the served one.

    python -m bench.max_length              # the whole test split (~5 min on 2 cores)
    python -m bench.max_length --limit 1000

Writes bench/results/max-length.json (with the command).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import say
from bench.inprocess import MANIFEST, load_heads

LENGTHS = (128, 192, 256)
RESULTS = Path(__file__).resolve().parent / "results"


def measure(
    texts: list[str], labels: np.ndarray, lengths: tuple[int, ...], chunk: int = 100
) -> dict[str, Any]:
    from topicserve.encoder import Encoder

    info = json.loads(MANIFEST.read_text())["encoder"]["int8"]
    repo = MANIFEST.parents[2]
    encoders = {
        n: Encoder(
            repo / info["path"],
            repo / info["tokenizer_path"],
            max_length=n,
            pre_optimized=bool(info.get("graph_optimization")),
        )
        for n in lengths
    }
    embeddings: dict[int, list[np.ndarray]] = {n: [] for n in lengths}
    seconds: dict[int, float] = dict.fromkeys(lengths, 0.0)
    tokens: dict[int, int] = dict.fromkeys(lengths, 0)
    for k, start in enumerate(range(0, len(texts), chunk)):
        part = texts[start : start + chunk]
        order = lengths if k % 2 == 0 else lengths[::-1]  # interleaved, alternating order
        for n in order:
            ids = [t.ids for t in encoders[n].tokenize(part)]
            tokens[n] += sum(len(i) for i in ids)
            t0 = time.perf_counter()
            embeddings[n].append(encoders[n].encode_tokens(ids, 1))
            seconds[n] += time.perf_counter() - t0
        say(f"  {min(start + chunk, len(texts))}/{len(texts)} texts")
    heads = load_heads()
    out: dict[str, Any] = {"texts": len(texts), "lengths": {}}
    for n in lengths:
        e = np.concatenate(embeddings[n])
        out["lengths"][str(n)] = {
            "ms_per_text": 1000 * seconds[n] / len(texts),
            "tokens_per_text": tokens[n] / len(texts),
            "accuracy": {name: float((h.predict(e) == labels).mean()) for name, h in heads.items()},
        }
    return out


def verdict(result: dict[str, Any], served: int, tolerance: float) -> dict[str, Any]:
    base = result["lengths"][str(served)]
    rows = {}
    for n, r in result["lengths"].items():
        drops = {h: base["accuracy"][h] - a for h, a in r["accuracy"].items()}
        rows[n] = {
            "cost_ratio_to_served": r["ms_per_text"] / base["ms_per_text"],
            "worst_drop_points": 100 * max(drops.values()),
            "keeps_every_head": max(drops.values()) * 100 <= tolerance,
        }
    ok = [int(n) for n, r in rows.items() if r["keeps_every_head"]]
    return {"served": served, "tolerance_points": tolerance, "per_length": rows, "adopt": min(ok)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, help="the first N test texts (default: all)")
    parser.add_argument("--tolerance", type=float, default=0.5, help="accuracy points a head may lose")
    args = parser.parse_args(argv)
    from bench.texts import test_labelled

    texts, labels = test_labelled(args.limit)
    say(f"== encoder max length {LENGTHS}: {len(texts)} test texts, interleaved")
    result = measure(texts, labels, LENGTHS)
    result["verdict"] = verdict(result, 256, args.tolerance)
    result["command"] = "python -m bench.max_length " + shlex.join(argv if argv is not None else sys.argv[1:])
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "max-length.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({"lengths": result["lengths"], "verdict": result["verdict"]}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
