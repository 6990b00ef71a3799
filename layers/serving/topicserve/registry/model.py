"""Registry records. Pure data: no AWS here, so the rules can be tested without an endpoint."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from topicserve.errors import RegistryError


class Stage(StrEnum):
    NONE = "none"
    STAGING = "staging"
    PRODUCTION = "production"
    ARCHIVED = "archived"

    @classmethod
    def parse(cls, value: str) -> Stage:
        try:
            return cls(value)
        except ValueError:
            choices = ", ".join(s.value for s in cls)
            raise RegistryError(f"unknown stage {value!r}; choose one of {choices}") from None


@dataclass(frozen=True)
class Lineage:
    """Where a version came from: enough to rebuild it, or to explain a regression.

    ``dataset`` holds the data file's sha256, the split and the preprocessing options; ``encoder`` the name,
    variant and sha256 of the encoder whose embeddings the head was trained on (a head is only valid with
    that encoder); ``parent_version`` the version this one replaces (None for the first).
    """

    dataset: dict[str, Any] = field(default_factory=dict)
    encoder: dict[str, Any] = field(default_factory=dict)
    code_revision: str = "unknown"
    parent_version: int | None = None


@dataclass(frozen=True)
class ModelVersion:
    name: str
    version: int
    sha256: str
    size_bytes: int
    format: str
    artifact_uri: str
    created_at: str
    stage: Stage = Stage.NONE
    metrics: dict[str, Any] = field(default_factory=dict)
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    labels: list[str] = field(default_factory=list)
    lineage: Lineage = field(default_factory=Lineage)
    description: str = ""

    # The immutable part is stored as one JSON document: DynamoDB's number type would turn every float
    # metric into a Decimal, and nothing ever queries inside these fields.
    _MUTABLE = ("stage",)

    def to_document(self) -> str:
        data = asdict(self)
        for name in self._MUTABLE:
            data.pop(name)
        return json.dumps(data, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_document(cls, document: str, *, stage: str) -> ModelVersion:
        data = json.loads(document)
        data["lineage"] = Lineage(**data.get("lineage", {}))
        return cls(stage=Stage.parse(stage), **data)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["stage"] = self.stage.value
        return data
