"""Training losses: pixel (L1, Charbonnier, MSE), perceptual/style (VGG features), adversarial, TV, Gram.

Every loss is an ``nn.Module`` called as ``loss(output, target)`` and returning a scalar tensor (TV ignores
the target, so the trainer can call all of them the same way); the weights of a recipe are applied by the
trainer. Build them by name with :func:`build_loss`. Adversarial losses have a different call pattern and
expose :meth:`GANLoss.generator_loss` and :meth:`GANLoss.discriminator_loss`.

The VGG feature stacks are our own modules in torchvision's ``features.N`` layout (no torchvision needed),
so the published ImageNet files load strictly: VGG16 from the files LPIPS already uses
(``torchvision_vgg16_features.pth`` found as in :mod:`superres.metrics.lpips`), VGG19 from a path the user
gives (torchvision's ``vgg19-dcbb9e9d.pth``), downloaded only when ``allow_download=True``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ModelLoadError, SuperresError

__all__ = [
    "LOSSES",
    "CharbonnierLoss",
    "GANLoss",
    "GramLoss",
    "L1Loss",
    "MSELoss",
    "PerceptualLoss",
    "TVLoss",
    "VGGFeatures",
    "build_loss",
    "gram_matrix",
    "vgg_layer_names",
]

Reduction = Literal["mean", "sum"]

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
_VGG19_CFG = (
    64,
    64,
    "M",
    128,
    128,
    "M",
    256,
    256,
    256,
    256,
    "M",
    512,
    512,
    512,
    512,
    "M",
    512,
    512,
    512,
    512,
    "M",
)
_VGG16_CFG_FULL = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")
_VGG19_URL = "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"


def _reduce(x: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return x.mean()
    if reduction == "sum":
        return x.sum()
    raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")


def _check_reduction(reduction: str) -> str:
    if reduction not in ("mean", "sum"):
        raise SuperresError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
    return reduction


# ---- pixel losses ------------------------------------------------------------------------------------------


class L1Loss(nn.Module):
    """Mean absolute error: the standard PSNR-oriented loss (EDSR showed it trains better than MSE)."""

    def __init__(self, reduction: Reduction = "mean") -> None:
        super().__init__()
        self.reduction = _check_reduction(reduction)

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return _reduce((output - target).abs(), self.reduction)


class MSELoss(nn.Module):
    """Mean squared error (SRCNN/FSRCNN/ESPCN were trained with it; it maximises PSNR directly)."""

    def __init__(self, reduction: Reduction = "mean") -> None:
        super().__init__()
        self.reduction = _check_reduction(reduction)

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return _reduce((output - target) ** 2, self.reduction)


class CharbonnierLoss(nn.Module):
    """``sqrt((output - target)^2 + eps^2)``: L1 away from zero but smooth at zero (LapSRN), so its gradient
    does not flip sign on tiny residuals. ``eps`` is in the images' units ([0, 1])."""

    def __init__(self, eps: float = 1e-3, reduction: Reduction = "mean") -> None:
        super().__init__()
        if eps <= 0:
            raise SuperresError(f"charbonnier eps must be positive, got {eps}")
        self.eps = float(eps)
        self.reduction = _check_reduction(reduction)

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return _reduce(torch.sqrt((output - target) ** 2 + self.eps**2), self.reduction)


