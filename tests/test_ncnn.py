"""ncnn model reader/converter and the weights cache.

The key check: our converted PyTorch networks reproduce the ncnn runtime (CPU, fp32) on the official
Real-ESRGAN models to 1e-3, on random and real input.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from ncnn_helpers import converted, wheel_model  # tests/ncnn_helpers.py
from ncnn_helpers import run_ncnn as _run_ncnn

from superres.archs import build
from superres.files import sha256_file
from superres.zoo import sources
from superres.zoo.ncnn import (
    TRUNCATED,
    NcnnError,
    parse_param,
    read_param,
    read_weights,
    split_post_resize,
    to_state_dict,
)

STEMS = [
    "realesr-animevideov3-x2",
    "realesr-animevideov3-x3",
    "realesr-animevideov3-x4",
    "realesrgan-x4plus-anime",
    "realesrgan-x4plus",
]
EXPECTED_HP = {
    "realesr-animevideov3-x2": ("srvgg", dict(num_feat=64, num_conv=16, scale=4, act="prelu",
                                              post_resize="bicubic", post_scale=0.5)),
    "realesr-animevideov3-x3": ("srvgg", dict(num_feat=64, num_conv=16, scale=4, act="prelu",
                                              post_resize="bicubic", post_scale=0.75)),
    "realesr-animevideov3-x4": ("srvgg", dict(num_feat=64, num_conv=16, scale=4, act="prelu")),
    "realesrgan-x4plus-anime": ("rrdbnet", dict(num_feat=64, num_block=6, num_grow=32, scale=4)),
    "realesrgan-x4plus": ("rrdbnet", dict(num_feat=64, num_block=23, num_grow=32, scale=4)),
}
TOL = 1e-3


def _model(stem: str) -> tuple[Path, Path]:
    return wheel_model(stem, sources.NCNN_DISTRIBUTION)


def _converted(stem: str) -> tuple[str, dict, dict]:
    return converted(stem, sources.NCNN_DISTRIBUTION)


def _torch_net(stem: str) -> tuple[torch.nn.Module, dict]:
    arch, hp, sd = _converted(stem)
    build_hp, post = split_post_resize(hp)
    net = build(arch, **build_hp).eval()
    net.load_state_dict(sd, strict=True)
    return net, post


# ---- reading -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("stem", STEMS)
def test_parse_and_read_package_models(stem: str) -> None:
    param, bin_path = _model(stem)
    graph = read_param(param)
    header = param.read_text().splitlines()[1].split()
    assert len(graph.layers) == int(header[0]) and graph.blob_count == int(header[1])
    assert graph.input_names == ["data"] and graph.output_names == ["output"]
    weights = read_weights(graph, bin_path)  # raises unless the .bin is consumed exactly
    n_floats = 0
    for layer in graph.layers:
        if layer.type == "Convolution":
            w, b = weights[layer.name]
            assert w.size == layer.params[6] and b.size == layer.params[0]
            n_floats += w.size + b.size
        elif layer.type == "PReLU":
            (s,) = weights[layer.name]
            assert s.size == layer.params[0]
            n_floats += s.size
        else:
            assert layer.name not in weights
    assert all(a.dtype == np.float32 for arrays in weights.values() for a in arrays)
    # fp16 conv weights (2 bytes + 4-byte tag per blob, padded) + raw fp32 biases/slopes
    assert n_floats * 2 < bin_path.stat().st_size < n_floats * 4


def test_array_params_and_keys() -> None:
    graph = parse_param(
        "7767517\n3 3\nInput in 0 1 data\n"
        "Convolution c 1 1 data a 0=8 1=3 4=1 5=1 6=216 9=2 -23310=1,2.000000e-01\n"
        "Eltwise e 2 1 a a out 0=1 -23301=2,2.000000e-01,1.000000e+00\n"
    )
    conv, elt = graph.layers[1], graph.layers[2]
    assert conv.params == {0: 8, 1: 3, 4: 1, 5: 1, 6: 216, 9: 2, 10: [0.2]}
    assert elt.params == {0: 1, 1: [0.2, 1.0]} and elt.inputs == ("a", "a")
    with pytest.raises(NcnnError, match="magic"):
        parse_param("123\n0 0\n")
    with pytest.raises(NcnnError, match="2 layers"):
        parse_param("7767517\n2 1\nInput in 0 1 data\n")


def test_wrong_or_truncated_bin_rejected(tmp_path: Path) -> None:
    graph = read_param(_model("realesrgan-x4plus-anime")[0])
    other_bin = _model("realesr-animevideov3-x4")[1]
    with pytest.raises(NcnnError, match=TRUNCATED):
        read_weights(graph, other_bin)
    data = _model("realesr-animevideov3-x4")[1].read_bytes()
    small = read_param(_model("realesr-animevideov3-x4")[0])
    for name, blob in (("short.bin", data[:-4]), ("long.bin", data + b"\0\0\0\0")):
        (tmp_path / name).write_bytes(blob)
        with pytest.raises(NcnnError, match=TRUNCATED):
            read_weights(small, tmp_path / name)


def test_unsupported_weights_rejected(tmp_path: Path) -> None:
    bin_path = tmp_path / "m.bin"
    bin_path.write_bytes(b"\0" * 64)
    graph = parse_param("7767517\n2 2\nInput in 0 1 data\nBatchNorm bn 1 1 data out 0=4\n")
    with pytest.raises(NcnnError, match="'BatchNorm'"):
        read_weights(graph, bin_path)
    graph = parse_param("7767517\n2 2\nInput in 0 1 data\nConvolution c 1 1 data out 0=1 1=1 5=0 6=4\n")
    bin_path.write_bytes(np.array([0x000D4B38], "<u4").tobytes() + b"\1\2\3\4")
    with pytest.raises(NcnnError, match="int8"):
        read_weights(graph, bin_path)
    # fp32-tagged weights decode like fp16-tagged ones
    bin_path.write_bytes(np.array([0], "<u4").tobytes() + np.arange(4, dtype="<f4").tobytes())
    assert read_weights(graph, bin_path)["c"][0].tolist() == [0, 1, 2, 3]
    bin_path.write_bytes(np.array([0x01306B47], "<u4").tobytes() + np.arange(4, dtype="<f2").tobytes())
    assert read_weights(graph, bin_path)["c"][0].tolist() == [0, 1, 2, 3]


# ---- conversion and structure checks -----------------------------------------------------------------


@pytest.mark.parametrize("stem", STEMS)
def test_convert_hyperparams(stem: str) -> None:
    arch, hp, sd = _converted(stem)
    want_arch, want = EXPECTED_HP[stem]
    assert arch == want_arch
    assert hp == dict(in_channels=3, out_channels=3, **want)
    assert all(t.dtype == torch.float32 for t in sd.values())
    _torch_net(stem)  # builds and loads strictly


@pytest.mark.parametrize(
    ("stem", "old", "new", "msg"),
    [
        ("realesr-animevideov3-x4", "0=4\n", "0=2\n", "PixelShuffle|factor|channels"),
        ("realesr-animevideov3-x4", "0=1 1=4.000000e+00", "0=2 1=4.000000e+00", "nearest"),
        ("realesr-animevideov3-x4", "0=48 1=3 4=1", "0=48 1=3 4=0", "pad-1"),
        ("realesrgan-x4plus-anime", "-23310=1,2.000000e-01", "-23310=1,1.000000e-01", "LeakyReLU"),
        ("realesrgan-x4plus-anime", "-23301=2,2.000000e-01,1.000000e+00", "-23301=2,1.000000e+00,1.000000e+00",
         "0.2"),
        ("realesrgan-x4plus-anime", "0=1 1=2.000000e+00 2=2.000000e+00", "0=2 1=2.000000e+00 2=2.000000e+00",
         "nearest"),
    ],
)
def test_structure_is_verified(stem: str, old: str, new: str, msg: str) -> None:
    param, bin_path = _model(stem)
    text = param.read_text()
    assert old in text
    graph = parse_param(text.replace(old, new, 1), "edited")
    arch = EXPECTED_HP[stem][0]
    with pytest.raises(NcnnError, match=msg):
        to_state_dict(graph, read_weights(graph, bin_path), arch)


def test_wrong_arch_rejected() -> None:
    graph = read_param(_model("realesr-animevideov3-x4")[0])
    weights = read_weights(graph, _model("realesr-animevideov3-x4")[1])
    with pytest.raises(NcnnError, match="not a rrdbnet graph"):
        to_state_dict(graph, weights, "rrdbnet")


def _fp16_toward_zero(x: np.ndarray) -> np.ndarray:
    """fp32 -> fp16 as ncnn's converter does it: round toward zero, subnormals flushed to signed zero."""
    h = x.astype(np.float16)
    away = np.abs(h.astype(np.float32)) > np.abs(x)
    h[away] = np.nextafter(h[away], np.float16(0))
    h[np.abs(x) < 2.0**-14] = 0
    return np.copysign(h.astype(np.float32), x)


