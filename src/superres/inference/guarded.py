"""Assemble the ensemble, the quality gate and the fallback from command-line style choices.

Shared by ``superres upscale`` (one file or a batch) and the Ray batch, so every path applies the same
rules: an ensemble alone changes only the pixels; a report, a fallback or an uncertainty folder turn on the
:class:`~superres.inference.report.Guard` (which needs the NIQE pristine model).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from ..errors import SuperresError
from .ensemble import Ensemble
from .report import GateRules, Guard, ImageReport, heatmap, write_report

if TYPE_CHECKING:  # pragma: no cover
    from ..io.image import ImageData
    from ..metrics.niqe import NiqeModel
    from .upscaler import UpscaleOptions, Upscaler

__all__ = ["GuardChoices", "build", "uncertainty_path", "write_heatmap", "finish_report"]


@dataclass(frozen=True)
class GuardChoices:
    """What the user asked for; all off = the plain upscaler."""

    self_ensemble: bool = False
    mc_dropout: int = 0
    ensemble_with: tuple[str, ...] = ()
    report: Path | None = None
    fallback: str | None = None
    uncertainty_dir: Path | None = None
    niqe_tolerance: float = 1.0
    max_uncertainty_p99: float | None = 12.0
    niqe_params: str | None = None
    download: bool = False  # fetch the NIQE model (pinned) when it is missing
    report_optional: bool = False  # NIQE missing and not fetchable: upscale without a report instead of failing

    @property
    def wants_ensemble(self) -> bool:
        return self.self_ensemble or self.mc_dropout > 0 or bool(self.ensemble_with)

    @property
    def wants_guard(self) -> bool:
        return self.report is not None or self.fallback is not None or self.uncertainty_dir is not None


def gate_model(choices: GuardChoices) -> "NiqeModel":
    """The NIQE pristine model for the gate: found, or fetched when ``choices.download``; a one-line
    :class:`SuperresError` naming ``superres fetch niqe`` otherwise (raised before any image is read)."""
    from ..files import DownloadError
    from ..metrics.assets import fetch_metric_asset
    from ..metrics.niqe import load_niqe_model

    try:
        return load_niqe_model(choices.niqe_params)
    except FileNotFoundError as e:
        if choices.niqe_params is not None:
            raise SuperresError(f"the quality report needs NIQE: {e}") from None
        if not choices.download:
            raise SuperresError(f"the quality report needs NIQE: {e} or add --download") from None
    try:
        fetch_metric_asset("niqe")
    except DownloadError as e:
        raise SuperresError(f"the quality report needs NIQE, and fetching it failed: {e}") from None
    return load_niqe_model(choices.niqe_params)


def _check_choices(choices: GuardChoices) -> None:
    """Contradictory options, one line each (before anything is loaded)."""
    if choices.uncertainty_dir is not None and not choices.wants_ensemble:
        raise SuperresError("an uncertainty map needs an ensemble: add --self-ensemble, --mc-dropout N or "
                            "--ensemble-with MODEL")
    if choices.fallback is not None and not choices.fallback.strip():
        raise SuperresError("--fallback takes 'bicubic' or a model name")


def preflight(choices: GuardChoices, notify: Callable[[str], None] | None = None) -> GuardChoices:
    """Check (or fetch) the NIQE model before any weights are loaded or images read, so a missing model
    costs a second, not a model load. With ``report_optional`` (and no fallback) a missing model turns the
    report and heatmaps off, with one ``notify`` line; otherwise the one-line error is raised."""
    _check_choices(choices)
    if not choices.wants_guard:
        return choices
    try:
        gate_model(choices)
    except SuperresError as e:
        if not choices.report_optional or choices.fallback is not None:
            raise
        if notify is not None:
            notify(f"no quality report written ({e}); the upscale goes on without it (--report-optional)")
        return replace(choices, report=None, uncertainty_dir=None)
    return choices


def build(up: "Upscaler", choices: GuardChoices, load: Callable[[str], "Upscaler"],
          notify: Callable[[str], None] | None = None) -> tuple["Upscaler", Guard | None]:
    """(the upscaler to run when no guard is needed, the guard or None). ``load`` loads a zoo model by name.

    With ``report_optional`` and no NIQE model (and no fallback, which needs the gate), the plain upscaler
    is returned and ``notify`` gets the one-line reason: no report is written rather than one without a
    verdict (a report saying "0 flagged" would read as a pass)."""
    _check_choices(choices)
    ens = None
    if choices.wants_ensemble:
        members = [load(name) for name in choices.ensemble_with]
        ens = Ensemble(up, self_ensemble=choices.self_ensemble, mc_dropout=choices.mc_dropout, members=members)
    if not choices.wants_guard:
        return (ens.as_upscaler() if ens is not None else up), None
    try:
        niqe_model = gate_model(choices)
    except SuperresError as e:
        if not choices.report_optional or choices.fallback is not None:
            raise
        if notify is not None:
            notify(f"no quality report written ({e}); the upscale goes on without it (--report-optional)")
        return (ens.as_upscaler() if ens is not None else up), None
    fb_up = None
    if choices.fallback not in (None, "bicubic"):
        fb_up = load(str(choices.fallback))
    rules = GateRules(choices.niqe_tolerance, choices.max_uncertainty_p99)
    guard = Guard(up, ensemble=ens, rules=rules, niqe_model=niqe_model, fallback=choices.fallback,
                  fallback_upscaler=fb_up)
    return up, guard


def uncertainty_path(folder: Path, rel: Path) -> Path:
    """``folder/<rel without suffix>_uncertainty.png``: the heatmap beside the output's relative place."""
    return folder / rel.parent / f"{rel.stem}_uncertainty.png"


