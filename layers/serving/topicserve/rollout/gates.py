"""The rollout gates: thresholds over a candidate's tally -> promote, roll back, or wait. Pure.

A shadow that passes becomes a canary (at ``canary_weight``); a canary that passes becomes production;
either one that fails is rolled back (archived), production untouched. Nothing is decided before
``min_requests`` texts were compared, except a candidate that cannot run at all (it failed
``max_errors_unserved`` times without scoring a single text: a broken artifact should not wait for
traffic it will never serve).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from topicserve.rollout.tally import Tally
from topicserve.settings import number_setting

PROMOTE = "promote"
ROLLBACK = "rollback"
WAIT = "wait"


@dataclass(frozen=True)
class Thresholds:
    min_requests: int = 200
    min_agreement: float = 0.85  # share of compared texts with production's label
    min_confidence_ratio: float = 0.5  # candidate mean top probability / production's on the same texts
    max_error_rate: float = 0.01
    max_errors_unserved: int = 5
    canary_weight: float = 0.1  # the weight a shadow that passes starts its canary with

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Thresholds:
        env = os.environ if env is None else env
        d = cls()
        return cls(
            min_requests=number_setting(env, "GATE_MIN_REQUESTS", d.min_requests, int),
            min_agreement=number_setting(env, "GATE_MIN_AGREEMENT", d.min_agreement, float),
            min_confidence_ratio=number_setting(
                env, "GATE_MIN_CONFIDENCE_RATIO", d.min_confidence_ratio, float
            ),
            max_error_rate=number_setting(env, "GATE_MAX_ERROR_RATE", d.max_error_rate, float),
            max_errors_unserved=number_setting(env, "GATE_MAX_ERRORS_UNSERVED", d.max_errors_unserved, int),
            canary_weight=number_setting(env, "GATE_CANARY_WEIGHT", d.canary_weight, float),
        )


@dataclass(frozen=True)
class Decision:
    action: str  # promote | rollback | wait
    to_stage: str | None  # where the candidate goes: canary, production, archived (None: stays)
    reason: str


def evaluate(stage: str, tally: Tally, t: Thresholds) -> Decision:
    n, errors = tally.compared, tally.errors
    if n == 0 and errors >= t.max_errors_unserved:
        return Decision(ROLLBACK, "archived", f"failed {errors} times without scoring a text")
    if n + errors < t.min_requests:
        return Decision(WAIT, None, f"{n + errors} of {t.min_requests} requests seen")
    error_rate = errors / (n + errors)
    if error_rate > t.max_error_rate:
        return Decision(
            ROLLBACK, "archived", f"error rate {error_rate:.3f} > {t.max_error_rate} over {n + errors}"
        )
    agreement = tally.agreed / n
    if agreement < t.min_agreement:
        return Decision(
            ROLLBACK,
            "archived",
            f"agreement with production {agreement:.3f} < {t.min_agreement} over {n} texts",
        )
    prod = tally.production_confidence / n
    ratio = (tally.candidate_confidence / n) / prod if prod > 0 else 1.0
    if ratio < t.min_confidence_ratio:
        return Decision(
            ROLLBACK,
            "archived",
            f"mean confidence {tally.candidate_confidence / n:.3f} is {ratio:.2f}x production's {prod:.3f} "
            f"(< {t.min_confidence_ratio}x) over {n} texts",
        )
    passed = (
        f"agreement {agreement:.3f} >= {t.min_agreement}, confidence ratio {ratio:.2f}, "
        f"error rate {error_rate:.3f}, over {n} texts"
    )
    return Decision(PROMOTE, "production" if stage == "canary" else "canary", passed)
