"""Learning-rate schedules as pure functions of the iteration, and an EMA of the generator's weights.

The learning rate is recomputed from the iteration number at every step instead of being stepped by a
scheduler object: a resumed run then gets exactly the same rates without restoring any scheduler state.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .config import ScheduleSection

__all__ = ["EMA", "lr_at"]


def lr_at(iteration: int, base_lr: float, sched: ScheduleSection, total: int) -> float:
    """Learning rate for the step that runs at ``iteration`` (0-based) of ``total``.

    Warm-up rises linearly from ``base_lr / warmup`` to ``base_lr`` over ``warmup_iters`` steps; cosine
    then decays to ``min_lr`` at ``total``; multistep multiplies by ``gamma`` at each milestone passed."""
    w = sched.warmup_iters
    if w and iteration < w:
        return base_lr * (iteration + 1) / w
    if sched.name == "cosine":
        span = max(1, total - w)
        t = min(1.0, (iteration - w) / span)
        return sched.min_lr + (base_lr - sched.min_lr) * 0.5 * (1.0 + math.cos(math.pi * t))
    if sched.name == "multistep":
        passed = sum(1 for m in sched.milestones if iteration >= m)
        return base_lr * sched.gamma**passed
    return base_lr


class EMA:
    """Exponential moving average of a network's parameters (buffers are copied): the weights we ship.

    ``shadow = decay * shadow + (1 - decay) * param`` after each optimiser step. Early in training the
    effective decay is ``min(decay, (1 + n) / (10 + n))`` so the average is not dominated by the random
    initialisation when runs are short."""

    def __init__(self, net: nn.Module, decay: float, *, warmup: bool = True) -> None:
        self.decay = float(decay)
        self.warmup = warmup
        self.updates = 0
        self.shadow: dict[str, torch.Tensor] = {k: v.detach().clone().float() if v.is_floating_point()
                                                else v.detach().clone() for k, v in net.state_dict().items()}

    def current_decay(self) -> float:
        if not self.warmup:
            return self.decay
        return min(self.decay, (1.0 + self.updates) / (10.0 + self.updates))

    @torch.no_grad()
    def update(self, net: nn.Module) -> None:
        d = self.current_decay()
        params = dict(net.named_parameters())
        for k, v in net.state_dict().items():
            s = self.shadow[k]
            if k in params and v.is_floating_point():
                s.mul_(d).add_(v.detach().float(), alpha=1.0 - d)
            else:
                s.copy_(v)
        self.updates += 1

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.shadow

    def load_state_dict(self, sd: dict[str, torch.Tensor], updates: int) -> None:
        missing = set(self.shadow) - set(sd)
        if missing:
            raise KeyError(f"EMA state lacks {sorted(missing)[:3]}")
        for k in self.shadow:
            self.shadow[k].copy_(sd[k])
        self.updates = int(updates)

    def copy_to(self, net: nn.Module) -> None:
        net.load_state_dict({k: v.to(dtype=net.state_dict()[k].dtype) for k, v in self.shadow.items()})
