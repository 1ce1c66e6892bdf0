"""Benchmark test sets by name, or any folder of HR images, as (HR, LR) uint8 pairs.

Every number in a super-resolution table depends on the exact LR pixels, so this module pins them: the
HR image is cropped at the top-left corner to a multiple of the scale ("modcrop") and the LR image is the
MATLAB ``imresize(HR, 1/s, 'bicubic')`` of it (:func:`superres.resize.imresize` on uint8, rounded after each
pass). When a set ships its own LR files for a scale they are used, after checking their size is exactly
``modcrop(HR) / s`` (a wrong file would otherwise give a silently wrong number).

Layouts understood under the data root (``--data-root``, ``$SUPERRES_DATA``, ``./../shared/data`` if it
exists, else ``~/.cache/superres/data``):

* ``<Set>/HR/<name>.png`` with optional ``<Set>/LR_bicubic/X<s>/<name>x<s>.png`` (this project's layout,
  also DIV2K's ``DIV2K_valid_HR`` + ``DIV2K_valid_LR_bicubic/X<s>`` after unzipping);
* ``<Set>/image_SRF_<s>/img_NNN_SRF_<s>_{HR,LR}.png`` (the layout of jbhuang0604/SelfExSR, where the
  Set5/Set14/BSD100/Urban100 files most papers use come from);
* a plain folder of HR images (LR made on the fly).

Nothing here downloads: :data:`DATASETS` only documents where each set is published, and every "not
found" error repeats it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DatasetError, did_you_mean
from ..resize import imresize, modcrop

__all__ = [
    "DATASETS",
    "DatasetInfo",
    "Pair",
    "ResolvedDataset",
    "default_data_root",
    "dataset_names",
    "iter_pairs",
    "load_dataset",
    "resolve_dataset",
]

IMAGE_SUFFIXES = (".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
_SELFEXSR = "https://github.com/jbhuang0604/SelfExSR (folder data/{name}; image_SRF_<s>/*_HR.png, *_LR.png)"


@dataclass(frozen=True)
class DatasetInfo:
    """A published test set: where it lives under the data root and where a user can get it."""

    name: str
    aliases: tuple[str, ...]
    folders: tuple[str, ...]  # candidate HR folders (or SelfExSR-layout set folders), relative to the root
    lr_folders: tuple[str, ...]  # candidate LR folders with "{s}" for the scale, relative to the root
    images: str  # count and sizes, for the user
    scales: str  # scales with published LR files
    download: str  # public location(s)
    terms: str
    stems: tuple[int, int] | None = None  # keep only numeric file stems in this range (DIV2K 801..900)
    reduced_hr: tuple[int, ...] = ()  # SelfExSR folders (image_SRF_<k>) whose "HR" is a reduced copy


DATASETS: dict[str, DatasetInfo] = {
    d.name: d
    for d in (
        DatasetInfo(
            "Set5", (), ("Set5/HR", "Set5"), ("Set5/LR_bicubic/X{s}",), "5 images, 228-512 px", "x2 x3 x4",
            "HR: https://github.com/majedelhelou/denoising_datasets (CSet5/); LR and HR: "
            + _SELFEXSR.format(name="Set5"),
            "no licence stated; research use",
        ),
        DatasetInfo(
            "Set14", (), ("Set14/HR", "Set14"), ("Set14/LR_bicubic/X{s}",), "14 images (bridge is grey)",
            "x2 x3 x4",
            "HR: https://github.com/majedelhelou/denoising_datasets (CSet14/); LR and HR: "
            + _SELFEXSR.format(name="Set14"),
            "no licence stated; research use",
        ),
        DatasetInfo(
            "BSD100", ("B100", "BSDS100"), ("BSD100/HR", "BSD100", "B100/HR", "B100"),
            ("BSD100/LR_bicubic/X{s}", "B100/LR_bicubic/X{s}"), "100 images, 481x321 / 321x481", "x2 x3 x4",
            _SELFEXSR.format(name="BSD100") + "; originals: BSDS300 test split, "
            "https://www2.eecs.berkeley.edu/Research/Projects/CS/vision/bsds/",
            "Corel images; non-commercial research and education",
        ),
        DatasetInfo(
            "Urban100", ("U100",), ("Urban100/HR", "Urban100"), ("Urban100/LR_bicubic/X{s}",),
            "100 images, up to 1024 px", "x2 x4 (x2: LR made from image_SRF_4's HR)",
            _SELFEXSR.format(name="Urban100"), "research use", reduced_hr=(2,),
        ),
        DatasetInfo(
            "Manga109", ("M109",), ("Manga109/HR", "Manga109"), ("Manga109/LR_bicubic/X{s}",),
            "109 images, ~800x1150", "none (made on the fly)",
            "http://www.manga109.org/en/download.html (request access; colour version CManga109/ in "
            "https://github.com/majedelhelou/denoising_datasets)",
            "academic research only, no redistribution",
        ),
        DatasetInfo(
            "DIV2K-valid", ("DIV2K", "DIV2K_valid", "DIV2K-val", "DIV2K_valid_HR"),
            ("DIV2K-valid/HR", "DIV2K_valid_HR", "DIV2K/DIV2K_valid_HR", "DIV2K/valid/HR"),
            ("DIV2K-valid/LR_bicubic/X{s}", "DIV2K_valid_LR_bicubic/X{s}", "DIV2K/DIV2K_valid_LR_bicubic/X{s}"),
            "100 images 0801-0900, ~2040x1400", "x2 x3 x4 (DIV2K_valid_LR_bicubic_X<s>.zip)",
            "https://data.vision.ee.ethz.ch/cvl/DIV2K/DIV2K_valid_HR.zip (and DIV2K_valid_LR_bicubic_X4.zip ...)",
            "academic research only", stems=(801, 900),
        ),
    )
}

_ALIASES: dict[str, str] = {}
for _d in DATASETS.values():
    for _a in (_d.name, *_d.aliases):
        _ALIASES[_a.lower()] = _d.name


def dataset_names() -> list[str]:
    """The names :func:`load_dataset` knows (aliases excluded)."""
    return list(DATASETS)


@dataclass(frozen=True)
class Pair:
    """One test image: HR modcropped to the scale, and its LR (H/s x W/s), both uint8 (HxW or HxWx3)."""

    name: str
    hr: np.ndarray
    lr: np.ndarray


@dataclass(frozen=True)
class _Item:
    name: str
    hr: Path
    lr: Path | None


@dataclass(frozen=True)
class ResolvedDataset:
    """A dataset found on disk for one scale: its files, not yet decoded (decoding happens per image)."""

    name: str
    scale: int
    folder: Path
    items: tuple[_Item, ...]
    info: DatasetInfo | None
    lr_source: str  # "files", "made" or "mixed", for the result's metadata

    def __len__(self) -> int:
        return len(self.items)


def default_data_root() -> Path:
    """``$SUPERRES_DATA``, else ``../shared/data`` from the working directory if it exists, else the cache."""
    env = os.environ.get("SUPERRES_DATA")
    if env:
        return Path(env).expanduser()
    shared = Path.cwd().parent / "shared" / "data"
    if shared.is_dir():
        return shared
    return Path.home() / ".cache" / "superres" / "data"


def _where(info: DatasetInfo) -> str:
    return f"download {info.name} from {info.download}"


def _list_images(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES
    )


_SRF = re.compile(r"^(?P<stem>.+)_SRF_(?P<s>\d+)_(?P<kind>HR|LR)$", re.IGNORECASE)


_SRF_DIR = re.compile(r"^image_SRF_(\d+)$")


def _srf_files(sub: Path, k: int) -> tuple[dict[str, Path], dict[str, Path]]:
    """(HR by stem, LR by stem) in one ``image_SRF_<k>`` folder."""
    hrs: dict[str, Path] = {}
    lrs: dict[str, Path] = {}
    for p in _list_images(sub):
        m = _SRF.match(p.stem)
        if m and int(m["s"]) == k:
            (hrs if m["kind"].upper() == "HR" else lrs)[m["stem"]] = p
    return hrs, lrs


def _image_size(path: Path) -> tuple[int, int]:
    """(width, height) from the file header only."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return im.size
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        why = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DatasetError(f"cannot read image '{path}': {why}") from None


