"""One compact cache record per text: its embedding in 16 bits and each head version's top-k answer.

Why one record, and why this small: DynamoDB bills a write unit per started KiB of item, and a write
($0.625 per million units) costs about what encoding the text twice does. The float32 embedding alone was
1,536 bytes (2 units), and every head's answer was an item of its own (1 unit each). Here the embedding is
quantised per vector to 16-bit integers with one float32 scale (772 bytes) and the answers ride along, so a
text answered by five models is still one item under 1 KiB: :data:`MAX_VALUE_BYTES` is enforced by
dropping the oldest answers first (a dropped answer is recomputed from the embedding, the cheap part).

Why 16 bits and not 8: measured on the test documents (tests/functional/test_models.py), int8 with a
per-vector scale keeps cosine 0.99997 to float32, yet the tree heads changed their label on 5 % of texts
(random forest) and 6 % (gradient boosting); float16 still moved 0.4 % of the forest's. With int16 the
forest, logistic regression, MLP and ensemble agree on every text. The gradient-boosting head changes
about 3 % of its labels under *any* perturbation, even scaling the float32 embedding by 1 + 1e-6: no lossy
record can do better for it, and the record adds nothing beyond that floor (docs/COST.md).

Answers are the top-k class ids and probabilities exactly as served (float32), so a cached answer is
bit-identical to the fresh one it replaced. Pure: numpy and struct only.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

#: stored embedding precision; part of every key (EncoderConfig.embedding_format)
EMBEDDING_FORMAT = "int16-per-vector-v1"
#: value bytes a record may take: with its key (52 bytes), the attribute names and the TTL number it stays
#: under one write unit (1 KiB)
MAX_VALUE_BYTES = 960
_LEVELS = 32767
_FORMAT_VERSION = 1
_HEADER = struct.Struct("<BH")  # format version, embedding dimension (0: no embedding)
_SCALE = struct.Struct("<f")


@dataclass(frozen=True)
class Answer:
    """A head version's top-k answer: class ids and probabilities, most probable first."""

    ids: tuple[int, ...]
    probabilities: tuple[float, ...]

    @classmethod
    def from_probabilities(cls, probabilities: np.ndarray, k: int) -> Answer:
        p = np.asarray(probabilities, dtype=np.float32)
        order = np.argsort(-p, kind="stable")[:k]
        return cls(tuple(int(i) for i in order), tuple(float(p[i]) for i in order))

    @property
    def label_id(self) -> int:
        return self.ids[0]

    @property
    def confidence(self) -> float:
        return self.probabilities[0]


def quantize(vector: np.ndarray) -> tuple[float, np.ndarray]:
    """Symmetric per-vector int16: ``vector ~ q * scale`` with ``q`` in [-32767, 32767]."""
    v = np.asarray(vector, dtype=np.float32)
    peak = float(np.max(np.abs(v))) if v.size else 0.0
    scale = peak / _LEVELS if peak > 0 else 1.0
    q = np.clip(np.rint(v / scale), -_LEVELS, _LEVELS).astype("<i2")
    return scale, q


def dequantize(scale: float, q: np.ndarray) -> np.ndarray:
    """The float32 embedding back, L2-normalised as the encoder's own output is (the rounding error
    moves the norm by ~1e-4; restoring it keeps a head's logits on the scale it was trained on)."""
    v = q.astype(np.float32) * np.float32(scale)
    norm = float(np.linalg.norm(v))
    return v / np.float32(norm) if norm > 0 else v


@dataclass
class TextRecord:
    """What the cache knows about one text (one token sequence) under one encoder configuration."""

    embedding: np.ndarray | None = None
    answers: dict[str, Answer] = field(default_factory=dict)  # answer_id(head, version) -> Answer

    def merged(self, embedding: np.ndarray | None, answers: Mapping[str, Answer]) -> TextRecord:
        """This record with what was just computed added (new answers last: the newest survive a trim)."""
        combined = {k: v for k, v in self.answers.items() if k not in answers}
        combined.update(answers)
        return TextRecord(self.embedding if self.embedding is not None else embedding, combined)

    def encode(self, max_bytes: int = MAX_VALUE_BYTES) -> bytes:
        """The record's bytes, at most ``max_bytes``: the oldest answers are dropped to fit."""
        head = self._embedding_bytes()
        answers = [_answer_bytes(name, a) for name, a in self.answers.items()]
        while answers and len(head) + 1 + sum(map(len, answers)) > max_bytes:
            answers.pop(0)
        if len(head) + 1 > max_bytes:
            raise ValueError(f"a record needs {len(head) + 1} bytes, more than the {max_bytes} allowed")
        return head + bytes([len(answers)]) + b"".join(answers)

    def _embedding_bytes(self) -> bytes:
        if self.embedding is None:
            return _HEADER.pack(_FORMAT_VERSION, 0)
        scale, q = quantize(self.embedding)
        return _HEADER.pack(_FORMAT_VERSION, q.shape[0]) + _SCALE.pack(scale) + q.tobytes()

    @classmethod
    def decode(cls, blob: bytes, dim: int | None = None) -> TextRecord:
        """Parse :meth:`encode`'s bytes; a record of another format or dimension is an error (callers
        treat it as a miss)."""
        version, size = _HEADER.unpack_from(blob, 0)
        if version != _FORMAT_VERSION:
            raise ValueError(f"cache record format {version}, expected {_FORMAT_VERSION}")
        offset = _HEADER.size
        embedding = None
        if size:
            if dim is not None and size != dim:
                raise ValueError(f"cached embedding has {size} values, expected {dim}")
            (scale,) = _SCALE.unpack_from(blob, offset)
            offset += _SCALE.size
            q = np.frombuffer(blob, dtype="<i2", count=size, offset=offset)
            offset += 2 * size
            embedding = dequantize(scale, q)
        answers: dict[str, Answer] = {}
        count, offset = blob[offset], offset + 1
        for _ in range(count):
            name, answer, offset = _read_answer(blob, offset)
            answers[name] = answer
        return cls(embedding, answers)


def _answer_bytes(name: str, answer: Answer) -> bytes:
    raw = name.encode("utf-8")
    k = len(answer.ids)
    if len(raw) > 255 or k > 255:
        raise ValueError(f"answer {name!r} too large for a record")
    return (
        struct.pack("<B", len(raw)) + raw + struct.pack(f"<B{k}H{k}f", k, *answer.ids, *answer.probabilities)
    )


def _read_answer(blob: bytes, offset: int) -> tuple[str, Answer, int]:
    n = blob[offset]
    name = bytes(blob[offset + 1 : offset + 1 + n]).decode("utf-8")
    offset += 1 + n
    k = blob[offset]
    values = struct.unpack_from(f"<{k}H{k}f", blob, offset + 1)
    offset += 1 + struct.calcsize(f"<{k}H{k}f")
    return name, Answer(tuple(values[:k]), tuple(float(p) for p in values[k:])), offset