def test_animevideov3_matches_official_pth(weights_dir: Path) -> None:
    pth = weights_dir / "realesrgan" / "realesr-animevideov3.pth"
    if not pth.is_file():
        pytest.skip(f"{pth} not found")
    official = torch.load(pth, map_location="cpu", weights_only=True)["params"]
    _, _, sd = _converted("realesr-animevideov3-x4")
    assert sd.keys() == official.keys()
    rounded_differs = 0
    for key, ref in official.items():
        ref = ref.float().numpy()
        ours = sd[key].numpy()
        assert ours.shape == ref.shape, key
        if ref.ndim == 4:  # conv weights: stored as fp16, truncated
            want = _fp16_toward_zero(ref)
            assert ours.tobytes() == want.tobytes(), (key, int((ours != want).sum()))
            rounded_differs += int((ref.astype(np.float16).astype(np.float32) != ours).sum())
        else:  # biases and PReLU slopes: raw fp32
            assert ours.tobytes() == ref.tobytes(), key
    assert rounded_differs > 0  # round-to-nearest would not match: truncation is what the file holds


# ---- exactness against the ncnn runtime --------------------------------------------------------------


def _inputs(data_dir: Path, size: int) -> dict[str, np.ndarray]:
    from PIL import Image

    rng = np.random.default_rng(20240611)
    img = Image.open(data_dir / "Set5" / "HR" / "baby.png").convert("RGB")
    crop = np.asarray(img, dtype=np.float32)[200:200 + size, 220:220 + size] / 255.0
    return {"random": rng.random((3, size, size), dtype=np.float32), "real": crop.transpose(2, 0, 1).copy()}


