"""``POST /v1/video`` against a real ``superres serve`` process on loopback: a short clip upscaled as a job
(progress, download, audio kept, temporaries removed), refusals at submission, cancellation."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest

httpx = pytest.importorskip("httpx", reason="httpx is needed to talk to the server (test extra)")
pytest.importorskip("fastapi", reason="the serve extra (fastapi, uvicorn, python-multipart) is not installed")
av = pytest.importorskip("av", reason="video tests need PyAV (pip install 'superres[video]')")

from test_video import decode_all, make_clip  # noqa: E402

from polling import wait_for  # noqa: E402
from superres.serve.launch import ServerProcess  # noqa: E402

MODEL = "espcn-s-x4"


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    base = tmp_path_factory.mktemp("serve-video")
    env = {"SUPERRES_SERVE_TMP_DIR": str(base / "tmp"), "SUPERRES_SERVE_LOG_LEVEL": "warning",
           "SUPERRES_CACHE_DIR": str(tmp_path_factory.getbasetemp() / "superres-cache"),
           "SUPERRES_SERVE_MAX_BYTES": str(1 << 20), "SUPERRES_SERVE_MAX_PIXELS": str(256 * 256)}
    with ServerProcess(["--models", MODEL], env=env, log_path=base / "server.log") as s:
        s.tmp = base / "tmp"  # type: ignore[attr-defined]
        yield s
        assert s.alive(), s.log()


def _post(srv: ServerProcess, data: bytes, name: str = "clip.mp4", **fields: Any) -> Any:
    return httpx.post(srv.url + "/v1/video", files={"file": (name, data, "application/octet-stream")},
                      data={k: str(v) for k, v in fields.items()}, timeout=60)


def test_video_job_runs_downloads_and_cleans_up(srv: ServerProcess, tmp_path: Path) -> None:
    src = make_clip(tmp_path / "in.mp4", frames=6, size=(32, 24))
    r = _post(srv, src.read_bytes())
    assert r.status_code == 202, r.text
    url = srv.url + r.headers["location"]
    done = wait_for(lambda: (j := httpx.get(url).json())["status"] in ("done", "failed") and j, 120, "the job")
    assert done["status"] == "done" and done["progress"] == 1.0, done
    assert (done["width"], done["height"]) == (128, 96)
    res = httpx.get(srv.url + done["result_url"])
    assert res.status_code == 200 and res.headers["content-type"] == "video/mp4"
    out = tmp_path / "out.mp4"
    out.write_bytes(res.content)
    frames, pts, tb = decode_all(out)
    _, pts_in, tb_in = decode_all(src)
    assert len(frames) == 6 and frames[0].shape == (96, 128, 3)
    assert [p * tb for p in pts] == [p * tb_in for p in pts_in]
    with av.open(str(out)) as c:
        assert c.streams.audio and c.streams.audio[0].codec_context.name == "aac"
    assert httpx.delete(url).json()["status"] == "deleted"
    tmp: Path = srv.tmp  # type: ignore[attr-defined]
    assert sorted(p.name for p in tmp.iterdir() if p.is_file()) == []


def test_video_refusals_at_submission(srv: ServerProcess, tmp_path: Path) -> None:
    r = _post(srv, b"not a video at all" * 20)
    assert r.status_code == 415 and r.json()["error"] == "unsupported_media_type", r.text
    big = make_clip(tmp_path / "big.mp4", frames=2, size=(320, 240), audio=None)  # 76800 px > 65536
    r = _post(srv, big.read_bytes())
    assert r.status_code == 413 and r.json()["error"] == "image_too_large", r.text
    import io

    from PIL import Image

    jpeg = io.BytesIO()
    Image.new("RGB", (32, 24), (200, 40, 60)).save(jpeg, "JPEG")
    r = _post(srv, jpeg.getvalue(), "photo.jpg")  # FFmpeg reads it as a one-frame video: so do we
    assert r.status_code == 202, r.text
    url = srv.url + r.headers["location"]
    done = wait_for(lambda: (j := httpx.get(url).json())["status"] in ("done", "failed") and j, 120, "the job")
    assert done["status"] == "done" and (done["width"], done["height"]) == (128, 96), done
    assert httpx.get(srv.url + done["result_url"]).headers["content-type"] == "video/mp4"


def test_web_page_takes_a_short_video(srv: ServerProcess, tmp_path: Path) -> None:
    """In headless Chromium: a clip chosen on the page goes to /v1/video and comes back in a player with a
    download link; no request leaves the server, no console error (the CSP lets the page play blob: media)."""
    from browser import ARGS, CHROMIUM  # tests/browser.py

    if not CHROMIUM.exists():
        pytest.skip(f"no system Chromium at {CHROMIUM} (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (test extra) is not installed")
    src = make_clip(tmp_path / "clip.mp4", frames=4, size=(32, 24))
    outside: list[str] = []
    console_errors: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        try:
            page = browser.new_page()
            page.on("request", lambda r: None if r.url.startswith((srv.url, "blob:", "data:"))
                    else outside.append(r.url))
            page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
            page.goto(srv.url + "/")
            page.wait_for_selector("#server-status.ok", timeout=30_000)
            page.set_input_files("#file", str(src))
            page.wait_for_selector(".item[data-status=done]", timeout=120_000)
            assert page.locator(".item video.result-video").count() == 1
            assert page.get_attribute(".item .download", "download") == f"clip_{MODEL}.mp4"
            assert "128 × 96" in page.locator(".item .size").inner_text()
        finally:
            browser.close()
    assert outside == [] and console_errors == [], (outside, console_errors)
