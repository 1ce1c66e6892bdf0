"""Training datasets: random aligned (LR, HR) patches from folders, and the validation pairs.

Why these choices:

* every image is decoded once, at construction, into uint8 arrays held in memory (T91 + BSD200 is about
  100 MB). Decoding PNGs per sample would dominate a CPU training step, and DataLoader worker processes
  inherit the decoded arrays (fork) or receive them once (spawn) instead of re-reading files;
* everything that can be checked before training is checked at construction (missing or empty folders,
  unmatched names, sizes that do not fit the crop) and reported as one-line :class:`DatasetError`s, so a bad
  config fails in a second, not an hour in;
* crops are taken on the LR pixel grid: LR pixel ``(i, j)`` is HR block ``[i s, (i+1) s) x [j s, (j+1) s)``,
  the same alignment as MATLAB's ``imresize`` of a top-left-modcropped image, so a synthesised LR patch is
  bit-identical to the same window of the whole image's bicubic LR (see :class:`HRFolderDataset`);
* randomness: with ``seed`` given, each item's crop and augmentation come from ``(seed, epoch, index)``, so
  results do not depend on the number of workers and a resumed run sees the same patches (call
  :meth:`set_epoch`). Without a seed, the torch RNG is used, which DataLoader seeds differently in every
  worker; :func:`seed_worker` also seeds ``random`` and numpy there for any user code.

Items are dicts ``{"hr": C x H x W float32, "lr": C x h x w float32, "name": str}`` in [0, 1], RGB (gray
files are repeated to three channels, alpha is dropped).
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import DatasetError, SuperresError
from .catalogue import IMAGE_SUFFIXES

__all__ = [
    "IMAGE_SUFFIXES",
    "HRFolderDataset",
    "PairedFolderDataset",
    "ValidationSet",
    "augment",
    "list_images",
    "load_rgb",
    "seed_worker",
]


# LR pixels of context kept around a crop before synthesising its LR: MATLAB's x1/s bicubic reaches 2 LR
# pixels (4 s HR pixels of support) to each side, so with 3 the LR crop equals that window of the full
# image's LR.
_CONTEXT = 3


def list_images(folder: str | os.PathLike[str], what: str = "image") -> list[Path]:
    """The image files directly in ``folder`` (sorted, hidden files skipped), or a DatasetError."""
    p = Path(folder).expanduser()
    if not p.exists():
        raise DatasetError(f"{what} folder not found: '{p}'")
    if not p.is_dir():
        raise DatasetError(f"{what} folder is not a folder: '{p}'")
    files = sorted(
        f
        for f in p.iterdir()
        if f.is_file() and not f.name.startswith(".") and f.suffix.lower() in IMAGE_SUFFIXES
    )
    if not files:
        raise DatasetError(f"{what} folder '{p}' holds no images ({', '.join(IMAGE_SUFFIXES)})")
    return files


def load_rgb(path: Path) -> np.ndarray:
    """Decode to uint8 H x W x 3 (gray repeated, alpha dropped, EXIF rotation applied), or DatasetError."""
    from ..io.image import read_image, to_uint

    try:
        img = read_image(path)
    except SuperresError as e:
        raise DatasetError(str(e)) from None
    arr = to_uint(img.color, 8)
    if arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    return np.ascontiguousarray(arr)


def augment(arrays: Sequence[np.ndarray], hflip: bool, vflip: bool, rot90: bool) -> list[np.ndarray]:
    """Apply the same flips and transpose (with the flips: any of the 8 rotations/reflections) to H x W x C
    arrays; the LR-grid alignment of a pair survives every one of them."""
    out = []
    for a in arrays:
        if hflip:
            a = a[:, ::-1]
        if vflip:
            a = a[::-1]
        if rot90:
            a = a.transpose(1, 0, 2)
        out.append(np.ascontiguousarray(a))
    return out


def _to_tensor(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(a.transpose(2, 0, 1).astype(np.float32) / 255.0)


def seed_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: seed ``random`` and numpy from the per-worker torch seed, so code that
    draws from them (user augmentations) differs between workers and repeats between runs."""
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)


