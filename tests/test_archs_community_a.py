"""The community's architectures, part A (issue 25): OmniSR, PLKSR, RealPLKSR, SAFMN, Swin2SR, and the
licence opt-in for non-commercial architectures.

Each architecture's fixture (tests/data/community/, made once by benchmarks/fixtures/community_archa.py from
spandrel 0.4.2's implementation on random weights in the official key layout) loads through our real
loader (detection -> hyper-parameters -> strict load) and must reproduce spandrel's stored output within
1e-4. Then what the pipeline gives: upscale through the CLI from a .pth and a .safetensors, tiles equal to
the whole image where the architecture says tiling is safe, RGBA and 16-bit, ONNX export.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from superres.archs import build, detect, get_arch
from superres.archs.base import detection_order
from superres.cli import app
from superres.errors import ModelLoadError
from superres.zoo.loader import load_network

HERE = Path(__file__).resolve().parent / "data" / "community"
MANIFEST = json.loads((HERE / "archa_manifest.json").read_text())
CASES = MANIFEST["cases"]
ARCH_OF = {
    "safmn": "safmn",
    "plksr": "plksr",
    "realplksr": "realplksr",
    "omnisr": "omnisr",
    "swin2sr": "swin2sr",
}
runner = CliRunner()


def _arch(case: str) -> str:
    return ARCH_OF[case.split("_")[0]]


# ---- the reference forward ----------------------------------------------------------------------------


@pytest.mark.parametrize("case", sorted(CASES))
def test_fixture_loads_by_detection_and_matches_spandrel(case: str) -> None:
    c = CASES[case]
    net, card = load_network(HERE / c["weights"])
    assert card is None and net.arch_name == _arch(case)
    io = load_file(str(HERE / c["io"]))
    net.eval()
    for i, (h, w) in enumerate(c["inputs"]):
        x = io[f"input_{i}"]
        assert tuple(x.shape) == (1, 3, h, w)
        with torch.no_grad():
            y = net(x)
        ref = io[f"output_{i}"]
        assert y.shape == ref.shape
        assert float((y - ref).abs().max()) <= 1e-4, case


@pytest.mark.parametrize("case", sorted(CASES))
def test_detection_claims_each_fixture_for_exactly_one_family(case: str) -> None:
    from superres.zoo.formats import read_weights_file

    sd, _ = read_weights_file(HERE / CASES[case]["weights"])
    claimed = [name for name in detection_order() if get_arch(name).detect(sd) is not None]
    assert claimed == [_arch(case)]


def test_detected_hyperparameters_are_the_upstream_ones() -> None:
    """The hyper-parameters spandrel was given come back from the weights alone."""

    def hp(case: str) -> dict[str, Any]:
        return load_network(HERE / CASES[case]["weights"])[0].hyperparams

    assert hp("omnisr_x2") == dict(
        scale=2,
        in_channels=3,
        out_channels=3,
        num_feat=16,
        block_num=1,
        res_num=2,
        window_size=4,
        pe=True,
        bias=True,
    )
    assert hp("safmn_x4") == dict(scale=4, dim=16, n_blocks=2, ffn_scale=2.0, n_levels=4)
    assert hp("plksr_dccm_x2") == dict(
        scale=2,
        dim=16,
        n_blocks=1,
        ccm_type="DCCM",
        kernel_size=5,
        split_ratio=0.5,
        use_ea=False,
        with_idt=False,
    )
    real = hp("realplksr_ln_dysample_x2")
    assert (real["dysample"], real["layer_norm"], real["kernel_size"], real["n_blocks"]) == (True, True, 5, 2)
    sw = hp("swin2sr_aux_x2")
    assert (sw["upsampler"], sw["resi_connection"], sw["window_size"], sw["img_size"], sw["depths"]) == (
        "pixelshuffle_aux",
        "3conv",
        4,
        16,
        [2],
    )


# ---- variants the fixtures do not cover: build -> save -> detect -> strict load -> same output -----------

VARIANTS = [
    ("omnisr", dict(scale=3, num_feat=16, block_num=2, res_num=1, window_size=4, pe=True, bias=False)),
    ("plksr", dict(scale=4, dim=16, n_blocks=2, ccm_type="ICCM", kernel_size=5, split_ratio=0.25)),
    ("realplksr", dict(scale=3, dim=12, n_blocks=1, kernel_size=5, split_ratio=0.5, dysample=True)),
    ("safmn", dict(scale=2, dim=12, n_blocks=1, ffn_scale=1.5)),
    (
        "swin2sr",
        dict(
            scale=4,
            embed_dim=12,
            depths=[2],
            num_heads=[3],
            window_size=4,
            img_size=16,
            upsampler="nearest+conv",
            num_feat=8,
        ),
    ),
    (
        "swin2sr",
        dict(
            scale=2,
            embed_dim=12,
            depths=[1, 2],
            num_heads=[2, 2],
            window_size=4,
            img_size=None,
            upsampler="pixelshuffle",
            num_feat=8,
            qkv_bias=False,
        ),
    ),
    (
        "swin2sr",
        dict(scale=1, embed_dim=12, depths=[2], num_heads=[2], window_size=4, img_size=12, upsampler=""),
    ),
]


@pytest.mark.parametrize("arch,hp", VARIANTS, ids=[f"{a}-{i}" for i, (a, _) in enumerate(VARIANTS)])
def test_variant_round_trip(tmp_path: Path, arch: str, hp: dict[str, Any]) -> None:
    torch.manual_seed(0)
    net = build(arch, **hp).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    path = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    sd = load_file(str(path))
    found = detect(sd)
    assert found is not None and found[0] == arch
    assert {k: found[1][k] for k in hp} == {
        k: (list(v) if isinstance(v, tuple) else v) for k, v in hp.items()
    }
    rebuilt = build(arch, **found[1]).eval()
    rebuilt.load_state_dict(sd, strict=True)
    x = torch.rand(1, 3, 13, 18, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(rebuilt(x), net(x))
        assert net(x).shape == (1, 3, 13 * net.scale, 18 * net.scale)


def test_a_deep_omnisr_is_not_mistaken_for_a_weights_bomb(tmp_path: Path) -> None:
    """12 groups x 2 blocks (48 window attentions): no per-module computed buffers for the file to vouch for."""
    net = build("omnisr", scale=4, num_feat=32, block_num=2, res_num=12, window_size=8)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp_path / "deep.safetensors"))
    loaded, _ = load_network(tmp_path / "deep.safetensors")
    assert loaded.hyperparams["res_num"] == 12 and loaded.hyperparams["block_num"] == 2


def test_profiler_counters_in_a_checkpoint_are_ignored(tmp_path: Path) -> None:
    """Some OmniSR releases carry thop's total_ops / total_params buffers: the file still loads strictly."""
    sd = torch.load(HERE / CASES["omnisr_x2"]["weights"], weights_only=True)
    sd = {
        **sd,
        "total_ops": torch.zeros(1),
        "total_params": torch.zeros(1),
        "input.total_ops": torch.zeros(1),
    }
    torch.save(sd, tmp_path / "omnisr_thop.pth")
    net, _ = load_network(tmp_path / "omnisr_thop.pth")
    assert net.arch_name == "omnisr"


