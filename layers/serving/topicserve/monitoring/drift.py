"""Drift statistics, numpy only (the serving layer has no scikit-learn, and the monitor needs nothing
more than these few lines).

* :func:`psi`: population stability index of two categorical distributions (the predicted classes);
  the usual reading: < 0.1 stable, 0.1-0.25 moderate, > 0.25 a shift.
* :func:`domain_auc`: train a classifier to tell reference from current embeddings and report its
  cross-validated ROC AUC; 0.5 means it cannot tell them apart. Evidently's default embedding-drift
  test (drift at AUC > 0.55). The classifier here is a ridge regression on standardised features (a
  linear discriminant, closed form: no iterations to tune, deterministic).
* :func:`mean_shift`: the squared distance between the two means over what it would be by chance
  (``trace(cov) * (1/n_ref + 1/n_cur)``): about 1 without drift, cheap (one pass, no fitting).
"""

from __future__ import annotations

import numpy as np

EPS = 1e-4


def psi(reference: np.ndarray, current: np.ndarray) -> float:
    """``reference`` and ``current``: counts or proportions over the same categories."""
    p = np.clip(np.asarray(reference, dtype=np.float64) / max(float(np.sum(reference)), 1e-12), EPS, None)
    q = np.clip(np.asarray(current, dtype=np.float64) / max(float(np.sum(current)), 1e-12), EPS, None)
    p, q = p / p.sum(), q / q.sum()
    return float(np.sum((q - p) * np.log(q / p)))


def chance_psi(reference: np.ndarray, n_current: int, n_reference: int) -> float:
    """The PSI two samples of these sizes from one distribution show on average (PSI is about the
    chi-square statistic over n): ``(k - 1) * (1/n_current + 1/n_reference)`` over the k categories the
    reference uses. A few hundred texts over 20 classes read ~0.1 by chance alone."""
    k = int(np.count_nonzero(np.asarray(reference) > 0))
    if n_current <= 0:
        return float("inf")
    return (max(k, 2) - 1) * (1.0 / n_current + (1.0 / n_reference if n_reference > 0 else 0.0))


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Rank-based (Mann-Whitney) ROC AUC, ties counted half."""
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels).astype(bool)
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores), dtype=np.float64)
    sorted_scores = scores[order]
    i = 0
    while i < len(scores):  # average ranks over ties
        j = i
        while j + 1 < len(scores) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return 0.5
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def domain_auc(
    reference: np.ndarray, current: np.ndarray, *, folds: int = 5, alpha: float = 10.0, seed: int = 0
) -> float:
    """Cross-validated AUC of a ridge classifier telling ``current`` (1) from ``reference`` (0) rows.

    Out-of-fold scores from ``folds`` stratified folds are pooled into one AUC. ``alpha`` is the ridge
    penalty per sample on standardised features: strong enough that a few hundred rows of 384 dimensions
    cannot be memorised (held-out AUC stays ~0.5 on identically distributed sets).
    """
    x = np.vstack([reference, current]).astype(np.float64)
    y = np.r_[np.zeros(len(reference)), np.ones(len(current))]
    rng = np.random.default_rng(seed)
    fold = np.empty(len(y), dtype=np.int64)
    for label in (0, 1):
        idx = np.flatnonzero(y == label)
        fold[idx] = rng.permutation(len(idx)) % folds
    scores = np.empty(len(y))
    for k in range(folds):
        train, test = fold != k, fold == k
        mu, sd = x[train].mean(axis=0), x[train].std(axis=0) + 1e-8
        xt = (x[train] - mu) / sd
        # class-balanced targets, centred: the weights do not depend on how many rows each side has
        target = np.where(y[train] == 1, 1.0 / y[train].sum(), -1.0 / (1 - y[train]).sum())
        gram = xt.T @ xt + alpha * len(xt) * np.eye(x.shape[1])
        w = np.linalg.solve(gram, xt.T @ target)
        scores[test] = ((x[test] - mu) / sd) @ w
    return roc_auc(scores, y)


def mean_shift(reference: np.ndarray, current: np.ndarray) -> float:
    ref, cur = np.asarray(reference, dtype=np.float64), np.asarray(current, dtype=np.float64)
    delta = ref.mean(axis=0) - cur.mean(axis=0)
    noise = (np.trace(np.cov(ref, rowvar=False)) / len(ref)) + (
        np.trace(np.cov(cur, rowvar=False)) / len(cur)
    )
    return float(delta @ delta / max(noise, 1e-12))


def histogram(values: np.ndarray, bins: int = 10) -> np.ndarray:
    """Counts of confidences (top probabilities) in ``bins`` equal bins over [0, 1]."""
    idx = np.clip((np.asarray(values, dtype=np.float64) * bins).astype(np.int64), 0, bins - 1)
    return np.bincount(idx, minlength=bins)