class _PatchDataset(Dataset):
    """Shared crop/augment/seed machinery."""

    def __init__(self, scale: int, patch_size: int, augment: bool, seed: int | None) -> None:
        if int(scale) != scale or scale < 1:
            raise DatasetError(f"scale must be a positive integer, got {scale}")
        if int(patch_size) != patch_size or patch_size < 1:
            raise DatasetError(f"patch_size must be a positive integer (LR pixels), got {patch_size}")
        self.scale = int(scale)
        self.patch_size = int(patch_size)
        self.augment = bool(augment)
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """With a seed, makes the patches a function of ``(seed, epoch, index)`` (call before each epoch)."""
        self.epoch = int(epoch)

    def _rng(self, index: int) -> np.random.Generator:
        if self.seed is not None:
            return np.random.default_rng([int(self.seed), self.epoch, int(index)])
        return np.random.default_rng(int(torch.randint(0, 2**62, (1,)).item()))

    def _flips(self, rng: np.random.Generator) -> tuple[bool, bool, bool]:
        if not self.augment:
            return (False, False, False)
        hflip, vflip, rot = (bool(b) for b in rng.random(3) < 0.5)
        return hflip, vflip, rot

    def _check_fits(self, name: Path, hr_hw: tuple[int, int]) -> None:
        need = self.patch_size * self.scale
        if min(hr_hw) < need:
            raise DatasetError(
                f"image '{name}' is {hr_hw[1]}x{hr_hw[0]}, smaller than the HR crop of {need}x{need} "
                f"(patch_size {self.patch_size} x scale {self.scale}); "
                "use a smaller patch_size or drop the image"
            )


class PairedFolderDataset(_PatchDataset):
    """Random aligned patches from an HR folder and an LR folder (files matched by stem; an LR named
    ``<stem>x<scale>`` also matches, as in DIV2K and Set5's ``LR_bicubic``).

    The LR patch is ``patch_size`` square, the HR patch ``patch_size * scale``; each HR image must be, after
    cropping its bottom/right edge to a multiple of ``scale``, exactly ``scale`` times its LR. An HR image
    smaller than the HR patch is an error, or left out with ``small_images="skip"`` (``skipped`` counts them)."""

    def __init__(
        self,
        hr_dir: str | os.PathLike[str],
        lr_dir: str | os.PathLike[str],
        scale: int,
        patch_size: int,
        augment: bool = True,
        *,
        seed: int | None = None,
        small_images: Literal["error", "skip"] = "error",
    ) -> None:
        super().__init__(scale, patch_size, augment, seed)
        hrs = list_images(hr_dir, "HR")
        lrs = list_images(lr_dir, "LR")
        by_stem: dict[str, Path] = {}
        suffix = f"x{self.scale}"
        for p in lrs:
            stem = p.stem[: -len(suffix)] if p.stem.lower().endswith(suffix) else p.stem
            if stem in by_stem:
                raise DatasetError(
                    f"LR folder '{lr_dir}' has two files for '{stem}': {by_stem[stem].name}, {p.name}"
                )
            by_stem[stem] = p
        hr_stems = {p.stem for p in hrs}
        no_lr = [p.name for p in hrs if p.stem not in by_stem]
        no_hr = [p.name for s, p in by_stem.items() if s not in hr_stems]
        if no_lr or no_hr:
            parts = []
            if no_lr:
                parts.append(f"{len(no_lr)} HR image(s) without an LR file (e.g. {', '.join(no_lr[:3])})")
            if no_hr:
                parts.append(f"{len(no_hr)} LR image(s) without an HR file (e.g. {', '.join(no_hr[:3])})")
            raise DatasetError(
                f"HR folder '{hr_dir}' and LR folder '{lr_dir}' do not match by name: {'; '.join(parts)} "
                f"(LR files are matched as <stem> or <stem>x{self.scale})"
            )
        self.names: list[str] = []
        self._hr: list[np.ndarray] = []
        self._lr: list[np.ndarray] = []
        self.skipped = 0
        s, need = self.scale, self.patch_size * self.scale
        for hp in hrs:
            lp = by_stem[hp.stem]
            hr = load_rgb(hp)
            if small_images == "skip" and min(hr.shape[:2]) < need:
                self.skipped += 1
                continue
            lr = load_rgb(lp)
            want = (lr.shape[0] * s, lr.shape[1] * s)
            got = (hr.shape[0] - hr.shape[0] % s, hr.shape[1] - hr.shape[1] % s)
            if got != want:
                raise DatasetError(
                    f"LR '{lp}' is {lr.shape[1]}x{lr.shape[0]} but HR '{hp.name}' is "
                    f"{hr.shape[1]}x{hr.shape[0]}: "
                    f"at x{s} the LR must be {got[1] // s}x{got[0] // s} (is this the right scale?)"
                )
            self._check_fits(hp, hr.shape[:2])
            self.names.append(hp.stem)
            self._hr.append(hr[: want[0], : want[1]])
            self._lr.append(lr)
        if not self.names:
            raise DatasetError(f"no image in '{hr_dir}' is at least {need}x{need} pixels (the HR crop); "
                               "lower patch_size")

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> dict[str, Any]:
        rng = self._rng(index)
        lr, hr = self._lr[index], self._hr[index]
        p, s = self.patch_size, self.scale
        y = int(rng.integers(0, lr.shape[0] - p + 1))
        x = int(rng.integers(0, lr.shape[1] - p + 1))
        lr_patch = lr[y : y + p, x : x + p]
        hr_patch = hr[y * s : (y + p) * s, x * s : (x + p) * s]
        lr_patch, hr_patch = augment([lr_patch, hr_patch], *self._flips(rng))
        return {"hr": _to_tensor(hr_patch), "lr": _to_tensor(lr_patch), "name": self.names[index]}


