"""Shared by the ncnn parity tests (test_ncnn, test_ncnn_families, test_ncnn_cugan, test_ncnn_cunet,
test_realsr): find a wheel's model files (skip with the install line when absent), convert once per
session, and run the ncnn runtime on the CPU in fp32 -- the reference every converted network must match.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import numpy as np
import pytest
import torch

from superres.archs import build
from superres.zoo import sources
from superres.zoo.ncnn import convert, read_param
from superres.zoo.wheels import install_hint

_CONVERTED: dict[tuple[str, str], tuple[str, dict, dict]] = {}


def wheel_model(stem: str, dist: str) -> tuple[Path, Path]:
    """``(param, bin)`` of ``stem`` in distribution ``dist`` (a wheel, or a fetched sdist); skips, saying
    how to get it, when absent."""
    if dist not in sources_sdists():
        try:
            importlib.metadata.distribution(dist)
        except importlib.metadata.PackageNotFoundError:
            pytest.skip(f"{dist} not installed ({install_hint(dist)})")
    found = sources.find_ncnn_package_model(stem, dist)
    if found is None:
        pytest.skip(f"{dist} does not provide {stem}.param/.bin here ({install_hint(dist)})")
    return found


def sources_sdists() -> set[str]:
    from superres.zoo.sdists import SDISTS

    return set(SDISTS)


def converted(stem: str, dist: str) -> tuple[str, dict, dict]:
    """``(arch, hyperparams, state_dict)``, converted once per test session."""
    if (stem, dist) not in _CONVERTED:
        _CONVERTED[stem, dist] = convert(*wheel_model(stem, dist))
    return _CONVERTED[stem, dist]


def network(stem: str, dist: str, **extra: object) -> torch.nn.Module:
    arch, hp, sd = converted(stem, dist)
    net = build(arch, **hp, **extra).eval()
    net.load_state_dict(sd, strict=True)
    return net


def run_ncnn(param: Path, bin_path: Path, x: np.ndarray) -> np.ndarray:
    """The ncnn runtime on ``x`` (C x H x W float32), CPU, fp32 math (ncnn defaults to fp16 storage and
    arithmetic where the CPU has it), the graph's own input and output blobs."""
    ncnn = pytest.importorskip("ncnn")
    net = ncnn.Net()
    opt = net.opt
    opt.use_vulkan_compute = False
    opt.num_threads = 2
    opt.use_fp16_packed = opt.use_fp16_storage = opt.use_fp16_arithmetic = False
    opt.use_bf16_packed = opt.use_bf16_storage = False
    assert net.load_param(str(param)) == 0 and net.load_model(str(bin_path)) == 0
    graph = read_param(param)
    ex = net.create_extractor()
    # ncnn.Mat(array) borrows the array's memory without holding a reference: a temporary passed straight
    # in may be freed (and reused) before extract reads it. Keep the array in a name until extract returns,
    # and give ncnn its own copy (a first layer that works in place would otherwise write into ours).
    planes = np.ascontiguousarray(x, dtype=np.float32)
    mat = ncnn.Mat(planes).clone()
    assert ex.input(graph.input_names[0], mat) == 0
    ret, out = ex.extract(graph.output_names[0])
    assert ret == 0
    result = np.array(out, dtype=np.float32, copy=True)
    del ex, mat, planes  # only now may the input go
    return result


def assert_edit_refused(stem: str, dist: str, old: str, new: str, msg: str, arch: str) -> None:
    """Editing ``old`` into ``new`` in the stem's .param must make the ``arch`` converter refuse the graph
    with a message matching ``msg`` (a different network never loads silently)."""
    from superres.zoo.ncnn import NcnnError, parse_param, read_weights, to_state_dict

    param, bin_path = wheel_model(stem, dist)
    text = param.read_text()
    assert old in text
    graph = parse_param(text.replace(old, new, 1), "edited")
    with pytest.raises(NcnnError, match=msg):
        to_state_dict(graph, read_weights(graph, bin_path), arch)
