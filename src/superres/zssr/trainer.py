"""Zero-shot SR: train a small network on one image's internal pairs, then apply it to that image.

The recipe of Shocher et al. ("Zero-Shot" Super-Resolution using Deep Internal Learning, CVPR 2018), in
our own code: random (son, father) crops with the 8 symmetries (:mod:`.pairs`), L1 loss, Adam from
``lr``; every ``eval_every`` steps the reconstruction error of the whole image from its own son is
recorded, and every ``check_every`` steps a line is fitted to the last ``slope_window`` steps of it: when
the fitted improvement over the window is smaller than the scatter around the line, learning has
stalled at this rate and ``lr`` drops tenfold; training ends when it falls below ``lr_min`` (or at
``max_steps`` / ``max_time``). x4 is done in two x2 steps, the second on the first's output ("gradual
SR"). The result is the median of the network over the 8 symmetries of the input, followed by a few
back-projection steps that make the output's own degradation match the input.

Checkpoints: every ``checkpoint_every`` steps (and when the progress callback raises, e.g. Ctrl-C) the
network, optimiser, generator state, error history and elapsed time are written atomically to
``checkpoint_dir`` (:func:`superres.train.checkpoint.save_checkpoint`); a later call with the same image,
kernel and settings continues from there, and draws the same pairs it would have drawn uninterrupted.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import SuperresError
from .kernel import check_kernel
from .net import ZSSRNet
from .pairs import InternalPairs, augment, degrade, unaugment, upsample

__all__ = ["ZSSRConfig", "ZSSRProgress", "ZSSRResult", "min_image_side", "stage_kernel", "zssr"]


@dataclass(frozen=True)
class ZSSRConfig:
    """Settings of one ZSSR run (the defaults are the paper's where a CPU allows them)."""

    scale: int = 2
    width: int = 32
    depth: int = 8
    crop: int = 64
    batch: int = 1
    lr: float = 1e-3
    lr_min: float = 9e-6
    max_steps: int = 3000  # per x2/x3 stage
    min_steps: int = 256  # no learning-rate drop before this
    eval_every: int = 50
    check_every: int = 60
    slope_window: int = 256
    max_time: float | None = None  # seconds of training, all stages together
    clock: str = "wall"  # "wall", or "cpu" (this process's CPU seconds: a busy shared machine keeps the budget)
    ensemble: bool = True
    back_projection: int = 4
    noise: float = 0.0
    checkpoint_every: int = 200
    seed: int = 0

    def __post_init__(self) -> None:
        if self.scale not in (2, 3, 4):
            raise SuperresError(f"ZSSR scale must be 2, 3 or 4, got {self.scale}")
        if self.max_time is not None and self.max_time <= 0:
            raise SuperresError(f"--max-time must be positive seconds, got {self.max_time}")
        if self.clock not in ("wall", "cpu"):
            raise SuperresError(f"clock must be 'wall' or 'cpu', got {self.clock!r}")

    @property
    def stages(self) -> tuple[int, ...]:
        return (2, 2) if self.scale == 4 else (self.scale,)


@dataclass(frozen=True)
class ZSSRProgress:
    stage: int
    stages: int
    step: int
    max_steps: int
    lr: float
    error: float | None  # latest whole-image reconstruction error (L1, [0, 1] scale)
    elapsed: float
    max_time: float | None


@dataclass
class ZSSRResult:
    image: torch.Tensor  # 1 x C x sH x sW in [0, 1]
    steps: list[int] = field(default_factory=list)  # training steps per stage
    train_seconds: float = 0.0
    total_seconds: float = 0.0
    resumed_from: int | None = None  # global step a checkpoint was resumed from
    checkpoint: Path | None = None  # the final checkpoint folder (the image's net)


def min_image_side(scale: int) -> int:
    """The smallest input side ZSSR accepts: the image's son must still be a few pixels wide."""
    return 8 * int(scale)


def stage_kernel(kernel: torch.Tensor | None, scale: int) -> torch.Tensor | None:
    """The kernel of each x2 step of a x4 run. Two x2 steps with kernel ``k2`` compose to a x4 kernel of
    covariance ``5 C2`` (``k2`` convolved with itself dilated by 2), so ``k2`` is the Gaussian with the
    x4 kernel's covariance divided by 5 (exact for Gaussians, a moment match otherwise)."""
    if kernel is None or scale != 4:
        return kernel
    k = kernel.double()
    n = k.shape[-1]
    ax = torch.arange(n, dtype=torch.float64) - n // 2
    yy, xx = torch.meshgrid(ax, ax, indexing="ij")
    mx, my = (k * xx).sum(), (k * yy).sum()
    cxx = (k * (xx - mx) ** 2).sum() / 5
    cyy = (k * (yy - my) ** 2).sum() / 5
    cxy = (k * (xx - mx) * (yy - my)).sum() / 5
    cov = torch.stack([torch.stack([cxx, cxy]), torch.stack([cxy, cyy])]) + 1e-3 * torch.eye(2, dtype=torch.float64)
    inv = torch.linalg.inv(cov)
    size = max(5, (n // 2) | 1)
    ax = torch.arange(size, dtype=torch.float64) - size // 2
    yy, xx = torch.meshgrid(ax, ax, indexing="ij")
    q = inv[0, 0] * xx * xx + 2 * inv[0, 1] * xx * yy + inv[1, 1] * yy * yy
    return check_kernel(torch.exp(-0.5 * q))


def _fingerprint(image: torch.Tensor, kernel: torch.Tensor | None, cfg: ZSSRConfig) -> str:
    h = hashlib.sha256()
    h.update(image.detach().cpu().float().contiguous().numpy().tobytes())
    h.update(b"none" if kernel is None else kernel.detach().cpu().float().contiguous().numpy().tobytes())
    # what changes the training itself; stopping bounds and the final application may differ on a rerun
    later = ("max_time", "max_steps", "checkpoint_every", "clock", "ensemble", "back_projection")
    settings = {k: v for k, v in asdict(cfg).items() if k not in later}
    h.update(json.dumps(settings, sort_keys=True).encode())
    return h.hexdigest()


def _recon_error(net: ZSSRNet, image: torch.Tensor, scale: int, kernel: torch.Tensor | None) -> float:
    """L1 error of rebuilding the stage's input from its own son (the paper's stopping signal)."""
    s = scale
    target = image[..., : (image.shape[-2] // s) * s, : (image.shape[-1] // s) * s]
    with torch.no_grad():
        out = net(upsample(degrade(target, s, kernel), s))
    return float((out - target).abs().mean())


def _stalled(history: list[tuple[int, float]], step: int, window: int) -> bool:
    pts = [(s, e) for s, e in history if s > step - window]
    if len(pts) < 3:
        return False
    x = np.array([p[0] for p in pts], dtype=np.float64)
    y = np.array([p[1] for p in pts], dtype=np.float64)
    slope, icpt = np.polyfit(x, y, 1)
    scatter = float(np.std(y - (slope * x + icpt)))
    return -slope * window < scatter


def _apply(net: ZSSRNet, image: torch.Tensor, scale: int, kernel: torch.Tensor | None, cfg: ZSSRConfig) -> torch.Tensor:
    """Network on the whole image: median over the 8 symmetries, then back-projection."""
    with torch.no_grad():
        views = range(8) if cfg.ensemble else range(1)
        outs = [unaugment(net(upsample(augment(image, k), scale)), k) for k in views]
        sr = torch.stack(outs).median(dim=0).values if len(outs) > 1 else outs[0]
        sr = sr.clamp(0.0, 1.0)
        h, w = image.shape[-2] * scale, image.shape[-1] * scale
        sr = sr[..., :h, :w]
        for _ in range(cfg.back_projection):
            residual = image - degrade(sr, scale, kernel)
            sr = (sr + upsample(residual, scale)).clamp(0.0, 1.0)
    return sr


def zssr(
    image: torch.Tensor,
    config: ZSSRConfig,
    kernel: torch.Tensor | None = None,
    *,
    checkpoint_dir: str | Path | None = None,
    progress: Callable[[ZSSRProgress], None] | None = None,
) -> ZSSRResult:
    """Super-resolve ``image`` (``1 x C x H x W`` float in [0, 1]) by ``config.scale`` with a network
    trained on the image alone. ``kernel``: the blur the image went through (None = bicubic).

    ``checkpoint_dir``: where checkpoints go and are resumed from (None = no checkpoints). A checkpoint
    made for another image, kernel or settings is refused. ``progress`` is called after every step;
    an exception it raises stops the run after a checkpoint is written, and propagates."""
    from ..train.checkpoint import CheckpointError, latest_checkpoint, load_checkpoint, save_checkpoint

    t_start = time.perf_counter()
    cfg = config
    clock = time.perf_counter if cfg.clock == "wall" else time.process_time
    if image.ndim != 4 or image.shape[0] != 1 or not image.is_floating_point():
        raise SuperresError(f"zssr expects a 1 x C x H x W float image, got {tuple(image.shape)}")
    small = min_image_side(cfg.scale)
    if min(image.shape[-2:]) < small:
        raise SuperresError(f"image of {image.shape[-1]}x{image.shape[-2]} is too small for ZSSR x{cfg.scale} "
                            f"(needs at least {small} pixels on each side)")
    image = image.detach().float().cpu().clamp(0.0, 1.0)
    if kernel is not None:
        kernel = check_kernel(kernel)
    kern = stage_kernel(kernel, cfg.scale)
    stages = cfg.stages
    fp = _fingerprint(image, kernel, cfg)
    gen = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    net = ZSSRNet(image.shape[1], cfg.width, cfg.depth)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    stage, step, elapsed, done = 0, 0, 0.0, False
    history: list[tuple[int, float]] = []
    current = image
    stage_steps: list[int] = []
    resumed_from = None
    run_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None

    if run_dir is not None and latest_checkpoint(run_dir) is not None:
        _, weights, state = load_checkpoint(run_dir)
        if state.get("fingerprint") != fp:
            raise CheckpointError(f"checkpoint in '{run_dir}' is for another image, kernel or settings; "
                                  "delete it or choose another checkpoint folder")
        net.load_state_dict(weights["net"])
        opt.load_state_dict(state["optimizer"])
        gen.set_state(state["generator"])
        stage, step, elapsed, done = int(state["stage"]), int(state["step"]), float(state["elapsed"]), bool(state["done"])
        history = [(int(s), float(e)) for s, e in state["history"].tolist()]
        stage_steps = [int(v) for v in state["stage_steps"]]
        if stage > 0:
            current = state["input"].float()
        resumed_from = int(state["iteration"])

    def save(final: bool = False) -> Path | None:
        if run_dir is None:
            return None
        done_steps = sum(stage_steps) + (0 if final else step)  # a finished stage's steps are in stage_steps
        state: dict[str, Any] = {
            "iteration": done_steps, "stage": stage, "step": step,
            "elapsed": elapsed + (clock() - t0), "done": final, "fingerprint": fp,
            "optimizer": opt.state_dict(), "generator": gen.get_state(),
            "history": torch.tensor(history, dtype=torch.float64).reshape(-1, 2),
            "stage_steps": stage_steps, "input": current if stage > 0 else torch.zeros(0),
        }
        meta = {"arch": "zssr", "hyperparams": json.dumps({"width": cfg.width, "depth": cfg.depth}),
                "scale": str(stages[min(stage, len(stages) - 1)])}
        # numbered by steps over all stages, so newer is always larger whatever max_steps a rerun uses
        return save_checkpoint(run_dir, done_steps, {"net": net.state_dict()}, state, meta)

    t0 = clock()
    final_ckpt = None
    while not done:
        s = stages[stage]
        pairs = InternalPairs(current, s, kern, crop=cfg.crop, noise=cfg.noise)
        budget = None if cfg.max_time is None else cfg.max_time * (stage + 1) / len(stages)
        while True:
            lr = opt.param_groups[0]["lr"]
            spent = elapsed + clock() - t0
            if step >= cfg.max_steps or lr < cfg.lr_min or (budget is not None and spent >= budget):
                break
            net.train()
            pair = pairs.sample(gen, cfg.batch)
            loss = F.l1_loss(net(pair.input), pair.target)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            if step % cfg.eval_every == 0:
                history.append((step, _recon_error(net, current, s, kern)))
            if step % cfg.check_every == 0 and step >= cfg.min_steps and _stalled(history, step, cfg.slope_window):
                for g in opt.param_groups:
                    g["lr"] = lr / 10.0
            if progress is not None:
                try:
                    progress(ZSSRProgress(stage, len(stages), step, cfg.max_steps, opt.param_groups[0]["lr"],
                                          history[-1][1] if history else None,
                                          elapsed + clock() - t0, cfg.max_time))
                except BaseException:
                    save()
                    raise
            if cfg.checkpoint_every and step % cfg.checkpoint_every == 0:
                save()
        stage_steps.append(step)
        if stage + 1 < len(stages):
            net.eval()
            current = _apply(net, current, s, kern, cfg)
            stage, step, history = stage + 1, 0, []
            for g in opt.param_groups:  # the next step starts from this net, at the initial rate
                g["lr"] = cfg.lr
        else:
            done = True
            final_ckpt = save(final=True)
    if final_ckpt is None and run_dir is not None:
        final_ckpt = latest_checkpoint(run_dir)
    train_seconds = elapsed + clock() - t0
    net.eval()
    out = _apply(net, current, stages[-1], kern, cfg)
    return ZSSRResult(out, stage_steps, train_seconds, time.perf_counter() - t_start, resumed_from, final_ckpt)