def test_descriptors_say_how_each_tiles_and_its_licence() -> None:
    omni = load_network(HERE / CASES["omnisr_x2"]["weights"])[0].descriptor
    assert (omni.tiling, omni.size_multiple, omni.receptive_field) == ("discouraged", 4, None)
    plk = load_network(HERE / CASES["plksr_x3"]["weights"])[0].descriptor
    assert (plk.tiling, plk.size_multiple, plk.receptive_field) == ("safe", 1, 1 + 2 * (1 + 3 + 1) + 1)
    saf = load_network(HERE / CASES["safmn_x4"]["weights"])[0].descriptor
    assert (saf.tiling, saf.size_multiple, saf.receptive_field) == ("safe", 8, 1 + 2 * 16 + 1)
    sw = load_network(HERE / CASES["swin2sr_light_x3"]["weights"])[0].descriptor
    assert (sw.tiling, sw.size_multiple, sw.out_channels) == ("discouraged", 4, 3)
    licences = {
        n: (get_arch(n).licence, get_arch(n).noncommercial)
        for n in ("omnisr", "plksr", "realplksr", "safmn", "swin2sr")
    }
    assert licences == {
        "omnisr": ("Apache-2.0", False),
        "plksr": ("MIT", False),
        "realplksr": ("Apache-2.0", False),
        "safmn": ("Apache-2.0", False),
        "swin2sr": ("Apache-2.0", False),
    }


# ---- the pipeline: CLI upscale, tiles, alpha, 16-bit, ONNX -------------------------------------------


def _photo(data_dir: Path, size: tuple[int, int] = (40, 28)) -> np.ndarray:
    im = Image.open(data_dir / "Set5" / "LR_bicubic" / "X4" / "butterflyx4.png").convert("RGB")
    return np.asarray(im.crop((0, 0, *size)))


