"""Why our bicubic SSIM on Set14 sits 0.0002-0.0008 under the published row while PSNR matches (issue 26).

Two published tables on the same Set14 files, each reproduced to its last digit, pin it down:

* SelfExSR (Huang et al., CVPR 2015; README of jbhuang0604/SelfExSR, "Results on Set 5 / Set 14", Bicubic
  column) scored MATLAB ``imresize`` of its own RGB LR files (ours are byte copies) with
  ``quant_eval/compute_difference.m``: Y of ``rgb2ycbcr`` on uint8 (rounded), ``SRF`` pixels shaved, Wang's
  ``ssim_index``. Our files and SSIM give all six Set5/Set14 rows to 4 decimals, so neither the images nor
  the SSIM implementation differ from what that paper measured.
* The row every paper copies (VDSR Table 3: Set14 .8688 / .7742 / .7027) is matched by the Y-only pipeline
  that matches Set5 and BSD100 with ``scale`` pixels cropped (``tests/test_eval.py``), but on Set14 only when
  SSIM is taken on the whole image, no border cropped (PSNR still cropped). That row was made without the
  SSIM crop; we keep the crop, as the protocol and the other rows have it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from superres.metrics.color import rgb_to_ycbcr
from superres.metrics.psnr_ssim import psnr, ssim
from superres.resize import imresize, modcrop

SELFEXSR_BICUBIC = {  # (PSNR, SSIM), jbhuang0604/SelfExSR README @ 033bdd1c, Bicubic column
    ("Set5", 2): (33.64, 0.9292), ("Set5", 3): (30.39, 0.8678), ("Set5", 4): (28.42, 0.8101),
    ("Set14", 2): (30.22, 0.8683), ("Set14", 3): (27.53, 0.7737), ("Set14", 4): (25.99, 0.7023),
}
VDSR_SET14_SSIM = {2: 0.8688, 3: 0.7742, 4: 0.7027}  # Kim et al., CVPR 2016, Table 3, Bicubic


def _y_uint8(img: np.ndarray) -> np.ndarray:
    """MATLAB ``rgb2ycbcr`` on uint8 RGB, Y plane (rounded); a 1-channel image is its own Y."""
    return img if img.ndim == 2 else np.asarray(rgb_to_ycbcr(img[:, :, :3]))[:, :, 0]


@pytest.mark.parametrize("key", list(SELFEXSR_BICUBIC), ids=[f"{d}-x{s}" for d, s in SELFEXSR_BICUBIC])
def test_selfexsr_table_from_its_own_lr_files(data_dir: Path, key: tuple[str, int]) -> None:
    dataset, s = key
    rows = []
    for hr_path in sorted((data_dir / dataset / "HR").glob("*.png")):
        hr = modcrop(np.asarray(Image.open(hr_path)), s)
        lr = np.asarray(Image.open(data_dir / dataset / "LR_bicubic" / f"X{s}" / f"{hr_path.stem}x{s}.png"))
        sr = np.asarray(imresize(lr, float(s)))  # uint8 in, rounded after each pass, as MATLAB
        a, b = _y_uint8(sr), _y_uint8(hr)
        rows.append((psnr(a, b, crop=s), ssim(a, b, crop=s)))
    want_psnr, want_ssim = SELFEXSR_BICUBIC[key]
    got_psnr, got_ssim = np.mean(rows, axis=0)
    assert got_psnr == pytest.approx(want_psnr, abs=0.005 + 1e-9)  # printed with 2 decimals
    assert got_ssim == pytest.approx(want_ssim, abs=0.00005 + 1e-9)  # printed with 4 decimals


def test_the_copied_set14_ssim_row_has_no_border_crop(data_dir: Path) -> None:
    for s, want in VDSR_SET14_SSIM.items():
        uncropped, cropped = [], []
        for hr_path in sorted((data_dir / "Set14" / "HR").glob("*.png")):
            y = modcrop(_y_uint8(np.asarray(Image.open(hr_path))), s)
            up = np.asarray(imresize(np.asarray(imresize(y.astype(np.float64), 1 / s)), float(s)))
            sr = np.clip(np.floor(up + 0.5), 0, 255).astype(np.uint8)
            uncropped.append(ssim(sr, y, crop=0))
            cropped.append(ssim(sr, y, crop=s))
        assert np.mean(uncropped) == pytest.approx(want, abs=1e-4), s  # measured 0.00002-0.00007 off
        assert np.mean(cropped) < want - 1e-4, s  # measured 0.00015 / 0.00059 / 0.00083 under
