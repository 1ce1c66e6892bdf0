"""``superres study report``: the ranking a user study is for.

Bradley-Terry scores (sum-zero log-strengths; a difference of 1 means the better model wins about 73%
of the time) with bootstrap intervals over votes, the win matrix, and per-image agreement: for every
image and pair of models shown at least twice, the share of votes that went with the majority choice
(1.0 = raters agree, near 0.5 = a coin flip; low agreement marks images where the models look alike).
Raters flagged by :mod:`superres.study.flags` (too fast, one key, contrarian) are listed with their
reasons and their votes are left out of everything unless ``include_flagged``.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ..errors import install_hint
from .bradley_terry import bootstrap_intervals, fit_bradley_terry, win_matrix
from .flags import flag_raters
from .store import StudyError, Vote

__all__ = ["ModelRow", "StudyReport", "build_report", "format_table", "plot_report"]


@dataclass(frozen=True)
class ModelRow:
    model: str
    score: float
    ci_low: float
    ci_high: float
    wins: float  # "same" votes count half
    votes: int

    @property
    def win_rate(self) -> float:
        return self.wins / self.votes if self.votes else float("nan")


@dataclass
class StudyReport:
    rows: list[ModelRow]  # best first
    models: list[str]  # the matrix order
    wins: np.ndarray  # wins[i, j] of models[i] over models[j]
    games: np.ndarray
    agreement: dict[str, tuple[float, int]]  # image -> (majority share, votes counted)
    votes: int
    raters: int
    median_ms: Optional[float]
    l2: float
    level: float
    extra: dict[str, object] = field(default_factory=dict)
    flagged: dict[str, list[str]] = field(default_factory=dict)  # rater -> reasons
    excluded_votes: int = 0  # votes of flagged raters left out (0 with include_flagged)

    def to_json(self) -> dict[str, object]:
        return {
            "flagged_raters": self.flagged,
            "excluded_votes": self.excluded_votes,
            "votes": self.votes,
            "raters": self.raters,
            "median_ms": self.median_ms,
            "prior_l2": self.l2,
            "ci_level": self.level,
            "ranking": [
                {
                    "model": r.model,
                    "score": r.score,
                    "ci": [r.ci_low, r.ci_high],
                    "wins": r.wins,
                    "votes": r.votes,
                    "win_rate": r.win_rate,
                }
                for r in self.rows
            ],
            "win_matrix": {"models": self.models, "wins": self.wins.tolist(), "games": self.games.tolist()},
            "agreement": {k: {"majority_share": a, "votes": n} for k, (a, n) in self.agreement.items()},
        }


def _agreement(votes: Sequence[Vote]) -> dict[str, tuple[float, int]]:
    by_pair: dict[tuple[str, str, str], Counter[str]] = defaultdict(Counter)
    for v in votes:
        a, b = sorted((v.left, v.right))
        by_pair[(v.image, a, b)][v.winner or "="] += 1
    agree: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for (image, _a, _b), counts in by_pair.items():
        n = sum(counts.values())
        if n >= 2:
            agree[image][0] += max(counts.values())
            agree[image][1] += n
    return {img: (m / n, n) for img, (m, n) in sorted(agree.items())}


def build_report(
    votes: Sequence[Vote],
    models: Sequence[str],
    *,
    l2: float = 0.01,
    samples: int = 500,
    level: float = 0.95,
    seed: int = 0,
    include_flagged: bool = False,
) -> StudyReport:
    """Fit, bootstrap and tabulate ``votes`` over ``models`` (the study's labels), without the votes of
    flagged raters unless ``include_flagged``."""
    if not votes:
        raise StudyError("no votes yet: nothing to report")
    flagged = flag_raters(votes, models) if votes else {}
    kept = list(votes) if include_flagged else [v for v in votes if v.rater not in flagged]
    if not kept:
        why = sorted({reason.split(":")[0] for reasons in flagged.values() for reason in reasons})
        raise StudyError(
            f"all {len(votes)} votes are from {len(flagged)} flagged rater(s) ({', '.join(why)}); "
            "--include-flagged ranks them anyway"
        )
    excluded = len(votes) - len(kept)
    votes = kept
    index = {m: k for k, m in enumerate(models)}
    unknown = sorted({m for v in votes for m in (v.left, v.right)} - set(index))
    if unknown:
        raise StudyError(f"votes name model(s) not in this study: {', '.join(unknown)}")
    comps = [
        (index[v.left], index[v.right], {"left": 1.0, "right": 0.0, "same": 0.5}[v.choice]) for v in votes
    ]
    n = len(models)
    fit = fit_bradley_terry(comps, n, l2=l2)
    ci = bootstrap_intervals(comps, n, l2=l2, samples=samples, level=level, seed=seed)
    wins, games = win_matrix(comps, n)
    rows = [
        ModelRow(
            m,
            float(fit.scores[k]),
            float(ci[k, 0]),
            float(ci[k, 1]),
            float(wins[k].sum()),
            int(games[k].sum()),
        )
        for k, m in enumerate(models)
    ]
    rows.sort(key=lambda r: -r.score)
    ms = [v.ms for v in votes if v.ms is not None]
    return StudyReport(
        rows,
        list(models),
        wins,
        games,
        _agreement(votes),
        len(votes),
        len({v.rater for v in votes}),
        float(np.median(ms)) if ms else None,
        l2,
        level,
        flagged=flagged,
        excluded_votes=excluded,
    )


def format_table(rep: StudyReport) -> str:
    """The report as Markdown tables (ranking, win matrix, per-image agreement)."""
    pct = f"{rep.level * 100:g}%"
    lines = [
        f"{rep.votes} votes from {rep.raters} rater(s)"
        + (f", median {rep.median_ms:.0f} ms to decide" if rep.median_ms is not None else "")
        + f"; Bradley-Terry log-strength, sum zero, {pct} bootstrap interval, prior l2={rep.l2:g}",
        "",
        f"| rank | model | score | {pct} CI | win rate | votes |",
        "|---|---|---|---|---|---|",
    ]
    for k, r in enumerate(rep.rows, 1):
        lines.append(
            f"| {k} | {r.model} | {r.score:+.2f} | [{r.ci_low:+.2f}, {r.ci_high:+.2f}] | "
            f"{r.win_rate:.0%} | {r.votes} |"
        )
    if rep.flagged:
        verb = (
            f"left out: {rep.excluded_votes} votes" if rep.excluded_votes else "included (--include-flagged)"
        )
        lines += ["", f"Flagged raters ({verb}):", "", "| rater | why |", "|---|---|"]
        for rater, reasons in sorted(rep.flagged.items()):
            lines.append(f"| {rater} | {'; '.join(reasons)} |")
    lines += ["", "Wins of the row model over the column model (ties count half):", ""]
    lines.append("| | " + " | ".join(rep.models) + " |")
    lines.append("|---" * (len(rep.models) + 1) + "|")
    for i, m in enumerate(rep.models):
        cells = ["—" if i == j else f"{rep.wins[i, j]:g}/{rep.games[i, j]:g}" for j in range(len(rep.models))]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    if rep.agreement:
        lines += [
            "",
            "Per-image agreement (share of votes with the majority, pairs shown twice or more):",
            "",
            "| image | agreement | votes |",
            "|---|---|---|",
        ]
        for img, (a, n) in rep.agreement.items():
            lines.append(f"| {img} | {a:.0%} | {n} |")
    return "\n".join(lines)


def plot_report(rep: StudyReport, path: Path) -> Path:
    """Scores with intervals (left) and the win-rate matrix (right) as one figure, written atomically."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise StudyError(f"the plot needs matplotlib ({e}): {install_hint('plot')}") from None
    from ..io.atomic import atomic_write

    path = Path(path)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 0.5 * len(rep.rows) + 2.5))
    try:
        rows = rep.rows[::-1]
        y = np.arange(len(rows))
        scores = np.array([r.score for r in rows])
        err = np.array([[r.score - r.ci_low for r in rows], [r.ci_high - r.score for r in rows]])
        ax1.errorbar(scores, y, xerr=np.clip(err, 0, None), fmt="o", capsize=4)
        ax1.set_yticks(y, [r.model for r in rows])
        ax1.axvline(0, color="grey", lw=0.5)
        ax1.set_xlabel(f"Bradley-Terry score ({rep.level * 100:g}% bootstrap CI)")
        ax1.set_title(f"{rep.votes} votes, {rep.raters} rater(s)")
        with np.errstate(invalid="ignore", divide="ignore"):
            rate = np.where(rep.games > 0, rep.wins / rep.games, np.nan)
        im = ax2.imshow(rate, vmin=0, vmax=1, cmap="RdYlGn")
        ax2.set_xticks(range(len(rep.models)), rep.models, rotation=45, ha="right")
        ax2.set_yticks(range(len(rep.models)), rep.models)
        ax2.set_title("win rate of row over column")
        for i in range(len(rep.models)):
            for j in range(len(rep.models)):
                if rep.games[i, j] > 0:
                    ax2.text(j, i, f"{rate[i, j]:.0%}", ha="center", va="center", fontsize=8)
        fig.colorbar(im, ax=ax2, fraction=0.046)
        fig.tight_layout()
        suffix = path.suffix or ".png"
        with atomic_write(path, tmp_suffix=suffix) as tmp:
            fig.savefig(tmp, format=suffix.lstrip(".") or "png", dpi=120)
    finally:
        plt.close(fig)
    return path


def write_json(rep: StudyReport, path: Path) -> None:
    from ..io.atomic import atomic_write

    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps(rep.to_json(), indent=2))
