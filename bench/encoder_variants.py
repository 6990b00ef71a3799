"""Encoder variants, interleaved on the same texts: speed, fidelity to fp32, batch invariance (issue 15.1).

Variants (models) are built once into ``build/bench/encoder-variants/<key>/`` (key: sha256 of the fp32 and
served INT8 graphs, the onnxruntime version and this module's recipe), so a rerun only measures:

- ``ort_dynamic_int8``: today's served encoder (dynamic INT8, per-channel weights; build/models/manifest.json)
- ``ort_dynamic_int8_opt``: the same graph after ONNX Runtime's session optimisations, saved to disk and
  loaded with optimisation disabled
- ``ort_static_<recipe>``: static INT8, QDQ, per-channel weights, calibrated on 20NG *training* texts
  (``training/static_int8.py``); ``..._opt``: its optimised graph saved likewise

Each model runs at intra-op threads 1 and 2 and batch sizes 1, 8, 32 (a *config*
``<model>@t<threads>b<batch>``) through the served :class:`topicserve.encoder.Encoder` (its tokenisation,
length sorting and per-batch padding), all configs round-robin in one run (rotating order), texts/s
medians over rounds. Fidelity: cosine to the fp32 ONNX encoder (itself 1e-7 from sentence-transformers) on
test texts, one text per call and in sorted batches; batch drift = max over texts of
1 - cos(alone, in a batch of 32).

A config is *eligible* when its embeddings keep cos mean >= 0.99 and min >= 0.95 and, for batch > 1, the
model is batch-invariant (drift <= ``DRIFT_TOL``): serving must give a text the same embedding whatever
shares its batch. ``python -m bench.encoder_variants [--quick]`` prints a table and writes
``bench/results/encoder-variants.json``; ``run(texts, quick)`` is what ``bench/inprocess.py`` calls.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from topicserve.encoder import Encoder

REPO = Path(__file__).resolve().parents[1]
MANIFEST = REPO / "build" / "models" / "manifest.json"
CACHE = REPO / "build" / "bench" / "encoder-variants"
RESULT = REPO / "bench" / "results" / "encoder-variants.json"
TODAY = "ort_dynamic_int8"
COS_MEAN_MIN, COS_MIN_MIN = 0.99, 0.95
DRIFT_TOL = 1e-4  # 1 - cos(alone, batched): fp32 rounding differences between GEMM shapes are ~1e-7
#: calibration: training texts only, seeded, distinct from the build's fidelity sample
CALIBRATION_N, CALIBRATION_SEED = 300, 15
#: bump when a recipe below changes what is built (part of the cache key)
RECIPE_VERSION = 3
#: the layer budget: Lambda's 250 MB unzipped limit for function + layers
LAYER_BUDGET_MB = 250.0


def say(message: str) -> None:
    print(f"[encoder-variants {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- naming (pure) -----------------------------------------------------------------------------------------
def config_name(model: str, threads: int | str, batch: int | str) -> str:
    """``<model>@t<threads>b<batch>``; threads "2ns" = 2 intra-op threads that do not spin-wait."""
    return f"{model}@t{threads}b{batch}"


def parse_config_name(name: str) -> tuple[str, str, str]:
    """``model@t2b32`` -> ("model", "2", "32"); inverse of :func:`config_name`."""
    model, _, rest = name.rpartition("@")
    if not model or not rest.startswith("t") or "b" not in rest:
        raise ValueError(f"not a config name: {name!r}")
    threads, batch = rest[1:].split("b", 1)
    if not threads[:1].isdigit() or not batch[:1].isdigit():
        raise ValueError(f"not a config name: {name!r}")
    return model, threads, batch


def thread_count(threads: str) -> tuple[int, bool]:
    """ "2" -> (2, spinning), "2ns" -> (2, no spinning)."""
    spin = not threads.endswith("ns")
    return int(threads.removesuffix("ns")), spin


def static_model_name(recipe: str, optimized: bool = False) -> str:
    return f"ort_static_{recipe}" + ("_opt" if optimized else "")


def padding_stats(lengths: Sequence[int], batch: int, max_tokens: int | None = None) -> dict[str, Any]:
    """Real versus computed (padded) tokens when ``lengths`` are cut into sorted sub-batches as the
    encoder does; attention work grows with width^2, so both are reported."""
    from topicserve.batching import length_buckets

    buckets = length_buckets(list(lengths), max_batch=batch, max_tokens=max_tokens)
    real = sum(lengths)
    padded = sum(len(b) * max(lengths[i] for i in b) for b in buckets)
    real_sq = sum(n * n for n in lengths)
    padded_sq = sum(len(b) * max(lengths[i] for i in b) ** 2 for b in buckets)
    return {
        "batch": batch,
        "max_tokens": max_tokens,
        "sub_batches": len(buckets),
        "real_tokens": real,
        "padded_tokens": padded,
        "padding_overhead": padded / real - 1 if real else 0.0,
        "attention_overhead": padded_sq / real_sq - 1 if real_sq else 0.0,
    }


def quick_config(core: bool, threads: str, batch: int) -> bool:
    """Whether quick mode measures a config: every model at 1 thread, batch 1; today's and the static
    model (core) also at 2 threads (spinning or not) and at batch 32 (1 and 2 spinning threads)."""
    if threads == "1" and batch == 1:
        return True
    if not core:
        return False
    return batch == 1 or (batch == 32 and threads in ("1", "2"))


def eligible(stats: dict[str, Any], batch: int) -> bool:
    """Whether a config's embeddings meet the fidelity goals and, batched, do not depend on batch mates."""
    if stats["cos_mean"] < COS_MEAN_MIN or stats["cos_min"] < COS_MIN_MIN:
        return False
    return batch == 1 or stats["batch_invariance_max_drift"] <= DRIFT_TOL


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


