"""Community architectures HAT, ATD and CRAFT: official key layouts load by detection and match upstream.

The fixtures under tests/data/community/ were made once by benchmarks/fixtures/make_archb_fixtures.py: the
upstream implementation (as packaged by spandrel 0.4.2) with small hyper-parameters and fixed-seed random
weights, saved in the official key layout, with a fixed-seed input and the upstream output (see each
``<name>.json``). These tests load the checkpoint the way a user's file is loaded (reader -> detection ->
hyper-parameters -> strict load) and compare.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from superres.archs.base import detect, detection_order, get_arch
from superres.cli import app
from superres.zoo.formats import read_weights_file
from superres.zoo.loader import load_network

FIXTURES = Path(__file__).parent / "data" / "community"
runner = CliRunner()

# fixture -> (arch, hyper-parameters the detection must find)
CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "hat_x2": ("hat", dict(scale=2, embed_dim=24, depths=[2, 2], num_heads=[2, 3], window_size=8,
                           compress_ratio=4, squeeze_factor=6, overlap_ratio=0.5, mlp_ratio=2.0, num_feat=16,
                           resi_connection="1conv")),
    "atd_x2": ("atd", dict(scale=2, embed_dim=24, depths=[2, 3], num_heads=[2, 3], window_size=8,
                           category_size=256, num_tokens=16, reducted_dim=4, convffn_kernel_size=5,
                           upsampler="pixelshuffledirect", resi_connection="1conv", norm=True)),
    "atd_light_x3": ("atd", dict(scale=3, embed_dim=48, depths=[2], num_heads=[4], window_size=8,
                                 category_size=128, num_tokens=8, convffn_kernel_size=3, mlp_ratio=1.0,
                                 upsampler="pixelshuffledirect", resi_connection="3conv")),
    "craft_x4": ("craft", dict(scale=4, embed_dim=32, depths=[1], num_heads=[4], split_size_0=4,
                               split_size_1=16, window_size=16, mlp_ratio=2.0, resi_connection="1conv")),
}


def _state(name: str) -> dict[str, torch.Tensor]:
    sd, _ = read_weights_file(FIXTURES / f"{name}.pth")
    return sd


@pytest.mark.parametrize("name", sorted(CASES))
def test_official_layout_loads_and_matches_the_upstream_output(name: str) -> None:
    arch, want = CASES[name]
    net, card = load_network(FIXTURES / f"{name}.pth")  # detection -> hyper-parameters -> strict load
    assert card is None and net.arch_name == arch
    assert {k: net.hyperparams[k] for k in want} == want
    io = load_file(str(FIXTURES / f"{name}_io.safetensors"))
    with torch.no_grad():
        out = net.eval()(io["input"])
    assert out.shape == io["output"].shape
    assert float((out - io["output"]).abs().max()) <= 1e-4
    info = json.loads((FIXTURES / f"{name}.json").read_text())
    assert info["params"] == sum(p.numel() for p in net.parameters())


@pytest.mark.parametrize("name", sorted(CASES))
def test_only_its_own_architecture_claims_the_weights(name: str) -> None:
    arch, _ = CASES[name]
    sd = _state(name)
    claims = [a for a in detection_order() if get_arch(a).detect(sd) is not None]
    assert claims == [arch]


@pytest.mark.parametrize("name,key", [("hat_x2", "relative_position_index_OCA"),
                                      ("hat_x2", "relative_position_index_SA"),
                                      ("atd_x2", "relative_position_index_SA"),
                                      ("craft_x4", "relative_position_index_v"),
                                      ("craft_x4", "biases_h")])
def test_refuses_position_indices_it_does_not_define(name: str, key: str) -> None:
    """The stored indices are gathered with at every forward: altered values are not loaded (an index out of
    the table would fail mid-image, a permuted one would silently change the output)."""
    sd = _state(name)
    arch = CASES[name][0]
    assert get_arch(arch).detect(sd) is not None
    for altered in (sd[key] + 10_000, sd[key].flip(0)):
        assert get_arch(arch).detect({**sd, key: altered}) is None


# The official configurations (the HAT, ATD and CRAFT repositories' options/*.yml): built on the meta
# device, their state dicts (with the real index buffers) must be detected back to the same hyper-parameters.
_HAT = dict(embed_dim=180, depths=[6] * 6, num_heads=[6] * 6, window_size=16, compress_ratio=3,
            squeeze_factor=30, mlp_ratio=2.0)
OFFICIAL = [
    ("HAT x4 / Real-HAT-GAN", "hat", dict(_HAT, scale=4)),
    ("HAT x3", "hat", dict(_HAT, scale=3)),
    ("HAT-S x2", "hat", dict(_HAT, scale=2, embed_dim=144, compress_ratio=24, squeeze_factor=24)),
    ("HAT-L x4", "hat", dict(_HAT, scale=4, depths=[6] * 12, num_heads=[6] * 12)),
    ("ATD x4", "atd", dict(scale=4, embed_dim=210, depths=[6] * 6, num_heads=[6] * 6, window_size=16,
                           category_size=256, num_tokens=128, reducted_dim=20, convffn_kernel_size=5,
                           mlp_ratio=2.0, upsampler="pixelshuffle")),
    ("ATD-light x2", "atd", dict(scale=2, embed_dim=48, depths=[6] * 4, num_heads=[4] * 4, window_size=16,
                                 category_size=128, num_tokens=64, reducted_dim=8, convffn_kernel_size=7,
                                 mlp_ratio=1.0, upsampler="pixelshuffledirect")),
    ("CRAFT x3", "craft", dict(scale=3, embed_dim=48, depths=[2] * 4, num_heads=[6] * 4, split_size_0=4,
                               split_size_1=16, mlp_ratio=2.0)),
]


@pytest.mark.parametrize("label,arch,hp", OFFICIAL, ids=[o[0] for o in OFFICIAL])
def test_official_configurations_are_detected_back(label: str, arch: str, hp: dict[str, Any]) -> None:
    with torch.device("meta"):
        net = get_arch(arch).build(**hp)
    sd = dict(net.state_dict())  # meta tensors, but the index buffers are compared by value: real ones
    from superres.archs.craft import rect_offsets
    from superres.archs.hat import overlap_index, overlap_size, window_index

    if arch == "craft":
        sd["biases_h"], sd["relative_position_index_h"] = rect_offsets(hp["split_size_0"], hp["split_size_1"])
        sd["biases_v"], sd["relative_position_index_v"] = rect_offsets(hp["split_size_1"], hp["split_size_0"])
    else:
        sd["relative_position_index_SA"] = window_index(hp["window_size"])
    if arch == "hat":
        ws = hp["window_size"]
        sd["relative_position_index_OCA"] = overlap_index(ws, overlap_size(ws, 0.5))
    found = detect(sd)
    assert found is not None and found[0] == arch, label
    assert {k: found[1][k] for k in hp} == hp


def _broken(case: str) -> dict[str, torch.Tensor]:
    if case == "hat without a tensor":
        gone = "layers.1.residual_group.overlap_attn.proj.weight"
        return {k: v for k, v in _state("hat_x2").items() if k != gone}
    if case == "atd with a wrong dictionary":
        return {**_state("atd_x2"), "layers.0.residual_group.td": torch.zeros(5, 24)}
    return {**_state("craft_x4"), "biases_h": _state("craft_x4")["biases_h"] * 2}


@pytest.mark.parametrize("case", ["hat without a tensor", "atd with a wrong dictionary",
                                  "craft with odd offsets"])
def test_a_damaged_checkpoint_is_one_line_and_writes_nothing(tmp_path: Path, data_dir: Path,
                                                             case: str) -> None:
    src, dst, weights = tmp_path / "in.png", tmp_path / "out.png", tmp_path / "damaged.pth"
    _photo(data_dir, (30, 22)).save(src)
    torch.save(_broken(case), weights)
    res = runner.invoke(app, ["upscale", str(src), "-o", str(dst), "-m", str(weights)])
    assert res.exit_code == 2 and "Traceback" not in res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and str(weights) in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["damaged.pth", "in.png"]


@pytest.mark.parametrize("name", sorted(CASES))
def test_descriptor_states_window_tiling_and_licence(name: str) -> None:
    arch, want = CASES[name]
    net, _ = load_network(FIXTURES / f"{name}.pth")
    d = net.descriptor
    assert d.tiling == "discouraged" and d.receptive_field is None
    assert d.size_multiple == want.get("window_size", d.size_multiple) and d.size_multiple > 1
    spec = get_arch(arch)
    assert spec.licence == "Apache-2.0" and spec.noncommercial is False


def _photo(data_dir: Path, size: tuple[int, int]) -> Image.Image:
    lr = data_dir / "Set5" / "LR_bicubic" / "X4" / "butterflyx4.png"
    return Image.open(lr).convert("RGB").crop((0, 0, *size))


@pytest.mark.parametrize("name", sorted(CASES))
def test_upscales_through_the_cli_from_pth_and_safetensors(tmp_path: Path, data_dir: Path, name: str) -> None:
    """A user's .pth and the same weights as .safetensors give the same image, padded windows and all."""
    src = tmp_path / "in.png"
    _photo(data_dir, (30, 22)).save(src)  # neither side a multiple of the window (8)
    st = tmp_path / f"{name}.safetensors"
    save_file({k: v.contiguous() for k, v in _state(name).items()}, str(st))
    outs = []
    for weights in (FIXTURES / f"{name}.pth", st):
        dst = tmp_path / f"{weights.suffix[1:]}.png"
        res = runner.invoke(app, ["upscale", str(src), "-o", str(dst), "-m", str(weights), "--device", "cpu"])
        assert res.exit_code == 0, res.output
        outs.append(np.asarray(Image.open(dst)))
    s = CASES[name][1]["scale"]
    assert outs[0].shape == (22 * s, 30 * s, 3)
    assert np.array_equal(outs[0], outs[1])


