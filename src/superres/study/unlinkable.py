"""Study images served so that equal files do not give a model away.

Every output of a study is a fixed file; served as is, its bytes (or an ETag) would be the same on every
pair and for every rater, and a rater who hashes what they were shown learns after a few votes which
side of a new pair is which entry. Each serve is therefore a fresh PNG: about one sample in a hundred
(at least one) moved by one grey level (up or down, at random, kept in 0..255), then re-encoded. The
change is invisible (PSNR above 60 dB) and makes file hashes and exact decoded-pixel hashes differ from
serve to serve. It does not stop a near-duplicate match (two downloads that differ by at most one grey
level are the same output) or a rater who recognises an entry by eye or recomputes a public one
(bicubic from the served input): the study's vote caps and rater flags bound what that can do.
"""

from __future__ import annotations

import io
import random
from pathlib import Path

import numpy as np

__all__ = ["fresh_png", "JITTER_FRACTION"]

JITTER_FRACTION = 0.01


def fresh_png(path: Path, rng: random.Random) -> bytes:
    """The image at ``path`` as a new PNG whose bytes and pixels differ from any other serve's."""
    from PIL import Image

    with Image.open(path) as im:
        arr = np.array(im.convert("RGB"))
    flat = arr.reshape(-1)
    gen = np.random.default_rng(rng.getrandbits(64))
    count = max(1, int(flat.size * JITTER_FRACTION))
    where = gen.choice(flat.size, size=min(count, flat.size), replace=False)
    step = gen.choice(np.array([-1, 1], dtype=np.int16), size=where.size)
    values = flat[where].astype(np.int16) + step
    values = np.where((values < 0) | (values > 255), flat[where].astype(np.int16) - step, values)
    flat[where] = values.astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG", compress_level=1)
    return buf.getvalue()
