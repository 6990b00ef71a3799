"""``python -m training.build`` (``make models``): encoder export, quantisation, fidelity, embeddings, heads.

Everything is cached (see training/common.py), so a rerun only redoes what changed. ``QUICK=1`` builds the
same artifacts from a small stratified subset (1,500 train / 500 test texts, 100 fidelity texts, smaller
forests) in a few minutes, for tests and CI; the manifest then says ``"quick": true`` and the functional
tests relax their accuracy targets accordingly.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np

from topicserve.catalogue import MODEL_NAMES, SERVED_BATCH_SIZE
from training import data as data_mod
from training import embed, export_encoder, fidelity, fp16, quantize
from training.common import (
    MODEL_NAME,
    MODELS,
    REPO,
    Embeddings,
    Json,
    Settings,
    cached_step,
    code_dirty,
    code_revision,
    install,
    log,
    rel,
    setup_logging,
    sha256_file,
)

FIDELITY_N = {True: 100, False: 256}
#: ONNX Runtime optimisation level saved into the served INT8 graph (training/quantize.save_optimized)
OPT_LEVEL = "extended"


def ort_version() -> str:
    import onnxruntime as ort

    version: str = ort.__version__
    return version


PUBLISH: dict[Path, Path] = {}  # published path under build/models -> cached source, installed at the end
COS_MEAN_GOAL, COS_MIN_GOAL = 0.99, 0.95


def measure_load(factory: Callable[[], object], repeats: int = 3) -> float:
    """Median wall time of constructing a serving object (file read + sha256 + session creation)."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        obj = factory()
        times.append(time.perf_counter() - t0)
        del obj
    return round(statistics.median(times), 4)


def exclusion_plans(fp32: Path) -> list[tuple[str, list[str]]]:
    """Quantisation plans tried in order until the fidelity goals hold (cheapest deviation first)."""
    import onnx

    m = onnx.load(str(fp32))
    gathers = [n.name for n in m.graph.node if n.op_type == "Gather" and "embeddings" in n.name.lower()]
    last = [n.name for n in m.graph.node if n.op_type == "MatMul" and "layer.5" in n.name]
    return [
        ("all MatMul/Gather int8 per-channel", []),
        ("embedding Gathers kept fp32", gathers),
        ("embedding Gathers + last layer MatMuls kept fp32", gathers + last),
    ]


