"""Unit tests of topicserve.heads.Head and of the training-side tree converters (training/trees.py).

Head is tested on a tiny synthetic softmax graph with the common head interface. The converters are
tested on small synthetic forests: the ONNX graphs must reproduce scikit-learn exactly (same argmax on
every row, probabilities within float32 rounding), including impure leaves and threshold edge cases.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests.helpers import save_onnx
from topicserve.errors import ArtifactError, InvalidEmbeddingsError
from topicserve.heads import Head

N_FEATURES, N_CLASSES = 384, 20


def softmax_head(path, n_classes: int = N_CLASSES, input_name: str = "embeddings"):
    rng = np.random.default_rng(1)
    w = rng.normal(size=(N_FEATURES, n_classes)).astype(np.float32)
    g = helper.make_graph(
        [
            helper.make_node("MatMul", [input_name, "w"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
        ],
        "toy-head",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["N", N_FEATURES])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", n_classes])],
        initializer=[numpy_helper.from_array(w, "w")],
    )
    return save_onnx(g, path)


@pytest.fixture(scope="module")
def head_path(tmp_path_factory):
    return softmax_head(tmp_path_factory.mktemp("head") / "toy.onnx")


@pytest.fixture(scope="module")
def head(head_path):
    return Head(head_path, name="toy", version="3", labels=[f"c{i}" for i in range(N_CLASSES)])


def emb(n: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, N_FEATURES)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_predict_proba_shape_dtype_rows_sum_to_one(head):
    p = head.predict_proba(emb(5))
    assert p.shape == (5, N_CLASSES) and p.dtype == np.float32
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-5)
    assert head.name == "toy" and head.version == "3" and head.labels[0] == "c0"
    assert (head.predict(emb(5)) == p.argmax(1)).all()


def test_zero_rows(head):
    assert head.predict_proba(np.zeros((0, N_FEATURES), np.float32)).shape == (0, N_CLASSES)


@pytest.mark.parametrize(
    "bad",
    [
        emb(3).astype(np.float64),  # wrong dtype: no silent cast
        emb(3)[:, :100],  # wrong width
        emb(1)[0],  # 1-D
        emb(2)[None],  # 3-D
        emb(2).tolist(),  # not an array
        np.full((2, N_FEATURES), np.nan, np.float32),
    ],
    ids=["float64", "width", "1d", "3d", "list", "nan"],
)
def test_bad_embeddings_raise_typed_error(head, bad):
    with pytest.raises(InvalidEmbeddingsError):
        head.predict_proba(bad)


def test_missing_and_corrupt_files_raise_artifact_error(head_path, tmp_path):
    with pytest.raises(ArtifactError):
        Head(tmp_path / "nope.onnx", name="x")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(head_path.read_bytes()[:64])
    with pytest.raises(ArtifactError):
        Head(bad, name="x")


def test_wrong_interface_and_label_count_refused(tmp_path, head_path):
    with pytest.raises(ArtifactError, match="head interface"):
        Head(softmax_head(tmp_path / "other.onnx", input_name="x"), name="x")
    with pytest.raises(ArtifactError, match="labels"):
        Head(head_path, name="x", labels=["a", "b"])


# ----------------------------------------------------------------------------- converters (training side)


def _data(n: int = 600, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, N_FEATURES)).astype(np.float32)
    y = (np.abs(x[:, :5]).argmax(1) * 4 + rng.integers(0, 4, size=n)) % N_CLASSES
    x[:20] = x[0]  # identical rows with different labels -> impure leaves
    return x, y


def _onnx_proba(model: onnx.ModelProto, x: np.ndarray, tmp_path) -> np.ndarray:
    p = tmp_path / "m.onnx"
    onnx.save(model, str(p))
    return Head(p, name="t").predict_proba(x)


def test_floor_float32_is_exact():
    pytest.importorskip("sklearn")  # the training package needs the dev environment
    from training.trees import floor_float32

    t = np.array([0.1, -0.1, 1 / 3, 0.5, 1e-9, -2.0], dtype=np.float64)
    f = floor_float32(t)
    assert f.dtype == np.float32
    assert (f.astype(np.float64) <= t).all()
    assert (np.nextafter(f, np.float32(np.inf)).astype(np.float64) > t).all()


@pytest.mark.parametrize("fmt", ["treeensemble", "gather"])
@pytest.mark.parametrize("leaf", [1, 3])
def test_random_forest_export_matches_sklearn(tmp_path, fmt, leaf):
    pytest.importorskip("sklearn")
    from sklearn.ensemble import RandomForestClassifier

    from training import trees

    x, y = _data()
    rf = RandomForestClassifier(n_estimators=15, min_samples_leaf=leaf, random_state=0).fit(x, y)
    if fmt == "treeensemble":  # allow any number of chain trees: their exactness is what is tested here
        model, _ = trees.random_forest_to_onnx(rf, N_FEATURES, max_chain_ratio=1e9)
    else:
        model, _ = trees.random_forest_to_onnx_gather(rf, N_FEATURES)
    xt = np.concatenate([x[:50], _data(200, seed=1)[0]])
    got, want = _onnx_proba(model, xt, tmp_path), rf.predict_proba(xt)
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert (got.argmax(1) == want.argmax(1)).all()


def test_hgb_one_vs_rest_export_matches_sklearn(tmp_path):
    pytest.importorskip("sklearn")
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.multiclass import OneVsRestClassifier

    from training import trees

    x, y = _data()
    ovr = OneVsRestClassifier(HistGradientBoostingClassifier(max_iter=15, max_leaf_nodes=7, random_state=0))
    ovr.fit(x, y)
    model, _ = trees.hgb_ovr_to_onnx(ovr, N_FEATURES)
    xt = _data(200, seed=2)[0]
    got, want = _onnx_proba(model, xt, tmp_path), ovr.predict_proba(xt)
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert (got.argmax(1) == want.argmax(1)).all()
