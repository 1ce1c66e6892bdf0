"""A metric, a backend and an architecture each added in one file, as a third-party package would: a plugin
module declared under the ``superres.plugins`` entry point group. The CLI's help lists them, ``superres
eval --metrics`` computes the metric, ``superres upscale --backend`` runs on the backend, and duplicates
are refused. The plugin is written here into a temporary folder with its dist-info, and put on
PYTHONPATH of a fresh process (entry points are read once per process)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from superres.errors import SuperresError

PLUGIN = '''
"""A toy superres plugin: one metric, one backend, one architecture."""
import numpy as np
import torch
from torch import nn

from superres.archs import ArchSpec, SRNet, register
from superres.eval.metrics import MetricSpec, register_metric
from superres.loading import Backend, register_backend


def _mae(ctx):
    return lambda sr, ref, s: float(np.abs(sr.astype(np.float64) - ref.astype(np.float64)).mean())


register_metric(MetricSpec("toy_mae", "toy_mae", "ToyMAE", 3, False, "mean absolute uint8 error (toy plugin)",
                           "toy_mae: toy plugin", _mae))

CALLS = []


def _load(name_or_path, *, device, precision, allow_download, options):
    from superres.inference.upscaler import Upscaler
    from superres.zoo.loader import load_network

    net, card = load_network(name_or_path, allow_download=allow_download)

    def forward(x):
        CALLS.append(tuple(x.shape))
        return net(x)

    forward.backend = "toyrt"
    return Upscaler(net, name=card.name if card else "file", card=card, options=options, forward=forward)


register_backend(Backend("toyrt", "toy plugin: torch through a counting wrapper", _load))


class Nearest(SRNet):
    arch_name = "toy_nearest"

    def __init__(self, scale=2):
        super().__init__(scale=scale)
        self.gain = nn.Parameter(torch.ones(1))

    def forward(self, x):
        return nn.functional.interpolate(x, scale_factor=self.hyperparams["scale"], mode="nearest") * self.gain


register(ArchSpec("toy_nearest", "toy nearest-neighbour", Nearest,
                  lambda sd: {"scale": 2} if set(sd) == {"gain"} else None))
'''


@pytest.fixture(scope="module")
def plugin_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("plugin")
    (root / "toy_superres_plugin.py").write_text(PLUGIN)
    info = root / "toy_superres_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-superres-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[superres.plugins]\ntoy = toy_superres_plugin\n")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(root), *filter(None, [env.get("PYTHONPATH")])])
    env["COLUMNS"] = "200"
    return env


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    code = "import sys; from superres.cli import main; sys.argv = ['superres', *sys.argv[1:]]; main()"
    return subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=300)


def test_plugin_metric_and_backend_appear_in_help(plugin_env: dict[str, str]) -> None:
    up = _run(plugin_env, "upscale", "--help")
    assert up.returncode == 0, up.stderr
    assert "toyrt (toy plugin" in " ".join(up.stdout.split())
    ev = _run(plugin_env, "eval", "--help")
    assert "toy_mae" in ev.stdout and "toyrt" in ev.stdout


def test_plugin_metric_is_computed_by_eval(plugin_env: dict[str, str], data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    r = _run(plugin_env, "eval", "-m", "bicubic-rgb", "-d", "Set5", "-s", "4", "--limit", "2",
             "--metrics", "psnr,toy_mae", "--data-root", str(data_dir), "-o", str(out))
    assert r.returncode == 0, r.stderr
    doc = json.loads(out.read_text())
    row = doc["summary"][0]
    assert row["toy_mae"] > 0 and row["psnr_y"] > 20
    assert row["lpips"] is None  # built-in columns stay present (null) as before
    assert "toy_mae: toy plugin" in doc["meta"]["metric_implementation"]
    md = _run(plugin_env, "eval", "-m", "bicubic-rgb", "-d", "Set5", "-s", "4", "--limit", "1",
              "--metrics", "toy_mae", "--data-root", str(data_dir), "-f", "markdown")
    assert "| ToyMAE |" in md.stdout


def test_plugin_backend_runs_upscale(plugin_env: dict[str, str], data_dir: Path, tmp_path: Path) -> None:
    src = tmp_path / "in.png"
    Image.open(data_dir / "Set5" / "HR" / "baby.png").convert("RGB").crop((0, 0, 64, 48)).save(src)
    a, b = tmp_path / "torch.png", tmp_path / "toy.png"
    for out, backend in ((a, "torch"), (b, "toyrt")):
        r = _run(plugin_env, "upscale", str(src), "-o", str(out), "-m", "espcn-r-x4", "--backend", backend)
        assert r.returncode == 0, r.stderr
    diff = np.abs(np.asarray(Image.open(a), np.int16) - np.asarray(Image.open(b), np.int16))
    # Same network and weights; the torch backend runs the fused CPU kernel, the toy one plain PyTorch, so
    # float rounding may move a value across a .5 boundary: at most 1 level.
    assert diff.max() <= 1 and diff.mean() < 0.01
    bad = _run(plugin_env, "upscale", str(src), "-o", str(tmp_path / "x.png"), "-m", "espcn-r-x4",
               "--backend", "toyr")
    assert bad.returncode != 0 and "did you mean 'toyrt'" in bad.stderr and "Traceback" not in bad.stderr


def test_plugin_architecture_is_detected(plugin_env: dict[str, str], tmp_path: Path) -> None:
    """A weights file of the plugin's architecture loads by detection like a built-in one."""
    code = f"""
import torch, numpy as np
from safetensors.torch import save_file
import superres
from superres.archs import detection_order
save_file({{"gain": torch.ones(1)}}, {str(tmp_path / "toy.safetensors")!r})
up = superres.load_model({str(tmp_path / "toy.safetensors")!r}, device="cpu")
out = up.upscale(np.full((4, 5, 3), 7, np.uint8))
print(up.descriptor.arch, out.shape, int(out.max()), detection_order()[-1])
"""
    r = subprocess.run([sys.executable, "-c", code], env=plugin_env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["toy_nearest", "(8,", "10,", "3)", "7", "toy_nearest"]


def test_duplicates_are_refused() -> None:
    from superres.archs import get_arch, register
    from superres.eval.metrics import get_metric, register_metric
    from superres.loading import get_backend, register_backend

    with pytest.raises(SuperresError, match="already registered"):
        register_metric(get_metric("psnr"))
    with pytest.raises(SuperresError, match="already registered"):
        register_backend(get_backend("torch"))
    import dataclasses

    with pytest.raises(ValueError, match="already registered"):
        register(dataclasses.replace(get_arch("edsr"), title="another EDSR"))
