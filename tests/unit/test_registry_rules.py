"""The registry's stage rules (topicserve.registry.rules) on plain values: no moto, no boto3, no endpoint.

Each transition is given a routing (the head item's pointers) and the stage of the version it moves, and
its decision is read whole: the pointers set and removed, every stage change (side effects included),
the history entries and the revision the commit will be conditional on. The storage of these decisions
(one conditional transaction) is tested through moto in test_registry.py.
"""

from __future__ import annotations

import pytest

from topicserve.errors import RegistryError
from topicserve.registry.model import Lineage, Routing, Stage, Transition
from topicserve.registry.rules import (
    POINTED,
    Decision,
    check_name,
    check_rev,
    next_lineage,
    promote,
    restore_production,
    rollback_target,
)

AT = "2026-12-06T23:00:00+00:00"


def routing(**pointers: object) -> Routing:
    return Routing(model="logreg", **pointers)


def entry(version: int, from_stage: str, to_stage: str, reason: str = "why", **extra: object) -> Transition:
    return Transition(AT, version, from_stage, to_stage, reason=reason, actor="me", **extra)


def move(r: Routing, version: int, current: Stage, stage: Stage, **kwargs: object) -> Decision | None:
    return promote(r, version, current, stage, at=AT, reason="why", actor="me", **kwargs)


# --- production ----------------------------------------------------------------------------------------


def test_first_production_version_sets_the_pointer_and_starts_the_history() -> None:
    decision = move(routing(rev=3), 1, Stage.NONE, Stage.PRODUCTION)
    assert decision == Decision(
        model="logreg",
        rev=3,
        sets={"production": 1, "history": (1,)},
        stages={1: Stage.PRODUCTION},
        history=(entry(1, "none", "production"),),
    )
    assert decision.archived == []


def test_a_new_production_version_archives_the_previous_one_as_a_side_effect() -> None:
    decision = move(routing(production=1, history=(1,), rev=4), 2, Stage.STAGING, Stage.PRODUCTION)
    assert decision is not None
    assert decision.sets == {"production": 2, "history": (1, 2)}
    assert decision.stages == {1: Stage.ARCHIVED, 2: Stage.PRODUCTION}
    assert decision.archived == [1]
    assert decision.history == (
        entry(1, "production", "archived", reason="why (side effect)"),
        entry(2, "staging", "production"),
    )


def test_promoting_the_canary_to_production_frees_the_canary_stage() -> None:
    r = routing(production=1, canary=2, canary_weight=0.2, canary_rev=5, history=(1,), rev=6)
    decision = move(r, 2, Stage.CANARY, Stage.PRODUCTION)
    assert decision is not None
    assert decision.removes == ("canary", "canary_weight", "canary_rev")
    assert decision.history[-1] == entry(2, "canary", "production")


def test_promoting_the_production_version_to_production_changes_nothing() -> None:
    assert move(routing(production=1, history=(1,)), 1, Stage.PRODUCTION, Stage.PRODUCTION) is None


# --- shadow and canary ---------------------------------------------------------------------------------


def test_a_new_shadow_archives_the_old_one_and_starts_a_new_epoch() -> None:
    r = routing(production=1, shadow=2, shadow_rev=3, history=(1,), rev=7)
    decision = move(r, 3, Stage.NONE, Stage.SHADOW)
    assert decision is not None
    assert decision.sets == {"shadow": 3, "shadow_rev": 8}
    assert decision.removes == ()
    assert decision.stages == {2: Stage.ARCHIVED, 3: Stage.SHADOW}
    assert decision.history[0].reason == "why (side effect)" and decision.history[0].weight is None


def test_the_shadow_again_changes_nothing() -> None:
    assert move(routing(shadow=2), 2, Stage.SHADOW, Stage.SHADOW) is None


def test_a_canary_takes_its_weight_and_the_shadow_moving_there_leaves_the_shadow_stage() -> None:
    r = routing(production=1, shadow=2, shadow_rev=3, history=(1,), rev=4)
    decision = move(r, 2, Stage.SHADOW, Stage.CANARY, weight=0.25)
    assert decision is not None
    assert decision.sets == {"canary_weight": 0.25, "canary": 2, "canary_rev": 5}
    assert decision.removes == ("shadow", "shadow_rev")
    assert decision.history == (entry(2, "shadow", "canary", weight=0.25),)


def test_the_canary_again_changes_only_a_new_weight() -> None:
    r = routing(production=1, canary=2, canary_weight=0.2, canary_rev=3, history=(1,), rev=4)
    assert move(r, 2, Stage.CANARY, Stage.CANARY, weight=0.2) is None
    decision = move(r, 2, Stage.CANARY, Stage.CANARY, weight=0.5)
    assert decision is not None
    assert decision.sets == {"canary_weight": 0.5} and decision.removes == ()
    assert decision.history == (entry(2, "canary", "canary", weight=0.5),)


@pytest.mark.parametrize("weight", [None, 0.0, -0.1, 1.01])
def test_a_canary_needs_a_weight_in_0_1(weight: float | None) -> None:
    with pytest.raises(RegistryError, match=r"traffic weight in \(0, 1\]"):
        move(routing(production=1), 2, Stage.NONE, Stage.CANARY, weight=weight)


