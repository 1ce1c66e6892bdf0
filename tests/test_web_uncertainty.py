"""The quality check through the server: job result fields, the heatmap endpoint, and the web page's
uncertainty overlay in a real headless Chromium (launched as in test_web_page.py). No request may leave
the loopback server. Set SUPERRES_SCREENSHOT_UNCERTAINTY=path.png to keep a screenshot."""

from __future__ import annotations

import io
import os
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest

httpx = pytest.importorskip("httpx", reason="httpx is needed to talk to the server (test extra)")
pytest.importorskip("fastapi", reason="the serve extra is not installed")

from PIL import Image  # noqa: E402

from superres.serve.launch import ServerProcess  # noqa: E402

from browser import ARGS, CHROMIUM  # noqa: E402 - tests/browser.py


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, weights_dir: Path) -> Iterator[ServerProcess]:
    base = tmp_path_factory.mktemp("serve-quality")
    env = {
        "SUPERRES_SERVE_TMP_DIR": str(base / "tmp"),
        "SUPERRES_SERVE_LOG_LEVEL": "warning",
        "SUPERRES_CACHE_DIR": str(tmp_path_factory.getbasetemp() / "superres-cache"),
        "SUPERRES_NIQE_PARAMS": str(weights_dir / "niqe" / "niqe_pris_params.npz"),
    }
    with ServerProcess(["--models", "realesr-animevideov3"], env=env, log_path=base / "server.log") as s:
        yield s


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    return buf.getvalue()


def _job(url: str, data: bytes, **fields: Any) -> dict[str, Any]:
    r = httpx.post(url + "/v1/jobs", files={"file": ("in.png", data, "image/png")},
                   data={k: str(v) for k, v in fields.items()}, timeout=60)
    assert r.status_code == 202, r.text
    job = r.json()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        info = httpx.get(f"{url}/v1/jobs/{job['id']}", timeout=10).json()
        if info["status"] in ("done", "failed"):
            return info
        time.sleep(0.2)
    raise AssertionError("job did not finish in 120 s")


def test_job_result_carries_the_gate_and_a_heatmap_of_the_output_size(server: ServerProcess) -> None:
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    info = _job(server.url, _png(noise), report="true", fallback="bicubic")
    assert info["status"] == "done", info
    q = info["quality"]
    assert q["ensemble"] == "x8" and q["flagged"] and q["fallback_used"] and q["written"] == "bicubic"
    assert q["uncertainty_p99"] > q["uncertainty_mean"] > 0 and q["niqe"] is not None
    heat = httpx.get(server.url + info["uncertainty_url"], timeout=10)
    assert heat.status_code == 200 and heat.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(heat.content)).size == (info["width"], info["height"]) == (256, 256)
    plain = _job(server.url, _png(noise), self_ensemble="true")  # x8 without report: no fields, no heatmap
    assert plain["status"] == "done" and plain["quality"] is None and plain["uncertainty_url"] is None
    x8 = httpx.get(server.url + plain["result_url"], timeout=10).content
    one = httpx.post(server.url + "/v1/upscale", files={"file": ("in.png", _png(noise), "image/png")}, timeout=60)
    assert one.status_code == 200 and x8 != one.content  # the ensemble changed the pixels
    from superres.inference.ensemble import Ensemble
    from superres.loading import load_model
    from superres.io.image import from_array

    local = Ensemble(load_model("realesr-animevideov3", device="cpu"), self_ensemble=True).as_upscaler()
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(x8))), local.upscale_image(from_array(noise)).color)
    r = httpx.get(f"{server.url}/v1/jobs/{plain['id']}/result?variant=uncertainty", timeout=10)
    assert r.status_code == 409 and "without report" in r.json()["detail"]
    sync = httpx.post(server.url + "/v1/upscale", files={"file": ("in.png", _png(noise), "image/png")},
                      data={"report": "true"}, timeout=60)  # the direct answer: the verdict in headers
    assert sync.status_code == 200 and sync.headers["X-Quality-Flagged"] == "true"
    assert float(sync.headers["X-Uncertainty-P99"]) == pytest.approx(q["uncertainty_p99"], abs=1e-3)
    bad = httpx.post(server.url + "/v1/jobs", files={"file": ("in.png", _png(noise), "image/png")},
                     data={"fallback": "bicubic"}, timeout=30)
    assert bad.status_code == 422 and "report=true" in bad.json()["detail"]


@pytest.mark.skipif(not CHROMIUM.exists(), reason=f"no system Chromium at {CHROMIUM}")
def test_uncertainty_overlay_in_chromium(server: ServerProcess, data_dir: Path, tmp_path: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (test extra) is not installed")
    src = data_dir / "Set5" / "LR_bicubic" / "X4" / "birdx4.png"  # 72x72 -> 288x288
    w, h = Image.open(src).size
    outside: list[str] = []
    heat_requests: list[str] = []
    console_errors: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 1200})

            def on_request(r: Any) -> None:
                if not r.url.startswith((server.url, "blob:", "data:")):
                    outside.append(r.url)
                if r.url.endswith("/result?variant=uncertainty"):
                    heat_requests.append(r.url)

            page.on("request", on_request)
            page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
            page.goto(server.url + "/")
            page.wait_for_selector("#server-status.ok", timeout=30_000)
            page.check("#report")
            page.set_input_files("#file", str(src))
            item = page.locator(".item").first
            page.wait_for_selector(".item[data-status=done]", timeout=120_000)
            overlay = item.locator("img.uncertainty")
            assert not overlay.is_visible()  # off until asked for
            text = item.locator(".quality").inner_text()
            assert "NIQE" in text and "p99" in text
            item.locator(".show-uncertainty").check()
            assert overlay.is_visible()
            page.wait_for_function("e => e.complete && e.naturalWidth > 0", arg=overlay.element_handle(),
                                   timeout=10_000)
            natural = overlay.evaluate("e => [e.naturalWidth, e.naturalHeight, e.currentSrc]")
            box, result_box = overlay.bounding_box(), item.locator("img.after").bounding_box()
            shot = os.environ.get("SUPERRES_SCREENSHOT_UNCERTAINTY")
            if shot:
                Path(shot).parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=shot, full_page=True)
        finally:
            browser.close()
    assert natural[:2] == [4 * w, 4 * h]  # the heatmap has the output's size
    assert natural[2].startswith(server.url + "/v1/jobs/") and heat_requests  # loaded from the loopback server
    assert box is not None and result_box is not None
    assert abs(box["width"] - result_box["width"]) < 1 and abs(box["height"] - result_box["height"]) < 1
    assert outside == [] and console_errors == []