def test_upscale_through_the_cli_from_pth_and_safetensors(tmp_path: Path, data_dir: Path) -> None:
    src = tmp_path / "in.png"
    Image.fromarray(_photo(data_dir)).save(src)
    for case in ("omnisr_x2", "swin2sr_light_x3"):
        out = tmp_path / f"{case}.png"
        res = runner.invoke(
            app, ["upscale", str(src), "-o", str(out), "-m", str(HERE / CASES[case]["weights"])]
        )
        assert res.exit_code == 0, res.output
        net, _ = load_network(HERE / CASES[case]["weights"])
        with Image.open(out) as im:
            assert im.mode == "RGB" and im.size == (40 * net.scale, 28 * net.scale)
            got = np.asarray(im).astype(np.int16)
        x = torch.from_numpy(_photo(data_dir).astype(np.float32) / 255).permute(2, 0, 1)[None]
        with torch.no_grad():
            want = net.eval()(x)[0].permute(1, 2, 0).clamp(0, 1).mul(255).round().numpy().astype(np.int16)
        # one whole-image pass (the image is smaller than a tile): the file is the network's output
        assert np.abs(got - want).max() <= 1, case


@pytest.mark.parametrize("case", ["plksr_x3", "safmn_x4"])
def test_tiles_equal_the_whole_image_when_tiling_is_safe(tmp_path: Path, data_dir: Path, case: str) -> None:
    """PLKSR is fully convolutional; SAFMN pools on an 8-pixel grid, which the tiler's pieces start on.
    With the receptive field as context, 24-pixel tiles (pieces from columns 3, 22: off the grid) reproduce
    the whole image."""
    src = tmp_path / "in.png"
    Image.fromarray(_photo(data_dir, (80, 64))).save(src)
    weights = str(HERE / CASES[case]["weights"])
    outs = []
    for tile in ("0", "24"):
        out = tmp_path / f"t{tile}.png"
        res = runner.invoke(
            app, ["upscale", str(src), "-o", str(out), "-m", weights, "-t", tile, "--tile-overlap", "4"]
        )
        assert res.exit_code == 0, res.output
        outs.append(np.asarray(Image.open(out)).astype(np.int16))
    assert np.abs(outs[0] - outs[1]).max() <= 1


def test_rgba_16bit_keeps_alpha_and_depth(tmp_path: Path, data_dir: Path) -> None:
    from superres.io.image import from_array, read_image, write_image

    rgb = _photo(data_dir, (24, 16)).astype(np.uint16) * 257 + np.random.default_rng(5).integers(
        0, 200, (16, 24, 3)
    )
    alpha = np.tile(np.linspace(0, 65535, 24), (16, 1)).astype(np.uint16)
    write_image(from_array(np.dstack([rgb.astype(np.uint16), alpha])), tmp_path / "in.png")
    weights = str(HERE / CASES["safmn_x4"]["weights"])
    for alpha in ("model", "bicubic"):  # the network's own alpha pass, and the cheap one
        out = tmp_path / f"out_{alpha}.png"
        res = runner.invoke(
            app, ["upscale", str(tmp_path / "in.png"), "-o", str(out), "-m", weights, "--alpha", alpha]
        )
        assert res.exit_code == 0, res.output
        img = read_image(out)
        assert img.bit_depth == 16 and img.size == (96, 64) and img.alpha is not None
    # random weights make the model's alpha meaningless; the bicubic one must keep the ramp
    a = np.asarray(img.alpha, np.float64)
    a = a / 65535 if a.max() > 1 else a
    assert a[:, :8].mean() < 0.2 and a[:, -8:].mean() > 0.8


def test_quality_report_for_a_community_model(tmp_path: Path, data_dir: Path, weights_dir: Path) -> None:
    """The NIQE gate judges a community model like a zoo one: random weights are flagged, bicubic written."""
    src = tmp_path / "in.png"
    Image.fromarray(_photo(data_dir, (112, 64))).save(src)  # x2: NIQE needs two 96x96 blocks
    out, rep = tmp_path / "out.png", tmp_path / "report.json"
    res = runner.invoke(
        app,
        [
            "upscale",
            str(src),
            "-o",
            str(out),
            "-m",
            str(HERE / CASES["omnisr_x2"]["weights"]),
            "--report",
            str(rep),
            "--fallback",
            "bicubic",
            "--niqe-params",
            str(weights_dir / "niqe" / "niqe_pris_params.npz"),
        ],
    )
    assert res.exit_code == 0, res.output
    [img] = json.loads(rep.read_text())["images"]
    assert img["niqe"] > 0 and img["bicubic_niqe"] > 0
    assert img["flagged"] and img["written"] == "bicubic"
    with Image.open(out) as im:
        assert im.size == (224, 128)


