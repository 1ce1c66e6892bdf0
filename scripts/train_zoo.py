"""Train several recipes at once inside one wall-clock budget: the prepared command for a lent GPU.

Why: a GPU lent for minutes must not sit idle on set-up, on one tiny model at a time, or on a cosine
schedule that never reaches its end because the budget cut it short. So this script

1. writes the MATLAB-bicubic LR of every training HR folder once per scale (the same pixels the HR-only
   loader makes per patch), so each run reads paired folders and its loader only crops;
2. starts every recipe as its own ``superres train`` process on ``--device``, all at once;
3. after ``--probe`` seconds (each run stops itself with a checkpoint) reads each run's iterations/s and
   resumes it with ``train.iterations`` set so that its schedule ends inside what is left of ``--budget``;
4. publishes every run into ``OUT/zoo`` (weights + card measured by ``superres eval``, on ``--device``),
   writes ``OUT/results.md`` and packs the zoo into ``OUT/zoo-N.tgz`` files of at most ``--pack-mib``.

    python scripts/train_zoo.py --out OUT --budget 480 --device cuda
    python scripts/train_zoo.py --out /tmp/zt --budget 80 --probe 15 --reserve 30 --device cpu --recipes espcn_x2 --datasets Set5

Recipes may set ``model.pretrained`` to a zoo name (shipped weights travel with the package).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CLASSIC = [f"{a}_x{s}" for a in ("srcnn", "fsrcnn", "espcn", "edsr_baseline") for s in (2, 3, 4)]


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "superres.cli", *args]


def write_lr(hr_dir: Path, scale: int, out: Path) -> Path:
    """MATLAB-bicubic x1/scale of every image in ``hr_dir`` as PNG under ``out`` (done once, reused)."""
    import numpy as np
    from PIL import Image

    from superres.data.datasets import list_images, load_rgb
    from superres.resize import bicubic_degrade

    out.mkdir(parents=True, exist_ok=True)
    for f in list_images(hr_dir, "HR"):
        dst = out / f"{f.stem}.png"
        if not dst.exists():
            lr = bicubic_degrade(load_rgb(f), scale)
            tmp = dst.with_suffix(".tmp.png")
            Image.fromarray(np.ascontiguousarray(lr)).save(tmp)
            tmp.replace(dst)
    return out


def paired_override(recipe: Path, data_root: Path, lr_root: Path) -> tuple[str, int]:
    """``data.train=[...]`` pointing each HR folder of the recipe at its written LR folder."""
    from superres.train.config import load_config

    cfg = load_config(recipe, [], data_root=data_root)
    s = cfg.data.scale
    entries = []
    for t in cfg.data.train:
        if t.lr:  # already paired
            entries.append({"hr": t.hr, "lr": t.lr})
            continue
        hr = Path(t.hr)
        key = f"{hr.parent.name}_{hr.name}" if hr.name == "HR" else hr.name
        entries.append({"hr": str(hr), "lr": str(write_lr(hr, s, lr_root / key / f"X{s}"))})
    if cfg.data.degradation.name != "bicubic":
        raise SystemExit(f"{recipe.name}: only bicubic recipes can be pre-degraded (got {cfg.data.degradation.name})")
    return "data.train=" + json.dumps(entries), s


def progress_of(run: Path) -> tuple[int, float]:
    """Iterations done and iterations/s over the training time so far (start-up included: conservative)."""
    info = json.loads((run / "run.json").read_text())
    return int(info["iteration"]), int(info["iteration"]) / max(1e-9, float(info["train_seconds"]))


def pack(zoo: Path, out: Path, limit_mib: float) -> list[Path]:
    """Greedy packing of the zoo files into tarballs of at most ``limit_mib`` each (a weights file and its
    card stay together)."""
    groups = sorted(({p.stem: [p, p.with_suffix(".json")] for p in zoo.glob("*.safetensors")}).items(),
                    key=lambda kv: -sum(f.stat().st_size for f in kv[1] if f.exists()))
    bins: list[list[Path]] = []
    sizes: list[int] = []
    limit = int(limit_mib * 2**20)
    for _, files in groups:
        size = sum(f.stat().st_size for f in files if f.exists())
        for i, used in enumerate(sizes):
            if used + size <= limit:
                bins[i] += files
                sizes[i] += size
                break
        else:
            bins.append(list(files))
            sizes.append(size)
    paths = []
    for i, files in enumerate(bins):
        p = out / f"zoo-{i}.tgz"
        with tarfile.open(p, "w:gz") as tar:
            for f in files:
                if f.exists():
                    tar.add(f, arcname=f.name)
        paths.append(p)
    return paths


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--recipes", default=",".join(CLASSIC), help="comma-separated names in configs/")
    ap.add_argument("--budget", type=float, default=480.0, help="seconds for everything, publishing included")
    ap.add_argument("--probe", type=float, default=40.0, help="seconds of training before the rates are read")
    ap.add_argument("--reserve", type=float, default=90.0, help="seconds kept for publishing")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("SUPERRES_DATA", REPO.parent / "shared" / "data")))
    ap.add_argument("--datasets", default="Set5,Set14,BSD100")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per run")
    ap.add_argument("--pack-mib", type=float, default=15.0)
    ap.add_argument("--set", action="append", default=[], help="extra override for every run (key=value)")
    a = ap.parse_args()
    t0 = time.monotonic()
    out = a.out.resolve()
    runs, logs = out / "runs", out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": str(a.threads)}
    names = [r.strip() for r in a.recipes.split(",") if r.strip()]
    plans = {}
    for name in names:
        recipe = REPO / "configs" / f"{name}.yaml"
        over, _ = paired_override(recipe, a.data, out / "lr")
        plans[name] = [str(recipe), over, f"train.device={a.device}", f"train.threads={a.threads}",
                       "train.iterations=100000000", *a.set]
    print(f"[{time.monotonic() - t0:5.0f}s] LR written; starting {len(names)} runs", flush=True)

    def launch(name: str, args: list[str], tag: str) -> subprocess.Popen[bytes]:
        log = open(logs / f"{name}.{tag}.log", "wb")  # noqa: SIM115 - closed when the process ends
        return subprocess.Popen(_cli("train", *args), stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)

    procs = {n: launch(n, [*p, "--out", str(runs), "--name", n, "--data-root", str(a.data),
                           "--max-time", str(a.probe)], "probe") for n, p in plans.items()}
    for p in procs.values():
        p.wait()
    left = a.budget - (time.monotonic() - t0) - a.reserve
    if left < a.probe:
        print(f"  warning: only {left:.0f}s left for training after the probe; raise --budget", flush=True)
    totals = {}
    for n in names:
        done, rate = progress_of(runs / n)
        totals[n] = done + max(1, int(rate * left * 0.92))  # start-up and checkpoints take the rest
        print(f"  {n}: {done} iterations, {rate:.1f} it/s -> train.iterations={totals[n]}", flush=True)
    procs = {n: launch(n, ["--resume", str(runs / n), f"train.iterations={totals[n]}",
                           "--max-time", str(max(5.0, left))], "main") for n in names}
    for n, p in procs.items():
        if p.wait() != 0:
            print(f"  {n}: exited {p.returncode}, see {logs / (n + '.main.log')}", flush=True)
    print(f"[{time.monotonic() - t0:5.0f}s] training done; publishing", flush=True)

    zoo = out / "zoo"

    def publish(n: str) -> tuple[str, int]:
        cmd = _cli("publish", str(runs / n), "--name", n.replace("_", "-"), "--out-dir", str(zoo),
                   "--device", a.device, "--datasets", a.datasets, "--data-root", str(a.data), "--overwrite")
        with open(logs / f"{n}.publish.log", "wb") as log:
            return n, subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO).returncode

    with ThreadPoolExecutor(max_workers=4) as pool:
        for n, rc in pool.map(publish, names):
            if rc:
                print(f"  {n}: publish exited {rc}", flush=True)
    sets = [d.strip() for d in a.datasets.split(",") if d.strip()]
    lines = ["| model | iterations | train s | device | " + " | ".join(sets) + " |",
             "|---|---:|---:|---|" + "---|" * len(sets)]
    for n in names:
        card_path = zoo / f"{n.replace('_', '-')}.json"
        if not card_path.exists():
            lines.append(f"| {n} | – | – | – |" + " – |" * len(sets))
            continue
        card = json.loads(card_path.read_text())
        tr, m = card["training"], card["metrics"]
        cells = [f"{m[d]['psnr_y']:.2f} / {m[d]['ssim_y']:.4f}" if d in m else "–" for d in sets]
        lines.append(f"| {n} | {tr['iterations']} | {tr['train_seconds']:.0f} | {tr['device']} | " + " | ".join(cells) + " |")
    (out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    packed = pack(zoo, out, a.pack_mib) if zoo.is_dir() else []
    print(f"[{time.monotonic() - t0:5.0f}s] packed {', '.join(p.name for p in packed) or 'nothing'}", flush=True)


if __name__ == "__main__":
    main()
