"""Folder and glob processing: same tree out, skip finished outputs, overlap I/O with inference, and a
report of every failure instead of stopping at the first."""

from __future__ import annotations

import errno
import glob
import os
import queue
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping

from ..errors import SuperresError

if TYPE_CHECKING:  # pragma: no cover
    from ..io.image import ImageData
    from .provenance import OutputRecords
    from .upscaler import UpscaleOptions, Upscaler

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".avif", ".heic", ".heif", ".tga", ".ppm", ".pgm")
_ALPHA_FORMATS = (".png", ".webp", ".tif", ".tiff")


@dataclass(frozen=True)
class Job:
    src: Path
    dst: Path


@dataclass
class BatchReport:
    done: list[Job] = field(default_factory=list)
    skipped: list[Job] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    #: temporary files of an earlier, killed run that were removed before this one started
    cleaned: list[Path] = field(default_factory=list)
    #: stopped by Ctrl-C or SIGTERM: ``done`` lists what was finished, nothing else was written
    interrupted: bool = False
    #: (input, what was lost on reading it): extra frames, clipped float samples
    warnings: list[tuple[Path, str]] = field(default_factory=list)
    #: outputs that exist but other (or unknown) settings made: kept, with the reason (--overwrite redoes them)
    kept: list[tuple[Job, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed


def expand_inputs(inputs: Iterable[str | Path], *, exclude: Path | None = None) -> list[tuple[Path, Path]]:
    """Files, folders (recursive) and globs -> (file, path relative to its root) pairs, in sorted order.

    A name that exists nowhere is kept so that it is reported as a failure, not silently dropped."""
    return scan_inputs(inputs, exclude=exclude).pairs


@dataclass
class Scan:
    """What :func:`scan_inputs` found: inputs, what a folder walk would otherwise drop silently (dangling
    links, link loops) and how many images were left out for lying inside the output folder."""

    pairs: list[tuple[Path, Path]]
    problems: list[tuple[Path, str]]
    excluded: int = 0


def scan_inputs(inputs: Iterable[str | Path], *, exclude: Path | None = None) -> Scan:
    """:func:`expand_inputs` plus what a folder walk would otherwise drop silently: dangling links.

    Files under ``exclude`` (the output folder, when it lies inside an input folder) are never taken
    as inputs, so a rerun does not upscale its own outputs. Links to folders are not followed (no
    loops); links to files are."""
    pairs: list[tuple[Path, Path]] = []
    problems: list[tuple[Path, str]] = []
    skip_root = _resolved(exclude) if exclude is not None else None
    left_out = [0]

    def excluded(f: Path) -> bool:
        out = skip_root is not None and _resolved(f).is_relative_to(skip_root)
        left_out[0] += out
        return out

    for item in inputs:
        p = Path(item).expanduser()
        if p.is_dir():
            for f in sorted(p.rglob("*")):
                if f.suffix.lower() not in IMAGE_SUFFIXES:
                    continue
                if f.is_symlink() and not f.exists():
                    problems.append((f, _broken_link_reason(f)))
                elif f.is_file() and not excluded(f):
                    pairs.append((f, f.relative_to(p)))
        elif p.exists():
            pairs.append((p, Path(p.name)))
        elif any(ch in str(item) for ch in "*?["):
            matches = sorted(Path(m) for m in glob.glob(str(item), recursive=True))
            pairs += [(m, Path(m.name)) for m in matches if m.is_file() and not excluded(m)]
        else:
            pairs.append((p, Path(p.name)))
    return Scan(pairs, problems, left_out[0])


def _broken_link_reason(link: Path) -> str:
    try:
        os.stat(link)
    except OSError as e:
        if e.errno == errno.ELOOP:
            return "symbolic link loop (the link points back to itself)"
    return "dangling link (its target does not exist)"


def _resolved(p: Path) -> Path:
    try:
        return p.expanduser().resolve()
    except (OSError, RuntimeError):  # link loops
        return p.expanduser().absolute()


def same_file(a: Path, b: Path) -> bool:
    """True when writing ``b`` would replace ``a``: same path after links, or the same inode."""
    if _resolved(a) == _resolved(b):
        return True
    try:
        return b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def find_collisions(jobs: list[Job]) -> list[tuple[Path, list[Path]]]:
    """Outputs that two or more inputs would be written to (x.png and x.gif; d1/y.png and d2/y.png)."""
    by_dst: dict[Path, list[Path]] = {}
    for job in jobs:
        by_dst.setdefault(_resolved(job.dst), []).append(job.src)
    return [(dst, srcs) for dst, srcs in by_dst.items() if len(srcs) > 1]


@dataclass
class BatchPlan:
    """What a batch will do, decided before any image is read."""

    todo: list[tuple[Path, Path]]  # (input file, its path relative to its input folder)
    skipped: list[Job]  # the output is already there, made by the same settings (no --overwrite)
    failed: list[tuple[Path, str]]  # dangling links, link loops, an output that would replace an input
    total: int  # input files found
    #: the output is there but other (or unknown) settings made it: kept, not redone without --overwrite
    kept: list[tuple[Job, str]] = field(default_factory=list)
    records: "OutputRecords | None" = None


def plan_batch(inputs: Iterable[str | Path], out_root: Path, ext: str, suffix: str, overwrite: bool,
               settings: "Mapping[str, Any] | None" = None) -> BatchPlan:
    """The one planning rule of every batch engine (local threads, Ray): inputs found (the output folder
    excluded), outputs that two inputs would share refused before any work (``SuperresError``), an output
    that would replace an input or land in an input folder (through any link) listed as failed, finished
    outputs skipped unless ``overwrite``. With ``settings`` (:mod:`.provenance`), only outputs that the same
    settings made are skipped; the others are listed in ``kept`` with the reason."""
    from .provenance import OutputRecords

    inputs = list(inputs)
    for folder in inputs:
        if Path(folder).is_dir() and _resolved(Path(folder)) == _resolved(out_root):
            raise SuperresError(f"the output folder '{out_root}' is the input folder: outputs would replace or "
                                "mix with the inputs; choose another -o")
    scan = scan_inputs(inputs, exclude=out_root)
    pairs, problems = scan.pairs, scan.problems
    if not pairs:
        where = ", ".join(str(i) for i in inputs) or "(no inputs)"
        if scan.excluded:
            raise SuperresError(f"no images to upscale in {where}: its {scan.excluded} image(s) lie inside the "
                                f"output folder '{out_root}', whose files are never read back as inputs; "
                                "choose an -o outside the inputs")
        raise SuperresError(f"no images found in {where} (looked for {', '.join(IMAGE_SUFFIXES)})")
    planned = [Job(src, output_path(rel, out_root, ext, suffix)) for src, rel in pairs]
    clashes = find_collisions(planned)
    if clashes:
        dst, srcs = clashes[0]
        more = f" (and {len(clashes) - 1} more output(s))" if len(clashes) > 1 else ""
        raise SuperresError(f"{len(srcs)} inputs would be written to '{dst}': "
                            f"{', '.join(str(p) for p in srcs)}{more}; rename one of them, or upscale them in "
                            "separate runs with a different -o each")
    plan = BatchPlan([], [], list(problems), len(pairs))
    guard = _InputGuard(inputs, [src for src, _ in pairs], out_root)
    records = plan.records = OutputRecords(out_root) if settings is not None else None
    for (src, rel), job in zip(pairs, planned):
        alpha_dst = output_path(rel, out_root, ext, suffix, has_alpha=True)
        if same_file(src, job.dst) or same_file(src, alpha_dst):
            plan.failed.append((src, f"output '{job.dst}' is the input file itself; choose another -o"))
            continue
        refusal = guard.refusal(job.dst) or guard.refusal(alpha_dst)
        if refusal:
            plan.failed.append((src, refusal))
            continue
        existing = None if overwrite else _existing_output(rel, out_root, suffix, ext)
        if existing is None:
            plan.todo.append((src, rel))
        elif records is None or settings is None or records.matches(existing, settings):
            plan.skipped.append(Job(src, existing))
        else:
            plan.kept.append((Job(src, existing), records.why_not(existing, settings)))
    return plan


class _InputGuard:
    """Where an output must never land once every link is followed: on an input file, or inside an input
    folder (unless inside the output folder itself, which may lie in an input folder: its files are never
    read back). A link inside the output tree (``out/sub -> in``) is what this catches."""

    def __init__(self, inputs: list[str | Path], files: list[Path], out_root: Path) -> None:
        self.files = {_resolved(f) for f in files}
        self.folders = [_resolved(Path(i)) for i in inputs if Path(i).is_dir()]
        self.out_root = _resolved(out_root)

    def refusal(self, dst: Path) -> str | None:
        real = _resolved(dst)
        if real in self.files:
            if real == dst.expanduser().absolute():
                return f"output '{dst}' would replace the input '{real}'; choose another -o"
            return (f"output '{dst}' leads through a link to the input '{real}'; remove the link or "
                    "choose another -o")
        if real.is_relative_to(self.out_root):
            return None
        for folder in self.folders:
            if real.is_relative_to(folder):
                return (f"output '{dst}' leads through a link into the input folder '{folder}'; remove "
                        "the link or choose another -o")
        return None


def output_path(rel: Path, out_dir: Path, ext: str, suffix: str, has_alpha: bool | None = None) -> Path:
    """Where ``rel`` goes: same relative folder, ``ext`` ("auto" keeps the input's format)."""
    src_ext = rel.suffix.lower()
    if ext == "auto":
        new = src_ext if src_ext in (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp") else ".png"
    else:
        new = "." + ext.lower().lstrip(".")
    if has_alpha and new not in _ALPHA_FORMATS:
        new = ".png"
    return out_dir / rel.parent / f"{rel.stem}{suffix}{new}"


def run_batch(
    upscaler: "Upscaler",
    inputs: Iterable[str | Path],
    out_dir: str | Path,
    *,
    ext: str = "auto",
    suffix: str = "",
    overwrite: bool = False,
    outscale: float | None = None,
    width: int | None = None,
    height: int | None = None,
    quality: int = 95,
    max_pixels: int | None = None,
    options: "UpscaleOptions | None" = None,
    progress: Callable[[int, int, Path], None] | None = None,
    max_output_pixels: int | None = None,
    process: "Callable[[Path, Path, ImageData], ImageData] | None" = None,
    settings: "Mapping[str, Any] | None" = None,
    image_progress: Callable[[float], None] | None = None,
) -> BatchReport:
    """Upscale many images. Reading the next image and writing the previous one run in threads beside
    the network; every output is written atomically; failures are collected, never fatal.

    Refused before any work (``SuperresError``): bad size options, no images at all, two inputs that
    would share one output. Per file (listed in ``failed``, the batch goes on): an output that would
    replace its own input, an output over ``max_output_pixels`` (None: the default limit, 0: none),
    running out of memory. ``process(src, dst, image)``, when given, replaces the upscaler call (the quality
    gate with its fallback, superres.inference.report). ``settings``: what decides the outputs
    (:func:`.provenance.settings_of`, computed from ``upscaler`` and the options when not given); each output
    is recorded with them, and an existing output that other settings made is kept and listed in ``kept``
    (redone with ``overwrite``). Ctrl-C/SIGTERM (KeyboardInterrupt) stops it cleanly: the report comes back
    with ``interrupted`` set, finished outputs listed and no partial or temporary file left.
    ``image_progress(share)``: the share of the current image done, from its tiles and the steps a network
    reports inside one (a bar that moves during one large photo; not with ``process``)."""
    from ..io.atomic import remove_stale_temps
    from ..io.image import read_image, write_image
    from .limits import DEFAULT_MAX_OUTPUT_PIXELS, check_output_size, check_size_options, output_size
    from .provenance import settings_of

    check_size_options(outscale, width, height)
    out_root = Path(out_dir)
    if settings is None:
        settings = settings_of(upscaler, outscale=outscale, width=width, height=height, quality=quality,
                               alpha=options.alpha if options is not None else None)
    plan = plan_batch(inputs, out_root, ext, suffix, overwrite, settings)
    records = plan.records
    report = BatchReport(skipped=plan.skipped, failed=plan.failed, kept=plan.kept)
    report.cleaned = remove_stale_temps(out_root)
    todo = plan.todo
    total = plan.total
    kwargs = {} if max_pixels is None else {"max_pixels": max_pixels}
    limit = DEFAULT_MAX_OUTPUT_PIXELS if max_output_pixels is None else (max_output_pixels or None)

    loaded: queue.Queue[tuple[Path, Path, "ImageData | None", str | None] | None] = queue.Queue(maxsize=2)
    stop = threading.Event()

    def reader() -> None:
        for src, rel in todo:
            if stop.is_set():
                return
            try:
                item = (src, rel, read_image(src, **kwargs), None)
            except SuperresError as e:
                item = (src, rel, None, str(e))
            except MemoryError:
                item = (src, rel, None, f"cannot read '{src}': not enough memory to decode it")
            except Exception as e:  # noqa: BLE001 - a batch reports, it doesn't die
                item = (src, rel, None, f"cannot read '{src}': {e}")
            loaded.put(item)
        loaded.put(None)

    threading.Thread(target=reader, name="superres-reader", daemon=True).start()
    pending: list[tuple[Job, Future[Path]]] = []
    count = len(report.skipped) + len(report.kept)

    def settle(job: Job, fut: Future[Path]) -> None:
        if fut.cancelled():
            return
        try:
            fut.result()
            report.done.append(job)
            if records is not None and settings is not None:
                records.add(job.dst, settings)
        except SuperresError as e:
            report.failed.append((job.src, str(e)))
        except MemoryError:
            report.failed.append((job.src, f"cannot write '{job.dst}': not enough memory"))
        except Exception as e:  # noqa: BLE001
            report.failed.append((job.src, f"cannot write '{job.dst}': {e}"))

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="superres-writer") as pool:
        try:
            while (item := loaded.get()) is not None:
                src, rel, img, err = item
                count += 1
                if progress:
                    progress(count, total, src)
                if img is None:
                    report.failed.append((src, err or "unreadable"))
                    continue
                report.warnings += [(src, note) for note in img.notes]
                dst = output_path(rel, out_root, ext, suffix, has_alpha=img.alpha is not None)
                changed = _format_change(src, dst, ext)
                if changed:
                    report.warnings.append((src, changed))
                h, w = img.color.shape[:2]
                try:
                    size = output_size(w, h, upscaler.scale, outscale, width, height)
                    check_output_size(w, h, *size, limit, dst.suffix)
                    run = upscaler
                    if image_progress is not None and process is None:
                        tiles = upscaler.count_tiles(w, h, size, img.alpha is not None, options)
                        run = upscaler.with_share_hook(tiles, image_progress)
                    result = process(src, dst, img) if process is not None else run.upscale_image(
                        img, outscale=outscale, width=width, height=height, options=options)
                except SuperresError as e:
                    report.failed.append((src, str(e)))
                    continue
                except MemoryError:
                    report.failed.append((src, f"not enough memory to upscale this {w}x{h} image "
                                               "(try a smaller --tile or --max-output-pixels)"))
                    continue
                del img
                while len(pending) >= 2:  # bounded: finished images must not pile up in memory
                    settle(*pending.pop(0))
                pending.append((Job(src, dst), pool.submit(write_image, result, dst, quality=quality)))
                del result
        except KeyboardInterrupt:
            stop.set()
            report.interrupted = True
            for _, fut in pending:
                fut.cancel()  # not started yet: nothing on disk; a started write finishes atomically
        for job, fut in pending:
            try:
                settle(job, fut)
            except KeyboardInterrupt:
                report.interrupted = True
    return report


def _format_change(src: Path, dst: Path, ext: str) -> str:
    """A note when ``--ext auto`` could not keep the input's format (GIF, AVIF...; transparency in JPEG)."""
    was, now = src.suffix.lower(), dst.suffix.lower()
    if ext != "auto" or was == now or {was, now} <= {".jpg", ".jpeg"} or {was, now} <= {".tif", ".tiff"}:
        return ""
    name = now.lstrip(".").upper()
    if was in (".jpg", ".jpeg", ".bmp") and now == ".png":
        return f"written as {name}: {was.lstrip('.').upper()} cannot store its transparency"
    return f"written as {name}: {was.lstrip('.').upper()} is not an output format"


def _existing_output(rel: Path, out_root: Path, suffix: str, ext: str) -> Path | None:
    """With ``ext=auto`` the output may have become .png (alpha); either counts as done."""
    for candidate in (output_path(rel, out_root, ext, suffix), output_path(rel, out_root, ext, suffix, has_alpha=True)):
        if candidate.exists():
            return candidate
    return None
