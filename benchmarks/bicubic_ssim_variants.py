"""Published bicubic rows (VDSR Table 3) vs Y/SR rounding variants of the bicubic protocol (issue 26).

    python benchmarks/bicubic_ssim_variants.py Set5:2 Set5:3 Set5:4 Set14:2 Set14:3 Set14:4

Data from ../shared/data (or $SUPERRES_DATA).
"""
import math
import os
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from superres.metrics.color import rgb_to_y
from superres.metrics.psnr_ssim import _ssim_plane, gaussian_window_1d
from superres.resize import imresize, modcrop

g = gaussian_window_1d()
PUB = {('Set5',2):(33.66,.9299),('Set5',3):(30.39,.8682),('Set5',4):(28.42,.8104),
       ('Set14',2):(30.24,.8688),('Set14',3):(27.55,.7742),('Set14',4):(26.00,.7027),
       ('BSD100',2):(29.56,.8431),('BSD100',3):(27.21,.7385),('BSD100',4):(25.96,.6675)}
for name, s in [(a, int(b)) for a, b in (x.split(':') for x in sys.argv[1:])]:
    res = {}
    for p in sorted((Path(os.environ.get('SUPERRES_DATA', '../shared/data')) / name / 'HR').glob('*.png')):
        im = np.asarray(Image.open(p)); im = im if im.ndim == 2 else im[..., :3]
        hr = modcrop(im, s)
        yd = hr.astype(np.float64) if hr.ndim == 2 else np.asarray(rgb_to_y(hr), np.float64)
        yr = np.floor(yd + .5)
        up_r = np.asarray(imresize(np.asarray(imresize(yr, 1 / s)), float(s)))
        up_d = np.asarray(imresize(np.asarray(imresize(yd, 1 / s)), float(s)))
        c = lambda a: a[s:-s, s:-s]
        for k, (a, b) in {'Y rounded, SR rounded (current)': (np.floor(up_r + .5), yr),
                          'Y double, SR double': (up_d, yd),
                          'Y rounded, SR double': (up_r, yr)}.items():
            a, b = c(a), c(b)
            mse = np.mean((a - b) ** 2)
            res.setdefault(k, []).append((10 * math.log10(255 ** 2 / mse), _ssim_plane(a, b, g)))
    pp, ps = PUB[(name, s)]
    for k, v in res.items():
        v = np.array(v)
        print(f'{name} x{s} {k:32s} PSNR {v[:,0].mean():.3f} ({v[:,0].mean()-pp:+.3f})  SSIM {v[:,1].mean():.4f} ({v[:,1].mean()-ps:+.4f})  pub {pp}/{ps}')
