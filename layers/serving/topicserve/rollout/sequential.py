"""Always-valid sequential tests for the rollout gates, computed from sums. Pure (numpy only).

The gate reads a candidate's tally every minute, and that tally is a *sum*: every environment adds its
counts with DynamoDB ``ADD``. A fixed-sample test looked at every minute rejects far more often than its
nominal level; these tests do not. Each one is a *confidence sequence* (CS): a sequence of intervals that
holds the true value at **every** sample size at once with probability >= 1 - alpha, so the gate may look
as often as it likes, stop at any look, and decide with the error rate it was given (Howard, Ramdas,
McAuliffe & Sekhon 2021, "Time-uniform, nonparametric, nonasymptotic confidence sequences", Ann. Statist.
49(2): the CS <-> nonnegative supermartingale correspondence and Ville's inequality).

How a bound is made (Waudby-Smith & Ramdas 2024, "Estimating means of bounded random variables by
betting", JRSS-B 86(1), the capital process and its mixtures). For observations ``x_i`` in ``[lo, hi]``
and a candidate mean ``m``, a gambler who bets the fraction ``theta`` in [0, 1) of her capital that the
mean is above ``m`` multiplies it by ``1 + theta * (x_i - m) / (m - lo)`` per observation (never
negative). If the true mean is <= ``m`` the capital is a nonnegative supermartingale starting at 1, and so
is any *average* of such capitals over a fixed grid of fractions ``theta_j`` (a mixture). Ville's
inequality: the probability that such a process *ever* reaches ``1/alpha`` is <= alpha. So the set of
``m`` where the mixture capital stays below ``1/alpha`` is a lower confidence sequence, valid at every
look. The mirror-image bet (``1 + theta * (m - x_i) / (hi - m)``) gives the upper one.

Why from sums: with a *constant* fraction per grid point the capital after ``n`` observations is a
product over them, so it depends only on how many observations took each value, not on their order. The
tests here see observations with a few values (a paired difference in {-1, 0, 1}, a 0/1 disagreement or
failure), so the counters that a tally already sums are sufficient, and summing them across environments
and flushes only means the gate sees the process at some of its times, which Ville's inequality already
covers (it bounds the whole path). The grid is uniform on (0, 1) (64 midpoints): it costs about
``log(sqrt(n * variance))`` of capital against the best single fraction, like a normal mixture, and it
adapts to the variance, so a pair of heads that agree on 85 % of texts is judged on its 15 % discordant
texts, not on the worst-case variance of a difference in [-1, 1].

Assumption (stated, not tested): the texts whose labels arrive are not chosen by whether the heads were
right on them (labels missing or delayed independently of correctness), so each labelled text's
difference has the population's mean given the past.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

PROMOTE = "promote"
ROLLBACK = "rollback"
WAIT = "wait"

PAIRED_ACCURACY = "paired-accuracy"
DISAGREEMENT = "disagreement"
ERROR_RATE = "error-rate"

#: bet fractions of the mixture: midpoints of a uniform grid on (0, 1) (strictly below 1: no bet is ruinous)
GRID = 64
_THETAS = (np.arange(GRID) + 0.5) / GRID
_LOG_GRID = math.log(GRID)
_BISECTIONS = 48  # bound resolution ~ 2**-47 of the range: far below anything a tally can resolve

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class TestResult:
    """One sequential test at one look: what the gate stores in its history entry."""

    __test__ = False  # not a pytest class

    test: str  # paired-accuracy | disagreement | error-rate
    estimate: float | None  # the plain ratio of the sums (None before the first observation)
    lower: float  # the confidence sequence at this look (each bound one-sided at ``alpha``)
    upper: float
    n: int  # observations the test is over (labelled texts, compared texts, attempts)
    alpha: float  # the one-sided error rate of each bound this test used
    threshold: float  # what the bound is compared with (-min_effect, min_effect or max_error_rate)
    decision: str  # promote | rollback | wait
    reason: str
    min_effect: float | None = None  # the smallest accuracy loss worth detecting (accuracy tests)
    counts: dict[str, int] = field(default_factory=dict)  # the sums it was computed from

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class GateCounts:
    """The sums one candidate's gate reads (a tally summed over environments).

    ``compared``: texts scored by both candidate and production; ``disagreed``: of those, a different label;
    ``attempts`` / ``errors``: texts the candidate was asked for and failed on; ``labelled``: compared texts
    whose true label came back; ``candidate_only_correct`` / ``production_only_correct``: of those, the
    texts only one of the two got right (the discordant pairs; the rest are both right or both wrong).

    Each test's counts must agree with each other (they come from the same ``ADD``), but ``labelled`` is
    not checked against ``compared``: feedback is added by another writer, possibly before the serving
    environment flushed its ``compared``, and the tests never combine the two.
    """

    compared: int = 0
    disagreed: int = 0
    attempts: int = 0
    errors: int = 0
    labelled: int = 0
    candidate_only_correct: int = 0
    production_only_correct: int = 0

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            _count(name, value)
        _at_most("disagreed", self.disagreed, "compared", self.compared)
        _at_most("errors", self.errors, "attempts", self.attempts)
        _discordant(self.labelled, self.candidate_only_correct, self.production_only_correct)


@dataclass(frozen=True)
class GateVerdict:
    """What :func:`decide` concluded, with every test it ran (for the history entry)."""

    decision: str  # promote | rollback | wait
    reason: str
    tests: tuple[TestResult, ...]
    alpha: float  # the gate's overall false-decision rate (each test got a share, see decide)

    def to_dict(self) -> dict[str, Any]:
        return {
            "decision": self.decision,
            "reason": self.reason,
            "alpha": self.alpha,
            "tests": [t.to_dict() for t in self.tests],
        }


# -- argument checks (up front, with the value in the message) -------------------------------------------
def check_alpha(alpha: float) -> float:
    if not isinstance(alpha, int | float) or isinstance(alpha, bool) or not 0 < alpha < 1:
        raise ValueError(f"alpha must be a number in (0, 1), got {alpha!r}")
    return float(alpha)


def check_rate(name: str, value: float) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool) or not 0 < value < 1:
        raise ValueError(f"{name} must be a number in (0, 1), got {value!r}")
    return float(value)


def _count(name: str, value: int) -> int:
    if not isinstance(value, int | np.integer) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    return int(value)


def _at_most(name: str, value: int, total_name: str, total: int) -> None:
    if value > total:
        raise ValueError(f"{name} ({value}) cannot exceed {total_name} ({total})")


def _discordant(n: int, cand_only: int, prod_only: int) -> None:
    _count("labelled", n)
    _count("candidate_only_correct", cand_only)
    _count("production_only_correct", prod_only)
    if cand_only + prod_only > n:
        raise ValueError(
            f"candidate_only_correct + production_only_correct ({cand_only} + {prod_only}) "
            f"cannot exceed labelled ({n})"
        )


# -- the mixture capital (vectorised: the simulator runs the gate's own arithmetic) ----------------------
def log_capital(
    counts: npt.ArrayLike, values: tuple[float, ...], m: float, *, up: bool, lo: float, hi: float
) -> FloatArray:
    """log of the mixture capital against "mean <= m" (``up``) or "mean >= m" (not ``up``).

    ``counts[..., k]`` is how many observations took ``values[k]`` (all in ``[lo, hi]``); ``m`` must lie
    strictly inside ``(lo, hi)``. Returns an array of ``counts``' leading shape. The capital is a
    nonnegative supermartingale under its null, so ``log_capital >= log(1/alpha)`` at any look rejects
    the null with probability <= alpha over all looks together.
    """
    if not lo < m < hi:
        raise ValueError(f"m must lie strictly inside ({lo}, {hi}), got {m!r}")
    x = np.asarray(values, dtype=np.float64)
    scale = (x - m) / (m - lo) if up else (m - x) / (hi - m)  # >= -1 for every value
    log_factor = np.log1p(np.multiply.outer(scale, _THETAS))  # (k, GRID)
    c = np.asarray(counts, dtype=np.float64)
    per_theta = c @ log_factor  # (..., GRID)
    top = per_theta.max(axis=-1)
    out: FloatArray = top + np.log(np.exp(per_theta - top[..., None]).sum(axis=-1)) - _LOG_GRID
    return out


def _rejects(
    counts: npt.ArrayLike,
    values: tuple[float, ...],
    m: float,
    *,
    up: bool,
    lo: float,
    hi: float,
    alpha: float,
) -> npt.NDArray[np.bool_]:
    return np.asarray(log_capital(counts, values, m, up=up, lo=lo, hi=hi) >= math.log(1 / alpha))


def _bound(
    counts: npt.ArrayLike, values: tuple[float, ...], alpha: float, *, lower: bool, lo: float, hi: float
) -> float:
    """The one-sided bound of the CS at this look, by bisection (the rejected set is an end interval).

    The up capital falls as ``m`` rises (each factor ``1 + theta * ((x - lo) / (m - lo) - 1)`` does), so
    the rejected ``m`` of the lower bound are ``[lo, L)``; the down capital mirrors it. The returned bound
    is the last rejected point's side, i.e. never tighter than the exact one by more than 2**-47.
    """
    # invariant (lower): a rejected or a == lo; b not rejected or b == hi. The upper bound mirrors it (b
    # rejected or b == hi; a not rejected or a == lo): a step moves a when "rejected" equals "lower".
    a, b = lo, hi
    for _ in range(_BISECTIONS):
        mid = (a + b) / 2
        if bool(_rejects(counts, values, mid, up=lower, lo=lo, hi=hi, alpha=alpha)) == lower:
            a = mid
        else:
            b = mid
    return a if lower else b


def _interval(
    counts: npt.ArrayLike, values: tuple[float, ...], alpha: float, *, lo: float, hi: float
) -> tuple[float, float]:
    """(lower, upper): both one-sided bounds of the CS at this look, each at ``alpha``."""
    return (
        _bound(counts, values, alpha, lower=True, lo=lo, hi=hi),
        _bound(counts, values, alpha, lower=False, lo=lo, hi=hi),
    )


_DIFF = (1.0, 0.0, -1.0)  # candidate only right, both right or both wrong, production only right
_BERNOULLI = (1.0, 0.0)


def _paired(n: IntArray, cand_only: IntArray, prod_only: IntArray) -> IntArray:
    return np.stack([cand_only, n - cand_only - prod_only, prod_only], axis=-1)


def _bernoulli(n: IntArray, k: IntArray) -> IntArray:
    return np.stack([k, n - k], axis=-1)


# -- vectorised decisions (the simulator calls these with arrays; the scalar API below with numbers) -----
def paired_accuracy_rejections(
    n: npt.ArrayLike, cand_only: npt.ArrayLike, prod_only: npt.ArrayLike, *, alpha: float, min_effect: float
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """(worse, not_much_worse): the upper bound of the accuracy difference is < 0; the lower is > -min_effect.

    ``worse`` rejects "candidate - production >= 0" (capital betting on a negative mean, at m = 0);
    ``not_much_worse`` rejects "candidate - production <= -min_effect" (betting up at m = -min_effect).
    """
    counts = _paired(np.asarray(n), np.asarray(cand_only), np.asarray(prod_only))
    worse = _rejects(counts, _DIFF, 0.0, up=False, lo=-1.0, hi=1.0, alpha=alpha)
    fine = _rejects(counts, _DIFF, -min_effect, up=True, lo=-1.0, hi=1.0, alpha=alpha)
    return worse, fine


def rate_below_rejections(
    n: npt.ArrayLike, k: npt.ArrayLike, *, alpha: float, limit: float
) -> npt.NDArray[np.bool_]:
    """Rejects "rate >= limit" (so the rate's upper bound is below ``limit``)."""
    counts = _bernoulli(np.asarray(n), np.asarray(k))
    return _rejects(counts, _BERNOULLI, limit, up=False, lo=0.0, hi=1.0, alpha=alpha)


def rate_above_rejections(
    n: npt.ArrayLike, k: npt.ArrayLike, *, alpha: float, limit: float
) -> npt.NDArray[np.bool_]:
    """Rejects "rate <= limit" (so the rate's lower bound is above ``limit``)."""
    counts = _bernoulli(np.asarray(n), np.asarray(k))
    return _rejects(counts, _BERNOULLI, limit, up=True, lo=0.0, hi=1.0, alpha=alpha)


# -- the tests, one look each ----------------------------------------------------------------------------
def paired_accuracy(
    labelled: int,
    candidate_only_correct: int,
    production_only_correct: int,
    *,
    alpha: float,
    min_effect: float,
) -> TestResult:
    """Candidate against production on the same labelled texts: a CS for acc(candidate) - acc(production).

    Per labelled text ``d = [candidate right] - [production right]`` in {-1, 0, 1}; the sums are the
    discordant counts. Decision rule (``alpha`` for each bound, one-sided):

    - ROLLBACK when the upper bound < 0: the candidate is surely worse. A candidate truly equal or better
      (difference >= 0) is rolled back only if the upper bound missed its true value at some look:
      probability <= alpha (the false-rollback rate).
    - PROMOTE when the lower bound > -min_effect: it is surely not worse by ``min_effect`` or more. A
      candidate truly worse by >= min_effect is promoted only if the lower bound missed: <= alpha (the
      false-promotion rate).
    - a candidate in between (worse by less than ``min_effect``) may get either; both are acceptable. When
      both hold at once (surely worse, but by less than ``min_effect``), ROLLBACK wins: a change known to
      cost accuracy is not shipped.
    - WAIT otherwise. Every candidate is eventually decided: the interval shrinks like sqrt(log n / n).

    The two bounds together are a (1 - 2 alpha) two-sided CS; each decision needs only its own side.
    """
    alpha = check_alpha(alpha)
    min_effect = check_rate("min_effect", min_effect)
    _discordant(labelled, candidate_only_correct, production_only_correct)
    counts = _paired(
        np.asarray(labelled), np.asarray(candidate_only_correct), np.asarray(production_only_correct)
    )
    worse, fine = paired_accuracy_rejections(
        labelled, candidate_only_correct, production_only_correct, alpha=alpha, min_effect=min_effect
    )
    lower, upper = _interval(counts, _DIFF, alpha, lo=-1.0, hi=1.0)
    estimate = (candidate_only_correct - production_only_correct) / labelled if labelled else None
    over = (
        f"over {labelled} labelled texts ({candidate_only_correct} only the candidate got right, "
        f"{production_only_correct} only production)"
    )
    ci = f"[{lower:+.4f}, {upper:+.4f}]"
    if worse:
        decision, reason = ROLLBACK, f"accuracy difference {ci} is below 0: candidate worse, {over}"
    elif fine:
        decision, reason = (
            PROMOTE,
            f"accuracy difference {ci} rules out a loss of {min_effect} or more, {over}",
        )
    else:
        decision, reason = WAIT, f"accuracy difference {ci} straddles 0 and -{min_effect}, {over}"
    return TestResult(
        test=PAIRED_ACCURACY,
        estimate=estimate,
        lower=lower,
        upper=upper,
        n=labelled,
        alpha=alpha,
        threshold=-min_effect,
        decision=decision,
        reason=reason,
        min_effect=min_effect,
        counts={
            "labelled": labelled,
            "candidate_only_correct": candidate_only_correct,
            "production_only_correct": production_only_correct,
        },
    )


def disagreement(compared: int, disagreed: int, *, alpha: float, min_effect: float) -> TestResult:
    """No labels needed: PROMOTE when the paired disagreement rate's upper bound is <= ``min_effect``.

    On a text where both heads give the same label both are right or both wrong, so
    ``|acc(candidate) - acc(production)| <= P(disagree)``. A candidate worse by >= min_effect disagrees
    at a rate >= min_effect, and is promoted only if the upper bound missed that rate: <= alpha. This test
    never rolls back (disagreeing is not being wrong); it lets a near-identical retrain through long before
    labels could.
    """
    over = f"over {compared} compared texts ({disagreed} with a different label)"
    return _rate_test(
        DISAGREEMENT, {"compared": compared, "disagreed": disagreed}, ("min_effect", min_effect), alpha, over
    )


def error_rate(attempts: int, errors: int, *, alpha: float, max_error_rate: float) -> TestResult:
    """The candidate's failure rate against ``max_error_rate``.

    ROLLBACK when the lower bound > max_error_rate (a candidate within the limit is rolled back with
    probability <= alpha); PROMOTE (passes) when the upper bound < max_error_rate (one over the limit
    passes with probability <= alpha); WAIT otherwise. No minimum count: a candidate whose first attempt
    fails is already rolled back at max_error_rate 0.01 and alpha 0.025 (a 1 % event), and a clean one
    passes after ~500 attempts.

    The guarantee assumes failures independent per attempt. They are not always: a failed load fails every
    text of its batch at once, one event counted many times. The caller should keep a floor on the
    failures it acts on (today's ``max_errors_unserved``) or count failed batches, not texts.
    """
    over = f"{errors} failures in {attempts} attempts"
    return _rate_test(
        ERROR_RATE, {"attempts": attempts, "errors": errors}, ("max_error_rate", max_error_rate), alpha, over
    )


#: the rate tests' reasons by decision, templates of ``{ci}`` (the interval), ``{limit}`` and ``{over}``
#: (the counts in words); a test without a ROLLBACK reason never rolls back
_RATE_REASONS = {
    DISAGREEMENT: {
        PROMOTE: "disagreement {ci} bounds any accuracy loss below {limit}, {over}",
        WAIT: "disagreement {ci} does not rule out a loss of {limit}, {over}",
    },
    ERROR_RATE: {
        ROLLBACK: "error rate {ci} is above {limit}: {over}",
        PROMOTE: "error rate {ci} is below {limit}: {over}",
        WAIT: "error rate {ci} straddles {limit}: {over}",
    },
}


def _rate_test(
    test: str, counts: dict[str, int], limit: tuple[str, float], alpha: float, over: str
) -> TestResult:
    """A CS for a 0/1 rate against a limit: ``counts`` is {name: all, name: hits}, ``limit`` (name, value).

    ROLLBACK when the lower bound is above the limit (if the test has a ROLLBACK reason), else PROMOTE
    when the upper bound is below it, else WAIT. A limit named ``min_effect`` is also the result's.
    """
    (n_name, n), (k_name, k) = counts.items()
    limit_name, value = limit
    alpha = check_alpha(alpha)
    value = check_rate(limit_name, value)
    _count(n_name, n)
    _count(k_name, k)
    _at_most(k_name, k, n_name, n)
    lower, upper = _interval(_bernoulli(np.asarray(n), np.asarray(k)), _BERNOULLI, alpha, lo=0.0, hi=1.0)
    reasons = _RATE_REASONS[test]
    if ROLLBACK in reasons and bool(rate_above_rejections(n, k, alpha=alpha, limit=value)):
        decision = ROLLBACK
    elif bool(rate_below_rejections(n, k, alpha=alpha, limit=value)):
        decision = PROMOTE
    else:
        decision = WAIT
    reason = reasons[decision].format(ci=f"[{lower:.4f}, {upper:.4f}]", limit=value, over=over)
    min_effect = value if limit_name == "min_effect" else None
    estimate = k / n if n else None
    # TestResult's fields in order: test, estimate, lower, upper, n, alpha, threshold, decision, reason,
    # min_effect, counts
    return TestResult(
        test, estimate, lower, upper, n, alpha, value, decision, reason, min_effect, counts=dict(counts)
    )


# -- the gate: the three tests together, with the error rate shared out ----------------------------------
WAIT_CODE, PROMOTE_CODE, ROLLBACK_CODE = 0, 1, 2
CODES = {WAIT_CODE: WAIT, PROMOTE_CODE: PROMOTE, ROLLBACK_CODE: ROLLBACK}


def decide_codes(
    *,
    compared: npt.ArrayLike,
    disagreed: npt.ArrayLike,
    attempts: npt.ArrayLike,
    errors: npt.ArrayLike,
    labelled: npt.ArrayLike,
    candidate_only_correct: npt.ArrayLike,
    production_only_correct: npt.ArrayLike,
    alpha: float,
    min_effect: float,
    max_error_rate: float,
) -> npt.NDArray[np.int8]:
    """:func:`decide` on arrays of sums (no checks, no bounds): 0 wait, 1 promote, 2 roll back.

    The simulator runs this over (runs x looks) arrays; :func:`decide` is the same rule on one tally.
    """
    share = alpha / 2
    too_many_errors = rate_above_rejections(attempts, errors, alpha=share, limit=max_error_rate)
    few_errors = rate_below_rejections(attempts, errors, alpha=share, limit=max_error_rate)
    worse, not_much_worse = paired_accuracy_rejections(
        labelled, candidate_only_correct, production_only_correct, alpha=share, min_effect=min_effect
    )
    near_identical = rate_below_rejections(compared, disagreed, alpha=share, limit=min_effect)
    rollback = too_many_errors | worse
    promote = ~rollback & few_errors & (not_much_worse | near_identical)
    out: npt.NDArray[np.int8] = np.where(
        rollback, ROLLBACK_CODE, np.where(promote, PROMOTE_CODE, WAIT_CODE)
    ).astype(np.int8)
    return out


def decide(counts: GateCounts, *, alpha: float, min_effect: float, max_error_rate: float) -> GateVerdict:
    """The gate's decision from one candidate's sums, with a stated error rate per kind of mistake.

    Each of the three tests gets ``alpha / 2`` (one-sided): paired accuracy on labelled texts, the
    disagreement rate on all compared texts, the error rate on all attempts.

    - ROLLBACK if the error rate is surely above ``max_error_rate`` or the accuracy surely below
      production's. A candidate that is acceptable (accuracy >= production's, error rate <=
      ``max_error_rate``) is rolled back only if the error-rate bound or the accuracy bound missed:
      probability <= alpha/2 + alpha/2 = **alpha**.
    - PROMOTE if the error rate is surely below ``max_error_rate`` and either the labelled lower bound
      is above ``-min_effect`` or the disagreement's upper bound is below ``min_effect``. A candidate worse
      by >= ``min_effect`` is promoted only if one of those two bounds missed: <= **alpha**; one whose
      error rate is over the limit only if the error bound missed: <= alpha/2.
    - WAIT otherwise; nothing waits for a fixed count, a candidate is decided as soon as the bounds allow.

    The integration reads a :class:`~topicserve.rollout.tally.Tally` summed over environments into a
    :class:`GateCounts` every minute and stores ``verdict.to_dict()`` in the history entry.
    """
    alpha = check_alpha(alpha)
    min_effect = check_rate("min_effect", min_effect)
    max_error_rate = check_rate("max_error_rate", max_error_rate)
    share = alpha / 2
    acc = paired_accuracy(
        counts.labelled,
        counts.candidate_only_correct,
        counts.production_only_correct,
        alpha=share,
        min_effect=min_effect,
    )
    dis = disagreement(counts.compared, counts.disagreed, alpha=share, min_effect=min_effect)
    err = error_rate(counts.attempts, counts.errors, alpha=share, max_error_rate=max_error_rate)
    tests = (acc, dis, err)
    if err.decision == ROLLBACK:
        return GateVerdict(ROLLBACK, err.reason, tests, alpha)
    if acc.decision == ROLLBACK:
        return GateVerdict(ROLLBACK, acc.reason, tests, alpha)
    quality = acc if acc.decision == PROMOTE else dis if dis.decision == PROMOTE else None
    if quality is not None and err.decision == PROMOTE:
        return GateVerdict(PROMOTE, f"{quality.reason}; {err.reason}", tests, alpha)
    if quality is not None:
        return GateVerdict(WAIT, f"{quality.reason}, but {err.reason}", tests, alpha)
    return GateVerdict(WAIT, f"{acc.reason}; {dis.reason}", tests, alpha)