# -- building the variants ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Model:
    name: str
    path: Path
    optimized: bool  # a saved optimised graph: load with optimisation disabled
    info: dict[str, Any]


def served() -> dict[str, Any]:
    """The build's encoders. ``int8`` is the quantiser's own graph (today's baseline: what was served
    before the build saved ONNX Runtime's optimised graph); ``served_int8`` the file the layer ships."""
    manifest = json.loads(MANIFEST.read_text())
    enc = manifest["encoder"]
    optimization = enc["int8"].get("graph_optimization") or {}
    source = optimization.get("source")
    return {
        "int8": REPO / (source or enc["int8"]["path"]),
        "served_int8": REPO / enc["int8"]["path"],
        "served_optimized": bool(source),
        "int8_sha256": enc["int8"]["sha256"],
        "fp32": REPO / enc["fp32"]["path"],
        "fp32_sha256": enc["fp32"]["sha256"],
        "tokenizer": REPO / enc["int8"]["tokenizer_path"],
        "max_length": int(enc["int8"]["max_length"]),
        "quick_build": bool(manifest.get("quick")),
    }


def static_recipes(quick: bool) -> list[Any]:
    from training.static_int8 import StaticConfig

    best = StaticConfig()  # u8 activations, s8 weights, MinMax, dense MatMuls only, fp32 residual
    if quick:
        return [best]
    return [
        best,
        StaticConfig(activation="s8"),
        StaticConfig(reduce_range=True),
        StaticConfig(method="percentile", percentile=99.999),
        StaticConfig(fp32_residual=False),
    ]


def cache_key(src: dict[str, Any]) -> str:
    import hashlib

    import onnxruntime as ort

    key = [src["fp32_sha256"], src["int8_sha256"], ort.__version__, RECIPE_VERSION, CALIBRATION_N]
    return hashlib.sha256(json.dumps(key).encode()).hexdigest()[:16]