class HRFolderDataset(_PatchDataset):
    """Random HR patches (``patch_size * scale`` square) from one or more folders of HR images.

    ``lr_mode="bicubic"``: each item also has ``"lr"``, the MATLAB-bicubic x1/scale of the patch in uint8
    (rounded after each pass, like the evaluation protocol's LR files). It is computed from the patch plus
    a few LR pixels of context, so it equals the same window of the whole image's bicubic LR.
    ``lr_mode=None``: items hold only ``"hr"``; the trainer degrades batches with a
    :class:`~superres.data.degradations.Degradation`."""

    def __init__(
        self,
        hr_dirs: Sequence[str | os.PathLike[str]] | str | os.PathLike[str],
        scale: int,
        patch_size: int,
        augment: bool = True,
        lr_mode: Literal["bicubic"] | None = "bicubic",
        *,
        seed: int | None = None,
    ) -> None:
        super().__init__(scale, patch_size, augment, seed)
        if lr_mode not in ("bicubic", None):
            raise DatasetError(f"lr_mode must be 'bicubic' or None, got {lr_mode!r}")
        self.lr_mode = lr_mode
        dirs = [hr_dirs] if isinstance(hr_dirs, (str, os.PathLike)) else list(hr_dirs)
        if not dirs:
            raise DatasetError("no HR folders given")
        files = [f for d in dirs for f in list_images(d, "HR")]
        self.names = [f.stem for f in files]
        self._hr: list[np.ndarray] = []
        s = self.scale
        for f in files:
            hr = load_rgb(f)
            self._check_fits(f, hr.shape[:2])
            self._hr.append(hr[: hr.shape[0] - hr.shape[0] % s, : hr.shape[1] - hr.shape[1] % s])

    def __len__(self) -> int:
        return len(self._hr)

    def __getitem__(self, index: int) -> dict[str, Any]:
        rng = self._rng(index)
        hr = self._hr[index]
        p, s = self.patch_size, self.scale
        lh, lw = hr.shape[0] // s, hr.shape[1] // s
        y = int(rng.integers(0, lh - p + 1))
        x = int(rng.integers(0, lw - p + 1))
        hr_patch = hr[y * s : (y + p) * s, x * s : (x + p) * s]
        flips = self._flips(rng)
        item: dict[str, Any] = {"name": self.names[index]}
        if self.lr_mode == "bicubic":
            from ..resize import imresize

            y0, x0 = max(0, y - _CONTEXT), max(0, x - _CONTEXT)
            y1, x1 = min(lh, y + p + _CONTEXT), min(lw, x + p + _CONTEXT)
            lr_ctx = imresize(hr[y0 * s : y1 * s, x0 * s : x1 * s], 1.0 / s)
            lr_patch = lr_ctx[y - y0 : y - y0 + p, x - x0 : x - x0 + p]
            hr_patch, lr_patch = augment([hr_patch, lr_patch], *flips)
            item["lr"] = _to_tensor(lr_patch)
        else:
            (hr_patch,) = augment([hr_patch], *flips)
        item["hr"] = _to_tensor(hr_patch)
        return item


class ValidationSet:
    """Whole-image validation pairs ``(lr, hr, name)``, uint8 H x W x 3 (H x W for grey), decoded once and kept.

    ``source`` is a benchmark name (Set5, Set14, BSD100, ...; looked up under ``root`` as ``superres eval``
    does) or a folder of HR images. HR is modcropped to ``scale``; LR is the set's shipped bicubic LR when
    present (checked to be the right size) or MATLAB bicubic of the HR, the same pixels either way for the
    standard sets. Grey images stay H x W and are their own Y, as in ``superres eval`` (repeating them to
    RGB and taking BT.601 Y would squeeze them into 16..235: +1.3 dB on Set14's bridge, 0.09 dB on its mean)."""

    def __init__(
        self,
        source: str | os.PathLike[str],
        scale: int,
        *,
        root: str | os.PathLike[str] | None = None,
        limit: int | None = None,
    ) -> None:
        from .catalogue import iter_pairs, resolve_dataset

        ds = resolve_dataset(source, scale, root, limit=limit)
        self.name = ds.name
        self.scale = int(scale)
        self._pairs: list[tuple[np.ndarray, np.ndarray, str]] = []
        for pair in iter_pairs(ds):
            self._pairs.append((_grey_or_rgb(pair.lr), _grey_or_rgb(pair.hr), pair.name))

    def __len__(self) -> int:
        return len(self._pairs)

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray, str]]:
        return iter(self._pairs)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray, str]:
        return self._pairs[index]


def _grey_or_rgb(a: np.ndarray) -> np.ndarray:
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    return np.ascontiguousarray(a)
