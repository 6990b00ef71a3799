"""Rollout: registry stages and history, sticky routing, the service with a canary and a shadow, the
router's refresh, the rollout records and the gates."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.helpers import create_table
from tests.unit.conftest import FakeEncoder, FakeHead, artifact
from tests.unit.test_bootstrap import Immediate
from topicserve.errors import RegistryError
from topicserve.registry import Registry, Stage
from topicserve.rollout.gates import PROMOTE, ROLLBACK, WAIT, Thresholds, evaluate
from topicserve.rollout.records import RolloutRecorder, RolloutStore
from topicserve.rollout.router import Router
from topicserve.rollout.routing import Route, plan_routes, share
from topicserve.rollout.runner import run_gates
from topicserve.rollout.tally import Tally
from topicserve.service import InferenceService
from topicserve.text import text_hash
from topicserve_ops.registry_cli import main as cli_main

ROLLOUT_KEYS = [("model", "S", "HASH"), ("record", "S", "RANGE")]


def versions(registry: Registry, tmp_path: Path, name: str, n: int) -> None:
    for i in range(n):
        registry.register(name, artifact(tmp_path, f"{name}{i}.onnx", bytes([i])), format="onnx")


# -- registry stages ---------------------------------------------------------------------------------
def test_shadow_canary_promote_and_rollback_keep_one_version_per_stage(
    registry: Registry, tmp_path: Path
) -> None:
    versions(registry, tmp_path, "logreg", 4)
    registry.promote("logreg", 1, reason="first")
    registry.promote("logreg", 2, "shadow", reason="try C=0.3")
    assert registry.routing("logreg").shadow == 2
    registry.promote("logreg", 3, "shadow")  # replaces the shadow: v2 archived
    r = registry.routing("logreg")
    assert r.shadow == 3 and registry.show("logreg", 2).stage is Stage.ARCHIVED
    registry.promote("logreg", 3, "canary", weight=0.2)  # shadow -> canary frees the shadow stage
    r = registry.routing("logreg")
    assert (r.shadow, r.canary, r.canary_weight) == (None, 3, 0.2)
    epoch = r.canary_rev
    registry.promote("logreg", 3, "canary", weight=0.5)  # a weight change keeps the canary's epoch
    r = registry.routing("logreg")
    assert r.canary_weight == 0.5 and r.canary_rev == epoch
    with pytest.raises(RegistryError, match="in production"):
        registry.promote("logreg", 1, "canary", weight=0.1)
    with pytest.raises(RegistryError, match="weight"):
        registry.promote("logreg", 4, "canary", weight=0)
    registry.promote("logreg", 3, reason="canary passed")
    r = registry.routing("logreg")
    assert (r.production, r.canary, r.history) == (3, None, (1, 3))
    assert {v.version: v.stage for v in registry.list("logreg")} == {
        1: Stage.ARCHIVED,
        2: Stage.ARCHIVED,
        3: Stage.PRODUCTION,
        4: Stage.NONE,
    }
    registry.promote("logreg", 4, "canary", weight=0.1)
    assert registry.rollback("logreg", reason="bad canary").version == 3  # the canary goes, production stays
    r = registry.routing("logreg")
    assert r.canary is None and registry.show("logreg", 4).stage is Stage.ARCHIVED
    assert registry.rollback("logreg").version == 1  # no candidate: production goes back
    history = registry.transitions("logreg")
    assert [(t.version, t.from_stage, t.to_stage) for t in history][:3] == [
        (1, "none", "production"),
        (2, "none", "shadow"),
        (2, "shadow", "archived"),
    ]
    assert history[1].reason == "try C=0.3" and history[2].reason.endswith("(side effect)")
    canary = [t for t in history if t.to_stage == "canary"]
    assert canary[0].weight == 0.2
    assert any(t.reason == "bad canary" and t.to_stage == "archived" for t in history)
    assert registry.resolve("logreg", "production").version == 1


def test_stale_decisions_are_refused(registry: Registry, tmp_path: Path) -> None:
    versions(registry, tmp_path, "mlp", 2)
    registry.promote("mlp", 1)
    rev = registry.routing("mlp").rev
    registry.promote("mlp", 2, "shadow")
    with pytest.raises(RegistryError, match="changed"):
        registry.promote("mlp", 2, "canary", weight=0.1, expect_rev=rev)


def test_routings_read_many_models_at_once(registry: Registry, tmp_path: Path) -> None:
    for name in ("a", "b"):
        versions(registry, tmp_path, name, 2)
        registry.promote(name, 1)
    registry.promote("b", 2, "canary", weight=0.3)
    found = registry.routings(["a", "b", "missing"])
    assert set(found) == {"a", "b"}
    assert found["b"].candidates() == [(Stage.CANARY, 2, found["b"].canary_rev)]


# -- routing -----------------------------------------------------------------------------------------
def test_canary_share_is_sticky_monotone_and_close_to_its_weight() -> None:
    hashes = [text_hash(f"text {i}") for i in range(4000)]
    route = Route(FakeHead("m", "1"), canary=FakeHead("m", "2"), canary_weight=0.2)
    chosen = {h for h in hashes if route.answers("m", h) == "canary"}
    assert abs(len(chosen) / len(hashes) - 0.2) < 0.02
    assert chosen == {h for h in hashes if route.answers("m", h) == "canary"}  # deterministic
    wider = Route(FakeHead("m", "1"), canary=FakeHead("m", "2"), canary_weight=0.5)
    assert chosen <= {h for h in hashes if wider.answers("m", h) == "canary"}  # raising it only adds
    other = {h for h in hashes if share("canary", "other", h) < 0.2}
    assert len(chosen & other) < 0.1 * len(hashes)  # independent between models


def test_plan_scores_production_everywhere_and_candidates_on_their_share() -> None:
    hashes = [text_hash(f"t{i}") for i in range(200)]
    route = Route(
        FakeHead("m", "1"),
        canary=FakeHead("m", "2"),
        canary_weight=0.3,
        shadow=FakeHead("m", "3"),
        shadow_sample=0.5,
    )
    plan = plan_routes(["m"], hashes, {"m": route})
    assert plan.jobs[("m", "1")] == hashes
    canary = plan.jobs[("m", "2")]
    assert all(plan.answer["m"][h] == ("m", "2") for h in canary)
    assert 30 < len(canary) < 90 and 60 < len(plan.jobs[("m", "3")]) < 140
    assert [(m, k) for m, k, _ in plan.compare] == [("m", ("m", "2")), ("m", ("m", "3"))]


# -- the service with candidates -----------------------------------------------------------------------
class Permuted(FakeHead):
    """A broken candidate: the same scores under shuffled labels."""

    def __init__(self, base: FakeHead, version: str) -> None:
        super().__init__(base.name, version)
        self.weights = base.weights
        self.labels = list(reversed(base.labels))


class Broken(FakeHead):
    def predict_proba(self, embeddings: np.ndarray) -> np.ndarray:
        raise RuntimeError("corrupt candidate")


class Fixed:
    def __init__(self, routes: dict[str, Route]) -> None:
        self.routes = routes

    def current(self) -> dict[str, Route]:
        return self.routes


TEXTS = [f"document number {i} about things" for i in range(300)]


def test_canary_answers_its_share_and_is_compared_with_production(fake_encoder: FakeEncoder) -> None:
    prod = FakeHead("logreg", "1")
    route = Route(prod, canary=Permuted(prod, "2"), canary_weight=0.25, canary_epoch=7)
    svc = InferenceService(fake_encoder, Fixed({"logreg": route}))
    result = svc.predict(TEXTS, ["logreg"])
    stages = [p.stage for p in result.predictions["logreg"]]
    assert 0.15 < stages.count("canary") / len(TEXTS) < 0.35
    assert all((p.stage == "canary") == (p.version == "2") for p in result.predictions["logreg"])
    assert result.versions == {"logreg": "1"}
    (obs,) = result.rollout
    assert (obs.stage, obs.version, obs.epoch) == ("canary", "2", 7)
    assert obs.tally.compared == obs.tally.answered == stages.count("canary")
    assert obs.tally.agreed < 0.2 * obs.tally.compared  # permuted labels rarely agree
    again = svc.predict(list(reversed(TEXTS)), ["logreg"])  # sticky: same text, same version
    assert [p.version for p in reversed(again.predictions["logreg"])] == [
        p.version for p in result.predictions["logreg"]
    ]


def test_shadow_never_changes_answers_and_a_failing_candidate_never_fails_a_request(
    fake_encoder: FakeEncoder,
) -> None:
    prod = FakeHead("logreg", "1")
    baseline = InferenceService(fake_encoder, {"logreg": prod}).predict(TEXTS, ["logreg"])
    shadowed = InferenceService(
        fake_encoder, Fixed({"logreg": Route(prod, shadow=FakeHead("logreg", "2", seed=5))})
    )
    result = shadowed.predict(TEXTS, ["logreg"])
    assert result.predictions == baseline.predictions
    assert result.rollout[0].tally.compared == len(TEXTS) and result.rollout[0].tally.answered == 0
    broken = Route(prod, canary=Broken("logreg", "3"), canary_weight=0.5, shadow=Broken("logreg", "4"))
    result = InferenceService(fake_encoder, Fixed({"logreg": broken})).predict(TEXTS, ["logreg"])
    assert [p.label for p in result.predictions["logreg"]] == [
        p.label for p in baseline.predictions["logreg"]
    ]
    assert {p.stage for p in result.predictions["logreg"]} == {"production"}
    assert {(o.stage, o.tally.errors > 0, o.tally.compared) for o in result.rollout} == {
        ("canary", True, 0),
        ("shadow", True, 0),
    }


# -- router --------------------------------------------------------------------------------------------
class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def started_router(registry: Registry, model: str, load: Any, errors: list[Any]) -> tuple[Router, Clock]:
    """A router of one model on a clock the test moves, loading synchronously, with a 30 s TTL; the load
    errors it reports to the gates go to ``errors``."""
    clock = Clock()
    router = Router(
        [model],
        registry,
        load,
        ttl_seconds=30,
        executor=Immediate(),
        clock=clock,
        on_load_error=lambda *a: errors.append(a),
    )
    router.start()
    return router, clock


def test_router_follows_the_registry_within_its_ttl(registry: Registry, tmp_path: Path) -> None:
    versions(registry, tmp_path, "logreg", 3)
    registry.promote("logreg", 1)
    loads: list[tuple[str, int]] = []
    errors: list[tuple[str, str, int, int]] = []

    def load(model: str, version: int) -> FakeHead:
        loads.append((model, version))
        if version == 3:
            raise RuntimeError("cannot load v3")
        return FakeHead(model, str(version))

    router, clock = started_router(registry, "logreg", load, errors)
    assert router.current()["logreg"].production.version == "1"
    registry.promote("logreg", 2, "canary", weight=0.2)
    assert router.current()["logreg"].canary is None  # within the TTL: not read yet
    clock.now = 31
    route = router.current()["logreg"]
    assert route.canary is not None and route.canary.version == "2" and route.canary_weight == 0.2
    registry.promote("logreg", 3, "shadow")
    clock.now = 62
    route = router.current()["logreg"]
    assert route.shadow is None and route.canary is not None  # v3 failed to load: nothing else changes
    assert errors == [("logreg", "shadow", 3, registry.routing("logreg").shadow_rev)]
    registry.promote("logreg", 2, reason="canary passed")
    clock.now = 93
    route = router.current()["logreg"]
    assert route.production.version == "2" and route.canary is None
    assert loads.count(("logreg", 2)) == 1  # the canary's head is reused as production: no reload


def test_router_keeps_serving_when_the_registry_is_down(registry: Registry, tmp_path: Path) -> None:
    versions(registry, tmp_path, "rf", 1)
    registry.promote("rf", 1)
    clock = Clock()
    router = Router(["rf"], registry, lambda m, v: FakeHead(m, str(v)), executor=Immediate(), clock=clock)
    router.start()

    def down(names: Any) -> Any:
        raise RuntimeError("registry unreachable")

    router.registry = type("Down", (), {"routings": staticmethod(down)})()
    clock.now = 100
    assert router.current()["rf"].production.version == "1"


def test_a_production_head_that_fails_to_load_in_a_warm_environment_keeps_the_previous_one(
    registry: Registry, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A promotion whose head a warm environment cannot load (here its artifact fails the sha256 check)
    never fails a request: the environment keeps serving the production head it has, does not fall back
    to older versions (that is for cold starts, which have nothing), reports nothing to the gates (they
    judge candidates, not production), and loads the new head at a later refresh once it can."""
    from topicserve.errors import ChecksumMismatchError

    versions(registry, tmp_path, "rf", 2)
    registry.promote("rf", 1)
    broken = {2}
    loads: list[int] = []
    errors: list[Any] = []

    def load(model: str, version: int) -> FakeHead:
        loads.append(version)
        if version in broken:
            raise ChecksumMismatchError(f"{model} v{version}: sha256 mismatch")
        return FakeHead(model, str(version))

    router, clock = started_router(registry, "rf", load, errors)
    registry.promote("rf", 2)
    clock.now = 31
    assert router.current()["rf"].production.version == "1"
    assert loads == [1, 2] and errors == [] and not router.pending
    assert "could not load a head; serving the current routing" in caplog.text
    clock.now = 45  # within the TTL: no new attempt
    assert router.current()["rf"].production.version == "1" and loads == [1, 2]
    broken.clear()  # the artifact is fixed (or S3 answers again)
    clock.now = 62
    assert router.current()["rf"].production.version == "2" and loads == [1, 2, 2]