def build_encoder(s: Settings, ds: data_mod.Dataset) -> Json:
    src_key = export_encoder.source_key()
    import torch

    exp_dir, exp_res = cached_step(
        "encoder-export",
        {"source": src_key, "opset": export_encoder.OPSET, "torch": torch.__version__},
        export_encoder.export,
        ["model.fp32.onnx", "tokenizer.json"],
    )
    fp32 = exp_dir / "model.fp32.onnx"
    fp32_sha = sha256_file(fp32)

    texts = fidelity.pick_texts(ds.train.texts, FIDELITY_N[s.quick])
    ref_cache: dict[str, np.ndarray] = {}

    def ref() -> np.ndarray:
        if "ref" not in ref_cache:
            ref_cache["ref"] = fidelity.reference_embeddings(texts, s.max_length)
        return ref_cache["ref"]

    from topicserve.encoder import Encoder

    def fid(model: Path, pre_optimized: bool = False) -> Json:
        def run(outdir: Path) -> Json:
            enc = Encoder(
                model,
                exp_dir / "tokenizer.json",
                max_length=s.max_length,
                intra_op_threads=s.threads,
                pre_optimized=pre_optimized,
            )
            return fidelity.cosine_stats(ref(), enc.encode(texts))

        key = {
            "pre_optimized": pre_optimized,
            "model_sha256": sha256_file(model),
            "n": len(texts),
            "max_length": s.max_length,
            "dataset_sha256": ds.pkz_sha256,
            "texts": "train seeded sample",
            "batch_size": SERVED_BATCH_SIZE,
        }
        _, res = cached_step("fidelity", key, run, [])
        log.info(
            "fidelity %s: cos mean %.5f min %.5f (n=%d)",
            model.name,
            res["cos_mean"],
            res["cos_min"],
            res["n"],
        )
        return res

    fid_fp32 = fid(fp32)
    attempts = []
    for label, exclude in exclusion_plans(fp32):
        q_dir, q_res = cached_step(
            "encoder-int8",
            {"fp32_sha256": fp32_sha, "exclude": exclude},
            partial(quantize.quantize, fp32, exclude=exclude),
            ["model.int8.onnx"],
        )

        # the graph after ONNX Runtime's own optimisations, saved once here: a cold start loads it with
        # optimisation off instead of redoing them (the same arithmetic; "extended" is portable across CPUs)
        def optimize(d: Path, src: Path = q_dir / "model.int8.onnx") -> Json:
            return quantize.save_optimized(src, d / "model.int8.onnx", OPT_LEVEL)

        o_dir, o_res = cached_step(
            "encoder-int8-optimized",
            {"int8_sha256": sha256_file(q_dir / "model.int8.onnx"), "level": OPT_LEVEL, "ort": ort_version()},
            optimize,
            ["model.int8.onnx"],
        )
        int8 = o_dir / "model.int8.onnx"
        fid_int8 = fid(int8, pre_optimized=True)
        attempts.append(
            {
                "plan": label,
                "n_excluded": len(exclude),
                "cos_mean": fid_int8["cos_mean"],
                "cos_min": fid_int8["cos_min"],
            }
        )
        if fid_int8["cos_mean"] >= COS_MEAN_GOAL and fid_int8["cos_min"] >= COS_MIN_GOAL:
            break
        log.warning("int8 plan %r misses the fidelity goal, trying the next plan", label)

    tok = exp_dir / "tokenizer.json"
    h_dir, h_res = cached_step(
        "encoder-fp16",
        {"fp32_sha256": fp32_sha, "op_block_list": None, "code": fp16.FP16_CODE_VERSION},
        lambda d: fp16.convert(fp32, d),
        [fp16.FP16_FILE],
    )
    half = h_dir / fp16.FP16_FILE
    fid_half = fid(half)
    _, half_vs_fp32 = cached_step(
        "fidelity-fp16",
        {
            "fp16_sha256": sha256_file(half),
            "fp32_sha256": fp32_sha,
            "n": len(texts),
            "max_length": s.max_length,
            "dataset_sha256": ds.pkz_sha256,
            "texts": "train seeded sample",
            "code": fp16.FP16_CODE_VERSION,
        },
        lambda d: fp16.measure(fp32, half, tok, texts, max_length=s.max_length, threads=s.threads, workdir=d),
        [],
    )
    for name, m in half_vs_fp32["measurements"].items():
        log.info(
            "fidelity fp16 vs fp32 (%s, %s): cos mean %.6f min %.6f (n=%d)",
            name,
            m["provider"],
            m["cos_mean"],
            m["cos_min"],
            m["n"],
        )
    fp16.check(half_vs_fp32)  # a miss fails the build before anything is published

    # Artifacts are measured where they are cached and only published (with the manifest) at the very end
    # of the build, so build/models never mixes a new artifact with an old manifest for long.
    enc_dir = MODELS / "encoder"
    PUBLISH.update(
        {
            enc_dir / "model.fp32.onnx": fp32,
            enc_dir / "model.int8.onnx": int8,
            enc_dir / fp16.FP16_FILE: half,
            enc_dir / "tokenizer.json": tok,
        }
    )

    def entry(dst: Path, src: Path, fid_res: Json, variant: str, extra: Json) -> Json:
        return {
            "path": rel(dst),
            "sha256": sha256_file(src),
            "size_bytes": src.stat().st_size,
            "load_seconds": measure_load(
                lambda: Encoder(
                    src, tok, max_length=s.max_length, pre_optimized="graph_optimization" in extra
                )
            ),
            "fidelity": {k: fid_res[k] for k in ("cos_mean", "cos_min", "cos_p01", "n")},
            "tokenizer_path": rel(enc_dir / "tokenizer.json"),
            "tokenizer_sha256": sha256_file(tok),
            "max_length": s.max_length,
            "name": MODEL_NAME,
            "variant": variant,
            **extra,
        }

    return {
        "fp32": entry(
            enc_dir / "model.fp32.onnx",
            fp32,
            fid_fp32,
            "fp32",
            {
                "export": {
                    "opset": export_encoder.OPSET,
                    "dynamo": False,
                    "max_abs_diff_vs_torch": exp_res["max_abs_diff_vs_torch"],
                }
            },
        ),
        "int8": entry(
            enc_dir / "model.int8.onnx",
            int8,
            fid_int8,
            "int8-dynamic-per-channel",
            {
                "quantization": q_res | {"attempts": attempts},
                # source: the quantiser's own graph (build/cache), the baseline of bench/encoder_variants.py
                "graph_optimization": o_res
                | {"onnxruntime": ort_version(), "source": rel(q_dir / "model.int8.onnx")},
            },
        ),
        # the GPU worker's encoder (CUDA EP); never in a Lambda layer. ``fidelity`` is against
        # sentence-transformers like the others; ``fidelity_vs_fp32`` is the gate (training/fp16.py)
        "fp16": entry(
            enc_dir / fp16.FP16_FILE,
            half,
            fid_half,
            "fp16",
            {
                "execution_provider": "CUDAExecutionProvider",
                "conversion": h_res,
                "fidelity_vs_fp32": half_vs_fp32,
            },
        ),
    }


