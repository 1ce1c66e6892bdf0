"""superres.inference.fast: the whole-network plan of the U-Nets with SE gates (Real-CUGAN, waifu2x CUNet)
equals eager fp32.

What a user relies on: the default path of every Real-CUGAN / CUNet upscale (``accelerate(net)``, the
Winograd plan) gives eager's pixels within 1e-4 (max abs, [0, 1] images) with the zoo's real weights (x2,
x3, x4, pro, no-SE, CUNet x2 and x1) on real image crops and smooth random inputs, at sizes the network
pads (odd sizes, a 1x1 image), in both tile sizes and with the compiler-free PyTorch transforms; the
hyper-parameters the zoo does not ship (grey images, pro=True) take the same path; a network whose layout
differs is refused by the plan and still runs. Numerics only (speed: benchmarks/cpu_speed.py).
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from superres.archs import build
from superres.inference import fast

from fast_plan_helpers import kaiming, load_comic, plan_inputs, zoo_network  # tests/fast_plan_helpers.py

TOL = 1e-4
SIZES = ((29, 35), (5, 3), (1, 1))
ZOO = ["realcugan-x2", "realcugan-x3", "realcugan-x4", "realcugan-pro-x2", "realcugan-nose-x2",
       "waifu2x-cunet-x2", "waifu2x-cunet-x1-n0"]


@pytest.fixture(scope="module")
def comic() -> np.ndarray | None:
    return load_comic()


def _worst(net: nn.Module, modes: dict[str, tuple], comic: np.ndarray | None, c: int) -> dict[str, float]:
    """Max abs difference to eager per mode over its sizes (each asserted < TOL); eager once per input."""
    fwds = {mode: fast.accelerate(net, "cpu", mode=mode) for mode in modes}
    worst = dict.fromkeys(modes, 0.0)
    for h, w in sorted({size for sizes in modes.values() for size in sizes}):
        for name, x in plan_inputs(comic, c, h, w).items():
            with torch.inference_mode():
                want = net(x)
                for mode, fwd in fwds.items():
                    if (h, w) not in modes[mode]:
                        continue
                    got = fwd(x)
                    assert got.shape == want.shape and got.dtype == torch.float32, (name, h, w)
                    err = float((got - want).abs().max())
                    assert err < TOL, (mode, name, (h, w), err)
                    worst[mode] = max(worst[mode], err)
    return worst


# ---- the zoo's real weights --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ZOO)
def test_zoo_model_plan_matches_eager(name: str, comic: np.ndarray | None) -> None:
    net = zoo_network(name)
    assert fast.has_plan(net)
    if fast.c_kernels() is not None:
        assert fast.method_of(net, "cpu") == "winograd"  # the default path takes the plan
    worst = _worst(net, {"auto": SIZES, "winograd_f4": SIZES[1:2], "winograd_torch": SIZES[1:2]}, comic, 3)
    print(f"{name}: max abs diff {worst}")


# ---- hyper-parameters the zoo does not ship ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("arch", "hp", "c"),
    [
        ("cugan", dict(scale=2, pro=True), 3),
        ("cugan", dict(scale=3, se=False), 3),
        ("cugan", dict(in_channels=1, out_channels=1, scale=4), 1),
        ("cunet", dict(in_channels=1, out_channels=1, scale=2), 1),
        ("cunet", dict(scale=1), 3),
    ],
)
@pytest.mark.parametrize("mode", ["winograd", "winograd_f4", "winograd_torch"])
def test_random_weights_variants_match_eager(arch: str, hp: dict, c: int, mode: str) -> None:
    net = kaiming(build(arch, **hp), seed=len(str(hp)))
    assert fast.has_plan(net)
    fwd = fast.accelerate(net, "cpu", mode=mode)
    g = torch.Generator().manual_seed(7)
    for h, w in ((13, 10), (2, 7)):
        x = torch.rand(1, c, h, w, generator=g)
        with torch.inference_mode():
            want, got = net(x), fwd(x)
        assert got.shape == want.shape
        err = float((got - want).abs().max()) / max(1.0, float(want.abs().max()))
        assert err < TOL, (arch, hp, mode, (h, w), err)


def test_batch_and_threads_share_a_plan() -> None:
    """A batch of two (different images: the SE means are per image) and two threads at once through one
    plan give the lone calls' exact bits."""
    net = kaiming(build("cugan", scale=2), seed=3)
    fwd = fast.accelerate(net, "cpu", mode="winograd")
    g = torch.Generator().manual_seed(4)
    xs = [torch.rand(1, 3, 21, 30, generator=g), torch.rand(1, 3, 21, 30, generator=g) * 0.5]
    with torch.inference_mode():
        alone = [fwd(x) for x in xs]
        both = fwd(torch.cat(xs))
    assert torch.equal(both, torch.cat(alone))
    results: list[torch.Tensor | None] = [None, None]
    start = threading.Barrier(2)

    def work(i: int) -> None:
        start.wait()
        with torch.inference_mode():
            for _ in range(2):
                results[i] = fwd(xs[i])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r is not None and torch.equal(r, a) for r, a in zip(results, alone))


