"""The HTTP API against a real ``superres serve`` process on loopback: every endpoint, every limit and
error code, a client that vanishes mid-upload, cancellation, expiry, and concurrent clients each getting
exactly their own image."""

from __future__ import annotations

import io
import socket
import struct
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest

httpx = pytest.importorskip("httpx", reason="httpx is needed to talk to the server (test extra)")
pytest.importorskip("fastapi", reason="the serve extra (fastapi, uvicorn, python-multipart) is not installed")
pytest.importorskip("uvicorn", reason="the serve extra (uvicorn) is not installed")

from PIL import Image  # noqa: E402

from polling import wait_for  # noqa: E402
from superres.serve.launch import ServerProcess  # noqa: E402

MODEL = "realesr-animevideov3"


# ---- helpers --------------------------------------------------------------------------------------------


def png_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    return buf.getvalue()


def decode(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


def noise(h: int, w: int, seed: int, channels: int = 3) -> np.ndarray:
    shape = (h, w, channels) if channels > 1 else (h, w)
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def gradient(h: int, w: int) -> np.ndarray:
    """Compresses well, so large images fit small upload limits."""
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([(x * 255 // max(1, w - 1)), (y * 255 // max(1, h - 1)), ((x + y) % 256)], -1).astype(
        np.uint8
    )


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


def zero_png(w: int, h: int) -> bytes:
    """A real grey PNG of zeros: tiny on disk, ``w*h`` pixels when decoded (a decompression bomb)."""
    comp = zlib.compressobj(9)
    row = b"\x00" * (w + 1)
    idat = b"".join(comp.compress(row) for _ in range(h)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")
    )


def header_bomb(w: int, h: int) -> bytes:
    """Only a header declaring a gigantic image, then garbage."""
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", b"\x78\x9c" + b"\x00" * 64)



def temp_files(tmp: Path) -> list[str]:
    """The server's files: in its private folder inside --tmp-dir (serve/workdir.py), or beside it."""
    found = list(tmp.iterdir()) + list(tmp.glob("superres-serve-*/*"))
    return sorted(p.name for p in found if p.name.startswith(("upload-", "job-", ".job-")))


def assert_error(r: Any, status: int, error: str | None = None) -> dict[str, str]:
    assert r.status_code == status, (r.status_code, r.text[:300])
    body = r.json()
    assert set(body) == {"error", "detail"} and body["detail"], body
    if error is not None:
        assert body["error"] == error, body
    return body


# ---- fixtures -------------------------------------------------------------------------------------------


def _env(tmp: Path, cache: Path, **limits: Any) -> dict[str, str]:
    env = {
        "SUPERRES_SERVE_TMP_DIR": str(tmp),
        "SUPERRES_CACHE_DIR": str(cache),
        "SUPERRES_SERVE_LOG_LEVEL": "warning",
    }
    env.update({f"SUPERRES_SERVE_{k.upper()}": str(v) for k, v in limits.items()})
    return env


def _serve(factory: pytest.TempPathFactory, name: str, **limits: Any) -> Iterator[ServerProcess]:
    """A server process with these limits, its temp folder as ``.tmp``; checked alive at the end."""
    base = factory.mktemp(name)
    env = _env(base / "tmp", factory.getbasetemp() / "superres-cache", **limits)
    with ServerProcess(["--models", MODEL], env=env, log_path=base / "server.log") as s:
        s.tmp = base / "tmp"  # type: ignore[attr-defined]
        yield s
        assert s.alive(), s.log()


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    yield from _serve(
        tmp_path_factory,
        "serve-main",
        max_bytes=1 << 20,
        max_pixels=1024 * 1024,
        sync_max_pixels=256 * 256,
        concurrent_jobs=2,
        queue_length=64,
        job_ttl=120,
    )


@pytest.fixture(scope="module")
def tight(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One inference thread, one queue slot, short timeout and TTL: limits are reachable in a test."""
    yield from _serve(
        tmp_path_factory,
        "serve-tight",
        max_bytes=16 << 20,
        max_pixels=4 << 20,
        concurrent_jobs=1,
        queue_length=1,
        job_ttl=2,
        request_timeout=1.5,
        tile=96,
    )


@pytest.fixture(scope="module")
def patient(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One inference thread and a long request timeout: only a client disconnect can stop a request."""
    yield from _serve(
        tmp_path_factory,
        "serve-patient",
        max_bytes=32 << 20,
        max_pixels=4 << 20,
        sync_max_pixels=4 << 20,
        concurrent_jobs=1,
        queue_length=4,
        request_timeout=300,
        tile=96,
    )


@pytest.fixture(scope="module")
def direct() -> Any:
    """The same model called directly in this process: the reference for every response."""
    from superres.loading import load_model

    return load_model(MODEL, device="cpu")


def reference(up: Any, data: bytes, fmt: str = "png", **kw: Any) -> np.ndarray:
    from superres.io.image import encode_image, read_image_bytes

    return decode(encode_image(up.upscale_image(read_image_bytes(data), **kw), fmt))


def post(url: str, data: bytes, name: str = "in.png", timeout: float = 60, **fields: Any) -> Any:
    return httpx.post(
        url,
        files={"file": (name, data, "application/octet-stream")},
        data={k: str(v) for k, v in fields.items()},
        timeout=timeout,
    )


# ---- endpoints ------------------------------------------------------------------------------------------


def test_health_ready_models_spec_and_page(srv: ServerProcess) -> None:
    health = httpx.get(srv.url + "/healthz")
    assert health.json() == {"status": "ok"} and health.headers["x-content-type-options"] == "nosniff"
    ready = httpx.get(srv.url + "/readyz").json()
    assert ready["status"] == "ready" and ready["models"] == [MODEL] and ready["capacity"] == 66
    models = httpx.get(srv.url + "/v1/models").json()
    assert models["default"] == MODEL and models["models"][0]["scale"] == 4 and models["models"][0]["loaded"]
    assert models["limits"]["max_bytes"] == 1 << 20
    spec = httpx.get(srv.url + "/openapi.json").json()
    assert {
        "/v1/upscale",
        "/v1/jobs",
        "/v1/jobs/{job_id}",
        "/v1/jobs/{job_id}/result",
        "/v1/models",
        "/healthz",
        "/readyz",
    } <= set(spec["paths"])
    body = spec["paths"]["/v1/upscale"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    model_field = body["properties"]["model"]["anyOf"]  # a served name, or empty (= the default)
    assert body["required"] == ["file"] and model_field[0]["enum"] == [MODEL] and model_field[1]["maxLength"] == 0
    page = httpx.get(srv.url + "/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert httpx.get(srv.url + "/static/app.js").status_code == 200
    assert_error(httpx.get(srv.url + "/nope"), 404, "not_found")
    assert_error(httpx.get(srv.url + "/v1/upscale"), 405)


def test_upscale_is_pixel_exact(srv: ServerProcess, direct: Any, data_dir: Path) -> None:
    data = (data_dir / "Set5" / "LR_bicubic" / "X4" / "birdx4.png").read_bytes()
    r = post(srv.url + "/v1/upscale", data, "bird.png", model=MODEL)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/png" and r.headers["x-superres-model"] == MODEL
    out = decode(r.content)
    assert out.shape == (288, 288, 3) and r.headers["x-image-size"] == "288x288"
    np.testing.assert_array_equal(out, reference(direct, data))


@pytest.mark.parametrize(
    ("fields", "ctype", "size"),
    [
        ({"outscale": 2}, "image/png", (64, 48)),
        ({"scale": "x3", "format": "jpeg"}, "image/jpeg", (96, 72)),
        ({"width": 50, "format": "webp"}, "image/webp", (50, 38)),
        ({"format": "auto"}, "image/png", (128, 96)),
        ({"format": "tiff"}, "image/tiff", (128, 96)),
    ],
)
def test_upscale_options(
    srv: ServerProcess, direct: Any, fields: dict[str, Any], ctype: str, size: tuple[int, int]
) -> None:
    data = png_bytes(noise(24, 32, seed=3))
    r = post(srv.url + "/v1/upscale", data, **fields)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == ctype
    assert Image.open(io.BytesIO(r.content)).size == size
    if ctype in ("image/png", "image/tiff"):  # lossless: equal to the direct call with the same size
        np.testing.assert_array_equal(
            decode(r.content), reference(direct, data, width=size[0], height=size[1])
        )


# ---- limits and errors ----------------------------------------------------------------------------------


def test_refusals(srv: ServerProcess, data_dir: Path) -> None:
    url = srv.url + "/v1/upscale"
    good = png_bytes(noise(16, 16, seed=1))
    truncated = (data_dir / "Set5" / "LR_bicubic" / "X4" / "babyx4.png").read_bytes()
    truncated = truncated[: len(truncated) // 2]
    rgba = png_bytes(noise(16, 16, seed=2, channels=4))
    cases = [
        (post(url, b"hello, I am text\n", "notes.txt"), 415, "unsupported_media_type"),
        (post(url, b"", "empty.png"), 415, "unsupported_media_type"),
        (httpx.post(url, json={"file": "x"}), 415, "unsupported_media_type"),
        (post(url, truncated, "cut.png"), 422, "corrupt_image"),
        (post(url, header_bomb(100_000, 100_000), "bomb.png"), 413, "image_too_large"),
        (post(url, zero_png(4000, 4000), "zeros.png"), 413, "image_too_large"),
        (post(url, png_bytes(gradient(300, 300)), "big.png"), 413, "image_too_large"),  # over the sync limit
        (post(url, good, model="no-such-model"), 422, "unknown_model"),
        (post(url, good, outscale="abc"), 422, "invalid_options"),
        (post(url, good, outscale=0), 422, "invalid_options"),
        (post(url, good, outscale=100), 422, "invalid_options"),
        (post(url, good, outscale="1e-9"), 422, "invalid_options"),  # was a 1x1 image
        (post(url, good, outscale="nan"), 422, "invalid_options"),
        (post(url, good, outscale="inf"), 422, "invalid_options"),
        (post(url, good, width=0), 422, "invalid_options"),
        (post(url, good, format="gif"), 422, "invalid_options"),
        (post(url, good, outscale=2, width=10), 422, "invalid_options"),
        (post(url, rgba, format="jpeg"), 422, "invalid_options"),
        (httpx.post(url, data={"model": MODEL}, files={"other": ("a.png", good)}), 422, "missing_file"),
        (
            httpx.post(
                url, content=b"--x\r\nbroken", headers={"content-type": "multipart/form-data; boundary=x"}
            ),
            422,
            None,
        ),
    ]
    for r, status, error in cases:
        assert_error(r, status, error)
    sync_limit = post(url, png_bytes(gradient(300, 300))).json()["detail"]
    assert "/v1/jobs" in sync_limit
    # the same 300x300 image is fine as a job; the bomb is refused there too
    assert_error(post(srv.url + "/v1/jobs", zero_png(4000, 4000)), 413, "image_too_large")
    assert temp_files(srv.tmp) == []  # type: ignore[attr-defined]


def test_oversize_bodies_are_413(srv: ServerProcess) -> None:
    url = srv.url + "/v1/upscale"
    big = noise(700, 700, seed=5).tobytes()[: (1 << 20) + 50_000]
    assert_error(post(url, big, "big.png"), 413, "request_too_large")  # known Content-Length

    def chunks() -> Iterator[bytes]:  # chunked: the limit is counted while the body streams in
        yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="x.png"\r\n\r\n'
        for _ in range(20):
            yield b"\x00" * 65536
        yield b"\r\n--b--\r\n"

    r = httpx.post(url, content=chunks(), headers={"content-type": "multipart/form-data; boundary=b"})
    assert_error(r, 413, "request_too_large")
    assert httpx.get(srv.url + "/healthz").status_code == 200
    assert temp_files(srv.tmp) == []  # type: ignore[attr-defined]


def test_client_disconnect_mid_upload_leaves_nothing(srv: ServerProcess) -> None:
    tmp: Path = srv.tmp  # type: ignore[attr-defined]
    head = (
        b'--zz\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n'
        b"Content-Type: image/png\r\n\r\n"
    )
    sock = socket.create_connection(("127.0.0.1", srv.port))
    try:
        sock.sendall(
            b"POST /v1/upscale HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=zz\r\n"
            b"Content-Length: 900000\r\n\r\n" + head + b"\x89PNG" + b"\x00" * 200_000
        )
        wait_for(lambda: [n for n in temp_files(tmp) if n.startswith("upload-")], 15, "the spooled upload")
    finally:
        sock.close()
    wait_for(lambda: temp_files(tmp) == [], 15, "the spooled upload to be removed")
    r = post(srv.url + "/v1/upscale", png_bytes(noise(8, 8, seed=9)))
    assert r.status_code == 200 and srv.alive()


# ---- jobs ---------------------------------------------------------------------------------------------


def test_job_lifecycle(srv: ServerProcess, direct: Any) -> None:
    tmp: Path = srv.tmp  # type: ignore[attr-defined]
    data = png_bytes(gradient(260, 300))  # over the sync limit, fine for a job
    r = post(srv.url + "/v1/jobs", data, "grad.png", outscale=2)
    assert r.status_code == 202, r.text
    job = r.json()
    assert r.headers["location"] == f"/v1/jobs/{job['id']}" and job["status"] in ("queued", "running", "done")
    url = srv.url + r.headers["location"]
    done = wait_for(lambda: (j := httpx.get(url).json())["status"] in ("done", "failed") and j, 60, "the job")
    assert (
        done["status"] == "done" and done["progress"] == 1.0 and (done["width"], done["height"]) == (600, 520)
    )
    assert done["result_url"] == f"/v1/jobs/{job['id']}/result" and done["expires"] > done["finished"]
    res = httpx.get(srv.url + done["result_url"])
    assert res.status_code == 200 and res.headers["content-type"] == "image/png"
    assert "attachment" in res.headers["content-disposition"]
    np.testing.assert_array_equal(decode(res.content), reference(direct, data, outscale=2))
    assert [n for n in temp_files(tmp) if n.startswith("job-")] == [f"job-{job['id']}.png"]
    gone = httpx.delete(url).json()
    assert gone["status"] == "deleted" and gone["result_url"] is None
    assert temp_files(tmp) == []
    assert_error(httpx.get(url), 404, "job_not_found")  # a deleted job is forgotten
    assert_error(httpx.get(srv.url + done["result_url"]), 404, "job_not_found")
    assert_error(httpx.get(srv.url + "/v1/jobs/0123"), 404, "job_not_found")
    assert_error(httpx.delete(srv.url + "/v1/jobs/0123"), 404, "job_not_found")
    assert_error(post(srv.url + "/v1/jobs", b"\x89PNG\r\n\x1a\n" + b"junk" * 10), 422, "corrupt_image")
    assert_error(post(srv.url + "/v1/jobs", b"plain text"), 415, "unsupported_media_type")
    whole = png_bytes(gradient(200, 200))
    failed = post(srv.url + "/v1/jobs", whole[: len(whole) // 2])  # the header is fine, the pixels are cut
    assert failed.status_code == 202, failed.text
    fj = wait_for(
        lambda: (
            (j := httpx.get(srv.url + f"/v1/jobs/{failed.json()['id']}").json())["status"]
            not in ("queued", "running")
            and j
        ),
        30,
        "the broken job",
    )
    assert fj["status"] == "failed" and fj["error"]["error"] == "corrupt_image"


def test_queue_full_progress_cancel_and_timeout(tight: ServerProcess) -> None:
    url = tight.url
    big = png_bytes(gradient(1400, 1400))
    a = post(url + "/v1/jobs", big, "a.png").json()
    running = wait_for(
        lambda: (j := httpx.get(f"{url}/v1/jobs/{a['id']}").json())["progress"] > 0.05 and j,
        60,
        "job A to make progress",
    )
    assert running["status"] == "running" and 0 < running["progress"] < 1
    b = post(url + "/v1/jobs", png_bytes(noise(8, 8, seed=1)), "b.png").json()
    assert b["status"] == "queued"
    full = post(url + "/v1/upscale", png_bytes(noise(8, 8, seed=2)))
    assert_error(full, 429, "queue_full")
    assert full.headers["retry-after"]
    assert_error(post(url + "/v1/jobs", png_bytes(noise(8, 8, seed=2))), 429, "queue_full")
    assert_error(httpx.get(url + "/readyz"), 503, "overloaded")
    assert_error(httpx.get(f"{url}/v1/jobs/{b['id']}/result"), 409, "job_not_done")
    assert httpx.delete(f"{url}/v1/jobs/{b['id']}").json()["status"] == "cancelled"
    cancelled = httpx.delete(f"{url}/v1/jobs/{a['id']}").json()
    assert cancelled["status"] == "cancelled" and cancelled["progress"] < 1
    assert_error(httpx.get(f"{url}/v1/jobs/{a['id']}"), 404, "job_not_found")
    # the running job stops between tiles: its thread and queue slot come back long before it would finish
    wait_for(lambda: httpx.get(url + "/readyz").status_code == 200, 30, "capacity to come back")
    assert post(url + "/v1/upscale", png_bytes(noise(8, 8, seed=3))).status_code == 200
    # a synchronous request over the time limit is answered 503 and its work is stopped
    slow = post(url + "/v1/upscale", png_bytes(gradient(900, 900)), timeout=60)
    assert_error(slow, 503, "timeout")
    wait_for(lambda: httpx.get(url + "/readyz").status_code == 200, 30, "the timed-out work to stop")
    assert post(url + "/v1/upscale", png_bytes(noise(8, 8, seed=2))).status_code == 200
    assert temp_files(tight.tmp) == [] or all(n.startswith("job-") for n in temp_files(tight.tmp))  # type: ignore[attr-defined]


def test_client_disconnect_stops_its_inference(patient: ServerProcess) -> None:
    """A client that gives up mid-inference frees the worker (between tiles), instead of holding it
    for the whole image: a 2000x2000 upscale takes well over 10 s on this CPU with one thread."""
    url = patient.url + "/v1/upscale"
    with pytest.raises(httpx.TimeoutException):
        post(url, png_bytes(gradient(2000, 2000)), timeout=2.0)  # the client hangs up after 2 s
    gone = time.monotonic()
    small = post(url, png_bytes(noise(8, 8, seed=7)), timeout=60)  # waits for the only worker
    assert small.status_code == 200
    assert time.monotonic() - gone < 5.0, "the abandoned request kept the worker busy"


def test_job_results_expire(tight: ServerProcess) -> None:
    tmp: Path = tight.tmp  # type: ignore[attr-defined]
    job = post(tight.url + "/v1/jobs", png_bytes(noise(8, 8, seed=4))).json()
    url = f"{tight.url}/v1/jobs/{job['id']}"
    wait_for(lambda: httpx.get(url).json()["status"] == "done", 30, "the job")
    assert f"job-{job['id']}.png" in temp_files(tmp)
    wait_for(lambda: httpx.get(url).status_code == 404, 20, "the job to expire")  # TTL 2 s
    wait_for(lambda: temp_files(tmp) == [], 10, "expired results to be deleted")


# ---- concurrency ----------------------------------------------------------------------------------------


def test_concurrent_clients_each_get_their_own_image(srv: ServerProcess, direct: Any) -> None:
    rng = np.random.default_rng(0)
    sizes = [(int(rng.integers(6, 56)), int(rng.integers(6, 56))) for _ in range(16)]
    inputs = [png_bytes(noise(h, w, seed=100 + i)) for i, (h, w) in enumerate(sizes)]
    expected = [reference(direct, d) for d in inputs]
    order = [i % len(inputs) for i in range(48)]

    def one(i: int) -> tuple[int, int, bytes]:
        with httpx.Client(timeout=120) as c:
            r = c.post(srv.url + "/v1/upscale", files={"file": (f"{i}.png", inputs[i], "image/png")})
            return i, r.status_code, r.content

    with ThreadPoolExecutor(12) as pool:
        results = list(pool.map(one, order))
    assert [s for _, s, _ in results] == [200] * len(order)
    for i, _, content in results:
        np.testing.assert_array_equal(decode(content), expected[i])
