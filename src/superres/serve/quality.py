"""The quality check of a server request: x8 self-ensemble, NIQE gate, optional bicubic fallback, heatmap.

Asked for with the form field ``report=true``; the job result then carries the gate's numbers (NIQE of
the output and of bicubic, uncertainty mean/p99, flagged and why) and ``/v1/jobs/{id}/result?variant=uncertainty``
serves the uncertainty heatmap as a PNG of the output's size.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

from .errors import ApiError

if TYPE_CHECKING:  # pragma: no cover
    from ..inference.upscaler import Upscaler
    from ..io.image import ImageData

__all__ = ["ENSEMBLE_CALLS", "checked_upscale", "ensembled"]

#: network calls per tile with the check on (x8 self-ensemble), for progress
ENSEMBLE_CALLS = 8

_FIELDS = ("niqe", "bicubic_niqe", "niqe_margin", "uncertainty_mean", "uncertainty_p99", "flagged", "reasons",
           "notes", "ensemble", "fallback", "fallback_used", "written")


def ensembled(up: "Upscaler") -> "Upscaler":
    """``self_ensemble=true`` without the check: the x8 mean through the normal upscale path."""
    from ..inference.ensemble import Ensemble

    return Ensemble(up, self_ensemble=True).as_upscaler()


def checked_upscale(up: "Upscaler", img: "ImageData", width: int, height: int, fallback: Optional[str]
                    ) -> tuple["ImageData", dict[str, Any], bytes]:
    """(image to send, the report fields, the heatmap PNG bytes). A missing NIQE model is a 503."""
    from ..errors import SuperresError
    from ..inference.ensemble import Ensemble
    from ..inference.report import Guard, heatmap
    from ..io.image import encode_image, from_array

    try:
        guard = Guard(up, ensemble=Ensemble(up, self_ensemble=True), fallback=fallback)
    except SuperresError as e:
        raise ApiError(503, "quality_check_unavailable", str(e)) from None
    out, report, unc = guard.upscale_image(img, source="upload", width=width, height=height)
    assert unc is not None
    fields = {k: v for k, v in report.to_dict().items() if k in _FIELDS}
    rules = guard.rules
    fields["rules"] = {"niqe_tolerance": rules.niqe_tolerance, "max_uncertainty_p99": rules.max_uncertainty_p99}
    return out, fields, encode_image(from_array(heatmap(unc, rules.max_uncertainty_p99 or 12.0)), "png")
