"""Functional tests of the built models (build/models/manifest.json, written by `make models`).

Structure, checksums, fidelity and ONNX==native agreement are asserted for every build; the accuracy and
RF size / load-time targets only for a full build (``"quick": false``), because the QUICK subset
(1,500 train texts, a 60-tree forest) is meant to be fast, not accurate.

The figures the manifest records about its own artifacts (fidelity to sentence-transformers, agreement
with the native model, the ensemble's gain) are re-measured here from the built artifacts and compared
with the record, never checked against the record alone.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np
import pytest

from topicserve.catalogue import MODEL_NAMES
from topicserve.encoder import Encoder
from topicserve.heads import Head

pytestmark = pytest.mark.models

REPO = Path(__file__).resolve().parents[2]
MANIFEST = REPO / "build" / "models" / "manifest.json"
HEADS = MODEL_NAMES
TARGET_ACCURACY = {"logreg": 0.675, "mlp": 0.67, "hgb": 0.635, "rf": 0.65, "ensemble": 0.675}
# QUICK build (1,500 train / 500 test texts, small forest and boosting): measured 0.664 / 0.672 / 0.51-0.55 /
# 0.532; the bars leave room for run-to-run noise but would catch a broken export or a label mix-up (0.05).
QUICK_TARGET_ACCURACY = {"logreg": 0.62, "mlp": 0.62, "hgb": 0.45, "rf": 0.48, "ensemble": 0.62}
RF_MAX_BYTES, RF_MAX_LOAD_S = 50_000_000, 1.0
#: texts of the build's fidelity sample re-measured against sentence-transformers (PyTorch on the CPU)
FIDELITY_TEXTS = 32
#: heads whose native model is refit to re-measure its export, by build: seconds each (a full build's
#: forest and network, and any build's 20 one-vs-rest boosted models, take minutes)
REFIT = {True: ("logreg", "rf", "mlp"), False: ("logreg",)}


@pytest.fixture(scope="module")
def manifest() -> dict:
    if not MANIFEST.exists():
        pytest.skip("no build/models/manifest.json: run `make models` (or QUICK=1 make models)")
    return json.loads(MANIFEST.read_text())


@pytest.fixture(scope="module")
def encoder(manifest) -> Encoder:
    e = manifest["encoder"]["int8"]
    return Encoder(
        REPO / e["path"],
        REPO / e["tokenizer_path"],
        max_length=e["max_length"],
        pre_optimized=bool(e.get("graph_optimization")),
    )


@pytest.fixture(scope="module")
def heads(manifest) -> dict[str, Head]:
    return {
        n: Head(REPO / h["path"], name=n, version=h["sha256"][:12], labels=manifest["labels"])
        for n, h in manifest["heads"].items()
    }


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_manifest_structure(manifest):
    assert isinstance(manifest["quick"], bool)
    assert len(manifest["labels"]) == 20 and len(set(manifest["labels"])) == 20
    ds = manifest["dataset"]
    assert ds["split"] == "bydate" and ds["remove"] == ["headers", "footers", "quotes"]
    assert len(ds["sha256"]) == 64 and ds["n_train"] > 0 and ds["n_test"] > 0 and ds["validation"]
    assert manifest["code_revision"]
    assert set(manifest["encoder"]) == {"int8", "fp32", "fp16"}
    assert set(manifest["heads"]) == set(HEADS)
    for a in manifest["encoder"].values():
        assert {"path", "sha256", "size_bytes", "load_seconds", "fidelity", "tokenizer_path"} <= set(a)
        assert {"cos_mean", "cos_min", "n"} <= set(a["fidelity"])
    for h in manifest["heads"].values():
        assert {
            "path",
            "sha256",
            "size_bytes",
            "load_seconds",
            "format",
            "agreement_with_native",
            "metrics",
            "hyperparameters",
        } <= set(h)
        assert {"accuracy", "macro_f1", "accuracy_fp32_embeddings"} <= set(h["metrics"])
        assert not Path(h["path"]).is_absolute()
    if not manifest["quick"]:
        assert ds["n_train"] == 11314 and ds["n_test"] == 7532


def test_artifacts_exist_and_match_checksums(manifest):
    entries = [*manifest["encoder"].values(), *manifest["heads"].values()]
    for e in entries:
        p = REPO / e["path"]
        assert p.is_file(), p
        assert p.stat().st_size == e["size_bytes"]
        assert sha256(p) == e["sha256"], f"{p} changed since the manifest was written"
    int8, fp32 = manifest["encoder"]["int8"], manifest["encoder"]["fp32"]
    assert int8["size_bytes"] < fp32["size_bytes"] / 3  # int8 weights: ~4x smaller


def test_encoder_fidelity_is_remeasured_against_sentence_transformers(manifest, encoder, dataset):
    """Fidelity to sentence-transformers itself (PyTorch, the package's weights), measured again as the
    build did (training/fidelity.py: the same seeded train texts, the same max length) on the first
    FIDELITY_TEXTS of them: the build's bars hold, and the means agree with the recorded ones."""
    from training import fidelity
    from training.build import FIDELITY_N

    fid8, fid32 = manifest["encoder"]["int8"]["fidelity"], manifest["encoder"]["fp32"]["fidelity"]
    assert fid8["n"] == fid32["n"] == FIDELITY_N[manifest["quick"]]
    texts = fidelity.pick_texts(dataset.train.texts, fid8["n"])[:FIDELITY_TEXTS]
    reference = fidelity.reference_embeddings(texts, manifest["encoder"]["int8"]["max_length"])
    e = manifest["encoder"]["fp32"]
    fp32 = Encoder(REPO / e["path"], REPO / e["tokenizer_path"], max_length=e["max_length"])
    now8 = fidelity.cosine_stats(reference, encoder.encode(texts))
    now32 = fidelity.cosine_stats(reference, fp32.encode(texts))
    assert now32["cos_min"] > 0.9999 and now8["cos_mean"] >= 0.99 and now8["cos_min"] >= 0.95, (now8, now32)
    assert now32["cos_mean"] == pytest.approx(fid32["cos_mean"], abs=1e-4)
    assert now8["cos_mean"] == pytest.approx(fid8["cos_mean"], abs=0.005), (now8, fid8)
    assert now8["cos_min"] >= fid8["cos_min"] - 1e-4  # a subset of the texts: its minimum is no lower


def test_fp16_encoder_recorded_and_close_to_fp32(manifest):
    """The GPU worker's encoder (training/fp16.py): the build's gate, and a re-measure on the CPU EP, the
    only provider here (the CUDA numbers come from bench/gpu_check.py)."""
    e16, e32 = manifest["encoder"]["fp16"], manifest["encoder"]["fp32"]
    gate = e16["fidelity_vs_fp32"]
    assert set(gate["measurements"]) == {"cpu_ep", "fp16_storage_emulation"}
    for m in gate["measurements"].values():
        assert m["cos_mean"] >= 0.999 and m["provider"] == "CPUExecutionProvider"
    assert gate["activation_range"]["max_abs"] < 65504
    assert e16["size_bytes"] < e32["size_bytes"] * 0.55  # fp16 weights: half of fp32
    fp16 = Encoder(REPO / e16["path"], REPO / e16["tokenizer_path"], max_length=e16["max_length"])
    fp32 = Encoder(REPO / e32["path"], REPO / e32["tokenizer_path"], max_length=e32["max_length"])
    texts = ["The goalie made a great save in overtime.", "How do I install a new SCSI driver? " * 30]
    a, b = fp16.encode(texts), fp32.encode(texts)
    assert a.dtype == np.float32 and np.allclose(np.linalg.norm(a, axis=1), 1, atol=1e-5)  # pooled in fp32
    assert (a * b).sum(axis=1).min() > 0.999


def test_heads_agree_with_their_native_models_remeasured(manifest, heads, dataset, split_embeddings):
    """Each exported head against its native model, refit here as the build refit it (recorded
    hyperparameters, the whole train split in the build's order, the build's seed), on the whole test
    split: top labels agree as the build recorded. The ensemble's native model is the weighted sum of its
    members' outputs. Refit: the heads in REFIT (those that refit in seconds)."""
    from training.heads import FIT, validation_split

    x_train, x_test = split_embeddings["train"], split_embeddings["test"]
    fit_idx, val_idx, _ = validation_split(dataset.train.y)
    order = np.concatenate([fit_idx, val_idx])
    for name in REFIT[manifest["quick"]]:
        params = {k: v for k, v in manifest["heads"][name]["hyperparameters"].items() if k != "onnx_format"}
        native = FIT[name](x_train[order], dataset.train.y[order], params)
        want = native.predict_proba(x_test.astype(np.float32)).argmax(1)
        agreement = float((heads[name].predict_proba(x_test).argmax(1) == want).mean())
        recorded = manifest["heads"][name]["agreement_with_native"]
        assert agreement >= 0.995 and agreement == pytest.approx(recorded, abs=0.002), (name, agreement)

    weights = {n: w for n, w in manifest["heads"]["ensemble"]["hyperparameters"]["weights"].items() if w > 0}
    summed = sum(w * heads[n].predict_proba(x_test).astype(np.float64) for n, w in weights.items())
    agreement = float((heads["ensemble"].predict_proba(x_test).argmax(1) == summed.argmax(1)).mean())
    recorded = manifest["heads"]["ensemble"]["agreement_with_native"]
    assert agreement >= 0.995 and agreement == pytest.approx(recorded, abs=0.002), agreement


def test_int8_encoder_close_to_fp32_and_deterministic(manifest, encoder):
    e = manifest["encoder"]["fp32"]
    fp32 = Encoder(REPO / e["path"], REPO / e["tokenizer_path"], max_length=e["max_length"])
    texts = [
        "The goalie made a great save in overtime.",
        "How do I install a new SCSI driver?",
        "NASA launched the shuttle yesterday.",
        "x " * 600,
    ]
    a, b = encoder.encode(texts), fp32.encode(texts)
    assert a.shape == (4, 384) and a.dtype == np.float32
    assert float((a * b).sum(1).min()) > 0.95
    np.testing.assert_allclose(encoder.encode(texts[::-1])[::-1], a, atol=1e-5)
    assert encoder.version == manifest["encoder"]["int8"]["sha256"]


def test_end_to_end_predictions(heads, encoder, manifest):
    labels = manifest["labels"]
    texts = {
        "rec.sport.hockey": "The goalie made a great save and the Penguins won the playoff game in overtime.",
        "sci.space": "NASA's shuttle launch to the orbiting space station was delayed by the weather.",
        "comp.sys.mac.hardware": "My Macintosh Quadra's SCSI hard drive is not recognised after adding RAM.",
    }
    x = encoder.encode(list(texts.values()))
    hits = 0
    for head in heads.values():
        p = head.predict_proba(x)
        assert p.shape == (3, 20) and p.dtype == np.float32
        np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-4)
        hits += sum(labels[i] == want for i, want in zip(p.argmax(1), texts, strict=True))
    assert hits >= 3 * len(heads) - 3, f"only {hits}/{3 * len(heads)} obvious texts classified correctly"


