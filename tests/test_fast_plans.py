"""superres.inference.fast: the whole-network plans of SPAN, SRMD, UpConv7, ESPCN and EDSR equal eager fp32.

What a user relies on: ``accelerate(net)`` (the default path of every upscale) gives eager's pixels to within
1e-4 (max abs, [0, 1] images) with the zoo's real weights, on real image crops and smooth random inputs, at
sizes that leave partial Winograd tiles (odd sizes, a 1x1 image), in both tile sizes and with the PyTorch
transforms; hyper-parameters the zoo does not ship (widths not a multiple of 8, scale 3, grey input, tanh
ESPCN, scaled EDSR residuals) take the same path. Numerics only, no timing (speed: benchmarks/cpu_speed.py).

SPAN multiplies its input by 255: on white noise its fp32 forward is ill-conditioned (eager fp32 itself is
0.1-1 away from fp64; tests/test_ncnn_families.py), so white noise is checked against fp64 instead: the
engine must be no further from fp64 than eager fp32 is.
"""

from __future__ import annotations


import numpy as np
import pytest
import torch
from torch import nn

from superres.archs import build
from superres.inference import fast

from fast_plan_helpers import kaiming, load_comic, plan_inputs, zoo_network  # tests/fast_plan_helpers.py

TOL = 1e-4
SIZES = ((37, 53), (16, 24), (5, 3), (1, 1))
ZOO = ["span-x2", "span-x4", "span-ch48-x4", "srmd-x2", "srmdnf-x3", "srmd-x4", "waifu2x-anime-x2",
       "waifu2x-photo-x2-n3", "espcn-r-x4", "espcn-m-x4", "edsr-baseline-x4"]
PLANNED = ["span", "srmd", "upconv7", "espcn", "edsr"]


@pytest.fixture(scope="module")
def comic() -> np.ndarray | None:
    return load_comic()


def _worst(net: nn.Module, mode: str, comic: np.ndarray | None, c: int, sizes=SIZES,
           relative: bool = False) -> float:
    """Max abs difference to eager over the inputs (asserted < TOL; ``relative``: < TOL * max(1, |eager|),
    for random weights whose outputs are not images)."""
    fwd = fast.accelerate(net, "cpu", mode=mode)
    worst = 0.0
    for h, w in sizes:
        for name, x in plan_inputs(comic, c, h, w).items():
            with torch.inference_mode():
                want, got = net(x), fwd(x)
            assert got.shape == want.shape and got.dtype == torch.float32, (name, h, w)
            err = float((got - want).abs().max())
            if relative:
                err /= max(1.0, float(want.abs().max()))
            assert err < TOL, (mode, name, (h, w), err)
            worst = max(worst, err)
    return worst


# ---- the zoo's real weights --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ZOO)
def test_zoo_model_plan_matches_eager(name: str, comic: np.ndarray | None) -> None:
    net = zoo_network(name)
    assert fast.has_plan(net)
    if fast.c_kernels() is not None:
        assert fast.method_of(net, "cpu") == "winograd"  # the default path takes the plan
    c = net.descriptor.in_channels
    for mode, sizes in (("auto", SIZES), ("winograd_f4", SIZES[1:3])):
        worst = _worst(net, mode, comic, c, sizes)
        print(f"{name} {mode} ({fast.method_of(net, 'cpu', mode)}): max abs diff {worst:.2e}")


@pytest.mark.parametrize("name", ["span-x2", "srmd-x2", "waifu2x-anime-x2", "espcn-r-x4"])
def test_zoo_model_torch_transforms_match_eager(name: str, comic: np.ndarray | None) -> None:
    """The compiler-free transforms carry the same epilogues (SiLU, the SPAN gate, tanh) in PyTorch."""
    net = zoo_network(name)
    worst = _worst(net, "winograd_torch", comic, net.descriptor.in_channels, sizes=((19, 26), (3, 5)))
    print(f"{name} winograd_torch: max abs diff {worst:.2e}")


def test_span_white_noise_no_further_from_fp64_than_eager() -> None:
    net = zoo_network("span-x2")
    x = torch.rand(1, 3, 23, 29, generator=torch.Generator().manual_seed(5))
    import copy

    ref_net = copy.deepcopy(net).double()
    with torch.inference_mode():
        ref = ref_net(x.double())
        eager = float((net(x).double() - ref).abs().max())
        errs = {m: float((fast.accelerate(net, "cpu", mode=m)(x).double() - ref).abs().max())
                for m in ("winograd", "winograd_f4")}
    print(f"span-x2 white noise, max abs diff to fp64: eager fp32 {eager:.3g}, engine {errs}")
    assert eager > 1e-3  # the premise: fp32 itself is ill-conditioned here
    # measured (23x29, seed 5): eager 0.011, F(4,3) 0.049, F(6,3) 0.16 on outputs of +-300: each layer's
    # transform rounding (F(4,3) ~3.5x, F(6,3) ~5x a direct conv's) compounds through SPAN's 21 convs
    # (F(4,3) 0.034 with an exact division in SiLU's sigmoid instead of the Newton-refined reciprocal)
    assert errs["winograd_f4"] < 7 * eager and errs["winograd"] < 25 * eager, (errs, eager)


