"""LPIPS v0.1 (Zhang et al., "The Unreasonable Effectiveness of Deep Features as a Perceptual Metric", 2018).

Our own small torch modules for the AlexNet / VGG16 feature stacks (no torchvision needed), in torchvision's
layer layout so that ``features.N.weight`` state dicts load strictly. The computation, which reproduces the
published values (``shared/weights/README.md``):

1. RGB in [0, 1] -> [-1, 1] -> ``(x - shift) / scale`` with shift ``(-.030, -.088, -.188)``, scale
   ``(.458, .448, .450)``;
2. activations after the ReLUs at ``features`` indices 1, 4, 7, 9, 11 (AlexNet) or 3, 8, 15, 22, 29 (VGG16);
3. each activation unit-normalised over channels (``x / (||x|| + 1e-10)``), squared difference, the v0.1
   1x1 linear head (non-negative weights, no bias), spatial mean; the five taps summed.

Weights are never fetched silently. Each file is looked for, in order: the explicit path argument,
``weights_dir``, ``$SUPERRES_LPIPS_DIR``, then the cache folder (``$SUPERRES_CACHE_DIR/lpips`` or the user
cache ``superres/lpips``); only with ``allow_download=True`` is a missing file downloaded into the cache from
its public URL and checked against its pinned hash.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Sequence

import numpy as np
import torch
from torch import nn

__all__ = ["LPIPS", "LPIPS_FILES", "WeightFile", "find_weights", "load_state", "lpips_cache_dir",
           "lpips_distance", "vgg16_features", "vgg_features"]

NetName = Literal["alex", "vgg"]


@dataclass(frozen=True)
class WeightFile:
    """One downloadable weights file: accepted local names, public URL, and the hash it must have."""

    names: tuple[str, ...]  # the first is the canonical name in a weights folder; the URL's name also works
    url: str
    sha256: str | None  # full sha256, where verified
    sha256_prefix: str | None = None  # torchvision puts the first hex digits of the sha256 in its file names


_LPIPS_RAW = "https://raw.githubusercontent.com/richzhang/PerceptualSimilarity/master/lpips/weights/v0.1/"

LPIPS_FILES: dict[str, dict[str, WeightFile]] = {
    "alex": {
        "backbone": WeightFile(
            names=("torchvision_alexnet_features.pth", "alexnet-owt-7be5be79.pth"),
            url="https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
            # TODO: pin the full sha256 of the torchvision release file once verified against a download;
            # until then the 8-digit prefix from torchvision's file name is checked.
            sha256=None,
            sha256_prefix="7be5be79",
        ),
        "lin": WeightFile(
            names=("lpips_v0.1_alex_lin.pth", "alex.pth"),
            url=_LPIPS_RAW + "alex.pth",
            sha256="df73285e35b22355a2df87cdb6b70b343713b667eddbda73e1977e0c860835c0",
        ),
    },
    "vgg": {
        "backbone": WeightFile(
            names=("torchvision_vgg16_features.pth", "vgg16-397923af.pth"),
            url="https://download.pytorch.org/models/vgg16-397923af.pth",
            # TODO: pin the full sha256 of the torchvision release file once verified against a download.
            sha256=None,
            sha256_prefix="397923af",
        ),
        "lin": WeightFile(
            names=("lpips_v0.1_vgg_lin.pth", "vgg.pth"),
            url=_LPIPS_RAW + "vgg.pth",
            sha256="a78928a0af1e5f0fcb1f3b9e8f8c3a2a5a3de244d830ad5c1feddc79b8432868",
        ),
    },
}

# Indices (in torchvision's ``features``) of the ReLUs whose outputs LPIPS compares.
_ALEX_TAPS = (1, 4, 7, 9, 11)
_VGG_TAPS = (3, 8, 15, 22, 29)
# VGG16 conv widths, "M" = 2x2 max-pool with stride 2; the last pool is not needed.
_VGG16_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)
_EPS = 1e-10


def _alexnet_features() -> nn.Sequential:
    """torchvision AlexNet ``features`` up to the last tapped ReLU (index 11)."""
    return nn.Sequential(
        nn.Conv2d(3, 64, 11, stride=4, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(3, 2),
        nn.Conv2d(64, 192, 5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(3, 2),
        nn.Conv2d(192, 384, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(384, 256, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(256, 256, 3, padding=1),
        nn.ReLU(),
    )


def vgg_features(cfg: Sequence[int | str]) -> nn.Sequential:
    """A torchvision-layout VGG ``features`` stack: ints are 3x3 conv widths (each + ReLU), ``"M"`` a 2x2
    max-pool. Shared with the perceptual loss (VGG16/VGG19) so both read the same weight files."""
    layers: list[nn.Module] = []
    in_ch = 3
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            assert isinstance(v, int)
            layers += [nn.Conv2d(in_ch, v, 3, padding=1), nn.ReLU()]
            in_ch = v
    return nn.Sequential(*layers)


def vgg16_features() -> nn.Sequential:
    """torchvision VGG16 ``features`` up to the last tapped ReLU (index 29)."""
    return vgg_features(_VGG16_CFG)


def lpips_cache_dir() -> Path:
    """Where downloaded LPIPS weights go: ``lpips/`` in the superres cache (:mod:`superres.cache`)."""
    from ..cache import cache_dir

    return cache_dir("lpips")


def find_weights(
    net: str,
    part: str,
    explicit: str | os.PathLike[str] | None,
    weights_dir: str | os.PathLike[str] | None,
    allow_download: bool,
) -> Path:
    """Find one weights file (see the module docstring for the search order)."""
    spec = LPIPS_FILES[net][part]
    if explicit is not None:
        p = Path(explicit)
        if not p.is_file():
            raise FileNotFoundError(f"LPIPS {net} {part} weights not found at {p}")
        return p
    folders = [Path(d) for d in (weights_dir, os.environ.get("SUPERRES_LPIPS_DIR")) if d]
    cache = lpips_cache_dir()
    folders.append(cache)
    url_name = spec.url.rsplit("/", 1)[1]
    for folder in folders:
        for name in spec.names:
            if (folder / name).is_file():
                return folder / name
    if allow_download:
        # Downloaded heads are stored under their canonical name ('alex.pth' alone would be ambiguous).
        name = url_name if part == "backbone" else spec.names[0]
        from ..files import download_pinned

        return download_pinned(spec.url, cache / name, spec.sha256, sha256_prefix=spec.sha256_prefix)
    arg = "backbone_path" if part == "backbone" else "lin_path"
    raise FileNotFoundError(
        f"LPIPS {net} {part} weights not found: put {spec.names[0]} in {cache} or in $SUPERRES_LPIPS_DIR, "
        f"pass {arg}=..., or pass allow_download=True to fetch {spec.url}"
    )


def load_state(path: Path) -> dict[str, torch.Tensor]:
    sd = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict):
        raise ValueError(f"{path} does not hold a state dict")
    return sd


class LPIPS(nn.Module):
    """LPIPS v0.1 distance: ``forward(x, y)`` with two ``Nx3xHxW`` RGB tensors in [0, 1] returns ``(N,)``.

    All parameters are frozen, but gradients flow to the inputs, so it can be used as a loss
    (``LPIPS(...)(sr, hr).mean()``). The module holds no per-call state and can be shared between threads.
    """

    def __init__(
        self,
        net: NetName = "alex",
        lin_path: str | os.PathLike[str] | None = None,
        backbone_path: str | os.PathLike[str] | None = None,
        *,
        weights_dir: str | os.PathLike[str] | None = None,
        allow_download: bool = False,
    ) -> None:
        super().__init__()
        if net not in LPIPS_FILES:
            raise ValueError(f"net must be 'alex' or 'vgg', got {net!r}")
        self.net = net
        self.features = _alexnet_features() if net == "alex" else vgg16_features()
        self.taps = _ALEX_TAPS if net == "alex" else _VGG_TAPS
        channels = [self.features[i - 1].out_channels for i in self.taps]  # type: ignore[union-attr]
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in channels)
        self.register_buffer("shift", torch.tensor(_SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(_SCALE).view(1, 3, 1, 1), persistent=False)

        bb = load_state(find_weights(net, "backbone", backbone_path, weights_dir, allow_download))
        bb = {k: v for k, v in bb.items() if k.startswith("features.")}  # a full torchvision file has more
        self.load_state_dict(bb, strict=False)
        expected = {k for k in self.state_dict() if k.startswith("features.")}
        if set(bb) != expected:
            raise ValueError(
                f"LPIPS {net} backbone keys do not match torchvision's features layout: "
                f"missing {sorted(expected - set(bb))[:4]}, unexpected {sorted(set(bb) - expected)[:4]}"
            )
        lin = load_state(find_weights(net, "lin", lin_path, weights_dir, allow_download))
        for i, conv in enumerate(self.lins):
            key = f"lin{i}.model.1.weight"
            if key not in lin or lin[key].shape != conv.weight.shape:
                raise ValueError(f"LPIPS {net} head file lacks {key} of shape {tuple(conv.weight.shape)}")
            with torch.no_grad():
                conv.weight.copy_(lin[key])
        self.requires_grad_(False)
        self.eval()

    def _taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        last = self.taps[-1]
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self.taps:
                out.append(x)
            if i == last:
                break
        return out

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if x.shape != y.shape or x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(
                f"expected two Nx3xHxW tensors of the same shape, got {tuple(x.shape)} and {tuple(y.shape)}"
            )
        shift = self.shift.to(x.dtype)
        scale = self.scale.to(x.dtype)
        n = x.shape[0]
        both = torch.cat([x, y], dim=0) * 2.0 - 1.0
        feats = self._taps((both - shift) / scale)
        total = x.new_zeros(n)
        for f, lin in zip(feats, self.lins):
            f = f / (torch.sqrt(torch.sum(f * f, dim=1, keepdim=True)) + _EPS)
            d = (f[:n] - f[n:]) ** 2
            total = total + lin(d).mean(dim=(1, 2, 3))
        return total


def _to_tensor(img: np.ndarray) -> torch.Tensor:
    a = np.asarray(img)
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    if a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 RGB (or HxW gray) image, got shape {a.shape}")
    if a.dtype != np.uint8:
        raise TypeError(f"expected a uint8 image, got {a.dtype}")
    return torch.from_numpy(np.array(a.transpose(2, 0, 1), dtype=np.float32)).div(255.0)[None]


def lpips_distance(
    img_a: np.ndarray,
    img_b: np.ndarray,
    net: NetName = "alex",
    *,
    model: LPIPS | None = None,
    **lpips_kwargs: object,
) -> float:
    """LPIPS between two uint8 ``HxWx3`` images (gray ``HxW`` is repeated to RGB).

    Pass ``model`` to reuse a loaded :class:`LPIPS` across calls; otherwise one is built with
    ``lpips_kwargs`` (``lin_path``, ``backbone_path``, ``weights_dir``, ``allow_download``).
    """
    a, b = _to_tensor(img_a), _to_tensor(img_b)
    if a.shape != b.shape:
        raise ValueError(f"image sizes differ: {np.asarray(img_a).shape} and {np.asarray(img_b).shape}")
    m = model if model is not None else LPIPS(net, **lpips_kwargs)  # type: ignore[arg-type]
    device = next(m.parameters()).device
    with torch.no_grad():
        return float(m(a.to(device), b.to(device))[0])
