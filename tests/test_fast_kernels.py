"""The fast engine's C kernel in variants (AVX-512, AVX2+FMA, portable) with runtime dispatch: every
variant this machine runs gives the same images as the portable one (within 1e-5) and as eager (1e-4), on
random and real inputs of odd sizes; an override names the variant the process uses, never one the CPU
lacks; ``superres bench`` says which ran."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from superres.archs import build
from superres.inference import fast

SUPPORTED = fast.supported_kernel_variants()
X86 = platform.machine().lower() in ("x86_64", "amd64")


def _need_compiler() -> None:
    if fast.c_kernels("portable") is None:
        pytest.skip("no working C compiler: the kernels cannot be built here")


def _srvgg() -> torch.nn.Module:
    torch.manual_seed(0)
    return build("srvgg", num_feat=24, num_conv=4, scale=4, act="prelu").eval()


def _rrdb() -> torch.nn.Module:
    torch.manual_seed(1)
    return build("rrdbnet", num_feat=16, num_block=1, num_grow=8, scale=4).eval()


@pytest.mark.parametrize("variant", SUPPORTED)
@pytest.mark.parametrize("make", [_srvgg, _rrdb], ids=["srvgg", "rrdbnet"])
def test_every_variant_matches_portable_and_eager(variant: str, make) -> None:
    _need_compiler()
    net = make()
    g = torch.Generator().manual_seed(2)
    for shape in ((1, 3, 23, 37), (2, 3, 16, 9)):
        x = torch.rand(*shape, generator=g)
        with torch.inference_mode():
            want = net(x)
        for f4 in (False, True):
            ours = fast.kernel_forward(net, variant, f4=f4)(x)
            portable = fast.kernel_forward(net, "portable", f4=f4)(x)
            assert (ours - portable).abs().max().item() <= 1e-5, (variant, shape, f4)
            assert (ours - want).abs().max().item() <= 1e-4, (variant, shape, f4)


@pytest.mark.parametrize("variant", SUPPORTED)
@pytest.mark.parametrize("model", ["realesr-animevideov3", "span-x2", "espcn-r-x4", "edsr-baseline-x4",
                                   "realcugan-x2", "realcugan-x4", "waifu2x-cunet-x2"])
def test_every_variant_on_a_real_image(variant: str, model: str, data_dir: Path) -> None:
    """Zoo weights on a 45x61 crop of a Set14 photo: SRVGG's PReLU and shuffle, and the epilogues the later
    plans added (SPAN's SiLU and gate, ESPCN's tanh, EDSR's scaled residuals, the U-Nets' 2x2 steps and SE
    means) in every variant."""
    _need_compiler()
    from PIL import Image

    from superres.zoo.loader import load_network

    net, _ = load_network(model)
    img = np.asarray(Image.open(data_dir / "Set14" / "HR" / "comic.png").convert("RGB"), dtype=np.float32)
    x = torch.from_numpy(img[10:55, 20:81].transpose(2, 0, 1).copy() / 255.0)[None]
    x = x[:, : net.descriptor.in_channels]  # ESPCN reads Y: any one channel of a photo is a fair input
    with torch.inference_mode():
        want = net(x)
    ours = fast.kernel_forward(net, variant)(x)
    portable = fast.kernel_forward(net, "portable")(x)
    assert (ours - portable).abs().max().item() <= 1e-5
    assert (ours - want).abs().max().item() <= 1e-4
    assert ours.max().item() > 0.3  # a picture came out


@pytest.mark.parametrize("variant", SUPPORTED)
def test_gemm_of_every_variant_on_every_column_block(variant: str) -> None:
    """Widths that use the 32-, 16- and 8-column blocks and their tails; row counts not a multiple of 6."""
    _need_compiler()
    kern = fast.c_kernels(variant)
    g = torch.Generator().manual_seed(3)
    for n, k, width in ((1, 3, 8), (5, 64, 24), (13, 40, 56), (7, 72, 96), (6, 16, 40)):
        v = torch.rand(4, n, k, generator=g)
        u = torch.rand(4, k, width, generator=g)
        mm = torch.zeros(4, n, width)
        kern.gemm(v, u, mm)
        want = torch.bmm(v.double(), u.double())
        assert (mm.double() - want).abs().max().item() <= 1e-5 * k, (variant, n, k, width)


def test_choice_follows_the_override_only_where_the_cpu_runs_it() -> None:
    both = ("avx2", "portable")
    assert fast.choose_kernel_variant(None, both) == ("avx2", None)
    assert fast.choose_kernel_variant("auto", both) == ("avx2", None)
    assert fast.choose_kernel_variant("PORTABLE", both) == ("portable", None)
    variant, why = fast.choose_kernel_variant("avx512", both)
    assert variant == "avx2" and "cannot run it" in why
    variant, why = fast.choose_kernel_variant("sse9", both)
    assert variant == "avx2" and "is not one of" in why


@pytest.mark.skipif(not X86, reason="x86 flags")
def test_supported_variants_from_cpu_flags() -> None:
    avx2 = frozenset({"sse2", "avx", "avx2", "fma", "f16c"})
    avx512 = avx2 | {"avx512f", "avx512vl", "avx512dq", "avx512bw"}
    assert fast.supported_kernel_variants(avx512) == ("avx512", "avx2", "portable")
    assert fast.supported_kernel_variants(avx2) == ("avx2", "portable")
    assert fast.supported_kernel_variants(frozenset({"sse2"})) == ("portable",)
    assert fast.supported_kernel_variants(avx2 | {"avx512f"}) == ("avx2", "portable")  # partial AVX-512


def test_a_variant_this_cpu_lacks_is_refused_not_run() -> None:
    missing = [v for v in ("avx512", "avx2") if v not in SUPPORTED]
    if not missing:
        pytest.skip("this CPU runs every x86 variant")
    with pytest.raises(ValueError, match="cannot run"):
        fast.c_kernels(missing[0])


@pytest.mark.skipif(not X86, reason="x86 variant")
def test_the_avx512_variant_builds_even_where_it_cannot_run() -> None:
    _need_compiler()
    try:
        path = fast.build_kernel("avx512")
    except RuntimeError as e:
        pytest.skip(f"this compiler does not build AVX-512 code: {e}")
    assert path.is_file() and "avx512" in path.name


def test_the_override_is_read_once_per_process(monkeypatch: pytest.MonkeyPatch,
                                              caplog: pytest.LogCaptureFixture) -> None:
    """$SUPERRES_FAST_KERNEL=portable is what the process runs; a variant this CPU lacks falls back to the
    best it runs, with a warning, instead of an illegal instruction."""
    import logging

    _need_compiler()
    monkeypatch.setattr(fast, "_KERNELS", {})
    monkeypatch.setenv("SUPERRES_FAST_KERNEL", "portable")
    assert fast.kernel_variant() == "portable"
    monkeypatch.setenv("SUPERRES_FAST_KERNEL", SUPPORTED[0])
    assert fast.kernel_variant() == "portable"  # chosen once: a later change of the variable is not read
    lacking = [v for v in ("avx512", "avx2") if v not in SUPPORTED]
    if lacking:
        monkeypatch.setattr(fast, "_KERNELS", {})
        monkeypatch.setenv("SUPERRES_FAST_KERNEL", lacking[0])
        with caplog.at_level(logging.WARNING, logger="superres.inference.fast"):
            assert fast.kernel_variant() == SUPPORTED[0]
        assert any("cannot run it" in r.message for r in caplog.records)


def test_forced_portable_kernel_through_the_cli() -> None:
    """The user's view: `superres bench` says which kernel ran, here the forced portable one."""
    _need_compiler()
    env = {**os.environ, "SUPERRES_FAST_KERNEL": "portable"}
    cmd = [sys.executable, "-m", "superres.cli", "bench", "-m", "realesr-animevideov3", "-b", "torch",
           "-s", "24", "--repeats", "1"]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "fast engine kernel: portable" in res.stdout