def test_hat_keeps_alpha_and_16_bits_and_reports_quality(tmp_path: Path, data_dir: Path,
                                                         weights_dir: Path) -> None:
    """The fixture's weights are random, so alpha goes the bicubic way here (through the model, it would be
    noise); the colour still runs the HAT network."""
    from superres.io.image import from_array, read_image, write_image

    # NIQE needs two 96x96 blocks of output: 200 x 112
    rgb = np.asarray(_photo(data_dir, (100, 56)), np.float64) / 255.0
    alpha = np.linspace(0.2, 1.0, 100)[None, :].repeat(56, 0)[..., None]
    deep = np.round(np.concatenate([rgb, alpha], axis=2) * 65535).astype(np.uint16)
    src = tmp_path / "deep.png"
    write_image(from_array(deep), src)
    dst, report = tmp_path / "out.png", tmp_path / "r.json"
    res = runner.invoke(app, ["upscale", str(src), "-o", str(dst), "-m", str(FIXTURES / "hat_x2.pth"),
                              "--device", "cpu", "--report", str(report), "--alpha", "bicubic",
                              "--niqe-params", str(weights_dir / "niqe" / "niqe_pris_params.npz")])
    assert res.exit_code == 0, res.output
    out = read_image(dst)
    assert out.bit_depth == 16 and out.size == (200, 112) and out.alpha is not None
    assert abs(float(out.alpha[:, 0].mean()) - 0.2) < 0.02 and float(out.alpha[:, -1].mean()) > 0.98
    img = json.loads(report.read_text())["images"][0]
    assert img["niqe"] is not None and img["bicubic_niqe"] is not None


