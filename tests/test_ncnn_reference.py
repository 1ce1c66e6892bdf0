"""The ncnn runtime as a reference (tests/ncnn_helpers.py, benchmarks/cpu_speed.py): ``ncnn.Mat(array)``
borrows the array's memory without a reference, so a temporary passed straight in can be freed before
``extract`` reads it and the "reference" reads garbage (an outside check read near-zero outputs). The
helpers keep the input alive and hand ncnn its own copy; the benchmark refuses to time a reference that
disagrees with eager."""

from __future__ import annotations

import gc
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from ncnn_helpers import network, run_ncnn, wheel_model

from superres.zoo import sources

REPO = Path(__file__).resolve().parents[1]
STEM = "realesr-animevideov3-x4"


def _real_crop(data_dir: Path, side: int) -> np.ndarray:
    from PIL import Image

    img = np.asarray(Image.open(data_dir / "Set14" / "HR" / "baboon.png").convert("RGB"), dtype=np.float32)
    return np.ascontiguousarray(img[40:40 + side, 60:60 + side].transpose(2, 0, 1) / 255.0)


def test_reference_reads_a_temporary_input_correctly(data_dir: Path) -> None:
    """A float64 temporary (converted inside the helper, referenced nowhere else) gives the same image as
    the torch network, call after call with allocations in between, and the caller's array is unchanged."""
    pytest.importorskip("ncnn")
    param, bin_path = wheel_model(STEM, sources.NCNN_DISTRIBUTION)
    net = network(STEM, sources.NCNN_DISTRIBUTION)
    x = _real_crop(data_dir, 37)  # odd size
    with torch.inference_mode():
        want = net(torch.from_numpy(x)[None])[0].numpy()
    before = x.copy()
    for _ in range(3):
        got = run_ncnn(param, bin_path, x.astype(np.float64))
        churn = [np.full(x.shape, 7.0, dtype=np.float32) for _ in range(8)]  # reuse freed blocks, if any
        del churn
        gc.collect()
        assert got.shape == want.shape
        assert float(np.abs(got - want).max()) <= 1e-4
        assert float(np.abs(got).max()) > 0.1
    np.testing.assert_array_equal(x, before)


def _cpu_speed():
    spec = importlib.util.spec_from_file_location("cpu_speed", REPO / "benchmarks" / "cpu_speed.py")
    mod = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(mod)
    return mod


def test_benchmark_refuses_a_reference_that_disagrees_with_eager() -> None:
    bench = _cpu_speed()
    out = torch.full((1, 3, 8, 8), 0.5)
    bench.check_reference("m", {"eager": 0.0, "ncnn": 3e-6, "engine": 1e-5}, out)  # agrees: no exit
    with pytest.raises(SystemExit, match="ncnn's output differs from eager by 1"):
        bench.check_reference("m", {"eager": 0.0, "ncnn": 1.0}, out)
    with pytest.raises(SystemExit, match="ncnn's output differs"):
        bench.check_reference("m", {"eager": 0.0, "ncnn": float("nan")}, out)


def test_benchmark_all_covers_every_architecture_in_the_zoo() -> None:
    """``cpu_speed.py --all`` takes its models from the registry: a family added later is timed without
    editing the script; issue 27's target models are always in it."""
    from superres.zoo.registry import all_cards, get_card, is_available_offline

    bench = _cpu_speed()
    chosen = bench.representatives()
    assert len(chosen) == len(set(chosen))
    assert set(bench.ISSUE_MODELS) <= set(chosen)
    offline = {c.arch for c in all_cards() if is_available_offline(c)}
    assert {get_card(n).arch for n in chosen} == offline
