"""Training framework: recipes and their errors, exact resume, DDP equivalence, crash safety, publishing.

Everything runs tiny networks on tiny synthetic images (fixed seeds) so the whole file takes seconds on
two cores; the real recipes in configs/ are only parsed here.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from safetensors.torch import load_file

from superres.errors import DatasetError, SuperresError
from superres.train.checkpoint import CheckpointError, list_checkpoints, load_checkpoint
from superres.train.config import (
    ConfigError,
    ScheduleSection,
    apply_overrides,
    config_from_dict,
    load_config,
    parse_overrides,
)
from superres.train.schedule import EMA, lr_at
from superres.train.trainer import train

REPO = Path(__file__).resolve().parents[1]


def _images(folder: Path, n: int, size: tuple[int, int], seed: int = 0) -> Path:
    """Smooth random colour images (low-frequency noise upsampled) so the networks have something to learn."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        small = rng.integers(0, 256, (size[0] // 4 + 1, size[1] // 4 + 1, 3), dtype=np.uint8)
        img = Image.fromarray(small).resize((size[1] + 4, size[0] + 4), Image.BICUBIC).crop((0, 0, size[1], size[0]))
        img.save(folder / f"img{i:02d}.png")
    return folder


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("train-data")
    _images(root / "A" / "HR", 6, (40, 48), seed=1)
    _images(root / "B" / "HR", 3, (36, 36), seed=2)
    _images(root / "val", 2, (32, 32), seed=3)
    return root


def _cfg(data: Path, **over: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "name": "tiny",
        "model": {"arch": "espcn", "hyperparams": {"channels": 3, "n1": 8, "n2": 8, "f1": 3,
                                                    "activation": "tanh", "final": "none"}},
        "data": {"scale": 2, "train": [{"hr": str(data / "A" / "HR")}, {"hr": str(data / "B" / "HR")}],
                 "patch_size": 8},
        "optim": {"lr": 1e-3},
        "schedule": {"name": "cosine", "warmup_iters": 3},
        "train": {"iterations": 20, "batch_size": 4, "checkpoint_every": 10, "val_every": 0, "log_every": 5,
                  "ema_decay": 0.9, "grad_clip": 1.0, "seed": 3, "threads": 1},
        "val": {"dataset": str(data / "val")},
    }
    for key, value in over.items():
        cfg = apply_overrides(cfg, [(key.split("__"), value)])
    return cfg


def _weights(run: Path, name: str = "generator") -> dict[str, torch.Tensor]:
    _, weights, _ = load_checkpoint(run)
    return weights[name]


# ---- recipes and their errors ------------------------------------------------------------------------------


def test_typo_names_the_key_and_suggests_the_right_one(tiny_data: Path) -> None:
    with pytest.raises(ConfigError) as e:
        config_from_dict(_cfg(tiny_data, train__batch_sise=8))
    msg = str(e.value)
    assert "train.batch_sise" in msg and "did you mean 'batch_size'" in msg
    with pytest.raises(ConfigError, match=r"unknown key 'modle' at the top level; did you mean 'model'"):
        config_from_dict({**_cfg(tiny_data), "modle": {}})
    with pytest.raises(ConfigError, match=r"'data.train.0.hrr'.*did you mean 'hr'"):
        config_from_dict(_cfg(tiny_data, data__train__0__hrr="x"))


def test_bad_value_types_name_the_key(tiny_data: Path) -> None:
    with pytest.raises(ConfigError, match=r"'train.iterations': .*integer.*'many'"):
        config_from_dict(_cfg(tiny_data, train__iterations="many"))
    with pytest.raises(ConfigError, match=r"'schedule.name': .*'cosine'.*'linear'"):
        config_from_dict(_cfg(tiny_data, schedule__name="linear"))
    with pytest.raises(ConfigError, match=r"'train.ema_decay'"):
        config_from_dict(_cfg(tiny_data, train__ema_decay=1.5))
    with pytest.raises(ConfigError, match=r"differs from data.scale"):
        config_from_dict(_cfg(tiny_data, model__hyperparams__scale=4))


