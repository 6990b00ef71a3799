"""What a candidate version did, as sums that add up across texts, requests, environments and time.

The service produces one :class:`Observation` per candidate per request; the recorder adds them into a
:class:`Tally` per (model, stage, version, epoch) and flushes the sums to the rollout record with atomic
ADDs, so any number of environments can write the same record and the gate reads ratios of sums.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any


@dataclass
class Tally:
    compared: int = 0  # texts scored by the candidate and by production
    agreed: int = 0  # of those, the same label
    answered: int = 0  # texts the candidate answered (canary only)
    errors: int = 0  # texts the candidate failed on (a failed load counts once per text it missed)
    candidate_confidence: float = 0.0  # sum of the candidate's top probability
    production_confidence: float = 0.0  # sum of production's top probability on the same texts
    candidate_head_ms: float = 0.0  # sum of the candidate head's compute time
    production_head_ms: float = 0.0  # production head's compute time for the same number of texts

    def add(self, other: Tally) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def empty(self) -> bool:
        return not (self.compared or self.errors)

    def summary(self) -> dict[str, Any]:
        """The ratios people and gates read."""
        n = self.compared
        attempts = n + self.errors
        return {
            "compared": n,
            "answered": self.answered,
            "errors": self.errors,
            "agreement": round(self.agreed / n, 4) if n else None,
            "error_rate": round(self.errors / attempts, 4) if attempts else None,
            "candidate_confidence": round(self.candidate_confidence / n, 4) if n else None,
            "production_confidence": round(self.production_confidence / n, 4) if n else None,
            "candidate_head_ms_per_text": round(self.candidate_head_ms / n, 4) if n else None,
            "production_head_ms_per_text": round(self.production_head_ms / n, 4) if n else None,
        }


@dataclass(frozen=True)
class Observation:
    """One candidate's part of one request."""

    model: str
    stage: str
    version: str
    epoch: int
    tally: Tally
