"""Classification heads at serving time: one generic class for every exported head.

All four heads (logreg, rf, hgb, mlp) are exported with the same ONNX interface -- input ``embeddings``
float32 [N, 384], output ``probabilities`` float32 [N, 20] -- so serving needs no per-model code and no
scikit-learn / torch in the Lambda layer (see ``training/heads.py`` for the exporters).
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Sequence

import numpy as np

from topicserve.encoder import _read_artifact, load_session
from topicserve.errors import ArtifactError, ChecksumMismatchError, InvalidEmbeddingsError
from topicserve.initsteps import stopwatch

INPUT = "embeddings"
OUTPUT = "probabilities"
#: ONNX metadata key the build sets on heads that must never see a cache record's embedding (trees)
EXACT_EMBEDDINGS = "topicserve.exact_embeddings"


class Head:
    """A classification head: embeddings -> class probabilities (rows sum to ~1)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        name: str,
        version: str = "",
        labels: Sequence[str] | None = None,
        intra_op_threads: int | None = None,
        providers: Sequence[str] | None = None,
        expected_sha256: str | None = None,
    ) -> None:
        """``expected_sha256``: refuse the file (:class:`ChecksumMismatchError`) unless its bytes hash to
        it; checked on the bytes the session is built from, so nothing can change between check and use."""
        t0 = time.perf_counter()
        lap = stopwatch()
        data = _read_artifact(path, f"head {name!r}")
        self.load_ms: dict[str, float] = {"head read": lap()}
        self.sha256: str = hashlib.sha256(data).hexdigest()
        self.load_ms["head sha256"] = lap()
        if expected_sha256 is not None and self.sha256 != expected_sha256:
            raise ChecksumMismatchError(
                f"head {name!r} v{version}: {os.fspath(path)!r} has sha256 {self.sha256}, expected "
                f"{expected_sha256}; refusing to load it"
            )
        self.name: str = name
        self.version: str = version
        self.path = os.fspath(path)
        self._session = load_session(data, path, intra_op_threads, providers)
        # Tree heads compare features with thresholds, so the 16-bit embedding of a cache record moves some
        # texts across one (0.2-2.6 % of labels measured on the QUICK forest and boosted trees): the build
        # marks them, and they are fed fresh embeddings, never a record's (topicserve.service), so their
        # labels stay exactly the float32 path's. Linear and MLP heads are smooth: a record's will do.
        meta = self._session.get_modelmeta().custom_metadata_map
        self.exact_embeddings: bool = meta.get(EXACT_EMBEDDINGS) == "true"
        del data
        self.load_ms["head session"] = lap()

        inputs = {i.name: i for i in self._session.get_inputs()}
        outputs = {o.name: o for o in self._session.get_outputs()}
        if set(inputs) != {INPUT} or OUTPUT not in outputs:
            raise ArtifactError(
                f"{self.path!r} does not have the head interface: inputs {sorted(inputs)}, outputs "
                f"{sorted(outputs)}; expected {INPUT} -> {OUTPUT}"
            )
        in_shape = inputs[INPUT].shape
        self.n_features: int = in_shape[1] if len(in_shape) == 2 and isinstance(in_shape[1], int) else 384
        out_shape = outputs[OUTPUT].shape
        n_classes = out_shape[1] if len(out_shape) == 2 and isinstance(out_shape[1], int) else None
        if labels is not None:
            labels = [str(x) for x in labels]
            if n_classes is not None and len(labels) != n_classes:
                raise ArtifactError(
                    f"head {name!r} outputs {n_classes} classes but {len(labels)} labels given"
                )
            n_classes = len(labels)
        self.n_classes: int = n_classes if n_classes is not None else 20
        self.labels: list[str] | None = labels
        self.load_seconds: float = time.perf_counter() - t0

    def predict_proba(self, embeddings: np.ndarray) -> np.ndarray:
        """(n, n_features) float32 -> (n, n_classes) float32 probabilities, rows summing to ~1.

        Input is checked strictly (no silent casts): a float64 or mis-shaped array here means a bug
        upstream or a corrupt cache entry, and a clear error is better than a plausible wrong answer.
        """
        if not isinstance(embeddings, np.ndarray):
            raise InvalidEmbeddingsError(f"embeddings must be a numpy array, got {type(embeddings).__name__}")
        if embeddings.dtype != np.float32:
            raise InvalidEmbeddingsError(f"embeddings must be float32, got {embeddings.dtype}")
        if embeddings.ndim != 2 or embeddings.shape[1] != self.n_features:
            raise InvalidEmbeddingsError(
                f"embeddings must have shape (n, {self.n_features}), got {embeddings.shape}"
            )
        n = embeddings.shape[0]
        if n == 0:
            return np.zeros((0, self.n_classes), dtype=np.float32)
        if not np.isfinite(embeddings).all():
            raise InvalidEmbeddingsError("embeddings contain NaN or infinite values")
        out: np.ndarray = self._session.run([OUTPUT], {INPUT: np.ascontiguousarray(embeddings)})[0]
        if out.shape != (n, self.n_classes):
            raise ArtifactError(
                f"head {self.name!r} returned shape {out.shape}, expected {(n, self.n_classes)}"
            )
        return out.astype(np.float32, copy=False)

    def predict(self, embeddings: np.ndarray) -> np.ndarray:
        """Index of the most probable class of each row."""
        best: np.ndarray = self.predict_proba(embeddings).argmax(axis=1)
        return best

    def __repr__(self) -> str:
        return f"Head(name={self.name!r}, version={self.version!r}, n_classes={self.n_classes})"