def test_overrides_parse_yaml_values_and_index_lists() -> None:
    parsed = parse_overrides(["train.batch_size=8", "optim.lr=1e-4", "train.amp=bf16", "val.dataset=null",
                              "schedule.milestones=[10, 20]", "loss.0.weight=0.5"])
    assert parsed == [(["train", "batch_size"], 8), (["optim", "lr"], 1e-4), (["train", "amp"], "bf16"),
                      (["val", "dataset"], None), (["schedule", "milestones"], [10, 20]),
                      (["loss", "0", "weight"], 0.5)]
    out = apply_overrides({"loss": [{"name": "l1"}], "train": {"iterations": 5}}, parsed)
    assert out["loss"][0]["weight"] == 0.5 and out["train"]["batch_size"] == 8 and out["train"]["iterations"] == 5
    with pytest.raises(ConfigError, match="section.key=value"):
        parse_overrides(["train.batch_size"])
    with pytest.raises(ConfigError, match="index below 1"):
        apply_overrides({"loss": [{"name": "l1"}]}, parse_overrides(["loss.3.weight=1"]))


def test_every_recipe_in_configs_validates(tmp_path: Path) -> None:
    recipes = sorted((REPO / "configs").glob("*.yaml"))
    assert len(recipes) >= 16
    for path in recipes:
        cfg = load_config(path, ["train.batch_size=8"], data_root=tmp_path)
        assert cfg.train.batch_size == 8 and cfg.name == path.stem
        assert all(not t.hr.startswith("${") for t in cfg.data.train)  # placeholders substituted
        from superres.archs import build

        hp = {**cfg.model.hyperparams, "scale": cfg.data.scale}
        assert build(cfg.model.arch, **hp).scale == cfg.data.scale


