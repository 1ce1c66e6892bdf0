"""A blind study that a scripted attacker cannot rig, against a real server on loopback (issue 24).

Honest raters' votes are in the study (two raters who prefer the sharper image, at a person's pace);
then an attacker with everything a client has tries each trick the attack run used: exporting the votes,
self-chosen rater ids, voting without a rater on someone else's pair, minting many raters, hashing the
served images to map sides to models, and 200 fast votes per rater for the blurred control. Nothing
may name a model to the attacker, and ``superres study report`` must not rank the control first."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

httpx = pytest.importorskip("httpx", reason="httpx is needed to talk to the server (test extra)")
pytest.importorskip("fastapi", reason="the serve extra (fastapi, uvicorn, python-multipart) is not installed")

from PIL import Image  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from superres.serve.launch import ServerProcess  # noqa: E402

MODELS = ["bicubic", "bicubic+jpeg10", "bicubic+blur2"]
CONTROL = "bicubic+blur2"
RANK = {"bicubic": 0, "bicubic+jpeg10": 1, "bicubic+blur2": 2}  # what an honest rater sees: best first


def _honest_csv(images: list[str]) -> str:
    """Two raters at a person's pace (1.5-3 s per pair) who pick the better image, balanced sides."""
    rows = ["pair,rater,image,left,right,choice,ms,timestamp,served_ms"]
    k = 0
    for rater in ("honest-1", "honest-2"):
        for image in images:
            for a, b in (("bicubic", "bicubic+jpeg10"), ("bicubic", CONTROL), ("bicubic+jpeg10", CONTROL)):
                for flip in (False, True):
                    left, right = (b, a) if flip else (a, b)
                    choice = "left" if RANK[left] < RANK[right] else "right"
                    k += 1
                    ms, served = 1500 + 37 * k, 1800 + 41 * k
                    rows.append(f"h{k},{rater},{image},{left},{right},{choice},{ms},{1e9 + k},{served}")
    return "\n".join(rows) + "\n"


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Iterator[tuple[ServerProcess, Path]]:
    from superres.study.create import create_study
    from superres.study.store import VoteStore

    base = tmp_path_factory.mktemp("study-attack")
    lr = data_dir / "Set5" / "LR_bicubic" / "X4"
    folder = base / "study"
    s = create_study(folder, MODELS, [lr / "butterflyx4.png", lr / "birdx4.png"])
    VoteStore(folder / "votes.sqlite").import_csv(_honest_csv(s.images), models=s.models, images=s.images)
    env = {
        "SUPERRES_SERVE_TMP_DIR": str(base / "tmp"),
        "SUPERRES_SERVE_LOG_LEVEL": "warning",
        "SUPERRES_CACHE_DIR": str(tmp_path_factory.getbasetemp() / "superres-cache"),
    }
    args = ["--models", "espcn-s-x4", "--study", str(folder)]
    with ServerProcess(args, env=env, log_path=base / "server.log") as srv:
        yield srv, folder
        assert srv.alive() and "Traceback" not in srv.log(), srv.log()


def _no_model_name(text: str) -> None:
    for label in MODELS:
        assert label not in text, (label, text[:300])


def _sharpness(data: bytes) -> float:
    a = np.asarray(Image.open(io.BytesIO(data)).convert("L"), dtype=float)
    lap = a[1:-1, 1:-1] * 4 - a[:-2, 1:-1] - a[2:, 1:-1] - a[1:-1, :-2] - a[1:-1, 2:]
    return float(lap.var())


def test_votes_export_needs_the_owner_token(study: tuple[ServerProcess, Path]) -> None:
    server, folder = study
    with httpx.Client(base_url=server.url, timeout=30) as c:
        for headers in ({}, {"Authorization": "Bearer guess"}, {"Authorization": "Basic b3duZXI6"}):
            r = c.get("/v1/study/votes.csv", headers=headers)
            assert r.status_code == 401 and r.json()["error"] == "owner_only", r.text
            _no_model_name(r.text)
        owner = (folder / "owner.token").read_text().strip()
        assert (folder / "owner.token").stat().st_mode & 0o077 == 0  # the owner's alone
        r = c.get("/v1/study/votes.csv", headers={"Authorization": f"Bearer {owner}"})
        assert r.status_code == 200 and CONTROL in r.text and r.text.startswith("pair,rater,")


