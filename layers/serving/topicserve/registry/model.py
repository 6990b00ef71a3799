"""Registry records. Pure data: no AWS here, so the rules can be tested without an endpoint."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from enum import StrEnum
from typing import Any

from topicserve.errors import RegistryError


class Stage(StrEnum):
    """Where a version is in its life. ``shadow`` and ``canary`` are the rollout stages: at most one
    version of a model is in each (as for production), and serving reads them from the model's
    :class:`Routing` without a redeploy."""

    NONE = "none"
    STAGING = "staging"
    SHADOW = "shadow"
    CANARY = "canary"
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
    members: dict[str, Any] = field(default_factory=dict)  # an ensemble's member versions


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
        """Fields this code does not know are ignored: a registry written by newer code (a new lineage
        field, say) must stay readable by the functions still running the previous release."""
        data = _known(cls, json.loads(document))
        data["lineage"] = Lineage(**_known(Lineage, data.get("lineage", {})))
        return cls(stage=Stage.parse(stage), **data)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["stage"] = self.stage.value
        return data


@dataclass(frozen=True)
class Routing:
    """How a model is served right now: the head item's pointers, which is all serving reads per refresh.

    ``rev`` increases with every transition of the model; ``canary_rev`` / ``shadow_rev`` are the ``rev``
    at which the current candidate entered its stage, so its rollout record starts from zero each time a
    version (re-)enters a stage. ``history`` lists the production versions in promotion order.
    """

    model: str
    production: int | None = None
    canary: int | None = None
    canary_weight: float = 0.0
    shadow: int | None = None
    rev: int = 0
    canary_rev: int = 0
    shadow_rev: int = 0
    history: tuple[int, ...] = ()

    def candidates(self) -> list[tuple[Stage, int, int]]:
        """``(stage, version, epoch)`` of the canary and the shadow that are set."""
        found = []
        if self.canary is not None:
            found.append((Stage.CANARY, self.canary, self.canary_rev))
        if self.shadow is not None:
            found.append((Stage.SHADOW, self.shadow, self.shadow_rev))
        return found

    def versions(self) -> set[int]:
        return {v for v in (self.production, self.canary, self.shadow) if v is not None}

    def stage_of(self) -> dict[int, Stage]:
        """The stage of each version a pointer names."""
        pointed = (
            (self.production, Stage.PRODUCTION),
            (self.canary, Stage.CANARY),
            (self.shadow, Stage.SHADOW),
        )
        return {v: stage for v, stage in pointed if v is not None}

    def to_dict(self) -> dict[str, Any]:
        return {
            "production": self.production,
            "canary": None if self.canary is None else {"version": self.canary, "weight": self.canary_weight},
            "shadow": None if self.shadow is None else {"version": self.shadow},
            "rev": self.rev,
        }


@dataclass(frozen=True)
class Transition:
    """One stage change in a model's history: when, which version, from where to where, and why."""

    at: str
    version: int
    from_stage: str
    to_stage: str
    reason: str = ""
    actor: str = "cli"
    weight: float | None = None

    def to_document(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_document(cls, document: str) -> Transition:
        return cls(**_known(cls, json.loads(document)))


def _known(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in data.items() if k in names}
