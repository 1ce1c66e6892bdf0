"""Turn a finished run into a zoo model: a small safetensors file and a JSON model card beside it.

The card records what a user needs before trusting the weights (the recipe's data, degradation,
iterations, training time and device) and the Y-PSNR/SSIM measured *from the written file* by the same
code as ``superres eval`` (Set5/Set14/BSD100, crop = scale, MATLAB-bicubic LR). Cards and weights are
written atomically; a folder such as ``src/superres/zoo/weights`` then lists the model in ``superres models``.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

from ..errors import SuperresError
from .checkpoint import load_checkpoint, save_weights
from .config import config_from_dict

__all__ = ["DEFAULT_PUBLISH_DIR", "publish"]

DEFAULT_PUBLISH_DIR = Path(__file__).resolve().parents[1] / "zoo" / "weights"
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")


def publish(
    run: str | os.PathLike[str],
    name: str,
    out_dir: str | os.PathLike[str] = DEFAULT_PUBLISH_DIR,
    *,
    use_ema: bool = True,
    datasets: Sequence[str] = ("Set5", "Set14", "BSD100"),
    data_root: str | os.PathLike[str] | None = None,
    device: str = "cpu",
    title: str | None = None,
    description: str = "",
    licence: str = "Apache-2.0",
    purpose: str | None = None,
    overwrite: bool = False,
    lpips: bool | None = None,
    lpips_dir: str | os.PathLike[str] | None = None,
    progress: Callable[[int, int, str], None] | None = None,
) -> tuple[Path, Path]:
    """Write ``<out_dir>/<name>.safetensors`` and ``<name>.json`` from a run (its newest checkpoint) or a
    checkpoint folder. Returns both paths. ``datasets=()`` skips the measurement.

    ``lpips``: also put LPIPS (alex) on the card; ``None`` means "for GAN-trained runs", whose point is a
    lower LPIPS than their fidelity parent at some PSNR cost, so their card must show both."""
    from ..io.atomic import atomic_write

    if not _NAME.match(name):
        raise SuperresError(f"model name {name!r} must be lower-case letters, digits, '.', '_' or '-'")
    folder, weights, state = load_checkpoint(run)
    run_dir = folder.parent.parent
    cfg_path = run_dir / "config.yaml"
    if not cfg_path.is_file():
        raise SuperresError(f"'{run_dir}' has no config.yaml (is it a superres training run?)")
    cfg = config_from_dict(yaml.safe_load(cfg_path.read_text()), source=str(cfg_path))
    kind = "ema" if use_ema and "ema" in weights else "generator"
    sd = weights[kind]
    from ..archs import build

    hp = dict(cfg.model.hyperparams)
    hp.setdefault("scale", cfg.data.scale)
    net = build(cfg.model.arch, **hp)
    net.load_state_dict(sd, strict=True)  # the weights do describe the configured network
    hp = {k: v for k, v in net.hyperparams.items() if isinstance(v, (int, float, str, bool))}

    out = Path(out_dir)
    w_path, c_path = out / f"{name}.safetensors", out / f"{name}.json"
    if not overwrite and (w_path.exists() or c_path.exists()):
        raise SuperresError(f"'{c_path}' already exists; pass --overwrite to replace it")
    meta = {"arch": cfg.model.arch, "hyperparams": json.dumps(hp), "model": name}
    weights_fp32 = {k: v.float() if v.is_floating_point() else v for k, v in net.state_dict().items()}
    with tempfile.TemporaryDirectory() as td:  # measure the very file that ships, through superres eval
        probe = Path(td) / f"{name}.safetensors"
        save_weights(probe, weights_fp32, meta)
        want_lpips = bool(cfg.gan) if lpips is None else lpips
        metrics = _measure(probe, datasets, cfg.data.scale, data_root or cfg.val.root, device, progress,
                           lpips_dir=str(lpips_dir) if lpips_dir else None, lpips=want_lpips)
    with atomic_write(w_path, overwrite=overwrite, tmp_suffix=".tmp.safetensors") as tmp:
        save_weights(tmp, weights_fp32, meta)

    sets = [t.hr for t in cfg.data.train]
    training = {
        "recipe": cfg.name,
        "data": [_short(s) for s in sets],
        "paired": any(t.lr for t in cfg.data.train),
        "degradation": cfg.data.degradation.model_dump(),
        "patch_size_lr": cfg.data.patch_size,
        "batch_size": cfg.train.batch_size,
        "iterations": int(state["iteration"]),
        "iterations_planned": cfg.train.iterations,
        "loss": [t.model_dump() for t in cfg.loss],
        "optim": cfg.optim.model_dump(),
        "schedule": cfg.schedule.model_dump(),
        "gan": cfg.gan.model_dump() if cfg.gan else None,
        "weights": "EMA" if kind == "ema" else "plain",
        "ema_decay": cfg.train.ema_decay,
        "train_seconds": round(float(state.get("train_seconds", 0.0)), 1),
        "device": state.get("device", "unknown"),
        "processes": int(state.get("world_size", 1)),
        "torch": state.get("torch", ""),
        "published": time.strftime("%Y-%m-%d"),
    }
    if cfg.model.pretrained:
        training["init"] = _init_record(cfg.model.pretrained, cfg.model.pretrained_mode)
    elif cfg.gan and cfg.gan.pretrained:  # stage 2 of a GAN recipe: the generator starts from stage 1
        training["init"] = _init_record(cfg.gan.pretrained, "exact")
    card: dict[str, Any] = {
        "name": name,
        "arch": cfg.model.arch,
        "hyperparams": hp,
        "scale": cfg.data.scale,
        "title": title or f"{cfg.model.arch.upper()} x{cfg.data.scale} (superres-trained, recipe {cfg.name})",
        "licence": licence,
        "source": f"trained by the superres project with configs/{cfg.name}.yaml",
        "description": description or cfg.description,
        "purpose": purpose or ("photo" if cfg.gan else "classical"),
        "bundled_file": w_path.name,
        "training": training,
        "metrics": metrics,
    }
    with atomic_write(c_path, overwrite=True) as tmp:
        tmp.write_text(json.dumps(card, indent=1) + "\n")
    return w_path, c_path


def _short(path: str) -> str:
    """``/abs/.../shared/data/T91/HR`` -> ``T91/HR`` (cards should not carry a machine's paths)."""
    p = Path(path)
    return str(Path(p.parent.name) / p.name) if p.name == "HR" else p.name


def _measure(weights: Path, datasets: Sequence[str], scale: int, root: Any, device: str,
             progress: Callable[[int, int, str], None] | None, *, lpips_dir: str | None = None,
             lpips: bool = False) -> dict[str, Any]:
    """Y-PSNR/SSIM of the weights file as published, measured by :func:`superres.eval.runner.evaluate`
    (the file names its arch and hyper-parameters in its metadata, so nothing is re-guessed): the numbers
    on the card are the numbers ``superres eval -m NAME`` prints."""
    if not datasets:
        return {}
    from ..eval.runner import evaluate

    out: dict[str, Any] = {}
    metrics = ("psnr", "ssim", "lpips") if lpips else ("psnr", "ssim")
    for k, name in enumerate(datasets):
        if progress is not None:
            progress(k, len(datasets), name)
        try:
            result = evaluate([str(weights)], [name], [scale], metrics=metrics, device=device, data_root=root,
                              lpips_dir=lpips_dir)
        except SuperresError as e:
            if lpips and "LPIPS" in str(e):
                raise SuperresError(f"{e}; or publish without LPIPS on the card (--no-lpips)") from None
            raise
        if not result.summary:
            raise SuperresError(f"cannot measure on {name}: " + "; ".join(str(s) for s in result.skipped))
        row = result.summary[0]
        out[row.dataset] = {"psnr_y": round(float(row.psnr_y), 3), "ssim_y": round(float(row.ssim_y), 4),
                            "images": row.n_images}
        if lpips and row.lpips is not None:
            out[row.dataset]["lpips"] = round(float(row.lpips), 4)
    out["protocol"] = "superres eval: Y (BT.601), crop = scale, uint8 output, the datasets' MATLAB-bicubic LR"
    if lpips:
        out["protocol"] += "; LPIPS v0.1 alex on RGB"
    return out


def _init_record(source: str, mode: str) -> dict[str, Any]:
    """Where a fine-tuned or widened model started. For a zoo model the parent's own training record is
    kept (recipe, iterations, time, device and its own start), so a chain of runs shows its total cost."""
    rec: dict[str, Any] = {"from": source, "mode": mode}
    try:
        from ..zoo.registry import get_card

        parent = get_card(source).training
    except Exception:  # noqa: BLE001 - a path or run folder: no card to follow
        return rec
    keep = ("recipe", "iterations", "train_seconds", "device", "init")
    rec["parent"] = {k: parent[k] for k in keep if k in parent}
    return rec
