"""FID (Heusel et al., NeurIPS 2017): the Fréchet distance between Inception-v3 pool features of two image sets.

A set-level metric: it compares the distribution of SR outputs with that of the HR images, so it sees
texture realism that per-image PSNR cannot, and it needs many images (its covariances are 2048 x 2048;
below a few thousand images the value is biased upwards and only comparable between runs on the same set).

* Features: our own Inception-v3 in the layout of the TF-ported FID weights
  (``pt_inception-2015-12-05-6726825d.pth``, as pytorch-fid uses them): torchvision-style names
  (``Conv2d_1a_3x3.conv.weight``, ``Mixed_7c.branch_pool.bn.running_var``, ...), batch norm eps 1e-3, the
  FID variants of the blocks (average pools that do not count padding; a max pool in the last block), the
  2048-D global average pool as the feature. The weights come from ``superres fetch fid`` (pinned).
* Resizing, clean-fid style: each channel of the uint8 image resized to 299 x 299 with PIL's antialiased
  bicubic on float values (no uint8 rounding, no bilinear aliasing), then scaled to [-1, 1]. Grey images are
  repeated to three channels.
* Distance: ``|mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2))`` in float64, the trace of the square
  root computed as that of ``(S1^(1/2) S2 S1^(1/2))^(1/2)`` (symmetric, so eigenvalues suffice).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["FidInception", "fid_from_features", "fid_statistics", "frechet_distance", "load_fid_inception",
           "prepare", "sqrtm_psd"]

FID_SIZE = 299


# ---- statistics ----------------------------------------------------------------------------------------------


def sqrtm_psd(a: np.ndarray) -> np.ndarray:
    """The symmetric square root of a symmetric positive semi-definite matrix (tiny negative eigenvalues from
    rounding are clipped to 0)."""
    a = np.asarray(a, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise ValueError(f"expected a square matrix, got shape {a.shape}")
    w, v = np.linalg.eigh((a + a.T) / 2.0)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def fid_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean, covariance) of ``(n, d)`` features, float64; needs n >= 2."""
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"FID needs at least two images' features, got shape {f.shape}")
    return f.mean(axis=0), np.cov(f, rowvar=False)


def frechet_distance(mu1: np.ndarray, s1: np.ndarray, mu2: np.ndarray, s2: np.ndarray) -> float:
    """Fréchet distance between the Gaussians (mu1, s1) and (mu2, s2)."""
    r1 = sqrtm_psd(s1)
    inner = r1 @ np.asarray(s2, np.float64) @ r1
    tr_sqrt = float(np.sqrt(np.clip(np.linalg.eigvalsh((inner + inner.T) / 2.0), 0.0, None)).sum())
    d = np.asarray(mu1, np.float64) - np.asarray(mu2, np.float64)
    return float(max(d @ d + np.trace(s1) + np.trace(s2) - 2.0 * tr_sqrt, 0.0))


def fid_from_features(a: np.ndarray, b: np.ndarray) -> float:
    """FID between two sets of features."""
    return frechet_distance(*fid_statistics(a), *fid_statistics(b))


# ---- the network ---------------------------------------------------------------------------------------------


class _Conv(nn.Module):
    """Conv (no bias) + batch norm (eps 1e-3) + ReLU: the ``BasicConv2d`` unit of the layout."""

    def __init__(self, cin: int, cout: int, kernel: int | tuple[int, int], stride: int = 1,
                 padding: int | tuple[int, int] = 0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def _avg3(x: torch.Tensor) -> torch.Tensor:
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)


class _A(nn.Module):
    def __init__(self, cin: int, pool: int) -> None:
        super().__init__()
        self.branch1x1 = _Conv(cin, 64, 1)
        self.branch5x5_1, self.branch5x5_2 = _Conv(cin, 48, 1), _Conv(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = _Conv(cin, 64, 1)
        self.branch3x3dbl_2, self.branch3x3dbl_3 = _Conv(64, 96, 3, padding=1), _Conv(96, 96, 3, padding=1)
        self.branch_pool = _Conv(cin, pool, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1x1(x), self.branch5x5_2(self.branch5x5_1(x)),
                          self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                          self.branch_pool(_avg3(x))], 1)


