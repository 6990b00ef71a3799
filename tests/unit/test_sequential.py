"""The gate's sequential tests: the bounds hold at every look (coverage over a seeded simulation), shrink
with data, decide the clear cases, agree with the vectorised rule the simulator runs, and refuse bad
arguments up front."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest

from topicserve.rollout.sequential import (
    DISAGREEMENT,
    ERROR_RATE,
    PAIRED_ACCURACY,
    PROMOTE,
    ROLLBACK,
    WAIT,
    GateCounts,
    decide,
    decide_codes,
    disagreement,
    error_rate,
    log_capital,
    paired_accuracy,
)

ALPHA = 0.05


def _paths(rng: np.random.Generator, runs: int, n: int, probs: list[float]) -> np.ndarray:
    """Cumulative counts of (+1, 0, -1) draws: shape (runs, n, 3)."""
    draws = rng.choice(3, size=(runs, n), p=probs)
    onehot = np.stack([draws == k for k in range(3)], axis=-1).astype(np.int64)
    return onehot.cumsum(axis=1)


# -- coverage: the true mean is outside the bound at *some* look in at most alpha of the runs ------------
@pytest.mark.parametrize(
    ("probs", "up"),
    [
        ([0.075, 0.85, 0.075], True),  # equal heads, 15 % discordant: the lower bound's worst case
        ([0.075, 0.85, 0.075], False),  # ... and the upper bound's
        ([0.05, 0.85, 0.10], True),  # candidate 5 points worse
        ([0.30, 0.40, 0.30], False),  # high variance
    ],
)
def test_a_bound_misses_the_true_mean_at_any_look_in_at_most_alpha_of_runs(
    probs: list[float], up: bool
) -> None:
    rng = np.random.default_rng(7)
    mean = probs[0] - probs[2]
    missed, naive = [], []
    for _ in range(6):  # 300 runs of 2,000 texts, 50 at a time (memory)
        counts = _paths(rng, runs=50, n=2000, probs=probs)
        # checked after every single text: the most looks a gate could take
        capital = log_capital(counts, (1.0, 0.0, -1.0), mean, up=up, lo=-1.0, hi=1.0)
        missed.append((capital >= math.log(1 / ALPHA)).any(axis=1))
        # the fixed-n one-sided normal bound of the same level, looked at every text from the 30th
        n = np.arange(1, 2001)
        s = counts[..., 0] - counts[..., 2]
        sd = math.sqrt(probs[0] + probs[2] - mean**2)
        z = (s - n * mean) / (sd * np.sqrt(n))
        naive.append(((z > 1.645) if up else (z < -1.645))[:, 29:].any(axis=1))
    rate, naive_rate = np.concatenate(missed).mean(), np.concatenate(naive).mean()
    # the true miss rate is <= alpha (~0.04 for the 5-points-worse lower bound over 2,000 runs); 300 runs
    # estimate it within ~2 standard errors
    assert rate <= ALPHA + 2 * math.sqrt(ALPHA * (1 - ALPHA) / 300), rate
    # the simulation can see a bound that is not time-uniform: the fixed-n one misses several times alpha
    assert naive_rate > 3 * ALPHA, naive_rate


@pytest.mark.parametrize(("rate", "up"), [(0.01, True), (0.01, False), (0.2, True), (0.2, False)])
def test_a_rate_bound_misses_the_true_rate_at_any_look_in_at_most_alpha_of_runs(
    rate: float, up: bool
) -> None:
    """The disagreement and error-rate bounds: 0/1 observations, looked at after every one."""
    rng = np.random.default_rng(5)
    missed = []
    for _ in range(6):  # 300 runs of 2,000 observations, 50 at a time (memory)
        k = (rng.random((50, 2000)) < rate).cumsum(axis=1)
        counts = np.stack([k, np.arange(1, 2001) - k], axis=-1)
        capital = log_capital(counts, (1.0, 0.0), rate, up=up, lo=0.0, hi=1.0)
        missed.append((capital >= math.log(1 / ALPHA)).any(axis=1))
    miss = np.concatenate(missed).mean()
    assert miss <= ALPHA + 2 * math.sqrt(ALPHA * (1 - ALPHA) / 300), miss


def test_scalar_bounds_contain_the_truth_and_match_the_rejections() -> None:
    rng = np.random.default_rng(11)
    counts = _paths(rng, runs=1, n=4000, probs=[0.06, 0.85, 0.09])[0]
    for n in (50, 400, 1500, 4000):
        b, _, c = (int(v) for v in counts[n - 1])
        r = paired_accuracy(n, b, c, alpha=ALPHA, min_effect=0.01)
        assert -1 <= r.lower <= r.estimate <= r.upper <= 1  # type: ignore[operator]
        assert r.lower <= -0.03 <= r.upper  # the true difference
        # the decision is the bound compared with its threshold
        assert (r.decision == ROLLBACK) == (r.upper < 0)
        if r.decision == PROMOTE:
            assert r.lower > -0.01 - 1e-9


def test_intervals_shrink_as_the_same_proportions_grow() -> None:
    widths = []
    for n in (100, 300, 1000, 3000, 10_000, 30_000):
        r = paired_accuracy(n, int(0.09 * n), int(0.06 * n), alpha=ALPHA, min_effect=0.01)
        widths.append(r.upper - r.lower)
        assert r.lower <= 0.03 <= r.upper
    assert widths == sorted(widths, reverse=True)
    assert widths[-1] < 0.02  # ~sqrt(log n / n): tight at 30k labelled texts
    d = [disagreement(n, n // 10, alpha=ALPHA, min_effect=0.01) for n in (100, 1000, 10_000)]
    assert d[0].upper - d[0].lower > d[1].upper - d[1].lower > d[2].upper - d[2].lower


def test_the_accuracy_bound_adapts_to_discordance() -> None:
    """Heads that agree on most texts are judged on their discordant ones, not the worst-case variance."""
    n = 3000
    agreeing = paired_accuracy(n, int(0.06 * n), int(0.09 * n), alpha=ALPHA, min_effect=0.01)
    noisy = paired_accuracy(n, int(0.385 * n), int(0.415 * n), alpha=ALPHA, min_effect=0.01)
    assert agreeing.estimate == pytest.approx(noisy.estimate)
    assert agreeing.upper - agreeing.lower < 0.6 * (noisy.upper - noisy.lower)


def test_empty_sums_wait_with_the_whole_range() -> None:
    r = paired_accuracy(0, 0, 0, alpha=ALPHA, min_effect=0.01)
    assert (r.decision, r.estimate, r.lower, r.upper) == (WAIT, None, -1.0, 1.0)
    d = disagreement(0, 0, alpha=ALPHA, min_effect=0.01)
    assert (d.decision, d.lower, d.upper) == (WAIT, 0.0, 1.0)
    v = decide(GateCounts(), alpha=ALPHA, min_effect=0.01, max_error_rate=0.01)
    assert v.decision == WAIT


# -- decisions on clear cases ----------------------------------------------------------------------------
def test_a_candidate_three_points_worse_is_rolled_back_within_a_few_thousand_labelled_texts() -> None:
    r = paired_accuracy(3000, 180, 270, alpha=ALPHA, min_effect=0.01)
    assert r.decision == ROLLBACK and r.upper < 0
    assert "below 0" in r.reason and "3000 labelled texts" in r.reason


def test_a_better_candidate_is_promoted_and_an_equal_one_waits_until_the_loss_is_ruled_out() -> None:
    better = paired_accuracy(2000, 180, 120, alpha=ALPHA, min_effect=0.01)
    assert better.decision == PROMOTE and better.lower > -0.01
    early = paired_accuracy(2000, 150, 150, alpha=ALPHA, min_effect=0.01)
    assert early.decision == WAIT
    late = paired_accuracy(40_000, 3000, 3000, alpha=ALPHA, min_effect=0.01)
    assert late.decision == PROMOTE and late.lower > -0.01 and late.upper > 0


def test_a_small_loss_known_for_sure_is_rolled_back_not_shipped() -> None:
    """Surely worse, but by less than min_effect: both bounds fire; rollback wins."""
    r = paired_accuracy(400_000, 28_000, 30_000, alpha=ALPHA, min_effect=0.01)
    assert r.upper < 0 and r.lower > -0.01
    assert r.decision == ROLLBACK


def test_disagreement_promotes_a_near_identical_candidate_and_never_rolls_back() -> None:
    same = disagreement(3000, 5, alpha=ALPHA, min_effect=0.01)
    assert same.decision == PROMOTE and same.upper <= 0.01
    different = disagreement(3000, 900, alpha=ALPHA, min_effect=0.01)
    assert different.decision == WAIT and different.lower > 0.25


def test_error_rate_rolls_back_a_failing_candidate_at_once_and_passes_a_clean_one() -> None:
    # a first attempt that fails is a 1 % event for an acceptable candidate: rejected at alpha/2 = 0.025
    assert error_rate(1, 1, alpha=ALPHA / 2, max_error_rate=0.01).decision == ROLLBACK
    assert error_rate(1, 1, alpha=0.005, max_error_rate=0.01).decision == WAIT
    assert error_rate(100, 1, alpha=ALPHA / 2, max_error_rate=0.01).decision == WAIT
    clean = error_rate(1000, 0, alpha=ALPHA / 2, max_error_rate=0.01)
    assert clean.decision == PROMOTE and clean.upper < 0.01


def test_decide_shares_alpha_and_combines_the_tests() -> None:
    base: dict[str, int] = dict(compared=5000, disagreed=900, attempts=5000, errors=2, labelled=4000)
    worse = decide(
        GateCounts(**base, candidate_only_correct=240, production_only_correct=360),
        alpha=ALPHA,
        min_effect=0.01,
        max_error_rate=0.01,
    )
    assert worse.decision == ROLLBACK
    assert [t.test for t in worse.tests] == [PAIRED_ACCURACY, DISAGREEMENT, ERROR_RATE]
    assert all(t.alpha == ALPHA / 2 for t in worse.tests)
    better = decide(
        GateCounts(**base, candidate_only_correct=360, production_only_correct=240),
        alpha=ALPHA,
        min_effect=0.01,
        max_error_rate=0.01,
    )
    assert better.decision == PROMOTE and "error rate" in better.reason
    failing = decide(
        GateCounts(**{**base, "errors": 200}, candidate_only_correct=360, production_only_correct=240),
        alpha=ALPHA,
        min_effect=0.01,
        max_error_rate=0.01,
    )
    assert failing.decision == ROLLBACK and failing.reason.startswith("error rate")
    unproven = decide(
        GateCounts(compared=300, disagreed=0, attempts=300, errors=0, labelled=0),
        alpha=ALPHA,
        min_effect=0.01,
        max_error_rate=0.01,
    )
    assert unproven.decision == WAIT  # quality shown by disagreement, error rate not yet
    near_identical = decide(
        GateCounts(compared=3000, disagreed=3, attempts=3000, errors=0, labelled=0),
        alpha=ALPHA,
        min_effect=0.01,
        max_error_rate=0.01,
    )
    assert near_identical.decision == PROMOTE and "disagreement" in near_identical.reason


def test_the_vectorised_rule_is_the_scalar_rule() -> None:
    rng = np.random.default_rng(3)
    rows = []
    for _ in range(150):
        compared = int(rng.integers(0, 20_000))
        attempts = compared + int(rng.integers(0, 60))
        labelled = int(rng.integers(0, compared + 1))
        cand = int(rng.binomial(labelled, rng.uniform(0, 0.12)))
        prod = int(rng.binomial(labelled - cand, rng.uniform(0, 0.12)))
        rows.append(
            GateCounts(
                compared=compared,
                disagreed=int(rng.binomial(compared, rng.choice([0.001, 0.2]))),
                attempts=attempts,
                errors=attempts - compared,
                labelled=labelled,
                candidate_only_correct=cand,
                production_only_correct=prod,
            )
        )
    arrays: dict[str, Any] = {
        f: np.array([getattr(r, f) for r in rows]) for f in GateCounts.__dataclass_fields__
    }
    codes = decide_codes(**arrays, alpha=ALPHA, min_effect=0.01, max_error_rate=0.01)
    scalar = [decide(r, alpha=ALPHA, min_effect=0.01, max_error_rate=0.01).decision for r in rows]
    assert [{0: WAIT, 1: PROMOTE, 2: ROLLBACK}[int(c)] for c in codes] == scalar
    assert len(set(scalar)) == 3  # the sample exercised every outcome


def test_the_record_is_json_for_the_history_entry() -> None:
    v = decide(
        GateCounts(compared=10, disagreed=1, attempts=10, errors=0, labelled=5, candidate_only_correct=1),
        alpha=ALPHA,
        min_effect=0.01,
        max_error_rate=0.01,
    )
    doc = json.loads(json.dumps(v.to_dict()))
    assert doc["decision"] == WAIT and doc["alpha"] == ALPHA
    acc = doc["tests"][0]
    assert set(acc) >= {
        "test",
        "estimate",
        "lower",
        "upper",
        "n",
        "alpha",
        "min_effect",
        "decision",
        "reason",
    }
    assert acc["counts"] == {"labelled": 5, "candidate_only_correct": 1, "production_only_correct": 0}


# -- argument checks ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("alpha", [0, 1, -0.1, 1.5, float("nan"), "0.05", True, None])
def test_alpha_must_be_a_number_in_the_open_unit_interval(alpha: Any) -> None:
    with pytest.raises(ValueError, match="alpha must be a number in"):
        paired_accuracy(10, 1, 1, alpha=alpha, min_effect=0.01)
    with pytest.raises(ValueError, match="alpha must be a number in"):
        decide(GateCounts(), alpha=alpha, min_effect=0.01, max_error_rate=0.01)


@pytest.mark.parametrize("min_effect", [0, -0.01, 1, float("inf")])
def test_min_effect_must_be_positive_and_below_one(min_effect: float) -> None:
    with pytest.raises(ValueError, match="min_effect must be"):
        paired_accuracy(10, 1, 1, alpha=ALPHA, min_effect=min_effect)
    with pytest.raises(ValueError, match="min_effect must be"):
        disagreement(10, 1, alpha=ALPHA, min_effect=min_effect)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: paired_accuracy(-1, 0, 0, alpha=ALPHA, min_effect=0.01), "labelled must be a non-negative"),
        (lambda: paired_accuracy(10, 6, 5, alpha=ALPHA, min_effect=0.01), r"cannot exceed labelled \(10\)"),
        (lambda: paired_accuracy(10, 1.5, 0, alpha=ALPHA, min_effect=0.01), "candidate_only_correct must"),
        (lambda: disagreement(10, 11, alpha=ALPHA, min_effect=0.01), r"disagreed \(11\) cannot exceed"),
        (lambda: error_rate(5, 6, alpha=ALPHA, max_error_rate=0.01), r"errors \(6\) cannot exceed"),
        (lambda: error_rate(5, 1, alpha=ALPHA, max_error_rate=0), "max_error_rate must be"),
        (lambda: GateCounts(labelled=6, candidate_only_correct=7), r"cannot exceed labelled \(6\)"),
        (lambda: GateCounts(attempts=-2), "attempts must be a non-negative integer"),
        (lambda: GateCounts(compared=2, disagreed=True), "disagreed must be a non-negative integer"),
    ],
)
def test_inconsistent_counts_are_refused_with_the_values(call: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


def test_feedback_flushed_before_the_served_texts_is_not_an_error() -> None:
    """``labelled`` and ``compared`` come from different writers; a read between their flushes is valid."""
    v = decide(
        GateCounts(compared=0, labelled=10, candidate_only_correct=2),
        alpha=ALPHA,
        min_effect=0.01,
        max_error_rate=0.01,
    )
    assert v.decision == WAIT


def test_log_capital_refuses_a_mean_on_the_edge() -> None:
    with pytest.raises(ValueError, match="strictly inside"):
        log_capital(np.array([1, 1]), (1.0, 0.0), 0.0, up=True, lo=0.0, hi=1.0)
