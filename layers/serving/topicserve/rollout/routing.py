"""Which head version answers each text and which candidates are compared on it. Pure: the same rules in
every function, tested without AWS.

A text's share is a hash of (purpose, model, text hash) mapped to [0, 1): a text lands in the canary when
its share is below the canary's weight, so the assignment is deterministic and sticky (one text always
sees one version, whichever environment serves it, and the prediction cache stays coherent), independent
between models, and monotone in the weight (raising it only moves texts towards the canary).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from topicserve.protocols import HeadLike

PRODUCTION = "production"
CANARY = "canary"
SHADOW = "shadow"

HeadKey = tuple[str, str]  # (model, version)


def share(purpose: str, model: str, text_hash: str) -> float:
    digest = hashlib.sha256(f"{purpose}:{model}:{text_hash}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


@dataclass(frozen=True)
class Route:
    """How one model is served now: its production head, and the candidates that are loaded."""

    production: HeadLike
    canary: HeadLike | None = None
    canary_weight: float = 0.0
    shadow: HeadLike | None = None
    shadow_sample: float = 1.0
    canary_epoch: int = 0  # the registry revision at which the canary / shadow entered its stage
    shadow_epoch: int = 0

    def epoch(self, stage: str) -> int:
        return self.canary_epoch if stage == CANARY else self.shadow_epoch

    def answers(self, model: str, text_hash: str) -> str:
        """The stage whose head answers this text."""
        if self.canary is not None and share(CANARY, model, text_hash) < self.canary_weight:
            return CANARY
        return PRODUCTION

    def shadowed(self, model: str, text_hash: str) -> bool:
        return self.shadow is not None and share(SHADOW, model, text_hash) < self.shadow_sample

    def head(self, stage: str) -> HeadLike:
        head = {PRODUCTION: self.production, CANARY: self.canary, SHADOW: self.shadow}[stage]
        if head is None:
            raise KeyError(f"no {stage} head")
        return head


@dataclass
class Plan:
    """The work of one request: every (head, texts) job, who answers what, and what is compared."""

    heads: dict[HeadKey, tuple[str, HeadLike]] = field(default_factory=dict)  # key -> (stage, head)
    jobs: dict[HeadKey, list[str]] = field(default_factory=dict)  # key -> text hashes it must score
    answer: dict[str, dict[str, HeadKey]] = field(default_factory=dict)  # model -> text hash -> key
    production: dict[str, HeadKey] = field(default_factory=dict)  # model -> production key
    compare: list[tuple[str, HeadKey, list[str]]] = field(default_factory=list)  # model, candidate, texts
    epochs: dict[HeadKey, int] = field(default_factory=dict)  # candidate key -> its stage epoch


def plan_routes(models: Sequence[str], hashes: Sequence[str], routes: Mapping[str, Route]) -> Plan:
    """Production scores every text (it answers most of them, and is the reference the candidates are
    compared with); the canary scores its share; the shadow scores its sample."""
    plan = Plan()
    for model in models:
        route = routes[model]
        prod: HeadKey = (model, route.production.version)
        plan.heads[prod] = (PRODUCTION, route.production)
        plan.jobs[prod] = list(hashes)
        plan.production[model] = prod
        answers = plan.answer.setdefault(model, {})
        for stage in (CANARY, SHADOW):
            head = route.canary if stage == CANARY else route.shadow
            if head is None or head.version == route.production.version:
                continue
            if stage == CANARY:
                chosen = [h for h in hashes if route.answers(model, h) == CANARY]
            else:
                chosen = [h for h in hashes if route.shadowed(model, h)]
            key: HeadKey = (model, head.version)
            if key in plan.heads:  # the same version as canary and shadow: the registry forbids it
                continue
            plan.heads[key] = (stage, head)
            plan.epochs[key] = route.epoch(stage)
            if chosen:
                plan.jobs[key] = chosen
                plan.compare.append((model, key, chosen))
            if stage == CANARY:
                answers.update(dict.fromkeys(chosen, key))
        for h in hashes:
            answers.setdefault(h, prod)
    return plan
