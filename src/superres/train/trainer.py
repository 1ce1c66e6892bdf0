"""The training loop: fidelity training and GAN fine-tuning, resumable, DDP-aware, on any device.

Order of work in :func:`train` is chosen so that mistakes cost nothing: the recipe was validated by the
schema; here the datasets are indexed and checked (folders, crop sizes), the losses, network and
discriminator are built and the validation set is read *before* the first step. Then, per iteration:
learning rate from the iteration number, batch (see :mod:`superres.train.data`), forward under autocast
(CUDA), loss, backward with a GradScaler for fp16, optional gradient clipping, step, EMA update; then
logging, validation and checkpoints at their intervals. A stop request (SIGINT/SIGTERM), the wall-clock
budget or the last iteration ends the loop with a checkpoint, so at most ``checkpoint_every`` iterations
are lost to a hard kill.

Only rank 0 writes files (checkpoints, logs, the resolved config); every rank computes the same stop
decision so that they leave the loop together.
"""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import signal
import threading
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import SuperresError
from ..seeds import derive_seed
from .checkpoint import (
    CheckpointError,
    latest_checkpoint,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from .config import TrainConfig, config_from_dict, dump_config
from .data import EpochIndexed, IterationBatches, collate, worker_init
from .distributed import DistInfo, any_true, barrier, init_distributed, shutdown_distributed
from .schedule import EMA, lr_at

__all__ = ["RunResult", "TrainingError", "load_generator_weights", "pick_device", "train"]

log = logging.getLogger("superres.train")
Progress = Callable[[int, int, dict[str, float]], None]


class TrainingError(SuperresError):
    """A run that cannot start or continue (bad data for the recipe, diverged loss, mismatched resume)."""


@dataclass
class RunResult:
    run_dir: Path
    iteration: int
    total: int
    stopped: str  # "finished", "time budget", "interrupted"
    train_seconds: float
    metrics: dict[str, float] = field(default_factory=dict)
    checkpoint: Path | None = None

    @property
    def finished(self) -> bool:
        return self.iteration >= self.total


# ---- setup helpers -----------------------------------------------------------------------------------------


def pick_device(name: str, local_rank: int = 0) -> torch.device:
    """The training device: :func:`superres.inference.devices.pick_device` with this worker's GPU index
    and no MPS; a config naming an unavailable device fails as a training error."""
    from ..inference.devices import pick_device as _pick

    try:
        return _pick(name, local_rank=local_rank, mps=False)
    except SuperresError as e:
        raise TrainingError(f"train.device={name}: {e}") from None


def _build_generator(cfg: TrainConfig) -> nn.Module:
    import inspect

    from ..archs import build, get_arch, list_archs

    try:
        spec = get_arch(cfg.model.arch)
    except KeyError:
        import difflib

        close = difflib.get_close_matches(cfg.model.arch.lower(), list_archs(), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else f"; known: {', '.join(list_archs())}"
        raise TrainingError(f"model.arch: unknown architecture '{cfg.model.arch}'{hint}") from None
    hp = dict(cfg.model.hyperparams)
    hp.setdefault("scale", cfg.data.scale)
    try:
        params = inspect.signature(spec.build).parameters
    except (TypeError, ValueError):
        params = {}
    if params and not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        known = [k for k in params if k != "self"]
        for key in hp:
            if key not in known:
                import difflib

                close = difflib.get_close_matches(key, known, n=1)
                hint = f"; did you mean '{close[0]}'?" if close else f"; known: {', '.join(known)}"
                raise TrainingError(f"model.hyperparams: '{key}' is not a parameter of {spec.name}{hint}")
    try:
        return build(spec.name, **hp)
    except (TypeError, ValueError, AssertionError) as e:
        raise TrainingError(f"model: cannot build {spec.name} with {hp}: {e}") from None


def _build_datasets(cfg: TrainConfig, seed: int) -> tuple[torch.utils.data.Dataset, Any]:
    """Training datasets (checked now: folders, images, crop sizes) and the batch degradation (or None)."""
    from torch.utils.data import ConcatDataset

    from ..data.datasets import HRFolderDataset, PairedFolderDataset
    from ..data.degradations import build_degradation

    d = cfg.data
    deg_name = d.degradation.name.lower()
    degradation = build_degradation(deg_name, d.scale, **d.degradation.params)  # validates name and params
    per_sample_bicubic = deg_name == "bicubic" and not d.degradation.params
    paired = [t for t in d.train if t.lr]
    hr_only = [t.hr for t in d.train if not t.lr]
    if paired and not per_sample_bicubic:
        raise TrainingError(f"data.degradation '{deg_name}' makes LR from HR on the fly; it cannot be combined "
                            f"with paired sets (data.train entries with 'lr': {paired[0].lr})")
    parts: list[torch.utils.data.Dataset] = []
    for k, t in enumerate(paired):
        pds = PairedFolderDataset(t.hr, t.lr, d.scale, d.patch_size, d.augment, seed=seed + 7919 * (k + 1),
                                  small_images=d.small_images)
        if pds.skipped:
            log.info("data.small_images=skip: left out %d of %d images of '%s' smaller than %dx%d", pds.skipped,
                     pds.skipped + len(pds), t.hr, d.patch_size * d.scale, d.patch_size * d.scale)
        parts.append(pds)
    if hr_only:
        import tempfile

        with tempfile.TemporaryDirectory(prefix="superres-fit-") as tmp:
            if d.small_images == "skip":
                hr_only = _fitting_images(hr_only, d.patch_size * d.scale, Path(tmp))
            parts.append(HRFolderDataset(hr_only, d.scale, d.patch_size, d.augment,
                                         lr_mode="bicubic" if per_sample_bicubic else None, seed=seed))
    ds = parts[0] if len(parts) == 1 else ConcatDataset(parts)
    return ds, (None if per_sample_bicubic else degradation)


def _fitting_images(folders: list[str], need: int, tmp: Path) -> list[str]:
    """``data.small_images: skip``: folders of links to the images at least ``need`` pixels on both sides
    (sizes from the file headers; the images are decoded once, by the dataset, while the links exist)."""
    from PIL import Image

    from ..data.datasets import list_images

    out, kept, dropped = [], 0, 0
    for k, folder in enumerate(folders):
        sub = tmp / str(k)
        sub.mkdir()
        for f in list_images(folder, "HR"):
            try:
                with Image.open(f) as im:
                    fits = min(im.size) >= need
            except OSError:
                fits = True  # let the dataset report the unreadable file
            if fits:
                (sub / f.name).symlink_to(f.resolve())
                kept += 1
            else:
                dropped += 1
        if any(sub.iterdir()):
            out.append(str(sub))
    if not out:
        raise TrainingError(f"no training image is at least {need}x{need} pixels (the HR crop); "
                            "lower data.patch_size")
    if dropped:
        log.info("data.small_images=skip: left out %d of %d images smaller than %dx%d", dropped, kept + dropped,
                 need, need)
    return out


def _build_losses(cfg: TrainConfig, device: torch.device) -> list[tuple[str, float, nn.Module]]:
    from .losses import build_loss

    out = []
    for term in cfg.loss:
        fn = build_loss(term.name, **term.params).to(device)
        out.append((term.name, float(term.weight), fn))
    return out


def widen_into(sd: dict[str, torch.Tensor], net: nn.Module) -> None:
    """Load a narrower network's weights into ``net`` so that ``net`` computes the same function.

    Each tensor of ``sd`` fills the leading block of the matching (equal or larger) tensor of ``net``:
    the old filters are kept; new output channels keep their random initialisation, and every weight
    from a new input channel into an old output channel is zero. The new channels then compute
    something, but nothing of it reaches the old ones, so the output is unchanged until training gives
    them a use: a model trained on a small budget grows into a wider one without starting over. This
    holds for plain convolution stacks and residual ones alike, as long as channels are added at the
    end of each dimension (pixel shuffle keeps the leading channels' positions)."""
    own = net.state_dict()  # shares storage with the parameters: writing into it loads them
    missing = sorted(set(own) - set(sd))
    extra = sorted(set(sd) - set(own))
    if missing or extra:
        raise ValueError(f"different layers (missing {missing[:3]}, unexpected {extra[:3]})")
    with torch.no_grad():
        for k, new in own.items():
            old = sd[k].to(new.dtype)
            if old.ndim != new.ndim or any(a > b for a, b in zip(old.shape, new.shape)):
                raise ValueError(f"{k}: {tuple(old.shape)} does not fit inside {tuple(new.shape)}")
            if old.ndim >= 2:
                new[: old.shape[0], old.shape[1]:] = 0.0  # new inputs into old outputs
            new[tuple(slice(0, n) for n in old.shape)] = old


def transfer_into(sd: dict[str, torch.Tensor], net: nn.Module) -> list[str]:
    """Load the tensors of ``sd`` whose name and shape match ``net``'s; returns the names left at their
    random initialisation. At least one tensor must match (else the source is not this architecture)."""
    own = net.state_dict()  # shares storage with the parameters: writing into it loads them
    fresh = sorted(k for k in own if k not in sd or sd[k].shape != own[k].shape)
    if len(fresh) == len(own):
        raise ValueError("no layer of the same name and shape")
    with torch.no_grad():
        for k, v in own.items():
            if k not in fresh:
                v.copy_(sd[k].to(v.dtype))
    return fresh


def load_generator_weights(source: str, net: nn.Module, key: str = "gan.pretrained", mode: str = "exact") -> str:
    """Initialise ``net`` from a run folder (its newest checkpoint's EMA weights, else plain), a
    checkpoint folder, a weights file or a zoo name (fine-tuning, or stage 2 of a GAN recipe). ``key`` is
    the config entry named in errors; ``mode``: ``exact`` (strict load), ``widen`` (the source is a
    narrower model, :func:`widen_into`) or ``transfer`` (matching layers only, :func:`transfer_into`).
    Returns what was loaded."""
    from ..zoo.formats import read_weights_file

    p = Path(source).expanduser()
    if p.is_dir():
        folder, weights, _ = load_checkpoint(p)
        sd = weights.get("ema") or weights.get("generator")
        if sd is None:
            raise TrainingError(f"{key}: checkpoint '{folder}' holds no generator weights")
        what = f"{folder}/{'ema' if 'ema' in weights else 'generator'}.safetensors"
    elif p.is_file():
        sd, _ = read_weights_file(p)
        what = str(p)
    else:
        from ..zoo.loader import load_network

        try:
            other, _card = load_network(source)
        except SuperresError as e:
            raise TrainingError(f"{key}: {e}") from None
        sd, what = other.state_dict(), source
    try:
        if mode == "widen":
            widen_into(sd, net)
        elif mode == "transfer":
            fresh = transfer_into(sd, net)
            if fresh:
                log.info("%s: %s start from random weights (no tensor of that shape in '%s')", key,
                         ", ".join(fresh), what)
        else:
            net.load_state_dict(sd, strict=True)
    except (RuntimeError, ValueError) as e:
        first = str(e).strip().splitlines()[0]
        raise TrainingError(f"{key}: weights at '{what}' do not fit the configured model: {first}") from None
    return what


def _to_y(x: torch.Tensor) -> torch.Tensor:
    from ..metrics.color import rgb_to_y

    return rgb_to_y(x)  # type: ignore[return-value]


class _StopFlag:
    """SIGINT/SIGTERM ask the loop to stop after the current step; a second signal stops at once."""

    def __init__(self) -> None:
        self.requested = False
        self._old: dict[int, Any] = {}

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old[sig] = signal.getsignal(sig)
            signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        log.warning("stop requested (signal %d): finishing this step and writing a checkpoint", signum)

    def restore(self) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old.clear()


# ---- validation ----------------------------------------------------------------------------------------------


def validate(net: nn.Module, val_set: Any, scale: int, device: torch.device) -> dict[str, float]:
    """Y-PSNR/SSIM (crop = scale, uint8 output) over whole images, as ``superres eval`` computes them."""
    import copy

    import numpy as np

    from ..inference.upscaler import UpscaleOptions, Upscaler
    from ..metrics.psnr_ssim import psnr, ssim

    was_training = net.training
    clone = copy.deepcopy(net).float().eval()
    up = Upscaler(clone, device=str(device), precision="fp32", options=UpscaleOptions(tile=0))  # type: ignore[arg-type]
    ps, ss = [], []
    for lr, hr, _name in val_set:
        x = (lr[..., None] if lr.ndim == 2 else lr).astype(np.float32) / 255.0
        sr = up.upscale_float(x, out_dtype=np.uint8)
        sr = sr[..., 0] if lr.ndim == 2 else sr  # grey: its own Y, as superres eval scores it
        ps.append(psnr(sr, hr, crop=scale))
        ss.append(ssim(sr, hr, crop=scale))
    net.train(was_training)
    return {"psnr_y": float(np.mean(ps)), "ssim_y": float(np.mean(ss))}


# ---- the run -------------------------------------------------------------------------------------------------


def _meta(cfg: TrainConfig, net: nn.Module) -> dict[str, str]:
    hp = {k: v for k, v in getattr(net, "hyperparams", {}).items() if isinstance(v, (int, float, str, bool))}
    return {"arch": cfg.model.arch, "hyperparams": json.dumps(hp), "scale": str(cfg.data.scale),
            "recipe": cfg.name, "format": "superres-train-1"}


def _device_label(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def _new_run_dir(out: Path, name: str | None, cfg: TrainConfig, dist_info: DistInfo) -> Path:
    """Rank 0 picks ``out/<name>`` (default ``<recipe>-<date>-<time>``); the others are told."""
    chosen = [""]
    if dist_info.is_main:
        base = name or f"{cfg.name}-{time.strftime('%Y%m%d-%H%M%S')}"
        run = out / base
        if run.exists() and any(run.iterdir()):
            if name:
                raise TrainingError(f"run folder '{run}' already exists; continue it with --resume {run} "
                                    "or choose another --name")
            k = 2
            while (out / f"{base}-{k}").exists():
                k += 1
            run = out / f"{base}-{k}"
        chosen[0] = str(run)
    if dist_info.enabled:
        import torch.distributed as dist

        dist.broadcast_object_list(chosen, src=0)
    return Path(chosen[0])


def train(
    cfg: TrainConfig | None = None,
    *,
    out: str | os.PathLike[str] = "runs",
    name: str | None = None,
    resume: str | os.PathLike[str] | None = None,
    max_time: float | None = None,
    overrides_on_resume: TrainConfig | None = None,
    progress: Progress | None = None,
    stop_after: int | None = None,
) -> RunResult:
    """Run (or continue) a training recipe; returns where it stopped.

    ``resume``: a run folder or checkpoint folder; the run's saved config is used unless ``cfg`` is given
    (then it must describe the same model). ``max_time``: seconds for this invocation (overrides
    ``train.max_time``). ``stop_after``: stop (with a checkpoint) once this iteration is reached, for tests
    and staged schedules. Launched by torchrun, each process calls this and they train together."""
    ckpt = None
    if resume is not None:
        from .checkpoint import resolve_checkpoint

        folder = resolve_checkpoint(resume)
        run_dir = folder.parent.parent
        if cfg is None:
            import yaml

            saved = run_dir / "config.yaml"
            if not saved.is_file():
                raise CheckpointError(f"'{run_dir}' has no config.yaml; pass the recipe as well as --resume")
            cfg = config_from_dict(yaml.safe_load(saved.read_text()), source=str(saved))
        ckpt = folder
    if cfg is None:
        raise TrainingError("no recipe given")
    device = pick_device(cfg.train.device, int(os.environ.get("LOCAL_RANK", "0")))
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    dist_info = init_distributed(device)
    try:
        return _Run(cfg, device, dist_info, progress).run(
            Path(out), name, ckpt, max_time if max_time is not None else cfg.train.max_time, stop_after)
    finally:
        shutdown_distributed(dist_info)


class _Run:
    def __init__(self, cfg: TrainConfig, device: torch.device, dist_info: DistInfo, progress: Progress | None) -> None:
        self.cfg, self.device, self.dist, self.progress = cfg, device, dist_info, progress
        tc = cfg.train
        if tc.batch_size % dist_info.world_size:
            raise TrainingError(f"train.batch_size ({tc.batch_size}) is the global batch and must be divisible by "
                                f"the number of processes ({dist_info.world_size})")
        # -- everything that can fail on user input, before any compute --
        self.dataset, self.degradation = _build_datasets(cfg, tc.seed)
        self.losses = _build_losses(cfg, device)
        torch.manual_seed(tc.seed)  # same initial weights on every rank and on resume
        self.net = _build_generator(cfg).to(device)
        self.scale = cfg.data.scale
        in_ch = int(self.net.descriptor.in_channels) if hasattr(self.net, "descriptor") else 3
        self.y_mode = cfg.data.color == "y" or (cfg.data.color == "auto" and in_ch == 1)
        if self.y_mode and in_ch != 1:
            raise TrainingError(f"data.color=y needs a 1-channel network; {cfg.model.arch} takes {in_ch} channels")
        self.val_set = None
        if dist_info.is_main and cfg.val.dataset:
            from ..data.datasets import ValidationSet

            self.val_set = ValidationSet(cfg.val.dataset, cfg.val.scale or cfg.data.scale,
                                         root=cfg.val.root, limit=cfg.val.limit)
            if (cfg.val.scale or cfg.data.scale) != cfg.data.scale:
                raise TrainingError(f"val.scale ({cfg.val.scale}) must equal data.scale ({cfg.data.scale})")
        self.gan = cfg.gan
        self.disc: nn.Module | None = None
        self.pretrained_from = ""
        if cfg.model.pretrained:
            self.pretrained_from = load_generator_weights(cfg.model.pretrained, self.net, "model.pretrained",
                                                          mode=cfg.model.pretrained_mode)
        if self.gan is not None:
            from .discriminators import build_discriminator
            from .losses import build_loss

            if self.gan.pretrained:
                self.pretrained_from = load_generator_weights(self.gan.pretrained, self.net)
            self.disc = build_discriminator(self.gan.discriminator, **self.gan.discriminator_params).to(device)
            self.gan_loss = build_loss("gan", kind=self.gan.gan_type).to(device)
        # -- optimisation --
        self.opt = _optimizer(cfg.optim, self.net.parameters())
        self.d_opt = _optimizer(self.gan.d_optim, self.disc.parameters()) if self.disc is not None else None
        self.ema = EMA(self.net, tc.ema_decay) if tc.ema_decay > 0 else None
        self.amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(tc.amp) if device.type == "cuda" else None
        if tc.amp != "none" and device.type != "cuda":
            log.info("train.amp=%s ignored on %s (mixed precision is for CUDA)", tc.amp, device.type)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype is torch.float16)
        self.d_scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype is torch.float16)
        self.model: nn.Module = self.net
        self.d_model: nn.Module | None = self.disc
        if dist_info.enabled:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [device.index] if device.type == "cuda" else None
            self.model = DDP(self.net, device_ids=ids)
            if self.disc is not None:
                self.d_model = DDP(self.disc, device_ids=ids)
        self.iteration = 0
        self.train_seconds = 0.0
        self.best: dict[str, float] = {}
        self.last_val: dict[str, float] = {}
        self.writer: Any = None

    # -- checkpoints --
    def _state(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "iteration": self.iteration, "train_seconds": self.train_seconds, "optimizer": self.opt.state_dict(),
            "scaler": self.scaler.state_dict(), "ema_updates": self.ema.updates if self.ema else 0,
            "rng": rng_state(), "world_size": self.dist.world_size, "best": dict(self.best),
            "last_val": dict(self.last_val), "device": _device_label(self.device), "torch": str(torch.__version__),
        }
        if self.d_opt is not None:
            state["d_optimizer"] = self.d_opt.state_dict()
            state["d_scaler"] = self.d_scaler.state_dict()
        return state

    def save(self, run_dir: Path) -> Path | None:
        if not self.dist.is_main:
            return None
        weights = {"generator": self.net.state_dict()}
        if self.ema is not None:
            weights["ema"] = self.ema.state_dict()
        if self.disc is not None:
            weights["discriminator"] = self.disc.state_dict()
        path = save_checkpoint(run_dir, self.iteration, weights, self._state(), _meta(self.cfg, self.net),
                               keep=self.cfg.train.keep_checkpoints)
        self._write_run_info(run_dir, path)
        return path

    def _write_run_info(self, run_dir: Path, ckpt: Path | None) -> None:
        from ..io.atomic import atomic_write

        info = {"recipe": self.cfg.name, "iteration": self.iteration, "iterations": self.cfg.train.iterations,
                "train_seconds": round(self.train_seconds, 1), "device": _device_label(self.device),
                "world_size": self.dist.world_size, "torch": str(torch.__version__),
                "checkpoint": ckpt.name if ckpt else None, "best": self.best, "last_val": self.last_val,
                "pretrained": self.pretrained_from or None}
        with atomic_write(run_dir / "run.json") as tmp:
            tmp.write_text(json.dumps(info, indent=1))

    def restore(self, folder: Path) -> None:
        folder, weights, state = load_checkpoint(folder)
        try:
            self.net.load_state_dict(weights["generator"])
            if self.ema is not None:
                self.ema.load_state_dict(weights.get("ema") or weights["generator"], state.get("ema_updates", 0))
            if self.disc is not None:
                if "discriminator" not in weights:
                    raise KeyError("discriminator weights")
                self.disc.load_state_dict(weights["discriminator"])
                assert self.d_opt is not None
                self.d_opt.load_state_dict(state["d_optimizer"])
                self.d_scaler.load_state_dict(state["d_scaler"])
            self.opt.load_state_dict(state["optimizer"])
            self.scaler.load_state_dict(state["scaler"])
        except (KeyError, RuntimeError, ValueError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise CheckpointError(f"checkpoint '{folder}' does not fit this recipe: {first}") from None
        set_rng_state(state["rng"])
        self.iteration = int(state["iteration"])
        self.train_seconds = float(state.get("train_seconds", 0.0))
        self.best = dict(state.get("best", {}))
        self.last_val = dict(state.get("last_val", {}))
        if state.get("world_size", 1) != self.dist.world_size:
            log.warning("resuming a %d-process run with %d processes: same global batch, so the same data",
                        state.get("world_size", 1), self.dist.world_size)

    # -- steps --
    def _batch(self, batch: dict[str, torch.Tensor], iteration: int) -> tuple[torch.Tensor, torch.Tensor]:
        nb = self.device.type == "cuda"
        hr = batch["hr"].to(self.device, non_blocking=nb)
        if "lr" in batch:
            lr = batch["lr"].to(self.device, non_blocking=nb)
        else:
            gen = torch.Generator(device=self.device)
            gen.manual_seed(derive_seed((self.cfg.train.seed * 1_000_003 + iteration) * 4099 + self.dist.rank))
            lr = self.degradation(hr, gen)
        if self.y_mode:
            hr, lr = _to_y(hr), _to_y(lr)
        return lr, hr

    def _autocast(self) -> Any:
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(device_type="cuda", dtype=self.amp_dtype)

    def step(self, lr: torch.Tensor, hr: torch.Tensor) -> dict[str, torch.Tensor]:
        logs: dict[str, torch.Tensor] = {}
        tc = self.cfg.train
        self.opt.zero_grad(set_to_none=True)
        if self.disc is not None:
            self.disc.requires_grad_(False)
        with self._autocast():
            sr = self.model(lr)
        srf = sr.float()
        total = srf.new_zeros(())
        for name, w, fn in self.losses:
            v = fn(srf, hr)
            logs[f"loss/{name}"] = v.detach()
            total = total + w * v
        if self.disc is not None:
            assert self.gan is not None
            with self._autocast():
                fake_logits = self.disc(sr)  # plain module: DDP reduces D's grads only in the D step
            g_adv = self.gan_loss.generator_loss(fake_logits.float())
            logs["loss/g_gan"] = g_adv.detach()
            total = total + self.gan.weight * g_adv
        logs["loss/total"] = total.detach()
        self.scaler.scale(total).backward()
        if tc.grad_clip > 0:
            self.scaler.unscale_(self.opt)
            logs["grad_norm"] = torch.nn.utils.clip_grad_norm_(self.net.parameters(), tc.grad_clip).detach()
        self.scaler.step(self.opt)
        self.scaler.update()
        if self.disc is not None:
            self._d_step(hr, sr.detach(), logs)
        if self.ema is not None:
            self.ema.update(self.net)
        return logs

    def _d_step(self, hr: torch.Tensor, fake: torch.Tensor, logs: dict[str, torch.Tensor]) -> None:
        assert self.disc is not None and self.d_model is not None and self.d_opt is not None and self.gan is not None
        self.disc.requires_grad_(True)
        n = hr.shape[0]
        for _ in range(self.gan.d_steps):
            self.d_opt.zero_grad(set_to_none=True)
            with self._autocast():
                logits = self.d_model(torch.cat([hr, fake.to(hr.dtype)]))  # one forward: one DDP reduction
            d_loss = self.gan_loss.discriminator_loss(logits[:n].float(), logits[n:].float())
            self.d_scaler.scale(d_loss).backward()
            self.d_scaler.step(self.d_opt)
            self.d_scaler.update()
        logs["loss/d"] = d_loss.detach()
        logs["d/real"] = logits[:n].detach().float().mean()
        logs["d/fake"] = logits[n:].detach().float().mean()

    # -- logging --
    def _log(self, run_dir: Path, scalars: dict[str, float]) -> None:
        if not self.dist.is_main:
            return
        with open(run_dir / "log.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps({"iteration": self.iteration, **{k: round(v, 6) for k, v in scalars.items()}}) + "\n")
        if self.writer is not None:
            for k, v in scalars.items():
                self.writer.add_scalar(k, v, self.iteration)

    def _open_writer(self, run_dir: Path) -> None:
        if not self.dist.is_main:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard not installed: log.jsonl only
            return
        self.writer = SummaryWriter(log_dir=str(run_dir / "tb"), purge_step=self.iteration + 1)

    def _validate(self, run_dir: Path) -> None:
        if self.val_set is None:
            return
        net = self.net
        if self.ema is not None:
            import copy

            net = copy.deepcopy(self.net)
            self.ema.copy_to(net)
        t0 = time.perf_counter()
        m = validate(net, self.val_set, self.scale, self.device)
        self.last_val = {**m, "iteration": self.iteration}  # an interrupted run reports when it was measured
        if m["psnr_y"] > self.best.get("psnr_y", -math.inf):
            self.best = {**m, "iteration": self.iteration}
        log.info("iteration %d: %s Y-PSNR %.3f dB, SSIM %.4f (%.1fs)", self.iteration, self.val_set.name,
                 m["psnr_y"], m["ssim_y"], time.perf_counter() - t0)
        self._log(run_dir, {f"val/{k}": v for k, v in m.items()})

    # -- the loop --
    def run(self, out: Path, name: str | None, ckpt: Path | None, max_time: float | None,
            stop_after: int | None) -> RunResult:
        cfg, tc = self.cfg, self.cfg.train
        if ckpt is not None:
            run_dir = ckpt.parent.parent
            self.restore(ckpt)
        else:
            run_dir = _new_run_dir(out, name, cfg, self.dist)
        if self.dist.is_main:
            run_dir.mkdir(parents=True, exist_ok=True)
            from ..io.atomic import atomic_write

            with atomic_write(run_dir / "config.yaml") as tmp:
                tmp.write_text(dump_config(cfg))
        barrier(self.dist)
        total = tc.iterations
        stop_at = min(total, stop_after) if stop_after is not None else total
        self._open_writer(run_dir)
        sampler = IterationBatches(len(self.dataset), tc.batch_size, seed=tc.seed, start=self.iteration,
                                   stop=stop_at, rank=self.dist.rank, world_size=self.dist.world_size)
        loader = torch.utils.data.DataLoader(
            EpochIndexed(self.dataset), batch_sampler=sampler, num_workers=cfg.data.workers, collate_fn=collate,
            pin_memory=self.device.type == "cuda", worker_init_fn=worker_init if cfg.data.workers else None,
            persistent_workers=False, prefetch_factor=4 if cfg.data.workers else None)
        flag = _StopFlag()
        flag.install()
        self.net.train()
        started = time.monotonic()
        base_seconds = self.train_seconds
        last_ckpt: Path | None = latest_checkpoint(run_dir) if ckpt is not None else None
        saved_at = self.iteration if ckpt is not None else -1
        stopped = "finished"
        window: dict[str, float] = {}
        window_n = 0
        t_window = time.monotonic()
        try:
            for batch in loader:
                lr_now = lr_at(self.iteration, cfg.optim.lr, cfg.schedule, total)
                for g in self.opt.param_groups:
                    g["lr"] = lr_now
                if self.d_opt is not None and self.gan is not None:
                    for g in self.d_opt.param_groups:
                        g["lr"] = lr_at(self.iteration, self.gan.d_optim.lr, cfg.schedule, total)
                lr, hr = self._batch(batch, self.iteration)
                logs = self.step(lr, hr)
                self.iteration += 1
                self.train_seconds = base_seconds + (time.monotonic() - started)
                for k, v in logs.items():
                    window[k] = window.get(k, 0.0) + float(v)
                window_n += 1
                if self.iteration % tc.log_every == 0 or self.iteration == stop_at:
                    scalars = {k: v / window_n for k, v in window.items()}
                    if not math.isfinite(scalars.get("loss/total", 0.0)):
                        raise TrainingError(f"the loss became {scalars['loss/total']} by iteration {self.iteration}; "
                                            f"resume from the last checkpoint with a lower optim.lr or train.grad_clip")
                    scalars["lr"] = lr_now
                    scalars["it_per_s"] = window_n / max(1e-9, time.monotonic() - t_window)
                    self._log(run_dir, scalars)
                    if self.progress is not None and self.dist.is_main:
                        self.progress(self.iteration, total, {**scalars, **{f"val/{k}": v
                                                                            for k, v in self.last_val.items()}})
                    window, window_n, t_window = {}, 0, time.monotonic()
                elif self.progress is not None and self.dist.is_main:
                    self.progress(self.iteration, total, {})
                if tc.val_every and self.iteration % tc.val_every == 0 and self.iteration < total:
                    self._validate(run_dir)
                    barrier(self.dist)
                if self.iteration % tc.checkpoint_every == 0 and self.iteration < stop_at:
                    last_ckpt = self.save(run_dir) or last_ckpt
                    saved_at = self.iteration
                over_time = max_time is not None and time.monotonic() - started >= max_time
                if any_true(flag.requested or over_time, self.dist, self.device):
                    stopped = "interrupted" if any_true(flag.requested, self.dist, self.device) else "time budget"
                    break
        finally:
            flag.restore()
        if self.iteration >= total:
            self._validate(run_dir)
        elif self.iteration >= stop_at and stopped == "finished":
            stopped = "stop_after"
        if saved_at != self.iteration:
            last_ckpt = self.save(run_dir) or last_ckpt
        elif self.dist.is_main:
            self._write_run_info(run_dir, last_ckpt)
        if self.writer is not None:
            self.writer.close()
        barrier(self.dist)
        return RunResult(run_dir, self.iteration, total, stopped, self.train_seconds, dict(self.last_val), last_ckpt)


def _optimizer(o: Any, params: Any) -> torch.optim.Optimizer:
    if o.name == "adam":
        return torch.optim.Adam(params, lr=o.lr, betas=tuple(o.betas), weight_decay=o.weight_decay)
    if o.name == "adamw":
        return torch.optim.AdamW(params, lr=o.lr, betas=tuple(o.betas), weight_decay=o.weight_decay)
    return torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)