@pytest.mark.parametrize(("k", "s", "p"), [(4, 2, 3), (5, 3, 2), (2, 2, 0), (4, 2, 1), (3, 1, 1), (6, 3, 2)])
def test_transposed_conv_as_phases(k: int, s: int, p: int) -> None:
    """A transposed conv = its 3x3 phase conv, pixel-shuffled, at the offset the builder reports."""
    g = torch.Generator().manual_seed(k * 100 + s * 10 + p)
    ct = nn.ConvTranspose2d(5, 3, k, s, p)
    with torch.no_grad():
        ct.weight.copy_(torch.randn(ct.weight.shape, generator=g))
        ct.bias.copy_(torch.randn(3, generator=g))
    x = torch.randn(1, 5, 7, 9, generator=g)
    conv, off = fast._transposed_phases(ct)
    with torch.no_grad():
        want = ct(x)
        got = F.pixel_shuffle(F.conv2d(x, conv.weight, conv.bias, padding=1), s)
    oh, ow = want.shape[2:]
    assert off + oh <= got.shape[2] and off + ow <= got.shape[3]
    assert float((got[:, :, off:off + oh, off:off + ow] - want).abs().max()) < 1e-4


def test_transposed_conv_wider_than_a_3x3_window_is_refused() -> None:
    with pytest.raises(TypeError, match="beyond"):
        fast._transposed_phases(nn.ConvTranspose2d(4, 4, 8, 2, 3))


@pytest.mark.parametrize(("arch", "target"), [("cugan", "unet2.se3"), ("cunet", "stage1.down")])
def test_plan_refuses_unexpected_layout_and_falls_back(arch: str, target: str) -> None:
    """A U-Net whose layer differs (an SE gate swapped for another module; the 2x2 down step for a 3x3
    stride-2 conv, which keeps the sizes) is refused by the plan builder and runs channels-last, still equal
    to eager."""
    net = kaiming(build(arch, scale=2), seed=9)
    parent, _, leaf = target.rpartition(".")
    owner = net.get_submodule(parent)
    old = getattr(owner, leaf)
    if leaf.startswith("se"):
        swap: nn.Module = nn.Hardtanh(-0.5, 0.5)
    else:
        swap = nn.Conv2d(old.in_channels, old.out_channels, 3, 2, 1)
    setattr(owner, leaf, swap)
    kaiming(net, seed=10)
    with pytest.raises(TypeError):
        fast._make_plan(net, fast._Runner(fast._TorchKernels(), 4, fast._Inline()))
    fwd = fast.accelerate(net, "cpu", mode="winograd")
    x = torch.rand(1, 3, 10, 12, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        want = net(x)
        assert float((fwd(x) - want).abs().max()) < 1e-3 * max(1.0, float(want.abs().max()))