def test_onnx_export_matches_torch(tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime", reason="the onnx extra (onnxruntime) is not installed")
    out = tmp_path / "swin2sr.onnx"
    weights = HERE / CASES["swin2sr_light_x3"]["weights"]
    res = runner.invoke(app, ["export", str(weights), str(out)])
    assert res.exit_code == 0, res.output
    meta = {p.key: p.value for p in __import__("onnx").load(str(out)).metadata_props}
    assert (
        meta.get("superres.size_multiple") == "4"
    )  # the window: callers (our tiler) pad to it, as for SwinIR
    net, _ = load_network(weights)
    x = torch.rand(1, 3, 16, 20, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        want = net.eval()(x).numpy()
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    assert got.shape == (1, 3, 48, 60) and np.abs(got - want).max() <= 1e-4


# ---- the licence opt-in --------------------------------------------------------------------------------

TOY = """
import sys, torch
from torch import nn
from superres.archs import ArchSpec, SRNet, register


class Toy(SRNet):
    arch_name = "toy_nc"

    def __init__(self, scale=2):
        super().__init__(scale=scale)
        self.nc_gain = nn.Parameter(torch.ones(1))

    def forward(self, x):
        return nn.functional.interpolate(x, scale_factor=2, mode="nearest") * self.nc_gain


register(ArchSpec("toy_nc", "Toy NC (test only)", Toy,
                  lambda sd: {"scale": 2} if set(sd) == {"nc_gain"} else None,
                  licence="CC-BY-NC-SA-4.0", noncommercial=True))
from superres.cli import main
sys.argv = ["superres", *sys.argv[1:]]
main()
"""


def _toy_cli(tmp_path: Path, *args: str, env_value: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "SUPERRES_ALLOW_NONCOMMERCIAL"}
    if env_value is not None:
        env["SUPERRES_ALLOW_NONCOMMERCIAL"] = env_value
    env["COLUMNS"] = "200"
    return subprocess.run(
        [sys.executable, "-c", TOY, *args], env=env, capture_output=True, text=True, timeout=300
    )


def test_noncommercial_architecture_needs_the_opt_in(tmp_path: Path) -> None:
    save_file({"nc_gain": torch.ones(1)}, str(tmp_path / "toy.safetensors"))
    Image.fromarray(np.full((6, 8, 3), 90, np.uint8)).save(tmp_path / "in.png")
    out = tmp_path / "out.png"
    base = ["upscale", str(tmp_path / "in.png"), "-o", str(out), "-m", str(tmp_path / "toy.safetensors")]

    refused = _toy_cli(tmp_path, *base)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    lines = [ln for ln in refused.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:")
    assert "toy_nc" in lines[0] and "CC-BY-NC-SA-4.0" in lines[0] and "--allow-noncommercial" in lines[0]
    assert not out.exists() and not list(tmp_path.glob("*.tmp*"))

    # the flag (the environment variable alone is checked in-process below: each run here costs an import)
    run = _toy_cli(tmp_path, "--allow-noncommercial", *base)
    assert run.returncode == 0, run.stderr
    assert run.stderr.count("CC-BY-NC-SA-4.0") == 1  # the licence, said once
    with Image.open(out) as im:
        assert im.size == (16, 12)
    # after the command too, where the refusal says to add it
    after = _toy_cli(tmp_path, *base[:3], str(tmp_path / "after.png"), *base[4:], "--allow-noncommercial")
    assert after.returncode == 0, after.stderr
    assert (tmp_path / "after.png").exists()


def test_check_licence_in_process(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    import dataclasses

    from superres.zoo import licences

    spec = dataclasses.replace(get_arch("safmn"), name="nc_probe", licence="CC-BY-NC-4.0", noncommercial=True)
    monkeypatch.delenv(licences.ENV, raising=False)
    with pytest.raises(ModelLoadError, match=r"nc_probe .*CC-BY-NC-4.0.*non-commercial"):
        licences.check_licence(spec)
    licences.check_licence(get_arch("safmn"))  # a permissive licence needs nothing
    monkeypatch.setenv(licences.ENV, "1")
    licences._announce.cache_clear()
    with caplog.at_level(logging.WARNING, logger="superres.zoo.licences"):
        licences.check_licence(spec)
        licences.check_licence(spec)
    said = [r for r in caplog.records if "CC-BY-NC-4.0" in r.getMessage()]
    assert len(said) == 1
    assert licences.worker_env() == {licences.ENV: "1"}  # Ray workers on other nodes get the opt-in
    from superres.zoo.weight_limits import worker_env  # what the Ray engines pass as runtime_env

    assert worker_env()[licences.ENV] == "1"
    for no in ("0", "", "no"):
        monkeypatch.setenv(licences.ENV, no)
        with pytest.raises(ModelLoadError):
            licences.check_licence(spec)
    assert licences.worker_env() == {}