def test_after_a_snapstart_restore_the_next_request_rereads_the_routing(
    registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A restored snapshot holds the routing read at snapshot time: the restore hook expires it, so the
    first request reads the registry again however young the TTL clock says the routing is."""
    import sys
    import types

    from topicserve.bootstrap import after_snapstart_restore

    versions(registry, tmp_path, "rf", 2)
    registry.promote("rf", 1)
    clock = Clock()
    router = Router(["rf"], registry, lambda m, v: FakeHead(m, str(v)), executor=Immediate(), clock=clock)
    router.start()
    hooks: list[Any] = []
    module = types.ModuleType("snapshot_restore_py")
    module.register_after_restore = hooks.append  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "snapshot_restore_py", module)
    assert after_snapstart_restore(router.expire) and hooks == [router.expire]
    registry.promote("rf", 2)  # while the snapshot sat on the shelf
    assert router.current()["rf"].production.version == "1"  # within the TTL: not re-read
    hooks[0]()  # Lambda restores the snapshot
    assert router.current()["rf"].production.version == "2"


def test_outside_lambda_there_is_no_restore_hook(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from topicserve.bootstrap import after_snapstart_restore

    monkeypatch.setitem(sys.modules, "snapshot_restore_py", None)  # import fails as in a plain Python
    assert not after_snapstart_restore(lambda: None)


# -- records and gates ---------------------------------------------------------------------------------
def test_records_add_up_across_environments_and_flushes(ddb: Any) -> None:
    create_table(ddb, "rollout", ROLLOUT_KEYS)
    store = RolloutStore("rollout", ddb)
    clock = Clock()
    a = RolloutRecorder(store, flush_seconds=10, clock=clock)
    b = RolloutRecorder(store, flush_seconds=0, clock=clock)
    a.load_error("logreg", "canary", 2, 5)
    a.pending[("logreg", "canary", "2", 5)].add(Tally(compared=10, agreed=9, candidate_confidence=6.5))
    b.pending[("logreg", "canary", "2", 5)] = Tally(compared=5, agreed=5, candidate_confidence=4.0)
    assert a.maybe_flush() == 0 and b.maybe_flush() == 1
    clock.now = 11
    assert a.maybe_flush() == 1
    tally = store.get("logreg", "canary", 2, 5)
    assert (tally.compared, tally.agreed, tally.errors) == (15, 14, 1)
    assert tally.candidate_confidence == pytest.approx(10.5)
    (record,) = store.records("logreg")
    assert record["agreement"] == round(14 / 15, 4) and record["epoch"] == 5


@pytest.mark.parametrize(
    ("tally", "action", "reason"),
    [
        (Tally(compared=50, agreed=50), WAIT, "does not rule out"),  # no minimum count; 50 texts prove little
        (Tally(errors=5), ROLLBACK, "without scoring"),
        (Tally(compared=2000, agreed=1999), PROMOTE, "disagreement"),  # a near-identical retrain, no labels
        (Tally(compared=2000, agreed=1800), WAIT, "does not rule out"),  # 10 % discordant: needs labels
        (Tally(compared=2000, agreed=1999, errors=40), WAIT, "straddles 0.01"),  # 2 %: not yet sure
        (Tally(compared=2000, agreed=1999, errors=80), ROLLBACK, "is above 0.01"),
        (Tally(compared=20, agreed=20, errors=4), WAIT, "only 4 failures"),  # the floor on failures
        (
            Tally(
                compared=300, agreed=30, labelled=200, candidate_only_correct=5, production_only_correct=120
            ),
            ROLLBACK,
            "candidate worse",
        ),
        (
            Tally(
                compared=5000,
                agreed=4600,
                labelled=4000,
                candidate_only_correct=160,
                production_only_correct=150,
            ),
            PROMOTE,
            "accuracy difference",
        ),
    ],
)
def test_gate_decisions(tally: Tally, action: str, reason: str) -> None:
    decision = evaluate("canary", tally, Thresholds())
    assert decision.action == action and reason in decision.reason, decision.reason
    if decision.record is not None:  # every sequential decision names its tests, estimates, bounds, sizes
        tests = {t["test"]: t for t in decision.record["tests"]}
        assert set(tests) == {"paired-accuracy", "disagreement", "error-rate"}
        assert (
            tests["disagreement"]["n"] == tally.compared and tests["paired-accuracy"]["n"] == tally.labelled
        )
        assert decision.record["alpha"] == 0.05
        assert decision.history_reason().startswith(f"gate {action}: ")
    if action == PROMOTE:
        assert decision.to_stage == "production"
        assert evaluate("shadow", tally, Thresholds()).to_stage == "canary"


def test_the_gate_settings_come_from_the_environment() -> None:
    t = Thresholds.from_env({"GATE_ALPHA": "0.01", "GATE_MIN_EFFECT": "0.05", "GATE_MAX_ERROR_RATE": "0.02"})
    assert (t.alpha, t.min_effect, t.max_error_rate, t.max_errors_unserved) == (0.01, 0.05, 0.02, 5)
    assert Thresholds.from_env({}) == Thresholds(alpha=0.05, min_effect=0.02)


def test_gate_run_applies_decisions_with_reasons(registry: Registry, ddb: Any, tmp_path: Path) -> None:
    create_table(ddb, "rollout", ROLLOUT_KEYS)
    store = RolloutStore("rollout", ddb)
    versions(registry, tmp_path, "logreg", 3)
    registry.promote("logreg", 1)
    registry.promote("logreg", 2, "canary", weight=0.2)
    registry.promote("logreg", 3, "shadow")
    r = registry.routing("logreg")
    store.add(  # labels came back: production right where the canary was wrong
        ("logreg", "canary", "2", r.canary_rev),
        Tally(compared=250, agreed=10, labelled=200, candidate_only_correct=4, production_only_correct=130),
    )
    store.add(("logreg", "shadow", "3", r.shadow_rev), Tally(compared=2000, agreed=1999))
    preview = run_gates(registry, store, Thresholds(), ["logreg"], apply=False)
    assert [(v["stage"], v["action"]) for v in preview] == [("canary", "rollback"), ("shadow", "wait")]
    assert registry.routing("logreg").canary == 2  # a preview changes nothing
    first = run_gates(registry, store, Thresholds(), ["logreg"])
    assert first[0]["applied"] and registry.routing("logreg").canary is None
    last = registry.transitions("logreg")[-1]
    assert (last.version, last.to_stage, last.actor) == (2, "archived", "gate")
    assert "candidate worse" in last.reason and '"test":"paired-accuracy"' in last.reason
    assert first[0]["test"]["decision"] == "rollback"
    second = run_gates(registry, store, Thresholds(canary_weight=0.25), ["logreg"])  # the shadow may go now
    assert second[0]["applied"] and second[0]["to"] == "canary"
    r = registry.routing("logreg")
    assert (r.canary, r.canary_weight, r.shadow) == (3, 0.25, None)
    # the new canary epoch starts from zero: nothing to decide yet
    assert run_gates(registry, store, Thresholds(), ["logreg"])[0]["action"] == WAIT


def test_cli_rollout_commands(
    registry: Registry, ddb: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    create_table(ddb, "rollout", ROLLOUT_KEYS)
    versions(registry, tmp_path, "mlp", 3)
    base = ["--bucket", "artifacts", "--table", "registry", "--rollout-table", "rollout"]
    assert cli_main([*base, "promote", "mlp", "1"]) == 0
    assert cli_main([*base, "shadow", "mlp", "2", "--reason", "new dropout"]) == 0
    assert cli_main([*base, "canary", "mlp", "3", "--weight", "0.2"]) == 0
    capsys.readouterr()
    assert cli_main([*base, "rollout-status", "mlp"]) == 0
    import json

    status = json.loads(capsys.readouterr().out)["mlp"]
    assert status["routing"]["canary"] == {"version": 3, "weight": 0.2}
    assert status["routing"]["shadow"] == {"version": 2}
    assert [v["action"] for v in status["gate"]] == ["wait", "wait"]
    assert status["history"][-1]["to_stage"] == "canary"
    assert cli_main([*base, "rollback", "mlp", "--reason", "enough"]) == 0
    assert registry.routing("mlp").canary is None
    assert cli_main([*base, "canary", "mlp", "2"]) == 2  # a canary needs --weight
