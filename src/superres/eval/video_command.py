"""``superres eval-video``: fidelity and temporal consistency of an upscaled clip against its ground truth.

Registered in ``superres/cli.py`` through :func:`register`. Thin: streams both clips frame by frame through
:class:`superres.eval.video_metrics.VideoMetrics`, prints the summary, and writes the per-frame JSON and the
flicker plot when asked.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer

__all__ = ["register"]


def register(app: typer.Typer, friendly: Any) -> None:
    @app.command("eval-video")
    @friendly
    def eval_video(
        sr: Path = typer.Argument(..., help="The upscaled clip."),
        hr: Path = typer.Option(..., "--hr", help="The ground-truth clip: same size and frame count."),
        crop: int = typer.Option(4, "--crop", help="Border pixels left out of PSNR/SSIM and the flow metrics "
                                 "(the protocol: the upscale factor)."),
        frames: Optional[int] = typer.Option(None, "--frames", min=2, help="Score only the first N frames."),
        plot: Optional[Path] = typer.Option(None, "--plot", help="Write the per-frame flicker plot (PNG) here."),
        json_out: Optional[Path] = typer.Option(None, "--json", help="Write per-frame scores as JSON here."),
    ) -> None:
        """Score an upscaled clip against its ground truth: fidelity and flicker.

        PSNR-Y / SSIM-Y per frame, TecoGAN tOF and the warping error (Lai et al. 2018) beside the HR clip's
        own; lower tOF and warping error mean less flicker."""
        from ..errors import SuperresError
        from ..io.atomic import atomic_write
        from .video_metrics import flicker_plot, iter_rgb_frames, score_videos

        if crop < 0:
            raise SuperresError(f"--crop must be >= 0, got {crop}")
        for p in (sr, hr):
            if not p.is_file():
                raise SuperresError(f"{p}: no such file")
        if plot is not None:
            from .figures import require_matplotlib

            require_matplotlib()  # fail before the run, not after it
        for out in (plot, json_out):
            if out is not None and not out.parent.is_dir():
                raise SuperresError(f"{out}: its folder {out.parent} does not exist")
        scores = score_videos(iter_rgb_frames(sr, limit=frames), iter_rgb_frames(hr, limit=frames), crop=crop)
        s = scores.summary()
        typer.echo(f"frames {s['frames']}  PSNR-Y {s['psnr_y']:.3f} dB  SSIM-Y {s['ssim_y']:.4f}  "
                   f"tOF {s['tof']:.3f}  warping error {s['warp_error'] * 1e3:.3f}e-3 "
                   f"(HR's own {s['warp_error_hr'] * 1e3:.3f}e-3)")
        if json_out is not None:
            with atomic_write(json_out) as tmp:
                tmp.write_text(json.dumps(scores.to_json(), indent=1, allow_nan=True), encoding="utf-8")
            typer.echo(f"per-frame scores: {json_out}")
        if plot is not None:
            typer.echo(f"flicker plot: {flicker_plot({sr.name: scores}, plot, title=f'{sr.name} vs {hr.name}')}")