def calibration_ids(src: dict[str, Any]) -> tuple[list[list[int]], dict[str, Any]]:
    """Token ids of CALIBRATION_N seeded non-empty 20NG *training* texts (the project's loader, offline)."""
    from training.data import load
    from training.static_int8 import tokenize_for_calibration

    data_home = Path(os.environ.get("DATA_HOME") or (REPO.parent / "shared" / "data")).resolve()
    ds = load(data_home, quick=False)
    train = [t for t in ds.train.texts if t.strip()]
    pick = np.random.default_rng(CALIBRATION_SEED).choice(len(train), CALIBRATION_N, replace=False)
    texts = [train[i] for i in sorted(pick)]
    ids = tokenize_for_calibration(src["tokenizer"], texts, src["max_length"])
    return ids, {"split": "train", "n": len(ids), "seed": CALIBRATION_SEED, "dataset_sha256": ds.pkz_sha256}


def build_variants(quick: bool) -> tuple[list[Model], dict[str, Any]]:
    """Today's model plus the built variants (cached; each file is written atomically, so existing = done)."""
    from training.quantize import save_optimized
    from training.static_int8 import build_static_int8

    src = served()
    folder = CACHE / cache_key(src)
    folder.mkdir(parents=True, exist_ok=True)
    record_path = folder / "build.json"
    record: dict[str, Any] = json.loads(record_path.read_text()) if record_path.exists() else {}
    models = [Model(TODAY, src["int8"], False, {"source": "the quantiser's graph (build/cache)"})]

    def optimized(name: str, source: Path) -> None:
        dst = folder / f"{name}.onnx"
        if not dst.exists():
            say(f"saving the optimised graph of {source.name}")
            record[name] = save_optimized(source, dst, level="extended")
        models.append(Model(name, dst, True, record.get(name, {})))

    if src["served_optimized"]:  # the build already saved it: measure the very file the layer ships
        served_info = {"source": "build/models (served; optimised by make models)"}
        models.append(Model(f"{TODAY}_opt", src["served_int8"], True, served_info))
    else:
        optimized(f"{TODAY}_opt", src["int8"])
    ids: list[list[int]] | None = None
    for cfg in static_recipes(quick):
        name = static_model_name(cfg.name)
        dst = folder / f"{name}.onnx"
        if not dst.exists():
            if ids is None:
                ids, record["calibration"] = calibration_ids(src)
            say(f"building {name} (calibration on {len(ids)} training texts)")
            record[name] = build_static_int8(src["fp32"], dst, ids, cfg)
            record_path.write_text(json.dumps(record, indent=1))
        models.append(Model(name, dst, False, record.get(name, {})))
        optimized(static_model_name(cfg.name, optimized=True), dst)
    record_path.write_text(json.dumps(record, indent=1))
    return models, {"folder": os.path.relpath(folder, REPO), "calibration": record.get("calibration")}


# -- loading -----------------------------------------------------------------------------------------------
def load_encoder(model: Model, src: dict[str, Any], threads: str) -> Encoder:
    """The served Encoder class with a session of exactly this configuration: a saved optimised graph with
    optimisation disabled; "1"/"2" threads spin-waiting (onnxruntime's default), "2ns" blocking."""
    from topicserve.encoder import Encoder

    n, spin = thread_count(threads)
    return Encoder(
        model.path,
        src["tokenizer"],
        max_length=src["max_length"],
        intra_op_threads=n,
        pre_optimized=model.optimized,
        spinning=spin,
    )


def session_load_seconds(models: list[Model], rounds: int) -> dict[str, float]:
    """Median session creation time per model (interleaved), as a cold start pays it."""
    import onnxruntime as ort

    from topicserve.encoder import session_options

    times: dict[str, list[float]] = {m.name: [] for m in models}
    for r in range(rounds):
        for m in models[r % len(models) :] + models[: r % len(models)]:
            so = session_options(2)
            if m.optimized:
                so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
            data = m.path.read_bytes()
            t0 = time.perf_counter()
            ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])
            times[m.name].append(time.perf_counter() - t0)
    return {k: median(v) for k, v in times.items()}