@pytest.mark.parametrize(
    "stem", [pytest.param(s, marks=pytest.mark.slow) if s == "realesrgan-x4plus" else s for s in STEMS]
)
def test_matches_ncnn_runtime(stem: str, data_dir: Path) -> None:
    """Official models take RGB in [0, 1] (CHW); the same array goes to both runtimes."""
    pytest.importorskip("ncnn")
    param, bin_path = _model(stem)
    net, post = _torch_net(stem)
    size = 32 if EXPECTED_HP[stem][0] == "rrdbnet" else 48
    torch.set_num_threads(2)
    for kind, x in _inputs(data_dir, size).items():
        with torch.no_grad():
            y = net(torch.from_numpy(x)[None])
            if post:
                assert post["post_resize"] == "bicubic"
                y = F.interpolate(y, scale_factor=post["post_scale"], mode="bicubic", align_corners=False)
        ours = y[0].numpy()
        ref = _run_ncnn(param, bin_path, x)
        assert ours.shape == ref.shape, (kind, ours.shape, ref.shape)
        diff = float(np.abs(ours - ref).max())
        print(f"{stem} {kind} {size}x{size}: max |torch - ncnn| = {diff:.3g}")
        assert diff <= TOL, (kind, diff)
        assert float(np.abs(ref).max()) > 0.1  # a real image came out, not zeros


# ---- sources: package files, cache, downloads --------------------------------------------------------


def test_find_ncnn_package_model() -> None:
    _model("realesrgan-x4plus")
    assert set(STEMS) <= set(sources.list_ncnn_package_models())
    assert sources.find_ncnn_package_model("no-such-model") is None
    assert sources.find_ncnn_package_model("realesrgan-x4plus", "no-such-distribution-xyz") is None