def _selfexsr_items(folder: Path, scale: int, info: DatasetInfo | None = None) -> tuple[list[_Item], str] | None:
    """Pairs from the SelfExSR layout (``image_SRF_<k>/img_NNN_SRF_<k>_{HR,LR}.png``), or None when the
    folder does not use it; the second value says where the pairs came from when not the scale's own files.

    Why not just ``image_SRF_<scale>``: SelfExSR's folders do not all hold the true HR. Urban100's
    ``image_SRF_2`` holds ``imresize(HR, 1/2)`` as its "HR" (and an LR of that), which scores 0.3 dB under
    the published bicubic row. So each image's HR is taken from the folder with the largest one; a
    folder whose HR is the same image (within the modcrop of its scale) is used with its own LR files, a
    folder with a reduced HR is not used at all (the LR is then made from the true HR, exactly as the
    protocol does), and a scale without a folder is made from the true HR too. A set known to ship a
    reduced HR (``DatasetInfo.reduced_hr``) is refused when no folder with its true HR is present.
    """
    subs = {int(m[1]): p for p in folder.iterdir() if p.is_dir() and (m := _SRF_DIR.match(p.name))}
    if not subs:
        return None
    files = {k: _srf_files(sub, k) for k, sub in subs.items()}
    reduced = set(info.reduced_hr) if info is not None else set()
    if reduced and set(subs) <= reduced:
        assert info is not None
        names = ", ".join(f"image_SRF_{k}" for k in sorted(subs))
        raise DatasetError(f"{info.name} at '{folder}' has only {names}, whose HR images are reduced copies "
                           f"(imresize(HR, 1/2)), not the true HR; add image_SRF_4 from {info.download} "
                           "(or put the true HR images in an HR/ folder)")
    margin = max(subs)  # modcrop to k removes fewer than k pixels per side
    stems = sorted({stem for hrs, _ in files.values() for stem in hrs})
    items: list[_Item] = []
    own = made = 0
    for stem in stems:
        sized = {k: (files[k][0][stem], _image_size(files[k][0][stem])) for k in files if stem in files[k][0]}
        sized = {k: v for k, v in sized.items() if k not in reduced} or sized
        true_k = max(sized, key=lambda k: sized[k][1][0] * sized[k][1][1])
        tw, th = sized[true_k][1]
        if scale in sized:
            w, h = sized[scale][1]
            if tw - w < margin and th - h < margin:
                items.append(_Item(stem, sized[scale][0], files[scale][1].get(stem)))
                own += 1
                continue
        items.append(_Item(stem, sized[true_k][0], None))
        made += 1
    if not made:
        return items, ""
    where = f"image_SRF_{scale} holds reduced HR images" if scale in subs else f"no image_SRF_{scale} folder"
    return items, f"made from the largest HR of each image ({where}; {made} of {own + made} images)"


