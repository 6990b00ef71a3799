"""Monitoring: the drift statistics, the capture's sums and sample, one window judged, the PNG."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from botocore.exceptions import ClientError

from tests.helpers import create_table
from tests.unit.conftest import FakeEncoder, FakeHead
from topicserve.monitoring.capture import Capture, MonitorStore, WindowSums, window_start
from topicserve.monitoring.drift import domain_auc, mean_shift, psi, roc_auc
from topicserve.monitoring.monitor import DriftThresholds, accuracy_rows, evaluate_window, render_png
from topicserve.monitoring.reference import Reference, from_probabilities
from topicserve.service import InferenceService

RNG = np.random.default_rng(0)
LABELS = [f"group.{i}" for i in range(20)]


def unit_rows(n: int, dim: int = 384, shift: float = 0.0) -> np.ndarray:
    x = RNG.standard_normal((n, dim)) + shift
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_psi_is_zero_for_equal_distributions_and_large_for_a_prior_shift() -> None:
    uniform = np.full(20, 50)
    assert psi(uniform, uniform) == pytest.approx(0.0, abs=1e-9)
    two_classes = np.zeros(20)
    two_classes[[3, 7]] = 500
    assert psi(uniform, two_classes) > 2.0


def test_roc_auc_matches_the_definition() -> None:
    assert roc_auc(np.array([0.1, 0.2, 0.8, 0.9]), np.array([0, 0, 1, 1])) == 1.0
    assert roc_auc(np.array([0.5, 0.5]), np.array([0, 1])) == 0.5
    assert roc_auc(np.array([0.9, 0.1, 0.2]), np.array([0, 1, 1])) == 0.0


def test_domain_classifier_tells_shifted_inputs_and_not_identical_ones() -> None:
    ref = unit_rows(1000)
    assert domain_auc(ref, unit_rows(300)) < 0.6  # same distribution: no better than chance
    assert domain_auc(ref, unit_rows(300, shift=0.15)) > 0.9
    assert mean_shift(ref, unit_rows(300)) < 2.0 < mean_shift(ref, unit_rows(300, shift=0.15))


def reference() -> Reference:
    proba = RNG.dirichlet(np.ones(20) * 0.3, size=2000).astype(np.float32)
    return from_probabilities(unit_rows(1000), LABELS, {"logreg": proba})


def sums_like(ref: Reference, n: int, classes: list[int] | None = None) -> WindowSums:
    s = WindowSums()
    p = ref.classes["logreg"] if classes is None else np.bincount(classes, minlength=20) / len(classes)
    ids = RNG.choice(20, size=n, p=p)
    s.add(ids, np.full(n, ref.mean_confidence["logreg"]))
    return s


def test_a_window_is_judged_on_each_statistic() -> None:
    ref, t = reference(), DriftThresholds()
    calm = evaluate_window("w", {("logreg", "1"): sums_like(ref, 400)}, unit_rows(200), ref, t)
    assert not calm["drift"] and calm["models"]["logreg"]["psi"] < t.psi
    prior = evaluate_window("w", {("logreg", "1"): sums_like(ref, 400, [3, 7])}, unit_rows(200), ref, t)
    assert prior["drift"] and prior["models"]["logreg"]["flags"] == ["prediction_psi"]
    covariate = evaluate_window(
        "w", {("logreg", "1"): sums_like(ref, 400)}, unit_rows(200, shift=0.15), ref, t
    )
    assert covariate["drift"] and "embedding_auc" in covariate["embeddings"]["flags"]
    small = evaluate_window("w", {("logreg", "1"): sums_like(ref, 20, [3])}, unit_rows(5, shift=1), ref, t)
    assert not small["drift"], "too little data is reported, not flagged"
    png = render_png(prior, ref)
    import matplotlib.image

    image = matplotlib.image.imread(io.BytesIO(png), format="png")
    assert image.shape[0] > 200 and image.shape[1] > 500


def test_the_png_shows_live_accuracy_per_version_against_its_reference(tmp_path: Path) -> None:
    """The report's live quality (label feedback) as its own panel: production first in each model, each
    version's interval, the offline accuracy and the alarm's line; a PNG without labels has no panel."""
    from topicserve.feedback.model import QualitySums, ServedAnswer
    from topicserve.feedback.quality import quality_report

    def sums(correct: int, n: int, version: str, stage: str) -> QualitySums:
        q = QualitySums()
        for i in range(n):
            q.add(ServedAnswer(version, stage, "a" if i < correct else "b", 0.8, True), "a")
        return q

    quality = quality_report(
        {
            ("logreg", "10"): sums(450, 1000, "10", "canary"),
            ("logreg", "9"): sums(300, 1000, "9", "production"),
            ("rf", "1"): QualitySums(),
        },
        {("logreg", "9"): (0.72, 7532), ("logreg", "10"): (0.70, 7532)},
        {"logreg": "9"},
    )
    rows = accuracy_rows(quality)
    assert [r["name"] for r in rows] == ["logreg v9 (production, n=1000)", "logreg v10 (canary, n=1000)"]
    assert rows[0]["below"] and rows[0]["low"] < 0.3 < rows[0]["high"] and rows[0]["reference"] == 0.72
    assert rows[0]["reference_low"] < 0.72
    ref, t = reference(), DriftThresholds()
    report = evaluate_window("w", {("logreg", "9"): sums_like(ref, 400)}, unit_rows(200), ref, t)
    import matplotlib.image

    plain = matplotlib.image.imread(io.BytesIO(render_png(report, ref)), format="png")
    labelled = render_png({**report, "quality": quality}, ref)
    (tmp_path / "report.png").write_bytes(labelled)
    image = matplotlib.image.imread(io.BytesIO(labelled), format="png")
    assert image.shape[0] > plain.shape[0] + 50  # the panel's room
    assert accuracy_rows({}) == []


def test_reference_round_trip(tmp_path: Path) -> None:
    ref = reference()
    ref.save(tmp_path / "r.npz")
    back = Reference.load(tmp_path / "r.npz")
    assert back.labels == LABELS and np.array_equal(back.embeddings, ref.embeddings)
    assert back.mean_confidence == ref.mean_confidence and np.allclose(
        back.classes["logreg"], ref.classes["logreg"]
    )


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_capture_sums_answers_samples_embeddings_and_writes_windows(
    ddb: Any, fake_encoder: FakeEncoder
) -> None:
    create_table(ddb, "monitor", [("pk", "S", "HASH"), ("sk", "S", "RANGE")])
    store = MonitorStore("monitor", ddb)
    clock = Clock(1_800_000_000.0)
    capture = Capture(store, window_seconds=60, sample=0.5, cap=30, flush_seconds=5, clock=clock)
    service = InferenceService(fake_encoder, {"logreg": FakeHead("logreg", "7")})
    texts = [f"text {i}" for i in range(100)]
    result = service.predict(texts + texts[:10], ["logreg"])  # duplicates count as answers
    capture.observe(result)
    assert capture.maybe_flush() == 0  # not due yet
    clock.now += 5
    assert capture.maybe_flush() == 2
    window = window_start(clock.now, 60)
    sums = store.window_sums(window)[("logreg", "7")]
    assert sums.n == 110 and sums.classes.sum() == 110 and sums.hist.sum() == 110 and sums.distinct == 100
    assert sums.conf_sum == pytest.approx(
        sum(p.top[0]["probability"] for p in result.predictions["logreg"]), rel=1e-4
    )
    sampled = store.window_embeddings(window)
    assert len(sampled) == 30  # the cap per window and environment
    again = service.predict(texts, ["logreg"])  # the same texts: the same hashes, no new sample rows
    capture.sampled_per_window = {}
    capture.observe(again)
    capture.maybe_flush(force=True)
    assert len(store.window_embeddings(window)) <= 60
    again_sums = store.window_sums(window)[("logreg", "7")]
    assert again_sums.n == 210 and again_sums.distinct == 100  # repeats add answers, not information


def test_every_window_of_1000_distinct_texts_keeps_its_share_of_embeddings() -> None:
    """The blind spot: share < 5 % kept a binomial number (~42 of 1,000 measured), under the embedding
    test's 50; the bottom-k reservoir keeps ceil(5 % x n), flushed as often as serving flushes."""
    from topicserve.monitoring.capture import EmbeddingReservoir
    from topicserve.rollout.routing import share
    from topicserve.text import text_hash

    vector = np.zeros(384, dtype=np.float32)
    short = 0
    for w in range(20):
        hashes = [text_hash(f"window {w} text {i}") for i in range(1000)]
        short += sum(share("monitor", "", h) < 0.05 for h in hashes) < 50  # the old rule
        reservoir, written = EmbeddingReservoir(0.05, cap=200), {}
        for start in range(0, 1000, 100):  # a flush every 100 texts
            for h in hashes[start : start + 100] + hashes[:5]:  # repeats are one text
                reservoir.offer(f"w{w}", h, vector)
            written |= reservoir.due(final=False)
        written |= reservoir.due(final=True)  # the first flush after the window
        assert set(sorted(hashes, key=lambda h: share("monitor", "", h))[:50]) <= set(written)
        under_rate = sum(share("monitor", "", h) < 0.05 for h in hashes)
        assert 50 <= len(written) <= max(50, under_rate)  # the old budget, plus its shortfall
    assert short > 0  # the old rule fell short in some of these windows
    reservoir = EmbeddingReservoir(0.05, cap=3)
    for i in range(1000):
        reservoir.offer("w", text_hash(str(i)), vector)
    assert len(reservoir.due(final=True)) == 3 and reservoir.due(final=True) == {}  # the cap, nothing twice


