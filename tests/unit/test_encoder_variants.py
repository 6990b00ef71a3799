"""Unit tests of the pure parts of the encoder-variant benchmark and the static INT8 builder (no models)."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from bench.encoder_variants import (
    config_name,
    eligible,
    padding_stats,
    parse_config_name,
    quick_config,
    static_model_name,
    thread_count,
)
from training.static_int8 import (
    ATTENTION_MASK,
    INPUT_IDS,
    TOKEN_TYPE_IDS,
    CalibrationFeeds,
    StaticConfig,
    keep_fp32_for_float_consumers,
    matmul_role,
    quantize_embedding_tables,
    reader,
)


def test_calibration_feeds_are_one_unpadded_text_each() -> None:
    feeds = CalibrationFeeds([[101, 7, 102], [101, 102]])
    got = list(feeds)
    assert len(got) == len(feeds) == 2
    assert set(got[0]) == {INPUT_IDS, ATTENTION_MASK}
    assert got[0][INPUT_IDS].dtype == np.int64 and got[0][INPUT_IDS].shape == (1, 3)
    assert got[1][INPUT_IDS].tolist() == [[101, 102]]
    assert got[1][ATTENTION_MASK].tolist() == [[1, 1]]  # no padding, so every position is real
    with_types = CalibrationFeeds([[101, 102]], with_token_type_ids=True).feed(0)
    assert with_types[TOKEN_TYPE_IDS].tolist() == [[0, 0]]


def test_calibration_feeds_reject_empty_input() -> None:
    with pytest.raises(ValueError):
        CalibrationFeeds([])
    with pytest.raises(ValueError):
        CalibrationFeeds([[101, 102], []])


def test_reader_yields_every_feed_then_none_and_rewinds() -> None:
    r = reader(CalibrationFeeds([[1, 2], [3, 4, 5]]))
    first = [r.get_next(), r.get_next()]
    assert [f[INPUT_IDS].shape[1] for f in first] == [2, 3]
    assert r.get_next() is None
    r.rewind()
    again = r.get_next()
    assert again is not None and again[INPUT_IDS].tolist() == [[1, 2]]


def test_static_config_names() -> None:
    assert StaticConfig().name == "u8s8_minmax"
    assert StaticConfig(activation="s8", reduce_range=True).name == "s8s8_minmax_rr"
    assert StaticConfig(method="percentile", percentile=99.99).name == "u8s8_percentile99p99"
    assert StaticConfig(fp32_residual=False, exclude_roles=("ffn_out",)).name == "u8s8_minmax_no-ffn_out_qres"
    assert StaticConfig().as_dict()["name"] == "u8s8_minmax"
    assert StaticConfig(quantize_embeddings=False).name == "u8s8_minmax_f32emb"
    with pytest.raises(ValueError):
        StaticConfig(method="kl")
    with pytest.raises(ValueError):
        StaticConfig(activation="i4")
    with pytest.raises(ValueError):
        StaticConfig(exclude_roles=("attention",))


def test_matmul_roles_from_weight_shapes() -> None:
    assert matmul_role([384, 384]) == "square"
    assert matmul_role([384, 1536]) == "ffn_in"
    assert matmul_role([1536, 384]) == "ffn_out"
    assert matmul_role([384]) is None


def test_float_consumers_read_the_fp32_tensor_not_its_qdq_copy() -> None:
    """LayerNorm output -> Q -> DQ -> {MatMul, Add}: the residual Add must read the fp32 tensor again."""
    scale = numpy_helper.from_array(np.array(0.1, dtype=np.float32), "s")
    zp = numpy_helper.from_array(np.array(128, dtype=np.uint8), "z")
    w = numpy_helper.from_array(np.ones((4, 4), dtype=np.float32), "w")
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "z"], ["x_q"]),
        helper.make_node("DequantizeLinear", ["x_q", "s", "z"], ["x_dq"]),
        helper.make_node("MatMul", ["x_dq", "w"], ["y"]),
        helper.make_node("Add", ["y", "x_dq"], ["out"]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 4])],
        [scale, zp, w],
    )
    model = helper.make_model(graph)
    assert keep_fp32_for_float_consumers(model) == 1
    by_op = {n.op_type: list(n.input) for n in model.graph.node}
    assert by_op["MatMul"] == ["x_dq", "w"]  # the quantised consumer keeps the QDQ copy
    assert by_op["Add"] == ["y", "x"]


def test_embedding_tables_become_int8_with_the_same_lookups() -> None:
    import onnxruntime as ort

    table = np.random.default_rng(0).normal(size=(10, 4)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Gather", ["table", "ids"], ["emb"], name="lookup", axis=0)],
        "g",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, [1, 3])],
        [helper.make_tensor_value_info("emb", TensorProto.FLOAT, [1, 3, 4])],
        [numpy_helper.from_array(table, "table")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    assert quantize_embedding_tables(model) == ["table"]
    assert {i.name for i in model.graph.initializer} == {"table_int8", "table_scale", "table_zero_point"}
    assert [n.op_type for n in model.graph.node] == ["Gather", "DequantizeLinear"]
    ids = np.array([[3, 0, 9]], dtype=np.int64)
    got = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, {"ids": ids}
    )[0]
    step = np.abs(table).max() / 127
    assert np.abs(got - table[ids]).max() <= step / 2 + 1e-6


def test_config_names_round_trip() -> None:
    name = config_name("ort_static_u8s8_minmax_opt", 2, 32)
    assert name == "ort_static_u8s8_minmax_opt@t2b32"
    assert parse_config_name(name) == ("ort_static_u8s8_minmax_opt", "2", "32")
    assert parse_config_name(config_name("m", "2ns", "32tok1024")) == ("m", "2ns", "32tok1024")
    assert thread_count("2ns") == (2, False) and thread_count("1") == (1, True)
    assert static_model_name("u8s8_minmax", optimized=True) == "ort_static_u8s8_minmax_opt"
    for bad in ("nomodel", "@t1b1", "m@x1b1", "m@tb1"):
        with pytest.raises(ValueError):
            parse_config_name(bad)


def test_padding_stats_count_padded_tokens_of_sorted_sub_batches() -> None:
    lengths = [10, 100, 12, 90]
    alone = padding_stats(lengths, 1)
    assert alone["padded_tokens"] == alone["real_tokens"] == 212 and alone["padding_overhead"] == 0
    pairs = padding_stats(lengths, 2)  # sorted: (10, 12) -> 2 x 12, (90, 100) -> 2 x 100
    assert pairs["sub_batches"] == 2 and pairs["padded_tokens"] == 224
    assert pairs["padding_overhead"] == pytest.approx(224 / 212 - 1)
    capped = padding_stats(lengths, 4, max_tokens=100)  # 4 x 100 > 100: the long ones go alone
    assert capped["padded_tokens"] <= padding_stats(lengths, 4)["padded_tokens"]


def test_eligibility_needs_fidelity_and_batch_invariance_when_batched() -> None:
    good = {"cos_mean": 0.993, "cos_min": 0.97, "batch_invariance_max_drift": 1e-6}
    assert eligible(good, 1) and eligible(good, 32)
    drifting = good | {"batch_invariance_max_drift": 0.02}
    assert eligible(drifting, 1) and not eligible(drifting, 32)
    assert not eligible(good | {"cos_mean": 0.989}, 1)
    assert not eligible(good | {"cos_min": 0.94}, 1)


def test_quick_mode_measures_every_model_at_batch_1_and_the_core_batched() -> None:
    assert quick_config(False, "1", 1) and not quick_config(False, "2", 1)
    assert quick_config(True, "2ns", 1) and quick_config(True, "2", 32) and quick_config(True, "1", 32)
    assert not quick_config(True, "1", 8) and not quick_config(True, "2ns", 32)