# -- measuring ---------------------------------------------------------------------------------------------
def encode_budget(enc: Encoder, ids: Sequence[Sequence[int]], max_batch: int, max_tokens: int) -> np.ndarray:
    """Like Encoder.encode_tokens, but sub-batches also capped at ``max_tokens`` padded tokens."""
    from topicserve.batching import length_buckets

    out = np.empty((len(ids), enc.dim), dtype=np.float32)
    for bucket in length_buckets([len(x) for x in ids], max_batch=max_batch, max_tokens=max_tokens):
        out[bucket] = enc._run([ids[i] for i in bucket])
    return out


def fidelity(
    encoders: dict[str, Encoder], ids: list[list[int]], ref: np.ndarray, batches: Sequence[int]
) -> dict[str, dict[str, Any]]:
    """Per model and batch size: cos mean/min to the reference; drift of batched versus alone."""
    out: dict[str, dict[str, Any]] = {}
    for name, enc in encoders.items():
        alone = enc.encode_tokens(ids, 1)
        per: dict[str, Any] = {}
        for b in batches:
            emb = alone if b == 1 else enc.encode_tokens(ids, b)
            cos = (emb * ref).sum(axis=1)
            drift = 1.0 - (emb * alone).sum(axis=1)
            per[str(b)] = {
                "cos_mean": float(cos.mean()),
                "cos_min": float(cos.min()),
                "batch_invariance_max_drift": float(max(drift.max(), 0.0)),
                "bit_identical_to_alone": bool(np.array_equal(emb, alone)),
            }
        out[name] = per
    return out


def interleave(fns: dict[str, Callable[[], float]], n_rounds: int) -> dict[str, list[float]]:
    """Each function once per round, the order rotated every round; returns the raw figures."""
    raw: dict[str, list[float]] = {k: [] for k in fns}
    names = list(fns)
    for r in range(n_rounds):
        k = (r * 7) % len(names)  # rotate by a stride so neighbours change too
        for name in names[k:] + names[:k]:
            raw[name].append(fns[name]())
        say(f"round {r + 1}/{n_rounds} done")
    return raw


def throughput(
    enc: Encoder, texts: list[str], batch: int, max_tokens: int | None = None
) -> Callable[[], float]:
    """texts/s of one config, tokenisation included (Encoder.encode: tokenise, sort, pad per sub-batch)."""

    def go() -> float:
        t0 = time.perf_counter()
        if max_tokens is None:
            enc.encode(texts, batch)
        else:
            encode_budget(enc, [t.ids for t in enc.tokenize(texts)], batch, max_tokens)
        return len(texts) / (time.perf_counter() - t0)

    return go