def test_missing_folder_and_small_images_fail_before_any_compute(tiny_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "runs"
    cfg = config_from_dict(_cfg(tiny_data, data__train=[{"hr": str(tmp_path / "nowhere")}]))
    with pytest.raises(DatasetError, match="nowhere"):
        train(cfg, out=out)
    small = _images(tmp_path / "small", 2, (12, 40))
    cfg = config_from_dict(_cfg(tiny_data, data__train=[{"hr": str(small)}]))
    with pytest.raises(DatasetError, match=r"img00.png.*smaller than the HR crop of 16x16"):
        train(cfg, out=out)
    cfg = config_from_dict(_cfg(tiny_data, data__train=[{"hr": str(small)}], data__small_images="skip"))
    with pytest.raises(SuperresError, match="no training image is at least 16x16"):
        train(cfg, out=out)
    cfg = config_from_dict(_cfg(tiny_data, model__arch="espnc"))
    with pytest.raises(SuperresError, match="did you mean 'espcn'"):
        train(cfg, out=out)
    cfg = config_from_dict(_cfg(tiny_data, model__hyperparams__n3=4))
    with pytest.raises(SuperresError, match="'n3' is not a parameter of espcn"):
        train(cfg, out=out)
    assert not out.exists()  # nothing was written: no run folder, no checkpoint


def test_small_images_skip_applies_to_paired_sets_too(tiny_data: Path, tmp_path: Path) -> None:
    """A paired set (LR written beforehand, e.g. by scripts/train_zoo.py) drops small images like an HR one."""
    from superres.resize import bicubic_degrade

    hr = _images(tmp_path / "P" / "HR", 3, (40, 48), seed=5)
    _images(hr, 1, (12, 40), seed=6)  # overwrites img00 with a 12x40 image, below the 16x16 HR crop
    lr = tmp_path / "P" / "LR"
    lr.mkdir()
    for f in sorted(hr.iterdir()):
        Image.fromarray(bicubic_degrade(np.asarray(Image.open(f).convert("RGB")), 2)).save(lr / f"{f.stem}x2.png")
    paired = [{"hr": str(hr), "lr": str(lr)}]
    with pytest.raises(DatasetError, match="img00.png.*smaller than the HR crop"):
        train(config_from_dict(_cfg(tiny_data, data__train=paired)), out=tmp_path / "runs")
    cfg = config_from_dict(_cfg(tiny_data, data__train=paired, data__small_images="skip", train__iterations=2,
                                train__checkpoint_every=2))
    result = train(cfg, out=tmp_path / "runs", name="paired")
    assert result.finished


def test_cli_typo_is_one_line_with_exit_2(tiny_data: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from superres.cli import app

    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(yaml.safe_dump(_cfg(tiny_data)))
    r = CliRunner().invoke(app, ["train", str(recipe), "train.batch_sise=8", "--out", str(tmp_path / "runs")])
    assert r.exit_code == 2, r.output
    assert "did you mean 'batch_size'" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(app, ["train", str(recipe), "train.batch_size=6", "--print-config"])
    assert r.exit_code == 0, r.output
    assert yaml.safe_load(r.output)["train"]["batch_size"] == 6


# ---- schedules and EMA --------------------------------------------------------------------------------------


def test_schedule_values_on_known_cases() -> None:
    cos = ScheduleSection(name="cosine", warmup_iters=10, min_lr=0.0)
    assert lr_at(0, 1.0, cos, 110) == pytest.approx(0.1)
    assert lr_at(9, 1.0, cos, 110) == pytest.approx(1.0)
    assert lr_at(10, 1.0, cos, 110) == pytest.approx(1.0)
    assert lr_at(60, 1.0, cos, 110) == pytest.approx(0.5)
    assert lr_at(110, 1.0, cos, 110) == pytest.approx(0.0, abs=1e-12)
    ms = ScheduleSection(name="multistep", milestones=[100, 200], gamma=0.5)
    assert [lr_at(i, 2e-4, ms, 300) for i in (0, 99, 100, 199, 200)] == pytest.approx([2e-4, 2e-4, 1e-4, 1e-4, 5e-5])
    assert lr_at(5, 3.0, ScheduleSection(), 10) == 3.0


def test_ema_on_known_values() -> None:
    net = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        net.weight.fill_(0.0)
    ema = EMA(net, 0.5, warmup=False)
    for value in (1.0, 1.0, 3.0):
        with torch.no_grad():
            net.weight.fill_(value)
        ema.update(net)
    # 0 -> 0.5 -> 0.75 -> 1.875
    assert ema.shadow["weight"].item() == pytest.approx(1.875)
    warm = EMA(net, 0.999)
    assert warm.current_decay() == pytest.approx(0.1)  # (1 + 0) / (10 + 0): early updates follow the weights
    copy = torch.nn.Linear(1, 1, bias=False)
    ema.copy_to(copy)
    assert copy.weight.item() == pytest.approx(1.875)


# ---- runs -----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def full_run(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The uninterrupted 20-iteration reference run (validated at the end)."""
    out = tmp_path_factory.mktemp("runs")
    result = train(config_from_dict(_cfg(tiny_data)), out=out, name="full")
    assert result.finished and result.stopped == "finished" and "psnr_y" in result.metrics
    return result.run_dir


def test_resume_from_iteration_10_matches_the_uninterrupted_run(full_run: Path, tiny_data: Path,
                                                                tmp_path: Path) -> None:
    first = train(config_from_dict(_cfg(tiny_data)), out=tmp_path, name="split", stop_after=10)
    assert first.iteration == 10 and not first.finished
    assert [p.name for p in list_checkpoints(first.run_dir)] == ["iter_00000010"]
    # the second half runs with a data worker process: batches do not depend on the loader's state
    cfg2 = config_from_dict(_cfg(tiny_data, data__workers=1))
    second = train(cfg2, resume=first.run_dir)
    assert second.iteration == 20 and second.finished and second.run_dir == first.run_dir
    assert second.metrics["iteration"] == 20  # the validation reported is the one made at the end
    for name in ("generator", "ema"):
        a, b = _weights(full_run, name), _weights(first.run_dir, name)
        for k in a:
            torch.testing.assert_close(b[k], a[k], rtol=0, atol=1e-6, msg=f"{name}.{k}")
    _, _, sa = load_checkpoint(full_run)
    _, _, sb = load_checkpoint(first.run_dir)
    assert sa["optimizer"]["state"][0]["step"] == sb["optimizer"]["state"][0]["step"] == 20
    saved = yaml.safe_load((first.run_dir / "config.yaml").read_text())
    assert saved["train"]["iterations"] == 20 and saved["val"]["dataset"] == str(tiny_data / "val")
    tb = list((first.run_dir / "tb").glob("events.*"))
    import importlib.util

    if importlib.util.find_spec("tensorboard") is not None:  # optional: the train extra installs it
        assert tb, "TensorBoard events were not written"


def test_corrupt_checkpoint_is_a_clear_error(full_run: Path, tmp_path: Path) -> None:
    import shutil

    run = tmp_path / "copy"
    shutil.copytree(full_run, run)
    newest = list_checkpoints(run)[-1]
    good = (newest / "generator.safetensors").read_bytes()
    blob = bytearray(good)
    blob[-3] ^= 0xFF
    (newest / "generator.safetensors").write_bytes(bytes(blob))
    with pytest.raises(CheckpointError, match=r"iter_00000020' is corrupt: generator.safetensors does not match"
                                              r".*older checkpoints to resume from instead: iter_00000010"):
        train(resume=run)
    (newest / "generator.safetensors").write_bytes(good)
    (newest / "state.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match="state.pt has 0 bytes"):
        load_checkpoint(newest)
    (newest / "manifest.json").unlink()
    with pytest.raises(CheckpointError, match="manifest.json is missing"):
        load_checkpoint(newest)
    with pytest.raises(CheckpointError, match="has no checkpoints"):
        train(resume=tmp_path)


def test_time_budget_stops_with_a_checkpoint(tiny_data: Path, tmp_path: Path) -> None:
    cfg = config_from_dict(_cfg(tiny_data, train__iterations=100000, train__checkpoint_every=100000))
    result = train(cfg, out=tmp_path, name="budget", max_time=0.3)
    assert result.stopped == "time budget" and 0 < result.iteration < 100000
    assert list_checkpoints(result.run_dir)[-1].name == f"iter_{result.iteration:08d}"
    info = json.loads((result.run_dir / "run.json").read_text())
    assert info["iteration"] == result.iteration and info["checkpoint"] == f"iter_{result.iteration:08d}"


def _recipe_file(path: Path, cfg: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(cfg))
    return path


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO / "src") + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    return env


def test_killed_run_loses_at_most_the_work_since_the_last_checkpoint(tiny_data: Path, tmp_path: Path) -> None:
    recipe = _recipe_file(tmp_path / "long.yaml", _cfg(tiny_data, train__iterations=100000,
                                                       train__checkpoint_every=4, train__log_every=1))
    run = tmp_path / "runs" / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "superres.cli", "train", str(recipe), "--out",
                             str(tmp_path / "runs"), "--name", "killed"], env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (run / "checkpoints" / "iter_00000012").exists():
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)  # no chance to clean up
    finally:
        proc.wait(30)
    logged = []
    for line in (run / "log.jsonl").read_text().splitlines():
        try:
            logged.append(json.loads(line)["iteration"])
        except ValueError:  # the kill may cut the last line short
            pass
    newest = list_checkpoints(run)[-1]
    done = int(newest.name[5:])
    # every completed iteration was logged; at most checkpoint_every of them are not in a checkpoint
    assert done % 4 == 0 and done >= 12 and max(logged) - done <= 4
    load_checkpoint(newest)  # complete and verifiable despite the kill
    again = train(resume=run, stop_after=done + 2)
    assert again.iteration == done + 2


