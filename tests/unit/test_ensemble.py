"""The ensemble head (training/ensemble.py): weight search, ONNX composition, registry lineage.

Members are tiny heads fitted here and exported with the project's own exporters (skl2onnx logreg: opset 17
+ ai.onnx.ml 1; the opset-5 TreeEnsemble forest: opset 21 + ai.onnx.ml 5), so the composition is tested on
the same kinds of graphs the build merges, in a few seconds.
"""

from __future__ import annotations

import json
from math import comb
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import onnx
import pytest

from tests.unit.conftest import artifact
from tests.unit.test_registry import fake_manifest
from topicserve.errors import RegistryError
from topicserve.heads import Head
from topicserve.registry import Registry
from topicserve.registry.manifest import register_manifest
from topicserve.registry.model import ModelVersion
from topicserve.registry.store import sha256_file
from training import common, ensemble
from training import heads as heads_mod
from training.common import Settings

N_CLASSES = 20


def blobs(n_per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Unit-norm 384-d points around one random centre per class (embeddings-like)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((N_CLASSES, heads_mod.N_FEATURES))
    y = np.repeat(np.arange(N_CLASSES), n_per_class)
    x = centres[y] + 1.5 * rng.standard_normal((len(y), heads_mod.N_FEATURES))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32), y


