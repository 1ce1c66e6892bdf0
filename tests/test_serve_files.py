"""The server and the user's files (issue 24, items 5, 8, 9, 13), against real ``superres serve`` processes
on loopback: ``--tmp-dir`` is the user's folder, so a server works only in a private folder of its own
and a stop removes only what it wrote there; two servers sharing the folder leave each other alone; a
killed server's leftovers are swept only when its owner is provably gone. Non-Latin upload names give a
200 and a result that downloads under the right name; a seed beyond 2^63-1 is a 422 (and a one-line CLI
error); an output side over 65,535 px is refused naming the side limit, not the pixel limit."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import numpy as np
import pytest

httpx = pytest.importorskip("httpx", reason="httpx is needed to talk to the server (test extra)")
pytest.importorskip("fastapi", reason="the serve extra (fastapi, uvicorn, python-multipart) is not installed")
pytest.importorskip("uvicorn", reason="the serve extra (uvicorn) is not installed")

from PIL import Image  # noqa: E402

from polling import wait_for  # noqa: E402
from superres.serve.launch import ServerProcess  # noqa: E402
from superres.serve.workdir import OWNER_FILE, PREFIX, Owner, WorkDir, sweep_dead  # noqa: E402

MODEL = "realesr-animevideov3"  # x4
REPO = Path(__file__).resolve().parents[1]


def png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    return buf.getvalue()


def noise(h: int, w: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)



def serve(base: Path, tmp_dir: Path, name: str) -> ServerProcess:
    env = {
        "SUPERRES_SERVE_TMP_DIR": str(tmp_dir),
        "SUPERRES_CACHE_DIR": str(base / "cache"),
        "SUPERRES_SERVE_LOG_LEVEL": "warning",
        "SUPERRES_SERVE_CONCURRENT_JOBS": "1",
    }
    return ServerProcess(["--models", MODEL], env=env, log_path=base / f"{name}.log")


def run_job(srv: ServerProcess, data: bytes, filename: str = "in.png") -> dict[str, Any]:
    r = httpx.post(srv.url + "/v1/jobs", files={"file": (filename, data, "image/png")}, timeout=60)
    assert r.status_code == 202, r.text
    url = srv.url + r.headers["location"]
    job = wait_for(lambda: (j := httpx.get(url).json())["status"] not in ("queued", "running") and j, 60, "the job")
    assert job["status"] == "done", job
    return job


def snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every path under ``folder`` with its bytes (None for folders)."""
    return {str(p.relative_to(folder)): (None if p.is_dir() else p.read_bytes()) for p in sorted(folder.rglob("*"))}