def test_a_five_model_flush_adds_every_models_sums_and_keeps_only_a_failed_one(
    ddb: Any, fake_encoder: FakeEncoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    create_table(ddb, "monitor", [("pk", "S", "HASH"), ("sk", "S", "RANGE")])
    store = MonitorStore("monitor", ddb)
    clock = Clock(1_800_000_000.0)
    capture = Capture(store, window_seconds=60, sample=0.0, cap=0, flush_seconds=0, clock=clock)
    models = ["logreg", "rf", "hgb", "mlp", "ensemble"]
    service = InferenceService(fake_encoder, {m: FakeHead(m, "1") for m in models})
    capture.observe(service.predict([f"text {i}" for i in range(20)], models))
    real = ddb.update_item

    def rf_fails(**kwargs: Any) -> Any:
        if kwargs["Key"]["sk"]["S"] == "rf#1":
            raise ClientError({"Error": {"Code": "ValidationException", "Message": "no"}}, "UpdateItem")
        return real(**kwargs)

    monkeypatch.setattr(ddb, "update_item", rf_fails)
    assert capture.maybe_flush() == 4  # the others were added, in flight together
    window = window_start(clock.now, 60)
    assert set(store.window_sums(window)) == {(m, "1") for m in models if m != "rf"}
    monkeypatch.setattr(ddb, "update_item", real)
    assert capture.maybe_flush() == 1  # rf's sums were kept, and added once
    assert {k: s.n for k, s in store.window_sums(window).items()} == {(m, "1"): 20 for m in models}


def test_a_sampled_embedding_is_one_write_unit_and_old_float32_items_still_read(ddb: Any) -> None:
    from bench.cost import ddb_item_bytes
    from topicserve.monitoring.capture import encode_vector

    create_table(ddb, "monitor", [("pk", "S", "HASH"), ("sk", "S", "RANGE")])
    store = MonitorStore("monitor", ddb)
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(3, 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    window = "2026-12-07T06:00:00Z"
    store.put_embeddings(window, {f"{i:032x}": v for i, v in enumerate(vectors[:2])})
    old = {"pk": {"S": f"emb#{window}"}, "sk": {"S": "f" * 32}, "e": {"B": vectors[2].tobytes()}}
    ddb.put_item(TableName="monitor", Item=old)  # written before half precision: float32, no "f"
    items = ddb.scan(TableName="monitor")["Items"]
    assert max(ddb_item_bytes(i) for i in items if "f" in i) <= 1024  # one write unit
    back = store.window_embeddings(window)
    assert back.dtype == np.float32 and back.shape == (3, 384)
    assert np.array_equal(back[2], vectors[2])  # the old item, exact
    assert np.abs(back[:2] - vectors[:2]).max() < 1e-3  # half precision
    assert len(encode_vector(vectors[0])) == 768
