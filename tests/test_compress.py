"""Compression: structured pruning keeps networks working and exact where it must, distillation learns, and
the shipped distilled model loads by name. Tiny networks and patches only (fast on two cores)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from superres import load_model
from superres.archs import build
from superres.cli import app
from superres.compress.distill import (
    distill,
    load_pairs,
    make_student,
    prepare_pairs,
    sample_batch,
    save_model,
)
from superres.archs.cost import count_macs, count_params
from superres.compress.prune import kept_channels, prune
from superres.errors import SuperresError

runner = CliRunner()

TINY = {
    "srvgg": {"in_channels": 3, "out_channels": 3, "num_feat": 12, "num_conv": 3, "scale": 4, "act": "prelu"},
    "espcn": {"channels": 3, "scale": 3, "n1": 12, "n2": 8},
    "fsrcnn": {"channels": 1, "scale": 3, "d": 12, "s": 6, "m": 2, "upsampler": "deconv"},
    "fsrcnn-subpixel": {"channels": 1, "scale": 2, "d": 12, "s": 6, "m": 2, "upsampler": "subpixel"},
}


OUTPUT_CONV = {  # the layer whose output channels are fixed by the image channels and scale
    "srvgg": lambda n: n.body[-1],
    "espcn": lambda n: n.conv3,
    "fsrcnn": lambda n: n.deconv,
    "fsrcnn-subpixel": lambda n: n.conv6,
}


def _tiny(key: str) -> torch.nn.Module:
    torch.manual_seed(0)
    net = build(key.split("-")[0], **TINY[key]).eval()
    with torch.no_grad():  # non-trivial biases and PReLU slopes, so a wrong index would show
        for p in net.parameters():
            if p.ndim == 1:
                p.uniform_(-0.3, 0.3)
    return net


def _input(net: torch.nn.Module) -> torch.Tensor:
    hp = net.hyperparams
    c = int(hp.get("in_channels", hp.get("channels", 3)))
    return torch.rand(1, c, 10, 11, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("key", list(TINY))
def test_ratio_zero_is_an_exact_copy(key: str) -> None:
    net = _tiny(key)
    same = prune(net, 0.0)
    assert same.hyperparams == net.hyperparams
    x = _input(net)
    with torch.no_grad():
        assert torch.equal(same(x), net(x))


@pytest.mark.parametrize("key", list(TINY))
def test_pruning_all_zero_filters_leaves_the_output_unchanged(key: str) -> None:
    net = _tiny(key)
    with torch.no_grad():  # zero half of every prunable layer's filters (weights and bias)
        for name, mod in net.named_modules():
            is_out = mod is OUTPUT_CONV[key](net)
            if isinstance(mod, torch.nn.Conv2d) and not is_out:
                n = mod.out_channels
                dead = torch.arange(0, n, 2)[: n - kept_channels(n, 0.5)]
                mod.weight[dead] = 0
                mod.bias[dead] = 0
    x = _input(net)
    small = prune(net, 0.5)
    with torch.no_grad():
        torch.testing.assert_close(small(x), net(x), rtol=0, atol=1e-6)


def test_srvgg_channel_counts_and_reduction() -> None:
    net = _tiny("srvgg")
    small = prune(net, 0.5)
    assert small.hyperparams["num_feat"] == 6 and small.hyperparams["num_conv"] == 3
    assert small.body[0].weight.shape == (6, 3, 3, 3)
    assert all(m.weight.shape == (6, 6, 3, 3) for m in list(small.body)[2:-1:2])
    assert small.body[1].weight.shape == (6,)  # PReLU slopes pruned with their channels
    assert small.body[-1].weight.shape == (48, 6, 3, 3)  # output keeps 3 * 4^2 channels
    def params(w: int) -> int:  # first conv, 3 body convs, output conv; each conv + bias (+ PReLU slopes)
        return (27 * w + 2 * w) + 3 * (9 * w * w + 2 * w) + (9 * w * 48 + 48)

    assert (count_params(net), count_params(small)) == (params(12), params(6))
    assert count_params(small) < 0.45 * count_params(net)
    assert count_macs(small, 16, 16) < 0.45 * count_macs(net, 16, 16)
    y = small(_input(small))
    assert y.shape == (1, 3, 40, 44) and torch.isfinite(y).all()


def test_espcn_and_fsrcnn_channel_counts() -> None:
    e = prune(_tiny("espcn"), 0.25)
    assert (e.hyperparams["n1"], e.hyperparams["n2"]) == (9, 6)
    assert e.conv2.weight.shape == (6, 9, 3, 3) and e.conv3.weight.shape == (27, 6, 3, 3)
    f = prune(_tiny("fsrcnn"), 0.5)
    assert (f.hyperparams["d"], f.hyperparams["s"]) == (6, 3)
    assert f.deconv.weight.shape == (6, 1, 9, 9) and f.prelu3.weight.shape == (3,)
    assert f(torch.rand(1, 1, 8, 8)).shape == (1, 1, 24, 24)


def test_macs_match_the_formula() -> None:
    net = _tiny("srvgg")  # 3->12, 3 x 12->12, 12->48, all 3x3, at every LR pixel
    per_px = 9 * (3 * 12 + 3 * 12 * 12 + 12 * 48)
    assert count_macs(net, 8, 8) == 64 * per_px


@pytest.mark.parametrize("ratio", [1.0, -0.1, 1.5])
def test_bad_ratio_is_a_clear_error(ratio: float) -> None:
    with pytest.raises(SuperresError, match=r"ratio must be in \[0, 1\)"):
        prune(_tiny("espcn"), ratio)


def test_unprunable_architecture_is_a_clear_error() -> None:
    net = build("srcnn", channels=1, n1=8, n2=4)
    with pytest.raises(SuperresError, match="cannot prune a srcnn network; prunable"):
        prune(net, 0.5)


def _write_pairs(root: Path, n: int = 3, size: int = 20) -> Path:
    """A synthetic pair cache whose target is a fixed, learnable function of the LR (blurred nearest x4)."""
    (root / "lr").mkdir(parents=True)
    (root / "teacher").mkdir()
    g = torch.Generator().manual_seed(3)
    for i in range(n):
        lr = torch.nn.functional.avg_pool2d(torch.rand(1, 3, size + 2, size + 2, generator=g), 3, 1)
        sr = torch.nn.functional.interpolate(lr, scale_factor=4, mode="bicubic", align_corners=False)
        for d, t in (("lr", lr), ("teacher", sr)):
            arr = t[0].clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).numpy()
            Image.fromarray(arr).save(root / d / f"p{i}.png")
    return root


def test_distillation_reduces_the_loss(tmp_path: Path) -> None:
    pairs = load_pairs(_write_pairs(tmp_path / "cache"))
    assert len(pairs) == 3
    x, y = sample_batch(pairs, 4, 12, torch.Generator().manual_seed(0))
    assert x.shape == (4, 3, 12, 12) and y.shape == (4, 3, 48, 48)
    student = make_student("scratch", num_feat=8, num_conv=2, seed=0)
    res = distill(student, pairs, iterations=60, batch=4, patch=12, lr=2e-3, seed=0)
    assert res.iterations == 60
    assert res.last_loss < 0.7 * res.first_loss
    st, js = save_model(student, tmp_path / "out", "tiny-student", {"title": "t", "licence": "x", "source": "test"})
    up = load_model(str(st), device="cpu")
    assert up.descriptor.hyperparams["num_feat"] == 8
    assert json.loads(js.read_text())["arch"] == "srvgg"


def test_distillation_checkpoints_the_student_while_it_trains(tmp_path: Path) -> None:
    """A crash mid-run loses at most checkpoint_every iterations: the saved student loads and equals the
    student as it was at that iteration."""
    from superres.compress.distill import save_student

    pairs = load_pairs(_write_pairs(tmp_path / "cache"))
    student = make_student("scratch", num_feat=8, num_conv=2, seed=0)
    saved: dict[int, dict[str, torch.Tensor]] = {}

    def checkpoint(it: int) -> None:
        save_student(student, tmp_path / "s.partial.safetensors", "s", {"iteration": str(it)})
        saved[it] = {k: v.clone() for k, v in student.state_dict().items()}

    distill(student, pairs, iterations=25, batch=2, patch=12, lr=2e-3, seed=0, checkpoint=checkpoint,
            checkpoint_every=10)
    assert sorted(saved) == [10, 20]
    from superres.zoo.loader import load_network

    net, _ = load_network(str(tmp_path / "s.partial.safetensors"))
    for k, v in net.state_dict().items():
        assert torch.equal(v, saved[20][k]), k
    assert not list(tmp_path.glob(".*tmp*"))  # written atomically: no temporary file left


def test_distill_needs_a_budget(tmp_path: Path) -> None:
    pairs = load_pairs(_write_pairs(tmp_path / "cache", n=1))
    with pytest.raises(SuperresError, match="iterations or max_time"):
        distill(make_student("scratch", num_feat=4, num_conv=1), pairs)


def test_prepare_pairs_is_seeded_and_resumable(tmp_path: Path, data_dir: Path) -> None:
    """Two tiny HR crops (32x32 -> 8x8 LR) through the real degradation and teacher."""
    hr = tmp_path / "Tiny" / "HR"
    hr.mkdir(parents=True)
    src = Image.open(data_dir / "Set5" / "HR" / "baby.png").convert("RGB")
    for i in range(2):
        src.crop((100 * i, 100, 100 * i + 32, 132)).save(hr / f"c{i}.png")
    m = prepare_pairs(tmp_path / "cache", [hr], variants=1, seed=7)
    assert m["pairs"] == 2 and m["made_this_call"] == 2
    lr = np.asarray(Image.open(tmp_path / "cache" / "lr" / "Tiny_c0_v0.png"))
    sr = np.asarray(Image.open(tmp_path / "cache" / "teacher" / "Tiny_c0_v0.png"))
    assert lr.shape == (8, 8, 3) and sr.shape == (32, 32, 3)
    again = prepare_pairs(tmp_path / "cache2", [hr], variants=1, seed=7)
    assert again["pairs"] == 2
    assert np.array_equal(np.asarray(Image.open(tmp_path / "cache2" / "lr" / "Tiny_c0_v0.png")), lr)
    assert prepare_pairs(tmp_path / "cache", [hr], variants=1, seed=7)["made_this_call"] == 0


def test_shipped_compact_model_loads_and_upscales() -> None:
    up = load_model("superres-compact-x4", device="cpu")
    assert up.descriptor.arch == "srvgg" and up.scale == 4
    card = up.card
    assert card is not None and "animevideov3" in card.training["init"] and "BSD-3" in card.licence
    assert card.metrics, "the card records the measured figures"
    img = (np.random.default_rng(0).random((16, 20, 3)) * 255).astype(np.uint8)
    out = up.upscale(img)
    assert out.shape == (64, 80, 3) and out.dtype == np.uint8


def test_unknown_model_is_a_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(SuperresError, match="unknown model 'no-such-model'"):
        load_model("no-such-model")
    r = runner.invoke(app, ["prune", "no-such-model", "-o", str(tmp_path / "p.safetensors")])
    assert r.exit_code != 0
    assert "unknown model 'no-such-model'" in r.output and "Traceback" not in r.output


def test_cli_prune_writes_a_smaller_loadable_model(tmp_path: Path) -> None:
    net = _tiny("espcn")
    st, _ = save_model(net, tmp_path, "tiny-espcn", {"title": "t", "licence": "x", "source": "test"})
    bad = runner.invoke(app, ["prune", str(st), "--ratio", "1.2", "-o", str(tmp_path / "p.safetensors")])
    assert bad.exit_code != 0 and "ratio must be in [0, 1)" in bad.output
    assert not (tmp_path / "p.safetensors").exists()
    r = runner.invoke(app, ["prune", str(st), "--ratio", "0.5", "-o", str(tmp_path / "p.safetensors")])
    assert r.exit_code == 0, r.output
    up = load_model(str(tmp_path / "p.safetensors"), device="cpu")
    assert (up.descriptor.hyperparams["n1"], up.descriptor.hyperparams["n2"]) == (6, 4)
