"""Head rollout end to end: shadow, sticky canary, the gate promoting a good canary and rolling back a
broken one, all through the registry while the functions keep serving: no redeploy and no environment
renewal anywhere in this module (serving follows the registry within RoutingTtlSeconds).

The candidates are trained here by ``training.candidate`` from the build's cached embeddings: a logreg
with other settings (good) and one trained on permuted labels (broken). The gate is the sequential one
(docs/ROLLOUT.md): the good canary is promoted on its disagreement's bound, the broken one rolled back on
the labels its test feeds back through ``POST /v1/feedback``. The tests share the deployed
stack and its registry, not their state: each starts from the routing the module found (the original
production version alone, served everywhere), whatever ran before it, and stages its own candidates.
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.e2e.app.conftest import ROUTING_TTL_SECONDS, labelled_texts
from tests.e2e.conftest import LocalCloud
from topicserve.registry import Registry
from topicserve.rollout.records import RolloutStore
from topicserve_ops.client import Client
from training import candidate

pytestmark = pytest.mark.e2e
MODEL = "logreg"
SETTLE = ROUTING_TTL_SECONDS + 3  # a routing change plus a head load reaches every environment by then


@dataclass
class Rollout:
    client: Client
    registry: Registry
    store: RolloutStore
    lam: Any
    gate_function: str
    texts: list[str]
    production: int
    labels: dict[str, str]  # text -> its true 20NG label, for label feedback

    def answers(self, texts: list[str]) -> dict[str, tuple[str, str, str]]:
        """text -> (label, model_version, stage), through the predict function, 64 texts per request."""
        out = {}
        for start in range(0, len(texts), 64):
            chunk = texts[start : start + 64]
            status, body = self.client.predict(MODEL, chunk)
            assert status == 200, body
            for text, p in zip(chunk, body["predictions"], strict=True):
                out[text] = (p["label"], p["model_version"], p["stage"])
        return out

    def gate(self) -> list[dict[str, Any]]:
        response = self.lam.invoke(FunctionName=self.gate_function, Payload=b"{}")
        payload = json.loads(response["Payload"].read())
        assert "FunctionError" not in response, payload
        return [v for v in payload["verdicts"] if v["model"] == MODEL]

    def register(self, params: dict[str, Any], **kwargs: Any) -> int:
        entry = candidate.train(MODEL, params, **kwargs)
        return candidate.register(self.registry, entry, MODEL).version

    def wait_for(
        self, texts: list[str], condition: Any, timeout: float = 60
    ) -> dict[str, tuple[str, str, str]]:
        deadline = time.monotonic() + timeout
        while True:
            seen = self.answers(texts)
            if condition(seen) or time.monotonic() > deadline:
                return seen
            time.sleep(0.5)

    def canary(self, params: dict[str, Any], weight: float, reason: str, **kwargs: Any) -> int:
        """Train and register a candidate, make it the canary at ``weight``, and return once every
        environment serves it."""
        version = self.register(params, **kwargs)
        self.registry.promote(MODEL, version, "canary", weight=weight, reason=reason)
        self.wait_for(self.texts[:64], lambda seen: any(s == "canary" for _, _, s in seen.values()))
        time.sleep(SETTLE)  # every environment has it now
        return version

    def restore(self) -> None:
        """Back to the routing the module found: no canary or shadow, the original production version,
        served by every environment (waited for only when something changed)."""
        routing = self.registry.routing(MODEL, consistent=True)
        changed = False
        for version in (routing.canary, routing.shadow):
            if version is not None:
                self.registry.promote(MODEL, version, "archived", reason="test cleanup")
                changed = True
        if routing.production != self.production:
            self.registry.promote(MODEL, self.production, reason="test cleanup")
            changed = True
        if changed:
            time.sleep(SETTLE)


@pytest.fixture(scope="module")
def stack_rollout(app_stack: dict[str, Any], localcloud: LocalCloud) -> Iterator[Rollout]:
    """The clients and texts every test uses (built once: the texts come from the 20NG download)."""
    registry = Registry(
        bucket=app_stack["bucket"],
        table=app_stack["tables"]["registry"],
        s3_client=localcloud.client("s3"),
        dynamodb_client=localcloud.client("dynamodb"),
    )
    production = registry.resolve(MODEL).version
    labels = labelled_texts(1000)
    state = Rollout(
        client=Client(app_stack, timeout=120),
        registry=registry,
        store=RolloutStore(app_stack["tables"]["rollout"], localcloud.client("dynamodb")),
        lam=localcloud.client("lambda"),
        gate_function=app_stack["functions"]["gate"],
        texts=list(labels),
        production=production,
        labels=labels,
    )
    try:
        yield state
    finally:  # whatever happened: no candidate left, the original production back, served again
        state.restore()


@pytest.fixture
def rollout(stack_rollout: Rollout) -> Rollout:
    """Each test starts from the original routing, whichever test ran before it (or failed half-way)."""
    stack_rollout.restore()
    return stack_rollout


def test_shadow_leaves_answers_unchanged_and_records_its_agreement(rollout: Rollout) -> None:
    texts = rollout.texts[:200]
    before = rollout.answers(texts)
    assert {(v, s) for _, v, s in before.values()} == {(str(rollout.production), "production")}
    shadow = rollout.register({"C": 0.3})
    rollout.registry.promote(MODEL, shadow, "shadow", reason="e2e: C=0.3 on the side")
    epoch = rollout.registry.routing(MODEL, consistent=True).shadow_rev
    time.sleep(SETTLE)

    deadline = time.monotonic() + 60
    tally = rollout.store.get(MODEL, "shadow", shadow, epoch)
    while tally.compared == 0 and time.monotonic() < deadline:  # "the TTL plus a few requests"
        assert rollout.answers(texts[:64]) == {t: before[t] for t in texts[:64]}
        tally = rollout.store.get(MODEL, "shadow", shadow, epoch)
    assert tally.compared > 0, "no shadow record within a minute"
    after = rollout.answers(texts)
    assert after == before, "a shadow must never change an answer"
    tally = rollout.store.get(MODEL, "shadow", shadow, epoch)
    summary = tally.summary()
    assert tally.compared >= len(texts) and tally.answered == 0
    assert 0.7 < summary["agreement"] <= 1.0, summary
    assert summary["candidate_head_ms_per_text"] is not None

    status, view = rollout.client.call("GET", "/v1/models")
    assert status == 200
    assert view["models"][MODEL]["rollout"]["routing"]["shadow"] == {"version": shadow}
    rollout.registry.rollback(MODEL, reason="e2e: shadow seen")  # no canary: the shadow goes
    assert rollout.registry.routing(MODEL, consistent=True).shadow is None


def test_canary_answers_a_sticky_share(rollout: Rollout) -> None:
    good = rollout.canary({"C": 3.0}, weight=0.2, reason="e2e: C=3 canary")
    first = rollout.answers(rollout.texts)
    canary = [t for t, (_, v, s) in first.items() if s == "canary"]
    served = Counter((v, s) for _, v, s in first.values())
    assert set(served) == {(str(good), "canary"), (str(rollout.production), "production")}, served
    share = len(canary) / len(first)
    assert 0.15 <= share <= 0.25, f"canary answered {share:.1%} of {len(first)} distinct texts (weight 20%)"

    shuffled = rollout.texts[:]
    random.Random(7).shuffle(shuffled)  # other requests, other neighbours: the same version per text
    again = rollout.answers(shuffled)
    assert {t: a[1:] for t, a in again.items()} == {t: a[1:] for t, a in first.items()}

    # the batcher routes the same way (and its answers name version and stage too). One small batch first:
    # an idle batcher reads the new routing at its next batch, like any environment after a rollout step
    (primer,) = rollout.client.submit_batches([{"text": "a batch that makes the batcher read the routing"}])
    rollout.client.wait_results(primer["batch_id"], expect=1, timeout=120)
    queued = rollout.texts[:100]
    (submitted,) = rollout.client.submit_batches([{"id": f"t{i}", "text": t} for i, t in enumerate(queued)])
    view = rollout.client.wait_results(submitted["batch_id"], expect=len(queued), timeout=180)
    by_id = {r["request_id"]: r for r in view["results"]}
    for i, text in enumerate(queued):
        answer = by_id[f"t{i}"]["models"][MODEL]
        assert (answer["model_version"], answer["stage"]) == first[text][1:]

    status, models = rollout.client.call("GET", "/v1/models")
    assert status == 200
    state = models["models"][MODEL]["rollout"]
    assert state["routing"]["canary"] == {"version": good, "weight": 0.2}
    (gate,) = state["gate"]
    assert gate["stage"] == "canary" and gate["tally"]["answered"] >= len(canary)
    assert {v["version"]: v["stage"] for v in models["models"][MODEL]["versions"]}[good] == "canary"


def test_the_gate_promotes_a_good_canary_which_then_serves_everything(rollout: Rollout) -> None:
    # its own canary (every registration is a new version): at weight 0.5, 500 texts give ~250
    # comparisons (~280 with the probes): no label comes back, so it is promoted on the paired
    # disagreement's upper bound (<= GateMinEffect 0.25 in this stack, tests/e2e/app/conftest.py; ~0.12-0.18
    # for a C=3 canary that disagrees on 6-10 %) and the error rate's (< 0.05 after ~110 clean attempts)
    good = rollout.canary({"C": 3.0}, weight=0.5, reason="e2e: C=3 canary for the gate")
    rollout.answers(rollout.texts[200:700])
    (verdict,) = rollout.gate()
    assert (verdict["action"], verdict["applied"], verdict["to"]) == ("promote", True, "production"), verdict
    assert rollout.registry.resolve(MODEL).version == good
    last = rollout.registry.transitions(MODEL)[-1]
    assert (last.version, last.to_stage, last.actor) == (good, "production", "gate")
    assert "disagreement" in last.reason and '"test":"disagreement"' in last.reason, last.reason
    assert verdict["test"]["decision"] == "promote"  # the test's record: estimate, bounds, sample size

    texts = rollout.texts[:128]
    seen = rollout.wait_for(
        texts, lambda s: {(v, st) for _, v, st in s.values()} == {(str(good), "production")}, SETTLE + 30
    )
    assert {(v, st) for _, v, st in seen.values()} == {(str(good), "production")}


def test_the_gate_rolls_back_a_broken_canary_and_production_is_unaffected(rollout: Rollout) -> None:
    production = rollout.registry.resolve(MODEL).version
    broken = rollout.canary({"C": 3.0}, weight=0.5, reason="e2e: permuted labels", permute_seed=11)
    # without labels nothing proves it worse (disagreement alone never rolls back): it waits
    assert rollout.gate()[0]["action"] == "wait"
    served = rollout.texts[200:700]
    rollout.answers(served)  # ~250 texts answered by the canary, each compared with production
    status, fed = rollout.client.call(
        "POST", "/v1/feedback", {"items": [{"text": t, "label": rollout.labels[t]} for t in served]}
    )
    assert status == 200 and fed["accepted"] == len(served), fed
    (verdict,) = rollout.gate()
    assert (verdict["action"], verdict["applied"], verdict["to"]) == ("rollback", True, "archived"), verdict
    assert verdict["tally"]["agreement"] < 0.5 and verdict["tally"]["labelled"] >= 150, verdict["tally"]

    routing = rollout.registry.routing(MODEL, consistent=True)
    assert routing.canary is None and routing.production == production
    last = rollout.registry.transitions(MODEL)[-1]
    assert (last.version, last.from_stage, last.to_stage, last.actor) == (
        broken,
        "canary",
        "archived",
        "gate",
    )
    assert "candidate worse" in last.reason and '"test":"paired-accuracy"' in last.reason, last.reason
    texts = rollout.texts[200:328]
    seen = rollout.wait_for(texts, lambda s: all(st == "production" for _, _, st in s.values()), SETTLE + 30)
    assert {(v, st) for _, v, st in seen.values()} == {(str(production), "production")}