@pytest.mark.parametrize("name", ["hat_x2", "atd_x2", "craft_x4"])
def test_exports_to_onnx_and_runs_like_torch(tmp_path: Path, data_dir: Path, name: str) -> None:
    """``superres export`` then the ONNX Runtime backend (which pads to the window multiple the export
    records) writes the image the torch backend writes. For ATD this needs the category grouping traced
    without size-dependent branches and a sort whose ties cannot differ between runtimes."""
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from superres.deploy.export import read_metadata

    onnx_file = tmp_path / f"{name}.onnx"
    res = runner.invoke(app, ["export", str(FIXTURES / f"{name}.pth"), str(onnx_file)])
    assert res.exit_code == 0, res.output
    meta = read_metadata(onnx_file)
    assert meta["arch"] == CASES[name][0]
    assert meta["size_multiple"] == str(CASES[name][1].get("window_size", 8))
    src = tmp_path / "in.png"
    _photo(data_dir, (30, 22)).save(src)
    outs = {}
    for backend, model in (("torch", FIXTURES / f"{name}.pth"), ("onnxruntime", onnx_file)):
        dst = tmp_path / f"{backend}.png"
        res = runner.invoke(app, ["upscale", str(src), "-o", str(dst), "-m", str(model),
                                  "--backend", backend])
        assert res.exit_code == 0, res.output
        outs[backend] = np.asarray(Image.open(dst), np.int16)
    s = CASES[name][1]["scale"]
    assert outs["torch"].shape == outs["onnxruntime"].shape == (22 * s, 30 * s, 3)
    assert np.abs(outs["torch"] - outs["onnxruntime"]).max() <= 1
