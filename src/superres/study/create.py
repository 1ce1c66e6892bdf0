"""``superres study create``: every model's output for every image, computed once into a study folder.

Layout of the folder::

    study.json                 the manifest: models (spec, label), images (name, size), file paths
    lr/<image>.png             the inputs, as shown to raters when the LR is displayed
    out/<m0, m1, ...>/<image>.png   outputs; folders are numbered, so a file path reveals no model
    owner.token                the owner's secret for exporting votes over HTTP (mode 0600)
    votes.sqlite               created by the server on the first vote

The manifest also holds the study's caps (votes per rater, raters, raters per client address), which
``superres serve --study`` enforces.

A model entry is a zoo name or weights file, or ``bicubic`` (MATLAB-exact bicubic upscaling), optionally
followed by deliberate degradations: ``+jpegQ`` (JPEG at quality Q) and ``+blurS`` (Gaussian blur of
sigma S), e.g. ``bicubic+blur2`` or ``espcn-s-x4+jpeg10``. Degraded entries are the study's sanity
check: raters who pay attention rank them last. Outputs already in the folder are kept (a rerun only
computes what is missing), every file is written atomically, and a failure leaves no partial manifest.
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Optional

import numpy as np

from .store import Limits, StudyError

__all__ = ["MANIFEST", "ModelSpec", "Study", "create_study", "load_study", "parse_model_spec"]

MANIFEST = "study.json"
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
_DEGRADE = re.compile(r"^(jpeg)(\d{1,3})$|^(blur)(\d+(?:\.\d+)?)$")


@dataclass(frozen=True)
class ModelSpec:
    label: str  # the text the user gave, shown in reports
    source: str  # zoo name, weights file, or "bicubic"
    degradations: tuple[tuple[str, float], ...]  # ("jpeg", quality) / ("blur", sigma), in order


def parse_model_spec(text: str) -> ModelSpec:
    parts = [p.strip() for p in text.strip().split("+")]
    if not parts[0]:
        raise StudyError(f"model entry {text!r} has no model before '+'")
    steps: list[tuple[str, float]] = []
    for p in parts[1:]:
        m = _DEGRADE.match(p.lower())
        if not m:
            raise StudyError(f"unknown degradation {p!r} in {text!r}; use +jpegQ (1-100) or +blurSIGMA")
        if m.group(1):
            q = int(m.group(2))
            if not 1 <= q <= 100:
                raise StudyError(f"JPEG quality must be 1..100 in {text!r}")
            steps.append(("jpeg", float(q)))
        else:
            s = float(m.group(4))
            if not 0 < s <= 20:
                raise StudyError(f"blur sigma must be in (0, 20] in {text!r}")
            steps.append(("blur", s))
    return ModelSpec(text.strip(), parts[0], tuple(steps))


@dataclass(frozen=True)
class Study:
    """A loaded study folder."""

    root: Path
    scale: int
    models: list[str]  # labels, in the manifest's order
    images: list[str]  # image names (file stems)
    show_lr: bool
    title: str
    files: dict[str, dict[str, str]]  # label -> image -> path relative to root
    lr_files: dict[str, str]  # image -> path relative to root
    limits: Limits = Limits()

    def output(self, model: str, image: str) -> Path:
        return self.root / self.files[model][image]

    def lr(self, image: str) -> Path:
        return self.root / self.lr_files[image]


def _collect_images(paths: Iterable[Path]) -> list[Path]:
    found: list[Path] = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            found.extend(sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file()))
        elif p.is_file():
            found.append(p)
        else:
            raise StudyError(f"no such image or folder: {p}")
    if not found:
        raise StudyError("no images given (or the folders hold none)")
    stems = [f.stem for f in found]
    dupes = sorted({s for s in stems if stems.count(s) > 1})
    if dupes:
        raise StudyError(f"two images share the name {dupes[0]!r}; rename one (names identify images)")
    return found


def _read_rgb(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError) as e:
        raise StudyError(f"{path}: not a readable image ({e})") from None


def _png_bytes(arr: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    return buf.getvalue()


def _degrade(arr: np.ndarray, steps: tuple[tuple[str, float], ...]) -> np.ndarray:
    from PIL import Image, ImageFilter

    im = Image.fromarray(arr)
    for kind, value in steps:
        if kind == "jpeg":
            buf = io.BytesIO()
            im.save(buf, "JPEG", quality=int(value))
            buf.seek(0)
            im = Image.open(buf).convert("RGB")
        else:
            im = im.filter(ImageFilter.GaussianBlur(value))
    return np.asarray(im)


def _write(path: Path, data: bytes) -> None:
    from ..io.atomic import atomic_write

    with atomic_write(path) as tmp:
        tmp.write_bytes(data)


def create_study(
    root: Path,
    models: list[str],
    images: Iterable[Path],
    *,
    scale: Optional[int] = None,
    show_lr: bool = True,
    title: str = "Which image looks better?",
    device: str = "cpu",
    progress: Optional[Callable[[str], None]] = None,
    limits: Optional[Limits] = None,
) -> Study:
    """Compute ``models x images`` outputs into ``root`` (kept if already there) and write the manifest.

    ``scale`` defaults to the first network model's scale (4 when every entry is ``bicubic``-based);
    every output of an image must have the same size, so models of another scale are refused.
    ``limits`` (default: :class:`Limits`'s) are the caps the server enforces on raters."""
    limits = limits or Limits()
    for name, value in vars(limits).items():
        if not isinstance(value, int) or value < 1:
            raise StudyError(f"{name.replace('_', ' ')} must be a positive integer, not {value!r}")
    specs = [parse_model_spec(m) for m in models]
    labels = [s.label for s in specs]
    if len(set(labels)) != len(labels):
        raise StudyError("a model entry is listed twice")
    if len(specs) < 2:
        raise StudyError("a comparison study needs at least two model entries")
    files = _collect_images(images)
    root = Path(root)
    old = root / MANIFEST
    if old.exists():
        prev = json.loads(old.read_text())
        if [m["label"] for m in prev["models"]] != labels[: len(prev["models"])]:
            raise StudyError(f"{root} holds a study with other models; use a new folder")

    from ..loading import load_model

    upscalers = {}
    for s in specs:
        if s.source.lower() != "bicubic" and s.source not in upscalers:
            upscalers[s.source] = load_model(s.source, device=device)
    if scale is None:
        scale = next((up.scale for up in upscalers.values()), 4)
    for src, up in upscalers.items():
        if up.scale != scale:
            raise StudyError(f"model {src!r} is x{up.scale} but the study is x{scale}: outputs must match")

    from ..resize import imresize

    lr_files: dict[str, str] = {}
    out_files: dict[str, dict[str, str]] = {s.label: {} for s in specs}
    entries = []
    for f in files:
        lr = _read_rgb(f)
        name = f.stem
        lr_rel = f"lr/{name}.png"
        if not (root / lr_rel).exists():
            _write(root / lr_rel, _png_bytes(lr))
        lr_files[name] = lr_rel
        entries.append({"name": name, "source": str(f), "width": lr.shape[1], "height": lr.shape[0]})
        cache: dict[str, np.ndarray] = {}
        for k, s in enumerate(specs):
            rel = f"out/m{k}/{name}.png"
            out_files[s.label][name] = rel
            if (root / rel).exists():
                continue
            if progress:
                progress(f"{s.label} <- {name}")
            if s.source not in cache:
                if s.source.lower() == "bicubic":
                    cache[s.source] = np.asarray(imresize(lr, float(scale)))
                else:
                    cache[s.source] = np.asarray(upscalers[s.source].upscale(lr))
            out = _degrade(cache[s.source], s.degradations) if s.degradations else cache[s.source]
            expected = (lr.shape[0] * scale, lr.shape[1] * scale)
            if out.shape[:2] != expected:
                raise StudyError(
                    f"{s.label} made {out.shape[1]}x{out.shape[0]} from {name}; expected "
                    f"{expected[1]}x{expected[0]}"
                )
            _write(root / rel, _png_bytes(out))
    manifest = {
        "format": 1,
        "title": title,
        "scale": scale,
        "show_lr": show_lr,
        "models": [
            {
                "label": s.label,
                "source": s.source,
                "degradations": [list(d) for d in s.degradations],
                "folder": f"out/m{k}",
            }
            for k, s in enumerate(specs)
        ],
        "images": entries,
        "limits": vars(limits),
    }
    _write(root / MANIFEST, json.dumps(manifest, indent=2).encode())
    from .owner import owner_token

    owner_token(root)
    return load_study(root)


def _limits(entry: dict[str, object]) -> Limits:
    """The manifest's caps; a study made before caps existed gets the defaults."""
    names = {"votes_per_rater", "raters", "raters_per_address"}
    known = {k: int(v) for k, v in entry.items() if k in names}
    if any(v < 1 for v in known.values()):
        raise ValueError(f"limits must be positive: {known}")
    return Limits(**known)


def load_study(root: Path) -> Study:
    """Read a study folder's manifest; a clear error when it is not one or a file is missing."""
    root = Path(root)
    path = root / MANIFEST
    if not path.is_file():
        raise StudyError(f"{root} is not a study folder (no {MANIFEST}; make one with superres study create)")
    try:
        m = json.loads(path.read_text())
        labels = [e["label"] for e in m["models"]]
        images = [e["name"] for e in m["images"]]
        files = {e["label"]: {i: f"{e['folder']}/{i}.png" for i in images} for e in m["models"]}
        study = Study(
            root,
            int(m["scale"]),
            labels,
            images,
            bool(m.get("show_lr", True)),
            str(m.get("title", "")),
            files,
            {i: f"lr/{i}.png" for i in images},
            _limits(m.get("limits") or {}),
        )
    except (KeyError, TypeError, ValueError) as e:
        raise StudyError(f"{path}: broken manifest ({e})") from None
    for label in labels:
        for image in images:
            if not study.output(label, image).is_file():
                raise StudyError(f"{root}: output of {label!r} for {image!r} is missing; rerun study create")
    return study
