"""The blind study page and the A/B panel in a real headless Chromium (Playwright, system /usr/bin/chromium).

A scripted rater looks at each blind pair, decides from the pixels alone (the sharper image wins; near
equal is "same") and answers with the keyboard; the votes must land in SQLite exactly as cast, no model
name may reach the page, no request may leave the loopback server, and the report must rank the
deliberately blurred entry last. Set SUPERRES_SCREENSHOT=path.png to keep a screenshot."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

from browser import ARGS, CHROMIUM  # noqa: E402 - tests/browser.py
if not CHROMIUM.exists():
    pytest.skip(f"no system Chromium at {CHROMIUM} (apt-get install chromium)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (test extra) is not installed")
pytest.importorskip("fastapi", reason="the serve extra is not installed")

from PIL import Image  # noqa: E402

from superres.serve.launch import ServerProcess  # noqa: E402

MODELS = ["espcn-s-x4", "bicubic", "bicubic+blur2"]
DEGRADED = "bicubic+blur2"


def _env(base: Path, factory: pytest.TempPathFactory) -> dict[str, str]:
    return {
        "SUPERRES_SERVE_TMP_DIR": str(base / "tmp"),
        "SUPERRES_SERVE_LOG_LEVEL": "warning",
        "SUPERRES_CACHE_DIR": str(factory.getbasetemp() / "superres-cache"),
    }


@pytest.fixture(scope="module")
def study_server(
    tmp_path_factory: pytest.TempPathFactory, data_dir: Path
) -> Iterator[tuple[ServerProcess, Path]]:
    from superres.study.create import create_study

    base = tmp_path_factory.mktemp("study-web")
    lr = data_dir / "Set5" / "LR_bicubic" / "X4"
    folder = base / "study"
    create_study(folder, MODELS, [lr / "butterflyx4.png", lr / "birdx4.png"], device="cpu")
    # one server for both pages: the study at /study, the A/B split on the upscale page at /
    args = ["--models", "espcn-s-x4", "--study", str(folder), "--ab", "candidate=espcn-m-x4:0.5"]
    with ServerProcess(args, env=_env(base, tmp_path_factory), log_path=base / "server.log") as s:
        yield s, folder


def _sharpness(data: bytes) -> float:
    a = np.asarray(Image.open(io.BytesIO(data)).convert("L"), dtype=float)
    lap = a[1:-1, 1:-1] * 4 - a[:-2, 1:-1] - a[2:, 1:-1] - a[1:-1, :-2] - a[1:-1, 2:]
    return float(lap.var())


def test_keyboard_rater_votes_land_in_sqlite_and_degraded_ranks_last(
    study_server: tuple[ServerProcess, Path],
) -> None:
    from superres.study.report import build_report
    from superres.study.store import VoteStore

    server, folder = study_server
    outside: list[str] = []
    console_errors: list[str] = []
    seen_text: list[str] = []  # every JSON/HTML/JS body the page received
    cast: list[tuple[str, str]] = []  # (pair token, choice) as pressed
    keys = {"left": ["ArrowLeft", "1"], "right": ["ArrowRight", "2"], "same": [" ", "="]}
    n_votes = 12  # 3 model pairs x 2 images, each shown twice by the balanced design; then one "same"
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1300, "height": 900})
            page.on(
                "request",
                lambda r: None if r.url.startswith((server.url, "blob:", "data:")) else outside.append(r.url),
            )
            page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)

            def keep(resp: object) -> None:
                ctype = resp.headers.get("content-type", "")  # type: ignore[attr-defined]
                if not ctype.startswith("image/"):
                    seen_text.append(resp.text())  # type: ignore[attr-defined]

            page.on("response", keep)
            page.goto(server.url + "/study")
            rater = None
            for k in range(n_votes):
                page.wait_for_selector("body[data-state=ready]", timeout=30_000)
                token = page.evaluate("document.body.dataset.pair")
                rater = rater or page.evaluate("document.body.dataset.rater")  # the server-issued id
                left_src = page.get_attribute("#left", "src")
                right_src = page.get_attribute("#right", "src")
                assert left_src and right_src and token in left_src
                # what the rater sees: the same bytes the page displayed
                left = page.request.get(server.url + left_src).body()
                right = page.request.get(server.url + right_src).body()
                sl, sr = _sharpness(left), _sharpness(right)
                choice = "same" if max(sl, sr) < 1.15 * min(sl, sr) else ("left" if sl > sr else "right")
                page.keyboard.press(keys[choice][k % 2])
                cast.append((token, choice))
                page.wait_for_selector(f"body[data-votes='{k + 1}']", timeout=30_000)
            page.wait_for_selector("body[data-state=ready]", timeout=30_000)
            page.keyboard.press("ArrowUp")  # not a shortcut: no vote
            tie = page.evaluate("document.body.dataset.pair")
            page.keyboard.press(" ")  # space: "about the same", whatever the pixels say
            cast.append((tie, "same"))
            n_votes += 1
            page.wait_for_selector(f"body[data-votes='{n_votes}']", timeout=30_000)
            shot = os.environ.get("SUPERRES_SCREENSHOT")
            if shot:
                Path(shot).parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=shot, full_page=True)
            assert page.inner_text("#progress").startswith(f"{n_votes} vote(s) by you")
        finally:
            browser.close()

    assert outside == [] and console_errors == [], (outside, console_errors)
    for text in seen_text:  # blind: no model name in anything the page received
        for label in MODELS:
            assert label not in text, (label, text[:300])

    assert rater and rater.startswith("r-")
    votes = [v for v in VoteStore(folder / "votes.sqlite").votes() if v.rater == rater]
    assert [(v.pair, v.choice) for v in votes] == cast
    assert all(v.ms is not None and 0 <= v.ms < 60_000 for v in votes)
    combos = {(v.image, *sorted((v.left, v.right))) for v in votes}
    assert len(combos) == 6  # every image x model pair was shown
    assert sum(v.choice == "left" for v in votes) and sum(v.choice == "right" for v in votes)  # sides swap
    for v in votes[:-1]:  # the pixels alone told the rater which one was blurred
        if DEGRADED in (v.left, v.right):
            assert v.winner is not None and v.winner != DEGRADED, v
    # a script answers faster than a person can look (flagged "fast"), but its choices are a careful
    # rater's: nothing else is flagged, and its votes rank the blurred entry last
    rep = build_report(votes, MODELS, samples=200, include_flagged=True)
    assert list(rep.flagged) in ([], [rater]) and all(
        why.startswith("fast:") for why in rep.flagged.get(rater, [])
    ), rep.flagged
    assert rep.rows[-1].model == DEGRADED, [r.model for r in rep.rows]
    assert rep.rows[-1].ci_high < min(r.ci_low for r in rep.rows[:-1]) + 3.0


def test_ab_panel_shows_versions_and_takes_a_rating(
    study_server: tuple[ServerProcess, Path], data_dir: Path
) -> None:
    ab_server = study_server[0]
    src = data_dir / "Set5" / "LR_bicubic" / "X4" / "birdx4.png"
    outside: list[str] = []
    console_errors: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            page.on(
                "request",
                lambda r: (
                    None if r.url.startswith((ab_server.url, "blob:", "data:")) else outside.append(r.url)
                ),
            )
            page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
            page.goto(ab_server.url + "/")
            page.wait_for_selector("#server-status.ok", timeout=30_000)
            page.wait_for_selector("#ab tbody tr[data-version=candidate]", timeout=30_000)
            assert page.locator("#model").input_value() == ""  # the split decides
            page.set_input_files("#file", str(src))
            page.wait_for_selector(".item[data-status=done]", timeout=60_000)
            you = page.get_attribute("#ab", "data-you")
            assert you in ("control", "candidate")
            page.locator("#ab .rate", has_text="4").click()
            page.wait_for_selector(f"#ab .rated:has-text('{you}')", timeout=10_000)
            status = json.loads(page.request.get(ab_server.url + "/v1/ab").text())  # the browser's cookies
        finally:
            browser.close()
    assert outside == [] and console_errors == [], (outside, console_errors)
    mine = {v["name"]: v for v in status["versions"]}[you]
    assert mine["ratings"] == 1 and mine["rating_mean"] == 4.0
    assert mine["jobs"] == 1 and mine["job_p50_ms"] > 0  # the page's upload is a job of this version
    assert status["you"] == you  # the cookie kept this browser on its version


def test_study_api_refuses_bad_votes_without_counting_them(study_server: tuple[ServerProcess, Path]) -> None:
    import httpx

    from superres.study.store import VoteStore

    server, folder = study_server
    before = len(VoteStore(folder / "votes.sqlite"))
    with httpx.Client(base_url=server.url, timeout=30) as c:
        me = c.post("/v1/study/rater").json()["rater"]  # a server-issued token, not a chosen id
        p = c.post("/v1/study/next", json={"rater": me}).json()
        assert set(p) == {"pair", "left", "right", "lr"}
        assert c.get(f"/v1/study/image/{p['pair']}/lr").headers["content-type"] == "image/png"
        for body, status in [
            ({"pair": p["pair"], "choice": "up", "ms": 10, "rater": me}, 422),
            ({"pair": "nope", "choice": "left", "ms": 10, "rater": me}, 404),
            ({"pair": p["pair"], "choice": "left", "ms": 10, "rater": "someone-else"}, 403),
            ({"pair": p["pair"], "choice": "left", "ms": 10}, 422),  # no rater token
            ({"pair": p["pair"], "choice": "left", "ms": -5, "rater": me}, 422),
        ]:
            r = c.post("/v1/study/vote", json=body)
            assert r.status_code == status and set(r.json()) == {"error", "detail"}, (body, r.text)
        ok = {"pair": p["pair"], "choice": "right", "ms": 10, "rater": me}
        assert c.post("/v1/study/vote", json=ok).status_code == 200
        again = c.post("/v1/study/vote", json=ok)
        assert again.status_code == 409 and "already" in again.json()["detail"]
        assert c.post("/v1/study/next", json={"rater": "bad id!"}).status_code == 422
        assert c.get("/v1/study/image/nope/left").status_code == 404
        assert c.get(f"/v1/study/image/{p['pair']}/../../study.json").status_code == 404
        assert c.get("/v1/study/votes.csv").status_code == 401  # the votes name the models: owner only
        owner = (folder / "owner.token").read_text().strip()
        csv_text = c.get("/v1/study/votes.csv", headers={"Authorization": f"Bearer {owner}"}).text
    assert len(VoteStore(folder / "votes.sqlite")) == before + 1
    assert csv_text.count("\n") == before + 2  # header + every vote