def user_files(folder: Path) -> None:
    """What a user may well keep in the folder they name with --tmp-dir."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "job-application.pdf").write_bytes(b"%PDF-1.4 my application")
    (folder / "upload-notes.part").write_bytes(b"half a download of mine")
    (folder / "job-42.png").write_bytes(png(noise(4, 4, seed=1)))
    (folder / f"{PREFIX}mine").mkdir()  # named like a server's folder, but no owner marker
    (folder / f"{PREFIX}mine" / "job-1.png").write_bytes(b"mine too")


# ---- the private work folder ------------------------------------------------------------------------------


def test_a_stop_keeps_user_files_and_other_servers_results(tmp_path: Path) -> None:
    """Two servers in one --tmp-dir full of the user's job-*/upload-* files: stopping one deletes none of
    the user's files and not the other's finished result; stopping both leaves the folder as it was."""
    tmp_dir = tmp_path / "shared-tmp"
    user_files(tmp_dir)
    before = snapshot(tmp_dir)
    data = png(noise(12, 10, seed=2))
    with serve(tmp_path, tmp_dir, "a") as a:
        with serve(tmp_path, tmp_dir, "b") as b:
            ours = [p for p in tmp_dir.iterdir() if p.name.startswith(PREFIX) and p.name != f"{PREFIX}mine"]
            assert len(ours) == 2 and all(p.stat().st_mode & 0o777 == 0o700 for p in ours)
            job_a = run_job(a, data)
            first = httpx.get(a.url + job_a["result_url"])
            assert first.status_code == 200
            run_job(b, data)
        # b stopped: a's finished result is still there, byte for byte, and the user's files too
        again = httpx.get(a.url + job_a["result_url"])
        assert again.status_code == 200 and again.content == first.content
        assert {k: v for k, v in snapshot(tmp_dir).items() if k in before} == before
        assert a.alive(), a.log()
    assert snapshot(tmp_dir) == before  # both stopped: only what the servers made is gone


def test_a_killed_servers_folder_is_swept_only_when_provably_dead(tmp_path: Path) -> None:
    """kill -9 leaves a server's folder; the next server on that --tmp-dir removes it because its owner
    marker names a dead process, and leaves alone folders whose owner lives or cannot be checked."""
    tmp_dir = tmp_path / "tmp"
    user_files(tmp_dir)
    alive = WorkDir.create(tmp_dir)  # owned by this (living) test process
    (alive.path / "job-live.png").write_bytes(b"in use")
    elsewhere = tmp_dir / f"{PREFIX}otherhost"
    elsewhere.mkdir()
    me = Owner.me()
    (elsewhere / OWNER_FILE).write_text(json.dumps({**me.__dict__, "host": me.host + "-not", "pid": 2**22 + 7}))
    before = snapshot(tmp_dir)
    with serve(tmp_path, tmp_dir, "killed") as k:
        run_job(k, png(noise(8, 8, seed=3)))
        killed = [p for p in tmp_dir.iterdir() if p.name.startswith(PREFIX) and p.name not in
                  {alive.path.name, elsewhere.name, f"{PREFIX}mine"}]
        assert len(killed) == 1 and any(n.name.startswith("job-") for n in killed[0].iterdir())
        assert k.proc is not None
        k.proc.kill()  # SIGKILL: no clean-up ran
        k.proc.wait()
    assert killed[0].exists()
    with serve(tmp_path, tmp_dir, "next"):
        assert not killed[0].exists()  # the dead server's folder is gone...
        assert {k: v for k, v in snapshot(tmp_dir).items() if k in before} == before  # ...and nothing else
    assert snapshot(tmp_dir) == before
    alive.remove()
    assert not alive.path.exists()


def test_sweep_needs_proof(tmp_path: Path) -> None:
    """Without a server: a reused pid (another start time) is dead, no marker or a link is never swept."""
    me = Owner.me()
    reused = tmp_path / f"{PREFIX}reused"
    reused.mkdir()
    (reused / OWNER_FILE).write_text(json.dumps({**me.__dict__, "started": "1"}))
    (reused / "upload-1.part").write_bytes(b"x")
    if me.started is None:
        pytest.skip("no /proc here: a process's start time cannot be read, so pid reuse cannot be proved")
    unmarked = tmp_path / f"{PREFIX}unmarked"
    unmarked.mkdir()
    (unmarked / "job-1.png").write_bytes(b"y")
    target = tmp_path / "target"
    target.mkdir()
    (target / OWNER_FILE).write_text(json.dumps({**me.__dict__, "started": "1"}))
    (target / "job-2.png").write_bytes(b"z")
    (tmp_path / f"{PREFIX}link").symlink_to(target, target_is_directory=True)
    container = tmp_path / f"{PREFIX}container"  # same host name, another pid namespace: pids mean nothing
    container.mkdir()
    (container / OWNER_FILE).write_text(json.dumps({**me.__dict__, "pid": 2**22 + 7, "pidns": "pid:[1]"}))
    (container / "job-3.png").write_bytes(b"w")
    assert sweep_dead(tmp_path) == [reused]
    assert not reused.exists()
    assert (unmarked / "job-1.png").exists() and (target / "job-2.png").exists()
    assert (container / "job-3.png").exists()


def test_bad_tmp_dir_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    r = subprocess.run([sys.executable, "-m", "superres.cli", "serve", "--tmp-dir", str(tmp_path / "file"),
                        "--models", MODEL, "--port", "0"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: --tmp-dir"), r.stderr


# ---- one server for names, seeds and limits ---------------------------------------------------------------


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    base = tmp_path_factory.mktemp("serve-files")
    with serve(base, base / "tmp", "srv") as s:
        yield s
        assert s.alive(), s.log()
        assert "Traceback" not in s.log(), s.log()


NAMES = ["猫の写真.png", "风景.png", "Жук и Муха.png", "🐱 cat.png", "café.png"]


def disposition(r: Any) -> tuple[str, str]:
    """The raw header bytes (must be ASCII) -> (the ASCII fallback, the name a browser uses)."""
    raw = dict(r.headers.raw)[b"content-disposition"]
    text = raw.decode("ascii")  # a header that is not ASCII fails here
    params = dict(p.strip().split("=", 1) for p in text.split(";")[1:])
    fallback = params["filename"]
    assert fallback.startswith('"') and fallback.endswith('"') and '"' not in fallback[1:-1] and "\\" not in fallback
    ext = params.get("filename*")
    if ext is None:
        return fallback[1:-1], fallback[1:-1]
    assert ext.startswith("UTF-8''")
    return fallback[1:-1], unquote(ext[len("UTF-8''"):], encoding="utf-8", errors="strict")


@pytest.mark.parametrize("name", NAMES)
def test_non_latin_upload_names(srv: ServerProcess, name: str) -> None:
    """POST /v1/upscale answers 200 (it was a 500), and a job's result downloads under the right name."""
    data = png(noise(6, 5, seed=4))
    stem = name.rsplit(".", 1)[0]
    expected_stem = {"Жук и Муха": "Жук_и_Муха", "🐱 cat": "🐱_cat"}
    stem = expected_stem.get(stem, stem)
    r = httpx.post(srv.url + "/v1/upscale", files={"file": (name, data, "image/png")}, timeout=60)
    assert r.status_code == 200, r.text
    fallback, browser = disposition(r)
    assert browser == f"{stem}_x4.png" and fallback.endswith("_x4.png"), (fallback, browser)
    assert r.headers["content-disposition"].startswith("inline;")
    job = run_job(srv, data, name)
    assert job["filename"] == name
    res = httpx.get(srv.url + job["result_url"])
    assert res.status_code == 200 and Image.open(io.BytesIO(res.content)).size == (20, 24)
    fallback, browser = disposition(res)
    assert browser == f"{stem}_{MODEL}.png" and res.headers["content-disposition"].startswith("attachment;")


