"""Raters whose votes do not look like someone comparing two images: flagged, and left out of the
ranking unless asked (``superres study report --include-flagged``).

Three signs, each with a threshold a person comparing images does not come near:

- **fast**: the median time from the server handing out a pair to the vote arriving (``served_ms``, the
  server's clock, which a script cannot shorten) is under :data:`FAST_MS` = 400 ms, over at least
  :data:`MIN_TIMED` votes. The page ignores a key until both images have loaded and then needs the
  rater to look at two images: two fixations (~200 ms each) and a key press. Votes imported without
  ``served_ms`` use the page's own ``ms`` (shown-to-choice) instead.
- **one key**: at least :data:`ONE_KEY_SHARE` = 90% of at least :data:`MIN_VOTES` votes on the same
  answer (left, right or same). Sides are swapped at random, so an honest rater's left/right split is a
  coin toss: 9 of 10 on one side happens to 2% of honest raters, 18 of 20 to 0.04%.
- **contrarian**: the rater disagrees with the ranking that everyone else's votes give (a Bradley-Terry
  fit without this rater), on at least :data:`MIN_VOTES` decided votes where the others' scores differ
  by :data:`CLEAR_GAP` or more, more often than chance allows: binomial p < :data:`CONTRARIAN_P` against
  a coin toss. This catches a slow rater who always picks the degraded control; it needs honest votes
  from other raters to compare against, and only raters not flagged fast or one-key count as others.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Sequence

import numpy as np

from .bradley_terry import fit_counts, win_matrix
from .store import Vote

__all__ = ["FAST_MS", "flag_raters"]

FAST_MS = 400
MIN_TIMED = 5
MIN_VOTES = 10
ONE_KEY_SHARE = 0.9
CLEAR_GAP = 0.5
CONTRARIAN_P = 0.01


def _binom_cdf(k: int, n: int) -> float:
    """P(X <= k) for X ~ Binomial(n, 1/2)."""
    return sum(math.comb(n, i) for i in range(k + 1)) / 2**n


def flag_raters(votes: Sequence[Vote], models: Sequence[str]) -> dict[str, list[str]]:
    """Rater id -> the reasons (sentences) it is flagged; raters not flagged are absent."""
    by_rater: dict[str, list[Vote]] = defaultdict(list)
    for v in votes:
        by_rater[v.rater].append(v)
    flags: dict[str, list[str]] = defaultdict(list)
    for rater, mine in by_rater.items():
        times = [v.served_ms if v.served_ms is not None else v.ms for v in mine]
        timed = [t for t in times if t is not None]
        if len(timed) >= MIN_TIMED:
            med = float(np.median(timed))
            if med < FAST_MS:
                flags[rater].append(
                    f"fast: median {med:.0f} ms per vote (a person needs {FAST_MS} ms or more)"
                )
        if len(mine) >= MIN_VOTES:
            for key in ("left", "right", "same"):
                share = sum(v.choice == key for v in mine) / len(mine)
                if share >= ONE_KEY_SHARE:
                    flags[rater].append(f"one key: {share:.0%} of {len(mine)} votes '{key}'")
    # the consensus is that of the raters not already flagged: a bot's votes must not make honest raters
    # look contrarian
    trusted = {r: mine for r, mine in by_rater.items() if r not in flags}
    for rater, reason in _contrarians(trusted, list(models)).items():
        flags[rater].append(reason)
    return dict(flags)


def _contrarians(by_rater: dict[str, list[Vote]], models: list[str]) -> dict[str, str]:
    index = {m: k for k, m in enumerate(models)}
    n = len(models)
    mats = {}
    for rater, mine in by_rater.items():
        comps = [
            (index[v.left], index[v.right], {"left": 1.0, "right": 0.0, "same": 0.5}[v.choice])
            for v in mine
            if v.left in index and v.right in index
        ]
        mats[rater] = win_matrix(comps, n)
    if len(mats) < 2:
        return {}
    all_wins = sum(w for w, _ in mats.values())
    all_games = sum(g for _, g in mats.values())
    out = {}
    for rater, mine in by_rater.items():
        wins, games = mats[rater]
        if (all_games - games).sum() == 0:
            continue
        others = fit_counts(all_wins - wins, all_games - games).scores
        agree = total = 0
        for v in mine:
            if v.choice == "same" or v.left not in index or v.right not in index:
                continue
            gap = others[index[v.left]] - others[index[v.right]]
            if abs(gap) < CLEAR_GAP:
                continue
            total += 1
            agree += (gap > 0) == (v.choice == "left")
        if total >= MIN_VOTES and _binom_cdf(agree, total) < CONTRARIAN_P:
            out[rater] = (
                f"contrarian: agrees with the other raters' ranking on {agree} of {total} clear pairs"
            )
    return out
