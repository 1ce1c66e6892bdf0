"""A/B split under load: N concurrent clients fire small images at a real ``superres serve --ab`` and
we check the split and the bookkeeping.

Reports the observed share of the candidate vs the configured one (over requests, client side), the
binomial noise expected from hashing that many distinct clients, per-version latency (client side and
the server's own /v1/ab numbers), and lost requests (anything but a 200 with the right version header;
must be 0). Each client id sends ``requests / clients`` requests, so stickiness is checked too.

    python benchmarks/ab_split.py                              # 1000 requests, 1000 client ids, share 0.2
    python benchmarks/ab_split.py --clients 250 --share 0.1
"""

from __future__ import annotations

import argparse
import io
import math
import os
import platform
import statistics
import sys
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np


def png(arr: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    return buf.getvalue()


def q(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[max(0, math.ceil(p * len(s)) - 1)] if s else float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--clients", type=int, default=1000, help="distinct client ids")
    ap.add_argument("--threads", type=int, default=16, help="concurrent connections")
    ap.add_argument("--control", default="espcn-s-x4")
    ap.add_argument("--candidate", default="espcn-m-x4")
    ap.add_argument("--share", type=float, default=0.2)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--concurrent-jobs", type=int, default=2)
    ap.add_argument("--deadline", type=float, default=300.0)
    args = ap.parse_args()

    import httpx

    from superres.serve.ab import ABSplit, Variant
    from superres.serve.launch import ServerProcess

    rng = np.random.default_rng(0)
    images = [png(rng.integers(0, 256, (args.size, args.size, 3), dtype=np.uint8)) for _ in range(8)]
    ids = [f"bench-client-{i:05d}" for i in range(args.clients)]
    order = [(ids[k % len(ids)], images[k % len(images)]) for k in range(args.requests)]
    split = ABSplit(args.control, [Variant("candidate", args.candidate, args.share)])
    env = {
        "SUPERRES_SERVE_LOG_LEVEL": "warning",
        "SUPERRES_SERVE_QUEUE_LENGTH": str(args.threads * 4),
        "SUPERRES_SERVE_CONCURRENT_JOBS": str(args.concurrent_jobs),
    }
    cli = ["--models", args.control, "--ab", f"candidate={args.candidate}:{args.share}"]
    with ServerProcess(cli, env=env) as srv:
        deadline = time.monotonic() + args.deadline
        local = __import__("threading").local()

        def one(job: tuple[str, bytes]) -> tuple[str, float, str, str]:
            cid, data = job
            if time.monotonic() > deadline:
                return cid, 0.0, "", "deadline"
            client = getattr(local, "c", None) or httpx.Client(timeout=120)
            local.c = client
            t = time.perf_counter()
            try:
                r = client.post(
                    srv.url + "/v1/upscale",
                    files={"file": ("x.png", data, "image/png")},
                    headers={"X-Client-Id": cid},
                )
            except httpx.HTTPError as e:
                return cid, time.perf_counter() - t, "", f"transport: {e}"
            dt = time.perf_counter() - t
            if r.status_code != 200:
                return cid, dt, "", f"{r.status_code} {r.text[:80]}"
            return cid, dt, r.headers.get("x-superres-version", ""), ""

        load = os.getloadavg()
        t0 = time.perf_counter()
        with ThreadPoolExecutor(args.threads) as pool:
            results = list(pool.map(one, order))
        wall = time.perf_counter() - t0
        server_view = httpx.get(srv.url + "/v1/ab").json()

    lost = [r for r in results if r[3] or r[2] != split.assign(r[0]).name]
    per: dict[str, list[float]] = defaultdict(list)
    seen: dict[str, set[str]] = defaultdict(set)
    for cid, dt, version, err in results:
        if not err:
            per[version].append(dt)
            seen[cid].add(version)
    n_ok = sum(len(v) for v in per.values())
    observed = len(per["candidate"]) / n_ok if n_ok else float("nan")
    sd = math.sqrt(args.share * (1 - args.share) / min(args.clients, args.requests))
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load avg before "
        f"{load[0]:.2f}; control {args.control}, candidate {args.candidate}; {args.size}x{args.size} PNG in, "
        f"x4 out; {args.threads} connections, server inference threads {args.concurrent_jobs}"
    )
    print(
        f"{args.requests} requests from {args.clients} client ids in {wall:.1f} s "
        f"({args.requests / wall:.0f} req/s)"
    )
    print(
        f"candidate share: configured {args.share:.1%}, observed {observed:.2%} "
        f"({(observed - args.share) * 100:+.2f} points; binomial sd for "
        f"{min(args.clients, args.requests)} clients {sd * 100:.2f} points); "
        f"clients seen on more than one version: {sum(len(v) > 1 for v in seen.values())}"
    )
    print(f"lost requests (not 200, or wrong version): {len(lost)}")
    print()
    print(
        "| version | model | requests | share | p50 ms | p95 ms | server p50 ms | server p95 ms "
        "| server errors |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    sv = {v["name"]: v for v in server_view["versions"]}
    for v in split.variants:
        lat = per[v.name]
        s = sv[v.name]
        print(
            f"| {v.name} | {v.model} | {len(lat)} | {len(lat) / n_ok:.1%} | {q(lat, 0.5) * 1000:.1f} | "
            f"{q(lat, 0.95) * 1000:.1f} | {s['p50_ms']} | {s['p95_ms']} | {s['errors']} |"
        )
    c50, k50 = (
        statistics.median(per["control"] or [math.nan]),
        statistics.median(per["candidate"] or [math.nan]),
    )
    print(f"\ncandidate / control median latency (same run): {k50 / c50:.2f}x")
    server_total = sum(v["requests"] for v in server_view["versions"])
    print(f"server counted {server_total} requests (client sent {args.requests})")
    if lost:
        print("lost:", lost[:5], file=sys.stderr)
    ok = not lost and server_total == args.requests and abs(observed - args.share) <= 0.02
    return 0 if ok else 1


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    raise SystemExit(main())
