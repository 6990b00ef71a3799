"""Static (calibrated) INT8 quantisation of the encoder, QDQ format, and ONNX Runtime's offline graph.

Why static: the served encoder is quantised *dynamically* (``training/quantize.py``), so every MatMul
quantises its activations per tensor at run time, from the min/max of the whole batch: a text's embedding
depends on its batch mates (cos down to 0.96), which is why serving encodes one text per call. A static
graph has activation scales fixed at build time from calibration data, so each row is computed alone and
the embedding does not depend on what shares the batch (measured by ``bench/encoder_variants.py``), and the
graph spends no time on the run-time DynamicQuantizeLinear reductions.

Calibration data: token inputs of *training* texts only (never the test split the heads are scored on),
one text per feed and unpadded, so padding positions never widen the activation ranges.

``build_static_int8`` is the reusable builder (the model build can call it, and
``training.quantize.save_optimized`` then saves its optimised graph). Deterministic for the same inputs.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import onnx

INPUT_IDS = "input_ids"
ATTENTION_MASK = "attention_mask"
TOKEN_TYPE_IDS = "token_type_ids"

#: ``QuantType`` names by the short code used in variant names (activation type first, then weights).
TYPE_CODES = {"u8": "QUInt8", "s8": "QInt8"}
CALIBRATION_METHODS = ("minmax", "percentile", "entropy")
ROLES = ("ffn_in", "ffn_out", "square")
#: histogram calibrators (Percentile, Entropy) hold every feed's intermediate tensors in memory at once
#: (~35 MB a text here): more than this many feeds risks running out of memory on a small machine
HISTOGRAM_MAX_FEEDS = 100


@dataclass(frozen=True)
class StaticConfig:
    """One static-quantisation recipe. ``name`` is what reports and cache folders call it."""

    activation: str = "u8"  # "u8" | "s8"
    weight: str = "s8"  # "u8" | "s8"
    method: str = "minmax"  # one of CALIBRATION_METHODS
    reduce_range: bool = False
    #: quantise only MatMuls whose B is a weight (the dense layers); the attention score / context
    #: MatMuls (activation x activation) stay fp32
    const_b_only: bool = True
    #: also quantise each MatMul's output (QLinearMatMul + DequantizeLinear); False leaves outputs fp32,
    #: which ONNX Runtime fuses into MatMulIntegerToFloat (no requantisation of the result)
    quantize_outputs: bool = False
    #: dense layers kept fp32, by role: "ffn_in" (384 -> 1536), "ffn_out" (1536 -> 384), "square"
    #: (the 384 -> 384 query/key/value and attention-output projections)
    exclude_roles: tuple[str, ...] = ()
    #: rewire consumers that are not quantised (the residual Add, Shape) to the fp32 tensor instead of its
    #: quantise-dequantise copy: ONNX Runtime's QDQ quantiser feeds *every* consumer from the
    #: DequantizeLinear, which puts quantisation error into the residual stream for no speed gain
    fp32_residual: bool = True
    #: store the embedding tables (word, position, token type) as int8, per tensor, dequantised after the
    #: Gather, as the dynamic build does: 47 MB of fp32 word embeddings otherwise dominate the file (and its
    #: load time)
    quantize_embeddings: bool = True
    percentile: float = 99.999
    per_channel: bool = True
    nodes_to_exclude: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.activation not in TYPE_CODES or self.weight not in TYPE_CODES:
            raise ValueError(f"activation/weight must be one of {sorted(TYPE_CODES)}")
        if set(self.exclude_roles) - set(ROLES):
            raise ValueError(f"exclude_roles must be among {ROLES}, got {self.exclude_roles!r}")
        if self.method not in CALIBRATION_METHODS:
            raise ValueError(f"method must be one of {CALIBRATION_METHODS}, got {self.method!r}")

    @property
    def name(self) -> str:
        parts = [f"{self.activation}{self.weight}", self.method]
        if self.method == "percentile":
            parts[-1] += f"{self.percentile:g}".replace(".", "p")
        if self.reduce_range:
            parts.append("rr")
        if not self.const_b_only:
            parts.append("allmm")
        if self.quantize_outputs:
            parts.append("qout")
        parts.extend(f"no-{r}" for r in self.exclude_roles)
        if not self.fp32_residual:
            parts.append("qres")
        if not self.quantize_embeddings:
            parts.append("f32emb")
        if not self.per_channel:
            parts.append("pt")
        if self.nodes_to_exclude:
            parts.append(f"x{len(self.nodes_to_exclude)}")
        return "_".join(parts)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["nodes_to_exclude"] = list(self.nodes_to_exclude)
        d["exclude_roles"] = list(self.exclude_roles)
        d["name"] = self.name
        return d


def tokenize_for_calibration(
    tokenizer_path: str | os.PathLike[str], texts: Sequence[str], max_length: int
) -> list[list[int]]:
    """Token ids exactly as :class:`topicserve.encoder.Encoder` feeds them (truncation to ``max_length``
    with [CLS]/[SEP], no padding): the shipped tokenizer.json's fixed padding/truncation are replaced."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(os.fspath(tokenizer_path))
    tok.enable_truncation(max_length=max_length)
    tok.no_padding()
    return [list(e.ids) for e in tok.encode_batch(list(texts))]