def test_sigint_stops_cleanly_with_a_checkpoint_at_the_current_iteration(tiny_data: Path, tmp_path: Path) -> None:
    recipe = _recipe_file(tmp_path / "long.yaml", _cfg(tiny_data, train__iterations=100000,
                                                       train__checkpoint_every=100000, train__log_every=1))
    run = tmp_path / "runs" / "int"
    proc = subprocess.Popen([sys.executable, "-m", "superres.cli", "train", str(recipe), "--out",
                             str(tmp_path / "runs"), "--name", "int"], env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (run / "log.jsonl").exists():
        if proc.poll() is not None:
            pytest.fail(proc.communicate()[1].decode()[-2000:])
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err.decode()
    assert b"interrupted at iteration" in out and b"superres train --resume" in out
    ckpts = list_checkpoints(run)
    assert len(ckpts) == 1 and int(ckpts[0].name[5:]) > 0


def test_ddp_two_processes_match_one_process(tiny_data: Path, tmp_path: Path) -> None:
    cfg = _cfg(tiny_data, train__iterations=6, train__checkpoint_every=6, val__dataset=None, train__ema_decay=0.0,
               train__grad_clip=0.0)
    recipe = _recipe_file(tmp_path / "ddp.yaml", cfg)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "superres.cli", "train", str(recipe), "--out", str(tmp_path / "runs"), "--name", "ddp"]
    r = subprocess.run(cmd, env=_env(), capture_output=True, timeout=120, check=False)
    assert r.returncode == 0, r.stderr.decode()[-3000:]
    single = train(config_from_dict(cfg), out=tmp_path / "runs", name="single")
    a, b = _weights(tmp_path / "runs" / "ddp"), _weights(single.run_dir)
    _, _, state = load_checkpoint(tmp_path / "runs" / "ddp")
    assert state["world_size"] == 2 and state["iteration"] == 6
    from superres.archs import build

    torch.manual_seed(3)  # the recipe's seed: the weights both runs started from
    init = build("espcn", scale=2, **cfg["model"]["hyperparams"]).state_dict()
    assert max((a[k] - init[k]).abs().max().item() for k in a) > 1e-3  # far above the tolerance below
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5, msg=k)