def _sd() -> dict[str, torch.Tensor]:
    return {"a.weight": torch.arange(12, dtype=torch.float32).reshape(3, 4), "a.bias": torch.ones(3)}


def test_cache_writes_atomically_and_reuses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from safetensors import safe_open

    monkeypatch.setenv("SUPERRES_CACHE_DIR", str(tmp_path / "cache"))
    assert sources.cache_dir() == tmp_path / "cache"
    calls = []
    replaced: list[tuple[Path, Path]] = []
    import os

    real_replace = os.replace  # io.atomic publishes with os.replace

    def spy_replace(src: str, dst: str) -> None:
        assert not Path(dst).exists() or Path(dst).suffix in (".safetensors", ".sha256")
        replaced.append((Path(src), Path(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy_replace)

    def build_fn() -> tuple[dict[str, torch.Tensor], dict[str, str]]:
        calls.append(1)
        assert not (tmp_path / "cache" / "m.safetensors").exists()  # nothing published before the build
        return _sd(), {"arch": "toy"}

    path = sources.cached_safetensors("m", build_fn)
    assert path == tmp_path / "cache" / "m.safetensors" and len(calls) == 1
    # both files arrived by rename from a temporary file in the same directory
    assert [d.name for _, d in replaced] == ["m.safetensors", "m.sha256"]
    assert all(s.parent == d.parent and s.name.startswith(".") for s, d in replaced)
    assert sorted(p.name for p in path.parent.iterdir()) == ["m.safetensors", "m.sha256"]  # no leftovers
    assert (path.parent / "m.sha256").read_text().split()[0] == sha256_file(path)
    with safe_open(str(path), "pt") as f:
        assert f.metadata() == {"arch": "toy"}
        assert torch.equal(f.get_tensor("a.weight"), _sd()["a.weight"])
    assert sources.cached_safetensors("m", build_fn) == path and len(calls) == 1  # reused
    assert sources.is_cached("m")


def test_cache_rebuilds_corrupt_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUPERRES_CACHE_DIR", str(tmp_path))
    calls = []

    def build_fn() -> tuple[dict[str, torch.Tensor], dict[str, str]]:
        calls.append(1)
        return _sd(), {}

    path = sources.cached_safetensors("m", build_fn)
    good = path.read_bytes()
    path.write_bytes(good[:-5])  # truncated
    assert not sources.is_cached("m")
    assert sources.cached_safetensors("m", build_fn).read_bytes() == good and len(calls) == 2
    (tmp_path / "m.sha256").unlink()  # sidecar lost: cannot be trusted either
    assert sources.cached_safetensors("m", build_fn).read_bytes() == good and len(calls) == 3

    def failing() -> tuple[dict[str, torch.Tensor], dict[str, str]]:
        raise RuntimeError("boom")

    path.write_bytes(b"garbage")
    with pytest.raises(RuntimeError, match="boom"):
        sources.cached_safetensors("m", failing)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors", "m.sha256"]  # no temp files
    with pytest.raises(ValueError, match="plain file name"):
        sources.cached_safetensors("../evil", build_fn)


def test_cache_concurrent_writers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUPERRES_CACHE_DIR", str(tmp_path))
    barrier = threading.Barrier(4)
    results: list[Path] = []

    def build_fn() -> tuple[dict[str, torch.Tensor], dict[str, str]]:
        barrier.wait(timeout=10)  # all four build at once and race to publish
        return _sd(), {"k": "v"}

    threads = [threading.Thread(target=lambda: results.append(sources.cached_safetensors("m", build_fn)))
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 4 and sources.is_cached("m")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors", "m.sha256"]


def test_cached_real_conversion(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from safetensors.torch import load_file

    monkeypatch.setenv("SUPERRES_CACHE_DIR", str(tmp_path))
    _, _, sd = _converted("realesr-animevideov3-x4")
    path = sources.cached_safetensors("realesr-animevideov3-x4", lambda: (sd, {"arch": "srvgg"}))
    loaded = load_file(str(path))
    assert loaded.keys() == sd.keys() and all(torch.equal(loaded[k], sd[k]) for k in sd)
