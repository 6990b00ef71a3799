"""What a candidate version did, as sums that add up across texts, requests, environments and time.

The service produces one :class:`Observation` per candidate per request; the recorder adds them into a
:class:`Tally` per (model, stage, version, epoch) and flushes the sums to the rollout record with atomic
ADDs, so any number of environments can write the same record and the gate reads ratios of sums.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
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
    # added by label feedback (topicserve.feedback), not by serving: compared texts whose true label came
    # back, and of those the ones only the candidate / only production got right (the paired test's sums)
    labelled: int = 0
    candidate_only_correct: int = 0
    production_only_correct: int = 0

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
            "labelled": self.labelled,
            "candidate_only_correct": self.candidate_only_correct,
            "production_only_correct": self.production_only_correct,
        }


@dataclass(frozen=True)
class Observation:
    """One candidate's part of one request."""

    model: str
    stage: str
    version: str
    epoch: int
    tally: Tally
    # per compared text hash: (candidate label, its confidence, production label, its confidence), so the
    # served-answers ledger can pair both answers with a label that comes back later
    answers: Mapping[str, tuple[str, float, str, float]] = field(default_factory=dict)