def test_a_whole_canary_is_allowed() -> None:
    decision = move(routing(production=1), 2, Stage.NONE, Stage.CANARY, weight=1.0)
    assert decision is not None and decision.sets["canary_weight"] == 1.0


@pytest.mark.parametrize("stage", [Stage.SHADOW, Stage.CANARY])
def test_the_production_version_cannot_also_be_a_candidate(stage: Stage) -> None:
    with pytest.raises(RegistryError, match=f"in production: it cannot also be a {stage.value}"):
        move(routing(production=1, history=(1,)), 1, Stage.PRODUCTION, stage, weight=0.5)


# --- other stages: staging, none, archived ---------------------------------------------------------------


def test_archiving_the_canary_frees_its_stage() -> None:
    r = routing(production=1, canary=2, canary_weight=0.2, history=(1,), rev=4)
    decision = move(r, 2, Stage.CANARY, Stage.ARCHIVED)
    assert decision is not None
    assert decision.sets == {} and decision.removes == ("canary", "canary_weight", "canary_rev")
    assert decision.archived == [2] and decision.history == (entry(2, "canary", "archived"),)


def test_staging_a_version_outside_the_pointers_only_changes_its_stage() -> None:
    decision = move(routing(production=1, history=(1,)), 3, Stage.NONE, Stage.STAGING)
    assert decision is not None
    assert decision.sets == {} and decision.removes == () and decision.stages == {3: Stage.STAGING}


@pytest.mark.parametrize("stage", [Stage.STAGING, Stage.NONE, Stage.ARCHIVED])
def test_the_production_version_cannot_be_moved_aside(stage: Stage) -> None:
    with pytest.raises(RegistryError, match="promote another version"):
        move(routing(production=1, history=(1,)), 1, Stage.PRODUCTION, stage)


# --- the rev guard -------------------------------------------------------------------------------------


def test_a_decision_on_a_stale_revision_is_refused() -> None:
    with pytest.raises(RegistryError, match=r"changed since revision 3 \(now 4\)"):
        move(routing(production=1, history=(1,), rev=4), 2, Stage.NONE, Stage.SHADOW, expect_rev=3)
    with pytest.raises(RegistryError, match="changed since revision"):
        check_rev(routing(rev=1), 0)


def test_a_decision_on_the_current_revision_is_conditional_on_it() -> None:
    decision = move(routing(production=1, history=(1,), rev=4), 2, Stage.NONE, Stage.SHADOW, expect_rev=4)
    assert decision is not None and decision.rev == 4
    check_rev(routing(rev=1), None)  # no expectation: no guard


# --- rollback ------------------------------------------------------------------------------------------


def test_rollback_undoes_the_canary_first_then_the_shadow() -> None:
    both = routing(production=1, canary=3, shadow=2, history=(1,))
    assert rollback_target(both) == (3, Stage.ARCHIVED)
    assert rollback_target(routing(production=1, shadow=2, history=(1,))) == (2, Stage.ARCHIVED)


def test_rollback_of_production_goes_back_one_version() -> None:
    r = routing(production=2, canary=3, history=(1, 2))
    assert rollback_target(r, production=True) == (1, Stage.PRODUCTION)
    assert rollback_target(routing(production=2, history=(1, 2))) == (1, Stage.PRODUCTION)


@pytest.mark.parametrize("r", [routing(), routing(production=1, history=(1,))])
def test_rollback_without_an_earlier_production_version_is_refused(r: Routing) -> None:
    with pytest.raises(RegistryError, match="no earlier production version"):
        rollback_target(r)


def test_restoring_production_archives_the_current_one_and_trims_the_history() -> None:
    r = routing(production=3, history=(1, 2, 3), rev=9)
    decision = restore_production(r, Stage.ARCHIVED, at=AT, actor="me")
    assert decision == Decision(
        model="logreg",
        rev=9,
        sets={"production": 2, "history": (1, 2)},
        stages={3: Stage.ARCHIVED, 2: Stage.PRODUCTION},
        history=(
            entry(3, "production", "archived", reason="production rolled back (side effect)"),
            entry(2, "archived", "production", reason="production rolled back"),
        ),
    )


def test_restoring_a_version_that_is_now_the_shadow_frees_the_shadow_stage() -> None:
    r = routing(production=2, shadow=1, history=(1, 2))
    decision = restore_production(r, Stage.SHADOW, at=AT, reason="bad reviews", actor="me")
    assert decision.removes == ("shadow", "shadow_rev")
    assert decision.history[-1] == entry(1, "shadow", "production", reason="bad reviews")


# --- registration --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["", "a/b"])
def test_a_model_name_is_one_path_segment(name: str) -> None:
    with pytest.raises(RegistryError, match="invalid model name"):
        check_name(name)
    check_name("logreg")


def test_a_new_version_descends_from_the_one_before_unless_told() -> None:
    assert next_lineage(None, 1) == Lineage()
    assert next_lineage(None, 4).parent_version == 3
    assert next_lineage(Lineage(parent_version=1, code_revision="abc"), 4) == Lineage(
        parent_version=1, code_revision="abc"
    )


def test_the_pointed_stages_are_the_ones_routing_names() -> None:
    pointed = routing(production=1, canary=2, shadow=3).stage_of()
    assert set(pointed.values()) == set(POINTED)
