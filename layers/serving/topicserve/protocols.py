"""What the inference pipeline needs from an encoder and a head, as protocols: the service, the rollout
router and the tests' fakes all meet here, and nothing in this module imports numpy-heavy code."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np


class TokensLike(Protocol):
    @property
    def ids(self) -> Sequence[int]: ...

    @property
    def truncated(self) -> bool: ...


class EncoderLike(Protocol):
    version: str  # the encoder graph's sha256: in every cache key
    tokenizer_version: str  # tokenizer.json's sha256: in every cache key
    max_length: int  # tokens read per text: in every cache key

    def tokenize(self, texts: Sequence[str]) -> Sequence[TokensLike]: ...

    def encode_tokens(self, ids: Sequence[Sequence[int]], batch_size: int = 32) -> np.ndarray: ...


class HeadLike(Protocol):
    name: str
    version: str

    @property
    def labels(self) -> Sequence[str] | None: ...  # None: the head can score, but not name a class

    def predict_proba(self, embeddings: np.ndarray) -> np.ndarray: ...
