"""Fixtures for unit tests: in-process moto for the AWS adapters, fakes for the models."""

from __future__ import annotations

import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pytest
from moto import mock_aws

from tests.helpers import CACHE_KEYS, REGISTRY_KEYS, create_table
from topicserve.catalogue import MODEL_NAMES
from topicserve.encoder import Tokens
from topicserve.registry import Registry


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A private moto account: no request leaves the process."""
    for var in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        yield


@pytest.fixture
def ddb(aws: None) -> Any:
    return boto3.client("dynamodb", region_name="us-east-1")


@pytest.fixture
def s3(aws: None) -> Any:
    return boto3.client("s3", region_name="us-east-1")


@pytest.fixture
def cache_table(ddb: Any) -> str:
    return create_table(ddb, "cache", CACHE_KEYS)


class FakeEncoder:
    """Deterministic stand-in for the ONNX encoder that counts what it was asked to encode."""

    def __init__(self, version: str = "enc-v1", dim: int = 384, tokenizer_version: str = "tok-v1") -> None:
        self.version = version
        self.tokenizer_version = tokenizer_version
        self.dim = dim
        self.calls: list[list[str]] = []

    max_length = 64  # "tokens" are characters here; longer texts are reported truncated

    def tokenize(self, texts: Sequence[str]) -> list[Tokens]:
        cls, sep = 101, 102
        return [
            Tokens([cls, *(ord(c) for c in t[: self.max_length - 2]), sep], len(t) > self.max_length - 2)
            for t in texts
        ]

    def encode_tokens(self, ids: Sequence[Sequence[int]], batch_size: int = 32) -> np.ndarray:
        texts = ["".join(map(chr, x[1:-1])) for x in ids]
        self.calls.append(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            rng = np.random.default_rng(zlib.crc32(text.encode()))
            vec = rng.standard_normal(self.dim).astype(np.float32)
            out[row] = vec / np.linalg.norm(vec)
        return out

    def encode(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        return self.encode_tokens([t.ids for t in self.tokenize(texts)], batch_size)

    @property
    def encoded(self) -> list[str]:
        return [t for call in self.calls for t in call]


class FakeHead:
    """A linear head with fixed random weights: softmax(E @ W)."""

    def __init__(self, name: str, version: str = "1", n_classes: int = 20, seed: int = 0) -> None:
        self.name = name
        self.version = version
        self.labels = [f"class{i}" for i in range(n_classes)]
        self.weights = np.random.default_rng(seed).standard_normal((384, n_classes)).astype(np.float32)
        self.calls = 0

    def predict_proba(self, embeddings: np.ndarray) -> np.ndarray:
        self.calls += 1
        logits = embeddings @ self.weights
        logits -= logits.max(axis=1, keepdims=True)
        e = np.exp(logits)
        return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture
def fake_encoder() -> FakeEncoder:
    return FakeEncoder()


@pytest.fixture
def fake_heads() -> dict[str, FakeHead]:
    return {name: FakeHead(name, seed=i) for i, name in enumerate(MODEL_NAMES)}


BUCKET, TABLE = "artifacts", "registry"


@pytest.fixture
def registry(s3: Any, ddb: Any) -> Registry:
    s3.create_bucket(Bucket=BUCKET)
    create_table(ddb, TABLE, REGISTRY_KEYS)
    return Registry(bucket=BUCKET, table=TABLE, s3_client=s3, dynamodb_client=ddb)


def artifact(tmp_path: Path, name: str, content: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content)
    return path
