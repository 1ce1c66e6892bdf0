"""Weights-file bombs: peak memory and time until each is refused (issue 24, item 4).

Builds each hostile file with tests/weights_bombs.py, then loads it in a fresh Python process through
the public API (``superres.load_model``) and, separately, through the real command (``superres upscale
-m FILE``), and prints one row per bomb: file size, the refusal's first words, peak RSS of the process
(``resource.getrusage``: includes importing torch, the floor every row shares) and the seconds from the
load call to the refusal. The floor row loads the bundled 7.8K-parameter ESPCN the same way.

    python benchmarks/weights_bombs.py             # table; exit status 1 if a bomb is not refused
    python benchmarks/weights_bombs.py --keep DIR  # keep the files

Budget the issue sets: every bomb refused with peak RSS under 300 MB, in under 2 s.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import weights_bombs as bombs

CHILD = r"""
import json, resource, sys, time
import torch, superres
from superres.errors import SuperresError
t = time.perf_counter()
try:
    superres.load_model(sys.argv[1], device="cpu")
    outcome = "loaded"
except SuperresError as e:
    outcome = "refused: " + str(e)
dt = time.perf_counter() - t
rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"outcome": outcome, "seconds": dt, "rss_mb": rss_mb}))
"""


def _bombs() -> list[tuple[str, Callable[[Path], Path]]]:
    return [
        ("(a) SRVGG 30,000 wide, empty tensors", lambda d: bombs.srvgg_bomb(d / "a.safetensors")),
        ("(b) RRDB 3,000 blocks, empty tensors", lambda d: bombs.rrdb_bomb(d / "b.safetensors")),
        ("(b) RRDB 3,000 blocks, one float each",
         lambda d: bombs.rrdb_bomb(d / "b1.safetensors", one_value=True)),
        ("RRDB 9,990 blocks, one float each (just under the tensor cap)",
         lambda d: bombs.rrdb_bomb(d / "b2.safetensors", blocks=9_990, one_value=True)),
        ("RRDB 100,000 blocks, one float each",
         lambda d: bombs.rrdb_bomb(d / "b3.safetensors", blocks=100_000, one_value=True)),
        ("(c) .pth, 2 GiB deflated record", lambda d: bombs.pth_deflated_bomb(d / "c.pth")),
        (".pth, stride-0 (30000,3,3,3) view", lambda d: bombs.pth_stride_bomb(d / "s.pth")),
        ("legacy .pth declaring 32 GiB", lambda d: bombs.pth_legacy_bomb(d / "l.pth")),
        ("ncnn weight_data_size -64", lambda d: bombs.ncnn_negative_size(d)),
    ]


def _child(path: str) -> dict[str, object]:
    r = subprocess.run([sys.executable, "-c", CHILD, path], capture_output=True, text=True, timeout=600,
                       env={**os.environ, "PYTHONPATH": str(ROOT / "src")}, check=False)
    if r.returncode != 0:
        last = (r.stderr.strip().splitlines() or ["?"])[-1]
        return {"outcome": "CRASHED: " + last, "seconds": 0.0, "rss_mb": 0.0}
    return json.loads(r.stdout.strip().splitlines()[-1])


def _cli(path: str, d: Path) -> tuple[int, float, float, str]:
    """Exit status, peak RSS (MB, measured by /usr/bin/time -v), wall seconds and the first stderr line of
    `superres upscale in.png -o out -m FILE`."""
    from PIL import Image

    img = d / "in.png"
    if not img.exists():
        Image.new("RGB", (32, 24), (120, 80, 40)).save(img)
    stats = d / "time.txt"
    t = time.perf_counter()
    cmd = [sys.executable, "-m", "superres.cli", "upscale", str(img), "-o", str(d / "out"), "-m", path,
           "--device", "cpu"]
    r = subprocess.run(["/usr/bin/time", "-v", "-o", str(stats), *cmd], capture_output=True, text=True,
                       timeout=600, env={**os.environ, "PYTHONPATH": str(ROOT / "src")}, check=False)
    wall = time.perf_counter() - t
    kb = next((int(ln.split(":")[1]) for ln in stats.read_text().splitlines() if "Maximum resident" in ln), 0)
    first = (r.stderr.strip().splitlines() or [""])[0]
    return r.returncode, kb / 1024, wall, first


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keep", type=Path, default=None)
    ap.add_argument("--no-cli", action="store_true", help="only the in-process API rows")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="superres-bombs-")) if args.keep is None else args.keep
    root.mkdir(parents=True, exist_ok=True)
    with open("/proc/loadavg") as f:
        load = f.read().split()[:3]
    print(f"load average before: {' '.join(load)}; CPU: {_cpu()}")
    print("| bomb | file size | API: refused | API: peak RSS MB | API: s to refusal | CLI: exit "
          "| CLI: peak RSS MB | CLI: wall s | message |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---|")
    floor = _child("espcn-s-x4")
    print(f"| floor: load espcn-s-x4 (bundled, 7.8K params) | - | {str(floor['outcome'])[:6]} "
          f"| {floor['rss_mb']:.0f} | {floor['seconds']:.2f} | - | - | - | - |")
    code, rss, wall, msg = (0, 0.0, 0.0, "") if args.no_cli else _cli(str(root / "missing.safetensors"), root)
    print(f"| floor: CLI with a missing weights file | - | - | - | - | {code} | {rss:.0f} | {wall:.2f} | - |")
    bad = 0
    for i, (name, make) in enumerate(_bombs()):
        d = root / f"{i:02d}"
        d.mkdir(exist_ok=True)
        path = make(d)
        size = path.stat().st_size
        if path.suffix == ".param":
            size += path.with_suffix(".bin").stat().st_size
        api = _child(str(path))
        refused = str(api["outcome"]).startswith("refused")
        code, rss, wall, msg = (0, 0.0, 0.0, "") if args.no_cli else _cli(str(path), d)
        within = float(api["rss_mb"]) < 300 and float(api["seconds"]) < 2
        ok = refused and within and (args.no_cli or code == 2)
        bad += not ok
        msg = (msg or str(api["outcome"])).replace("|", "\\|").replace(str(root), "…")[:140]
        print(f"| {name} | {size:,} | {'yes' if refused else '**NO**'} | {api['rss_mb']:.0f} "
              f"| {api['seconds']:.2f} | {code} | {rss:.0f} | {wall:.2f} | {msg} |")
    with open("/proc/loadavg") as f:
        print(f"\nload average after: {' '.join(f.read().split()[:3])}")
    print(f"{len(_bombs()) - bad}/{len(_bombs())} bombs refused in-process under 300 MB peak RSS and 2 s")
    if args.keep is None:
        shutil.rmtree(root, ignore_errors=True)
    sys.exit(1 if bad else 0)


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip() + f", {os.cpu_count()} logical CPUs"
    except OSError:
        pass
    return "unknown"


if __name__ == "__main__":
    main()
