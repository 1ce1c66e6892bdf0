"""Training batches as a pure function of ``(seed, iteration, rank)``, so that resuming is exact.

Sample position ``p`` (counting every sample the whole run draws, over all processes) maps to epoch
``p // n`` and to dataset index ``perm_epoch[p % n]`` where ``perm_epoch`` is a permutation seeded by
``(seed, epoch)``; the dataset's own crop and flips are seeded by ``(seed, epoch, index)``. Iteration ``i``
takes positions ``[i B, (i + 1) B)`` of a global batch ``B``, and DDP rank ``r`` of ``W`` takes the ``r``-th
``B / W`` of them. No iterator state is involved: a run resumed at iteration 10 sees exactly the batches
the uninterrupted run saw, and ``W`` processes together see the batches one process would have.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import ConcatDataset, Dataset, Sampler

__all__ = ["EpochIndexed", "IterationBatches", "collate", "worker_init"]


class IterationBatches(Sampler[list[tuple[int, int]]]):
    """Yields, for each iteration in ``[start, stop)``, this rank's list of ``(epoch, index)`` items."""

    def __init__(self, n: int, global_batch: int, *, seed: int, start: int, stop: int, rank: int = 0,
                 world_size: int = 1) -> None:
        if global_batch % world_size:
            raise ValueError(f"batch {global_batch} does not split over {world_size} processes")
        self.n, self.batch, self.seed = int(n), int(global_batch), int(seed)
        self.start, self.stop = int(start), int(stop)
        self.local = self.batch // world_size
        self.offset = rank * self.local
        self._perms: dict[int, np.ndarray] = {}

    def permutation(self, epoch: int) -> np.ndarray:
        perm = self._perms.get(epoch)
        if perm is None:
            perm = np.random.default_rng([self.seed, epoch, 0x5EED]).permutation(self.n)
            self._perms = {epoch: perm, **{k: v for k, v in self._perms.items() if k >= epoch - 1}}
        return perm

    def batch_at(self, iteration: int) -> list[tuple[int, int]]:
        first = iteration * self.batch + self.offset
        out = []
        for p in range(first, first + self.local):
            epoch = p // self.n
            out.append((epoch, int(self.permutation(epoch)[p % self.n])))
        return out

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for it in range(self.start, self.stop):
            yield self.batch_at(it)

    def __len__(self) -> int:
        return max(0, self.stop - self.start)


class EpochIndexed(Dataset):
    """Wraps the training datasets so that an item is addressed by ``(epoch, index)``: the epoch is set on
    the underlying dataset (in whichever worker process runs it) before the item is made."""

    def __init__(self, ds: Dataset) -> None:
        self.ds = ds
        self._parts = list(ds.datasets) if isinstance(ds, ConcatDataset) else [ds]

    def __len__(self) -> int:
        return len(self.ds)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]) -> dict[str, Any]:
        epoch, index = key
        for part in self._parts:
            part.set_epoch(epoch)  # type: ignore[attr-defined]
        return self.ds[index]


def collate(items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    out = {"hr": torch.stack([it["hr"] for it in items])}
    if "lr" in items[0]:
        out["lr"] = torch.stack([it["lr"] for it in items])
    return out


def worker_init(worker_id: int) -> None:
    """Workers leave Ctrl-C to the main process, which stops cleanly and writes a checkpoint."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