class TVLoss(nn.Module):
    """Total variation of the output (a smoothness prior): mean absolute (``"l1"``) or squared (``"l2"``)
    difference between vertical neighbours plus the same for horizontal ones. ``target`` is ignored."""

    def __init__(self, kind: Literal["l1", "l2"] = "l1") -> None:
        super().__init__()
        if kind not in ("l1", "l2"):
            raise SuperresError(f"tv kind must be 'l1' or 'l2', got {kind!r}")
        self.kind = kind

    def forward(self, output: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
        dy = output[..., 1:, :] - output[..., :-1, :]
        dx = output[..., :, 1:] - output[..., :, :-1]
        if self.kind == "l1":
            return dy.abs().mean() + dx.abs().mean()
        return (dy**2).mean() + (dx**2).mean()


def gram_matrix(features: torch.Tensor) -> torch.Tensor:
    """``N x C x C`` channel correlations of ``N x C x H x W`` features, divided by ``C H W`` so the value
    does not grow with the layer or crop size."""
    n, c, h, w = features.shape
    f = features.reshape(n, c, h * w)
    return torch.bmm(f, f.transpose(1, 2)) / (c * h * w)


class GramLoss(nn.Module):
    """Distance between Gram matrices of two ``N x C x H x W`` tensors (texture statistics: what co-occurs,
    not where). Give it feature maps, or images for a colour-statistics loss; :class:`PerceptualLoss` with
    ``style_weight`` applies it to VGG features."""

    def __init__(self, criterion: Literal["l1", "l2"] = "l1") -> None:
        super().__init__()
        if criterion not in ("l1", "l2"):
            raise SuperresError(f"gram criterion must be 'l1' or 'l2', got {criterion!r}")
        self.criterion = criterion

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        d = gram_matrix(output) - gram_matrix(target.detach())
        return d.abs().mean() if self.criterion == "l1" else (d**2).mean()


# ---- VGG features ------------------------------------------------------------------------------------------


def _layer_names(cfg: tuple[int | str, ...]) -> list[str]:
    """Names of each ``features`` index: conv{b}_{i}, relu{b}_{i}, pool{b} (the usual VGG vocabulary)."""
    names: list[str] = []
    block, conv = 1, 0
    for v in cfg:
        if v == "M":
            names.append(f"pool{block}")
            block, conv = block + 1, 0
        else:
            conv += 1
            names += [f"conv{block}_{conv}", f"relu{block}_{conv}"]
    return names


def vgg_layer_names(net: Literal["vgg16", "vgg19"] = "vgg19") -> list[str]:
    """Layer names usable in ``layer_weights``, in order (index = torchvision ``features`` index)."""
    if net == "vgg16":
        return _layer_names(_VGG16_CFG_FULL)
    if net == "vgg19":
        return _layer_names(_VGG19_CFG)
    raise SuperresError(f"net must be 'vgg16' or 'vgg19', got {net!r}")


def _vgg19_features() -> nn.Sequential:
    from ..metrics.lpips import vgg_features

    return vgg_features(_VGG19_CFG)


def _vgg_cache_dir() -> Path:
    from ..cache import cache_dir

    return cache_dir("vgg")


def _vgg_state(
    net: str,
    weights_path: str | os.PathLike[str] | None,
    weights_dir: str | os.PathLike[str] | None,
    allow_download: bool,
) -> dict[str, torch.Tensor]:
    """Find and read the ImageNet ``features.*`` weights of ``net`` (see the module docstring)."""
    from ..metrics import lpips

    if net == "vgg16":
        try:
            path = lpips.find_weights("vgg", "backbone", weights_path, weights_dir, allow_download)
        except FileNotFoundError as e:
            raise ModelLoadError(f"VGG16 weights for the perceptual loss: {e}") from None
    else:
        if weights_path is not None:
            path = Path(weights_path)
            if not path.is_file():
                raise ModelLoadError(f"VGG19 weights not found at '{path}'")
        else:
            name = _VGG19_URL.rsplit("/", 1)[1]
            cands = [Path(d) / name for d in (weights_dir, _vgg_cache_dir()) if d]
            found = [c for c in cands if c.is_file()]
            if found:
                path = found[0]
            elif allow_download:
                from ..files import download_pinned

                path = download_pinned(_VGG19_URL, _vgg_cache_dir() / name, sha256_prefix="dcbb9e9d")
            else:
                raise ModelLoadError(
                    f"VGG19 weights not found: pass weights_path= (torchvision's {name}, from {_VGG19_URL}), "
                    f"put it in {_vgg_cache_dir()}, or pass allow_download=True"
                )
    try:
        sd = lpips.load_state(path)
    except Exception as e:  # noqa: BLE001 - a wrong or corrupt file is a user error
        raise ModelLoadError(f"cannot read {net} weights '{path}': {e}") from None
    return {k: v for k, v in sd.items() if k.startswith("features.")}


class VGGFeatures(nn.Module):
    """Frozen VGG16/VGG19 ``features`` returning the activations of named layers.

    Inputs are RGB in [0, 1] (or [-1, 1] with ``range_norm``) and are normalised with the ImageNet mean and
    std, as the network was trained. One-channel inputs (a luminance-only model such as ESPCN on Y) are seen
    as grey RGB images, so the same loss serves Y-channel recipes. Only the layers up to the deepest
    requested one are built. Parameters are frozen; gradients still flow to the input."""

    def __init__(
        self,
        layers: list[str],
        net: Literal["vgg16", "vgg19"] = "vgg19",
        weights_path: str | os.PathLike[str] | None = None,
        *,
        weights_dir: str | os.PathLike[str] | None = None,
        pretrained: bool = True,
        allow_download: bool = False,
        normalize: bool = True,
        range_norm: bool = False,
    ) -> None:
        super().__init__()
        names = vgg_layer_names(net)
        bad = [n for n in layers if n not in names]
        if bad or not layers:
            raise SuperresError(f"unknown {net} layer(s) {bad or '(none given)'}; known: {', '.join(names)}")
        self.layers = list(layers)
        self._index = {n: names.index(n) for n in layers}
        last = max(self._index.values())
        if net == "vgg16":
            from ..metrics.lpips import vgg16_features

            full: nn.Sequential = vgg16_features()
            full.append(nn.MaxPool2d(2, 2))  # pool5, absent from the LPIPS stack
        else:
            full = _vgg19_features()
        if pretrained:
            sd = _vgg_state(net, weights_path, weights_dir, allow_download)
            expected = {k for k in full.state_dict()}
            got = {k.removeprefix("features.") for k in sd}
            if got != expected:
                raise ModelLoadError(
                    f"{net} weights do not match torchvision's features layout: missing "
                    f"{sorted(expected - got)[:4]}, unexpected {sorted(got - expected)[:4]}"
                )
            full.load_state_dict({k.removeprefix("features."): v for k, v in sd.items()})
        self.features = nn.Sequential(*list(full.children())[: last + 1])
        self.normalize = normalize
        self.range_norm = range_norm
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> VGGFeatures:
        """Always in eval mode (a frozen feature extractor); ignore the trainer's ``model.train()``."""
        return super().train(False)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if x.ndim != 4 or x.shape[1] not in (1, 3):
            raise ValueError(f"VGG features need N x 3 x H x W RGB (or N x 1 grey), got {tuple(x.shape)}")
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if self.range_norm:
            x = (x + 1.0) / 2.0
        if self.normalize:
            x = (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        wanted = {i: n for n, i in self._index.items()}
        out: dict[str, torch.Tensor] = {}
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in wanted:
                out[wanted[i]] = x
        return out


class PerceptualLoss(nn.Module):
    """Distance between VGG features of output and target (Johnson et al. 2016; ESRGAN uses ``conv5_4``
    of VGG19, before the ReLU, which keeps more signal), plus an optional Gram-matrix style term (texture).

    ``layer_weights`` maps layer names (``conv3_4``, ``relu2_2``, ``pool4``, see :func:`vgg_layer_names`)
    to weights. Returns ``perceptual_weight * sum_l w_l d(F_l(x), F_l(y)) + style_weight * sum_l w_l
    d(G(F_l(x)), G(F_l(y)))`` with ``d`` the mean absolute (``l1``) or squared (``l2``) difference; target
    features are computed without gradient."""

    def __init__(
        self,
        layer_weights: dict[str, float] | None = None,
        net: Literal["vgg16", "vgg19"] = "vgg19",
        weights_path: str | os.PathLike[str] | None = None,
        criterion: Literal["l1", "l2"] = "l1",
        perceptual_weight: float = 1.0,
        style_weight: float = 0.0,
        *,
        weights_dir: str | os.PathLike[str] | None = None,
        pretrained: bool = True,
        allow_download: bool = False,
        normalize: bool = True,
        range_norm: bool = False,
    ) -> None:
        super().__init__()
        if layer_weights is None:
            layer_weights = {"conv5_4": 1.0} if net == "vgg19" else {"conv5_3": 1.0}
        if criterion not in ("l1", "l2"):
            raise SuperresError(f"perceptual criterion must be 'l1' or 'l2', got {criterion!r}")
        self.layer_weights = {str(k): float(v) for k, v in layer_weights.items()}
        self.criterion = criterion
        self.perceptual_weight = float(perceptual_weight)
        self.style_weight = float(style_weight)
        self.vgg = VGGFeatures(
            list(self.layer_weights),
            net,
            weights_path,
            weights_dir=weights_dir,
            pretrained=pretrained,
            allow_download=allow_download,
            normalize=normalize,
            range_norm=range_norm,
        )

    def _d(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (a - b).abs().mean() if self.criterion == "l1" else ((a - b) ** 2).mean()

    def components(self, output: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        """The unweighted ``perceptual`` and ``style`` terms, for logging."""
        fx = self.vgg(output)
        with torch.no_grad():
            fy = self.vgg(target.detach())
        percep = output.new_zeros(())
        style = output.new_zeros(())
        for name, w in self.layer_weights.items():
            if self.perceptual_weight:
                percep = percep + w * self._d(fx[name], fy[name])
            if self.style_weight:
                style = style + w * self._d(gram_matrix(fx[name]), gram_matrix(fy[name]))
        return {"perceptual": percep, "style": style}

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        c = self.components(output, target)
        return self.perceptual_weight * c["perceptual"] + self.style_weight * c["style"]


# ---- adversarial -------------------------------------------------------------------------------------------


class GANLoss(nn.Module):
    """Adversarial losses on raw discriminator logits.

    * ``vanilla``: binary cross-entropy with logits (non-saturating generator loss ``-log D(G(z))``);
    * ``lsgan``: squared distance to the labels (Mao et al. 2017), real 1, fake 0;
    * ``hinge``: discriminator ``relu(1 - real) + relu(1 + fake)``, generator ``-fake`` (SNGAN/SAGAN).

    The discriminator loss is the *sum* of its real and fake terms (each a mean over its logits).
    ``forward(logits, target_is_real, for_discriminator=False)`` is the one-sided form used when real and
    fake batches are back-propagated separately (to save memory)."""

    def __init__(
        self,
        kind: Literal["vanilla", "lsgan", "hinge"] = "vanilla",
        real_label: float = 1.0,
        fake_label: float = 0.0,
    ) -> None:
        super().__init__()
        if kind not in ("vanilla", "lsgan", "hinge"):
            raise SuperresError(f"gan kind must be 'vanilla', 'lsgan' or 'hinge', got {kind!r}")
        self.kind = kind
        self.real_label = float(real_label)
        self.fake_label = float(fake_label)

    def forward(
        self, logits: torch.Tensor, target_is_real: bool, for_discriminator: bool = False
    ) -> torch.Tensor:
        if self.kind == "hinge":
            if not for_discriminator:
                return -logits.mean()  # the generator raises the critic's score, whatever the "target"
            return F.relu(1.0 - logits).mean() if target_is_real else F.relu(1.0 + logits).mean()
        label = torch.full_like(logits, self.real_label if target_is_real else self.fake_label)
        if self.kind == "vanilla":
            return F.binary_cross_entropy_with_logits(logits, label)
        return F.mse_loss(logits, label)

    def generator_loss(self, fake_logits: torch.Tensor) -> torch.Tensor:
        """What the generator minimises: the discriminator should call its output real."""
        return self(fake_logits, True, for_discriminator=False)

    def discriminator_loss(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        """Real batch towards real, generated (detach it first) towards fake."""
        return self(real_logits, True, for_discriminator=True) + self(
            fake_logits, False, for_discriminator=True
        )


# ---- registry ----------------------------------------------------------------------------------------------

LOSSES: dict[str, type[nn.Module]] = {
    "l1": L1Loss,
    "charbonnier": CharbonnierLoss,
    "mse": MSELoss,
    "perceptual": PerceptualLoss,
    "gan": GANLoss,
    "tv": TVLoss,
    "gram": GramLoss,
}


def build_loss(name: str, **kwargs: Any) -> nn.Module:
    """A loss by name (``l1``, ``charbonnier``, ``mse``, ``perceptual``, ``gan``, ``tv``, ``gram``) with its
    keyword arguments; an unknown name or argument is a one-line :class:`SuperresError`."""
    import inspect

    cls = LOSSES.get(str(name).lower())
    if cls is None:
        raise SuperresError(f"unknown loss {name!r}; known: {', '.join(LOSSES)}")
    params = inspect.signature(cls.__init__).parameters
    known = [p for p in params if p != "self"]
    unknown = sorted(set(kwargs) - set(known))
    if unknown:
        raise SuperresError(
            f"unknown argument(s) {', '.join(unknown)} for the {name!r} loss; known: {', '.join(known)}"
        )
    return cls(**kwargs)