def token_cost(
    encoders: dict[str, Encoder],
    ids: list[list[int]],
    lengths: Sequence[int],
    batches: Sequence[int],
    n_rounds: int,
) -> dict[str, Any]:
    """Microseconds per token on equal-length batches (no padding) by sequence length and batch size."""
    long_ids = [x for x in ids if len(x) >= max(lengths)] or [max(ids, key=len)]
    fns: dict[str, Callable[[], float]] = {}
    for model, enc in encoders.items():
        for n in lengths:
            for b in batches:
                rows = [[*long_ids[i % len(long_ids)][: n - 1], long_ids[0][-1]] for i in range(b)]
                reps = max(1, 2048 // (n * b))  # ~2k tokens a sample

                def go(enc: Encoder = enc, rows: list[list[int]] = rows, reps: int = reps) -> float:
                    t0 = time.perf_counter()
                    for _ in range(reps):
                        enc._run(rows)
                    return (time.perf_counter() - t0) * 1e6 / (reps * sum(len(r) for r in rows))

                fns[f"{model}|L{n}|b{b}"] = go
    for fn in fns.values():
        fn()  # first-shape allocations out of the timings
    raw = interleave(fns, n_rounds)
    table: dict[str, Any] = {}
    for key, values in raw.items():
        model, length, batch = key.split("|")
        table.setdefault(model, {}).setdefault(length, {})[batch] = median(values)
    return {"us_per_token": table, "lengths": list(lengths), "batches": list(batches), "rounds": n_rounds}


def run(texts: list[str], quick: bool) -> dict[str, Any]:
    """Build (cached) and measure every variant interleaved on ``texts``; see the module docstring."""
    t_start = time.perf_counter()
    load_at_start = list(os.getloadavg())
    src = served()
    models, build = build_variants(quick)
    n_speed = 32 if quick else 96
    n_fid = 48 if quick else 300
    n_rounds = 3 if quick else 5
    threads = ("1", "2", "2ns")
    batches = (1, 8, 32)

    # every model at both thread counts (sessions are per thread count)
    encoders = {(m.name, t): load_encoder(m, src, t) for m in models for t in threads}
    ov_info = openvino_report()
    ov = openvino_encoders(models, src, threads)
    ov_names = sorted({name for name, _ in ov})
    ov_info["measured"] = bool(ov)
    ov_info["models"] = ov_names
    encoders.update(ov)
    fp32 = load_encoder(Model("fp32", src["fp32"], False, {}), src, "1")
    speed_texts = list(texts[:n_speed])
    t0 = time.perf_counter()
    speed_ids = [t.ids for t in fp32.tokenize(speed_texts)]
    tokenize_s = time.perf_counter() - t0
    fid_ids = [t.ids for t in fp32.tokenize(texts[:n_fid])]
    say(f"fidelity on {len(fid_ids)} texts against the fp32 encoder")
    ref = fp32.encode_tokens(fid_ids, 1)
    names = [m.name for m in models] + ov_names
    fid_batches = (1, 32) if quick else batches
    fid = fidelity({n: encoders[(n, "1")] for n in names}, fid_ids, ref, fid_batches)

    core = {TODAY, f"{TODAY}_opt", static_model_name(static_recipes(True)[0].name)}
    grid: list[tuple[str, str, int]] = []
    for m in models:
        for t in threads:
            for b in batches:
                served_now = m.name == f"{TODAY}_opt" and b == 1  # its thread settings, even in quick
                if quick and not (served_now or quick_config(m.name in core and not m.optimized, t, b)):
                    continue
                if m.name not in core and (t == "2ns" or b != 1):
                    continue  # other calibration recipes: batch 1, threads 1 and 2 (same kernels)
                grid.append((m.name, t, b))
    grid += [(n, t, b) for n in ov_names for t in ("1", "2") for b in batches if not quick or b == 1]
    fns = {config_name(m, t, b): throughput(encoders[(m, t)], speed_texts, b) for m, t, b in grid}
    budget = 1024
    for t in ("1",) if quick else ("1", "2"):
        fns[config_name(TODAY, t, f"32tok{budget}")] = throughput(
            encoders[(TODAY, t)], speed_texts, 32, budget
        )
    for enc in {id(e): e for e in encoders.values()}.values():  # first-shape allocations out of the timings
        for b in batches:
            enc.encode(speed_texts[:8], b)
    say(f"throughput: {len(fns)} configs x {n_rounds} rounds on {len(speed_ids)} texts, interleaved")
    raw = interleave(fns, n_rounds)

    variants: dict[str, Any] = {}
    for name, values in raw.items():
        model, t_code, b_code = parse_config_name(name)
        b_int = int(b_code.split("tok")[0])
        stats = fid[model][str(b_int)]
        entry = {
            "model": model,
            "texts_per_s_raw": values,
            "texts_per_s_median": median(values),
            "batch": b_code if "tok" in b_code else b_int,
            "threads": thread_count(t_code)[0],
            "spinning": thread_count(t_code)[1],
            **stats,
        }
        # OpenVINO is measured for reference, adoptable only if it fits the layer budget
        entry["deployable"] = not model.startswith("openvino") or bool(ov_info.get("fits"))
        entry["eligible"] = "tok" not in b_code and entry["deployable"] and eligible(stats, b_int)
        variants[name] = entry
    today_cfgs = {k: v for k, v in variants.items() if v["model"] == TODAY and "tok" not in str(v["batch"])}
    today_best = max(today_cfgs, key=lambda k: today_cfgs[k]["texts_per_s_median"])
    # served before issue 15: the quantiser's graph, batch 1, onnxruntime's default threads (= cores);
    # served now: the saved optimised graph, batch 1, one thread per core that blocks instead of spinning
    before_cfg = config_name(TODAY, 2, 1)
    served_cfg = config_name(f"{TODAY}_opt", "2ns", 1)
    ok = [k for k, v in variants.items() if v["eligible"]]
    best = max(ok, key=lambda k: variants[k]["texts_per_s_median"]) if ok else None
    ceiling = variants[served_cfg]["texts_per_s_median"]
    before = variants[before_cfg]["texts_per_s_median"]
    today = variants[today_best]["texts_per_s_median"]

    lengths = [len(x) for x in speed_ids]
    say("batch analysis: per-token cost by length and batch (equal-length batches)")
    tc_models = {f"{TODAY}@t1": encoders[(TODAY, "1")], f"{TODAY}@t2": encoders[(TODAY, "2")]}
    static = [m.name for m in models if m.name.startswith("ort_static") and not m.optimized]
    if static:
        tc_models[f"{static[0]}@t1"] = encoders[(static[0], "1")]
    token = token_cost(
        tc_models,
        fid_ids,
        [32, 256] if quick else [16, 64, 128, 256],
        [1, 32] if quick else [1, 8, 32],
        2 if quick else 3,
    )
    analysis = {
        "token_lengths": {
            "n": len(lengths),
            "mean": float(np.mean(lengths)),
            "p50": float(np.median(lengths)),
            "p90": float(np.percentile(lengths, 90)),
            "max": max(lengths),
            "at_max_length": sum(1 for n in lengths if n >= src["max_length"]),
        },
        "padding": {str(b): padding_stats(lengths, b) for b in batches}
        | {f"32tok{budget}": padding_stats(lengths, 32, budget)},
        "threads_over_t1": {
            t: {
                m.name: {
                    str(b): variants[config_name(m.name, t, b)]["texts_per_s_median"]
                    / variants[config_name(m.name, "1", b)]["texts_per_s_median"]
                    for b in batches
                    if config_name(m.name, t, b) in variants and config_name(m.name, "1", b) in variants
                }
                for m in models
            }
            for t in threads[1:]
        },
        "load_average_at_start": load_at_start,
        "tokenize_texts_per_s": len(speed_texts) / tokenize_s,
        "token_cost": token,
    }
    sessions = session_load_seconds(models, 3 if quick else 7)
    out = {
        "quick": quick,
        "texts": len(speed_ids),
        "fidelity_texts": len(fid_ids),
        "rounds": n_rounds,
        "reference": "fp32 ONNX encoder (build/models, 1e-7 from sentence-transformers), one text per call",
        "thresholds": {"cos_mean": COS_MEAN_MIN, "cos_min": COS_MIN_MIN, "batch_drift": DRIFT_TOL},
        # the served configuration against ONNX Runtime dynamic INT8 as served before (the summary's
        # encoder_speedup_vs_ort_dynamic_int8), and against that model's best configuration in this run
        "ceiling_texts_per_s": ceiling,
        "served_config": served_cfg,
        "today_texts_per_s": before,
        "today_config": before_cfg,
        "speedup_vs_ort_dynamic_int8": ceiling / before,
        "best_today_config": today_best,
        "best_today_texts_per_s": today,
        "speedup_vs_best_today_config": ceiling / today,
        "best": best,
        "best_texts_per_s": variants[best]["texts_per_s_median"] if best else None,
        "eligible": sorted(ok, key=lambda k: -variants[k]["texts_per_s_median"]),
        "variants": variants,
        "models": {
            m.name: {
                "path": os.path.relpath(m.path, REPO),
                "size_mb": m.path.stat().st_size / 1e6,
                "optimized_graph_saved": m.optimized,
                "session_load_s_median": sessions[m.name],
                "build": m.info,
                "fidelity": fid[m.name],
            }
            for m in models
        },
        "build": build,
        "openvino": ov_info
        | {
            "best_texts_per_s": max(
                (v["texts_per_s_median"] for v in variants.values() if v["model"].startswith("openvino")),
                default=None,
            ),
        },
        "batch_analysis": analysis,
        "served_model_quick_build": src["quick_build"],
        "seconds": time.perf_counter() - t_start,
    }
    return out


# -- OpenVINO ----------------------------------------------------------------------------------------------
def _du_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink()) / 1e6


