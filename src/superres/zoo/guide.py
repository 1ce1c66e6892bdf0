"""Which model to use: each model's purpose, each command's default, and the pick per purpose and scale
behind ``-m fidelity`` / ``-m fast`` and the guide under ``superres models``.

Why one table: a new user choosing "photo x2", "anime x4" or "video" should find the answer in
``superres models`` alone, and ``upscale``, ``batch``, ``serve``, ``demo`` and ``video`` should not each
carry their own idea of a default. Every choice here comes from a measurement in the README (named per
entry); a re-measured model takes over only when this table is edited (tests check the fidelity and fast
picks against the numbers on the cards).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from .cards import ModelCard

PURPOSES = ("photo", "anime", "video", "fidelity", "fast")
# Older cards (and ``train.publish``) say "classical" for PSNR-oriented models and "general" for blind ones.
_SYNONYMS = {"classical": "fidelity", "general": "photo"}

# What each command runs when no -m is given. One photo default for every command that takes images:
# realesrgan-x4plus has by far the most natural output on real-world photos (NIQE 4.42 vs 9.14 for the
# 26x faster superres-compact-x4 and 10.39 for realesr-animevideov3, Set14 + BSD100 with the Real-ESRGAN
# degradation: README "Compress" / the compact card), and `batch` is `upscale` for folders (the same image
# gets the same output from either). `video` needs speed above all: realesr-animevideov3 runs a 256x256
# frame in 214 ms on the 2-core CPU vs 5406 ms for realesrgan-x4plus (README "Speed on CPU"), 25x faster.
COMMAND_DEFAULTS: dict[str, str] = {
    "upscale": "realesrgan-x4plus",
    "batch": "realesrgan-x4plus",
    "serve": "realesrgan-x4plus",
    "demo": "realesrgan-x4plus",
    "video": "realesr-animevideov3",
}

FAST_WINDOW_DB = 0.3  # ``-m fast``: the fastest model within this much mean Y-PSNR of the fidelity pick

# The pick per purpose and native scale (absent: no native model; a larger scale then resizes).
# photo x4: the command default (above). photo x2: waifu2x UpConv7 photo, the only native x2 model trained on
#   photos (JPEG-noise levels -n0..3); for clean images `-m fidelity -s 2` keeps more detail.
# anime: best Y-PSNR per scale on the line-art sheets (README "Line art and anime"): x2 waifu2x-cunet-x2
#   31.29 dB (next anime model 28.23); x3 realcugan-x3-cons 23.44 (pro-x3-cons 23.55 is 0.11 dB above on
#   three images, but the pro weights' input mapping is an open question, README); x4 realcugan-x4-cons 22.19
#   (realesrgan-x4plus-anime 20.50).
# video: realesr-animevideov3 (the only video model; x2/x3 run x4 then resize, as upstream).
# fidelity: best mean Y-PSNR of Set5 + Set14 + BSD100 (README "PSNR-oriented models", the cards' metrics).
#   x2: dat-light-x2 34.837 vs span-ch48-x2 34.633; x3: dat-light-x3 31.533 vs srmdnf-x3 31.007; x4:
#   dat-light-x4 29.699 vs span-x4 29.463 (README "DAT-light").
# fast: `python benchmarks/pick_speed.py` (128x128, 1 thread, 2-core AMD EPYC at load average 15; README
#   "Which model for what"), medians in ms: x2 span-ch48-x2 556 vs span-x2 808 (srmdnf-x2 is 0.33 dB under
#   the pick, outside the window); x4 span-ch48-x4 1301, span-x4 1583, srmdnf-x4 4223; x3 srmd-x3 3020 vs
#   srmdnf-x3 3441 is load noise (the same network: 1.527 vs 1.526 MMAC per LR pixel, overlapping ranges),
#   so the tie went to the more faithful srmdnf-x3; since DAT-light x3 took the fidelity pick (+0.53 dB), no
#   other x3 model is within the window, so the rule makes dat-light-x3 the x3 fast pick too (about 3x
#   SPAN's time per pixel; there is no SPAN x3). Where they differ, MACs per pixel rank the same way.
PICKS: dict[str, dict[int, str]] = {
    "photo": {2: "waifu2x-photo-x2", 4: "realesrgan-x4plus"},
    "anime": {2: "waifu2x-cunet-x2", 3: "realcugan-x3-cons", 4: "realcugan-x4-cons"},
    "video": {4: "realesr-animevideov3"},
    "fidelity": {2: "dat-light-x2", 3: "dat-light-x3", 4: "dat-light-x4"},
    "fast": {2: "span-ch48-x2", 3: "dat-light-x3", 4: "span-ch48-x4"},
}
ALIASES = ("fidelity", "fast")  # -m words that pick per scale (-s); the other purposes are read, not run


def purpose_of(card: ModelCard) -> str:
    """The card's purpose in the words of :data:`PURPOSES`."""
    return _SYNONYMS.get(card.purpose, card.purpose)


def pick(alias: str, outscale: float | None) -> str | None:
    """The model ``-m ALIAS -s OUTSCALE`` runs (x4 when the scale is not native), None if not an alias."""
    table = PICKS.get(alias.lower()) if alias.lower() in ALIASES else None
    if table is None:
        return None
    scale = int(outscale) if outscale is not None and float(outscale).is_integer() else 4
    return table.get(scale, table[4])


def default_model(command: str) -> str:
    return COMMAND_DEFAULTS[command]


def marks(name: str) -> list[str]:
    """What points at a model: ``default`` (upscale, batch, serve, demo), ``video`` (the video command's
    default), and the purposes it is the pick of at its scale."""
    out = ["default"] if name == COMMAND_DEFAULTS["upscale"] else []
    out += [c for c, m in COMMAND_DEFAULTS.items() if m == name and m != COMMAND_DEFAULTS["upscale"]]
    out += [p for p in PURPOSES if name in PICKS[p].values() and p not in out]
    return out


def picked_names() -> list[str]:
    """Every model the guide names, the shared default first (what ``superres serve`` starts from)."""
    names = [COMMAND_DEFAULTS["serve"], *COMMAND_DEFAULTS.values()]
    names += [m for p in PURPOSES for _, m in sorted(PICKS[p].items())]
    return list(dict.fromkeys(names))


def short_aliases(card: ModelCard) -> list[str]:
    """Aliases a person types (family names like ``realcugan``), not upstream file names
    (``RealESRGAN_x4plus``, ``spanx2_ch52``) or long spellings of the name; ``--wide`` lists them all."""
    return [a for a in card.aliases if a.lower() == a and "_" not in a and not a.startswith(card.name)]


def mean_psnr(card: ModelCard) -> float | None:
    """Mean Y-PSNR over Set5, Set14 and BSD100 at the card's scale from its metrics (None: not measured)."""
    sets = ("Set5", "Set14", "BSD100")
    m = card.metrics
    try:
        if all(f"{s} PSNR-Y" in m for s in sets):
            return sum(float(m[f"{s} PSNR-Y"]) for s in sets) / 3
        if all(isinstance(m.get(s), dict) and "psnr_y" in m[s] for s in sets):
            return sum(float(m[s]["psnr_y"]) for s in sets) / 3
    except (TypeError, ValueError):
        return None
    return None
