"""The study's statistics and bookkeeping: Bradley-Terry against hand-computed cases, intervals that
shrink with more votes, votes stored once, CSV round trips that are all or nothing, and a study folder
built from real Set5 images whose report ranks the degraded entry last."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from superres.study.bradley_terry import bootstrap_intervals, fit_bradley_terry, win_matrix
from superres.study.store import StudyError, VoteStore

runner = CliRunner()


# ---- Bradley-Terry ------------------------------------------------------------------------------------


def test_two_models_score_gap_is_the_log_odds() -> None:
    # A beats B 3 times out of 4: P = 3/4 = sigmoid(sA - sB)  =>  sA - sB = ln 3, and sum zero
    fit = fit_bradley_terry([(0, 1, 1.0)] * 3 + [(1, 0, 1.0)], 2)
    assert fit.scores == pytest.approx([math.log(3) / 2, -math.log(3) / 2], abs=1e-9)
    # lopsided (1000:1) still converges to the exact log-odds
    fit = fit_bradley_terry([(0, 1, 1.0)] * 1000 + [(1, 0, 1.0)], 2)
    assert fit.scores[0] - fit.scores[1] == pytest.approx(math.log(1000), abs=1e-9)


def test_chain_of_three_matches_hand_computation() -> None:
    # A-B 3:1 and B-C 3:1, A and C never meet. The comparison graph is a tree, so every edge's
    # likelihood equation is its own: sA - sB = ln 3, sB - sC = ln 3; sum zero gives (ln 3, 0, -ln 3).
    votes = [(0, 1, 1.0)] * 3 + [(0, 1, 0.0)] + [(2, 1, 0.0)] * 3 + [(2, 1, 1.0)]
    fit = fit_bradley_terry(votes, 3)
    assert fit.scores == pytest.approx([math.log(3), 0.0, -math.log(3)], abs=1e-9)


def test_cycle_with_known_solution_and_ties_count_half() -> None:
    # A>B, B>C, C>A twice each (a perfect cycle): all strengths equal. Two ties A=B add nothing.
    votes = [(0, 1, 1.0), (1, 2, 1.0), (2, 0, 1.0)] * 2 + [(0, 1, 0.5)] * 2
    assert fit_bradley_terry(votes, 3).scores == pytest.approx([0, 0, 0], abs=1e-9)
    # A vs B: 2 wins, 0 losses, 2 ties = 3 of 4 "points" => gap ln 3, exactly like 3:1
    fit = fit_bradley_terry([(0, 1, 1.0)] * 2 + [(0, 1, 0.5)] * 2, 2)
    assert fit.scores[0] - fit.scores[1] == pytest.approx(math.log(3), abs=1e-9)
    wins, games = win_matrix([(0, 1, 0.5)], 2)
    assert wins.tolist() == [[0, 0.5], [0.5, 0]] and games.tolist() == [[0, 1], [1, 0]]


def test_undefeated_model_needs_a_prior() -> None:
    votes = [(0, 1, 1.0)] * 5 + [(1, 2, 1.0)] * 3 + [(2, 1, 1.0)]
    with pytest.raises(ArithmeticError, match="l2 > 0"):
        fit_bradley_terry(votes, 3)
    s = fit_bradley_terry(votes, 3, l2=0.01).scores
    assert s[0] > s[1] > s[2] and np.all(np.isfinite(s)) and abs(s.sum()) < 1e-9


def _simulate(n: int, truth: np.ndarray, seed: int) -> list[tuple[int, int, float]]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        a, b = rng.choice(len(truth), 2, replace=False)
        p = 1 / (1 + math.exp(-(truth[a] - truth[b])))
        out.append((int(a), int(b), 1.0 if rng.random() < p else 0.0))
    return out


def test_intervals_shrink_with_more_votes_and_cover_the_truth() -> None:
    truth = np.array([1.0, 0.0, -1.0])
    widths = {}
    for n in (60, 960):
        votes = _simulate(n, truth, seed=n)
        ci = bootstrap_intervals(votes, 3, samples=300, seed=1)
        widths[n] = float(np.mean(ci[:, 1] - ci[:, 0]))
        assert np.all(ci[:, 0] <= ci[:, 1])
    # 16x the votes: the standard error falls ~4x; allow for bootstrap noise
    assert widths[960] < 0.4 * widths[60], widths
    big = _simulate(960, truth, seed=960)
    ci = bootstrap_intervals(big, 3, samples=300, seed=1)
    assert np.all((ci[:, 0] < truth) & (truth < ci[:, 1])), (ci, truth)
    # same seed, same intervals
    assert np.array_equal(ci, bootstrap_intervals(big, 3, samples=300, seed=1))


# ---- votes --------------------------------------------------------------------------------------------


def test_a_pair_is_voted_once_and_csv_round_trips(tmp_path: Path) -> None:
    store = VoteStore(tmp_path / "a.sqlite")
    p = store.issue("r1", "bird", "x", "y")
    v = store.vote(p.token, "right", 812, rater="r1")
    assert v.winner == "y"
    with pytest.raises(StudyError, match="already voted"):
        store.vote(p.token, "left", 5, "r1")
    with pytest.raises(StudyError, match="unknown pair"):
        store.vote("nope", "left", 5, "r1")
    with pytest.raises(StudyError, match="choice must be"):
        store.vote(store.issue("r1", "bird", "x", "y").token, "up", 5, "r1")
    q = store.issue("r2", "head", "y", "x")
    with pytest.raises(StudyError, match="another rater"):
        store.vote(q.token, "same", 100, rater="r1")
    store.vote(q.token, "same", None, "r2")
    text = store.export_csv()
    other = VoteStore(tmp_path / "b.sqlite")
    assert other.import_csv(text, models=["x", "y"], images=["bird", "head"]) == (2, 0)
    assert other.votes() == store.votes()
    assert other.import_csv(text) == (0, 2)  # already present: not counted twice
    assert len(other) == 2


def test_import_with_a_bad_row_adds_nothing(tmp_path: Path) -> None:
    store = VoteStore(tmp_path / "v.sqlite")
    good = "p1,r,bird,x,y,left,10,1.5\n"
    bad = "p2,r,bird,x,y,sideways,10,1.5\n"
    header = "pair,rater,image,left,right,choice,ms,timestamp\n"
    with pytest.raises(StudyError, match="line 3: choice"):
        store.import_csv(header + good + bad)
    with pytest.raises(StudyError, match="model\\(s\\) z not in this study"):
        store.import_csv(header + "p3,r,bird,x,z,left,10,1.5\n", models=["x", "y"])
    with pytest.raises(StudyError, match="lacks column"):
        store.import_csv("pair,rater\np,r\n")
    assert len(store) == 0


# ---- a real study folder ------------------------------------------------------------------------------


def _sharpness(path: Path) -> float:
    a = np.asarray(Image.open(path).convert("L"), dtype=float)
    lap = a[1:-1, 1:-1] * 4 - a[:-2, 1:-1] - a[2:, 1:-1] - a[1:-1, :-2] - a[1:-1, 2:]
    return float(lap.var())


def test_study_folder_report_ranks_the_degraded_entry_last(data_dir: Path, tmp_path: Path) -> None:
    from superres.cli import app
    from superres.resize import imresize
    from superres.study.create import load_study

    lr_dir = data_dir / "Set5" / "LR_bicubic" / "X4"
    imgs = [lr_dir / "butterflyx4.png", lr_dir / "birdx4.png"]
    folder = tmp_path / "study"
    r = runner.invoke(
        app, ["study", "create", str(folder), *map(str, imgs), "-m", "bicubic,bicubic+blur2,bicubic+jpeg10"]
    )
    assert r.exit_code == 0, r.output
    study = load_study(folder)
    assert study.models == ["bicubic", "bicubic+blur2", "bicubic+jpeg10"] and study.scale == 4
    lr = np.asarray(Image.open(imgs[0]).convert("RGB"))
    out = np.asarray(Image.open(study.output("bicubic", "butterflyx4")))
    assert np.array_equal(out, imresize(lr, 4.0))  # the bicubic entry is the MATLAB-exact upscale
    assert _sharpness(study.output("bicubic+blur2", "butterflyx4")) < 0.5 * _sharpness(
        study.output("bicubic", "butterflyx4")
    )
    assert all(
        "bicubic" not in p for files in study.files.values() for p in files.values()
    )  # paths reveal nothing
    stamp = study.output("bicubic", "birdx4").stat().st_mtime_ns
    r = runner.invoke(
        app, ["study", "create", str(folder), *map(str, imgs), "-m", "bicubic,bicubic+blur2,bicubic+jpeg10"]
    )
    assert r.exit_code == 0 and study.output("bicubic", "birdx4").stat().st_mtime_ns == stamp  # computed once

    # votes: the blurred entry always loses; bicubic beats JPEG q10 3 of 4 times
    store = VoteStore(folder / "votes.sqlite")
    for image in study.images:
        for _ in range(3):
            store.vote(store.issue("r1", image, "bicubic+blur2", "bicubic").token, "right", 900, "r1")
            store.vote(store.issue("r2", image, "bicubic+jpeg10", "bicubic+blur2").token, "left", 1200, "r2")
        for choice in ("right", "right", "right", "left"):
            store.vote(store.issue("r1", image, "bicubic+jpeg10", "bicubic").token, choice, 700, "r1")
    plot = tmp_path / "report.png"
    r = runner.invoke(
        app,
        [
            "study",
            "report",
            str(folder),
            "--plot",
            str(plot),
            "--json",
            str(tmp_path / "r.json"),
            "--samples",
            "100",
            "--include-flagged",  # these votes were cast microseconds after their pairs: flagged as fast
        ],
    )
    assert r.exit_code == 0, r.output
    assert "| r1 | fast: median" in r.output and "| r2 | fast: median" in r.output, r.output
    ranking = [
        line.split("|")[2].strip()
        for line in r.output.splitlines()
        if line.startswith("| ") and line[2].isdigit()
    ]
    assert ranking == ["bicubic", "bicubic+jpeg10", "bicubic+blur2"], r.output
    # per image: 3/3 + 3/3 + 3/4 votes with the majority = 9 of 10
    assert "| butterflyx4 | 90% | 10 |" in r.output and "| birdx4 | 90% | 10 |" in r.output, r.output
    assert Image.open(plot).size[0] > 500

    csv_path = tmp_path / "votes.csv"
    assert runner.invoke(app, ["study", "export", str(folder), str(csv_path)]).exit_code == 0
    fresh = tmp_path / "copy"
    assert (
        runner.invoke(
            app,
            ["study", "create", str(fresh), *map(str, imgs), "-m", "bicubic,bicubic+blur2,bicubic+jpeg10"],
        ).exit_code
        == 0
    )
    r = runner.invoke(app, ["study", "import", str(fresh), str(csv_path)])
    assert r.exit_code == 0 and "20 votes added, 0 already present" in r.output, r.output
    r = runner.invoke(app, ["study", "export", str(folder), str(tmp_path)])
    assert r.exit_code == 2 and "is a folder" in r.output
    r = runner.invoke(app, ["study", "import", str(fresh), str(tmp_path / "missing.csv")])
    assert r.exit_code == 2 and "cannot read" in r.output


def test_bad_model_entry_is_one_line(tmp_path: Path, data_dir: Path) -> None:
    from superres.cli import app

    img = data_dir / "Set5" / "LR_bicubic" / "X4" / "birdx4.png"
    r = runner.invoke(
        app, ["study", "create", str(tmp_path / "s"), str(img), "-m", "bicubic,bicubic+sharpen3"]
    )
    assert r.exit_code == 2 and "unknown degradation 'sharpen3'" in r.output
    assert not (tmp_path / "s").exists()


def test_flags_mark_fast_one_key_and_contrarian_raters_but_not_careful_ones() -> None:
    from superres.study.flags import flag_raters
    from superres.study.report import build_report
    from superres.study.store import Vote

    models = ["good", "fair", "bad"]
    rank = {m: k for k, m in enumerate(models)}
    rng = np.random.default_rng(24)
    votes: list[Vote] = []

    def cast(rater: str, n: int, pick: str, served_ms: int) -> None:
        for k in range(n):
            a, b = (str(m) for m in rng.choice(models, 2, replace=False))  # sides at random, as served
            if pick == "honest":  # the better one 85% of the time
                better = a if rank[a] < rank[b] else b
                win = better if rng.random() < 0.85 else (b if better == a else a)
                choice = "left" if win == a else "right"
            elif pick == "worst":
                choice = "left" if rank[a] > rank[b] else "right"
            else:
                choice = pick
            votes.append(Vote(f"{rater}-{k}", rater, "img", a, b, choice, served_ms - 300, 1e9 + k, served_ms))

    for r in ("careful-1", "careful-2", "careful-3", "careful-4"):
        cast(r, 30, "honest", 2400)
    cast("bot", 30, "honest", 60)  # right answers, but faster than anyone can look
    cast("lazy", 30, "left", 2000)  # a person's pace, always the same key
    cast("saboteur", 30, "worst", 2200)  # a person's pace, always the worst image
    flags = flag_raters(votes, models)
    assert set(flags) == {"bot", "lazy", "saboteur"}, flags
    assert flags["bot"][0].startswith("fast: median 60 ms")
    assert any(f.startswith("one key: 100% of 30 votes 'left'") for f in flags["lazy"])
    assert flags["saboteur"][0].startswith("contrarian: agrees with the other raters' ranking on 0 of")
    rep = build_report(votes, models, samples=50)
    assert rep.excluded_votes == 90 and rep.raters == 4 and [r.model for r in rep.rows] == models
    assert build_report(votes, models, samples=50, include_flagged=True).excluded_votes == 0