OPENVINO_SITE = CACHE / "openvino-site"  # pip install --target of the openvino wheel (no deps)
#: what an encoder-only OpenVINO deployment needs: the core, the CPU plugin, the ONNX frontend, TBB and the
#: Python binding (the GPU/NPU plugins and the other frontends can be deleted from the layer)
OPENVINO_MINIMAL = (
    "libs/libopenvino.so*",
    "libs/libopenvino_intel_cpu_plugin.so*",
    "libs/libopenvino_onnx_frontend.so*",
    "libs/libtbb*",
    "_pyopenvino*",
    "*.py",
)


def openvino_report() -> dict[str, Any]:
    """OpenVINO's installed size (whole and trimmed to the CPU + ONNX essentials) against the layer budget
    with today's layers; measured once and cached with the install (which the speed test reuses)."""
    record = CACHE / "openvino-size.json"
    if record.exists() and OPENVINO_SITE.exists():
        info: dict[str, Any] = json.loads(record.read_text())
    else:
        info = measure_openvino_size()
        if info.get("installed_mb") is not None:
            record.write_text(json.dumps(info, indent=1))
    serving = REPO / ".aws-sam" / "build" / "ServingLayer"
    encoder_layer = REPO / "build" / "layers" / "encoder-int8"
    today = {
        "serving_layer_mb": _du_mb(serving) if serving.exists() else None,
        "encoder_int8_layer_mb": _du_mb(encoder_layer) if encoder_layer.exists() else None,
    }
    used = sum(v for v in today.values() if v is not None)
    info = dict(info)
    if info.get("trimmed_mb") is None and OPENVINO_SITE.exists():
        info["trimmed_mb"] = _trimmed_mb()
        info["trimmed_keeps"] = list(OPENVINO_MINIMAL)
    info.update(today)
    info["budget_mb"] = LAYER_BUDGET_MB
    info["today_total_mb"] = used
    for key, size in (("full", info.get("installed_mb")), ("trimmed", info.get("trimmed_mb"))):
        if size is not None:
            info[f"total_with_openvino_{key}_mb"] = used + size
            info[f"fits_{key}"] = used + size <= LAYER_BUDGET_MB
    info["fits"] = bool(info.get("fits_full") or info.get("fits_trimmed"))
    return info