@pytest.mark.parametrize("name", ['a"b\\c%d.png', "tab\there\r\n.png", "\u202egnp.exe", "ø" * 300 + ".png"])
def test_content_disposition_is_ascii_and_exact(name: str) -> None:
    """The header helper alone: ASCII whatever the name, no quote/backslash/percent/control character in
    the fallback, and ``filename*`` giving back the name without its control characters."""
    from superres.serve.filenames import content_disposition

    header = content_disposition(name)
    header.encode("ascii")
    fallback = header.split('filename="', 1)[1].split('"', 1)[0]
    assert not any(c in fallback for c in '"\\%') and fallback.isprintable() and fallback.endswith((".png", ".exe"))
    clean = "".join(c for c in name if c.isprintable() and c != "\u202e")
    ext = header.split("filename*=UTF-8''", 1)[1] if "filename*=" in header else None
    assert (unquote(ext) if ext is not None else fallback) == clean


def test_rfc5987_upload_name(srv: ServerProcess) -> None:
    """A client that sends only ``filename*=UTF-8''...`` in the upload gets its name back."""
    name = "Жук.png"
    head = (f'--b\r\nContent-Disposition: form-data; name="file"; filename*=UTF-8\'\'{quote(name)}\r\n'
            "Content-Type: image/png\r\n\r\n").encode()
    body = head + png(noise(5, 5, seed=5)) + b"\r\n--b--\r\n"
    r = httpx.post(srv.url + "/v1/jobs", content=body, headers={"content-type": "multipart/form-data; boundary=b"})
    assert r.status_code == 202 and r.json()["filename"] == name, r.text