@pytest.fixture(scope="module")
def dataset(manifest):
    """The build's dataset (20NG bydate; the QUICK subset for a QUICK build)."""
    from training.data import load

    data_home = Path(os.environ.get("DATA_HOME", REPO.parent / "shared" / "data"))
    return load(data_home, quick=manifest["quick"])


@pytest.fixture(scope="module")
def test_sample(manifest, encoder, dataset) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Re-measured, not read back: the first 500 documents of the build's own test split (the whole QUICK
    test split), embedded now by the int8 and fp32 encoders; (int8, fp32, labels)."""
    texts = dataset.test.texts[:500]  # as the build embedded them (the empty ones too)
    e = manifest["encoder"]["fp32"]
    fp32 = Encoder(REPO / e["path"], REPO / e["tokenizer_path"], max_length=e["max_length"])
    return encoder.encode(texts), fp32.encode(texts), np.asarray(dataset.test.y[:500])


@pytest.fixture(scope="module")
def split_embeddings(manifest, encoder, dataset) -> dict[str, np.ndarray]:
    """The int8 embeddings of the whole train and test splits, the inputs the build's heads were fit and
    scored on (training.embed: read back from the build's cache when its key and sha256 match, else
    encoded now). Inputs only: every figure compared with the manifest is computed from them here."""
    from training import embed

    sha = manifest["encoder"]["int8"]["sha256"]
    return {
        split: embed.embeddings(
            encoder, sha, split, part.texts, part.index, dataset.subset, dataset.pkz_sha256
        )[0]
        for split, part in (("train", dataset.train), ("test", dataset.test))
    }


def test_int8_fidelity_is_remeasured(test_sample):
    """Cosine of the int8 encoder to the fp32 one on 500 test documents: the build's own fidelity bar."""
    int8, fp32, _ = test_sample
    cos = (int8 * fp32).sum(axis=1)
    assert float(cos.mean()) >= 0.99 and float(cos.min()) >= 0.95, (cos.mean(), cos.min())