class _B(nn.Module):
    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3 = _Conv(cin, 384, 3, stride=2)
        self.branch3x3dbl_1 = _Conv(cin, 64, 1)
        self.branch3x3dbl_2, self.branch3x3dbl_3 = _Conv(64, 96, 3, padding=1), _Conv(96, 96, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch3x3(x), self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                          F.max_pool2d(x, 3, stride=2)], 1)


class _C(nn.Module):
    def __init__(self, cin: int, c7: int) -> None:
        super().__init__()
        h, v = ((1, 7), (0, 3)), ((7, 1), (3, 0))
        self.branch1x1 = _Conv(cin, 192, 1)
        self.branch7x7_1 = _Conv(cin, c7, 1)
        self.branch7x7_2 = _Conv(c7, c7, h[0], padding=h[1])
        self.branch7x7_3 = _Conv(c7, 192, v[0], padding=v[1])
        self.branch7x7dbl_1 = _Conv(cin, c7, 1)
        self.branch7x7dbl_2 = _Conv(c7, c7, v[0], padding=v[1])
        self.branch7x7dbl_3 = _Conv(c7, c7, h[0], padding=h[1])
        self.branch7x7dbl_4 = _Conv(c7, c7, v[0], padding=v[1])
        self.branch7x7dbl_5 = _Conv(c7, 192, h[0], padding=h[1])
        self.branch_pool = _Conv(cin, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d = x
        for layer in (self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4,
                      self.branch7x7dbl_5):
            d = layer(d)
        return torch.cat([self.branch1x1(x), b7, d, self.branch_pool(_avg3(x))], 1)


class _D(nn.Module):
    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3_1, self.branch3x3_2 = _Conv(cin, 192, 1), _Conv(192, 320, 3, stride=2)
        self.branch7x7x3_1 = _Conv(cin, 192, 1)
        self.branch7x7x3_2 = _Conv(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = _Conv(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = _Conv(192, 192, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        return torch.cat([self.branch3x3_2(self.branch3x3_1(x)), b, F.max_pool2d(x, 3, stride=2)], 1)


class _E(nn.Module):
    def __init__(self, cin: int, max_pool: bool) -> None:
        super().__init__()
        self.max_pool = max_pool  # the FID graph's last block pools with max, the one before with average
        self.branch1x1 = _Conv(cin, 320, 1)
        self.branch3x3_1 = _Conv(cin, 384, 1)
        self.branch3x3_2a = _Conv(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = _Conv(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = _Conv(cin, 448, 1)
        self.branch3x3dbl_2 = _Conv(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = _Conv(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = _Conv(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = _Conv(cin, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.branch3x3_1(x)
        d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        pool = F.max_pool2d(x, 3, stride=1, padding=1) if self.max_pool else _avg3(x)
        return torch.cat([self.branch1x1(x), self.branch3x3_2a(t), self.branch3x3_2b(t),
                          self.branch3x3dbl_3a(d), self.branch3x3dbl_3b(d), self.branch_pool(pool)], 1)


class FidInception(nn.Module):
    """Inception-v3 up to the 2048-D pool features, in the FID weights' layout. Input: ``N x 3 x 299 x 299``
    in [-1, 1]; output ``N x 2048``."""

    def __init__(self) -> None:
        super().__init__()
        self.Conv2d_1a_3x3 = _Conv(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = _Conv(32, 32, 3)
        self.Conv2d_2b_3x3 = _Conv(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = _Conv(64, 80, 1)
        self.Conv2d_4a_3x3 = _Conv(80, 192, 3)
        self.Mixed_5b, self.Mixed_5c, self.Mixed_5d = _A(192, 32), _A(256, 64), _A(288, 64)
        self.Mixed_6a = _B(288)
        self.Mixed_6b, self.Mixed_6c = _C(768, 128), _C(768, 160)
        self.Mixed_6d, self.Mixed_6e = _C(768, 160), _C(768, 192)
        self.Mixed_7a = _D(768)
        self.Mixed_7b, self.Mixed_7c = _E(1280, max_pool=False), _E(2048, max_pool=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, 3, stride=2)
        x = F.max_pool2d(self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x)), 3, stride=2)
        for block in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a, self.Mixed_6b, self.Mixed_6c,
                      self.Mixed_6d, self.Mixed_6e, self.Mixed_7a, self.Mixed_7b, self.Mixed_7c):
            x = block(x)
        return x.mean(dim=(2, 3))


#: keys of the official file that the feature extractor does not use (the 1008-class logits)
_UNUSED = ("fc.weight", "fc.bias")


def load_fid_inception(path: str | os.PathLike[str] | None = None) -> FidInception:
    """The feature extractor with the FID weights from ``path``, ``$SUPERRES_FID_WEIGHTS`` or where
    ``superres fetch fid`` put them. Missing: a one-line ``FileNotFoundError`` naming the fetch command; a
    file in another layout: a one-line ``ValueError`` naming the first mismatch."""
    from .assets import FID_WEIGHTS, METRIC_ASSETS, asset_folder, missing_hint

    env = os.environ.get("SUPERRES_FID_WEIGHTS")
    p = Path(path) if path is not None else Path(env) if env else asset_folder(METRIC_ASSETS["fid"]) / FID_WEIGHTS
    if not p.is_file():
        where = f"FID Inception weights not found at {p}" if (path is not None or env) else \
            "FID Inception weights not fetched"
        raise FileNotFoundError(f"{where}: {missing_hint('fid')}")
    try:
        sd = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is one line for the user
        raise ValueError(f"cannot read FID weights {p}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") \
            from None
    if not isinstance(sd, dict):
        raise ValueError(f"FID weights {p} hold a {type(sd).__name__}, not a state dict")
    net = FidInception()
    own = net.state_dict()
    for k, v in own.items():
        if k.endswith("num_batches_tracked"):
            continue
        if k not in sd:
            raise ValueError(f"FID weights {p} lack {k} (not the pt_inception-2015-12-05 layout)")
        if tuple(sd[k].shape) != tuple(v.shape):
            raise ValueError(f"FID weights {p}: {k} has shape {tuple(sd[k].shape)}, expected {tuple(v.shape)}")
    extra = [k for k in sd if k not in own and k not in _UNUSED]
    if extra:
        raise ValueError(f"FID weights {p} have unexpected tensors, e.g. {extra[0]}")
    net.load_state_dict({k: v.float() for k, v in sd.items() if k in own}, strict=False)
    return net.eval()


# ---- images to features --------------------------------------------------------------------------------------


def prepare(img: np.ndarray) -> np.ndarray:
    """uint8 ``HxW`` or ``HxWx3`` -> float32 ``3 x 299 x 299`` in [-1, 1]: each channel resized with PIL's
    antialiased bicubic on float values (clean-fid's "clean" resize), grey repeated to three channels."""
    from PIL import Image

    a = np.asarray(img)
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    if a.ndim != 3 or a.shape[2] != 3 or a.dtype != np.uint8:
        raise ValueError(f"FID expects uint8 HxWx3 or HxW images, got shape {a.shape} ({a.dtype})")
    chans = [np.asarray(Image.fromarray(np.ascontiguousarray(a[:, :, c], dtype=np.float32)).resize(
        (FID_SIZE, FID_SIZE), Image.Resampling.BICUBIC), dtype=np.float32) for c in range(3)]
    return np.stack(chans) / 127.5 - 1.0


@torch.no_grad()
def features(net: FidInception, images: Iterable[np.ndarray], batch: int = 8, device: str = "cpu") -> np.ndarray:
    """``(n, 2048)`` float64 features of uint8 images (see :func:`prepare`)."""
    out: list[np.ndarray] = []
    buf: list[np.ndarray] = []
    net = net.to(device)

    def flush() -> None:
        x = torch.from_numpy(np.stack(buf)).to(device)
        out.append(net(x).double().cpu().numpy())
        buf.clear()

    for img in images:
        buf.append(prepare(img))
        if len(buf) == batch:
            flush()
    if buf:
        flush()
    return np.concatenate(out) if out else np.zeros((0, 2048))
