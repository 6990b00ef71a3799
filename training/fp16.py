"""The fp16 encoder for the GPU worker, and how its fidelity is measured on a machine without a GPU.

Why fp16: on a GPU, INT8 dynamic quantisation is slower than fp16 (its integer kernels target CPUs), so the
bulk worker runs the fp32 graph converted to fp16 on onnxruntime's CUDA execution provider and falls back to
the INT8 encoder on CPU (``topicserve_worker.accelerator``). The conversion is onnxruntime's own
``convert_float_to_float16(keep_io_types=True)``: inputs stay int64 and the output float32, so serving feeds
and reads it exactly as the other variants; the mean pooling and L2 normalisation after the last layer stay
fp32 (:func:`pooling_nodes`), so its embeddings have unit norm like the others'.

Why fidelity needs care: ``make models`` runs where there is no GPU. onnxruntime's CPU execution provider
*does* load the fp16 graph, but it lacks fp16 kernels for most compute ops (MatMul, Add, Mul, Div, ...);
it inserts Casts to fp32 around them, so on CPU the fp16 file computes with fp16-rounded weights and
mostly fp32 intermediates -- milder than what the GPU does. Two CPU measurements are therefore recorded
and both must meet the goal (cosine to the fp32 ONNX encoder, mean >= 0.999):

* ``cpu_ep``: the shipped fp16 file on the CPU EP, as is (with the count of nodes it computes in fp32);
* ``fp16_storage_emulation``: a graph variant of the shipped fp16 graph in which every tensor that is fp16
  there is rounded to fp16 after the op that produces it, while each op computes in fp32. That is the
  numerics of the CUDA EP's fp16 kernels (fp16 tensors in memory, fp32 accumulation in cuBLAS GEMMs,
  LayerNorm and Softmax), so it bounds what the GPU does far better than ``cpu_ep``.

Beside that, ``activation_max_abs`` is the largest magnitude of any intermediate tensor of the fp32 graph on
the same texts (without the attention mask's sentinel): fp16 overflows above 65504, and fp32 arithmetic on
CPU would hide an overflow that the GPU would hit. ``bench/gpu_check.py`` measures the real CUDA numbers
when a GPU is lent.
"""

from __future__ import annotations

import collections
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from training.common import log

if TYPE_CHECKING:
    import onnx

#: the fp16 file's name beside model.fp32.onnx / model.int8.onnx (topicserve_worker.accelerator looks for it)
FP16_FILE = "model.fp16.onnx"
COS_MEAN_GOAL = 0.999
FP16_MAX = 65504.0
FP16_TINY = 5.96e-8  # smallest fp16 subnormal
#: magnitudes at or above this in the fp32 graph are the additive attention mask's sentinel
#: (finfo(float32).min, clipped to -65504 by the conversion), not activations
MASK_SENTINEL = 1e30
#: bump when the conversion or the measurements change in a way that alters their results
FP16_CODE_VERSION = 4


def pooling_nodes(model: onnx.ModelProto) -> list[str]:
    """The export wrapper's tail: masked mean pooling and L2 normalisation (training/export_encoder.py).

    torch.onnx names the wrapper's own nodes at the top level (``/Mul``, ``/ReduceSum``, ``/Div_1`` ...),
    the transformer's under ``/model/``; the tail is those that feed the output and nothing inside the
    transformer (so not the token_type_ids zeros). It is kept fp32: in fp16 the output's norm is off by up
    to 5e-4 (each component rounded after the normalisation), the clamp epsilons 1e-9 / 1e-12 are below
    fp16's smallest subnormal, and the sum over up to 256 tokens is better accumulated in fp32; it is a
    handful of cheap ops after the last layer.
    """
    producer = {o: n for n in model.graph.node for o in n.output}
    feeds_model = set()
    stack = [i for n in model.graph.node if n.name.startswith("/model/") for i in n.input]
    while stack:
        node = producer.get(stack.pop())
        if node is not None and node.name not in feeds_model:
            feeds_model.add(node.name)
            stack.extend(node.input)
    return [
        n.name
        for n in model.graph.node
        if n.name.startswith("/") and not n.name.startswith("/model/") and n.name not in feeds_model
    ]


