"""The rollout gates: always-valid sequential tests over a candidate's tally -> promote, roll back, or wait.

A shadow that passes becomes a canary (at ``canary_weight``); a canary that passes becomes production;
either one that fails is rolled back (archived), production untouched. The decision is
:func:`topicserve.rollout.sequential.decide` on the tally's sums (docs/ROLLOUT.md): paired accuracy where
labels came back (label feedback), the paired disagreement where they did not, the error rate always, each
with a false-decision rate of ``alpha`` however often the gate looks, and no minimum count. Two floors stay
before acting on failures, because a failed load fails every text of a request at once (failures are not
independent per text, which the error-rate bound assumes): a candidate that failed ``max_errors_unserved``
times without scoring a single text is rolled back (a broken artifact should not wait for traffic it will
never serve), and an error-rate rollback needs at least ``max_errors_unserved`` failures.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from topicserve.rollout import sequential as sq
from topicserve.rollout.tally import Tally
from topicserve.settings import FromEnv, setting

PROMOTE = "promote"
ROLLBACK = "rollback"
WAIT = "wait"


@dataclass(frozen=True)
class Thresholds(FromEnv):
    """The gate's thresholds: the gate function acts on them, GET /v1/models previews them (template.yaml:
    GateAlpha, GateMinEffect, GateMaxErrorRate, GateCanaryWeight)."""

    alpha: float = setting(0.05, env="GATE_ALPHA", why="the false-decision rate of each kind of decision")
    min_effect: float = setting(
        0.02, env="GATE_MIN_EFFECT", why="the smallest accuracy loss worth detecting, as a fraction"
    )
    max_error_rate: float = setting(
        0.01, env="GATE_MAX_ERROR_RATE", why="the error rate above which a candidate is rolled back"
    )
    max_errors_unserved: int = setting(
        5,
        env="GATE_MAX_ERRORS_UNSERVED",
        why="failures without a scored text that roll back; also the least an error-rate rollback acts on",
    )
    canary_weight: float = setting(
        0.1, env="GATE_CANARY_WEIGHT", why="the weight a shadow that passes starts its canary with"
    )


@dataclass(frozen=True)
class Decision:
    action: str  # promote | rollback | wait
    to_stage: str | None  # where the candidate goes: canary, production, archived (None: stays)
    reason: str
    # the sequential tests behind it (sequential.GateVerdict.to_dict()): test, estimate, bounds, sample size
    record: dict[str, Any] | None = None

    def history_reason(self) -> str:
        """The reason the registry history keeps: the decision's reason and, compactly, the test that
        decided (its estimate, bounds and sample size) with the alpha it was run at."""
        if not self.record:
            return f"gate {self.action}: {self.reason}"
        deciding = [t for t in self.record["tests"] if t["decision"] == self.action] or self.record["tests"]
        brief = [
            {k: t[k] for k in ("test", "estimate", "lower", "upper", "n", "alpha", "threshold")}
            for t in deciding
        ]
        return f"gate {self.action}: {self.reason} | {json.dumps(brief, separators=(',', ':'))}"


def counts(tally: Tally) -> sq.GateCounts:
    """The sums the sequential tests read, from a candidate's tally (summed over environments)."""
    return sq.GateCounts(
        compared=tally.compared,
        disagreed=max(0, tally.compared - tally.agreed),
        attempts=tally.compared + tally.errors,
        errors=tally.errors,
        labelled=tally.labelled,
        candidate_only_correct=tally.candidate_only_correct,
        production_only_correct=tally.production_only_correct,
    )


def evaluate(stage: str, tally: Tally, t: Thresholds) -> Decision:
    n, errors = tally.compared, tally.errors
    if n == 0 and errors >= t.max_errors_unserved:
        return Decision(ROLLBACK, "archived", f"failed {errors} times without scoring a text")
    verdict = sq.decide(
        counts(tally), alpha=t.alpha, min_effect=t.min_effect, max_error_rate=t.max_error_rate
    )
    record = verdict.to_dict()
    error_test = next(x for x in verdict.tests if x.test == sq.ERROR_RATE)
    if verdict.decision == ROLLBACK and error_test.decision == ROLLBACK and errors < t.max_errors_unserved:
        accuracy = next(x for x in verdict.tests if x.test == sq.PAIRED_ACCURACY)
        if accuracy.decision != ROLLBACK:  # too few failures to act on: they may be one failed request
            reason = f"{verdict.reason}, but only {errors} failures (< {t.max_errors_unserved})"
            return Decision(WAIT, None, reason, record)
    if verdict.decision == ROLLBACK:
        return Decision(ROLLBACK, "archived", verdict.reason, record)
    if verdict.decision == PROMOTE:
        return Decision(PROMOTE, "production" if stage == "canary" else "canary", verdict.reason, record)
    return Decision(WAIT, None, verdict.reason, record)
