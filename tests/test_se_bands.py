"""Real-CUGAN and waifu2x CUNet in bands of rows (``superres.inference.se_bands``) equal the whole-image pass.

Their SE gates average whole maps, so the bands take one sweep per gate to sum each map over the whole image
before any band goes past it. Random weights (perturbed so that every gate matters), odd sizes, bands as narrow
as 4 rows: every scale of both families, and the "pro" variant.
"""

from __future__ import annotations

import pytest
import torch

from superres.archs import build
from superres.inference import se_bands


def _perturbed(arch: str, **hp: object) -> torch.nn.Module:
    torch.manual_seed(0)
    net = build(arch, **hp)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return net.eval()


@pytest.mark.parametrize("arch, hp", [("cugan", {"scale": 2}), ("cugan", {"scale": 3}), ("cugan", {"scale": 4}),
                                      ("cugan", {"scale": 2, "pro": True}), ("cugan", {"scale": 2, "se": False}),
                                      ("cunet", {"scale": 2}), ("cunet", {"scale": 1})])
def test_bands_equal_the_whole_image_pass(arch: str, hp: dict) -> None:
    net = _perturbed(arch, **hp)
    for h, w, rows in [(70, 37, 8), (33, 21, 4), (41, 18, 40)]:
        x = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(h))
        with torch.no_grad():
            whole = net(x)
        got = torch.full_like(whole, float("nan"))
        seen: list[tuple[int, int]] = []

        def sink(r0: int, r1: int, y: torch.Tensor) -> None:
            seen.append((r0, r1))
            got[0, :, r0:r1] = y

        bands = [(a, min(h, a + rows)) for a in range(0, h, rows)]
        se_bands.upscale_in_bands(net, x, bands, net.pad, sink)
        assert seen == [(a * net.scale, e * net.scale) for a, e in bands]
        assert float((got - whole).abs().max()) <= 1e-5, (arch, hp, h, w, rows)


def test_plan_fits_the_budget_and_refuses_misaligned_bands() -> None:
    net = _perturbed("cugan", scale=2)
    ctx = se_bands.context_rows(net.pad)
    assert ctx % se_bands.STRIDE == 0 and ctx >= 2 * net.pad
    plan = se_bands.band_plan(1000, 100, 4000, budget=(200 + 2 * ctx) * 100 * 4000, pad=net.pad)
    assert plan[0] == (0, 200) and plan[-1][1] == 1000 and all(a % se_bands.STRIDE == 0 for a, _ in plan)
    with pytest.raises(ValueError, match="multiples of 4"):
        se_bands.upscale_in_bands(net, torch.rand(1, 3, 20, 20), [(0, 6), (6, 20)], net.pad, lambda *a: None)
    assert se_bands.supports(net) and se_bands.supports(build("cunet", scale=1))
    assert se_bands.supports(build("cugan", scale=2, se=False))  # no gates: one sweep
    assert not se_bands.supports(build("srvgg", num_feat=4, num_conv=1, scale=2))


@pytest.mark.parametrize("arch, hp", [("cugan", {"scale": 2}), ("cugan", {"scale": 3}), ("cugan", {"scale": 4}),
                                      ("cunet", {"scale": 1})])
def test_the_engine_plan_answers_the_same_gates(arch: str, hp: dict) -> None:
    """The engine's U-Net plan (Winograd, SE folded into the next layer) asks the same control for each gate's
    mean, so the bands run on it too (about 2.5x faster than eager): within 1e-4 of the whole-image pass."""
    from superres.inference import fast

    net = _perturbed(arch, **hp)
    engine = fast.accelerate(net)
    x = torch.rand(1, 3, 58, 29, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        whole = net(x)
    got = torch.full_like(whole, float("nan"))

    def sink(r0: int, r1: int, y: torch.Tensor) -> None:
        got[0, :, r0:r1] = y

    se_bands.upscale_in_bands(net, x, [(0, 12), (12, 36), (36, 58)], net.pad, sink, run=engine)
    assert float((got - whole).abs().max()) <= 1e-4, fast.method_of(net)