def test_build_targets(manifest, heads, test_sample):
    """Accuracy re-measured on the test documents against the issue's targets on a full build; on a QUICK
    build (1,500 train texts, a 60-tree forest, a 30-iteration HGB: see docs/MODELS.md) the lower bars
    that subset reaches. The manifest's own figure must agree with what is measured now: exactly on a QUICK
    build (the same 500 documents), within sampling noise on a full one (500 of 7,532)."""
    int8, _, y = test_sample
    targets = QUICK_TARGET_ACCURACY if manifest["quick"] else TARGET_ACCURACY
    slack = 0.0 if manifest["quick"] else 0.04  # a 500-document sample of a full build
    for name, target in targets.items():
        measured = float((heads[name].predict(int8) == y).mean())
        recorded = manifest["heads"][name]["metrics"]["accuracy"]
        assert measured >= target - slack, (name, measured, target)
        assert abs(measured - recorded) <= (0.005 if manifest["quick"] else 0.06), (name, measured, recorded)
    rf = manifest["heads"]["rf"]
    assert rf["size_bytes"] <= RF_MAX_BYTES
    assert rf["load_seconds"] <= RF_MAX_LOAD_S


def test_rf_loads_fast_now(manifest):
    """Re-measure the RF load (best of 3; these machines drift up to 3x, hence the 2x allowance)."""
    rf = manifest["heads"]["rf"]
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        Head(REPO / rf["path"], name="rf")
        best = min(best, time.perf_counter() - t0)
    assert best <= 2 * RF_MAX_LOAD_S


