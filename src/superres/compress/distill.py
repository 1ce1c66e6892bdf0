"""Knowledge distillation: a compact student learns to reproduce a slow teacher on degraded natural images.

Why this shape: the teacher (``realesrgan-x4plus``) costs seconds per image on a CPU, so its outputs are
computed once per degraded LR image and cached as PNG pairs (``lr/`` and ``teacher/``). Training then
samples random aligned crops from the cache, never running the teacher again. Because the target is the
teacher's output, the HR originals are only needed to make the LR images (with the Real-ESRGAN
degradation, one fixed seed per image and variant, so the cache is reproducible).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..archs import SRNet, build
from ..errors import DatasetError, SuperresError
from ..seeds import derive_seed

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
MANIFEST = "manifest.json"


# ---- the cached (LR, teacher SR) pairs ---------------------------------------------------------------------


def _read_rgb(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8)


def _write_png(path: Path, arr: np.ndarray) -> None:
    from PIL import Image

    tmp = path.with_name(path.name + ".tmp.png")
    Image.fromarray(arr).save(tmp)
    tmp.replace(path)  # atomic: an interrupted run never leaves a truncated pair behind


def _list_images(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise DatasetError(f"image folder not found: '{folder}'")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DatasetError(f"no images in '{folder}'")
    return files


def _group(folder: Path) -> str:
    """``data/T91/HR`` -> ``T91``: the dataset name prefixes the cached files so stems never collide."""
    return folder.parent.name if folder.name.upper() in ("HR", "GT") else folder.name


def _to_tensor(arr: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(arr, copy=True)).permute(2, 0, 1).float().div(255.0)


def _to_uint8(x: torch.Tensor) -> np.ndarray:
    return x.clamp(0, 1).mul(255.0).round().byte().permute(1, 2, 0).numpy()


def prepare_pairs(
    out_dir: str | Path,
    hr_dirs: Sequence[str | Path],
    *,
    teacher: str = "realesrgan-x4plus",
    degradation: str = "realesrgan",
    scale: int = 4,
    variants: int = 1,
    seed: int = 0,
    budget_s: float | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Degrade every HR image ``variants`` times (fixed seeds) and cache the teacher's output for each.

    Resumable: pairs already on disk are kept. ``budget_s`` bounds the teacher time of this call; images
    are visited variant by variant, so a budget cut keeps whole passes over the data first. Returns the
    manifest (also written to ``out_dir/manifest.json``)."""
    from ..data.degradations import build_degradation
    from ..loading import load_model

    out = Path(out_dir)
    (out / "lr").mkdir(parents=True, exist_ok=True)
    (out / "teacher").mkdir(parents=True, exist_ok=True)
    sources = [(_group(Path(d)), p) for d in hr_dirs for p in _list_images(Path(d))]
    degrade = build_degradation(degradation, scale)
    up = load_model(teacher, device="cpu", precision="fp32")
    if up.scale != scale:
        raise SuperresError(f"teacher {teacher!r} is x{up.scale}, not x{scale}")
    t0, teacher_s, made = time.perf_counter(), 0.0, 0
    for v in range(variants):
        for i, (group, path) in enumerate(sources):
            stem = f"{group}_{path.stem}_v{v}"
            lr_p, sr_p = out / "lr" / f"{stem}.png", out / "teacher" / f"{stem}.png"
            if lr_p.is_file() and sr_p.is_file():
                continue
            if budget_s is not None and teacher_s >= budget_s:
                break
            hr = _read_rgb(path)
            h, w = (hr.shape[0] // scale) * scale, (hr.shape[1] // scale) * scale
            gen = torch.Generator().manual_seed(derive_seed(seed * 1_000_003 + v * 10_007 + i))
            lr = degrade(_to_tensor(hr[:h, :w])[None], gen)[0]
            lr8 = _to_uint8(lr)
            ts = time.perf_counter()
            sr = up.upscale(_to_tensor(lr8))  # the teacher sees exactly the 8-bit LR the student will see
            teacher_s += time.perf_counter() - ts
            _write_png(lr_p, lr8)
            _write_png(sr_p, _to_uint8(sr))
            made += 1
            if progress:
                progress(f"{stem}: LR {lr8.shape[1]}x{lr8.shape[0]}, teacher {teacher_s:.0f}s total")
    pairs = sorted(p.stem for p in (out / "lr").glob("*.png") if (out / "teacher" / p.name).is_file())
    manifest = {
        "teacher": teacher,
        "degradation": degradation,
        "scale": scale,
        "variants": variants,
        "seed": seed,
        "hr_dirs": [str(d) for d in hr_dirs],
        "pairs": len(pairs),
        "expected_pairs": len(sources) * variants,  # fewer when the teacher budget ran out first
        "lr_pixels": int(sum(np.prod(_read_rgb(out / "lr" / f"{s}.png").shape[:2]) for s in pairs)),
        "made_this_call": made,
        "teacher_seconds_this_call": round(teacher_s, 1),
        "wall_seconds_this_call": round(time.perf_counter() - t0, 1),
    }
    old = out / MANIFEST
    if old.is_file():  # keep the teacher time of earlier (resumed) calls
        prev = json.loads(old.read_text())
        manifest["teacher_seconds_total"] = round(prev.get("teacher_seconds_total", 0.0) + teacher_s, 1)
    else:
        manifest["teacher_seconds_total"] = round(teacher_s, 1)
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return manifest


@dataclass
class PairCache:
    """Decoded (LR, teacher SR) uint8 CHW tensors held in memory (a few hundred MB at most)."""

    lr: list[torch.Tensor]
    sr: list[torch.Tensor]
    scale: int
    names: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.lr)