def _trimmed_mb() -> float:
    pkg = OPENVINO_SITE / "openvino"
    keep = {f for pattern in OPENVINO_MINIMAL for f in pkg.glob(pattern) if f.is_file()}
    keep |= set(pkg.rglob("*.py"))
    return sum(f.stat().st_size for f in keep) / 1e6


def measure_openvino_size() -> dict[str, Any]:
    """``pip download openvino --no-deps`` + ``pip install --no-deps --target`` (kept in the ignored cache
    for the speed test); du of the whole install and of the files an encoder-only layer needs."""
    import subprocess

    pip = [sys.executable, "-m", "pip"]
    shutil.rmtree(OPENVINO_SITE, ignore_errors=True)
    with tempfile.TemporaryDirectory(prefix="openvino-") as tmp:
        dl = Path(tmp)
        try:
            subprocess.run(
                [*pip, "download", "openvino", "--no-deps", "-d", str(dl), "-q"], check=True, timeout=300
            )
            wheel = next(dl.glob("openvino-*.whl"))
            subprocess.run(
                [*pip, "install", "--no-deps", "--target", str(OPENVINO_SITE), "-q", str(wheel)],
                check=True,
                timeout=300,
            )
        except (subprocess.SubprocessError, StopIteration, OSError) as exc:
            return {"installed_mb": None, "error": str(exc)}
        wheel_mb = wheel.stat().st_size / 1e6
    return {
        "wheel": wheel.name,
        "wheel_mb": wheel_mb,
        "installed_mb": _du_mb(OPENVINO_SITE),
        "trimmed_mb": _trimmed_mb(),
        "trimmed_keeps": list(OPENVINO_MINIMAL),
        "note": "no deps: numpy is in the layer already; heads still need onnxruntime (ai.onnx.ml ops)",
    }


