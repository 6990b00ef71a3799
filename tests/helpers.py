"""Small helpers shared by the unit and functional tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def create_table(ddb: Any, name: str, keys: list[tuple[str, str, str]]) -> str:
    """Create an on-demand table from ``(attribute, type S/N, HASH/RANGE)`` triples, as the template does."""
    ddb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": attr, "KeyType": kind} for attr, _, kind in keys],
        AttributeDefinitions=[{"AttributeName": attr, "AttributeType": typ} for attr, typ, _ in keys],
        BillingMode="PAY_PER_REQUEST",
    )
    return name


CACHE_KEYS = [("k", "S", "HASH")]
REGISTRY_KEYS = [("name", "S", "HASH"), ("version", "N", "RANGE")]
RESULTS_KEYS = [("batch_id", "S", "HASH"), ("request_id", "S", "RANGE")]
IDEMPOTENCY_KEYS = [
    ("id", "S", "HASH")
]  # Powertools' DynamoDBPersistenceLayer default, as the template has it


def save_onnx(graph: Any, path: Path) -> Path:
    """``graph`` (an ``onnx.GraphProto``) as a model of opset 17 and IR version 8, saved at ``path``."""
    import onnx
    from onnx import helper

    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path