class CalibrationFeeds:
    """The calibration feeds: one unpadded text per feed, int64 [1, len] arrays (what serving feeds).

    Iterable any number of times (``rewind`` / a fresh ``__iter__``); :func:`reader` wraps it in ONNX
    Runtime's ``CalibrationDataReader`` interface (``get_next`` returns ``None`` when exhausted).
    """

    def __init__(self, ids: Sequence[Sequence[int]], with_token_type_ids: bool = False) -> None:
        if not ids:
            raise ValueError("no calibration texts")
        if any(len(x) == 0 for x in ids):
            raise ValueError("an empty token sequence cannot be fed to the encoder")
        self.ids = [list(x) for x in ids]
        self.with_token_type_ids = with_token_type_ids

    def __len__(self) -> int:
        return len(self.ids)

    def feed(self, i: int) -> dict[str, np.ndarray]:
        x = np.asarray(self.ids[i], dtype=np.int64)[None, :]
        out = {INPUT_IDS: x, ATTENTION_MASK: np.ones_like(x)}
        if self.with_token_type_ids:
            out[TOKEN_TYPE_IDS] = np.zeros_like(x)
        return out

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        return (self.feed(i) for i in range(len(self)))


def reader(feeds: CalibrationFeeds) -> Any:
    """``feeds`` as an ``onnxruntime.quantization.CalibrationDataReader``."""
    from onnxruntime.quantization import CalibrationDataReader

    class _Reader(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self._it = iter(feeds)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._it, None)

        def rewind(self) -> None:
            self._it = iter(feeds)

    return _Reader()


def _graph_inputs(path: Path) -> list[str]:
    import onnx

    return [i.name for i in onnx.load(os.fspath(path), load_external_data=False).graph.input]


def matmul_role(b_shape: Sequence[int]) -> str | None:
    """The role of a dense MatMul from its weight's shape [in, out] (None: not a dense layer)."""
    if len(b_shape) != 2:
        return None
    rows, cols = b_shape
    if rows == cols:
        return "square"
    return "ffn_in" if cols > rows else "ffn_out"