def _lr_for(hr: Path, lr_dirs: list[Path], scale: int) -> Path | None:
    for d in lr_dirs:
        for suffix in (hr.suffix, ".png"):
            cand = d / f"{hr.stem}x{scale}{suffix}"
            if cand.is_file():
                return cand
    return None


def _plain_items(hr_dir: Path, lr_dirs: list[Path], scale: int, stems: tuple[int, int] | None) -> list[_Item]:
    items = []
    for p in _list_images(hr_dir):
        if stems is not None and not (p.stem.isdigit() and stems[0] <= int(p.stem) <= stems[1]):
            continue
        items.append(_Item(p.stem, p, _lr_for(p, lr_dirs, scale)))
    return items


def _lr_source(items: list[_Item]) -> str:
    n = sum(it.lr is not None for it in items)
    return "files" if n == len(items) else "made" if n == 0 else "mixed"


def resolve_dataset(name_or_folder: str | os.PathLike[str], scale: int, root: str | os.PathLike[str] | None = None,
                    *, limit: int | None = None, images: Sequence[str] | None = None) -> ResolvedDataset:
    """Find a dataset's files for one scale. A known name (case-insensitive, aliases such as B100) is looked
    up under ``root``; anything else is taken as a folder of HR images (with an optional ``HR/`` and
    ``LR_bicubic/X<s>/`` inside). ``images``: only these image names (file stems), in the set's order; a
    name the set does not have is an error. Raises :class:`DatasetError` naming the path (and where to
    download)."""
    s = _check_scale(scale)
    text = os.fspath(name_or_folder)
    key = _ALIASES.get(text.lower())
    if key is not None and not Path(text).expanduser().is_dir():
        info = DATASETS[key]
        base = Path(root).expanduser() if root is not None else default_data_root()
        for rel in info.folders:
            cand = base / rel
            if not cand.is_dir():
                continue
            found = _selfexsr_items(cand, s, info)
            note = ""
            if found is None:
                lr_dirs = [base / lr.format(s=s) for lr in info.lr_folders]
                items = _plain_items(cand, lr_dirs, s, info.stems)
            else:
                items, note = found
            if items:
                return _finish(info.name, s, cand, items, info, limit, note, images)
            raise DatasetError(f"no images in '{cand}' (expected {info.images} as .png); {_where(info)}")
        expect = base / info.folders[0]
        raise DatasetError(f"{info.name} not found: no folder '{expect}' (data root '{base}' comes from "
                           f"--data-root, SUPERRES_DATA or the default); {_where(info)} and put its HR images "
                           "in that folder")
    folder = Path(text).expanduser()
    if not folder.exists():
        known = ", ".join(dataset_names())
        hint = did_you_mean(text, dataset_names()) if len(folder.parts) == 1 else ""
        raise DatasetError(f"dataset folder not found: '{folder}'{hint} (known dataset names: {known})")
    if not folder.is_dir():
        raise DatasetError(f"not a folder: '{folder}' (give a folder of HR images or a dataset name)")
    found = _selfexsr_items(folder, s, DATASETS.get(_ALIASES.get(folder.name.lower(), "")))
    note = ""
    if found is None:
        hr_dir = folder / "HR" if (folder / "HR").is_dir() else folder
        items = _plain_items(hr_dir, [folder / "LR_bicubic" / f"X{s}"], s, None)
        folder = hr_dir
    else:
        items, note = found
    if not items:
        raise DatasetError(f"no images in '{folder}' (expected {', '.join(IMAGE_SUFFIXES)} files)")
    label = folder.parent.name if folder.name == "HR" else folder.name
    return _finish(label, s, folder, items, None, limit, note, images)