# ---- hyper-parameters the zoo does not ship ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("arch", "hp", "c"),
    [
        ("span", dict(num_feat=12, scale=3), 3),  # 12 -> 16 channels padded
        ("span", dict(in_channels=1, out_channels=1, num_feat=16, scale=2), 1),
        ("srmd", dict(num_feat=20, scale=3, noise_level=None), 3),
        ("srmd", dict(in_channels=1, out_channels=1, num_feat=16, scale=2, noise_level=15), 1),
        ("upconv7", dict(), 3),
        ("espcn", dict(channels=3, scale=3, n1=20, n2=12, f1=3), 3),
        ("espcn", dict(channels=1, scale=2, n1=16, n2=8, activation="tanh", final="none"), 1),
        ("edsr", dict(scale=3, num_blocks=2, num_feat=16, res_scale=0.1), 3),
        ("edsr", dict(scale=8, num_blocks=1, num_feat=8), 3),
    ],
)
@pytest.mark.parametrize("mode", ["winograd", "winograd_f4", "winograd_torch"])
def test_random_weights_variants_match_eager(arch: str, hp: dict, c: int, mode: str,
                                             comic: np.ndarray | None) -> None:
    net = build(arch, **hp)
    if arch == "span":  # upstream's DIV2K mean, as the zoo's files carry it
        net.mean.copy_(torch.tensor([0.4488, 0.4371, 0.4040][:c]).view(1, c, 1, 1))
        # SPAN scales its input by 255: keep its activations O(1) as trained weights do
        kaiming(net, seed=len(str(hp)))
        with torch.no_grad():
            net.conv_first.weight.div_(255.0)
    else:
        kaiming(net, seed=len(str(hp)))
    assert fast.has_plan(net)
    worst = _worst(net, mode, comic, c, sizes=((23, 17), (6, 7), (1, 1)), relative=True)
    print(f"{arch} {hp} {mode}: max abs diff {worst:.2e}")


def test_batch_and_threads_share_a_plan() -> None:
    """A batch of two and two threads at once through one SPAN plan give the lone calls' exact bits."""
    import threading

    net = kaiming(build("span", num_feat=16, scale=2), seed=3)
    with torch.no_grad():
        net.conv_first.weight.div_(255.0)
    fwd = fast.accelerate(net, "cpu", mode="winograd")
    g = torch.Generator().manual_seed(4)
    xs = [torch.rand(1, 3, 21, 30, generator=g), torch.rand(1, 3, 21, 30, generator=g)]
    with torch.inference_mode():
        alone = [fwd(x) for x in xs]
        both = fwd(torch.cat(xs))
    assert torch.equal(both, torch.cat(alone))
    results: list[torch.Tensor | None] = [None, None]
    start = threading.Barrier(2)

    def work(i: int) -> None:
        start.wait()
        with torch.inference_mode():
            for _ in range(3):
                results[i] = fwd(xs[i])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r is not None and torch.equal(r, a) for r, a in zip(results, alone))


@pytest.mark.parametrize("arch", PLANNED)
def test_plan_refuses_unexpected_layout_and_falls_back(arch: str) -> None:
    """A network of a planned family whose layout differs (here: one conv swapped for a 5x5) is refused by
    the plan builder and runs channels-last, still equal to eager."""
    hp = {"espcn": dict(channels=1, scale=2, n1=8, n2=8), "edsr": dict(scale=2, num_blocks=1, num_feat=8),
          "srmd": dict(num_feat=8, scale=2), "span": dict(num_feat=8, scale=2), "upconv7": dict()}[arch]
    net = kaiming(build(arch, **hp), seed=9)
    if arch == "span":
        with torch.no_grad():
            net.conv_first.weight.div_(255.0)  # its input is scaled by 255 (see above)
    target = {"espcn": "conv2", "edsr": "head.0", "srmd": "convs.3", "span": "blocks.2.c2",
              "upconv7": "features.2"}[arch]
    parent, _, leaf = target.rpartition(".")
    owner = net.get_submodule(parent) if parent else net
    old = getattr(owner, leaf)
    pad = 2 if old.padding == (1, 1) else 0
    setattr(owner, leaf, nn.Conv2d(old.in_channels, old.out_channels, 5, 1, pad))
    with pytest.raises(TypeError):
        fast._make_plan(net, fast._Runner(fast._TorchKernels(), 4, fast._Inline()))
    if arch == "upconv7":
        return  # a 5x5 unpadded layer changes the network's border, which eager shows as a shape change
    fwd = fast.accelerate(net, "cpu", mode="winograd")
    x = torch.rand(1, net.descriptor.in_channels, 9, 10, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        want = net(x)
        assert float((fwd(x) - want).abs().max()) < 1e-3 * max(1.0, float(want.abs().max()))