def keep_fp32(m32: onnx.ModelProto, m16: onnx.ModelProto, names: Sequence[str]) -> None:
    """Put the fp32 originals of the nodes ``names`` back into the converted graph ``m16``.

    (The converter's own ``node_block_list`` writes duplicate Cast outputs for this graph.) Each fp16
    input the kept nodes take from the rest gets one Cast to fp32; the converter's final Cast to the float32
    output is dropped, since the kept nodes produce the output in fp32 themselves.
    """
    import onnx
    from onnx import TensorProto, helper

    inferred = onnx.shape_inference.infer_shapes(m16).graph
    types = {v.name: v.type.tensor_type.elem_type for v in [*inferred.value_info, *inferred.input]}
    types.update({t.name: t.data_type for t in inferred.initializer})
    keep = set(names)
    originals = {n.name: n for n in m32.graph.node if n.name in keep}
    made_by_kept = {o for n in originals.values() for o in n.output}
    outputs = {o.name for o in m32.graph.output}
    nodes, casts = [], {}
    for node in m16.graph.node:
        if node.name in keep:
            continue
        if node.op_type == "Cast" and set(node.output) <= outputs:
            continue  # keep_io_types' Cast of the fp16 result to the float32 output
        nodes.append(node)
    for name in names:
        n = originals[name]
        for i, x in enumerate(n.input):
            if x not in made_by_kept and types.get(x) == TensorProto.FLOAT16:
                if x not in casts:
                    casts[x] = helper.make_node("Cast", [x], [f"{x}/to_fp32"], to=TensorProto.FLOAT)
                n.input[i] = f"{x}/to_fp32"
        nodes.append(n)
    del m16.graph.node[:]
    m16.graph.node.extend([*nodes, *casts.values()])
    kept_tensors = made_by_kept | {c.output[0] for c in casts.values()}
    info = [v for v in m16.graph.value_info if v.name not in kept_tensors]
    del m16.graph.value_info[:]
    m16.graph.value_info.extend(info)


def convert(fp32: Path, outdir: Path, op_block_list: Sequence[str] | None = None) -> dict[str, Any]:
    """fp32 ONNX -> fp16 ONNX: the transformer's weights and tensors fp16; int64 inputs, the pooling /
    normalisation tail (:func:`pooling_nodes`) and the float32 output kept."""
    import onnx
    import onnxruntime
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

    blocked = list(DEFAULT_OP_BLOCK_LIST if op_block_list is None else op_block_list)
    model = onnx.load(str(fp32))
    kept = pooling_nodes(model)
    clipped = out_of_range_constants(model, skip=set(kept))
    log.info("convert_float_to_float16(keep_io_types=True), %d pooling nodes kept fp32", len(kept))
    m16 = convert_float_to_float16(onnx.load(str(fp32)), keep_io_types=True, op_block_list=blocked)
    keep_fp32(model, m16, kept)
    topological_sort(m16.graph)
    out = outdir / FP16_FILE
    onnx.save(m16, str(out))
    onnx.checker.check_model(str(out))
    onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])  # loads, or is never cached
    return {
        "tool": "onnxruntime.transformers.float16.convert_float_to_float16",
        "keep_io_types": True,
        "op_block_list": "converter default" if op_block_list is None else blocked,
        "kept_fp32": kept,
        "kept_fp32_why": "mean pooling + L2 normalisation in fp32: unit-norm output, representable epsilons",
        "onnxruntime": onnxruntime.__version__,
        "clipped_constants": clipped,
    }


def topological_sort(graph: onnx.GraphProto) -> None:
    """Reorder ``graph.node`` so that every node follows the producers of its inputs (the ONNX rule,
    which onnx.checker enforces), keeping the original order where it already holds."""
    ready = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        left = []
        for node in pending:
            if all(i in ready for i in node.input):
                ordered.append(node)
                ready.update(node.output)
            else:
                left.append(node)
        if len(left) == len(pending):
            raise ValueError(f"graph has a cycle or a missing input: {[n.name for n in left[:3]]}")
        pending = left
    del graph.node[:]
    graph.node.extend(ordered)


def out_of_range_constants(model: onnx.ModelProto, skip: set[str] | None = None) -> dict[str, Any]:
    """Float constants with values fp16 cannot hold: the converter clips them (to +-65504, and nonzero
    magnitudes below fp16's smallest subnormal up to it), so they are named in the manifest rather than
    changed silently. Here: the attention mask's -3.4e38 and a few tiny weights. Nodes in ``skip`` stay
    fp32."""
    from onnx import TensorProto, numpy_helper

    tensors = [(t.name, t) for t in model.graph.initializer]
    for node in model.graph.node:
        if node.name not in (skip or set()):
            tensors += [(node.name, a.t) for a in node.attribute if a.HasField("t")]
    above: dict[str, int] = {}
    tiny: dict[str, int] = {}
    for name, t in tensors:
        if t.data_type != TensorProto.FLOAT:
            continue
        a = np.abs(numpy_helper.to_array(t))
        if n := int(((a > FP16_MAX) & np.isfinite(a)).sum()):
            above[name] = n
        if n := int(((a > 0) & (a < FP16_TINY)).sum()):
            tiny[name] = n
    return {"above_fp16_max": above, "below_fp16_subnormal": tiny}


