"""Load test of ``superres serve``: N concurrent clients send mixed-size images to a real server process
and every response is checked, pixel for pixel, against a direct Upscaler call on that client's input.
Prints p50/p95/p99 latency and throughput. Bounded in requests and time (--deadline).

    python benchmarks/serve_load.py                       # 16 clients, 200 requests, own server process
    python benchmarks/serve_load.py --url http://host:8000  # an already running server (same model!)
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from pathlib import Path

import numpy as np

SIZES = [(16, 16), (24, 40), (32, 32), (48, 64), (64, 48), (64, 64), (80, 96), (96, 128)]


def png(arr: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    return buf.getvalue()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--model", default="realesr-animevideov3")
    ap.add_argument("--url", default=None, help="use this server instead of starting one")
    ap.add_argument("--concurrent-jobs", type=int, default=2, help="server inference threads (own server)")
    ap.add_argument("--deadline", type=float, default=300.0, help="give up after this many seconds")
    args = ap.parse_args()

    import httpx
    from PIL import Image

    from superres.loading import load_model
    from superres.io.image import encode_image, read_image_bytes
    from superres.serve.launch import ServerProcess

    rng = np.random.default_rng(0)
    inputs = [png(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in SIZES for _ in range(3)]
    up = load_model(args.model, device="cpu")
    t0 = time.perf_counter()
    expected = [
        np.asarray(Image.open(io.BytesIO(encode_image(up.upscale_image(read_image_bytes(d)), "png"))))
        for d in inputs
    ]
    direct_s = (time.perf_counter() - t0) / len(inputs)
    order = [int(i) for i in rng.integers(0, len(inputs), args.requests)]

    env = {
        "SUPERRES_SERVE_LOG_LEVEL": "warning",
        "SUPERRES_SERVE_QUEUE_LENGTH": str(args.clients * 2),
        "SUPERRES_SERVE_CONCURRENT_JOBS": str(args.concurrent_jobs),
    }
    server = nullcontext() if args.url else ServerProcess(["--models", args.model], env=env)
    with server as srv:
        url = args.url or srv.url  # type: ignore[union-attr]
        deadline = time.monotonic() + args.deadline

        def one(i: int) -> tuple[float, bool, str]:
            if time.monotonic() > deadline:
                return 0.0, False, "deadline"
            with httpx.Client(timeout=120) as c:
                t = time.perf_counter()
                r = c.post(
                    url + "/v1/upscale",
                    files={"file": ("x.png", inputs[i], "image/png")},
                    data={"model": args.model},
                )
                dt = time.perf_counter() - t
            if r.status_code != 200:
                return dt, False, f"{r.status_code} {r.text[:100]}"
            got = np.asarray(Image.open(io.BytesIO(r.content)))
            return dt, bool(got.shape == expected[i].shape and np.array_equal(got, expected[i])), "mismatch"

        load = os.getloadavg()
        t0 = time.perf_counter()
        with ThreadPoolExecutor(args.clients) as pool:
            results = list(pool.map(one, order))
        wall = time.perf_counter() - t0

    lat = sorted(r[0] for r in results if r[1])
    bad = [r[2] for r in results if not r[1]]
    q = statistics.quantiles(lat, n=100) if len(lat) >= 2 else [float("nan")] * 99
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"load avg before {load[0]:.2f}/{load[1]:.2f}/{load[2]:.2f}; model {args.model}; "
        f"server inference threads {args.concurrent_jobs if not args.url else '?'}"
    )
    print(
        f"inputs: {len(SIZES)} sizes from {SIZES[0][1]}x{SIZES[0][0]} to {SIZES[-1][1]}x{SIZES[-1][0]} "
        "(x4 out); "
        f"direct Upscaler in this process {direct_s * 1000:.1f} ms/image (one thread of calls)"
    )
    print("| clients | requests | correct | errors | p50 ms | p95 ms | p99 ms | throughput req/s | wall s |")
    print("|---|---|---|---|---|---|---|---|---|")
    print(
        f"| {args.clients} | {len(results)} | {len(lat)} | {len(bad)} | {q[49] * 1000:.0f} | "
        f"{q[94] * 1000:.0f} | {q[98] * 1000:.0f} | {len(lat) / wall:.1f} | {wall:.1f} |"
    )
    if bad:
        print("failures:", sorted(set(bad))[:5], file=sys.stderr)
    return 0 if not bad else 1


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    raise SystemExit(main())
