"""In-process benchmarks: the encoder ceiling, the naive peer, four heads versus one, cache-hit latency.

Everything here runs in this Python process on the same texts, with the variants *interleaved* round by
round (A B C, A B C, ...) so that the machine's drift hits them alike; per-variant medians over rounds and
ratios are reported. The serving code is the real one: :class:`topicserve.encoder.Encoder`,
:class:`topicserve.heads.Head` and :class:`topicserve.service.InferenceService` (no copy of the pipeline).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bench.common import REPO, WORK, pct, ratio, say, summary
from bench.texts import salted
from topicserve.catalogue import MODEL_NAMES

if TYPE_CHECKING:
    from topicserve.encoder import Encoder
    from topicserve.service import InferenceService

MANIFEST = REPO / "build" / "models" / "manifest.json"
MODELS = MODEL_NAMES


#: intra-op threads of the model functions' encoder (template.yaml EncoderThreads, default 0: one per core)
SERVED_THREADS = None


def load_encoder(variant: str = "int8") -> Encoder:
    """The encoder as the model functions run it: one blocking thread per core, the build's optimised
    graph loaded as is."""
    from topicserve.encoder import Encoder

    info = json.loads(MANIFEST.read_text())["encoder"][variant]
    return Encoder(
        REPO / info["path"],
        REPO / info["tokenizer_path"],
        max_length=info["max_length"],
        version=info["sha256"],
        intra_op_threads=SERVED_THREADS,
        pre_optimized=bool(info.get("graph_optimization")),
    )


def load_heads() -> dict[str, Any]:
    from topicserve.heads import Head

    manifest = json.loads(MANIFEST.read_text())
    return {
        name: Head(
            REPO / manifest["heads"][name]["path"], name=name, version="bench", labels=manifest["labels"]
        )
        for name in MODELS
    }


def rounds(variants: dict[str, Callable[[int], float]], n_rounds: int) -> dict[str, list[float]]:
    """Run each variant once per round, rotating the order; each returns its own figure for that round."""
    out: dict[str, list[float]] = {name: [] for name in variants}
    names = list(variants)
    for r in range(n_rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            out[name].append(variants[name](r))
        say(f"  round {r + 1}/{n_rounds}: " + ", ".join(f"{n} {out[n][-1]:.1f}" for n in names))
    return out


def ceiling(texts: list[str], batch_sizes: list[int], n_rounds: int) -> dict[str, Any]:
    """Raw INT8 encoder throughput (texts/s) per batch size, plus fp32 at 32; the best is the ceiling."""
    int8, fp32 = load_encoder("int8"), load_encoder("fp32")
    int8.encode(texts[:8]), fp32.encode(texts[:8])  # first-run allocations out of the timings

    def run(encoder: Encoder, batch: int) -> Callable[[int], float]:
        def go(_: int) -> float:
            started = time.perf_counter()
            encoder.encode(texts, batch_size=batch)
            return len(texts) / (time.perf_counter() - started)

        return go

    variants = {f"int8_b{b}": run(int8, b) for b in batch_sizes}
    variants["fp32_b32"] = run(fp32, 32)
    say(f"ceiling: {len(texts)} texts x {n_rounds} rounds, batch sizes {batch_sizes} (+ fp32 at 32)")
    raw = rounds(variants, n_rounds)
    medians = {k: float(np.median(v)) for k, v in raw.items()}
    best = max((k for k in medians if k.startswith("int8")), key=medians.__getitem__)
    return {
        "texts": len(texts),
        "rounds": n_rounds,
        "throughput_raw": raw,
        "throughput_median": medians,
        "best": best,
        "best_batch": int(best.split("_b")[1]),
        "ceiling_texts_per_s": medians[best],
        "fp32_over_int8_at_32": ratio(medians["fp32_b32"], medians.get("int8_b32")),
    }


def peer_and_heads(texts: list[str], n_rounds: int, peer_texts: int) -> dict[str, Any]:
    """Interleaved: the naive peer loop, our service one request at a time, our service batched, and our
    service with one head versus all four heads (same texts, caches off: every text is encoded)."""
    from bench.naive.function.app import NaiveClassifier  # the same code as the naive Lambda
    from bench.naive.package import PACKAGE, build
    from topicserve.service import InferenceService
    from topicserve.settings import Settings

    if not (PACKAGE / "heads" / "logreg.pkl").exists():
        build()
    naive = NaiveClassifier(PACKAGE / "heads", ["logreg"])
    encoder, heads = load_encoder("int8"), load_heads()
    service = InferenceService(encoder, heads, encode_batch_size=Settings().encode_batch_size)  # as served
    sample = texts[:peer_texts]
    naive.predict(sample[0], ["logreg"]), service.predict(sample[:2], ["logreg"])  # warm both
    latencies: dict[str, list[float]] = {"peer": [], "ours_per_request": []}

    def one_at_a_time(fn: Callable[[str], Any], key: str) -> Callable[[int], float]:
        def go(_: int) -> float:
            started = time.perf_counter()
            for t in sample:
                t0 = time.perf_counter()
                fn(t)
                latencies[key].append((time.perf_counter() - t0) * 1000)
            return len(sample) / (time.perf_counter() - started)

        return go

    def batched(models: tuple[str, ...]) -> Callable[[int], float]:
        def go(r: int) -> float:
            batch = salted(sample, f"h{r}")  # the peer's texts; distinct per round (no cache attached anyway)
            started = time.perf_counter()
            service.predict(batch, list(models))
            return len(batch) / (time.perf_counter() - started)

        return go

    say(f"peer vs ours: the same {len(sample)} texts one at a time and batched; {n_rounds} rounds")
    raw = rounds(
        {
            "peer": one_at_a_time(lambda t: naive.predict(t, ["logreg"]), "peer"),
            "ours_per_request": one_at_a_time(lambda t: service.predict([t], ["logreg"]), "ours_per_request"),
            "ours_batched_1head": batched(("logreg",)),
            "ours_batched_4heads": batched(MODELS),
        },
        n_rounds,
    )
    med = {k: float(np.median(v)) for k, v in raw.items()}
    four = four_heads(service, texts[:32], 4 * n_rounds)
    # the cost of the heads alone (embeddings given): one head versus four, on a batch
    emb = encoder.encode(texts[:256])
    head_ms = {m: _median_ms(partial(heads[m].predict_proba, emb), 5) / len(emb) for m in MODELS}
    return {
        "peer_texts": len(sample),
        "batched_texts": len(sample),
        "rounds": n_rounds,
        "throughput_raw": raw,
        "throughput_median": med,
        "latency_ms": {k: summary(v) for k, v in latencies.items()},
        "ours_batched_over_peer": ratio(med["ours_batched_1head"], med["peer"]),
        "ours_per_request_over_peer": ratio(med["ours_per_request"], med["peer"]),
        "p50_peer_over_ours_per_request": ratio(
            pct(latencies["peer"], 50), pct(latencies["ours_per_request"], 50)
        ),
        "four_heads_cost_ratio": four["within_call_ratio"],
        "four_heads": four,
        "four_heads_ratio_of_medians": ratio(med["ours_batched_1head"], med["ours_batched_4heads"]),
        "head_ms_per_text": head_ms,
    }


def four_heads(service: InferenceService, texts: list[str], n_rounds: int) -> dict[str, Any]:
    """Cost of all four heads versus one for the same texts.

    Two estimates: (a) paired wall times, one head then four (order alternating) on the same batch, the
    median of the per-round ratios; (b) inside one four-head call, (encode + all heads) / encode (an upper
    bound), from the service's own timers: immune to drift between calls, so it is the headline.
    """
    paired, within = [], []
    for r in range(n_rounds):
        batch = salted(texts, f"four{r}")
        times = {}
        for models in (("logreg",), MODELS) if r % 2 == 0 else (MODELS, ("logreg",)):
            t0 = time.perf_counter()
            result = service.predict(batch, list(models))
            times[len(models)] = time.perf_counter() - t0
            if len(models) == len(MODELS):
                st = result.stats
                # one head's call costs at least the encoding: this ratio is an upper bound (conservative)
                within.append((st.encode_seconds + st.heads_seconds) / st.encode_seconds)
        paired.append(times[len(MODELS)] / times[1])
    return {
        "texts": len(texts),
        "rounds": n_rounds,
        "paired_wall_ratio_median": float(np.median(paired)),
        "paired_wall_ratios": paired,
        "within_call_ratio": float(np.median(within)),
    }


def cache_hit_latency(texts: list[str], repeats: int = 3) -> dict[str, Any]:
    """Per-request latency in the service of a miss (encode + head) versus a prediction-cache hit (LRU)."""
    from topicserve.cache.store import LRUStore, TieredStore
    from topicserve.service import InferenceService

    service = InferenceService(
        load_encoder("int8"),
        {"logreg": load_heads()["logreg"]},
        cache_store=TieredStore(LRUStore(100_000), None),
    )
    miss, hit = [], []
    for t in texts:
        t0 = time.perf_counter()
        service.predict([t], ["logreg"])
        miss.append((time.perf_counter() - t0) * 1000)
        for _ in range(repeats):
            t0 = time.perf_counter()
            service.predict([t], ["logreg"])
            hit.append((time.perf_counter() - t0) * 1000)
    return {
        "miss_ms": summary(miss),
        "hit_ms": summary(hit),
        "hit_over_miss_p50": ratio(pct(hit, 50), pct(miss, 50)),
    }


def rollout_cost(texts: list[str], n_rounds: int, batch: int = 16) -> dict[str, Any]:
    """What a rollout costs a request: production alone, + a shadow scoring every text, + a 20% canary
    (whose texts production also scores, to compare). Interleaved rounds on fresh texts (caches off, so
    every text is encoded: the common case of a unique text), requests of ``batch`` texts. The candidate is
    a second copy of the logreg head (a retrained logreg costs the same)."""
    from topicserve.heads import Head
    from topicserve.rollout.routing import Route
    from topicserve.service import InferenceService

    class Fixed:
        def __init__(self, route: Route) -> None:
            self.routes = {"logreg": route}

        def current(self) -> dict[str, Route]:
            return self.routes

    manifest = json.loads(MANIFEST.read_text())
    encoder = load_encoder("int8")
    path, labels = REPO / manifest["heads"]["logreg"]["path"], manifest["labels"]
    prod = Head(path, name="logreg", version="1", labels=labels)
    cand = Head(path, name="logreg", version="2", labels=labels)
    services = {
        "production": InferenceService(encoder, Fixed(Route(prod))),
        "shadow_all": InferenceService(encoder, Fixed(Route(prod, shadow=cand))),
        "canary_20": InferenceService(encoder, Fixed(Route(prod, canary=cand, canary_weight=0.2))),
    }
    services["production"].predict(texts[:2], ["logreg"])
    overhead: dict[str, list[float]] = {k: [] for k in services}

    def run(name: str) -> Callable[[int], float]:
        def go(r: int) -> float:
            fresh = salted(texts, f"rollout{r}")
            started = time.perf_counter()
            for i in range(0, len(fresh), batch):
                result = services[name].predict(fresh[i : i + batch], ["logreg"])
                st = result.stats
                # inside the call: everything but the encoder, over the encoder (immune to drift)
                overhead[name].append(st.heads_seconds / max(st.encode_seconds, 1e-9))
            return (time.perf_counter() - started) * 1000 / len(fresh)

        return go

    say(f"rollout cost: {len(texts)} texts in requests of {batch}, {n_rounds} interleaved rounds")
    raw = rounds({k: run(k) for k in services}, n_rounds)
    med = {k: float(np.median(v)) for k, v in raw.items()}
    heads_share = {k: float(np.median(v)) for k, v in overhead.items()}
    return {
        "texts": len(texts),
        "batch": batch,
        "rounds": n_rounds,
        "ms_per_text_raw": raw,
        "ms_per_text_median": med,
        "shadow_over_production": ratio(med["shadow_all"], med["production"]),
        "canary_over_production": ratio(med["canary_20"], med["production"]),
        "heads_over_encoder_median": heads_share,
        "shadow_extra_share_of_encoder": heads_share["shadow_all"] - heads_share["production"],
    }


def _median_ms(fn: Callable[[], Any], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return float(np.median(times))


def run(texts: list[str], quick: bool) -> dict[str, Any]:
    WORK.mkdir(parents=True, exist_ok=True)
    n = 96 if quick else 384
    out = {
        "ceiling": ceiling(
            texts[:n], [1, 16, 32, 64] if quick else [1, 4, 8, 16, 32, 64, 128], 3 if quick else 5
        ),
        "peer": peer_and_heads(texts[:n], 3 if quick else 5, 32 if quick else 96),
        "cache_latency": cache_hit_latency(texts[n : n + (20 if quick else 100)]),
        "rollout_cost": rollout_cost(texts[: n // 2], 3 if quick else 5),
    }
    from bench import encoder_variants  # issue 15.1: encoder variants interleaved (bench/encoder_variants.py)

    out["encoder"] = encoder_variants.run(texts, quick)
    return out


if __name__ == "__main__":
    from bench.texts import test_texts

    result = run(test_texts(2000), quick="--quick" in sys.argv)
    Path(WORK / "inprocess.json").write_text(json.dumps(result, indent=1))
    print(
        json.dumps(
            {k: {kk: vv for kk, vv in v.items() if "raw" not in kk} for k, v in result.items()}, indent=1
        )
    )