def emulation_graph(fp16: Path) -> tuple[bytes, int]:
    """The shipped fp16 graph with fp16 storage and fp32 arithmetic per op (see the module docstring), and
    the number of tensors it rounds.

    Every fp16 initializer and constant becomes the fp32 tensor of the same (fp16) values, every Cast to
    fp16 a Cast to fp32, and each output that is fp16 in the shipped graph goes through Cast(fp16) ->
    Cast(fp32). onnxruntime keeps such explicit lossy Cast pairs at every optimisation level (it only
    removes the pairs it inserted itself), so each of them really rounds.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    m16 = onnx.shape_inference.infer_shapes(onnx.load(str(fp16)))
    g16 = m16.graph
    types = {v.name: v.type.tensor_type.elem_type for v in [*g16.value_info, *g16.input, *g16.output]}

    def widen(t: onnx.TensorProto) -> onnx.TensorProto:
        if t.data_type != TensorProto.FLOAT16:
            return t
        return numpy_helper.from_array(numpy_helper.to_array(t).astype(np.float32), t.name)

    nodes, rounded = [], 0
    for node in g16.node:
        n = onnx.NodeProto()
        n.CopyFrom(node)
        for a in n.attribute:
            if a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS):
                raise ValueError(f"node {n.name} has a subgraph; the emulation does not handle those")
            if a.HasField("t"):
                a.t.CopyFrom(widen(a.t))
            if n.op_type == "Cast" and a.name == "to" and a.i == TensorProto.FLOAT16:
                a.i = TensorProto.FLOAT
        nodes.append(n)
        if n.op_type == "Constant":
            continue  # its values are fp16 values already
        for i, out in enumerate(list(n.output)):
            if types.get(out) == TensorProto.FLOAT16:
                n.output[i] = f"{out}/fp32"
                rounded += 1
                nodes.append(
                    helper.make_node("Cast", [f"{out}/fp32"], [f"{out}/fp16"], to=TensorProto.FLOAT16)
                )
                nodes.append(helper.make_node("Cast", [f"{out}/fp16"], [out], to=TensorProto.FLOAT))
    graph = helper.make_graph(
        nodes,
        f"{g16.name}-fp16-storage-emulation",
        list(g16.input),
        list(g16.output),
        [widen(t) for t in g16.initializer],
    )
    model = helper.make_model(graph, opset_imports=list(m16.opset_import), ir_version=m16.ir_version)
    onnx.checker.check_model(model)
    return model.SerializeToString(), rounded


def cpu_fp32_islands(fp16: Path) -> dict[str, Any]:
    """Which nodes the CPU EP runs on fp32 tensors when it runs the fp16 file (what ``cpu_ep`` measured).

    onnxruntime names the Casts it inserts around nodes without a CPU fp16 kernel
    ``InsertedPrecisionFreeCast_*``, and drops the fp32 -> fp16 -> fp32 pairs between two such nodes. A node
    runs in fp32 when an input comes from an inserted Cast to float or from another node that does (a Cast
    back to fp16 ends the island); the saved optimised graph is in topological order.
    """
    import onnx
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL  # as topicserve.encoder
        so.log_severity_level = 3
        so.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
        ort.InferenceSession(str(fp16), so, providers=["CPUExecutionProvider"])
        optimized = onnx.load(so.optimized_model_filepath)
    fp32_tensors: set[str] = set()
    islands: collections.Counter[str] = collections.Counter()
    inserted = compute = 0
    for n in optimized.graph.node:
        to = next((a.i for a in n.attribute if a.name == "to"), None) if n.op_type == "Cast" else None
        if n.op_type == "Cast":
            inserted += n.name.startswith("InsertedPrecisionFreeCast")
            if n.name.startswith("InsertedPrecisionFreeCast") and to == onnx.TensorProto.FLOAT:
                fp32_tensors.update(n.output)
            continue
        compute += 1
        if any(i in fp32_tensors for i in n.input):
            islands[n.op_type] += 1
            fp32_tensors.update(n.output)
    return {
        "inserted_casts": inserted,
        "nodes": compute,
        "nodes_computed_in_fp32": dict(sorted(islands.items())),
    }


def activation_max_abs(fp32: Path, token_ids: Sequence[Sequence[int]], batch_size: int = 8) -> dict[str, Any]:
    """Largest |x| over every float intermediate of the fp32 graph on these texts, mask sentinel excluded,
    and the tensor where it occurs (fp16 overflows above 65504; see the module docstring)."""
    import onnx
    import onnxruntime as ort

    model = onnx.shape_inference.infer_shapes(onnx.load(str(fp32)))
    names = [v.name for v in model.graph.value_info if v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT]
    for name in names:
        model.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # keep every tensor
    so.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    outputs = [o.name for o in sess.get_outputs()]
    peak, where = 0.0, ""
    order = sorted(range(len(token_ids)), key=lambda i: len(token_ids[i]))
    for start in range(0, len(order), batch_size):
        batch = [token_ids[i] for i in order[start : start + batch_size]]
        width = max(len(x) for x in batch)
        ids = np.zeros((len(batch), width), dtype=np.int64)
        mask = np.zeros_like(ids)
        for row, x in enumerate(batch):
            ids[row, : len(x)] = x
            mask[row, : len(x)] = 1
        for name, value in zip(
            outputs, sess.run(None, {"input_ids": ids, "attention_mask": mask}), strict=True
        ):
            a = np.abs(np.asarray(value, dtype=np.float32))
            a = a[np.isfinite(a) & (a < MASK_SENTINEL)]
            if a.size and float(a.max()) > peak:
                peak, where = float(a.max()), name
    return {"max_abs": peak, "tensor": where, "fp16_max": FP16_MAX, "headroom": round(FP16_MAX / peak, 1)}


def measure(
    fp32: Path,
    fp16: Path,
    tokenizer: Path,
    texts: Sequence[str],
    *,
    max_length: int,
    threads: int,
    workdir: Path,
) -> dict[str, Any]:
    """Cosine of the fp16 encoder to the fp32 ONNX encoder on ``texts``, both ways it can be measured on
    CPU, plus the fp32 graph's activation range. Runs through ``topicserve.encoder.Encoder`` (the serving
    class: same tokenisation, length bucketing and session options as the worker)."""
    import onnxruntime as ort

    from topicserve.encoder import Encoder
    from training.fidelity import cosine_stats

    def embed(model: Path) -> np.ndarray:
        return Encoder(model, tokenizer, max_length=max_length, intra_op_threads=threads).encode(texts)

    reference = Encoder(fp32, tokenizer, max_length=max_length, intra_op_threads=threads)
    ref = reference.encode(texts)
    cpu_ep = cosine_stats(ref, embed(fp16))
    emulated_bytes, rounded = emulation_graph(fp16)
    emulated = workdir / "model.fp16-emulated.onnx"
    emulated.write_bytes(emulated_bytes)
    try:
        emu = cosine_stats(ref, embed(emulated))
    finally:
        emulated.unlink()
    provider = "CPUExecutionProvider"
    measurements = {
        "cpu_ep": {
            "provider": provider,
            "what": "the fp16 file on the CPU EP, which casts to fp32 around nodes without CPU fp16 kernels",
            **cpu_ep,
            **cpu_fp32_islands(fp16),
        },
        "fp16_storage_emulation": {
            "provider": provider,
            "what": "the fp16 graph with every fp16 tensor rounded to fp16 after its op, arithmetic per op "
            "in fp32 (the CUDA EP's fp16 numerics)",
            **emu,
            "rounded_tensors": rounded,
        },
    }
    tokens = [t.ids for t in reference.tokenize(texts)]
    return {
        "reference": "fp32 ONNX encoder (model.fp32.onnx) on CPUExecutionProvider",
        "goal": {"cos_mean": COS_MEAN_GOAL},
        "onnxruntime": ort.__version__,
        "cuda": "not measured by make models (no GPU); bench/gpu_check.py measures it on a GPU",
        # the gate and the headline: the worse of the two CPU measurements
        "cos_mean": min(m["cos_mean"] for m in measurements.values()),
        "cos_min": min(m["cos_min"] for m in measurements.values()),
        "n": len(texts),
        "measured_with": provider,
        "measurements": measurements,
        "activation_range": activation_max_abs(fp32, tokens),
    }


def check(result: dict[str, Any]) -> None:
    """Fail the build when the fp16 encoder misses the goal (NaN fails too) or could overflow."""
    for name, m in result["measurements"].items():
        if not m["cos_mean"] >= COS_MEAN_GOAL:
            raise RuntimeError(
                f"fp16 encoder fidelity {name}: cos mean {m['cos_mean']:.6f} to fp32 is below {COS_MEAN_GOAL}"
            )
    peak = result["activation_range"]["max_abs"]
    if not peak < FP16_MAX:
        raise RuntimeError(f"fp32 activations reach {peak:.4g}: fp16 (max {FP16_MAX}) would overflow")
