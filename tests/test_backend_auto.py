"""``--backend auto``, the command line's default: the fastest installed of the engine, ONNX Runtime and
OpenVINO per model and machine, measured once and read from a table after; says which it used. The rest of
the suite pins it to torch (conftest); these tests unpin it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from superres import backend_auto
from superres.cli import app
from superres.loading import load_model

MODEL = "espcn-s-x4"  # tiny: its ONNX export and the race take well under a second


@pytest.fixture()
def unpinned(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Auto as a user gets it, with a table of this test's own (the cache folder is shared by the session)."""
    monkeypatch.delenv(backend_auto.PIN_ENV, raising=False)
    table = tmp_path / "cache" / backend_auto.TABLE_NAME
    monkeypatch.setattr(backend_auto, "table_path", lambda: table)


def _need_runtimes() -> tuple[str, ...]:
    found = backend_auto.installed_runtimes()
    if not found:
        pytest.skip("neither onnxruntime nor openvino is installed (pip install 'superres[onnx,openvino]')")
    return found


def test_core_install_runs_the_engine_and_measures_nothing(unpinned: None,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backend_auto, "installed_runtimes", lambda: ())
    monkeypatch.setattr(backend_auto, "race", lambda *a, **k: pytest.fail("measured with nothing to compare"))
    up = load_model(MODEL, device="cpu", backend="auto")
    choice = backend_auto.choice_of(up)
    assert up.backend == "torch" and choice.backend == "torch"
    assert "not installed" in choice.reason
    assert not backend_auto.table_path().exists()


def test_measures_once_then_reads_the_table(unpinned: None, monkeypatch: pytest.MonkeyPatch,
                                            data_dir: Path) -> None:
    runtimes = _need_runtimes()
    up = load_model(MODEL, device="cpu", backend="auto")
    first = backend_auto.choice_of(up)
    assert "measured now" in first.reason
    assert set(first.times_ms) == {"torch", *runtimes}
    assert first.backend == min(first.times_ms, key=first.times_ms.__getitem__) == up.backend
    table = json.loads(backend_auto.table_path().read_text())
    assert [e["backend"] for e in table.values()] == [first.backend]

    monkeypatch.setattr(backend_auto, "race", lambda *a, **k: pytest.fail("measured again"))
    again = load_model(MODEL, device="cpu", backend="auto")
    assert backend_auto.choice_of(again).backend == first.backend == again.backend
    assert "earlier" in backend_auto.choice_of(again).reason

    # whatever it picked computes the engine's image
    from PIL import Image

    lr = data_dir / "Set5" / "LR_bicubic" / "X4" / "babyx4.png"
    img = Image.open(lr).convert("RGB").crop((0, 0, 40, 30))
    ours = np.asarray(again.upscale(img), dtype=np.int16)
    torch_up = load_model(MODEL, device="cpu", backend="torch")
    ref = np.asarray(torch_up.upscale(img), dtype=np.int16)
    assert ours.shape == ref.shape and np.abs(ours - ref).max() <= 1


def test_the_key_names_threads_and_weights() -> None:
    keys = {backend_auto.machine_key(2, "a" * 64), backend_auto.machine_key(1, "a" * 64),
            backend_auto.machine_key(2, "b" * 64)}
    assert len(keys) == 3


def test_a_broken_or_huge_table_is_measured_again_not_trusted(unpinned: None) -> None:
    _need_runtimes()
    path = backend_auto.table_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    for junk in (b"{not json", b"[1, 2]", b'{"k": "' + b"x" * (backend_auto.MAX_TABLE_BYTES + 10) + b'"}'):
        path.write_bytes(junk)
        assert backend_auto.lookup("k", ("torch",)) is None
    up = load_model(MODEL, device="cpu", backend="auto")
    assert "measured now" in backend_auto.choice_of(up).reason
    assert path.stat().st_size < 10_000 and len(json.loads(path.read_text())) == 1
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]  # no temporary left behind


def test_a_recorded_backend_no_longer_installed_is_measured_again(unpinned: None,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    runtimes = _need_runtimes()
    load_model(MODEL, device="cpu", backend="auto")
    table = json.loads(backend_auto.table_path().read_text())
    for entry in table.values():
        entry["backend"] = runtimes[0]
    backend_auto.table_path().write_text(json.dumps(table))
    monkeypatch.setattr(backend_auto, "installed_runtimes", lambda: ())
    up = load_model(MODEL, device="cpu", backend="auto")
    assert up.backend == "torch" and "not installed" in backend_auto.choice_of(up).reason


def test_the_pin_names_the_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    runtimes = _need_runtimes()
    monkeypatch.setenv(backend_auto.PIN_ENV, runtimes[0])
    up = load_model(MODEL, device="cpu", backend="auto")
    assert up.backend == runtimes[0] and "pinned" in backend_auto.choice_of(up).reason


def test_cli_default_says_which_backend_ran(unpinned: None, tmp_path: Path, data_dir: Path) -> None:
    runtimes = _need_runtimes()
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(data_dir / "Set5" / "LR_bicubic" / "X4" / "birdx4.png", src / "bird.png")
    out = tmp_path / "out"
    r = CliRunner().invoke(app, ["upscale", str(src), "-o", str(out), "-m", MODEL, "--device", "cpu"])
    assert r.exit_code == 0, r.output
    line = [ln for ln in r.output.splitlines() if "written" in ln][-1]
    assert line.startswith("1 written, 0 failed")
    assert "(backend " in line and "fastest measured now" in line
    assert any(b in line.split("(backend ", 1)[1].split()[0] for b in ("torch", *runtimes))
    assert (out / "bird.png").is_file()
    r = CliRunner().invoke(app, ["upscale", str(src), "-o", str(tmp_path / "out2"), "-m", MODEL,
                                 "--device", "cpu"])
    assert r.exit_code == 0 and "measured on this machine earlier" in r.output


def test_a_failing_race_still_upscales_with_the_engine(unpinned: None,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    _need_runtimes()

    def broken(*a: object, **k: object) -> None:
        raise RuntimeError("no timer here")

    monkeypatch.setattr(backend_auto, "race", broken)
    up = load_model(MODEL, device="cpu", backend="auto")
    assert up.backend == "torch" and "comparison failed: no timer here" in backend_auto.choice_of(up).reason
    assert not backend_auto.table_path().exists()  # nothing recorded from a failed comparison


def test_a_pin_that_names_no_backend_is_one_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                        data_dir: Path) -> None:
    monkeypatch.setenv(backend_auto.PIN_ENV, "bogus")
    src = data_dir / "Set5" / "LR_bicubic" / "X4" / "birdx4.png"
    r = CliRunner().invoke(app, ["upscale", str(src), "-o", str(tmp_path / "out"), "-m", MODEL])
    assert r.exit_code != 0
    assert "$SUPERRES_AUTO_BACKEND='bogus' names no backend" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "out").exists()