def test_zssr_seed_is_bounded(srv: ServerProcess) -> None:
    """seed 2^63 and 2^64 are 422 naming the field (a job used to die with 'Overflow when unpacking long
    long'); 2^63-1 is accepted."""
    data = png(noise(24, 24, seed=6))
    for seed in (2**63, 2**64, -1):
        r = httpx.post(srv.url + "/v1/zssr", files={"file": ("a.png", data, "image/png")},
                       data={"seed": str(seed), "max_time": "0.2"}, timeout=60)
        assert r.status_code == 422 and r.json()["error"] == "invalid_options", r.text
        assert "seed" in r.json()["detail"] and "9223372036854775807" in r.json()["detail"], r.text
    r = httpx.post(srv.url + "/v1/zssr", files={"file": ("a.png", data, "image/png")},
                   data={"seed": str(2**63 - 1), "max_time": "0.2"}, timeout=60)
    assert r.status_code == 202, r.text
    url = srv.url + r.headers["location"]
    job = wait_for(lambda: (j := httpx.get(url).json())["status"] not in ("queued", "running") and j, 60, "zssr")
    assert job["status"] == "done", job


def test_side_limit_is_named(srv: ServerProcess) -> None:
    """An output 65,600 px wide (only 1 MP) is refused naming the 65,535 px side limit, not the pixel
    limit it is far below; a WebP over 16,383 px names WebP's limit, before any inference."""
    wide = png(noise(1, 4100, seed=7))
    r = httpx.post(srv.url + "/v1/upscale", files={"file": ("w.png", wide, "image/png")},
                   data={"outscale": "16"}, timeout=60)
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert "65600x16" in detail and "65,535 pixels" in detail and "limit of" not in detail, detail
    r = httpx.post(srv.url + "/v1/jobs", files={"file": ("w.png", png(noise(2, 1100, seed=8)), "image/png")},
                   data={"outscale": "16", "format": "webp"}, timeout=60)
    assert r.status_code == 202, r.text
    url = srv.url + r.headers["location"]
    job = wait_for(lambda: (j := httpx.get(url).json())["status"] not in ("queued", "running") and j, 60, "job")
    assert job["status"] == "failed" and job["error"]["error"] == "invalid_options", job
    assert "16,383" in job["error"]["detail"] and "WebP" in job["error"]["detail"], job
    assert job["started"] is not None and job["progress"] == 0.0  # refused before the first tile


# ---- the command line -------------------------------------------------------------------------------------


def test_cli_seed_out_of_range_is_one_line(tmp_path: Path) -> None:
    """``superres zssr --seed 2^64`` was a traceback; now one line, exit 2, and no output file."""
    img = tmp_path / "in.png"
    img.write_bytes(png(noise(24, 24, seed=9)))
    out = tmp_path / "out.png"
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    r = subprocess.run([sys.executable, "-m", "superres.cli", "zssr", str(img), "-o", str(out),
                        "--seed", str(2**64), "--max-time", "0.2"],
                       capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: --seed must be between 0 and 2^63-1"), r.stderr
    assert not out.exists() and not (tmp_path / "out.png.zssr").exists()


@pytest.mark.parametrize("argv", [
    ["zssr", "{img}", "-o", "{out}/z.png"],
    ["degrade", "{img}", "{out}"],
    ["distill", "--cache", "{out}/cache", "-o", "{out}"],
    ["prune", "espcn-s-x4", "-o", "{out}/p.safetensors"],
])
@pytest.mark.parametrize("seed", [2**64, 2**63, -1])
def test_every_seed_option_has_one_range(tmp_path: Path, argv: list[str], seed: int) -> None:
    """Every ``--seed`` on the command line: out of 0..2^63-1 is one ``error:`` line, exit 2, nothing
    written (in-process through the real typer app, so it is quick)."""
    from typer.testing import CliRunner

    from superres.cli import app

    img = tmp_path / "in.png"
    img.write_bytes(png(noise(24, 24, seed=10)))
    out = tmp_path / "out"
    args = [a.format(img=img, out=out) for a in argv] + ["--seed", str(seed)]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 2 and "Traceback" not in r.output, r.output
    lines = [line for line in r.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: --seed must be between 0 and 2^63-1"), r.output
    assert not out.exists()


def test_training_config_seed_has_the_same_range() -> None:
    from pydantic import ValidationError

    from superres.seeds import MAX_SEED
    from superres.train.config import TrainSection

    assert TrainSection(iterations=1, seed=MAX_SEED).seed == MAX_SEED
    for bad in (MAX_SEED + 1, -1):
        with pytest.raises(ValidationError, match="seed"):
            TrainSection(iterations=1, seed=bad)