def test_gan_stage_two_from_a_stage_one_run(full_run: Path, tiny_data: Path, tmp_path: Path) -> None:
    cfg = config_from_dict(_cfg(
        tiny_data, train__iterations=3, train__checkpoint_every=3, val__dataset=None,
        gan={"pretrained": str(full_run), "discriminator": "unet_sn", "discriminator_params": {"base": 4},
             "weight": 0.1, "gan_type": "hinge"}))
    result = train(cfg, out=tmp_path, name="gan")
    assert result.finished
    info = json.loads((result.run_dir / "run.json").read_text())
    assert info["pretrained"].endswith("iter_00000020/ema.safetensors")
    _, weights, state = load_checkpoint(result.run_dir)
    assert "discriminator" in weights and "d_optimizer" in state
    lines = [json.loads(x) for x in (result.run_dir / "log.jsonl").read_text().splitlines()]
    assert {"loss/g_gan", "loss/d", "loss/l1"} <= set(lines[-1])
    moved = train(resume=result.run_dir, max_time=None)  # finished run: resumes to a no-op
    assert moved.iteration == 3


def test_publish_of_a_gan_run_records_its_parent_and_lpips(full_run: Path, tiny_data: Path, data_dir: Path,
                                                            weights_dir: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A GAN model is judged by LPIPS against its fidelity parent, so its card carries both."""
    from superres.train.publish import publish

    lpips_dir = weights_dir / "lpips"
    if not (lpips_dir / "torchvision_alexnet_features.pth").is_file():
        pytest.skip(f"LPIPS weights not found in {lpips_dir}")
    cfg = config_from_dict(_cfg(
        tiny_data, train__iterations=2, train__checkpoint_every=2, val__dataset=None,
        gan={"pretrained": str(full_run), "discriminator": "unet_sn", "discriminator_params": {"base": 4},
             "weight": 0.1}))
    run = train(cfg, out=tmp_path, name="gan").run_dir
    _, c = publish(run, "tiny-gan-x2", tmp_path / "zoo", datasets=("Set5",), data_root=data_dir,
                   lpips_dir=lpips_dir)
    card = json.loads(c.read_text())
    assert card["purpose"] == "photo" and card["training"]["gan"]["weight"] == 0.1
    assert card["training"]["init"]["from"] == str(full_run) and card["training"]["init"]["mode"] == "exact"
    assert 0 < card["metrics"]["Set5"]["lpips"] < 1 and "LPIPS" in card["metrics"]["protocol"]
    _, c2 = publish(run, "tiny-gan-x2b", tmp_path / "zoo", datasets=("Set5",), data_root=data_dir, lpips=False)
    assert "lpips" not in json.loads(c2.read_text())["metrics"]["Set5"]
    monkeypatch.delenv("SUPERRES_LPIPS_DIR", raising=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(SuperresError, match="LPIPS alex backbone weights not found.*--no-lpips"):
        publish(run, "tiny-gan-x2c", tmp_path / "zoo", datasets=("Set5",), data_root=data_dir,
                lpips_dir=tmp_path / "empty")
    assert not list((tmp_path / "zoo").glob("tiny-gan-x2c*"))  # nothing half-published


def test_y_channel_network_trains_on_luma(tiny_data: Path, tmp_path: Path) -> None:
    cfg = config_from_dict(_cfg(tiny_data, model={"arch": "fsrcnn", "hyperparams": {"d": 8, "s": 4, "m": 1}},
                                train__iterations=2, train__checkpoint_every=2))
    result = train(cfg, out=tmp_path, name="y")
    assert result.finished and 0 < result.metrics["psnr_y"] < 100
    assert _weights(result.run_dir)["conv1.weight"].shape[1] == 1


# ---- publishing ------------------------------------------------------------------------------------------------


def test_publish_writes_a_card_the_zoo_loads(full_run: Path, data_dir: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from superres.train.publish import publish
    from superres.zoo import registry

    w, c = publish(full_run, "tiny-espcn-x2", tmp_path / "zoo", datasets=("Set5",), data_root=data_dir)
    card = json.loads(c.read_text())
    assert card["training"]["iterations"] == 20 and card["training"]["weights"] == "EMA"
    assert card["training"]["data"] == ["A/HR", "B/HR"] and "cpu" in card["training"]["device"]
    assert card["metrics"]["Set5"]["images"] == 5 and 0 < card["metrics"]["Set5"]["psnr_y"] < 100
    ema = _weights(full_run, "ema")
    shipped = load_file(str(w))
    assert shipped.keys() == ema.keys() and all(torch.equal(shipped[k], ema[k]) for k in ema)
    with pytest.raises(SuperresError, match="already exists"):
        publish(full_run, "tiny-espcn-x2", tmp_path / "zoo", datasets=())

    monkeypatch.setattr(registry, "_BUNDLED_DIR", tmp_path / "zoo")
    registry._cards.cache_clear()
    try:
        got = registry.get_card("tiny-espcn-x2")
        assert got.arch == "espcn" and got.scale == 2 and registry.is_available_offline(got)
        from superres.loading import load_model

        up = load_model("tiny-espcn-x2", device="cpu", precision="fp32")
        assert up.scale == 2
        from superres.eval.runner import evaluate

        row = evaluate(["tiny-espcn-x2"], ["Set5"], [2], data_root=data_dir).summary[0]
        assert row.psnr_y == pytest.approx(card["metrics"]["Set5"]["psnr_y"], abs=1e-3)  # the card tells the truth
    finally:
        registry._cards.cache_clear()


def test_validation_during_training_scores_exactly_as_superres_eval(data_dir: Path) -> None:
    """Set14 holds a grey image (bridge): validation must score it as eval does, as its own Y."""
    from superres.data.datasets import ValidationSet
    from superres.eval.runner import evaluate
    from superres.zoo.loader import load_network
    from superres.train.trainer import validate

    net, _ = load_network("espcn-s-x4")
    got = validate(net, ValidationSet("Set14", 4, root=data_dir), 4, torch.device("cpu"))
    row = evaluate(["espcn-s-x4"], ["Set14"], [4], data_root=data_dir).row("espcn-s-x4", "Set14", 4)
    assert row is not None and row.psnr_y is not None and row.ssim_y is not None
    assert abs(got["psnr_y"] - row.psnr_y) < 1e-6 and abs(got["ssim_y"] - row.ssim_y) < 1e-6


def test_fine_tuning_starts_from_model_pretrained(tmp_path: Path, data_dir: Path) -> None:
    """model.pretrained (a zoo name here) initialises the generator; a wrong shape fails before compute."""
    from superres.zoo.loader import load_network
    from superres.train.trainer import TrainingError

    cfg_path = Path(__file__).resolve().parents[1] / "configs" / "espcn_s_x4_finetune.yaml"
    base = ["train.iterations=1", "train.val_every=0", "val.dataset=null", "train.batch_size=2",
            "data.workers=0"]
    res = train(load_config(cfg_path, base + ["optim.lr=1e-12", "train.ema_decay=0"], data_root=data_dir),
                out=tmp_path, name="ft")
    shipped, _ = load_network("espcn-s-x4")
    sd = load_file(str(res.checkpoint / "generator.safetensors"))
    for k, v in shipped.state_dict().items():
        assert torch.allclose(sd[k], v, atol=1e-6), k
    assert json.loads((res.run_dir / "run.json").read_text())["pretrained"] == "espcn-s-x4"
    with pytest.raises(TrainingError, match="model.pretrained: .* do not fit"):
        train(load_config(cfg_path, base + ["model.hyperparams.n1=8"], data_root=data_dir), out=tmp_path, name="bad")
    assert not (tmp_path / "bad" / "checkpoints").exists()


@pytest.mark.parametrize("arch,small,big", [
    ("espcn", dict(channels=1, n1=8, n2=4, scale=4, final="none"), dict(channels=1, n1=12, n2=6, scale=4, final="none")),
    ("edsr", dict(num_blocks=2, num_feat=8, scale=4), dict(num_blocks=2, num_feat=12, scale=4)),  # residual + x2x2 shuffle
])
def test_widening_keeps_the_pretrained_function(arch: str, small: dict, big: dict) -> None:
    from superres.archs import build
    from superres.train.trainer import widen_into

    torch.manual_seed(0)
    a, b = build(arch, **small).eval(), build(arch, **big).eval()
    widen_into(a.state_dict(), b)
    x = torch.rand(1, a.descriptor.in_channels, 9, 11)
    with torch.no_grad():
        assert torch.allclose(a(x), b(x), atol=1e-5)
    assert sum(p.numel() for p in b.parameters()) > sum(p.numel() for p in a.parameters())
    with pytest.raises(ValueError, match="does not fit inside"):
        widen_into(b.state_dict(), build(arch, **small))


def test_transfer_loads_matching_layers_and_leaves_the_output_layer_of_another_scale() -> None:
    from superres.archs import build
    from superres.train.trainer import transfer_into

    torch.manual_seed(0)
    x4, x3 = build("espcn", channels=1, n1=8, n2=4, scale=4), build("espcn", channels=1, n1=8, n2=4, scale=3)
    before = x3.conv3.weight.detach().clone()
    assert transfer_into(x4.state_dict(), x3) == ["conv3.bias", "conv3.weight"]
    assert torch.equal(x3.conv1.weight, x4.conv1.weight) and torch.equal(x3.conv3.weight, before)
    with pytest.raises(ValueError, match="no layer"):
        transfer_into(build("srvgg", num_feat=8, num_conv=2, scale=4).state_dict(), x3)