@pytest.fixture(scope="module")
def members(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("members")
    x, y = blobs(12, seed=1)
    paths = {"logreg": out / "logreg.onnx", "rf": out / "rf.onnx"}
    heads_mod.export_logreg(heads_mod.fit_logreg(x, y, {"C": 1.0}), paths["logreg"])
    forest = heads_mod.fit_rf(x, y, {"n_estimators": 5, "max_features": "sqrt"})
    heads_mod.export_rf(forest, paths["rf"], "treeensemble")
    return paths


def test_simplex_grid_covers_the_simplex() -> None:
    grid = ensemble.simplex_grid(4, 0.05)
    assert grid.shape == (comb(20 + 3, 3), 4)
    np.testing.assert_allclose(grid.sum(1), 1.0)
    assert grid.min() == 0.0 and len({tuple(r) for r in grid.round(6)}) == len(grid)
    assert [list(r) for r in ensemble.simplex_grid(2, 0.5)] == [[0.0, 1.0], [0.5, 0.5], [1.0, 0.0]]
    with pytest.raises(ValueError):
        ensemble.simplex_grid(3, 0.3)


def test_weights_follow_only_the_data_given() -> None:
    """Each member is right on its own half of the rows: the weights follow whichever labels are passed."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, N_CLASSES, 200)
    wrong = (y + 1) % N_CLASSES
    half = np.arange(200) < 100

    def onehot(labels: np.ndarray) -> np.ndarray:
        p = np.full((len(labels), N_CLASSES), 0.01)
        p[np.arange(len(labels)), labels] = 1 - 0.01 * (N_CLASSES - 1)
        return p

    a = onehot(np.where(half, y, wrong))  # right on the first half
    b = onehot(np.where(half, wrong, y))  # right on the second half
    weights, info = ensemble.choose_weights({"a": a[half], "b": b[half]}, y[half])  # the first half only
    assert weights == {"a": 1.0, "b": 0.0}  # every a-leaning mix is right; pure a has the lowest loss
    assert info["accuracy"] == 1.0 and info["n_rows"] == 100
    weights, _ = ensemble.choose_weights({"a": a[~half], "b": b[~half]}, y[~half])
    assert weights == {"a": 0.0, "b": 1.0}


def test_ties_in_accuracy_go_to_the_lower_log_loss() -> None:
    y = np.array([0, 1, 2, 3])
    sure, unsure = np.full((4, N_CLASSES), 0.0), np.full((4, N_CLASSES), 0.04)
    sure[np.arange(4), y] = 1.0
    unsure[np.arange(4), y] = 0.24
    weights, info = ensemble.choose_weights({"unsure": unsure, "sure": sure}, y, step=0.25)
    assert weights == {"unsure": 0.0, "sure": 1.0}  # every mix is 100 % right; the sure one loses least
    assert info["log_loss"] == pytest.approx(0.0, abs=1e-12)


def test_composed_graph_is_the_weighted_sum(members: dict[str, Path], tmp_path: Path) -> None:
    weights = {"logreg": 0.65, "rf": 0.35}
    models = {n: onnx.load(str(p)) for n, p in members.items()}
    composed = ensemble.compose(models, weights)
    opsets = {o.domain: o.version for o in composed.opset_import}
    want_opsets: dict[str, int] = {}
    for m in models.values():
        for o in m.opset_import:
            want_opsets[o.domain] = max(want_opsets.get(o.domain, 0), o.version)
    assert opsets == want_opsets and opsets["ai.onnx.ml"] == 5  # merged: the newest of each domain
    assert composed.ir_version >= max(m.ir_version for m in models.values())
    path = tmp_path / "ensemble.onnx"
    onnx.save(composed, str(path))

    x, _ = blobs(3, seed=2)  # unseen points
    head = Head(path, name="ensemble")  # the serving class: interface checked on load
    got = head.predict_proba(x)
    want = ensemble.weighted_sum({n: heads_mod.onnx_proba(p, x) for n, p in members.items()}, weights)
    assert got.shape == (len(x), N_CLASSES)
    assert float(np.abs(got - want).max()) < 1e-6
    np.testing.assert_allclose(got.sum(1), 1.0, atol=1e-5)


def test_a_member_without_the_head_interface_is_refused(members: dict[str, Path]) -> None:
    model = onnx.load(str(members["logreg"]))
    model.graph.input[0].name = "x"
    with pytest.raises(ValueError, match="head interface"):
        ensemble.compose({"logreg": model}, {"logreg": 1.0})


def test_members_validation_probabilities_come_from_the_fit_split(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The member is refit on the fit rows only and scored on the validation rows only (no leakage of the
    published, full-train head into its own weight)."""
    monkeypatch.setattr(common, "CACHE", tmp_path)
    y = np.repeat(np.arange(N_CLASSES), 10)
    x = np.zeros((len(y), heads_mod.N_FEATURES), dtype=np.float32)
    x[:, 0] = np.arange(len(y))  # each row carries its own index
    fit_idx, val_idx, _ = heads_mod.validation_split(y)
    seen: dict[str, Any] = {}

    class Recorder:
        def predict_proba(self, rows: np.ndarray) -> np.ndarray:
            seen["scored"] = rows[:, 0].astype(int)
            return np.full((len(rows), N_CLASSES), 1 / N_CLASSES)

    def fit(rows: np.ndarray, labels: np.ndarray, params: dict) -> Recorder:
        seen["fit"], seen["params"] = rows[:, 0].astype(int), params
        return Recorder()

    monkeypatch.setitem(heads_mod.FIT, "rf", fit)
    ds = SimpleNamespace(train=SimpleNamespace(y=y), labels=[str(i) for i in range(N_CLASSES)])
    emb = {("int8", "train"): x}
    s = Settings(quick=True, data_home=tmp_path, max_length=8, threads=1)
    params = {"n_estimators": 3, "onnx_format": "gather"}
    proba = ensemble.validation_probabilities(s, "rf", params, ds, emb, heads_mod.embeddings_key(emb))
    assert sorted(seen["fit"]) == sorted(fit_idx) and sorted(seen["scored"]) == sorted(val_idx)
    assert seen["params"] == {"n_estimators": 3}  # the export format is not a fit parameter
    assert proba.shape == (len(val_idx), N_CLASSES)


# --------------------------------------------------------------------------- registry lineage


def ensemble_manifest(tmp_path: Path) -> dict[str, Any]:
    manifest = fake_manifest(tmp_path)
    p = artifact(tmp_path, "ensemble.onnx", b"ensemble")
    members = {h: manifest["heads"][h]["sha256"] for h in ("logreg", "rf")}
    manifest["heads"]["ensemble"] = {
        "path": p.name,
        "sha256": sha256_file(p),
        "format": "onnx",
        "metrics": {"accuracy": 0.6},
        "hyperparameters": {"weights": {"logreg": 0.5, "rf": 0.5}, "selected_on": "validation"},
        "members": members,
    }
    return manifest


def test_register_manifest_records_the_member_versions(registry: Registry, tmp_path: Path) -> None:
    manifest = ensemble_manifest(tmp_path)
    records = register_manifest(registry, manifest, root=tmp_path, log=lambda s: None)
    ens = registry.resolve("ensemble")
    assert ens.lineage.members == {
        h: {"version": records[h].version, "sha256": manifest["heads"][h]["sha256"]} for h in ("logreg", "rf")
    }
    assert registry.resolve("logreg").lineage.members == {}


def test_register_manifest_refuses_an_ensemble_before_its_members(registry: Registry, tmp_path: Path) -> None:
    manifest = ensemble_manifest(tmp_path)
    manifest["heads"] = {"ensemble": manifest["heads"]["ensemble"], "logreg": manifest["heads"]["logreg"]}
    with pytest.raises(RegistryError, match="member 'logreg'"):
        register_manifest(registry, manifest, root=tmp_path, log=lambda s: None)


def test_versions_registered_before_members_existed_still_load() -> None:
    old = {
        "name": "logreg",
        "version": 1,
        "sha256": "a" * 64,
        "size_bytes": 1,
        "format": "onnx",
        "artifact_uri": "s3://b/k",
        "created_at": "2025-01-01T00:00:00+00:00",
        "lineage": {"dataset": {}, "encoder": {}, "code_revision": "r", "parent_version": None},
    }
    version = ModelVersion.from_document(json.dumps(old), stage="production")
    assert version.lineage.members == {}
