"""Shared fixtures: where the real data and weights live, and skips with a stated reason when absent."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SUPERRES_SHARED", REPO.parent / "shared"))


def _need(path: Path, what: str) -> Path:
    if not path.exists():
        pytest.skip(f"{what} not found at {path} (set SUPERRES_SHARED to the shared/ folder)")
    return path


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """../shared/data: Set5, Set14 (with MATLAB-bicubic LR), BSD100, T91, BSD200."""
    return _need(SHARED / "data", "benchmark data")


@pytest.fixture(scope="session")
def weights_dir() -> Path:
    """../shared/weights: LPIPS, NIQE, Real-ESRGAN and OpenCV super-resolution weights."""
    return _need(SHARED / "weights", "reference weights")


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep converted-weight caches per test session, never in the user's home."""
    cache = tmp_path_factory.getbasetemp() / "superres-cache"
    monkeypatch.setenv("SUPERRES_CACHE_DIR", str(cache))


@pytest.fixture(scope="session", autouse=True)
def _pinned_auto_backend_for_the_session() -> Iterator[None]:
    """The same pin for module- and session-scoped fixtures, which pytest sets up before the per-test one
    below: a reference run made there (tests/test_cli_safety.py's clean batch) must use the backend the
    test's own run uses, and must not time backends into the user's cache."""
    before = os.environ.get("SUPERRES_AUTO_BACKEND")
    os.environ["SUPERRES_AUTO_BACKEND"] = "torch"
    yield
    if before is None:
        os.environ.pop("SUPERRES_AUTO_BACKEND", None)
    else:
        os.environ["SUPERRES_AUTO_BACKEND"] = before


@pytest.fixture(autouse=True)
def _pinned_auto_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    """``--backend auto`` (the CLI's default) times ONNX Runtime and OpenVINO against the engine on a model's
    first use: the suite runs the torch backend instead, except in the tests of auto, which unpin it."""
    monkeypatch.setenv("SUPERRES_AUTO_BACKEND", "torch")
