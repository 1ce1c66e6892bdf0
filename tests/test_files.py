"""The one sha256 helper and the one hash-pinned downloader (superres.files), exercised with local file://
URLs: no network. A download appears under its final name only when its hash is the pinned one."""

from __future__ import annotations

from pathlib import Path

import pytest

from superres.files import DownloadError, download_pinned, sha256_file


def test_download_pinned_keeps_only_matching_files(tmp_path: Path) -> None:
    src = tmp_path / "src.bin"
    src.write_bytes(b"weights" * 1000)
    digest = sha256_file(src)
    dest = tmp_path / "out" / "w.bin"
    assert download_pinned(src.as_uri(), dest, digest) == dest
    assert dest.read_bytes() == src.read_bytes()
    bad = tmp_path / "out" / "bad.bin"
    with pytest.raises(DownloadError, match="sha256"):
        download_pinned(src.as_uri(), bad, "0" * 64)
    with pytest.raises(DownloadError, match="expected prefix"):
        download_pinned(src.as_uri(), bad, sha256_prefix="ffff0000")
    with pytest.raises(DownloadError, match="failed"):
        download_pinned((tmp_path / "missing.bin").as_uri(), bad, digest)
    assert download_pinned(src.as_uri(), tmp_path / "out" / "p.bin", sha256_prefix=digest[:8]).is_file()
    assert sorted(p.name for p in dest.parent.iterdir()) == ["p.bin", "w.bin"]  # nothing partial left behind


def test_unpinned_download_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unpinned"):
        download_pinned((tmp_path / "x").as_uri(), tmp_path / "y")


def test_lpips_download_uses_the_pin(weights_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """LPIPS with allow_download fetches through download_pinned: a wrong pin leaves nothing behind."""
    from superres.metrics import lpips

    src = weights_dir / "lpips" / "lpips_v0.1_alex_lin.pth"
    good = lpips.WeightFile(names=("lin.pth",), url=src.as_uri(), sha256=lpips.LPIPS_FILES["alex"]["lin"].sha256)
    bad = lpips.WeightFile(names=("lin.pth",), url=src.as_uri(), sha256="0" * 64)
    monkeypatch.setenv("SUPERRES_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("SUPERRES_LPIPS_DIR", raising=False)
    monkeypatch.setitem(lpips.LPIPS_FILES, "alex", {**lpips.LPIPS_FILES["alex"], "lin": bad})
    with pytest.raises(DownloadError, match="sha256"):
        lpips.find_weights("alex", "lin", None, None, True)
    assert list(lpips.lpips_cache_dir().iterdir()) == []
    monkeypatch.setitem(lpips.LPIPS_FILES, "alex", {**lpips.LPIPS_FILES["alex"], "lin": good})
    path = lpips.find_weights("alex", "lin", None, None, True)
    assert path.read_bytes() == src.read_bytes()
