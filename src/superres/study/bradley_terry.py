"""Bradley-Terry scores from pairwise votes, with bootstrap confidence intervals.

Model: P(i beats j) = sigmoid(s_i - s_j). Scores are log-strengths under a sum-zero constraint (only
differences are identified). A "same" vote counts as half a win for each side, the usual convention
(it keeps the likelihood a plain binomial one). The fit is Newton's method on the penalised
log-likelihood; ``l2`` is a Gaussian prior on the scores, needed when a model never wins or never loses
(the plain maximum-likelihood score is then infinite). ``l2=0`` gives the exact MLE, used by the tests
against hand-computed cases.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

__all__ = ["Comparison", "BTFit", "fit_bradley_terry", "fit_counts", "bootstrap_intervals", "win_matrix"]

#: (index of the left model, index of the right model, outcome: 1 left won, 0 right won, 0.5 same)
Comparison = tuple[int, int, float]


@dataclass(frozen=True)
class BTFit:
    scores: np.ndarray  # sum-zero log-strengths, one per model
    iterations: int


def win_matrix(comparisons: Sequence[Comparison], n_models: int) -> tuple[np.ndarray, np.ndarray]:
    """``wins[i, j]``: votes for i over j (a "same" adds 0.5 to both); ``games[i, j]``: votes between them."""
    wins = np.zeros((n_models, n_models))
    games = np.zeros((n_models, n_models))
    for a, b, out in comparisons:
        if a == b:
            raise ValueError(f"a model compared with itself (index {a})")
        wins[a, b] += out
        wins[b, a] += 1.0 - out
        games[a, b] += 1
        games[b, a] += 1
    return wins, games


def _fit_counts(wins: np.ndarray, games: np.ndarray, l2: float, max_iter: int, tol: float) -> BTFit:
    n = wins.shape[0]
    s = np.zeros(n)
    w_total = wins.sum(axis=1)
    if l2 <= 0:
        _check_finite_mle(wins, games)
    for it in range(1, max_iter + 1):
        diff = s[:, None] - s[None, :]
        p = 1.0 / (1.0 + np.exp(-diff))
        grad = w_total - (games * p).sum(axis=1) - l2 * s
        c = games * p * (1.0 - p)
        hess = np.diag(c.sum(axis=1)) - c + l2 * np.eye(n)  # minus the Hessian (positive semi-definite)
        # sum-zero: only differences matter; the extra all-ones term pins the free direction without
        # changing any step within the sum-zero subspace
        step = np.linalg.solve(hess + np.ones((n, n)) / n, grad)
        step -= step.mean()
        # backtracking: the objective is concave, but a full Newton step can overshoot on lopsided votes
        base = _objective(s, wins, games, l2)
        t = 1.0
        while t > 1e-6 and _objective(s + t * step, wins, games, l2) < base - 1e-12:
            t /= 2
        s = s + t * step
        if np.max(np.abs(t * step)) < tol:
            return BTFit(s - s.mean(), it)
    raise ArithmeticError(f"Bradley-Terry fit did not converge in {max_iter} iterations")


def _objective(s: np.ndarray, wins: np.ndarray, games: np.ndarray, l2: float) -> float:
    """Penalised log-likelihood: sum over ordered pairs of wins[i, j] * log sigmoid(s_i - s_j)."""
    diff = s[:, None] - s[None, :]
    return float(-(wins * np.logaddexp(0.0, -diff)).sum() - 0.5 * l2 * (s**2).sum())


def _check_finite_mle(wins: np.ndarray, games: np.ndarray) -> None:
    """The MLE is finite iff the "beat or tied" graph is strongly connected (Ford 1957)."""
    n = wins.shape[0]
    beat = wins > 0  # beat[i, j]: i earned something against j
    for start in range(n):
        seen = {start}
        todo = [start]
        while todo:
            i = todo.pop()
            for j in np.flatnonzero(beat[i]):
                if int(j) not in seen:
                    seen.add(int(j))
                    todo.append(int(j))
        if len(seen) < n:
            missing = sorted(set(range(n)) - seen)
            raise ArithmeticError(
                f"no finite maximum-likelihood scores: model {start} never reaches model(s) {missing} "
                "through wins; use l2 > 0"
            )


def fit_bradley_terry(
    comparisons: Sequence[Comparison],
    n_models: int,
    *,
    l2: float = 0.0,
    max_iter: int = 200,
    tol: float = 1e-10,
) -> BTFit:
    """Sum-zero Bradley-Terry log-strengths of ``n_models`` from the comparisons."""
    if n_models < 2:
        raise ValueError("Bradley-Terry needs at least two models")
    wins, games = win_matrix(comparisons, n_models)
    return _fit_counts(wins, games, l2, max_iter, tol)


def fit_counts(wins: np.ndarray, games: np.ndarray, *, l2: float = 0.01) -> BTFit:
    """The same fit from a win matrix and a games matrix (as :func:`win_matrix` makes them), for callers
    that add and subtract vote counts, e.g. leaving one rater out."""
    if wins.shape[0] < 2:
        raise ValueError("Bradley-Terry needs at least two models")
    return _fit_counts(wins, games, l2, 200, 1e-8)


def bootstrap_intervals(
    comparisons: Sequence[Comparison],
    n_models: int,
    *,
    l2: float = 0.01,
    samples: int = 500,
    level: float = 0.95,
    seed: int = 0,
) -> np.ndarray:
    """Percentile intervals (``n_models x 2``) of the scores over votes resampled with replacement.

    ``l2`` must be positive: a resample may easily contain a model that never wins."""
    if l2 <= 0:
        raise ValueError("bootstrap needs l2 > 0 (a resample can leave a model without any win)")
    votes = np.asarray(comparisons, dtype=float).reshape(-1, 3)
    if len(votes) == 0:
        raise ValueError("no votes")
    rng = np.random.default_rng(seed)
    draws = np.empty((samples, n_models))
    a, b, out = votes[:, 0].astype(int), votes[:, 1].astype(int), votes[:, 2]
    for k in range(samples):
        idx = rng.integers(0, len(votes), len(votes))
        wins = np.zeros((n_models, n_models))
        games = np.zeros((n_models, n_models))
        np.add.at(wins, (a[idx], b[idx]), out[idx])
        np.add.at(wins, (b[idx], a[idx]), 1.0 - out[idx])
        np.add.at(games, (a[idx], b[idx]), 1.0)
        np.add.at(games, (b[idx], a[idx]), 1.0)
        draws[k] = _fit_counts(wins, games, l2, 200, 1e-8).scores
    lo, hi = (1.0 - level) / 2 * 100, (1.0 + level) / 2 * 100
    return np.stack([np.percentile(draws, lo, axis=0), np.percentile(draws, hi, axis=0)], axis=1)