def build_embeddings(s: Settings, ds: data_mod.Dataset, encoder_entries: dict[str, Json]) -> Embeddings:
    from topicserve.encoder import Encoder

    tok = PUBLISH[MODELS / "encoder" / "tokenizer.json"]
    out: Embeddings = {}
    for variant, splits in (("int8", ("train", "test")), ("fp32", ("test",))):
        e = encoder_entries[variant]
        enc = Encoder(
            PUBLISH[REPO / e["path"]],
            tok,
            max_length=s.max_length,
            intra_op_threads=s.threads,
            pre_optimized=bool(e.get("graph_optimization")),
        )
        for split in splits:
            part = getattr(ds, split)
            arr, path = embed.embeddings(
                enc, e["sha256"], split, part.texts, part.index, ds.subset, ds.pkz_sha256
            )
            out[(variant, split)] = arr
            log.info("embeddings %s/%s: %s at %s", variant, split, arr.shape, rel(path))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--until",
        choices=["encoder", "embeddings", "heads"],
        default="heads",
        help="stop after this stage (the manifest is written only by a complete build)",
    )
    parser.add_argument("--heads", default=",".join(MODEL_NAMES), help="comma-separated heads to build")
    args = parser.parse_args(argv)
    names = [h for h in args.heads.split(",") if h]
    unknown = sorted(set(names) - set(MODEL_NAMES))
    if unknown:
        parser.error(f"unknown head(s) {unknown}; choose from {','.join(MODEL_NAMES)}")
    setup_logging()
    s = Settings.from_env()
    t_start = time.perf_counter()
    log.info(
        "build: quick=%s data_home=%s max_length=%d threads=%d", s.quick, s.data_home, s.max_length, s.threads
    )
    ds = data_mod.load(s.data_home, s.quick)
    log.info("dataset %s: %d train / %d test texts", ds.subset, len(ds.train.texts), len(ds.test.texts))
    enc = build_encoder(s, ds)
    if args.until == "encoder":
        return 0
    emb = build_embeddings(s, ds, enc)
    if args.until == "embeddings":
        return 0
    from training import ensemble
    from training import heads as heads_mod

    trained = [h for h in names if h != ensemble.NAME]
    heads, validation, head_files = heads_mod.build_heads(s, ds, emb, trained, enc["int8"]["sha256"])
    PUBLISH.update(head_files)
    if set(ensemble.MEMBERS) <= set(trained):  # last in the manifest: registered after its members
        heads[ensemble.NAME], ens_files = ensemble.build_ensemble(
            s, ds, emb, heads, head_files, enc["int8"]["sha256"]
        )
        PUBLISH.update(ens_files)
    else:
        log.info("ensemble: skipped, it needs all of %s built in this run", ",".join(ensemble.MEMBERS))
    from training.reference import build_reference

    reference, reference_files = build_reference(s, ds, emb, heads)
    PUBLISH.update(reference_files)
    manifest = {
        "quick": s.quick,
        "tuned": s.tune or s.quick,  # False: the recorded choice of an earlier search, refit (TUNE=0)
        "created_unix": int(time.time()),
        "code_revision": code_revision(),
        "code_dirty": code_dirty(),
        "labels": ds.labels,
        "dataset": {
            "file": Path(ds.file).name,
            "sha256": ds.pkz_sha256,
            "split": "bydate",
            "remove": list(data_mod.REMOVE),
            "subset": ds.subset,
            "n_train": len(ds.train.texts),
            "n_test": len(ds.test.texts),
            "validation": validation,
        },
        "encoder": enc,
        "heads": heads,
        "reference": reference,
        "build_seconds": round(time.perf_counter() - t_start, 1),
    }
    MODELS.mkdir(parents=True, exist_ok=True)
    (MODELS / "manifest.json").unlink(missing_ok=True)  # never pair the old manifest with new files
    for dst, src in PUBLISH.items():
        install(src, dst)
    tmp = MODELS / "manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    tmp.replace(MODELS / "manifest.json")
    log.info("wrote %s in %.1f s total", rel(MODELS / "manifest.json"), manifest["build_seconds"])
    for name, h in heads.items():
        m = h["metrics"]
        log.info(
            "  %-8s acc %.4f  macro-F1 %.4f  acc(fp32 emb) %.4f  %7.2f MB  load %.3f s  agree %.4f",
            name,
            m["accuracy"],
            m["macro_f1"],
            m["accuracy_fp32_embeddings"],
            h["size_bytes"] / 1e6,
            h["load_seconds"],
            h["agreement_with_native"],
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
