"""Run the benchmark set and regenerate bench/REPORT.md and the plots.

    python -m bench.run --quick      # make bench-quick: a small subset (a few minutes)
    python -m bench.run              # make bench: the full set
    python -m bench.run --only inprocess|cloud ...

Sections (each saved as soon as it is done, so a failure late in the run keeps the earlier ones):
in-process (ceiling, peer, four heads, cache-hit latency), then through the local cloud: SQS and HTTP
capacity, the request-rate sweep, saturation of the Zipf workload with caches on / off, warmers on a bursty
trace, cold starts of the three variants. The local cloud is started if none is running (and then stopped
at the end); the benchmark's stacks and the fp32 twin function are always deleted.
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from bench import report
from bench.common import BENCH_CLOUD_ENV, delete_stack, deploy_stack, local_cloud, save, say
from bench.texts import salted, test_texts, zipf_stream
from infra.localstack.localcloud.clients import aws_env

STACK = "topicserve-bench"
NAIVE_STACK = "topicserve-bench-naive"


#: The release the cold-start A/B compares with (``baseline`` in the cold-start section): the last one before
#: the cold-start work (issue 25). Move it forward when a release is cut, so the guard compares neighbours.
INIT_BASELINE = "6512218"
#: the cold-start variants measured in every round (the init goal's); the others in the first few
PRIMARY_COLD_VARIANTS = ("ours_int8", "image", "baseline", "floor_empty", "floor_encoder")


def profile(quick: bool) -> dict[str, Any]:
    if quick:
        return {
            "sweep_duration_s": 6,
            "drain_s": 10,
            "capacity_texts": 160,
            "gate_texts": 60,  # unique texts the batcher serves before the capacity run (untimed)
            "zipf_texts": 600,
            "http_capacity_s": 5,
            "cold_rounds": 20,  # ours (zip, image) and the baseline release; the goal needs >= 20 each
            "cold_rounds_secondary": 5,  # fp32, naive, the other predict functions
            "breakdown_rounds": 3,
            "warm_duration_s": 24,
            "keepalive_s": 4,
            "warm_every_s": 3,
            "fractions": [0.85],
            # the adaptive batcher is judged on a sweep from light load to overload, even in quick
            "variant_fractions": {"sqs:adaptive": [0.1, 0.5, 0.85, 1.0, 1.5]},
            "http_fractions": [0.3],
            "slo_ms": 5000,
            "plan_variants": {
                "sqs:baseline": ["unique"],
                "sqs:+prediction_cache": ["unique", "zipf"],
                "sqs:fixed_b10_w0": ["unique"],
                "sqs:adaptive": ["unique"],
                "http:baseline": ["zipf"],
                "http:caches": ["zipf"],
            },
            "saturation_variants": ["+dedup", "+prediction_cache"],
            "cost_http_requests": 20,
            "cost_submit_texts": 1000,  # bulk submissions of 1,000 texts, the API's limit
            "five_model_rounds": 4,  # one model against five, the same texts, order rotated per round
            "storage_rounds": 3,
            "naive_warm_requests": 5,
            "efficiency_rounds": 3,
        }
    return {
        "sweep_duration_s": 12,
        "drain_s": 20,
        "capacity_texts": 400,
        "gate_texts": 60,
        "zipf_texts": 3000,
        "http_capacity_s": 12,
        "cold_rounds": 20,
        "cold_rounds_secondary": 20,
        "breakdown_rounds": 10,
        "warm_duration_s": 120,
        "keepalive_s": 15,
        "warm_every_s": 10,
        "fractions": [0.1, 0.5, 0.85, 1.0, 1.5],
        # capacity is measured with caches off; with caches on the HTTP path's service time grows (DynamoDB
        # Local writes), so its higher fractions pile up environments: kept lower
        "http_fractions": [0.1, 0.3, 0.5, 0.85],
        "slo_ms": 5000,
        "plan_variants": {
            "sqs:baseline": ["unique", "zipf"],
            "sqs:+batching": ["unique", "zipf"],
            "sqs:+dedup": ["zipf"],
            "sqs:+embedding_cache": ["zipf"],
            "sqs:+prediction_cache": ["unique", "zipf"],
            "sqs:fixed_b10_w0": ["unique"],
            "sqs:adaptive": ["unique"],
            "http:baseline": ["unique", "zipf"],
            "http:caches": ["unique", "zipf"],
        },
        # baseline (BatchSize 1) drains ~1 text/s under LocalStack's 1 s poll interval: in the sweep only
        "saturation_variants": ["+batching", "+dedup", "+embedding_cache", "+prediction_cache"],
        "cost_http_requests": 60,
        "five_model_rounds": 6,
        "storage_rounds": 5,
        "cost_submit_texts": 1000,  # bulk submissions of 1,000 texts, the API's limit
        "naive_warm_requests": 20,
        "efficiency_rounds": 5,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--name", help="results name (default: quick / full)")
    parser.add_argument("--only", choices=["inprocess", "cloud"], help="run one half only")
    parser.add_argument(
        "--keep-stacks", action="store_true", help="do not delete the bench stacks (debugging)"
    )
    parser.add_argument("--keepalive-s", type=float, help="warmer benchmark: emulated keep-alive (seconds)")
    parser.add_argument("--warm-every-s", type=float, help="warmer benchmark: warmer period (seconds)")
    parser.add_argument("--slo-ms", type=int, help="adaptive batcher: end-to-end latency SLO (ms)")
    args = parser.parse_args(argv)
    name = args.name or ("quick" if args.quick else "full")
    command = "python -m bench.run " + shlex.join(argv if argv is not None else sys.argv[1:])
    cfg = profile(args.quick)
    for key in ("keepalive_s", "warm_every_s", "slo_ms"):
        if getattr(args, key) is not None:
            cfg[key] = getattr(args, key)
    os.environ.update(aws_env())
    started = time.monotonic()
    results: dict[str, Any] = {"profile": cfg, "quick": args.quick, "sections": {}}

    def checkpoint() -> None:
        results["elapsed_s"] = round(time.monotonic() - started, 1)
        save(name, results, command)

    texts = test_texts(4000)
    zipf_pool = texts[1000:3000]
    if args.only in (None, "inprocess"):
        from bench import inprocess

        say("== in-process: ceiling, peer, four heads, cache-hit latency")
        results["sections"]["inprocess"] = inprocess.run(texts, args.quick)
        checkpoint()
    if args.only in (None, "cloud"):
        run_cloud(results, cfg, texts, zipf_pool, args.keep_stacks, checkpoint)
    checkpoint()
    report.write(name)
    say(f"done in {time.monotonic() - started:.0f} s")
    return 0


def run_cloud(
    results: dict[str, Any],
    cfg: dict[str, Any],
    texts: list[str],
    zipf_pool: list[str],
    keep: bool,
    checkpoint: Callable[[], None],
) -> None:
    from bench import admission, cost, init_breakdown, results_storage
    from bench.cloud import billing, coldstarts, http_path, sqs_path
    from bench.cloud.efficiency import efficiency
    from bench.cloud.stack import MODEL, Stack
    from bench.cloud.sweep import sweep
    from bench.cloud.warmers import warmers
    from topicserve.catalogue import MODEL_NAMES, SERVED_BATCH_SIZE
    from topicserve.settings import Settings

    sections = results["sections"]
    unique = texts[3000:]
    with local_cloud() as started:
        results["local_cloud"] = {
            "started_by_bench": started,
            "esm_settings": BENCH_CLOUD_ENV if started else "LocalStack defaults (1 s poll, <= 10 s backoff)",
        }
        fp32: tuple[str, str, int] | None = None
        floors: list[str] = []
        baseline: tuple[str, str] | None = None
        st = None
        try:
            info = deploy_stack(
                STACK,
                {
                    "WarmerEnabled": "false",
                    "BatchSize": "100",
                    "BatchingWindowSeconds": "1",
                    "ApiThrottleRateLimit": "1000",
                    "ApiThrottleBurstLimit": "2000",
                },
            )
            # the served configuration: the encoder batch of catalogue.SERVED_BATCH_SIZE (one text per call);
            # another batch size would be another cache configuration, and not what serving runs
            st = Stack(info)
            best = SERVED_BATCH_SIZE
            results["local_cloud"]["encode_batch_size"] = best
            say("== capacity of the SQS path (backlog drain, unique texts) and the HTTP path (2 callers)")
            st.configure_batcher(sqs_path.SQS_VARIANTS["+prediction_cache"])
            sqs_path.warm_batcher(st, [MODEL])
            # the steady state of a batcher serving unique texts, not its first minute: its read gate has
            # seen first sightings miss, so it reads only its sample of them (cache.admission.ReadGate)
            sqs_path.sqs_capacity(
                st, salted(unique[-cfg["gate_texts"] :], f"gate{time.time_ns()}"), cfg["drain_s"] * 4, [MODEL]
            )
            cap_texts = salted(unique[: cfg["capacity_texts"]], f"cap{time.time_ns()}")
            sqs_cap = sqs_path.sqs_capacity(st, cap_texts, cfg["drain_s"] * 4, [MODEL])
            say("== efficiency: the batcher's billed ms per text against the encoder's, same texts")
            sections["efficiency"] = efficiency(st, sqs_cap, cap_texts, best, cfg["efficiency_rounds"])
            say("== one model against all five per text: the same texts, interleaved rounds")
            sqs_path.warm_batcher(st, list(MODEL_NAMES))
            five_models = sqs_path.paired_models(
                st,
                unique[: cfg["capacity_texts"] // 2],
                cfg["five_model_rounds"],
                cfg["drain_s"] * 4,
                {"one": [MODEL], "five": list(MODEL_NAMES)},
            )
            st.configure_predict("all")
            http_path.prewarm(st, 4)
            http_texts = salted(unique, f"hc{time.time_ns()}")
            http_cap = http_path.http_capacity(st, http_texts, cfg["http_capacity_s"])
            capacity = {"sqs": sqs_cap["sustained_texts_per_s"], "http": http_cap}
            sections["capacity"] = {"sqs": sqs_cap, "http_rps": http_cap}
            say(f"   SQS sustained {capacity['sqs']:.1f} texts/s; HTTP {http_cap:.1f} req/s")
            checkpoint()

            say("== saturation on the Zipf workload (backlog drain) per variant")
            stream = zipf_stream(zipf_pool, cfg["zipf_texts"])
            sat = {}
            for variant in cfg["saturation_variants"]:
                st.configure_batcher(sqs_path.SQS_VARIANTS[variant])
                sqs_path.warm_batcher(st, [MODEL])
                sat[variant] = sqs_path.sqs_capacity(
                    st, salted(stream, f"sat{time.time_ns()}"), cfg["drain_s"] * 4, [MODEL]
                )
                say(
                    f"   {variant}: {sat[variant]['sustained_texts_per_s']:.1f} texts/s, "
                    f"mean batch {sat[variant]['mean_batch_size']:.1f}"
                )
            sections["saturation_zipf"] = sat
            checkpoint()

            say("== request-rate sweep")
            plan = [
                (key, w, f)
                for key, ws in cfg["plan_variants"].items()
                for f in cfg.get("variant_fractions", {}).get(
                    key, cfg["http_fractions" if key.startswith("http") else "fractions"]
                )
                for w in ws
            ]
            sqs_path.SQS_VARIANTS["adaptive"]["slo_ms"] = cfg["slo_ms"]
            sections["sweep"] = {
                "capacity": capacity,
                "slo_ms": cfg["slo_ms"],
                "points": sweep(
                    st,
                    {"unique": unique, "zipf": zipf_stream(zipf_pool, 3000)},
                    plan,
                    capacity,
                    cfg["sweep_duration_s"],
                    cfg["drain_s"],
                ),
            }
            checkpoint()

            say("== cost probes: the synchronous path with caches on, the api function's POST and GET")
            measured: dict[str, Any] = {
                "sync": {
                    str(k): billing.sync_probe(
                        st,
                        salted(unique, f"c{k}-{time.time_ns()}"),
                        cfg["cost_http_requests"],
                        k,
                        list(MODEL_NAMES),
                    )
                    for k in (1, 16)
                },
                "api": billing.api_probe(st, salted(unique, f"ca{time.time_ns()}"), cfg["cost_submit_texts"]),
            }
            measured["http"] = measured["sync"]["1"][MODEL]
            for name, run, note in (
                (
                    "sqs_unique",
                    sqs_cap,
                    "capacity run: unique texts, BatchSize 100, window 1 s, caches on, after "
                    f"{cfg['gate_texts']} unique texts (the read gate's steady state)",
                ),
                ("sqs_zipf_cached", sat.get("+prediction_cache"), "Zipf(1.1) saturation run, caches on"),
                ("sqs_zipf_uncached", sat.get("+dedup"), "Zipf(1.1) saturation run, caches off"),
            ):
                if run:
                    bt = run["batcher_time"]
                    measured[name] = {
                        "result_chunk_bytes": billing.chunk_item_bytes(st, run["batch_id"]),
                        "bill": bt["bill"],
                        "batches": bt["batches"],
                        "message_bytes": run["message_bytes"],
                        "completed": run["completed"],
                        "latency_ms": run["latency_ms"],
                        "note": note,
                    }
            for name, note in (
                ("one", "one model per text, interleaved with five on the same texts"),
                ("five", "all five models per text, interleaved with one on the same texts"),
            ):
                run = five_models[name]
                sizes = [billing.chunk_item_bytes(st, b) for b in run["batch_ids"]]
                run["result_chunk_bytes"] = statistics.median([s for s in sizes if s] or [0.0]) or None
                run["note"] = note
            measured["five_models"] = five_models  # sqs_unique_5 and its paired one-model row
            unique_batches = sqs_cap["batcher_time"]["batches"]
            say("== results stored as grouped items against S3 objects per chunk, on the same streams")
            table = st.info["tables"]["results"]
            per_write = max(1, round(statistics.median(b["batch_size"] or 1 for b in unique_batches)))
            measured["results_storage"] = {}
            # one batch each (chunk numbers are a batch's own): the API probe's submission of
            # cost_submit_texts texts, and a five-model round's
            for name, batch_id in (
                ("one_model", measured["api"].get("batch_id") or sqs_cap["batch_id"]),
                ("five_models", five_models["five"]["batch_ids"][0]),
            ):
                try:
                    measured["results_storage"][name] = results_storage.run(
                        st.ddb,
                        st.s3,
                        table,
                        st.info["bucket"],
                        results_storage.read_chunks(st.ddb, table, batch_id),
                        cfg["storage_rounds"],
                        chunks_per_write=per_write,  # as the batcher writes them: one #meta update each
                    )
                except Exception as exc:  # a failed comparison must not cost the section its other figures
                    say(f"   results storage, {name}: failed: {exc!r}"[:400])
                    measured["results_storage"][name] = {"error": repr(exc)[:400]}
            encoded = sum(b.get("encoded") or 0 for b in unique_batches)
            measured.update(
                emulator_ms_per_text=sections["efficiency"].get("emulator_ms_per_text"),
                encode_ms_per_text=sum(b.get("encode_ms") or 0 for b in unique_batches) / max(1, encoded),
                chunk_texts=Settings().chunk_texts,
            )
            say("== the Zipf stream's steady state: 20,000 requests through the real cache code, in-process")
            measured["zipf_steady"] = admission.steady_state(zipf_pool, admission.STEADY_REQUESTS)
            sections["cost"] = {"measured": measured}
            checkpoint()

            say("== warmers on a bursty trace")
            sections["warmers"] = warmers(
                st,
                cfg["warm_duration_s"],
                cfg["keepalive_s"],
                cfg["warm_every_s"],
                salted(unique, f"w{time.time_ns()}"),
            )
            checkpoint()

            say(
                "== cold starts: ours (int8 zip), ours as a container image, fp32 encoder, "
                "naive (sentence-transformers + pickled sklearn, container image)"
            )
            naive_image: dict[str, Any] | None = None
            naive_fn: str | None = None
            try:
                naive_image = coldstarts.build_naive_image()
                naive_fn = coldstarts.deploy_naive(NAIVE_STACK)
            except Exception as exc:  # its 1.3 GB image build can fail on a loaded machine: go on without it
                say(f"   the naive peer could not be built or deployed, left out: {exc!r}"[:400])
            fp32 = coldstarts.fp32_function(st)
            baseline = coldstarts.baseline_function(st, INIT_BASELINE)
            floors += [coldstarts.floor_function(st, kind) for kind in coldstarts.FLOOR_HANDLERS]
            variants = {"ours_int8": st.predict_fn, "baseline": baseline[0], "fp32": fp32[0]}
            variants |= dict(zip(coldstarts.FLOOR_HANDLERS, floors, strict=True))
            if naive_fn:
                variants["naive"] = naive_fn
            if st.image_fn:
                variants["image"] = st.image_fn
            st.configure_predict("")
            # every other predict function (its own head seed) and the secondary variants: fewer rounds
            variants |= {m: st.info["functions"]["predict"][m] for m in MODEL_NAMES if m != MODEL}
            few = {k: cfg["cold_rounds_secondary"] for k in variants if k not in PRIMARY_COLD_VARIANTS}
            cs = coldstarts.cold_starts(st.lam, variants, cfg["cold_rounds"], texts[:50], few=few)
            cs["baseline_release"] = INIT_BASELINE
            say("== the first answer through the API after a cold start; where init time goes")
            cs["first_answer"] = coldstarts.first_answers(st, cfg["cold_rounds"], texts[:50])
            cs["breakdown"] = init_breakdown.breakdown(st.info, MODEL, cfg["breakdown_rounds"])
            say("== cost: the naive peer's warm per-request billed duration; item sizes; the cost model")
            if naive_fn:
                measured["naive"] = billing.naive_warm(
                    st.lam, naive_fn, salted(unique, f"cn{time.time_ns()}"), cfg["naive_warm_requests"]
                )
            measured["item_sizes"] = billing.item_sizes(st)
            measured["cold_share"] = sections["warmers"]["without"]["cold_share"]
            measured["naive_init_ms"] = (cs.get("stats", {}).get("naive") or {}).get("init_ms", {}).get("p50")
            sections["cost"].update(cost.report(measured))
            cs["package_sizes"] = coldstarts.package_sizes(st, fp32[2], naive_image)
            cs["naive_note"] = (
                "the naive peer is a container image (its 1.3 GB is over Lambda's 250 MB zip limit), run by "
                "the local executor like the image variant of ours"
            )
            sections["cold_starts"] = cs
            checkpoint()
        finally:
            if not keep:
                for twin in (fp32, baseline):
                    if st is not None and twin is not None:
                        coldstarts.delete_twin(st, twin[0], twin[1])
                for name in floors:
                    if st is not None:
                        coldstarts.delete_function(st, name)
                delete_stack(NAIVE_STACK)
                delete_stack(STACK)


if __name__ == "__main__":
    raise SystemExit(main())
