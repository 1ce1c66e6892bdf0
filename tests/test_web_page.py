"""The web page in a real headless Chromium (Playwright driving the system /usr/bin/chromium): pick a Set5
image, wait for the job, compare, download, and check the downloaded image's size. No request may leave
the loopback server. Set SUPERRES_SCREENSHOT=path.png to keep a screenshot."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterator

import pytest

from browser import ARGS, CHROMIUM  # noqa: E402 - tests/browser.py
if not CHROMIUM.exists():
    pytest.skip(f"no system Chromium at {CHROMIUM} (apt-get install chromium)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (test extra) is not installed")
pytest.importorskip("fastapi", reason="the serve extra is not installed")

from PIL import Image  # noqa: E402

from superres.serve.launch import ServerProcess  # noqa: E402

STATIC = Path(__file__).resolve().parents[1] / "src" / "superres" / "serve" / "static"


def test_static_assets_reference_nothing_external() -> None:
    for f in STATIC.iterdir():
        text = f.read_text().replace(
            'xmlns="http://www.w3.org/2000/svg"', ""
        )  # a namespace name, never fetched
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text, re.IGNORECASE), (
            f"{f.name} references a remote URL"
        )


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    base = tmp_path_factory.mktemp("serve-web")
    env = {
        "SUPERRES_SERVE_TMP_DIR": str(base / "tmp"),
        "SUPERRES_SERVE_LOG_LEVEL": "warning",
        "SUPERRES_CACHE_DIR": str(tmp_path_factory.getbasetemp() / "superres-cache"),
    }
    with ServerProcess(["--models", "realesr-animevideov3"], env=env, log_path=base / "server.log") as s:
        yield s


def test_upload_compare_download_in_chromium(server: ServerProcess, data_dir: Path, tmp_path: Path) -> None:
    src = data_dir / "Set5" / "LR_bicubic" / "X2" / "butterflyx2.png"  # 128x128
    w, h = Image.open(src).size
    outside: list[str] = []
    console_errors: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        try:
            page = browser.new_page(accept_downloads=True, viewport={"width": 1100, "height": 900})
            page.on(
                "request",
                lambda r: None if r.url.startswith((server.url, "blob:", "data:")) else outside.append(r.url),
            )
            page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
            page.goto(server.url + "/")
            page.wait_for_selector("#server-status.ok", timeout=30_000)
            assert page.locator("#model option").count() == 1
            page.select_option("#scale", "2")
            page.set_input_files("#file", str(src))
            item = page.locator(".item").first
            page.wait_for_selector(".item[data-status=done]", timeout=60_000)
            assert item.locator(".size").inner_text().startswith(f"{2 * w} × {2 * h}")
            assert item.locator(".compare").is_visible()
            item.locator(".slider").fill("30")  # the comparison follows the slider
            clip = item.locator(".before-wrap").evaluate("e => e.style.clipPath")
            assert clip == "inset(0px 70% 0px 0px)", clip
            with page.expect_download() as dl:
                item.locator("a.download").click()
            saved = tmp_path / dl.value.suggested_filename
            dl.value.save_as(saved)
            shot = os.environ.get("SUPERRES_SCREENSHOT")
            if shot:
                Path(shot).parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=shot, full_page=True)
        finally:
            browser.close()
    assert saved.name == "butterflyx2_realesr-animevideov3.png"
    assert Image.open(saved).size == (2 * w, 2 * h)
    assert outside == [] and console_errors == []
