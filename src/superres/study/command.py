"""``superres study create | report | export | import``: thin wrappers over ``superres.study``.

Registered by ``superres/cli.py``; only typer and the standard library are imported at the top."""

from __future__ import annotations

from pathlib import Path
from typing import Any, List, Optional

import typer

__all__ = ["register"]

study_app = typer.Typer(
    name="study",
    help="Blind pairwise human studies: create, rate (superres serve --study), report.",
    no_args_is_help=True,
)


@study_app.command("create")
def create(
    folder: Path = typer.Argument(..., help="Study folder to create (or complete)."),
    images: List[Path] = typer.Argument(..., help="Input (low-resolution) images or folders of them."),
    models: str = typer.Option(
        ...,
        "-m",
        "--models",
        help="Comma-separated entries: zoo names, weights files or bicubic, each optionally +jpegQ/+blurS "
        "(a deliberately degraded control), e.g. espcn-s-x4,bicubic,bicubic+blur2.",
    ),
    scale: Optional[int] = typer.Option(None, "--scale", help="Upscale factor (default: the models')."),
    no_lr: bool = typer.Option(False, "--no-lr", help="Do not offer raters the low-resolution input."),
    title: str = typer.Option("Which image looks better?", "--title", help="Question shown to raters."),
    device: str = typer.Option("cpu", "--device", help="auto, cpu, cuda, cuda:N or mps."),
    max_votes: int = typer.Option(100, "--max-votes", min=1, help="Votes one rater may cast."),
    max_raters: int = typer.Option(500, "--max-raters", min=1, help="Rater tokens the server issues."),
    raters_per_address: int = typer.Option(
        3, "--raters-per-address", min=1, help="Rater tokens per client IP address (raise it behind a proxy)."
    ),
) -> None:
    """Compute every model's output for every image once into FOLDER (kept on reruns; the caps are
    written anew)."""
    from .create import create_study
    from .store import Limits

    entries = [m.strip() for m in models.split(",") if m.strip()]
    study = create_study(
        folder,
        entries,
        images,
        scale=scale,
        show_lr=not no_lr,
        title=title,
        device=device,
        progress=lambda msg: typer.echo(f"  {msg}", err=True),
        limits=Limits(max_votes, max_raters, raters_per_address),
    )
    typer.echo(f"{len(study.models)} models x {len(study.images)} images (x{study.scale}) -> {study.root}")
    typer.echo(f"rate with: superres serve --study {study.root}  (then open /study)")
    typer.echo(
        f"caps: {max_votes} votes per rater, {max_raters} raters, {raters_per_address} per address; "
        f"the vote export over HTTP needs the token in {study.root / 'owner.token'}"
    )


@study_app.command("report")
def report(
    folder: Path = typer.Argument(..., help="Study folder."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Write the figure here (PNG/SVG/PDF)."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the numbers here as JSON."),
    samples: int = typer.Option(500, "--samples", min=50, help="Bootstrap resamples."),
    seed: int = typer.Option(0, "--seed", help="Bootstrap seed."),
    l2: float = typer.Option(
        0.01, "--l2", min=1e-6, help="Gaussian prior on scores (keeps undefeated finite)."
    ),
    include_flagged: bool = typer.Option(
        False, "--include-flagged", help="Rank the votes of flagged raters too (fast, one key, contrarian)."
    ),
) -> None:
    """Bradley-Terry ranking with bootstrap intervals, win matrix and per-image agreement; flagged raters
    are listed and left out unless --include-flagged."""
    from .create import load_study
    from .report import build_report, format_table, plot_report, write_json
    from .store import StudyError, VoteStore

    study = load_study(folder)
    votes = VoteStore(study.root / "votes.sqlite").votes()
    rep = build_report(
        votes, study.models, l2=l2, samples=samples, seed=seed, include_flagged=include_flagged
    )
    typer.echo(format_table(rep))
    for target, write in ((plot, plot_report), (json_out, write_json)):
        if target is None:
            continue
        if target.is_dir():
            raise StudyError(f"{target} is a folder; name the file to write")
        try:
            write(rep, target)
        except OSError as e:
            raise StudyError(f"cannot write {target}: {e.strerror or e}") from None
        typer.echo(f"-> {target}")


@study_app.command("export")
def export(
    folder: Path = typer.Argument(..., help="Study folder."),
    out: Optional[Path] = typer.Argument(None, help="CSV file to write (default: standard output)."),
) -> None:
    """Write every vote as CSV (pair, rater, image, left, right, choice, ms, timestamp)."""
    from ..io.atomic import atomic_write
    from .create import load_study
    from .store import StudyError, VoteStore

    study = load_study(folder)
    text = VoteStore(study.root / "votes.sqlite").export_csv()
    if out is None:
        typer.echo(text, nl=False)
        return
    if out.is_dir():
        raise StudyError(f"{out} is a folder; name the CSV file to write")
    try:
        with atomic_write(out) as tmp:
            tmp.write_text(text)
    except OSError as e:
        raise StudyError(f"cannot write {out}: {e.strerror or e}") from None
    typer.echo(f"{text.count(chr(10)) - 1} votes -> {out}", err=True)


@study_app.command("import")
def import_(
    folder: Path = typer.Argument(..., help="Study folder."),
    csv_file: Path = typer.Argument(..., help="CSV as written by export; votes already present are skipped."),
) -> None:
    """Add votes from a CSV (all or nothing: a bad row adds none and names its line)."""
    from .create import load_study
    from .store import StudyError, VoteStore

    study = load_study(folder)
    try:
        text = csv_file.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise StudyError(f"cannot read {csv_file}: {e}") from None
    added, dupes = VoteStore(study.root / "votes.sqlite").import_csv(
        text, models=study.models, images=study.images
    )
    typer.echo(f"{added} votes added, {dupes} already present")


def register(app: typer.Typer, friendly: Any) -> None:
    """Add ``superres study ...`` to the command line (each command behind ``friendly``)."""
    for cmd in study_app.registered_commands:
        assert cmd.callback is not None
        cmd.callback = friendly(cmd.callback)
    app.add_typer(study_app, name="study")
