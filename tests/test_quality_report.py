"""The quality gate in ``superres upscale``: broken weights and noise inputs are flagged and fall back;
real images pass; the report says what was written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from superres.cli import app
from superres.inference.report import GateRules, Guard, bicubic_upscale_image, heatmap
from superres.inference.upscaler import UpscaleOptions
from superres.loading import load_model
from superres.io.image import from_array, read_image

runner = CliRunner()


@pytest.fixture()
def niqe_env(weights_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    p = weights_dir / "niqe" / "niqe_pris_params.npz"
    monkeypatch.setenv("SUPERRES_NIQE_PARAMS", str(p))
    return p


@pytest.fixture(scope="module")
def broken_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """edsr-baseline-x4 with every weight replaced by seeded noise of the same scale (a corrupted download)."""
    from safetensors.torch import save_file

    from superres.zoo.formats import read_weights_file
    from superres.zoo.registry import get_card, resolve_weights

    sd, _ = read_weights_file(resolve_weights(get_card("edsr-baseline-x4")))
    g = torch.Generator().manual_seed(0)
    bad = {k: (torch.randn(v.shape, generator=g) * v.float().std().clamp(min=1e-3)).contiguous()
           if v.ndim > 1 else v.clone().contiguous() for k, v in sd.items()}
    path = tmp_path_factory.mktemp("broken") / "broken-edsr.safetensors"
    save_file(bad, str(path))
    return path


def _corner(data_dir: Path, folder: Path, name: str = "bird.png") -> Path:
    """A 64x64 LR crop of Set5 bird (x4 -> 256x256: four NIQE blocks after the border crop)."""
    lr = np.asarray(Image.open(data_dir / "Set5" / "LR_bicubic" / "X4" / "birdx4.png").convert("RGB"))
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(lr[4:68, 4:68]).save(folder / name)
    return folder / name


def _noise(folder: Path, name: str = "noise.png") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(folder / name)
    return folder / name


def test_broken_weights_are_flagged_and_the_bicubic_fallback_is_written(
        niqe_env: Path, broken_weights: Path, data_dir: Path, tmp_path: Path) -> None:
    src = _corner(data_dir, tmp_path / "in")
    out, rep, unc = tmp_path / "out.png", tmp_path / "report.json", tmp_path / "unc"
    r = runner.invoke(app, ["upscale", str(src), "-o", str(out), "-m", str(broken_weights), "--device", "cpu",
                            "--self-ensemble", "--report", str(rep), "--fallback", "bicubic",
                            "--uncertainty-dir", str(unc)])
    assert r.exit_code == 0, r.output
    [img] = json.loads(rep.read_text())["images"]
    assert img["flagged"] and img["fallback_used"] and img["written"] == "bicubic"
    assert img["niqe"] > img["bicubic_niqe"] + 1 and img["uncertainty_p99"] > 12
    expected = bicubic_upscale_image(read_image(src), (256, 256)).color
    assert np.array_equal(np.asarray(Image.open(out)), expected)  # the fallback, not the garbage
    assert Image.open(unc / "out_uncertainty.png").size == (256, 256)
    assert "flagged" in r.output


def test_batch_flags_only_the_noise_input_and_reruns_it_with_the_fallback_model(
        niqe_env: Path, data_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    _corner(data_dir, folder, "bird.png")
    _noise(folder, "noise.png")
    out, rep = tmp_path / "out", tmp_path / "report.json"
    r = runner.invoke(app, ["upscale", str(folder), "-o", str(out), "-m", "edsr-baseline-x4", "--device", "cpu",
                            "--self-ensemble", "--report", str(rep), "--fallback", "espcn-s-x4"])
    assert r.exit_code == 0, r.output
    body = json.loads(rep.read_text())
    by_name = {Path(i["input"]).name: i for i in body["images"]}
    assert body["flagged"] == 1
    assert not by_name["bird.png"]["flagged"] and by_name["bird.png"]["written"] == "model"
    assert by_name["bird.png"]["niqe_margin"] > -1 and by_name["bird.png"]["uncertainty_p99"] < 12
    noise = by_name["noise.png"]
    assert noise["flagged"] and noise["fallback_used"] and noise["written"] == "espcn-s-x4" and noise["reasons"]
    espcn = load_model("espcn-s-x4", device="cpu", options=UpscaleOptions(tile=0))
    expected = espcn.upscale_image(read_image(folder / "noise.png")).color
    assert np.array_equal(np.asarray(Image.open(out / "noise.png")), expected)


def test_without_the_niqe_model_the_report_is_refused_before_anything_is_written(
        data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUPERRES_NIQE_PARAMS", str(tmp_path / "absent.npz"))
    src = _corner(data_dir, tmp_path / "in")
    out = tmp_path / "out.png"
    r = runner.invoke(app, ["upscale", str(src), "-o", str(out), "-m", "espcn-s-x4", "--device", "cpu",
                            "--report", str(tmp_path / "r.json")])
    assert r.exit_code == 2 and "needs NIQE" in r.output and "Traceback" not in r.output
    assert not out.exists() and not (tmp_path / "r.json").exists()


def test_an_uncertainty_map_needs_an_ensemble(tmp_path: Path, data_dir: Path) -> None:
    src = _corner(data_dir, tmp_path / "in")
    r = runner.invoke(app, ["upscale", str(src), "-o", str(tmp_path / "o.png"), "-m", "espcn-s-x4",
                            "--device", "cpu", "--uncertainty-dir", str(tmp_path / "u")])
    assert r.exit_code == 2 and "needs an ensemble" in r.output


def test_gate_without_ensemble_uses_niqe_only(niqe_env: Path, broken_weights: Path, data_dir: Path,
                                              tmp_path: Path) -> None:
    up = load_model(broken_weights, device="cpu", options=UpscaleOptions(tile=0))
    guard = Guard(up, rules=GateRules(), fallback="bicubic")
    img = read_image(_corner(data_dir, tmp_path))
    out, rep, unc = guard.upscale_image(img, source="bird")
    assert unc is None and rep.uncertainty_p99 is None and rep.ensemble == "none"
    assert rep.flagged and rep.written == "bicubic" and "NIQE" in rep.reasons[0]
    assert json.dumps(rep.to_dict(), allow_nan=False)


def test_heatmap_scale_is_fixed_not_per_image() -> None:
    low = heatmap(np.full((2, 2), 1 / 255.0))
    high = heatmap(np.full((2, 2), 50 / 255.0))
    assert low.shape == (2, 2, 3) and low.dtype == np.uint8
    assert low.sum() < high.sum() and tuple(high[0, 0]) == (252, 255, 164)  # saturated above vmax
    assert from_array(low).color.shape == (2, 2, 3)


def test_batch_command_and_the_ray_actor_apply_the_same_gate(niqe_env: Path, broken_weights: Path,
                                                             data_dir: Path, tmp_path: Path) -> None:
    """`superres batch` (local engine) writes the report; the Ray actor (called directly: Ray itself is an
    optional extra) returns the same verdict for the same image in its ``quality`` column."""
    from superres.cluster.ray_batch import UpscaleActor

    folder = tmp_path / "in"
    src = _corner(data_dir, folder, "bird.png")
    out, rep = tmp_path / "out", tmp_path / "report.json"
    r = runner.invoke(app, ["batch", str(folder), str(out), "-m", str(broken_weights), "--device", "cpu",
                            "--self-ensemble", "--report", str(rep), "--fallback", "bicubic"])
    assert r.exit_code == 0, r.output
    [local] = json.loads(rep.read_text())["images"]
    assert local["flagged"] and local["written"] == "bicubic"
    actor = UpscaleActor(str(broken_weights), str(tmp_path / "ray"), device="cpu",
                         guard={"self_ensemble": True, "fallback": "bicubic",
                                "uncertainty_dir": tmp_path / "unc"})
    row = actor({"src": [str(src)], "rel": ["bird.png"]})
    assert row["error"][0] == ""
    remote = json.loads(row["quality"][0])
    assert remote["flagged"] and remote["written"] == "bicubic"
    assert remote["uncertainty_p99"] == pytest.approx(local["uncertainty_p99"])
    ray_out, local_out = Image.open(tmp_path / "ray" / "bird.png"), Image.open(out / "bird.png")
    assert np.array_equal(np.asarray(ray_out), np.asarray(local_out))
    assert (tmp_path / "unc" / "bird_uncertainty.png").exists()
