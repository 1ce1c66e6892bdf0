"""Losses on hand-computed cases, gradients flowing, the perceptual loss with the real VGG16 weights, and the
discriminators."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn

from superres.errors import ModelLoadError, SuperresError
from superres.train.discriminators import UNetDiscriminatorSN, VGGStyleDiscriminator, build_discriminator
from superres.train.losses import (
    CharbonnierLoss,
    GANLoss,
    GramLoss,
    L1Loss,
    MSELoss,
    PerceptualLoss,
    TVLoss,
    VGGFeatures,
    build_loss,
    gram_matrix,
    vgg_layer_names,
)


def _t(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32)


# ---- hand-computed values ----------------------------------------------------------------------------------


def test_pixel_losses_on_known_tensors() -> None:
    out, target = _t(0, 1, 2, 3), _t(1, 1, 1, 1)
    assert float(L1Loss()(out, target)) == pytest.approx(1.0)  # (1 + 0 + 1 + 2) / 4
    assert float(L1Loss("sum")(out, target)) == pytest.approx(4.0)
    assert float(MSELoss()(out, target)) == pytest.approx(1.5)  # (1 + 0 + 1 + 4) / 4
    # sqrt(0 + .25) = .5, sqrt(1.44 + .25) = 1.3
    assert float(CharbonnierLoss(eps=0.5)(_t(0, 1.2), _t(0, 0))) == pytest.approx(0.9)
    assert float(CharbonnierLoss()(_t(0.5), _t(0.5))) == pytest.approx(1e-3)  # eps floor at zero residual


def test_tv_loss_on_a_known_image() -> None:
    img = _t(0, 1, 2, 4).view(1, 1, 2, 2)
    # vertical differences 2, 3 (mean 2.5); horizontal 1, 2 (mean 1.5)
    assert float(TVLoss("l1")(img)) == pytest.approx(4.0)
    assert float(TVLoss("l2")(img, img)) == pytest.approx(6.5 + 2.5)
    assert float(TVLoss()(torch.full((1, 3, 5, 5), 0.7))) == 0.0


def test_gram_on_a_known_feature_map() -> None:
    f = _t(1, 2, 3, 4).view(1, 2, 1, 2)  # channel 0 = [1, 2], channel 1 = [3, 4]
    expected = torch.tensor([[5.0, 11.0], [11.0, 25.0]]) / 4  # / (C H W)
    assert torch.allclose(gram_matrix(f)[0], expected)
    assert float(GramLoss("l1")(f, torch.zeros_like(f))) == pytest.approx((1.25 + 2.75 + 2.75 + 6.25) / 4)
    assert float(GramLoss("l2")(f, torch.zeros_like(f))) == pytest.approx(
        (1.25**2 + 2 * 2.75**2 + 6.25**2) / 4
    )
    assert float(GramLoss()(f, f.flip(-1))) == 0.0  # texture statistics ignore where things are


def test_gan_losses_on_known_logits() -> None:
    def softplus(x: float) -> float:  # -log(sigmoid(-x))
        return math.log1p(math.exp(x))

    vanilla = GANLoss("vanilla")
    fake = _t(0.0, 2.0)
    assert float(vanilla.generator_loss(fake)) == pytest.approx((softplus(0) + softplus(-2)) / 2, rel=1e-6)
    real, fake = _t(0.0, 2.0), _t(0.0, -2.0)
    expected = (softplus(0) + softplus(-2)) / 2 + (softplus(0) + softplus(-2)) / 2
    assert float(vanilla.discriminator_loss(real, fake)) == pytest.approx(expected, rel=1e-6)

    hinge = GANLoss("hinge")
    real, fake = _t(0.5, 2.0), _t(-0.5, 1.0)
    assert float(hinge.discriminator_loss(real, fake)) == pytest.approx((0.5 + 0) / 2 + (0.5 + 2.0) / 2)
    assert float(hinge.generator_loss(fake)) == pytest.approx(-0.25)

    lsgan = GANLoss("lsgan")
    assert float(lsgan.generator_loss(_t(0.0, 3.0))) == pytest.approx((1 + 4) / 2)
    assert float(lsgan.discriminator_loss(_t(1.0, 0.0), _t(0.0, 1.0))) == pytest.approx(0.5 + 0.5)
    # one-sided form (real and fake back-propagated separately)
    assert float(lsgan(_t(0.0, 1.0), False, for_discriminator=True)) == pytest.approx(0.5)


# ---- gradients ---------------------------------------------------------------------------------------------

PIXEL_LOSSES = {
    "l1": {},
    "charbonnier": {"eps": 1e-3},
    "mse": {},
    "tv": {},
    "gram": {},
    "perceptual": {
        "net": "vgg19",
        "pretrained": False,
        "layer_weights": {"conv2_2": 1.0, "relu3_4": 0.5},
        "style_weight": 0.1,
    },
}


@pytest.mark.parametrize("name", list(PIXEL_LOSSES))
def test_gradients_flow_through_every_loss(name: str) -> None:
    torch.manual_seed(0)
    loss = build_loss(name, **PIXEL_LOSSES[name])
    out = torch.rand(2, 3, 24, 24, requires_grad=True)
    target = torch.rand(2, 3, 24, 24)
    value = loss(out, target)
    assert value.ndim == 0 and float(value.detach()) > 0
    value.backward()
    assert out.grad is not None and float(out.grad.abs().sum()) > 0
    assert all(p.grad is None for p in loss.parameters())  # frozen feature networks


@pytest.mark.parametrize("disc", ["vgg", "unet"])
@pytest.mark.parametrize("kind", ["vanilla", "lsgan", "hinge"])
def test_gradients_flow_through_gan_losses_and_discriminators(disc: str, kind: str) -> None:
    torch.manual_seed(0)
    net = build_discriminator(disc, base=8, **({"input_size": 32} if disc == "vgg" else {}))
    gan = GANLoss(kind)
    real = torch.rand(2, 3, 32, 32)
    fake = torch.rand(2, 3, 32, 32, requires_grad=True)
    gan.discriminator_loss(net(real), net(fake.detach())).backward()
    grads = {n: p.grad for n, p in net.named_parameters()}
    assert all(g is not None for g in grads.values())
    # every weight learns (the last bias may not: with hinge, real and fake pull it equally hard)
    dead = [n for n, g in grads.items() if "weight" in n and float(g.abs().sum()) == 0]  # type: ignore[union-attr]
    assert not dead
    net.zero_grad()
    gan.generator_loss(net(fake)).backward()
    assert fake.grad is not None and float(fake.grad.abs().sum()) > 0


# ---- discriminators ----------------------------------------------------------------------------------------


def test_discriminator_shapes_layouts_and_errors() -> None:
    vgg = VGGStyleDiscriminator(input_size=128)
    assert vgg(torch.rand(2, 3, 128, 128)).shape == (2, 1)
    assert sum(p.numel() for p in vgg.parameters()) > 10_000_000  # ESRGAN's 128-pixel discriminator size
    with pytest.raises(ValueError, match="takes 128x128 crops"):
        vgg(torch.rand(1, 3, 96, 96))
    with pytest.raises(SuperresError, match="input_size"):
        VGGStyleDiscriminator(input_size=96)
    unet = UNetDiscriminatorSN(base=16)
    assert unet(torch.rand(1, 3, 40, 24)).shape == (1, 1, 40, 24)
    keys = set(unet.state_dict())
    assert {"conv1.weight_orig", "conv1.weight_u", "conv1.weight_v", "conv0.weight", "conv9.bias"} <= keys
    no_skip = UNetDiscriminatorSN(base=8, skip=False)
    assert no_skip(torch.rand(1, 3, 16, 16)).shape == (1, 1, 16, 16)
    with pytest.raises(ValueError, match="multiples of 8"):
        unet(torch.rand(1, 3, 20, 20))
    with pytest.raises(SuperresError, match="unknown discriminator 'patchgan'"):
        build_discriminator("patchgan")
    with pytest.raises(SuperresError, match="unknown argument.*channels"):
        build_discriminator("unet", channels=3)


def test_spectral_norm_bounds_the_layer_gain() -> None:
    torch.manual_seed(0)
    unet = UNetDiscriminatorSN(base=8).train()
    for _ in range(30):  # power iterations run in training forwards
        unet(torch.rand(1, 3, 16, 16))
    unet.eval()
    w = unet.conv4.weight.detach().reshape(unet.conv4.weight.shape[0], -1)
    assert float(torch.linalg.matrix_norm(w, ord=2)) == pytest.approx(1.0, rel=0.05)


# ---- registry ----------------------------------------------------------------------------------------------


def test_build_loss_registry_and_errors() -> None:
    assert isinstance(build_loss("L1"), L1Loss)
    assert build_loss("charbonnier", eps=1e-6).eps == 1e-6
    assert build_loss("gan", kind="hinge").kind == "hinge"
    with pytest.raises(SuperresError, match="unknown loss 'ssim'.*l1, charbonnier"):
        build_loss("ssim")
    with pytest.raises(SuperresError, match="unknown argument.*epsilon"):
        build_loss("charbonnier", epsilon=1)
    with pytest.raises(SuperresError, match="gan kind"):
        build_loss("gan", kind="wgan")
    with pytest.raises(SuperresError, match="unknown vgg19 layer.*conv5_5"):
        build_loss("perceptual", layer_weights={"conv5_5": 1.0}, pretrained=False)


def test_vgg_layer_names_follow_torchvision_indices() -> None:
    v19, v16 = vgg_layer_names("vgg19"), vgg_layer_names("vgg16")
    assert v19.index("conv5_4") == 34 and v19.index("relu5_4") == 35 and v19.index("pool4") == 27
    assert v16.index("conv5_3") == 28 and v16.index("relu3_3") == 15 and len(v16) == 31


# ---- perceptual loss with real weights ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def vgg16_loss(weights_dir: Path) -> PerceptualLoss:
    lpips_dir = weights_dir / "lpips"
    if not (lpips_dir / "torchvision_vgg16_features.pth").is_file():
        pytest.skip(f"VGG16 ImageNet weights not found in {lpips_dir}")
    return PerceptualLoss(
        {"conv2_2": 0.5, "conv4_3": 1.0}, net="vgg16", weights_dir=lpips_dir, style_weight=1.0
    )


def test_perceptual_loss_with_vgg16_weights(vgg16_loss: PerceptualLoss) -> None:
    g = torch.Generator().manual_seed(0)
    hr = torch.nn.functional.interpolate(torch.rand(1, 3, 8, 8, generator=g), size=64, mode="bicubic").clamp(
        0, 1
    )
    assert float(vgg16_loss(hr, hr)) == 0.0
    mild = (hr + 0.02 * torch.randn(hr.shape, generator=g)).clamp(0, 1)
    strong = (hr + 0.2 * torch.randn(hr.shape, generator=g)).clamp(0, 1)
    d_mild, d_strong = float(vgg16_loss(mild, hr)), float(vgg16_loss(strong, hr))
    assert 0 < d_mild < d_strong
    parts = vgg16_loss.components(strong, hr)
    assert float(parts["perceptual"]) > 0 and float(parts["style"]) > 0
    out = mild.clone().requires_grad_(True)
    vgg16_loss(out, hr).backward()
    assert out.grad is not None and float(out.grad.abs().sum()) > 0
    vgg16_loss.train()
    assert not vgg16_loss.vgg.training  # the frozen extractor stays in eval mode


def test_perceptual_loss_sees_one_channel_as_grey(vgg16_loss: PerceptualLoss) -> None:
    """Y-channel recipes (ESPCN GAN fine-tuning) use the same loss: a 1-channel image is its grey RGB."""
    g = torch.Generator().manual_seed(1)
    y = torch.rand(2, 1, 32, 32, generator=g)
    t = torch.rand(2, 1, 32, 32, generator=g)
    grey = float(vgg16_loss(y.expand(-1, 3, -1, -1), t.expand(-1, 3, -1, -1)))
    assert float(vgg16_loss(y, t)) == pytest.approx(grey, rel=1e-6)
    out = y.clone().requires_grad_(True)
    vgg16_loss(out, t).backward()
    assert out.grad is not None and out.grad.shape == y.shape
    with pytest.raises(ValueError, match="N x 3 x H x W"):
        vgg16_loss.vgg(torch.rand(1, 2, 8, 8))


def test_vgg16_features_are_the_imagenet_ones(weights_dir: Path) -> None:
    path = weights_dir / "lpips" / "torchvision_vgg16_features.pth"
    if not path.is_file():
        pytest.skip(f"VGG16 ImageNet weights not found at {path}")
    feats = VGGFeatures(["conv1_1", "relu1_1"], net="vgg16", weights_path=path)
    sd = torch.load(path, weights_only=True)
    assert torch.equal(feats.features[0].weight, sd["features.0.weight"])
    x = torch.rand(1, 3, 16, 16)
    f = feats(x)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    manual = nn.functional.conv2d((x - mean) / std, sd["features.0.weight"], sd["features.0.bias"], padding=1)
    assert torch.allclose(f["conv1_1"], manual, atol=1e-5)
    assert torch.allclose(f["relu1_1"], manual.clamp(min=0), atol=1e-5)


def test_vgg19_from_a_user_file_in_torchvision_layout(tmp_path: Path) -> None:
    from superres.train.losses import _vgg19_features

    torch.manual_seed(0)
    stack = _vgg19_features()
    sd = {f"features.{k}": v for k, v in stack.state_dict().items()}
    sd["classifier.0.weight"] = torch.zeros(2, 2)  # a full torchvision file also has the classifier
    torch.save(sd, tmp_path / "vgg19.pth")
    loss = PerceptualLoss({"conv1_2": 1.0}, net="vgg19", weights_path=tmp_path / "vgg19.pth")
    assert torch.equal(loss.vgg.features[2].weight, stack[2].weight)
    del sd["features.34.weight"]
    torch.save(sd, tmp_path / "broken.pth")
    with pytest.raises(ModelLoadError, match="missing.*34.weight"):
        PerceptualLoss(net="vgg19", weights_path=tmp_path / "broken.pth")
    with pytest.raises(ModelLoadError, match="VGG19 weights not found at"):
        PerceptualLoss(net="vgg19", weights_path=tmp_path / "nope.pth")
    with pytest.raises(ModelLoadError, match="allow_download=True"):
        PerceptualLoss(net="vgg19")