def _finish(name: str, s: int, folder: Path, items: list[_Item], info: DatasetInfo | None,
            limit: int | None, note: str = "", images: Sequence[str] | None = None) -> ResolvedDataset:
    if images is not None:
        have = {it.name for it in items}
        missing = [n for n in images if n not in have]
        if missing:
            raise DatasetError(f"{name} has no image {missing[0]!r} (--images takes file stems, e.g. "
                               f"{', '.join(sorted(have)[:3])})")
        wanted = set(images)
        items = [it for it in items if it.name in wanted]
    if limit is not None:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        items = items[:limit]
    source = _lr_source(items)
    return ResolvedDataset(name, s, folder, tuple(items), info, f"{source}: {note}" if note else source)


def _check_scale(scale: int) -> int:
    if int(scale) != scale or scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale}")
    return int(scale)


def read_uint8(path: Path, info: DatasetInfo | None = None) -> np.ndarray:
    """Decode a benchmark image to uint8 HxW (grey) or HxWx3 (colour; alpha dropped, palettes expanded).

    Pixels are taken as stored (no colour management, no EXIF rotation), as the published numbers were."""
    from PIL import Image, UnidentifiedImageError

    hint = f"; {_where(info)}" if info is not None else ""
    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
                raise DatasetError(f"'{path}' is a {mode} (16-bit or float) image; benchmarks need 8-bit images")
            if mode in ("1", "L", "LA"):
                arr = np.asarray(im.convert("L"))
            elif mode == "P" and im.palette is not None and im.palette.mode == "L":
                arr = np.asarray(im.convert("L"))
            else:
                arr = np.asarray(im.convert("RGB"))
    except DatasetError:
        raise
    except FileNotFoundError:
        raise DatasetError(f"image not found: '{path}'{hint}") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        why = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DatasetError(f"cannot read image '{path}': {why}{hint}") from None
    return np.ascontiguousarray(arr)


def _load_pair(ds: ResolvedDataset, item: _Item) -> Pair:
    s = ds.scale
    hr_full = read_uint8(item.hr, ds.info)
    hr = modcrop(hr_full, s)
    if hr.shape[0] < s or hr.shape[1] < s:
        raise DatasetError(f"image '{item.hr}' ({hr_full.shape[1]}x{hr_full.shape[0]}) is smaller than the scale {s}")
    want = (hr.shape[0] // s, hr.shape[1] // s)
    if item.lr is None:
        lr = imresize(hr, 1.0 / s)
        assert isinstance(lr, np.ndarray)
        return Pair(item.name, hr, lr)
    lr = read_uint8(item.lr, ds.info)
    if lr.shape[:2] != want:
        raise DatasetError(
            f"LR image '{item.lr}' is {lr.shape[1]}x{lr.shape[0]} but its HR '{item.hr.name}' modcropped to x{s} "
            f"is {hr.shape[1]}x{hr.shape[0]}, which needs an LR of {want[1]}x{want[0]}"
        )
    if lr.ndim != hr.ndim:
        kinds = {2: "grey", 3: "colour"}
        raise DatasetError(f"LR image '{item.lr}' is {kinds[lr.ndim]} but its HR '{item.hr.name}' is {kinds[hr.ndim]}")
    return Pair(item.name, hr, lr)


def iter_pairs(ds: ResolvedDataset) -> Iterator[Pair]:
    """Decode the pairs one at a time (large sets such as DIV2K need not fit in memory at once)."""
    for item in ds.items:
        yield _load_pair(ds, item)


def load_dataset(name_or_folder: str | os.PathLike[str], scale: int, root: str | os.PathLike[str] | None = None,
                 *, limit: int | None = None) -> list[Pair]:
    """All (HR modcropped, LR) uint8 pairs of a named dataset or a folder, for one scale."""
    return list(iter_pairs(resolve_dataset(name_or_folder, scale, root, limit=limit)))
