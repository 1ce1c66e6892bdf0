"""``POST /v1/zssr`` against a real ``superres serve`` process: a job that trains on the uploaded image and
returns it upscaled through the ordinary job endpoints; bad options and too-small images refused."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

httpx = pytest.importorskip("httpx", reason="httpx is needed to talk to the server (test extra)")
pytest.importorskip("fastapi", reason="the serve extra (fastapi, uvicorn, python-multipart) is not installed")
pytest.importorskip("uvicorn", reason="the serve extra (uvicorn) is not installed")

from PIL import Image

from superres.serve.launch import ServerProcess


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    base = tmp_path_factory.mktemp("serve-zssr")
    env = {"SUPERRES_SERVE_TMP_DIR": str(base / "tmp"), "SUPERRES_CACHE_DIR": str(base / "cache"),
           "SUPERRES_SERVE_LOG_LEVEL": "warning", "SUPERRES_SERVE_CONCURRENT_JOBS": "1"}
    with ServerProcess(["--models", "espcn-s-x4"], env=env, log_path=base / "server.log") as s:
        yield s
        assert s.alive(), s.log()


def _post(srv: ServerProcess, data: bytes, **fields: Any) -> Any:
    return httpx.post(srv.url + "/v1/zssr", files={"file": ("in.png", data, "image/png")},
                      data={k: str(v) for k, v in fields.items()}, timeout=30)


def test_zssr_job_runs_and_returns_the_upscaled_image(srv: ServerProcess, data_dir: Path) -> None:
    with Image.open(data_dir / "Set5" / "LR_bicubic" / "X4" / "birdx4.png") as im:
        data = _png(np.asarray(im.convert("RGB"))[:40, :48])
    r = _post(srv, data, scale=2, max_time=1.5)
    assert r.status_code == 202, r.text
    url = srv.url + r.headers["location"]
    deadline = time.monotonic() + 120
    while (job := httpx.get(url).json())["status"] in ("queued", "running") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert job["status"] == "done", job
    assert (job["width"], job["height"]) == (96, 80) and job["model"] == "zssr-x2"
    res = httpx.get(srv.url + job["result_url"])
    assert res.status_code == 200 and res.headers["content-type"] == "image/png"
    with Image.open(io.BytesIO(res.content)) as out:
        assert out.size == (96, 80)
    assert httpx.delete(url).json()["status"] == "deleted"


def test_zssr_refusals(srv: ServerProcess) -> None:
    ok = _png(np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8))
    for fields, text in (({"scale": 5}, "scale"), ({"max_time": 0}, "max_time"),
                         ({"max_time": 100000}, "max_time"), ({"kernel": "gauss"}, "kernel")):
        r = _post(srv, ok, **fields)
        assert r.status_code == 422 and r.json()["error"] == "invalid_options" and text in r.json()["detail"], r.text
    tiny = _png(np.zeros((10, 12, 3), np.uint8))
    r = _post(srv, tiny, scale=2, max_time=1)
    assert r.status_code == 202, r.text
    url = srv.url + r.headers["location"]
    deadline = time.monotonic() + 60
    while (job := httpx.get(url).json())["status"] in ("queued", "running") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert job["status"] == "failed" and "too small for ZSSR x2" in job["error"]["detail"], job