def write_heatmap(unc: Any, path: Path, vmax: float = 12.0) -> Path:
    """The uncertainty map as a colour PNG (fixed 0..``vmax`` grey-level scale), written atomically."""
    from ..io.image import from_array, write_image

    return write_image(from_array(heatmap(unc, vmax)), path)


def batch_process(guard: Guard, out_root: Path, choices: GuardChoices, *, outscale: float | None,
                  width: int | None, height: int | None, options: "UpscaleOptions | None" = None
                  ) -> Callable[[Path, Path, "ImageData"], "ImageData"]:
    """The ``process`` hook of :func:`superres.inference.batch.run_batch`: guard, record, write the heatmap."""
    vmax = choices.max_uncertainty_p99 or 12.0

    def process(src: Path, dst: Path, img: "ImageData") -> "ImageData":
        out, report, unc = guard.upscale_image(img, source=str(src), outscale=outscale, width=width,
                                               height=height, options=options)
        report.output = str(dst)
        if unc is not None and choices.uncertainty_dir is not None:
            try:
                rel = dst.relative_to(out_root)
            except ValueError:
                rel = Path(dst.name)
            write_heatmap(unc, uncertainty_path(choices.uncertainty_dir, rel), vmax)
        return out

    return process


def finish_report(guard: Guard, choices: GuardChoices, failed: Sequence[tuple[Path, str]],
                  meta: dict[str, Any]) -> list[ImageReport]:
    """Mark reports of images whose write failed, and write the JSON report if one was asked for."""
    why = {str(src): reason for src, reason in failed}
    reports = list(guard.reports)
    for r in reports:
        if r.input in why:
            r.error, r.output = why[r.input], None
    if choices.report is not None:
        write_report(choices.report, reports, meta)
    return reports


def report_meta(up: "Upscaler", guard: Guard) -> dict[str, Any]:
    from .. import __version__

    return {
        "tool": f"superres {__version__}",
        "model": up.name,
        "ensemble": guard.ensemble.label if guard.ensemble is not None else "none",
        "rules": {"niqe_tolerance": guard.rules.niqe_tolerance,
                  "max_uncertainty_p99": guard.rules.max_uncertainty_p99,
                  "uncertainty_unit": "std of the ensemble samples, 8-bit grey levels, channel mean"},
        "fallback": guard.fallback,
        "niqe": "superres.metrics.niqe (MATLAB pristine model) on Y, crop = scale; bicubic = MATLAB imresize",
    }