def test_ensemble_is_the_weighted_sum_of_its_members(manifest, heads, test_sample):
    """The composed graph computes what its manifest entry says: the weights chosen on validation times
    the very member artifacts of this build; and it is registered after them (last in the manifest)."""
    ens = manifest["heads"]["ensemble"]
    members = {n: h for n, h in manifest["heads"].items() if n != "ensemble"}
    assert list(manifest["heads"])[-1] == "ensemble"
    hp = ens["hyperparameters"]
    assert hp["selected_on"] == "validation" and set(hp["weights"]) == set(members)
    assert sum(hp["weights"].values()) == pytest.approx(1.0)
    assert ens["members"] == {n: members[n]["sha256"] for n, w in hp["weights"].items() if w > 0}
    int8, _, _ = test_sample
    want = sum(w * heads[n].predict_proba(int8).astype(np.float64) for n, w in hp["weights"].items() if w > 0)
    got = heads["ensemble"].predict_proba(int8)
    assert float(np.abs(got - want).max()) < 1e-5


def test_ensemble_gain_over_the_best_single_head_is_remeasured(manifest, heads, dataset, split_embeddings):
    """Every head's accuracy on the whole test split, measured now from the artifacts: each equals the
    recorded one (to its 4 rounded decimals), and so do the best single head and the ensemble's gain
    over it."""
    x_test, y = split_embeddings["test"], dataset.test.y
    accuracy = {n: float((head.predict(x_test) == y).mean()) for n, head in heads.items()}
    for name, measured in accuracy.items():
        assert measured == pytest.approx(manifest["heads"][name]["metrics"]["accuracy"], abs=6e-5), name
    best = max(a for n, a in accuracy.items() if n != "ensemble")
    m = manifest["heads"]["ensemble"]["metrics"]
    assert accuracy[m["best_single_head"]["name"]] == best  # the recorded best single head is one now
    gain = 100 * (accuracy["ensemble"] - best)
    assert gain == pytest.approx(m["gain_points_vs_best_single"], abs=0.02), (gain, m)