@pytest.mark.parametrize("variant", sorted({*SUPPORTED, "portable"}))
def test_map_attention_of_every_variant(variant: str) -> None:
    """The compiled windowed attention (DAT's spatial windows, read from and written to channels-last maps)
    against a float64 reference: the head sizes it specialises (8, 10, 16, 30, 32) and generic ones (3, 40),
    8 to 256 tokens a window, rolled rows and columns, rows and columns left unwritten, Swin-style -100 masks
    on some windows (scores far apart: the softmax must subtract its max), a batch of two."""
    from dataclasses import replace

    from superres.archs.base import MapWindows

    _need_compiler()
    kern = fast.c_kernels(variant)
    g = torch.Generator().manual_seed(4)
    for d, (wh, ww), masked in ((3, (2, 4), True), (8, (4, 8), False), (10, (8, 32), True), (16, (8, 8), False),
                                (30, (8, 16), True), (32, (4, 4), False), (40, (2, 12), True)):
        heads, nh, nw = 2, 3, 2
        n, hp, wp = wh * ww, nh * wh, nw * ww
        c = heads * d + 3
        rowmap = (torch.arange(hp) + wh // 2) % hp
        masks = mask_of = None
        if masked:
            masks = torch.zeros(2, n, n)
            masks[0, : n // 2, n // 2:] = -100.0
            masks[1] = torch.randn(n, n, generator=g) * 3
            mask_of = torch.tensor([-1, 0, 1, -1, 0, 0])
        win = MapWindows(qkv=torch.randn(2, hp, wp, 3 * c, generator=g) * 2, channel=3, heads=heads, head_dim=d,
                         window=(wh, ww), col_shift=ww // 2, rowmap=rowmap, out=torch.zeros(2, hp - 1, wp - 1, c),
                         out_channel=1, outrow=torch.where(rowmap < hp - 1, rowmap, -1),
                         bias=torch.randn(heads, n, n, generator=g), masks=masks, mask_of=mask_of)
        want = win.out.clone()
        fast.map_attention_reference(replace(win, out=want))
        assert fast.map_attention_kernel(kern, fast._Inline())(win)
        assert (win.out.double() - want.double()).abs().max().item() <= 1e-5, (variant, d, wh, ww)
        assert want[:, :, :, 1:1 + heads * d].abs().min() > 0 and not want[..., 0].any()  # all written, no more


def test_map_attention_refuses_what_it_cannot_address() -> None:
    """Inputs whose addresses would leave the tensors are refused (the torch path runs), not computed."""
    from dataclasses import replace

    _need_compiler()
    win = fast._self_test_windows(torch.Generator().manual_seed(0), 4)
    attend = fast.map_attention_kernel(fast.c_kernels(), fast._Inline())
    for bad in (dict(rowmap=win.rowmap + 1), dict(outrow=win.outrow + 1), dict(channel=win.qkv.shape[-1]),
                dict(out_channel=win.out.shape[-1] - 1), dict(window=(4, 5)), dict(head_dim=65),
                dict(mask_of=win.mask_of + 1), dict(qkv=win.qkv.double())):
        assert not attend(replace(win, **bad)), bad