def dense_matmuls(path: Path) -> dict[str, str]:
    """{MatMul node name: role} of the MatMuls whose B input is an initializer (the dense layers).

    ``MatMulConstBOnly`` is honoured by the QOperator quantiser only (ONNX Runtime 1.31's QDQ MatMul
    ignores it), so the node list is computed here and passed as ``nodes_to_quantize``.
    """
    import onnx

    graph = onnx.load(os.fspath(path)).graph
    shapes = {i.name: list(i.dims) for i in graph.initializer}
    out = {}
    for node in graph.node:
        if node.op_type == "MatMul" and len(node.input) == 2 and node.input[1] in shapes:
            role = matmul_role(shapes[node.input[1]])
            if role is not None:
                out[node.name] = role
    return out


def quantize_embedding_tables(model: onnx.ModelProto) -> list[str]:
    """Replace each Gather over a float initializer table by a Gather over an int8 copy (symmetric, one
    scale per table) followed by DequantizeLinear; returns the tables changed. ``model``: onnx.ModelProto,
    changed in place."""
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    done: dict[str, str] = {}
    new_nodes = []
    for node in graph.node:
        table = inits.get(node.input[0]) if node.op_type == "Gather" else None
        if table is None or table.data_type != TensorProto.FLOAT or len(table.dims) != 2:
            new_nodes.append(node)
            continue
        if table.name not in done:
            w = numpy_helper.to_array(table)
            scale = np.float32(max(float(np.abs(w).max()), 1e-12) / 127.0)
            q = np.clip(np.rint(w / scale), -127, 127).astype(np.int8)
            graph.initializer.extend(
                [
                    numpy_helper.from_array(q, f"{table.name}_int8"),
                    numpy_helper.from_array(np.array(scale, dtype=np.float32), f"{table.name}_scale"),
                    numpy_helper.from_array(np.array(0, dtype=np.int8), f"{table.name}_zero_point"),
                ]
            )
            done[table.name] = table.name
        gathered = f"{node.output[0]}_int8"
        new_nodes.append(
            helper.make_node(
                "Gather", [f"{table.name}_int8", node.input[1]], [gathered], name=node.name, axis=0
            )
        )
        new_nodes.append(
            helper.make_node(
                "DequantizeLinear",
                [gathered, f"{table.name}_scale", f"{table.name}_zero_point"],
                [node.output[0]],
                name=f"{node.name}_DequantizeLinear",
            )
        )
    del graph.node[:]
    graph.node.extend(new_nodes)
    unused = [i for i in graph.initializer if i.name in done]
    for i in unused:
        graph.initializer.remove(i)
    return sorted(done)


def keep_fp32_for_float_consumers(
    model: onnx.ModelProto, quantized_op_types: Sequence[str] = ("MatMul",)
) -> int:
    """Feed the consumers of each activation's QuantizeLinear -> DequantizeLinear pair that are *not*
    quantised ops from the original fp32 tensor; returns how many inputs were rewired. ``model`` is an
    ``onnx.ModelProto`` (changed in place)."""
    graph = model.graph
    quantize_input = {n.output[0]: n.input[0] for n in graph.node if n.op_type == "QuantizeLinear"}
    dq_source = {
        n.output[0]: quantize_input[n.input[0]]
        for n in graph.node
        if n.op_type == "DequantizeLinear" and n.input[0] in quantize_input
    }
    rewired = 0
    for node in graph.node:
        if node.op_type in quantized_op_types or node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            continue
        for i, name in enumerate(node.input):
            if name in dq_source:
                node.input[i] = dq_source[name]
                rewired += 1
    return rewired


class _FlattenHistograms:
    """ONNX Runtime 1.31's histogram calibrators (Percentile, Entropy) stack every feed's tensors with
    ``np.asarray``, which fails for unpadded feeds of different lengths. The histogram only needs the
    values, so each tensor's list is flattened into one 1-D array before it reaches the collector."""

    def __enter__(self) -> None:
        from onnxruntime.quantization import calibrate

        self._cls = calibrate.HistogramCollector
        self._orig = self._cls.collect

        def collect(collector: Any, name_to_arr: dict[str, list[np.ndarray]]) -> Any:
            flat = {k: [np.concatenate([np.asarray(a).ravel() for a in v])] for k, v in name_to_arr.items()}
            return self._orig(collector, flat)

        self._cls.collect = collect

    def __exit__(self, *exc: object) -> None:
        self._cls.collect = self._orig