def test_served_embeddings_do_not_depend_on_batch_mates(encoder: Encoder) -> None:
    """The INT8 encoder quantises activations per tensor at run time, so with several texts per call a
    text's embedding depends on the others and on their padding. The serving default encodes one text per
    call: the same text gets the same embedding (so the same labels) on every path, whatever shares its
    batch. Guards the default; a batch-invariant encoder (static quantisation) may lift it."""
    from topicserve.settings import Settings
    from topicserve.text import normalise

    batch_size = Settings().encode_batch_size
    texts = [
        normalise(t) for t in ("NASA launched a probe to Jupiter.", "The goalie " * 60, "Which X11 driver?")
    ]
    ids = [t.ids for t in encoder.tokenize(texts)]
    together = encoder.encode_tokens(ids, batch_size)
    for i, one in enumerate(ids):
        alone = encoder.encode_tokens([one], batch_size)[0]
        assert np.array_equal(alone, together[i]), (i, float(alone @ together[i]))
    mixed = encoder.encode_tokens(ids[::-1], batch_size)[::-1]
    assert np.array_equal(mixed, together)


def test_cache_records_keep_the_embedding_and_every_heads_label(manifest, heads, test_sample):
    """What a cache hit hands the heads (the record's 16-bit embedding), re-measured on the test documents:
    within cosine 0.999 of the encoder's own output, and every head that is ever handed one gives the same
    label on >= 99.9 % of them. Tree heads are never handed one (``Head.exact_embeddings``: a threshold
    turns a 1e-5 move into another leaf; the QUICK boosted trees change ~2.6 % of labels when the float32
    embedding is merely scaled by 1 + 1e-6); that they are not is tests/unit/test_service.py's to show."""
    from topicserve.cache.record import TextRecord

    int8, _, _ = test_sample
    restored = np.stack([TextRecord.decode(TextRecord(v).encode()).embedding for v in int8])
    cos = (restored * int8).sum(axis=1) / (np.linalg.norm(restored, axis=1) * np.linalg.norm(int8, axis=1))
    assert float(cos.mean()) >= 0.999 and float(cos.min()) >= 0.99, (cos.mean(), cos.min())
    weights = manifest["heads"]["ensemble"]["hyperparameters"]["weights"]
    trees = {"rf", "hgb"} | ({"ensemble"} if weights["rf"] > 0 or weights["hgb"] > 0 else set())
    assert {n for n, h in heads.items() if h.exact_embeddings} == trees
    for name, head in heads.items():
        if head.exact_embeddings:
            continue
        agreement = float((head.predict(restored) == head.predict(int8)).mean())
        assert agreement >= 0.999, (name, agreement)
