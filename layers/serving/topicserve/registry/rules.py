"""The registry's stage rules, as pure functions over plain values: no AWS, no clock, no I/O.

What promote, shadow, canary, rollback and archive change, the guards (a production version cannot be
moved aside, a canary needs a weight in (0, 1], the ``rev`` a caller read must still be current), what a
step archives, and the history entries it appends. Each transition takes the model's :class:`Routing` (the
head item's pointers) and the stage of the version it moves, and returns a :class:`Decision`, or None when
there is nothing to change; a refusal raises :class:`RegistryError` with the reason.

The split is Powertools' idempotency package's (``persistence/base.py`` holds the rules over a few
abstract storage calls, ``persistence/dynamodb.py`` only storage): the store
(:class:`topicserve.registry.store.Registry`) reads the routing, asks these functions, and writes what
they decide in one DynamoDB transaction conditional on :attr:`Decision.rev`; only it knows the wire format.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field

from topicserve.errors import RegistryError
from topicserve.registry.model import Lineage, Routing, Stage, Transition

#: stages one version at most holds, named by the head item's pointers (the others are found by scanning)
POINTED = (Stage.PRODUCTION, Stage.CANARY, Stage.SHADOW)
#: what the head item's pointers are set to: a version, a canary weight, the production history
HeadValue = int | float | tuple[int, ...]
ROLLED_BACK = "rolled back"
PRODUCTION_ROLLED_BACK = "production rolled back"


@dataclass(frozen=True)
class Decision:
    """One stage change, decided and not yet written.

    ``sets`` / ``removes``: the head item's attributes (pointers, ``canary_weight``, ``*_rev``,
    ``history``) to set and to remove; ``stages``: every version whose stage changes (the one asked for
    and its side effects); ``history``: one :class:`Transition` per entry of ``stages``; ``rev``: the
    revision it was decided on. The store writes it all or nothing, only while the stored ``rev`` is
    still ``rev``, and sets ``rev + 1``, so two racing changes cannot leave two versions in one stage.
    """

    model: str
    rev: int
    sets: Mapping[str, HeadValue] = field(default_factory=dict)
    removes: tuple[str, ...] = ()
    stages: Mapping[int, Stage] = field(default_factory=dict)
    history: tuple[Transition, ...] = ()

    @property
    def archived(self) -> list[int]:
        """The versions this change archives."""
        return [v for v, stage in self.stages.items() if stage is Stage.ARCHIVED]


def check_name(name: str) -> None:
    """A model name is one non-empty path segment (it is part of the artifact's S3 key)."""
    if not name or "/" in name:
        raise RegistryError(f"invalid model name {name!r}")


def next_lineage(lineage: Lineage | None, version: int) -> Lineage:
    """A new version's lineage: its parent defaults to the version before it, so lineage forms a chain
    without the caller having to look it up."""
    lineage = lineage or Lineage()
    if lineage.parent_version is None and version > 1:
        return dataclasses.replace(lineage, parent_version=version - 1)
    return lineage


def check_rev(routing: Routing, expect_rev: int | None) -> None:
    """The guard of a caller that decided on what it read (the gate): nothing changed the model since."""
    if expect_rev is not None and routing.rev != expect_rev:
        raise RegistryError(
            f"{routing.model} changed since revision {expect_rev} (now {routing.rev}); read it again"
        )


def canary_weight(weight: float | None) -> float:
    if weight is None or not 0.0 < weight <= 1.0:
        raise RegistryError(f"a canary needs a traffic weight in (0, 1], got {weight!r}")
    return float(weight)


def promote(
    routing: Routing,
    version: int,
    current: Stage,
    stage: Stage,
    *,
    at: str,
    weight: float | None = None,
    reason: str = "",
    actor: str = "cli",
    expect_rev: int | None = None,
) -> Decision | None:
    """Move ``version`` (now at ``current``) to ``stage``; None when it is already there.

    * production: the previous production version is archived, and ``version`` appended to the history;
    * shadow / canary (``weight`` in (0, 1] for a canary): the version that held that stage is archived;
      a canary whose version is already the canary only changes its weight;
    * any stage: a version leaving the canary or shadow stage frees it. A production version cannot be
      moved aside directly (promote another version, or roll back).
    """
    check_rev(routing, expect_rev)
    change = _Change(routing)
    name = routing.model
    if stage is Stage.PRODUCTION:
        if routing.production == version:
            return None
        change.vacate(version)
        if routing.production is not None:
            change.stages[routing.production] = Stage.ARCHIVED
        change.sets["production"] = version
        change.sets["history"] = (*routing.history, version)
    elif stage in (Stage.SHADOW, Stage.CANARY):
        if routing.production == version:
            raise RegistryError(f"{name} v{version} is in production: it cannot also be a {stage.value}")
        slot = stage.value
        holder = routing.canary if stage is Stage.CANARY else routing.shadow
        if stage is Stage.CANARY:
            weight = canary_weight(weight)
            change.sets["canary_weight"] = weight
        if holder == version:
            if stage is Stage.SHADOW or weight == routing.canary_weight:
                return None
        else:
            change.vacate(version)
            if holder is not None:
                change.stages[holder] = Stage.ARCHIVED
            change.sets[slot] = version
            change.sets[f"{slot}_rev"] = routing.rev + 1
    else:
        if routing.production == version:
            raise RegistryError(
                f"{name} v{version} is in production: promote another version (or roll back) first"
            )
        change.vacate(version)
    change.stages[version] = stage
    return change.decide({version: current}, at=at, reason=reason, actor=actor, weight=weight)


def rollback_target(routing: Routing, *, production: bool = False) -> tuple[int, Stage]:
    """What a rollback undoes, the riskiest step in flight: ``(the canary, else the shadow, ARCHIVED)``;
    with neither, or with ``production``, ``(the version in production before the current one,
    PRODUCTION)`` (:func:`restore_production`), refused when there is none."""
    candidate = routing.canary if routing.canary is not None else routing.shadow
    if candidate is not None and not production:
        return candidate, Stage.ARCHIVED
    if routing.production is None or len(routing.history) < 2:
        raise RegistryError(f"{routing.model} has no earlier production version to roll back to")
    return routing.history[-2], Stage.PRODUCTION


def restore_production(
    routing: Routing, previous_stage: Stage, *, at: str, reason: str = "", actor: str = "cli"
) -> Decision:
    """Put the previous production version (now at ``previous_stage``) back: the current one is
    archived and leaves the history."""
    previous, _ = rollback_target(routing, production=True)
    assert routing.production is not None  # rollback_target refused otherwise
    change = _Change(routing)
    change.vacate(previous)
    change.stages[routing.production] = Stage.ARCHIVED
    change.stages[previous] = Stage.PRODUCTION
    change.sets["production"] = previous
    change.sets["history"] = routing.history[:-1]
    return change.decide(
        {previous: previous_stage}, at=at, reason=reason or PRODUCTION_ROLLED_BACK, actor=actor
    )


class _Change:
    """The pointer and stage changes of one transition while a rule decides them."""

    def __init__(self, routing: Routing) -> None:
        self.routing = routing
        self.sets: dict[str, HeadValue] = {}
        self.removes: list[str] = []
        self.stages: dict[int, Stage] = {}

    def vacate(self, version: int) -> None:
        """``version`` leaves the canary or shadow stage it holds (if any)."""
        if version == self.routing.canary:
            self.removes += ["canary", "canary_weight", "canary_rev"]
        if version == self.routing.shadow:
            self.removes += ["shadow", "shadow_rev"]

    def decide(
        self, before: dict[int, Stage], *, at: str, reason: str, actor: str, weight: float | None = None
    ) -> Decision:
        """The decision, with one history entry per version that changes stage: ``before`` holds the
        stage of the versions asked for (the others are side effects, and say so)."""
        old = {**self.routing.stage_of(), **before}
        history = tuple(
            Transition(
                at=at,
                version=v,
                from_stage=old.get(v, Stage.NONE).value,
                to_stage=stage.value,
                reason=reason if v in before else f"{reason} (side effect)".strip(),
                actor=actor,
                weight=weight if stage is Stage.CANARY else None,
            )
            for v, stage in self.stages.items()
        )
        return Decision(
            model=self.routing.model,
            rev=self.routing.rev,
            sets=dict(self.sets),
            removes=tuple(a for a in dict.fromkeys(self.removes) if a not in self.sets),
            stages=dict(self.stages),
            history=history,
        )
