"""INT8 dynamic quantisation of the encoder, per-channel.

Measured on this machine (docs/MODELS.md): per-tensor weights gave mean cosine 0.947 to fp32 -- too lossy
-- while per-channel keeps >= 0.99. ``quant_pre_process`` needs ``skip_symbolic_shape=True`` (symbolic
shape inference fails on the dynamic-axes BERT graph). ``exclude`` names nodes kept in fp32 when the
fidelity minimum needs it (see training/build.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from training.common import log


def quantize(fp32: Path, outdir: Path, exclude: list[str] | None = None) -> dict[str, Any]:
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    pre = outdir / "model.pre.onnx"
    out = outdir / "model.int8.onnx"
    log.info("quant_pre_process(skip_symbolic_shape=True)")
    quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
    log.info("quantize_dynamic(per_channel=True, QInt8), %d nodes excluded", len(exclude or []))
    quantize_dynamic(
        str(pre),
        str(out),
        per_channel=True,
        weight_type=QuantType.QInt8,
        nodes_to_exclude=list(exclude or []),
    )
    pre.unlink()
    return {"per_channel": True, "weight_type": "QInt8", "nodes_to_exclude": list(exclude or [])}


def save_optimized(src: Path, dst: Path, level: str = "extended") -> dict[str, Any]:
    """Write the graph as ONNX Runtime leaves it after its session-time optimisations at ``level``
    ("basic", "extended" or "all"), so that a session made with optimisation disabled (the encoder's
    ``pre_optimized``) skips them: a cold start otherwise redoes them every time. "extended" (operator
    fusions) is portable across x86 CPUs; "all" may bake in layout choices of the building CPU."""
    import time

    import onnxruntime as ort

    levels = {
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }
    dst.parent.mkdir(parents=True, exist_ok=True)
    partial = dst.with_name(dst.name + ".partial")
    so = ort.SessionOptions()
    so.graph_optimization_level = levels[level]
    so.optimized_model_filepath = str(partial)
    so.log_severity_level = 3
    started = time.perf_counter()
    ort.InferenceSession(str(src), so, providers=["CPUExecutionProvider"])
    partial.replace(dst)
    log.info("saved the %s-optimised graph: %s", level, dst.name)
    return {"level": level, "seconds": round(time.perf_counter() - started, 2)}