def test_self_chosen_ids_and_missing_rater_cannot_vote(study: tuple[ServerProcess, Path]) -> None:
    from superres.study.store import VoteStore

    server, folder = study
    before = len(VoteStore(folder / "votes.sqlite"))
    with httpx.Client(base_url=server.url, timeout=30) as c:
        for chosen in ("attacker", "honest-1", "r-00000000"):
            r = c.post("/v1/study/next", json={"rater": chosen})
            assert r.status_code == 403 and r.json()["error"] == "unknown_rater", r.text
        victim = c.post("/v1/study/rater")
        assert victim.status_code == 201
        token = victim.json()["rater"]
        pair = c.post("/v1/study/next", json={"rater": token}).json()
        # asking again gives the same open pair: no shopping for a pair that shows the control
        assert c.post("/v1/study/next", json={"rater": token}).json()["pair"] == pair["pair"]
        vote = {"pair": pair["pair"], "choice": "left", "ms": 900}
        assert c.post("/v1/study/vote", json=vote).status_code == 422  # no rater: refused, not counted
        r = c.post("/v1/study/vote", json={**vote, "rater": "attacker"})
        assert r.status_code == 403 and r.json()["error"] == "unknown_rater"
        assert len(VoteStore(folder / "votes.sqlite")) == before
        assert c.post("/v1/study/vote", json={**vote, "rater": token}).status_code == 200


def test_scripted_attacker_cannot_move_the_ranking_or_learn_a_model(
    study: tuple[ServerProcess, Path], tmp_path: Path
) -> None:
    from superres.cli import app
    from superres.study.store import VoteStore

    server, folder = study
    seen: list[str] = []
    byte_hashes: set[str] = set()
    pixel_hashes: set[str] = set()
    fetched = 0
    with httpx.Client(base_url=server.url, timeout=30) as c:
        tokens = []
        for _ in range(20):  # minting raters: capped per address (3 by default, one went to the test above)
            r = c.post("/v1/study/rater")
            seen.append(r.text)
            if r.status_code == 201:
                tokens.append(r.json()["rater"])
            else:
                assert r.status_code == 429 and r.json()["error"] == "rater_limit", r.text
        assert 1 <= len(tokens) <= 3, len(tokens)  # 2 when the whole module runs
        for n, token in enumerate(tokens):
            accepted = 0
            for k in range(200):  # as fast as the server answers, pretending to have looked for 2 s
                r = c.post("/v1/study/next", json={"rater": token})
                seen.append(r.text)
                if r.status_code == 403:
                    assert r.json()["error"] == "vote_limit", r.text
                    break
                p = r.json()
                if n == 0:  # the clever one: recognises the blurred image by its pixels and votes for it
                    sides = {}
                    for side in ("left", "right"):
                        data = c.get(p[side]).content
                        again = c.get(p[side]).content  # the same side twice: other bytes, other pixels
                        pixels = [Image.open(io.BytesIO(d)).convert("RGB").tobytes() for d in (data, again)]
                        for blob in (data, again):
                            byte_hashes.add(hashlib.sha256(blob).hexdigest())
                        for px in pixels:
                            pixel_hashes.add(hashlib.sha256(px).hexdigest())
                        fetched += 2
                        sides[side] = _sharpness(data)
                    choice = min(sides, key=sides.__getitem__)
                else:  # the lazy one: always the same key
                    choice = "left"
                body = {"pair": p["pair"], "choice": choice, "ms": 2000, "rater": token}
                r = c.post("/v1/study/vote", json=body)
                seen.append(r.text)
                if r.status_code == 403:
                    break
                assert r.status_code == 200, r.text
                accepted += 1
            assert accepted == 100  # the default cap of votes per rater
    for text in seen:
        _no_model_name(text)
    # no two serves had the same bytes or the same decoded pixels, so hashing ties nothing together
    assert len(byte_hashes) == fetched and len(pixel_hashes) == fetched, (fetched, len(pixel_hashes))

    by_rater: dict[str, int] = {}
    for v in VoteStore(folder / "votes.sqlite").votes():
        by_rater[v.rater] = by_rater.get(v.rater, 0) + 1
    assert sorted(by_rater.values())[-len(tokens):] == [100] * len(tokens)  # stored, capped
    r = CliRunner().invoke(app, ["study", "report", str(folder), "--samples", "100"])
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    ranking = [ln.split("|")[2].strip() for ln in lines if ln.startswith("| ") and ln[2].isdigit()]
    assert ranking[0] != CONTROL and ranking[-1] == CONTROL, r.output
    flagged = [ln for ln in lines if ln.startswith("| r-") and "fast: median" in ln]
    assert len(flagged) == len(tokens), r.output  # every attacker listed with the reason, no honest one
    assert f"Flagged raters (left out: {100 * len(tokens)} votes)" in r.output, r.output
    # with the flagged votes included the attack shows: that is what the exclusion is for
    r = CliRunner().invoke(app, ["study", "report", str(folder), "--samples", "100", "--include-flagged"])
    assert r.exit_code == 0 and "included (--include-flagged)" in r.output, r.output