def load_pairs(cache_dir: str | Path, scale: int = 4) -> PairCache:
    """Read a cache written by :func:`prepare_pairs` (or any ``lr/`` + ``teacher/`` folder pair)."""
    d = Path(cache_dir)
    lrs = _list_images(d / "lr")
    out = PairCache([], [], scale)
    for p in lrs:
        q = d / "teacher" / p.name
        if not q.is_file():
            continue
        lr, sr = _read_rgb(p), _read_rgb(q)
        if sr.shape[0] != lr.shape[0] * scale or sr.shape[1] != lr.shape[1] * scale:
            raise DatasetError(f"'{q}' is {sr.shape[1]}x{sr.shape[0]}, not x{scale} of its LR '{p.name}'")
        out.lr.append(torch.from_numpy(lr.copy()).permute(2, 0, 1).contiguous())
        out.sr.append(torch.from_numpy(sr.copy()).permute(2, 0, 1).contiguous())
        out.names.append(p.stem)
    if not out.lr:
        raise DatasetError(f"no (lr, teacher) pairs in '{d}'")
    return out


def sample_batch(pairs: PairCache, batch: int, patch: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Random aligned crops (LR ``patch``, SR ``patch * scale``) with random flips / 90-degree turns."""
    s = pairs.scale
    xs, ys = [], []
    usable = [i for i, t in enumerate(pairs.lr) if t.shape[1] >= patch and t.shape[2] >= patch]
    if not usable:
        raise DatasetError(f"every cached LR image is smaller than the {patch}-pixel patch")
    for _ in range(batch):
        i = usable[int(torch.randint(len(usable), (1,), generator=gen))]
        lr, sr = pairs.lr[i], pairs.sr[i]
        y0 = int(torch.randint(lr.shape[1] - patch + 1, (1,), generator=gen))
        x0 = int(torch.randint(lr.shape[2] - patch + 1, (1,), generator=gen))
        a = lr[:, y0:y0 + patch, x0:x0 + patch]
        b = sr[:, y0 * s:(y0 + patch) * s, x0 * s:(x0 + patch) * s]
        k = int(torch.randint(8, (1,), generator=gen))
        if k & 1:
            a, b = a.flip(-1), b.flip(-1)
        if k & 6:
            a, b = torch.rot90(a, k >> 1, (1, 2)), torch.rot90(b, k >> 1, (1, 2))
        xs.append(a)
        ys.append(b)
    return torch.stack(xs).float().div_(255.0), torch.stack(ys).float().div_(255.0)


# ---- the student -------------------------------------------------------------------------------------------


def make_student(init: str = "realesr-animevideov3", *, num_feat: int = 64, num_conv: int = 16,
                 seed: int = 0) -> SRNet:
    """An SRVGGNetCompact x4 student: ``init`` = a zoo/weights name to start from, or ``scratch``.

    Starting from ``realesr-animevideov3`` (same architecture, BSD-3) saves most of the compute: the
    student only has to move from the anime look to the teacher's photo look."""
    if init == "scratch":
        torch.manual_seed(seed)
        return build("srvgg", in_channels=3, out_channels=3, num_feat=num_feat, num_conv=num_conv, scale=4,
                     act="prelu")
    from ..zoo.loader import load_network

    net, _ = load_network(init)
    if net.arch_name != "srvgg":
        raise SuperresError(f"the student starts from an srvgg model; {init!r} is {net.arch_name}")
    return net


# ---- the loop ----------------------------------------------------------------------------------------------


@dataclass
class DistillResult:
    """What a run did, for the model card."""

    iterations: int
    seconds: float
    first_loss: float
    last_loss: float  # mean over the last 10% of iterations
    history: list[tuple[int, float]] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("history")
        return d


def distill(
    student: nn.Module,
    pairs: PairCache,
    *,
    iterations: int | None = None,
    max_time: float | None = None,
    batch: int = 16,
    patch: int = 48,
    lr: float = 2e-4,
    loss: str = "l1",
    perceptual_weight: float = 0.0,
    seed: int = 0,
    log_every: int = 50,
    progress: Callable[[str], None] | None = None,
    checkpoint: Callable[[int], None] | None = None,
    checkpoint_every: int = 200,
) -> DistillResult:
    """Train ``student`` in place on (LR, teacher SR) crops with Adam and a cosine learning rate.

    Stops after ``iterations`` or ``max_time`` seconds, whichever comes first (at least one is required);
    with a time budget the cosine schedule runs on elapsed time so the rate reaches its floor at the
    deadline. ``checkpoint(iteration)`` is called every ``checkpoint_every`` iterations (the caller saves
    the student), so a crash in an hour-long CPU run loses at most that much work."""
    from ..train.losses import build_loss

    if iterations is None and max_time is None:
        raise SuperresError("distillation needs iterations or max_time")
    if iterations is not None and iterations < 1:
        raise SuperresError(f"iterations must be >= 1, not {iterations}")
    if max_time is not None and max_time <= 0:
        raise SuperresError(f"max_time must be > 0 seconds, not {max_time}")
    criterion = build_loss(loss)
    perceptual = build_loss("perceptual") if perceptual_weight > 0 else None
    params = [p for p in student.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr, betas=(0.9, 0.99))
    gen = torch.Generator().manual_seed(seed)
    student.train()
    t0 = time.perf_counter()
    history: list[tuple[int, float]] = []
    it = 0
    while True:
        elapsed = time.perf_counter() - t0
        if iterations is not None and it >= iterations:
            break
        if max_time is not None and elapsed >= max_time:
            break
        frac = max(it / iterations if iterations else 0.0, elapsed / max_time if max_time else 0.0)
        for g in opt.param_groups:
            g["lr"] = lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0))))
        x, y = sample_batch(pairs, batch, patch, gen)
        out = student(x)
        total = criterion(out, y)
        if perceptual is not None:
            total = total + perceptual_weight * perceptual(out, y)
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        it += 1
        history.append((it, float(total.detach())))
        if checkpoint is not None and it % checkpoint_every == 0:
            checkpoint(it)
        if progress and (it % log_every == 0 or it == 1):
            recent = [v for _, v in history[-log_every:]]
            progress(f"iter {it}: loss {sum(recent) / len(recent):.5f}, {time.perf_counter() - t0:.0f}s")
    student.eval()
    if not history:
        raise SuperresError("no distillation iteration ran (budget too small)")
    tail = [v for _, v in history[-max(1, len(history) // 10):]]
    head = [v for _, v in history[: max(1, min(10, len(history) // 10))]]
    return DistillResult(
        iterations=it,
        seconds=round(time.perf_counter() - t0, 1),
        first_loss=float(sum(head) / len(head)),
        last_loss=float(sum(tail) / len(tail)),
        history=history,
        settings={"batch": batch, "patch": patch, "lr": lr, "loss": loss, "perceptual_weight": perceptual_weight,
                      "seed": seed, "schedule": "cosine to 5% (by iterations or elapsed time)", "optimizer": "Adam(0.9, 0.99)"},
    )


# ---- saving ------------------------------------------------------------------------------------------------


def save_student(net: SRNet, path: str | Path, name: str, extra: dict[str, str] | None = None) -> Path:
    """The student's weights as safetensors with arch/hyper-parameters metadata, written atomically (a
    crash mid-write leaves the previous file, never a truncated one)."""
    from ..io.atomic import atomic_write
    from ..train.checkpoint import save_weights

    sd = {k: v.float() for k, v in net.state_dict().items()}
    meta = {"arch": net.arch_name, "hyperparams": json.dumps(net.hyperparams), "name": name, **(extra or {})}
    with atomic_write(path, tmp_suffix=".tmp.safetensors") as tmp:
        save_weights(tmp, sd, meta)
    return Path(path)


def save_model(net: SRNet, out_dir: str | Path, name: str, card: dict[str, Any]) -> tuple[Path, Path]:
    """Write ``<name>.safetensors`` + ``<name>.json`` (a zoo card) so the model loads by name once the pair
    sits in ``superres/zoo/weights`` (or by path from anywhere)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    st, js = save_student(net, out / f"{name}.safetensors", name), out / f"{name}.json"
    full = {"name": name, "arch": net.arch_name, "hyperparams": dict(net.hyperparams), "scale": net.scale}
    full.update(card)
    js.write_text(json.dumps(full, indent=2) + "\n")
    return st, js