class OpenVINOSession:
    """An OpenVINO compiled model behind the two onnxruntime calls Encoder makes (``run``, providers), so
    the served tokenisation, sorting and padding apply unchanged."""

    def __init__(self, path: Path, threads: int) -> None:
        import openvino as ov

        core = ov.Core()
        self.model = core.compile_model(
            core.read_model(os.fspath(path)),
            "CPU",
            {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1},
        )
        self.request = self.model.create_infer_request()

    def run(self, outputs: list[str], feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        result = self.request.infer(feed)
        return [np.array(result[self.model.output(name)]) for name in outputs]

    def get_providers(self) -> list[str]:
        return ["OpenVINO CPU"]


def openvino_encoders(
    models: list[Model], src: dict[str, Any], threads: Sequence[str]
) -> dict[tuple[str, str], Any]:
    """OpenVINO encoders on the fp32-free INT8 graphs it can read (the static QDQ model), if installed."""
    if not OPENVINO_SITE.exists():
        return {}
    if os.fspath(OPENVINO_SITE) not in sys.path:
        sys.path.append(os.fspath(OPENVINO_SITE))
    try:
        import openvino  # noqa: F401
    except ImportError as exc:
        say(f"openvino not importable: {exc}")
        return {}
    static = [m for m in models if m.name.startswith("ort_static") and not m.optimized][:1]
    out: dict[tuple[str, str], Any] = {}
    for m in static:
        for t in threads:
            n, spin = thread_count(t)
            if not spin:
                continue
            enc = load_encoder(m, src, t)
            enc._session = OpenVINOSession(m.path, n)
            out[(m.name.replace("ort_static", "openvino_static"), t)] = enc
    return out


# -- CLI ---------------------------------------------------------------------------------------------------
def table(result: dict[str, Any]) -> str:
    today = result["today_texts_per_s"]
    rows = sorted(result["variants"].items(), key=lambda kv: -kv[1]["texts_per_s_median"])
    lines = [
        f"{'config':58} {'texts/s':>8} {'x today':>8} {'cos mean':>9} {'cos min':>8} {'drift':>9} ok",
    ]
    for name, v in rows:
        lines.append(
            f"{name:58} {v['texts_per_s_median']:8.1f} {v['texts_per_s_median'] / today:8.2f} "
            f"{v['cos_mean']:9.5f} {v['cos_min']:8.5f} {v['batch_invariance_max_drift']:9.2e} "
            f"{'*' if v['eligible'] else ''}{'' if v.get('deployable', True) else 'over layer budget'}"
        )
    lines.append(
        f"served before ({result['today_config']}) {today:.1f} texts/s; "
        f"served now ({result['served_config']}) {result['ceiling_texts_per_s']:.1f} texts/s "
        f"= {result['speedup_vs_ort_dynamic_int8']:.2f}x ({result['speedup_vs_best_today_config']:.2f}x "
        f"today's model at its best, {result['best_today_config']}); "
        f"fastest eligible {result['best']}"
    )
    return "\n".join(lines)


def main(argv: Sequence[str]) -> None:
    from bench.texts import test_texts

    quick = "--quick" in argv
    result = run(test_texts(400), quick=quick)
    result["command"] = "python -m bench.encoder_variants" + (" --quick" if quick else "")
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    out = RESULT if not quick else RESULT.with_name("encoder-variants-quick.json")
    out.write_text(json.dumps(result, indent=1))
    print(table(result))
    print(json.dumps({k: v for k, v in result.items() if k not in ("variants", "models")}, indent=1))


if __name__ == "__main__":
    main(sys.argv[1:])