def build_static_int8(
    fp32_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    calibration_ids: Sequence[Sequence[int]],
    config: StaticConfig | None = None,
) -> dict[str, Any]:
    """Quantise the fp32 encoder graph statically to INT8 (QDQ, per-channel weights) into ``out_path``.

    ``calibration_ids``: token ids of training texts (:func:`tokenize_for_calibration`); a few hundred are
    plenty for MinMax. Returns what to record (config, calibration count, seconds). The same
    ``quant_pre_process(skip_symbolic_shape=True)`` as the dynamic build runs first.
    """
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    cfg = config or StaticConfig()
    fp32_path, out_path = Path(fp32_path), Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    if cfg.method != "minmax":
        calibration_ids = calibration_ids[:HISTOGRAM_MAX_FEEDS]
    feeds = CalibrationFeeds(calibration_ids, TOKEN_TYPE_IDS in _graph_inputs(fp32_path))
    method = {
        "minmax": CalibrationMethod.MinMax,
        "percentile": CalibrationMethod.Percentile,
        "entropy": CalibrationMethod.Entropy,
    }[cfg.method]
    extra: dict[str, Any] = {
        "MatMulConstBOnly": cfg.const_b_only,
        "OpTypesToExcludeOutputQuantization": [] if cfg.quantize_outputs else ["MatMul"],
        # bounded memory: ranges are merged every N feeds instead of holding every intermediate tensor
        "CalibMaxIntermediateOutputs": 16,
    }
    if cfg.method == "percentile":
        extra["CalibPercentile"] = cfg.percentile
    with tempfile.TemporaryDirectory(prefix="static-int8-") as tmp:
        pre = Path(tmp) / "model.pre.onnx"
        quant_pre_process(os.fspath(fp32_path), os.fspath(pre), skip_symbolic_shape=True)
        nodes = None
        if cfg.const_b_only:
            dense = dense_matmuls(pre)
            nodes = [n for n, role in dense.items() if role not in cfg.exclude_roles]
        partial = Path(tmp) / "model.int8.onnx"
        with _FlattenHistograms():
            quantize_static(
                os.fspath(pre),
                os.fspath(partial),
                reader(feeds),
                quant_format=QuantFormat.QDQ,
                op_types_to_quantize=["MatMul"],
                per_channel=cfg.per_channel,
                reduce_range=cfg.reduce_range,
                activation_type=getattr(QuantType, TYPE_CODES[cfg.activation]),
                weight_type=getattr(QuantType, TYPE_CODES[cfg.weight]),
                nodes_to_quantize=nodes,
                nodes_to_exclude=list(cfg.nodes_to_exclude),
                calibrate_method=method,
                extra_options=extra,
            )
        rewired, tables = 0, []
        if cfg.fp32_residual or cfg.quantize_embeddings:
            import onnx

            model = onnx.load(os.fspath(partial))
            if cfg.fp32_residual:
                rewired = keep_fp32_for_float_consumers(model)
            if cfg.quantize_embeddings:
                tables = quantize_embedding_tables(model)
            onnx.save(model, os.fspath(partial))
        shutil.move(os.fspath(partial), os.fspath(out_path))  # atomic enough: never a half-written graph
    return {
        "config": cfg.as_dict(),
        "quant_format": "QDQ",
        "op_types_to_quantize": ["MatMul"],
        "float_inputs_rewired": rewired,
        "embedding_tables_int8": tables,
        "nodes_quantized": None if nodes is None else len(nodes),
        "calibration_texts": len(feeds),
        "calibration_tokens": int(sum(len(x) for x in feeds.ids)),
        "seconds": round(time.perf_counter() - t0, 2),
    }
