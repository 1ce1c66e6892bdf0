"""Fast fp32 CPU inference: Winograd convolutions, fused epilogues, coarse-grained threads.

``accelerate(net, device)`` returns a forward function equal to ``net(x)`` within float rounding (max abs
difference 1e-5 .. 5e-5 on [0, 1] images for the Real-ESRGAN models; ``tests/test_fast.py`` checks it).
Its speed against PyTorch eager and the ncnn runtime is measured by ``benchmarks/cpu_speed.py``; what was
measured while building it, and the alternatives tried and dropped, are in ``benchmarks/README.md``.

How:

* **Fewer multiplies.** Every stride-1, pad-1 3x3 convolution is computed as Y = A^T [(G g G^T) . (B^T d B)] A
  on (m+2) x (m+2) input tiles giving m x m outputs (Lavin & Gray 2015): F(6x6, 3x3) needs 64 multiplies
  per 36 outputs instead of 324 (5.1x fewer), F(4x4, 3x3) 36 per 16 (4x). The products over channels are
  (m+2)^2 matrix products ``(tiles x Cin) @ (Cin x Cout)``. Weights are transformed once, in float64.
* **Compiled transforms and GEMM.** A small C kernel (``fast_kernels.c`` beside this module, package data;
  built once per machine with the system C compiler into the superres cache, self-tested, loaded with
  ctypes) does the input transform, the GEMMs
  and the output transform of a chunk of tiles in one call. The transforms read and write images with any
  strides (the NCHW input and output are used in place) and fold in a nearest x2 upsampling (input side)
  and bias, (P)ReLU / LeakyReLU / SiLU / tanh, SPAN's gate, up to two scaled residual adds and a pixel
  shuffle (+ SRVGG's base image) (output side). The GEMM is an AVX2/FMA 6x16 register-blocked kernel at
  ~95% of one core's FMA peak on these thin shapes, where ``torch.bmm`` (MKL) reaches 65-75%. The kernel is
  built in variants (AVX-512, AVX2+FMA, portable without intrinsics); each process runs the best its CPU
  has (/proc/cpuinfo), or ``$SUPERRES_FAST_KERNEL`` (:func:`kernel_variant` says which). Without a
  compiler the same algorithm can run with PyTorch transforms (``winograd_torch``), but that is slower
  than channels-last eager, which ``auto`` then picks.
* **Whole-network plans.** SRVGGNetCompact, RRDBNet, SPAN, SRMD / SRMDNF, waifu2x UpConv7, ESPCN and EDSR
  are re-expressed as sequences of such convolutions (``_plan_class``; each plan's docstring says how its
  family maps: SPAN's SiLU and attention gate are output-transform epilogues, UpConv7's unpadded convs run
  on the exact region of a padded canvas and its transposed conv is a 3x3 conv with four output phases,
  EDSR folds its mean shift into the last conv). Real-CUGAN and CUNet (U-Nets with SE gates): ``_UNetPlan``.
  In RRDB's dense blocks the concatenated inputs are never
  materialised: each new feature is transformed once and appended in the Winograd domain, and each conv
  multiplies a channel prefix of that store (transform work per block: 192 channels instead of 640; the
  GEMM prefetches the store's rows).
* **Threads that do not wait on each other.** Each convolution is cut into equal chunks of tiles; a pool of
  worker threads (as many as torch's intra-op threads, each running torch single-threaded) takes chunks
  from a shared counter, one barrier per convolution, which avoids the stalls of fine-grained OpenMP regions
  on a machine shared with other processes.

Numerics: on one layer the transforms amplify rounding (F(4,3) ~3.5x, F(6,3) ~5x a direct fp32 conv);
through the 18 convs of realesr-animevideov3 and the 351 of realesrgan-x4plus the [0, 1] output stays
within ~5e-5 of fp32 eager (F(4,3): about half that).

Give the engine large tiles: below ~96x96 the per-convolution synchronisation dominates.

Thread-safety: a returned forward may be called from several threads at once (each call keeps its
activations local; worker scratch is per thread; callers share the worker pool). The original network is
never modified: prepared weights are copies, made once per network and mode, and rebuilt if the network's
parameters change in place.
"""

from __future__ import annotations

import contextlib
import copy
import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
import threading
import weakref
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

log = logging.getLogger(__name__)

Forward = Callable[[torch.Tensor], torch.Tensor]
MODES = ("auto", "eager", "channels_last", "winograd", "winograd_f4", "winograd_torch")
_POS_PAD = 16  # floats between the planes of a chunk: avoids 4K-aliased L1 sets (transforms 2x faster)

# ---- Winograd matrices (Lavin & Gray 2015). F(4,3): points 0, 1, -1, 2, -2, inf; F(6,3): 0, 1, -1, 1/2,
# -1/2, 2, -2, inf (the order matches the C kernels' formulas) --------------------------------------------

_MATRICES: dict[int, tuple[tuple, tuple, tuple]] = {
    4: (
        ((4, 0, -5, 0, 1, 0),
         (0, -4, -4, 1, 1, 0),
         (0, 4, -4, -1, 1, 0),
         (0, -2, -1, 2, 1, 0),
         (0, 2, -1, -2, 1, 0),
         (0, 4, 0, -5, 0, 1)),
        ((1 / 4, 0, 0),
         (-1 / 6, -1 / 6, -1 / 6),
         (-1 / 6, 1 / 6, -1 / 6),
         (1 / 24, 1 / 12, 1 / 6),
         (1 / 24, -1 / 12, 1 / 6),
         (0, 0, 1)),
        ((1, 1, 1, 1, 1, 0),
         (0, 1, -1, 2, -2, 0),
         (0, 1, 1, 4, 4, 0),
         (0, 1, -1, 8, -8, 1)),
    ),
    6: (
        ((1, 0, -21 / 4, 0, 21 / 4, 0, -1, 0),
         (0, 1, 1, -17 / 4, -17 / 4, 1, 1, 0),
         (0, -1, 1, 17 / 4, -17 / 4, -1, 1, 0),
         (0, 1 / 2, 1 / 4, -5 / 2, -5 / 4, 2, 1, 0),
         (0, -1 / 2, 1 / 4, 5 / 2, -5 / 4, -2, 1, 0),
         (0, 2, 4, -5 / 2, -5, 1 / 2, 1, 0),
         (0, -2, 4, 5 / 2, -5, -1 / 2, 1, 0),
         (0, -1, 0, 21 / 4, 0, -21 / 4, 0, 1)),
        ((1, 0, 0),
         (-2 / 9, -2 / 9, -2 / 9),
         (-2 / 9, 2 / 9, -2 / 9),
         (1 / 90, 1 / 45, 2 / 45),
         (1 / 90, -1 / 45, 2 / 45),
         (32 / 45, 16 / 45, 8 / 45),
         (32 / 45, -16 / 45, 8 / 45),
         (0, 0, 1)),
        ((1, 1, 1, 1, 1, 1, 1, 0),
         (0, 1, -1, 2, -2, 1 / 2, -1 / 2, 0),
         (0, 1, 1, 4, 4, 1 / 4, 1 / 4, 0),
         (0, 1, -1, 8, -8, 1 / 8, -1 / 8, 0),
         (0, 1, 1, 16, 16, 1 / 16, 1 / 16, 0),
         (0, 1, -1, 32, -32, 1 / 32, -1 / 32, 1)),
    ),
}


def winograd_matrices(m: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(B^T, G, A^T) of F(m x m, 3 x 3) in float64; 1-D: y = A^T ((G g) * (B^T d)) is the correlation of d
    (m + 2 values) with g (3 taps)."""
    return tuple(torch.tensor(t, dtype=torch.float64) for t in _MATRICES[m])  # type: ignore[return-value]


def winograd_weights(weight: torch.Tensor, m: int = 4, cin_pad: int = 0, cout_pad: int = 0) -> torch.Tensor:
    """3x3 conv weight (Cout, Cin, 3, 3) -> U ((m+2)^2, Cin', Cout') with U[a*(m+2)+b] = (G g G^T)[a, b],
    computed in float64 and rounded once. ``cin_pad`` / ``cout_pad`` append zero input / output channels."""
    g = winograd_matrices(m)[1]
    w = weight.detach().to("cpu", torch.float64)
    cout, cin = w.shape[:2]
    p = (m + 2) ** 2
    # one (P, 9) @ (9, Cin*Cout) product: kron(G, G)[a*(m+2)+b, k*3+l] = G[a, k] G[b, l]
    u = (torch.kron(g, g) @ w.permute(2, 3, 1, 0).reshape(9, cin * cout)).view(p, cin, cout)
    if cin_pad > cin or cout_pad > cout:
        u = F.pad(u, (0, max(0, cout_pad - cout), 0, max(0, cin_pad - cin)))
    return u.to(torch.float32).contiguous()


# ---- transform kernels: C (built once per machine) and a PyTorch fallback with the same interface -------

def _c_source() -> str:
    """The kernel's C source, shipped beside this module as package data (``fast_kernels.c``)."""
    from importlib.resources import files

    return files(__package__).joinpath("fast_kernels.c").read_text(encoding="utf-8")



class _Epi(ctypes.Structure):
    _fields_ = [("y", ctypes.c_void_p), ("sy", ctypes.c_int64), ("sx", ctypes.c_int64),
                ("sc", ctypes.c_int64),
                ("cvalid", ctypes.c_int64), ("shuf", ctypes.c_int64),
                ("bias", ctypes.c_void_p), ("act", ctypes.c_int64), ("slope", ctypes.c_float),
                ("alpha", ctypes.c_void_p),
                ("r1", ctypes.c_void_p), ("r1sy", ctypes.c_int64), ("r1sx", ctypes.c_int64),
                ("r1sc", ctypes.c_int64), ("s1", ctypes.c_float),
                ("r2", ctypes.c_void_p), ("r2sy", ctypes.c_int64), ("r2sx", ctypes.c_int64),
                ("r2sc", ctypes.c_int64), ("s2", ctypes.c_float)]


@dataclass(frozen=True)
class _Epilogue:
    """What the output transform applies after A^T M A: bias, activation, two scaled residuals, and how it
    stores (``shuffle`` = s: pixel shuffle into a (C/s^2, H*s, W*s) destination, ``r1`` then being the
    (H, W, C/s^2) LR image added to every s x s block, as SRVGG does)."""

    bias: torch.Tensor | None = None
    act: int = 0  # 0 none, 1 leaky(slope) (ReLU: slope 0), 2 PReLU(alpha), 3 SiLU, 4 SPAN gate (r1), 5 tanh
    slope: float = 0.0
    alpha: torch.Tensor | None = None  # (Cout,)
    r1: torch.Tensor | None = None  # (H, W, C) views, any strides: y = y * s1 + r1
    s1: float = 1.0
    r2: torch.Tensor | None = None
    s2: float = 1.0
    shuffle: int = 0


def _ptr(t: torch.Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


def _strides3(t: torch.Tensor | None) -> tuple[int, int, int]:
    return (0, 0, 0) if t is None else (t.stride(0), t.stride(1), t.stride(2))


class _CKernels:
    """ctypes wrappers of the compiled transforms (ctypes releases the GIL during each call).

    ``wino_in(m, src, up, h, w, ntx, t0, t1, v)``: src is an (h/up, w/up, c) view with any strides; v a
    (P, t1-t0, C >= c) view whose channels >= c get zeros. ``epilogue(dst, ep)`` prepares the output side
    once per convolution; ``wino_out(m, mm, ntx, t0, t1, h, w, epi)`` then writes tiles [t0, t1)."""

    name = "c"
    row_aligned = False
    tiles = (4, 6)
    variant = "native"  # which build (KERNEL_VARIANTS), set by the loader

    def __init__(self, lib: ctypes.CDLL) -> None:
        i64, ptr = ctypes.c_int64, ctypes.c_void_p
        self._in = lib.sr_wino_in
        self._in.restype = None
        self._in.argtypes = [ctypes.c_int, ptr, *[i64] * 11, ptr, i64, i64]
        self._out = lib.sr_wino_out
        self._out.restype = None
        self._out.argtypes = [ctypes.c_int, ptr, i64, i64, i64, i64, i64, i64, i64, i64, ctypes.POINTER(_Epi)]
        self._gemm = lib.sr_gemm
        self._gemm.restype = None
        self._gemm.argtypes = [i64, ptr, i64, i64, i64, i64, ptr, i64, ptr, i64, i64]
        self.own_gemm = bool(lib.sr_gemm_available())
        self.lib = lib  # the plans' own entry points (_UNetOps)
        self._chunk = lib.sr_wino_chunk
        self._chunk.restype = None
        self._chunk.argtypes = [ctypes.c_int, ptr, i64, i64, i64, i64, i64, i64, i64, i64, i64, i64,
                                ptr, i64, i64, i64, i64, i64, ptr, i64, ptr, i64, i64, ctypes.POINTER(_Epi)]
        self._attn = lib.sr_map_attention
        self._attn.restype = None
        self._attn.argtypes = [*[i64] * 10, ctypes.c_float, ptr, *[i64] * 5, ptr, ptr, *[i64] * 4, ptr, i64,
                               ptr, ptr, ptr, ptr]

    def map_attention(self, w0: int, w1: int, win: Any, bias_blocks: torch.Tensor,
                      mask_blocks: torch.Tensor | None, mask_of: torch.Tensor | None) -> None:
        """Windows [w0, w1) of ``win`` (a checked :class:`superres.archs.base.MapWindows`; its rowmap, outrow
        and mask_of int64 and contiguous) with the bias and masks in :func:`attention_bias_blocks` layout."""
        qkv, out = win.qkv, win.out
        wh, ww = win.window
        n, d = wh * ww, win.head_dim
        work = _scratch_buf("attention", (12 + 2 * d) * n)
        self._attn(w0, w1, win.rowmap.numel() // wh, qkv.shape[2] // ww, wh, ww, qkv.shape[2], win.col_shift,
                   win.heads, d, d ** -0.5, qkv.data_ptr(), qkv.stride(0), qkv.stride(1), qkv.stride(2),
                   win.channel, qkv.shape[3] // 3, win.rowmap.data_ptr(), out.data_ptr(), out.stride(0),
                   out.stride(1), out.stride(2), win.out_channel, win.outrow.data_ptr(), out.shape[2],
                   bias_blocks.data_ptr(), _ptr(mask_blocks), _ptr(mask_of), work.data_ptr())

    def chunk(self, m: int, src: torch.Tensor, up: int, h: int, w: int, ntx: int, t0: int, t1: int,
              v_ptr: int, vsp: int, vst: int, voff: int, vc: int, u: torch.Tensor, m_ptr: int, msp: int,
              epi: Any) -> None:
        """wino_in + gemm + wino_out of one chunk in one call (raw scratch pointers: no tensors per chunk)."""
        self._chunk(m, src.data_ptr(), h, w, src.shape[2], src.stride(0), src.stride(1), src.stride(2), up,
                    ntx, t0, t1, v_ptr, vsp, vst, voff, vc, u.shape[1], u.data_ptr(), u.shape[2], m_ptr, msp,
                    u.shape[2], ctypes.byref(epi[0]))

    def gemm(self, v: torch.Tensor, u: torch.Tensor, mm: torch.Tensor) -> None:
        """mm = v @ u for every plane (bit-identical to torch.bmm: the same k order)."""
        if not self.own_gemm:
            torch.bmm(v, u, out=mm)
            return
        p, n, k = v.shape
        self._gemm(p, v.data_ptr(), v.stride(0), v.stride(1), n, k, u.data_ptr(), u.shape[2], mm.data_ptr(),
                   mm.stride(0), mm.stride(1))

    def wino_in(self, m: int, src: torch.Tensor, up: int, h: int, w: int, ntx: int, t0: int, t1: int,
                v: torch.Tensor) -> None:
        self._in(m, src.data_ptr(), h, w, v.shape[2], src.shape[2], src.stride(0), src.stride(1),
                 src.stride(2), up, ntx, t0, t1, v.data_ptr(), v.stride(0), v.stride(1))

    @staticmethod
    def epilogue(dst: torch.Tensor, ep: _Epilogue) -> Any:
        if ep.shuffle:
            sc, sy, sx = _strides3(dst)
            cvalid = dst.shape[0] * ep.shuffle ** 2
        else:
            sy, sx, sc = _strides3(dst)
            cvalid = dst.shape[2]
        e = _Epi(dst.data_ptr(), sy, sx, sc, cvalid, ep.shuffle, _ptr(ep.bias), ep.act, ep.slope,
                 _ptr(ep.alpha),
                 _ptr(ep.r1), *_strides3(ep.r1), ep.s1, _ptr(ep.r2), *_strides3(ep.r2), ep.s2)
        return (e, (dst, ep))  # keep the tensors alive as long as the pointers

    def wino_out(self, m: int, mm: torch.Tensor, ntx: int, t0: int, t1: int, h: int, w: int,
                 epi: Any) -> None:
        self._out(m, mm.data_ptr(), mm.stride(0), mm.stride(1), mm.shape[2], ntx, t0, t1, h, w,
                  ctypes.byref(epi[0]))


def _bt6(d: list[torch.Tensor]) -> list[torch.Tensor]:
    d0, d1, d2, d3, d4, d5 = d
    s12, s34, u12, u43, v42, v31 = d1 + d2, d3 + d4, d1 - d2, d4 - d3, d4 - d2, d3 - d1
    return [torch.add(d4, d2, alpha=-5).add_(d0, alpha=4), torch.add(s34, s12, alpha=-4),
            torch.add(u43, u12, alpha=4), torch.add(v42, v31, alpha=2), torch.add(v42, v31, alpha=-2),
            torch.add(d5, d3, alpha=-5).add_(d1, alpha=4)]


def _at4(m: list[torch.Tensor]) -> list[torch.Tensor]:
    m0, m1, m2, m3, m4, m5 = m
    p12, p34, n12, n34 = m1 + m2, m3 + m4, m1 - m2, m3 - m4
    return [(m0 + p12).add_(p34), torch.add(n12, n34, alpha=2), torch.add(p12, p34, alpha=4),
            torch.add(n12, n34, alpha=8).add_(m5)]


class _TorchKernels:
    """F(4,3) transforms as PyTorch element-wise ops (no compiler needed; several times slower than the C
    ones). Chunks must be whole rows of tiles."""

    name = "torch"
    row_aligned = True
    tiles = (4,)

    def wino_in(self, m: int, src: torch.Tensor, up: int, h: int, w: int, ntx: int, t0: int, t1: int,
                v: torch.Tensor) -> None:
        ty0, ty1 = t0 // ntx, -(-t1 // ntx)
        nty, c, cv = ty1 - ty0, v.shape[2], src.shape[2]
        band = src.new_zeros(4 * nty + 2, 4 * ntx + 2, c)  # rows 4*ty0-1 .., cols -1 ..
        ylo, yhi = max(0, 4 * ty0 - 1), min(h, 4 * ty1 + 1)
        xhi = min(w, 4 * ntx + 1)
        if yhi > ylo and xhi > 0:
            rows = src.index_select(0, torch.arange(ylo, yhi) // up) if up > 1 else src[ylo:yhi]
            part = rows.index_select(1, torch.arange(0, xhi) // up) if up > 1 else rows[:, :xhi]
            band[ylo - (4 * ty0 - 1):yhi - (4 * ty0 - 1), 1:1 + xhi, :cv] = part
        t = _bt6([band[i:i + 4 * nty - 3:4] for i in range(6)])  # t[a]: (nty, 4*ntx+2, C)
        for a in range(6):
            vb = _bt6([t[a][:, j:j + 4 * ntx - 3:4] for j in range(6)])  # vb[b]: (nty, ntx, C)
            for b in range(6):
                v[a * 6 + b].copy_(vb[b].reshape(nty * ntx, c)[t0 - ty0 * ntx:t1 - ty0 * ntx])

    @staticmethod
    def epilogue(dst: torch.Tensor, ep: _Epilogue) -> Any:
        return (dst, ep)

    @staticmethod
    def gemm(v: torch.Tensor, u: torch.Tensor, mm: torch.Tensor) -> None:
        torch.bmm(v, u, out=mm)

    def wino_out(self, m: int, mm: torch.Tensor, ntx: int, t0: int, t1: int, h: int, w: int,
                 epi: Any) -> None:
        dst, ep = epi
        ty0, ty1 = t0 // ntx, -(-t1 // ntx)
        nty, c = ty1 - ty0, mm.shape[2]
        full = mm.new_zeros(36, nty * ntx, c)
        full[:, t0 - ty0 * ntx:t1 - ty0 * ntx] = mm
        mp = [full[p].view(nty, ntx, c) for p in range(36)]
        z = [_at4([mp[a * 6 + b] for b in range(6)]) for a in range(6)]  # z[a][j]
        y = torch.stack([torch.stack(_at4([z[a][j] for a in range(6)]), 1) for j in range(4)], 3)
        r0, r1 = 4 * ty0, min(h, 4 * ty1)
        y = y.reshape(4 * nty, 4 * ntx, c)[: r1 - r0, :w]  # (ty, i, tx, j, c) -> pixels
        if ep.bias is not None:
            y = y + ep.bias
        if ep.act == 1:
            y = F.leaky_relu(y, ep.slope)
        elif ep.act == 2:
            y = torch.where(y > 0, y, y * ep.alpha)
        elif ep.act == 3:
            y = F.silu(y)
        elif ep.act == 5:
            y = torch.tanh(y)
        elif ep.act == 4:  # SPAN's gate replaces the r1 step
            y = y[..., :dst.shape[2]]
            y = (y + ep.r1[r0:r1]) * (torch.sigmoid(y) - 0.5)
            if ep.r2 is not None:
                y = y * ep.s2 + ep.r2[r0:r1]
            dst[r0:r1].copy_(y)
            return
        if ep.shuffle:
            s, oc = ep.shuffle, dst.shape[0]
            y = y[..., :oc * s * s].reshape(r1 - r0, w, oc, s, s)
            if ep.r1 is not None:
                y = y * ep.s1 + ep.r1[r0:r1, :, :, None, None]
            dst[:, r0 * s:r1 * s].copy_(y.permute(2, 0, 3, 1, 4).reshape(oc, (r1 - r0) * s, w * s))
            return
        y = y[..., :dst.shape[2]]
        if ep.r1 is not None:
            y = y * ep.s1 + ep.r1[r0:r1]
        if ep.r2 is not None:
            y = y * ep.s2 + ep.r2[r0:r1]
        dst[r0:r1].copy_(y)


_KERNEL_LOCK = threading.Lock()
_KERNELS: dict[str, Any] = {}  # variant -> _CKernels | None (None: tried and failed); "chosen" -> variant
_FAILED: dict[str, str] = {}  # variant -> why it could not be loaded

# Kernel variants, best first: the compiler flags each is built with and the CPU flags (/proc/cpuinfo) it
# needs. "native" (-march=native) stands in for the x86 ones where the CPU's flags cannot be read (or on
# other architectures); "portable" has no -m flags and no intrinsics and runs anywhere.
KERNEL_VARIANTS = ("avx512", "avx2", "native", "portable")
_VARIANT_CFLAGS = {
    "avx512": ("-O3", "-mavx512f", "-mavx512vl", "-mavx512dq", "-mavx512bw", "-mavx2", "-mfma", "-mf16c"),
    "avx2": ("-O3", "-mavx2", "-mfma", "-mf16c"),
    "native": ("-O3", "-march=native"),
    "portable": ("-O3",),
}
_VARIANT_NEEDS = {
    "avx512": frozenset({"avx512f", "avx512vl", "avx512dq", "avx512bw", "avx2", "fma", "f16c"}),
    "avx2": frozenset({"avx2", "fma", "f16c"}),
}
_VARIANT_ISA = {"avx512": 512, "avx2": 256, "portable": 0}  # what sr_kernel_isa() must return
KERNEL_ENV = "SUPERRES_FAST_KERNEL"


def _cpu_signature() -> str:
    """What the built code depends on: the machine and its instruction set (``-march=native``)."""
    parts = [platform.machine(), platform.system()]
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("model name", "flags", "Features", "CPU part")):
                    parts.append(line.strip())
                    if len(parts) > 5:
                        break
    except OSError:
        parts.append(platform.processor())
    return "\n".join(parts)


def cpu_flags() -> frozenset[str] | None:
    """The CPU's feature flags from /proc/cpuinfo (Linux; what the kernel lets programs use), or None where
    they cannot be read."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return None


def supported_kernel_variants(flags: frozenset[str] | None = None) -> tuple[str, ...]:
    """The variants this CPU can run, best first (``flags``: as :func:`cpu_flags`, for tests)."""
    flags = cpu_flags() if flags is None else flags
    x86 = platform.machine().lower() in ("x86_64", "amd64", "i686", "i386")
    if flags is None or not x86:
        return ("native", "portable")
    return (*[v for v, need in _VARIANT_NEEDS.items() if need <= flags], "portable")


def choose_kernel_variant(override: str | None, supported: tuple[str, ...]) -> tuple[str, str | None]:
    """(variant, warning or None): ``override`` (``$SUPERRES_FAST_KERNEL``) when this CPU runs it, else the
    best supported one. Running a variant the CPU lacks would kill the process (illegal instruction), so an
    override is never trusted blindly."""
    want = (override or "").strip().lower()
    if not want or want == "auto":
        return supported[0], None
    if want not in KERNEL_VARIANTS:
        return supported[0], (f"{KERNEL_ENV}={override!r} is not one of auto, {', '.join(KERNEL_VARIANTS)}; "
                              f"using {supported[0]}")
    if want not in supported:
        return supported[0], (f"{KERNEL_ENV}={want}: this CPU cannot run it "
                              f"(it runs {', '.join(supported)}); using {supported[0]}")
    return want, None


def kernel_variant() -> str:
    """The kernel variant this process uses (chosen once: the best this CPU runs and the compiler builds, or
    ``$SUPERRES_FAST_KERNEL``), or ``"none"`` when no variant could be built (no C compiler)."""
    kern = c_kernels()
    return kern.variant if kern is not None else "none"


def _compile_c(cache: Path, variant: str = "native") -> Path:
    """Build (once per machine, cached) the kernel's shared library for ``variant``; its path."""
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if not cc:
        raise RuntimeError("no C compiler found (set CC, or install gcc or clang)")
    version = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=60).stdout
    source = _c_source()
    errors = []
    tries = [list(_VARIANT_CFLAGS[variant])] + ([["-O3"]] if variant == "native" else [])
    for flags in tries:
        what = "\0".join([source, cc, version, *flags, _cpu_signature()])
        key = hashlib.sha256(what.encode()).hexdigest()
        final = cache / f"wino-{variant}-{key[:20]}.so"
        if final.is_file():
            return final
        cache.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=cache) as tmp:
            src = Path(tmp) / "wino.c"
            src.write_text(source)
            out = Path(tmp) / final.name
            cmd = [cc, *flags, "-std=gnu99", "-shared", "-fPIC", "-o", str(out), str(src)]
            res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
            if res.returncode == 0 and out.is_file():
                os.replace(out, final)  # atomic; concurrent builders publish identical files
                return final
            errors.append(f"{' '.join(flags)}: {(res.stderr or res.stdout).strip()[-300:]}")
    raise RuntimeError(f"C compiler failed ({variant}): " + " | ".join(errors))


def build_kernel(variant: str) -> Path:
    """Compile ``variant`` without loading it (a variant this CPU cannot run can still be built: tests)."""
    from ..cache import cache_dir

    if variant not in KERNEL_VARIANTS:
        raise ValueError(f"unknown kernel variant {variant!r}; expected one of {', '.join(KERNEL_VARIANTS)}")
    return _compile_c(cache_dir("kernels"), variant)


def _self_test(kern: Any) -> None:
    """Freshly loaded kernels must reproduce a direct conv (odd size, strided NCHW input, both tile sizes)
    before they are used."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 13, 7, 9, generator=g)
    w = torch.randn(8, 13, 3, 3, generator=g) * 0.1
    b = torch.randn(8, generator=g)
    want = F.leaky_relu(F.conv2d(x.double(), w.double(), b.double(), padding=1), 0.2)[0].permute(1, 2, 0)
    for m in kern.tiles:
        ntx, nty = -(-9 // m), -(-7 // m)
        n, p = ntx * nty, (m + 2) ** 2
        v, mm = torch.zeros(p, n, 16), torch.zeros(p, n, 8)
        dst = torch.zeros(7, 9, 8)
        kern.wino_in(m, x[0].permute(1, 2, 0), 1, 7, 9, ntx, 0, n, v)
        kern.gemm(v, winograd_weights(w, m, 16, 8), mm)
        kern.wino_out(m, mm, ntx, 0, n, 7, 9, kern.epilogue(dst, _Epilogue(bias=b, act=1, slope=0.2)))
        err = (dst.double() - want).abs().max().item()
        if not err < 1e-4:
            raise RuntimeError(f"self-test of F({m},3) failed (max error {err:.3g})")
    # the GEMM alone, on widths that use every column block (32, 16, 8) and a partial row block
    v = torch.rand(3, 13, 40, generator=g)
    u = torch.rand(3, 40, 56, generator=g)
    mm = torch.zeros(3, 13, 56)
    kern.gemm(v, u, mm)
    err = (mm.double() - torch.bmm(v.double(), u.double())).abs().max().item()
    if not err < 1e-4:
        raise RuntimeError(f"self-test of the GEMM failed (max error {err:.3g})")
    # the windowed attention: rolled rows and columns, a mask pattern, a generic and a specialised head size
    for d in (3, 10):
        win = _self_test_windows(g, d)
        want = win.out.clone()
        map_attention_reference(replace(win, out=want))
        if not map_attention_kernel(kern, _Inline())(win):
            raise RuntimeError("self-test of the windowed attention: the kernel refused its input")
        err = (win.out - want).abs().max().item()
        if not err < 1e-5:
            raise RuntimeError(f"self-test of the windowed attention failed (max error {err:.3g})")


def _self_test_windows(g: torch.Generator, d: int) -> Any:
    """A small MapWindows exercising every part of the kernel (a batch of two, rolled rows and columns, rows
    and columns not written, a mask on some windows, output channels at an offset)."""
    from ..archs.base import MapWindows

    heads, c = 2, 2 * d + 1
    rowmap = (torch.arange(8) + 3) % 8
    masks = torch.randn(2, 16, 16, generator=g) * 5
    return MapWindows(qkv=torch.randn(2, 8, 16, 3 * c, generator=g), channel=1, heads=heads, head_dim=d,
                      window=(4, 4), col_shift=6, rowmap=rowmap, out=torch.zeros(2, 7, 13, 2 * d + 2),
                      out_channel=2, outrow=torch.where(rowmap < 7, rowmap, -1),
                      bias=torch.randn(heads, 16, 16, generator=g), masks=masks,
                      mask_of=torch.tensor([-1, 0, -1, 1, 1, -1, 0, -1]))


def _load_c_kernels(variant: str = "native") -> _CKernels:
    from ..cache import cache_dir

    path = _compile_c(cache_dir("kernels"), variant)
    lib = ctypes.CDLL(str(path))
    isa = lib.sr_kernel_isa()
    if variant in _VARIANT_ISA and isa != _VARIANT_ISA[variant]:
        raise RuntimeError(f"the {variant} build reports instruction set {isa}, not {_VARIANT_ISA[variant]}")
    kern = _CKernels(lib)
    kern.variant = variant
    _self_test(kern)
    return kern


def _kernels_of(variant: str) -> _CKernels | None:
    """Call with _KERNEL_LOCK held."""
    if variant not in _KERNELS:
        try:
            _KERNELS[variant] = _load_c_kernels(variant)
        except Exception as e:  # noqa: BLE001 - any failure means "use the fallback"
            _FAILED[variant] = str(e).splitlines()[0] if str(e) else type(e).__name__
            _KERNELS[variant] = None
    return _KERNELS[variant]


def c_kernels(variant: str | None = None) -> _CKernels | None:
    """The compiled transforms, or None when no working C compiler is available (logged once).

    Without ``variant``: the process's choice, made once (:func:`choose_kernel_variant`; a variant that
    fails to build or self-test gives way to the next one this CPU runs). With ``variant``: that one, which
    this CPU must run (``ValueError`` otherwise)."""
    with _KERNEL_LOCK:
        if variant is not None:
            if variant not in supported_kernel_variants():
                raise ValueError(f"this CPU cannot run the {variant!r} kernels "
                                 f"(it runs {', '.join(supported_kernel_variants())})")
            return _kernels_of(variant)
        if "chosen" not in _KERNELS:
            supported = supported_kernel_variants()
            first, warning = choose_kernel_variant(os.environ.get(KERNEL_ENV), supported)
            if warning:
                log.warning("%s", warning)
            order = [first, *[v for v in supported if v != first]]
            chosen = next((v for v in order if _kernels_of(v) is not None), None)
            tried = order if chosen is None else order[:order.index(chosen)]
            failed = [f"{v}: {_FAILED.get(v, '?')}" for v in tried]
            if chosen is None:
                log.warning("fast CPU kernels unavailable (%s); using a slower path", failed[0])
            elif failed:
                log.warning("fast CPU kernels: using %s (%s)", chosen, "; ".join(failed))
            _KERNELS["chosen"] = chosen
        chosen = _KERNELS["chosen"]
        return None if chosen is None else _KERNELS[chosen]


def kernel_forward(net: nn.Module, variant: str, *, f4: bool = False) -> Forward:
    """A forward through ``net``'s Winograd plan on the ``variant`` kernels (not cached; tests and
    benchmarks compare variants in one process). ``TypeError`` when the network has no plan."""
    kern = c_kernels(variant)
    if kern is None:
        raise RuntimeError(f"the {variant} kernels could not be built here")
    run = _Runner(kern, 4 if f4 else 6, _pool(torch.get_num_threads()))
    with torch.no_grad():
        return run.call(lambda: _make_plan(net, run))


# ---- a pool of single-threaded workers ---------------------------------------------------------------------


def _loaded_libraries(*needles: str) -> list[str]:
    try:
        with open("/proc/self/maps") as f:
            paths = {line.split()[-1] for line in f if "/" in line}
    except OSError:
        return []
    return sorted(p for p in paths if any(n in os.path.basename(p) for n in needles))


def _make_this_thread_single_threaded() -> bool:
    """Make torch ops called from this thread use one thread (OpenMP ICV and MKL's thread-local count are
    per thread; torch.set_num_threads would also change the process-wide default). True if verified."""
    torch.get_num_threads()  # torch's lazy per-thread init runs now, so it cannot undo what follows
    for path in _loaded_libraries("libgomp", "libiomp", "libomp"):
        try:
            fn = getattr(ctypes.CDLL(path), "omp_set_num_threads", None)
        except OSError:
            continue
        if fn is not None:
            fn.argtypes = [ctypes.c_int]
            fn(1)
    for path in _loaded_libraries("libtorch_cpu", "libmkl"):
        try:
            # the C API (by value); the lower-case export is MKL's Fortran entry point (by reference)
            fn = getattr(ctypes.CDLL(path), "MKL_Set_Num_Threads_Local", None)
        except OSError:
            continue
        if fn is not None:
            fn.argtypes = [ctypes.c_int]
            fn(1)
    return torch.get_num_threads() == 1


class _Job:
    __slots__ = ("fn", "n", "next", "done", "error")

    def __init__(self, fn: Callable[[int], None], n: int) -> None:
        self.fn, self.n, self.next, self.done = fn, n, 0, 0
        self.error: BaseException | None = None


_WORKER = threading.local()  # .inside: this thread is one of a _Pool's workers


class _Pool:
    """``map(fn, n)`` runs fn(0..n-1) on the workers and returns when all are done (first error re-raised).
    Several callers may map at once; their items interleave. Items run under inference mode. A map called from
    one of the workers (an item that maps again: DAT's band calling the attention kernel) runs in that worker."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.pid = os.getpid()
        self._cv = threading.Condition()
        self._jobs: list[_Job] = []
        self._ready = threading.Barrier(workers + 1)
        self.single_threaded = True
        for i in range(workers):
            threading.Thread(target=self._loop, name=f"superres-fast-{i}", daemon=True).start()
        self._ready.wait()

    def _loop(self) -> None:
        _WORKER.inside = True
        try:
            ok = _make_this_thread_single_threaded()
        except Exception:  # noqa: BLE001 - an unexpected runtime: run chunks in the caller instead
            ok = False
        if not ok:
            self.single_threaded = False
        self._ready.wait()
        while True:
            with self._cv:
                job = self._take()
                while job is None:
                    self._cv.wait()
                    job = self._take()
                i = job.next
                job.next += 1
            try:
                with torch.inference_mode():
                    job.fn(i)
            except BaseException as e:  # noqa: BLE001 - handed to the caller
                with self._cv:
                    if job.error is None:
                        job.error = e
                    job.done += job.n - job.next  # skip what nobody has started
                    job.next = job.n
            with self._cv:
                job.done += 1
                if job.done >= job.n:
                    self._cv.notify_all()

    def _take(self) -> _Job | None:
        while self._jobs and self._jobs[0].next >= self._jobs[0].n:
            self._jobs.pop(0)
        return self._jobs[0] if self._jobs else None

    def map(self, fn: Callable[[int], None], n: int) -> None:
        if n <= 0:
            return
        if getattr(_WORKER, "inside", False):  # from one of the workers: waiting on them would stall the pool
            _Inline.map(fn, n)
            return
        job = _Job(fn, n)
        with self._cv:
            self._jobs.append(job)
            self._cv.notify_all()
            while job.done < job.n:
                self._cv.wait()
        if job.error is not None:
            raise job.error


class _Inline:
    """Runs items in the calling thread (1 torch thread, or no per-thread thread control). With several
    torch threads each item is a parallel region, so items are made few and large (``coarse``): many small
    OpenMP regions stall badly when other processes share the cores."""

    workers = 1

    def __init__(self, coarse: bool = False) -> None:
        self.coarse = coarse

    @staticmethod
    def map(fn: Callable[[int], None], n: int) -> None:
        for i in range(n):
            fn(i)


_POOL_LOCK = threading.Lock()
_POOLS: dict[int, _Pool] = {}


def _pool(workers: int) -> _Pool | _Inline:
    if workers <= 1:
        return _Inline(coarse=False)
    with _POOL_LOCK:
        p = _POOLS.get(workers)
        if p is None or p.pid != os.getpid():  # threads do not survive fork
            p = _POOLS[workers] = _Pool(workers)
        if not p.single_threaded:
            _warn_once("cannot limit torch to one thread per worker here; running chunks in the caller")
            return _Inline(coarse=True)
        return p


def worker_map(workers: int | None = None) -> Callable[[Callable[[int], None], int], None]:
    """``map(fn, n)``: fn(0..n-1) on the engine's worker threads, each running torch ops on one thread (no
    OpenMP barriers between items, which stall when other processes share the cores); in the caller when
    ``workers`` (default: torch's thread count) is 1 or threads cannot be limited per worker. For code
    outside the engine whose work splits into independent items (LIIF's query blocks)."""
    return _pool(torch.get_num_threads() if workers is None else workers).map


_SCRATCH = threading.local()


def _scratch_buf(name: str, numel: int) -> torch.Tensor:
    buf = getattr(_SCRATCH, name, None)
    if buf is None or buf.numel() < numel:
        buf = torch.empty(numel)
        setattr(_SCRATCH, name, buf)
    return buf


def _scratch(name: str, p: int, n: int, c: int) -> torch.Tensor:
    """Per-thread (p, n, c) buffer whose planes are _POS_PAD floats apart."""
    plane = n * c + _POS_PAD
    return _scratch_buf(name, p * plane).as_strided((p, n, c), (plane, c, 1))


def _scratch_ptr(name: str, p: int, n: int, c: int) -> tuple[int, int]:
    """(address, plane stride) of the same buffer as ``_scratch`` (no tensor view per chunk)."""
    plane = n * c + _POS_PAD
    return _scratch_buf(name, p * plane).data_ptr(), plane


def _planes(p: int, n: int, c: int, take: Callable[..., torch.Tensor]) -> torch.Tensor:
    """A (p, n, c) Winograd-domain store with padded planes."""
    plane = n * c + _POS_PAD
    return take(p * plane).as_strided((p, n, c), (plane, c, 1))


# ---- the convolution ---------------------------------------------------------------------------------------


def _up8(c: int) -> int:
    return -(-c // 8) * 8


@dataclass(frozen=True)
class _WConv:
    u: torch.Tensor  # (P, Cin, Cout), channels padded to multiples of 8 with zero weights
    bias: torch.Tensor  # (Cout,)
    cin: int
    cout: int

    @staticmethod
    def from_conv(conv: nn.Conv2d, m: int) -> "_WConv":
        cin, cout = _up8(conv.in_channels), _up8(conv.out_channels)
        bias = conv.bias.detach().float().cpu() if conv.bias is not None else torch.zeros(conv.out_channels)
        return _WConv(winograd_weights(conv.weight, m, cin, cout),
                      F.pad(bias.clone(), (0, cout - conv.out_channels)).contiguous(), cin, cout)


def winograd_eligible(conv: nn.Module) -> bool:
    """A stride-1, pad-1 3x3 convolution (any channel count: channels are padded to multiples of 8)."""
    return (isinstance(conv, nn.Conv2d) and conv.kernel_size == (3, 3) and conv.stride == (1, 1)
            and conv.padding == (1, 1) and conv.dilation == (1, 1) and conv.groups == 1
            and conv.padding_mode == "zeros")


class _Runner:
    """Kernels, tile size m, pool and chunking policy shared by the plan of one network."""

    def __init__(self, kern: Any, m: int, pool: Any) -> None:
        if m not in kern.tiles:
            raise ValueError(f"{kern.name} kernels do not do F({m}x{m}, 3x3)")
        self.kern, self.m, self.pool = kern, m, pool
        self.p = (m + 2) ** 2

    def grid(self, h: int, w: int) -> tuple[int, int]:
        return -(-h // self.m), -(-w // self.m)

    def chunks(self, ntiles: int, ntx: int, cin: int) -> list[tuple[int, int]]:
        # measured on 64-channel layers: ~128 tiles (F(6,3)) / ~192 (F(4,3)) balance per-call overhead and
        # cache footprint; fewer for wide inputs
        size = max(16, min(128 if self.m == 6 else 192, 12288 // max(cin, 8)))
        workers = self.pool.workers
        if getattr(self.pool, "coarse", False):
            size = max(size, min(2048, -(-ntiles // 4)))
        if self.kern.row_aligned:
            size = max(1, round(size / ntx)) * ntx
        count = -(-ntiles // size)
        if workers > 1 and not self.kern.row_aligned:  # equal chunks, >= 2 per worker, a multiple of them
            count = -(-max(count, min(2 * workers, ntiles // 8)) // workers) * workers
            size = -(-ntiles // count)
        return [(t0, min(ntiles, t0 + size)) for t0 in range(0, ntiles, size)]

    def conv(self, wc: _WConv, src: torch.Tensor, dst: torch.Tensor, ep: _Epilogue, up: int = 1,
             store: tuple[torch.Tensor, int] | None = None) -> None:
        """dst = epilogue(conv3x3(src)) on the pool. src: (H/up, W/up, C) view, any strides; dst: (H, W, C')
        view, any strides (see _Epilogue.shuffle for the other layout).

        With ``store=(planes, offset)`` the input transform of src goes into the Winograd-domain store
        ``planes`` (P, T, >= Cin) at channel ``offset`` and the GEMM multiplies its first ``wc.cin`` channels
        (RRDB dense blocks: the earlier features are already there)."""
        if ep.shuffle:
            h, w = dst.shape[1] // ep.shuffle, dst.shape[2] // ep.shuffle
        else:
            h, w = dst.shape[0], dst.shape[1]
        nty, ntx = self.grid(h, w)
        parts = self.chunks(nty * ntx, ntx, wc.cin)
        kern, m, p, c_in = self.kern, self.m, self.p, _up8(src.shape[2])
        epi = kern.epilogue(dst, ep)

        if getattr(kern, "own_gemm", False):  # one C call per chunk
            if store is not None:
                planes, off = store
                base, vsp, vst = planes.data_ptr(), planes.stride(0), planes.stride(1)

            def fused(i: int) -> None:
                t0, t1 = parts[i]
                n = t1 - t0
                mp, msp = _scratch_ptr("m", p, n, wc.cout)
                if store is None:
                    vp, vsp_ = _scratch_ptr("v", p, n, wc.cin)
                    kern.chunk(m, src, up, h, w, ntx, t0, t1, vp, vsp_, wc.cin, 0, wc.cin, wc.u, mp, msp, epi)
                else:
                    vp = base + 4 * t0 * vst  # row t0 of the store (bytes)
                    kern.chunk(m, src, up, h, w, ntx, t0, t1, vp, vsp, vst, off, c_in, wc.u, mp, msp, epi)

            self.pool.map(fused, len(parts))
            return

        def item(i: int) -> None:
            t0, t1 = parts[i]
            if store is None:
                v = _scratch("v", p, t1 - t0, wc.cin)
                kern.wino_in(m, src, up, h, w, ntx, t0, t1, v)
            else:
                planes, off = store
                kern.wino_in(m, src, up, h, w, ntx, t0, t1, planes[:, t0:t1, off:off + c_in])
                v = planes[:, t0:t1, :wc.cin]
            mm = _scratch("m", p, t1 - t0, wc.cout)
            kern.gemm(v, wc.u, mm)
            kern.wino_out(m, mm, ntx, t0, t1, h, w, epi)

        self.pool.map(item, len(parts))

    def call(self, fn: Callable[[], Any]) -> Any:
        """fn() on a worker, where torch is single-threaded (no OpenMP stalls on a busy machine)."""
        box: list[Any] = []
        self.pool.map(lambda i: box.append(fn()), 1)
        return box[0]


def _act_epilogue(act: nn.Module, c: int, c_pad: int, bias: torch.Tensor) -> _Epilogue:
    if isinstance(act, nn.PReLU):
        a = act.weight.detach().float().cpu().reshape(-1)
        a = F.pad(a.expand(c) if a.numel() == 1 else a, (0, c_pad - c)).contiguous()
        return _Epilogue(bias=bias, act=2, alpha=a)
    if isinstance(act, nn.LeakyReLU):
        return _Epilogue(bias=bias, act=1, slope=float(act.negative_slope))
    if isinstance(act, nn.ReLU):
        return _Epilogue(bias=bias, act=1, slope=0.0)
    raise TypeError(f"unsupported activation {type(act).__name__}")


# ---- plans: whole networks as sequences of Winograd convolutions ------------------------------------------


class _Buffers:
    """Activation buffers kept between calls of one plan (first-touch page faults of fresh 16 MB buffers cost
    ~10 ms each, 10% of a small network). At most ``cap`` bytes are kept; thread-safe."""

    def __init__(self, cap: int = 192 << 20) -> None:
        self.cap = cap
        self._lock = threading.Lock()
        self._free: dict[tuple, list[torch.Tensor]] = {}
        self._bytes = 0

    @contextlib.contextmanager
    def lease(self) -> Iterator[Callable[..., torch.Tensor]]:
        taken: list[tuple[tuple, torch.Tensor]] = []

        def take(*shape: int, zeroed: bool = False) -> torch.Tensor:
            """A float32 tensor of this shape (``zeroed``: zero when first allocated)."""
            key = (zeroed, shape)
            with self._lock:
                free = self._free.get(key)
                t = free.pop() if free else None
                if t is not None:
                    self._bytes -= t.nbytes
            if t is None:
                t = torch.zeros(shape) if zeroed else torch.empty(shape)
            taken.append((key, t))
            return t

        try:
            yield take
        finally:
            with self._lock:
                for key, t in taken:
                    if self._bytes + t.nbytes <= self.cap:
                        self._free.setdefault(key, []).append(t)
                        self._bytes += t.nbytes


class _Plan:
    in_channels = 3

    def __init__(self, run: _Runner) -> None:
        self.run = run
        self.buffers = _Buffers()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected N x {self.in_channels} x H x W input, got {tuple(x.shape)}")
        with torch.inference_mode():
            x = x.to("cpu", torch.float32)
            with self.buffers.lease() as take:
                outs = [self.one(x[i:i + 1], take) for i in range(x.shape[0])]
            return outs[0] if len(outs) == 1 else torch.cat(outs)

    def one(self, x: torch.Tensor, take: Callable[..., torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError


class _SRVGGPlan(_Plan):
    """body: conv(in->F)+act, num_conv x [conv(F->F)+act], conv(F->out*s^2); pixel shuffle; + nearest(x)."""

    def __init__(self, net: nn.Module, run: _Runner) -> None:
        super().__init__(run)
        body = list(net.body)
        convs, acts = body[0::2], body[1::2]
        if len(acts) != len(convs) - 1 or not all(winograd_eligible(c) for c in convs):
            raise TypeError("unexpected SRVGGNetCompact layout")
        self.scale = int(net.scale)
        self.in_channels = convs[0].in_channels
        self.layers: list[tuple[_WConv, _Epilogue]] = []
        for conv, act in zip(convs[:-1], acts):
            wc = _WConv.from_conv(conv, run.m)
            self.layers.append((wc, _act_epilogue(act, conv.out_channels, wc.cout, wc.bias)))
        last = _WConv.from_conv(convs[-1], run.m)
        self.layers.append((last, _Epilogue(bias=last.bias)))
        self.out_ch = convs[-1].out_channels

    def one(self, x: torch.Tensor, take: Callable[..., torch.Tensor]) -> torch.Tensor:
        h, w = x.shape[-2:]
        s, oc = self.scale, self.out_ch // (self.scale ** 2)
        lr = x[0].permute(1, 2, 0)  # H x W x C view of the NCHW input, read in place
        cur, feat = lr, self.layers[0][0].cout
        bufs = [take(h, w, feat), take(h, w, feat)]
        for i, (wc, ep) in enumerate(self.layers[:-1]):
            out = bufs[i % 2] if wc.cout == feat else take(h, w, wc.cout)
            self.run.conv(wc, cur, out, ep)
            cur = out
        # the last conv, pixel shuffle and nearest-upsampled input, stored straight into the NCHW output
        y = torch.empty(1, oc, h * s, w * s)
        wc, ep = self.layers[-1]
        base = lr if lr.shape[2] == oc else lr[..., :1].expand(h, w, oc)  # 1-channel in, 3-channel out
        self.run.conv(wc, cur, y[0], replace(ep, shuffle=s, r1=base, s1=1.0))
        return y


class _RRDBPlan(_Plan):
    """RRDBNet with dense-block inputs concatenated in the Winograd domain and residuals fused."""

    def __init__(self, net: nn.Module, run: _Runner) -> None:
        from ..archs.rrdbnet import DenseBlock

        super().__init__(run)
        m = run.m
        self.unshuffle = int(net.unshuffle)
        self.in_channels = net.conv_first.in_channels // (self.unshuffle ** 2)
        self.slope = 0.2
        names = ("conv_first", "conv_body", "conv_up1", "conv_up2", "conv_hr", "conv_last")
        if not all(winograd_eligible(getattr(net, n)) for n in names):
            raise TypeError("RRDBNet with a conv that is not a plain 3x3 conv")
        self.first = _WConv.from_conv(net.conv_first, m)
        self.feat = net.conv_first.out_channels
        self.blocks: list[list[list[_WConv]]] = []
        self.grow = 0
        for rrdb in net.body:
            rdbs = []
            for rdb in (rrdb.rdb1, rrdb.rdb2, rrdb.rdb3):
                if type(rdb) is not DenseBlock:
                    raise TypeError("unexpected dense block")
                convs = [rdb.conv1, rdb.conv2, rdb.conv3, rdb.conv4, rdb.conv5]
                self.grow = convs[0].out_channels
                if self.feat % 8 or self.grow % 8 or not all(winograd_eligible(c) for c in convs):
                    raise TypeError("RRDBNet with channels not a multiple of 8")
                rdbs.append([_WConv.from_conv(c, m) for c in convs])
            self.blocks.append(rdbs)
        self.conv_body = _WConv.from_conv(net.conv_body, m)
        self.ups = [_WConv.from_conv(net.conv_up1, m), _WConv.from_conv(net.conv_up2, m)]
        self.conv_hr = _WConv.from_conv(net.conv_hr, m)
        self.conv_last = _WConv.from_conv(net.conv_last, m)
        self.out_ch = net.conv_last.out_channels

    def one(self, x: torch.Tensor, take: Callable[..., torch.Tensor]) -> torch.Tensor:
        run, lr = self.run, self.slope
        if self.unshuffle > 1:
            x = run.call(lambda: F.pixel_unshuffle(x, self.unshuffle))
        h, w = x.shape[-2:]
        nf, g = self.feat, self.grow
        feat, x0, x1 = take(h, w, nf), take(h, w, nf), take(h, w, nf)
        first = _Epilogue(bias=self.first.bias)
        run.conv(self.first, x[0].permute(1, 2, 0), feat, first)
        run.conv(self.first, x[0].permute(1, 2, 0), x0, first)  # a second copy, computed in parallel
        grows = [take(h, w, g) for _ in range(4)]
        nty, ntx = run.grid(h, w)
        planes = _planes(run.p, nty * ntx, nf + 4 * g, take)
        for rdbs in self.blocks:
            # rdb1: x0 -> x1; rdb2: x1 -> x1 (in place); rdb3: x1 -> x0 plus the RRDB residual (in place)
            steps = ((rdbs[0], x0, x1, None), (rdbs[1], x1, x1, None), (rdbs[2], x1, x0, x0))
            for convs, src, dst, outer in steps:
                feats = [src, *grows]
                for j, wc in enumerate(convs):
                    off = 0 if j == 0 else nf + (j - 1) * g
                    if j < 4:
                        ep = _Epilogue(bias=wc.bias, act=1, slope=lr)
                        run.conv(wc, feats[j], grows[j], ep, store=(planes, off))
                    else:
                        ep = _Epilogue(bias=wc.bias, r1=src, s1=0.2, r2=outer, s2=0.2)
                        run.conv(wc, feats[j], dst, ep, store=(planes, off))
        trunk = x1
        run.conv(self.conv_body, x0, trunk, _Epilogue(bias=self.conv_body.bias, r1=feat, s1=1.0))
        cur = trunk
        for wc in self.ups:
            nxt = take(cur.shape[0] * 2, cur.shape[1] * 2, wc.cout)
            run.conv(wc, cur, nxt, _Epilogue(bias=wc.bias, act=1, slope=lr), up=2)
            cur = nxt
        hr = take(*cur.shape)
        run.conv(self.conv_hr, cur, hr, _Epilogue(bias=self.conv_hr.bias, act=1, slope=lr))
        y = torch.empty(1, self.out_ch, hr.shape[0], hr.shape[1])
        run.conv(self.conv_last, hr, y[0].permute(1, 2, 0), _Epilogue(bias=self.conv_last.bias))
        return y


def _conv_like(weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Conv2d:
    """A stride-1, pad-1 3x3 nn.Conv2d holding these (derived) weights, for ``_WConv.from_conv``."""
    cout, cin = weight.shape[:2]
    conv = nn.Conv2d(cin, cout, 3, 1, 1, bias=True)
    with torch.no_grad():
        conv.weight.copy_(weight)
        conv.bias.copy_(bias if bias is not None else torch.zeros(cout))
    return conv


def _mix_1x1(run: _Runner, src: torch.Tensor, w: torch.Tensor, b: torch.Tensor, dst: torch.Tensor) -> None:
    """dst = src @ w + b for (N, Cin) rows: a 1x1 convolution on channels-last pixels, rows split over the
    pool. The C GEMM where built (MKL's sgemm ran this thin (N, 224) @ (224, 56) shape ~3x slower)."""
    n = src.shape[0]
    count = max(1, 2 * run.pool.workers)
    step = -(-n // count)
    own = getattr(run.kern, "own_gemm", False)

    def item(i: int) -> None:
        r0, r1 = i * step, min(n, (i + 1) * step)
        if r1 <= r0:
            return
        if own:
            run.kern.gemm(src[None, r0:r1], w[None], dst[None, r0:r1])
            dst[r0:r1] += b
        else:
            torch.addmm(b, src[r0:r1], w, out=dst[r0:r1])

    run.pool.map(item, count)


class _SPANPlan(_Plan):
    """SPAN: conv_first on the normalised input, six blocks of 3x3 convs with SiLU fused into their output
    transforms and the parameter-free attention gate ``(c3 + x) * (sigmoid(c3) - 0.5)`` fused into the third
    conv's; the four concatenated taps are written straight into channel slices of one buffer (never copied),
    mixed by the 1x1 conv as one matrix product, and the last conv stores its pixel shuffle into the output.
    Feature widths are padded to a multiple of 8 (52 -> 56) with zero channels, so every load and store is
    a full vector."""

    def __init__(self, net: nn.Module, run: _Runner) -> None:
        super().__init__(run)
        m = run.m
        convs = [net.conv_first, net.conv_body, net.conv_up,
                 *[c for b in net.blocks for c in (b.c1, b.c2, b.c3)]]
        cat = net.conv_cat
        if not all(winograd_eligible(c) for c in convs) or cat.kernel_size != (1, 1) or cat.groups != 1:
            raise TypeError("unexpected SPAN layout")
        nf = net.conv_first.out_channels
        self.fp = fp = _up8(nf)
        self.in_channels = net.conv_first.in_channels
        self.mean = net.mean.detach().float().cpu().reshape(-1)
        self.img_range = float(net.img_range)
        self.scale = int(net.scale)
        self.out_ch = net.conv_up.out_channels // self.scale ** 2
        self.first = _WConv.from_conv(net.conv_first, m)
        self.blocks = [[_WConv.from_conv(c, m) for c in (b.c1, b.c2, b.c3)] for b in net.blocks]
        self.body = _WConv.from_conv(net.conv_body, m)
        self.up = _WConv.from_conv(net.conv_up, m)
        wcat = cat.weight.detach().float().cpu()[:, :, 0, 0]  # (nf, 4 nf)
        w = torch.zeros(4 * fp, fp)
        for k in range(4):
            w[k * fp:k * fp + nf, :nf] = wcat[:, k * nf:(k + 1) * nf].t()
        self.wcat = w.contiguous()
        bcat = cat.bias.detach().float().cpu() if cat.bias is not None else torch.zeros(nf)
        self.bcat = F.pad(bcat, (0, fp - nf)).contiguous()

    def one(self, x: torch.Tensor, take: Callable[..., torch.Tensor]) -> torch.Tensor:
        run, fp = self.run, self.fp
        h, w = x.shape[-2:]
        xn = ((x[0] - self.mean.view(-1, 1, 1)) * self.img_range).permute(1, 2, 0)
        cat = take(h, w, 4 * fp)  # feat | body | first block | last block's first activation
        feat, body, first_block, tap = (cat[..., k * fp:(k + 1) * fp] for k in range(4))
        a, b, y = take(h, w, fp), take(h, w, fp), take(h, w, fp)
        run.conv(self.first, xn, feat, _Epilogue(bias=self.first.bias))
        cur = feat
        last = len(self.blocks) - 1
        for i, (c1, c2, c3) in enumerate(self.blocks):
            a1 = tap if i == last else a
            run.conv(c1, cur, a1, _Epilogue(bias=c1.bias, act=3))
            run.conv(c2, a1, b, _Epilogue(bias=c2.bias, act=3))
            out = first_block if i == 0 else y  # in place from block 2 on (the gate reads x, then writes)
            run.conv(c3, b, out, _Epilogue(bias=c3.bias, act=4, r1=cur))
            cur = out
        run.conv(self.body, cur, body, _Epilogue(bias=self.body.bias))
        mixed = take(h, w, fp)
        _mix_1x1(run, cat.view(h * w, 4 * fp), self.wcat, self.bcat, mixed.view(h * w, fp))
        out = torch.empty(1, self.out_ch, h * self.scale, w * self.scale)
        run.conv(self.up, mixed, out[0], _Epilogue(bias=self.up.bias, shuffle=self.scale))
        return out


class _SRMDPlan(_Plan):
    """SRMD / SRMDNF: the image and the constant degradation (and noise) maps stacked channels-last into one
    buffer padded to a multiple of 8 channels, eleven 3x3 convs with ReLU fused, and the last conv storing
    its pixel shuffle into the output."""

    def __init__(self, net: nn.Module, run: _Runner) -> None:
        super().__init__(run)
        convs = list(net.convs)
        if not all(winograd_eligible(c) for c in convs):
            raise TypeError("unexpected SRMD layout")
        self.maps = net.maps.detach().float().cpu().reshape(-1)
        self.in_channels = convs[0].in_channels - self.maps.numel()
        self.scale = int(net.scale)
        self.out_ch = convs[-1].out_channels // self.scale ** 2
        self.layers = [(_WConv.from_conv(c, run.m), _Epilogue(act=1, slope=0.0)) for c in convs[:-1]]
        self.layers.append((_WConv.from_conv(convs[-1], run.m), _Epilogue(shuffle=self.scale)))

    def one(self, x: torch.Tensor, take: Callable[..., torch.Tensor]) -> torch.Tensor:
        h, w = x.shape[-2:]
        c, nm = self.in_channels, self.maps.numel()
        first = self.layers[0][0]
        xin = take(h, w, first.cin)
        xin[..., :c] = x[0].permute(1, 2, 0)
        xin[..., c:c + nm] = self.maps
        xin[..., c + nm:] = 0
        cur = xin
        feat = self.layers[0][0].cout
        bufs = [take(h, w, feat), take(h, w, feat)]
        for i, (wc, ep) in enumerate(self.layers[:-1]):
            out = bufs[i % 2] if wc.cout == feat else take(h, w, wc.cout)
            self.run.conv(wc, cur, out, replace(ep, bias=wc.bias))
            cur = out
        y = torch.empty(1, self.out_ch, h * self.scale, w * self.scale)
        wc, ep = self.layers[-1]
        self.run.conv(wc, cur, y[0], replace(ep, bias=wc.bias))
        return y


# ConvTranspose2d(k=4, stride=2, padding=3) as a 3x3 conv with 4 output phases: output row 2q+a reads input
# rows q+k (k = 0, 1, 2 around the centre q+1) with transposed-kernel tap _UP_TAP[a][k] (None: no tap).
_UP_TAP = ((3, 1, None), (None, 2, 0))


class _UpConv7Plan(_Plan):
    """waifu2x UpConv7: the 7-pixel replicated border, six unpadded 3x3 convs with LeakyReLU(0.1) fused, and
    the 4x4 stride-2 transposed conv as a 3x3 conv with 4 x out channels stored through a x2 pixel shuffle.

    An unpadded conv is a padded one whose outer ring is not used: layer k is computed on the region of the
    (H+14) x (W+14) canvas where layer k-1 is exact, one pixel wider each side than its own exact region."""

    def __init__(self, net: nn.Module, run: _Runner) -> None:
        super().__init__(run)
        convs, up = list(net.features), net.upconv
        ok = all(isinstance(c, nn.Conv2d) and c.kernel_size == (3, 3) and c.stride == (1, 1)
                 and c.padding == (0, 0) and c.dilation == (1, 1) and c.groups == 1 for c in convs)
        if not ok or not (isinstance(up, nn.ConvTranspose2d) and up.kernel_size == (4, 4)
                          and up.stride == (2, 2) and up.padding == (3, 3) and up.output_padding == (0, 0)
                          and up.groups == 1 and up.dilation == (1, 1)):
            raise TypeError("unexpected UpConv7 layout")
        self.in_channels = convs[0].in_channels
        self.border = len(convs) + 1
        self.convs = [_WConv.from_conv(c, run.m) for c in convs]
        wt = up.weight.detach().double().cpu()  # (Cin, Cout, 4, 4)
        cin, cout = wt.shape[:2]
        w3 = torch.zeros(cout, 2, 2, cin, 3, 3, dtype=torch.float64)
        for a in range(2):
            for b in range(2):
                for kr in range(3):
                    for kc in range(3):
                        tr, tc = _UP_TAP[a][kr], _UP_TAP[b][kc]
                        if tr is not None and tc is not None:
                            w3[:, a, b, :, kr, kc] = wt[:, :, tr, tc].t()
        bias = torch.zeros(cout, dtype=torch.float64) if up.bias is None else up.bias.detach().double().cpu()
        phases = _conv_like(w3.reshape(4 * cout, cin, 3, 3), bias.repeat_interleave(4))
        self.up = _WConv.from_conv(phases, run.m)
        self.out_ch = cout

    def one(self, x: torch.Tensor, take: Callable[..., torch.Tensor]) -> torch.Tensor:
        run = self.run
        h, w = x.shape[-2:]
        hh, ww = h + 2 * self.border, w + 2 * self.border
        cur = F.pad(x, (self.border,) * 4, mode="replicate")[0].permute(1, 2, 0)
        for k, wc in enumerate(self.convs, start=1):
            buf = take(hh, ww, wc.cout)
            dst = buf[k - 1:hh - k + 1, k - 1:ww - k + 1]
            run.conv(wc, cur, dst, _Epilogue(bias=wc.bias, act=1, slope=0.1))
            cur = buf[k:hh - k, k:ww - k]  # where layer k is exact
        full = torch.empty(1, self.out_ch, 2 * (h + 2), 2 * (w + 2))
        run.conv(self.up, cur, full[0], _Epilogue(bias=self.up.bias, shuffle=2))
        return full[:, :, 2:2 * h + 2, 2:2 * w + 2].contiguous()


class _ESPCNPlan(_Plan):
    """ESPCN: the first (5x5) conv by PyTorch in row bands on the pool, the 3x3 convs with the activation
    fused, the last one storing its pixel shuffle (and the final tanh) into the output."""

    def __init__(self, net: nn.Module, run: _Runner) -> None:
        super().__init__(run)
        c1, c2, c3 = net.conv1, net.conv2, net.conv3
        if not (winograd_eligible(c2) and winograd_eligible(c3) and c1.stride == (1, 1) and c1.groups == 1
                and c1.dilation == (1, 1) and c1.padding_mode == "zeros"
                and c1.padding == (c1.kernel_size[0] // 2, c1.kernel_size[1] // 2)
                and c1.kernel_size[0] % 2 == 1 and c1.kernel_size[1] % 2 == 1):
            raise TypeError("unexpected ESPCN layout")
        relu = net._act is torch.relu
        self.act = _Epilogue(act=1, slope=0.0) if relu else _Epilogue(act=5)
        self.w1 = c1.weight.detach().float().cpu().clone()
        self.w1m = self.w1.reshape(c1.out_channels, -1).t().contiguous()  # (c*kh*kw, n1), unfold's order
        b1 = c1.bias.detach().float().cpu().clone() if c1.bias is not None else None
        self.b1m = b1 if b1 is not None else torch.zeros(c1.out_channels)
        ph, pw = c1.kernel_size[0] // 2, c1.kernel_size[1] // 2
        self.pad = (pw, pw, ph, ph)
        self.n1, self.n1p = c1.out_channels, _up8(c1.out_channels)
        self.relu = relu
        self.in_channels = c1.in_channels
        self.conv2 = _WConv.from_conv(c2, run.m)
        self.conv3 = _WConv.from_conv(c3, run.m)
        self.scale = int(net.scale)
        self.out_ch = c3.out_channels // self.scale ** 2
        self.final = _Epilogue(act=5 if net._final_tanh else 0, shuffle=self.scale)

    def one(self, x: torch.Tensor, take: Callable[..., torch.Tensor]) -> torch.Tensor:
        run = self.run
        h, w = x.shape[-2:]
        xp = F.pad(x, self.pad)
        a = take(h, w, self.n1p, zeroed=True)  # channels >= n1 stay zero
        kh = self.w1.shape[2]
        count = max(1, min(h, 2 * run.pool.workers))
        step = -(-h // count)

        def band(i: int) -> None:
            # im2col + one matrix product: the result is already channels-last (an NCHW conv2d and a
            # permuting copy took 2/3 of espcn-m-x4's time)
            r0, r1 = i * step, min(h, (i + 1) * step)
            if r1 <= r0:
                return
            cols = F.unfold(xp[:, :, r0:r1 + kh - 1], self.w1.shape[2:])[0].t()  # (pixels, c*kh*kw)
            rows = a[r0:r1].view((r1 - r0) * w, self.n1p)
            if self.n1 == self.n1p:
                z = torch.addmm(self.b1m, cols, self.w1m, out=rows)
            else:
                z = rows[:, :self.n1]
                z.copy_(torch.addmm(self.b1m, cols, self.w1m))
            torch.relu_(z) if self.relu else torch.tanh_(z)

        run.pool.map(band, count)
        b = take(h, w, self.conv2.cout)
        run.conv(self.conv2, a, b, replace(self.act, bias=self.conv2.bias))
        y = torch.empty(1, self.out_ch, h * self.scale, w * self.scale)
        run.conv(self.conv3, b, y[0], replace(self.final, bias=self.conv3.bias))
        return y


class _EDSRPlan(_Plan):
    """EDSR: the mean shift in PyTorch (3 channels), residual blocks with ReLU and the scaled skip fused (in
    place), the global skip fused into the body's last conv, the upsampler convs storing their pixel shuffle
    channels-last, and add_mean / rgb_range folded into the last conv's weights."""

    def __init__(self, net: nn.Module, run: _Runner) -> None:
        super().__init__(run)
        m = run.m
        blocks, body_last = list(net.body)[:-1], list(net.body)[-1]
        ups, last = list(net.tail[0]), net.tail[1]
        convs = [net.head[0], body_last, last, *[c for blk in blocks for c in (blk.body[0], blk.body[2])],
                 *[u for u in ups if isinstance(u, nn.Conv2d)]]
        if not all(winograd_eligible(c) for c in convs) or len(net.head) != 1:
            raise TypeError("unexpected EDSR layout")
        if not all(isinstance(blk.body[1], nn.ReLU) for blk in blocks):
            raise TypeError("unexpected EDSR block")
        self.net_sub = net.sub_mean
        self.rgb_range = float(net.rgb_range)
        self.head = _WConv.from_conv(net.head[0], m)
        self.blocks = [(_WConv.from_conv(blk.body[0], m), _WConv.from_conv(blk.body[2], m),
                        float(blk.res_scale)) for blk in blocks]
        self.body_last = _WConv.from_conv(body_last, m)
        self.ups: list[tuple[_WConv, int, int]] = []  # conv, shuffle s, channels after the shuffle
        for conv, shuf in zip(ups[0::2], ups[1::2]):
            if not isinstance(shuf, nn.PixelShuffle) or conv.out_channels % shuf.upscale_factor ** 2:
                raise TypeError("unexpected EDSR upsampler")
            s = int(shuf.upscale_factor)
            self.ups.append((_WConv.from_conv(conv, m), s, conv.out_channels // s ** 2))
        # y = (M (W x + b) + bm) / r  ->  one conv with weights M W / r and bias (M b + bm) / r
        am = net.add_mean
        mm = am.weight.detach().double().cpu()[:, :, 0, 0]
        w = torch.einsum("oc,cikl->oikl", mm, last.weight.detach().double().cpu()) / self.rgb_range
        b = (mm @ last.bias.detach().double().cpu() + am.bias.detach().double().cpu()) / self.rgb_range
        self.last = _WConv.from_conv(_conv_like(w, b), m)
        self.out_ch = last.out_channels
        self.in_channels = net.head[0].in_channels

    def one(self, x: torch.Tensor, take: Callable[..., torch.Tensor]) -> torch.Tensor:
        run = self.run
        h, w = x.shape[-2:]
        xn = self.net_sub(x * self.rgb_range)[0].permute(1, 2, 0)
        nf = self.head.cout
        x0, cur, t = take(h, w, nf), take(h, w, nf), take(h, w, nf)
        run.conv(self.head, xn, x0, _Epilogue(bias=self.head.bias))
        src = x0
        for c1, c2, rs in self.blocks:
            run.conv(c1, src, t, _Epilogue(bias=c1.bias, act=1, slope=0.0))
            run.conv(c2, t, cur, _Epilogue(bias=c2.bias, r1=src, s1=rs))  # in place after the first block
            src = cur
        feat = take(h, w, nf)
        run.conv(self.body_last, src, feat, _Epilogue(bias=self.body_last.bias, r1=x0, s1=1.0))
        for wc, s, c in self.ups:
            hh, ww = feat.shape[0] * s, feat.shape[1] * s
            nxt = take(hh, ww, c)
            run.conv(wc, feat, nxt.permute(2, 0, 1), _Epilogue(bias=wc.bias, shuffle=s))
            feat = nxt
        y = torch.empty(1, self.out_ch, feat.shape[0], feat.shape[1])
        run.conv(self.last, feat, y[0].permute(1, 2, 0), _Epilogue(bias=self.last.bias))
        return y


# ---- the U-Nets with SE gates: Real-CUGAN and waifu2x CUNet ---------------------------------------------


def _valid3x3(conv: nn.Module) -> bool:
    """An unpadded stride-1 3x3 convolution (the U-Nets' only 3x3 kind)."""
    return (isinstance(conv, nn.Conv2d) and conv.kernel_size == (3, 3) and conv.stride == (1, 1)
            and conv.padding == (0, 0) and conv.dilation == (1, 1) and conv.groups == 1)


def _two_by_two(conv: nn.Module, cls: type) -> bool:
    """A 2x2 stride-2 (transposed) convolution with widths the banded kernels take (multiples of 8)."""
    ok = (type(conv) is cls and conv.kernel_size == (2, 2) and conv.stride == (2, 2)
          and conv.padding == (0, 0) and conv.dilation == (1, 1) and conv.groups == 1
          and conv.in_channels % 8 == 0 and conv.out_channels % 8 == 0)
    return ok and (cls is nn.Conv2d or conv.output_padding == (0, 0))


def _transposed_phases(ct: nn.ConvTranspose2d) -> tuple[nn.Conv2d, int]:
    """A ConvTranspose2d (kernel k, stride s, padding p) as a padded 3x3 conv with s^2 x Cout outputs (phase
    (a, b) of output channel n at n*s*s + a*s + b, so an x s pixel shuffle stores it) and the offset of the
    transposed conv's output in that shuffled image: output o = s*q + a - off reads inputs q-1 .. q+1, and the
    3x3 conv's zero padding is the transposed conv's own edge. UpConv7's (k 4, s 2, p 3) and Real-CUGAN 3x's
    (k 5, s 3, p 2) both fit; ``TypeError`` when a kernel reaches beyond one input pixel either side."""
    k, s, p = ct.kernel_size[0], ct.stride[0], ct.padding[0]
    if not (ct.kernel_size == (k, k) and ct.stride == (s, s) and ct.padding == (p, p)
            and ct.output_padding == (0, 0) and ct.groups == 1 and ct.dilation == (1, 1)):
        raise TypeError("unexpected transposed convolution")
    span = range(-(k + p + s), k + p + s + 1)
    for off in range(s + 2 * p - k + 1):  # the output must fit in the s * in shuffled image
        if all(not 0 <= a - off + p - s * d < k for a in range(s) for d in span if d not in (-1, 0, 1)):
            break
    else:
        raise TypeError(f"a {k}x{k} stride-{s} transposed convolution reaches beyond a 3x3 window")
    wt = ct.weight.detach().double().cpu()  # (Cin, Cout, k, k)
    cin, cout = wt.shape[:2]
    w3 = torch.zeros(cout, s, s, cin, 3, 3, dtype=torch.float64)
    for a in range(s):
        for b in range(s):
            for kr in range(3):
                for kc in range(3):
                    tr, tc = a - off + p - s * (kr - 1), b - off + p - s * (kc - 1)
                    if 0 <= tr < k and 0 <= tc < k:
                        w3[:, a, b, :, kr, kc] = wt[:, :, tr, tc].t()
    bias = torch.zeros(cout, dtype=torch.float64) if ct.bias is None else ct.bias.detach().double().cpu()
    return _conv_like(w3.reshape(s * s * cout, cin, 3, 3), bias.repeat_interleave(s * s)), off


class _UNetOps:
    """The U-Nets' steps that are not 3x3 convolutions, in bands of rows on the pool: 2x2 stride-2 convs (a
    GEMM per row of 2x2 blocks, bias and LeakyReLU fused), 2x2 stride-2 transposed convs with the skip
    addition (and an SE gate on the skip) fused, and per-channel sums for the SE means. Compiled
    (``fast_kernels.c``: sr_down2, sr_up2, sr_chsum, on the kernel's own GEMM) where the kernel library has
    them, else PyTorch (the compiler-free ``winograd_torch`` mode)."""

    def __init__(self, run: _Runner) -> None:
        self.run = run
        lib = getattr(run.kern, "lib", None)
        self.compiled = lib is not None and hasattr(lib, "sr_down2")
        if self.compiled:
            i64, ptr, f32 = ctypes.c_int64, ctypes.c_void_p, ctypes.c_float
            self._down, self._up, self._sum = lib.sr_down2, lib.sr_up2, lib.sr_chsum
            self._down.restype = self._up.restype = self._sum.restype = None
            self._down.argtypes = [ptr, i64, i64, i64, i64, ptr, i64, ptr, f32, ptr, i64, i64, i64, i64, ptr]
            self._up.argtypes = [ptr, i64, i64, i64, i64, ptr, i64, ptr, f32, ptr, i64, i64, ptr, ptr, i64,
                                 i64, i64, i64, ptr]
            self._sum.argtypes = [ptr, i64, i64, i64, i64, i64, i64, ptr]

    def _bands(self, rows: int) -> list[tuple[int, int]]:
        count = max(1, min(rows, 4 * self.run.pool.workers))
        step = -(-rows // count)
        return [(r, min(rows, r + step)) for r in range(0, rows, step)]

    def down(self, src: torch.Tensor, wd: torch.Tensor, bias: torch.Tensor, slope: float,
             dst: torch.Tensor) -> None:
        """dst (ho, wo, N) = lrelu(conv2x2/2(src) + bias); src (>= 2ho, >= 2wo, C) view, channels contiguous;
        wd (4C, N) with row (a*2 + b)*C + c for tap (a, b) of input channel c."""
        ho, wo, n_out = dst.shape
        c = src.shape[2]
        bands = self._bands(ho)

        def compiled(i: int) -> None:
            r0, r1 = bands[i]
            scratch = _scratch_buf("unet", wo * 4 * c)
            self._down(src.data_ptr(), src.stride(0), src.stride(1), c, wo, wd.data_ptr(), n_out,
                       bias.data_ptr(), slope, dst.data_ptr(), dst.stride(0), dst.stride(1), r0, r1,
                       scratch.data_ptr())

        def torch_ops(i: int) -> None:
            r0, r1 = bands[i]
            n = r1 - r0
            blocks = src[2 * r0:2 * r1, :2 * wo].reshape(n, 2, wo, 2, c).permute(0, 2, 1, 3, 4)
            z = torch.addmm(bias, blocks.reshape(n * wo, 4 * c), wd)
            dst[r0:r1].copy_(F.leaky_relu(z, slope).view(n, wo, n_out))

        self.run.pool.map(compiled if self.compiled else torch_ops, len(bands))

    def up(self, src: torch.Tensor, wt: torch.Tensor, bias: torch.Tensor, slope: float,
           skip: torch.Tensor | None, gate: torch.Tensor | None, dst: torch.Tensor) -> None:
        """dst (2h, 2w, N) = lrelu(convT2x2/2(src) + bias) + gate * skip; src (h, w, C); wt (C, 4N) with
        column (a*2 + b)*N + n for output phase (a, b). dst may be skip itself (in place)."""
        h, w, c = src.shape
        n_out = dst.shape[2]
        bands = self._bands(h)
        kp, ksy, ksx = (0, 0, 0) if skip is None else (skip.data_ptr(), skip.stride(0), skip.stride(1))

        def compiled(i: int) -> None:
            r0, r1 = bands[i]
            scratch = _scratch_buf("unet", w * 4 * n_out)
            self._up(src.data_ptr(), src.stride(0), src.stride(1), c, w, wt.data_ptr(), n_out,
                     bias.data_ptr(), slope, kp or None, ksy, ksx, _ptr(gate), dst.data_ptr(), dst.stride(0), dst.stride(1),
                     r0, r1, scratch.data_ptr())

        bias4 = bias.repeat(4)

        def torch_ops(i: int) -> None:
            r0, r1 = bands[i]
            n = r1 - r0
            z = F.leaky_relu(torch.addmm(bias4, src[r0:r1].reshape(n * w, c), wt), slope)
            z = z.view(n, w, 2, 2, n_out).permute(0, 2, 1, 3, 4).reshape(2 * n, 2 * w, n_out)
            if skip is not None:
                k = skip[2 * r0:2 * r1]
                z = z + (k if gate is None else k * gate)
            dst[2 * r0:2 * r1].copy_(z)

        self.run.pool.map(compiled if self.compiled else torch_ops, len(bands))

    def mean(self, src: torch.Tensor) -> torch.Tensor:
        """Per-channel mean of an (h, w, C) view (channels contiguous), summed in float64 per band."""
        h, w, c = src.shape
        bands = self._bands(h)
        sums = torch.zeros(len(bands), c, dtype=torch.float64)

        def compiled(i: int) -> None:
            r0, r1 = bands[i]
            self._sum(src.data_ptr(), src.stride(0), src.stride(1), c, w, r0, r1, sums[i].data_ptr())

        def torch_ops(i: int) -> None:
            r0, r1 = bands[i]
            sums[i] = src[r0:r1].sum(dim=(0, 1), dtype=torch.float64)

        self.run.pool.map(compiled if self.compiled else torch_ops, len(bands))
        return (sums.sum(0) / (h * w)).float()


@dataclass(frozen=True)
class _SEGate:
    """sigmoid(fc2(relu(fc1(mean)))): copies of an SE block's weights."""

    w1: torch.Tensor
    b1: torch.Tensor
    w2: torch.Tensor
    b2: torch.Tensor
    key: int = 0  # id() of the SE module copied: superres.inference.se_bands tells gates apart by it

    @staticmethod
    def of(se: nn.Module) -> "_SEGate | None":
        from ..archs.cugan import SE

        if isinstance(se, nn.Identity):
            return None
        if type(se) is not SE:
            raise TypeError("unexpected SE block")
        fc1, fc2 = se.fc1, se.fc2
        params = (fc1.weight, fc1.bias, fc2.weight, fc2.bias)
        return _SEGate(*(t.detach().float().cpu().clone() for t in params), key=id(se))

    def __call__(self, mean: torch.Tensor) -> torch.Tensor:
        z = F.relu(F.linear(mean[None], self.w1, self.b1))
        return torch.sigmoid(F.linear(z, self.w2, self.b2))[0].contiguous()


class _Reuse:
    """``take`` for one call that also hands out again, as views, the buffers a plan declares dead
    (``free``): a later map of the same width that fits goes there. The second U-Net's half- and
    quarter-resolution maps live in the first one's buffers, so a call peaks below eager's memory."""

    def __init__(self, take: Callable[..., torch.Tensor]) -> None:
        self.take = take
        self.dead: list[torch.Tensor] = []

    def __call__(self, h: int, w: int, c: int, zeroed: bool = False) -> torch.Tensor:
        if not zeroed:
            fits = [b for b in self.dead if b.shape[2] == c and b.shape[0] >= h and b.shape[1] >= w]
            if fits:
                best = min(fits, key=lambda b: b.shape[0] * b.shape[1])
                self.dead = [b for b in self.dead if b is not best]
                return best[:h, :w]
        return self.take(h, w, c, zeroed=zeroed)

    def free(self, *bufs: torch.Tensor) -> None:
        self.dead.extend(bufs)


class _UNetPlan(_Plan):
    """Real-CUGAN (x2, x3, x4; SE, no-SE and pro weights) and waifu2x CUNet (x2, x1): two cascaded U-Nets.

    * Unpadded 3x3 convs run as padded ones over the exact region of their input (UpConv7's way): the output's
      outer ring read the zero padding and is dropped (a view, no copy). LeakyReLU(0.1) and the last conv's
      cascade residual are fused into the output transforms.
    * 2x2 stride-2 convs and transposed convs are GEMMs in bands of rows (``_UNetOps``); each up-step adds
      its skip (the cropped earlier map) in place, fused.
    * SE gates in two passes: the map is produced, its channel means reduced, and the gate (a per-channel
      scale) folded into the weights of the one layer that reads the map (the up or down step), or, where
      the map is also a skip (UNet2's second level), applied to the skip inside the fused addition.
    * The first U-Net's last layer (a 4x4 / 5x5 transposed conv) is a 3x3 conv with scale^2 phases stored
      through a pixel shuffle (``_transposed_phases``); the x4 model's last conv stores its pixel shuffle
      into the output, where the nearest-neighbour input is added.
    * Edge padding and the output crop as the network's ``forward`` does them (``run_padded``)."""

    SLOPE = 0.1

    def __init__(self, net: nn.Module, run: _Runner) -> None:
        from ..archs.cugan import RealCUGAN

        super().__init__(run)
        self.buffers = _Buffers(cap=512 << 20)  # whole images: a 256x256 call leases 290 (x2) - 350 MB (x4)
        self.ops = _UNetOps(run)
        m = run.m
        cugan = isinstance(net, RealCUGAN)
        u1, u2 = (net.unet1, net.unet2) if cugan else (net.stage1, net.stage2)
        self.scale, self.pad, self.multiple = int(net.scale), int(net.pad), int(net.multiple)
        self.pro = bool(getattr(net, "pro", False))

        def v(conv: nn.Module) -> _WConv:
            if not _valid3x3(conv):
                raise TypeError("unexpected U-Net layer (expected an unpadded 3x3 conv)")
            return _WConv.from_conv(conv, m)

        def down(conv: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
            if not _two_by_two(conv, nn.Conv2d):
                raise TypeError("unexpected U-Net down step")
            w = conv.weight.detach().float().cpu()  # (N, C, 2, 2)
            return w.permute(2, 3, 1, 0).reshape(4 * w.shape[1], w.shape[0]).contiguous(), self._bias(conv)

        def up(conv: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
            if not _two_by_two(conv, nn.ConvTranspose2d):
                raise TypeError("unexpected U-Net up step")
            w = conv.weight.detach().float().cpu()  # (C, N, 2, 2)
            return w.permute(0, 2, 3, 1).reshape(w.shape[0], 4 * w.shape[1]).contiguous(), self._bias(conv)

        self.u1 = dict(c1a=v(u1.conv1a), c1b=v(u1.conv1b), down=down(u1.down), c2a=v(u1.conv2a),
                       c2b=v(u1.conv2b), se=_SEGate.of(u1.se), up=up(u1.up), c3=v(u1.conv3))
        out = u1.out
        self.mid = out.out_channels
        if isinstance(out, nn.ConvTranspose2d):
            phases, off = _transposed_phases(out)
            k, s, p = out.kernel_size[0], out.stride[0], out.padding[0]
            self.out1 = (_WConv.from_conv(phases, m), s, off, (k, p))
        else:
            self.out1 = (v(out), 0, 1, (3, 0))
        self.u2 = dict(c1a=v(u2.conv1a), c1b=v(u2.conv1b), down1=down(u2.down1), c2a=v(u2.conv2a),
                       c2b=v(u2.conv2b), se2=_SEGate.of(u2.se2), down2=down(u2.down2), c3a=v(u2.conv3a),
                       c3b=v(u2.conv3b), se3=_SEGate.of(u2.se3), up3=up(u2.up3), c4a=v(u2.conv4a),
                       c4b=v(u2.conv4b), se4=_SEGate.of(u2.se4), up4=up(u2.up4), c5=v(u2.conv5),
                       out=v(u2.out))
        final = getattr(net, "final", None)
        self.final = v(final) if final is not None else None
        self.in_channels = u1.conv1a.in_channels
        self.out_ch = final.out_channels // 4 if final is not None else u2.out.out_channels
        if self.final is None and self.out_ch != self.mid:
            raise TypeError("unexpected cascade (the second U-Net must keep the first one's channels)")

    @staticmethod
    def _bias(conv: nn.Module) -> torch.Tensor:
        n = conv.out_channels
        return conv.bias.detach().float().cpu().clone() if conv.bias is not None else torch.zeros(n)

    def _conv(self, wc: _WConv, src: torch.Tensor, take: Callable[..., torch.Tensor], act: bool = True,
              dst: torch.Tensor | None = None, r1: torch.Tensor | None = None) -> torch.Tensor:
        """An unpadded 3x3 conv of the (h, w) view src: the padded conv over it into dst (h, w, Cout), of
        which the (h - 2, w - 2) interior returned is exact."""
        if dst is None:
            dst = take(src.shape[0], src.shape[1], wc.cout)
        ep = _Epilogue(bias=wc.bias, act=1 if act else 0, slope=self.SLOPE, r1=r1, s1=1.0)
        self.run.conv(wc, src, dst, ep)
        return dst[1:-1, 1:-1]

    def _down(self, wts: tuple[torch.Tensor, torch.Tensor], src: torch.Tensor,
              take: Callable[..., torch.Tensor], gate: torch.Tensor | None = None) -> torch.Tensor:
        wd, bias = wts
        if gate is not None:  # down(x * g) = x @ (g-scaled rows)
            wd = (wd.view(4, -1, wd.shape[1]) * gate[None, :, None]).view(wd.shape)
        dst = take(src.shape[0] // 2, src.shape[1] // 2, wd.shape[1])
        self.ops.down(src, wd, bias, self.SLOPE, dst)
        return dst

    def _up(self, wts: tuple[torch.Tensor, torch.Tensor], src: torch.Tensor, gate: torch.Tensor | None,
            skip: torch.Tensor, skip_gate: torch.Tensor | None = None) -> None:
        wt, bias = wts
        if gate is not None:  # up(x * g) = x @ (g-scaled rows)
            wt = wt * gate[:, None]
        self.ops.up(src, wt, bias, self.SLOPE, skip, skip_gate, skip)

    def _gate(self, se: _SEGate | None, src: torch.Tensor) -> torch.Tensor | None:
        if se is None:
            return None
        from ..archs.cugan import SE_CONTROL

        control = SE_CONTROL.get()  # in bands (superres.inference.se_bands): the whole image's mean
        if control is not None:
            return control.engine_gate(se.key, src, se, lambda: self.ops.mean(src))
        return se(self.ops.mean(src))

    def _unet1(self, u: torch.Tensor, take: _Reuse) -> torch.Tensor:
        k = self.u1
        a = self._conv(k["c1a"], u, take)
        x1 = self._conv(k["c1b"], a, take)
        take.free(a)
        d = self._down(k["down"], x1, take)
        b = self._conv(k["c2a"], d, take)
        c = self._conv(k["c2b"], b, take)
        skip = x1[4:-4, 4:-4]
        self._up(k["up"], c, self._gate(k["se"], c), skip)
        e = self._conv(k["c3"], skip, take)
        take.free(x1, d, b, c)
        wc, s, off, (kk, p) = self.out1
        # zeroed: channels past mid (RGB padded to 8) are never written and read as zero by the next conv
        if not s:  # CUNet 1x: an unpadded 3x3 conv to RGB
            buf = take(e.shape[0], e.shape[1], _up8(self.mid), zeroed=True)
            self._conv(wc, e, take, act=False, dst=buf[..., :self.mid])
            take.free(e)
            return buf[1:-1, 1:-1]
        hh, ww = e.shape[0], e.shape[1]
        oh, ow = (hh - 1) * s - 2 * p + kk, (ww - 1) * s - 2 * p + kk
        buf = take(hh * s, ww * s, _up8(self.mid), zeroed=True)
        self.run.conv(wc, e, buf[..., :self.mid].permute(2, 0, 1), _Epilogue(bias=wc.bias, shuffle=s))
        take.free(e)
        return buf[off:off + oh, off:off + ow]

    def _unet2(self, y1: torch.Tensor, take: _Reuse, h: int, w: int) -> torch.Tensor:
        k = self.u2
        hh, ww = y1.shape[:2]
        big = take(hh, ww, k["c5"].cout)  # conv1a's output, then conv5's
        a = self._conv(k["c1a"], y1, take, dst=big[..., :k["c1a"].cout])
        x1 = self._conv(k["c1b"], a, take)
        d1 = self._down(k["down1"], x1, take)
        b = self._conv(k["c2a"], d1, take)
        x2 = self._conv(k["c2b"], b, take)
        take.free(d1, b)
        g2 = self._gate(k["se2"], x2)
        d2 = self._down(k["down2"], x2, take, g2)
        b3 = self._conv(k["c3a"], d2, take)
        take.free(d2)
        x3 = self._conv(k["c3b"], b3, take)
        s3 = x2[4:-4, 4:-4]
        self._up(k["up3"], x3, self._gate(k["se3"], x3), s3, g2)  # x2 is gated where it is a skip, too
        take.free(b3, x3)
        b4 = self._conv(k["c4a"], s3, take)
        x4 = self._conv(k["c4b"], b4, take)
        s4 = x1[16:-16, 16:-16]
        self._up(k["up4"], x4, self._gate(k["se4"], x4), s4)
        e = self._conv(k["c5"], s4, take, dst=big[:s4.shape[0], :s4.shape[1]])
        take.free(x1)
        wc, res = k["out"], y1[19:-19, 19:-19]  # the cascade's residual crop(y1, 20), one pixel wider
        s = self.scale
        if self.final is None:  # RGB (padded to 8 channels, all vector stores), then its NCHW crop
            out = self._conv(wc, e, take, act=False, r1=res)
            y = torch.empty(1, self.out_ch, s * h, s * w)  # not a view of a buffer the next call reuses
            y[0].copy_(out[:s * h, :s * w, :self.out_ch].permute(2, 0, 1))
            return y
        z = self._conv(wc, e, take, act=False, r1=res)
        y = torch.empty(1, self.out_ch, 2 * z.shape[0], 2 * z.shape[1])
        self.run.conv(self.final, z, y[0], _Epilogue(bias=self.final.bias, shuffle=2))
        return y[:, :, 4:4 + s * h, 4:4 + s * w]  # the x4 graph's 1-pixel crop before its x2 shuffle

    def one(self, x: torch.Tensor, take: Callable[..., torch.Tensor]) -> torch.Tensor:
        from ..archs.cugan import PRO_GAIN, PRO_OFFSET

        h, w = x.shape[-2:]
        z = x * PRO_GAIN + PRO_OFFSET if self.pro else x
        ph, pw = -h % self.multiple, -w % self.multiple
        z = F.pad(z, (self.pad, self.pad + pw, self.pad, self.pad + ph), mode="replicate")
        arena = _Reuse(take)
        y = self._unet2(self._unet1(z[0].permute(1, 2, 0), arena), arena, h, w)
        if self.pro:
            y = (y - PRO_OFFSET) / PRO_GAIN
        if self.final is not None:
            y = y + F.interpolate(x, scale_factor=4, mode="nearest")
        return y.contiguous()


def _plan_class(net: nn.Module) -> type[_Plan] | None:
    from ..archs.cugan import RealCUGAN
    from ..archs.cunet import CUNet
    from ..archs.edsr import EDSR
    from ..archs.espcn import ESPCN
    from ..archs.rrdbnet import RRDBNet
    from ..archs.span import SPAN
    from ..archs.srmd import SRMD
    from ..archs.srvgg import SRVGGNetCompact
    from ..archs.upconv7 import UpConv7

    plans: dict[type, type[_Plan]] = {SRVGGNetCompact: _SRVGGPlan, RRDBNet: _RRDBPlan, SPAN: _SPANPlan,
                                      SRMD: _SRMDPlan, UpConv7: _UpConv7Plan, ESPCN: _ESPCNPlan,
                                      EDSR: _EDSRPlan, RealCUGAN: _UNetPlan, CUNet: _UNetPlan}
    return plans.get(type(net))


def _make_plan(net: nn.Module, run: _Runner) -> _Plan:
    cls = _plan_class(net)
    if cls is None:
        raise TypeError(f"no Winograd plan for {type(net).__name__}")
    return cls(net, run)


def has_plan(net: nn.Module) -> bool:
    """Whether the ``winograd`` modes cover this network (SRVGGNetCompact, RRDBNet, SPAN, SRMD, UpConv7,
    ESPCN, EDSR, Real-CUGAN, CUNet)."""
    return _plan_class(net) is not None


# ---- windowed attention (DAT) ------------------------------------------------------------------------------

#: Largest head size the compiled attention takes (its accumulators live in registers or on the stack).
ATTENTION_MAX_HEAD = 64


def attention_bias_blocks(bias: torch.Tensor) -> torch.Tensor:
    """(..., heads, N, N) additive bias -> (..., heads, N/8, N, 8): each block of eight query rows
    transposed, the layout in which the kernel reads it (eight rows at once, one per vector lane)."""
    *lead, heads, n, _ = bias.shape
    return bias.reshape(*lead, heads, n // 8, 8, n).transpose(-1, -2).contiguous()


def map_attention_reference(win: Any) -> None:
    """What the kernel computes, in float64 torch (the self-test's and the tests' reference): gather the
    rolled windows, attend, write the kept tokens into ``win.out``."""
    qkv, out = win.qkv, win.out
    (wh, ww), d, heads = win.window, win.head_dim, win.heads
    b, _, wp, c3 = qkv.shape
    nh, nw, n = win.rowmap.numel() // wh, wp // ww, wh * ww
    cols = (torch.arange(wp) + win.col_shift) % wp
    rolled = qkv[:, win.rowmap.long()][:, :, cols].view(b, nh * wh, wp, 3, c3 // 3)
    t = rolled[..., win.channel:win.channel + heads * d].reshape(b, nh, wh, nw, ww, 3, heads, d)
    q, k, v = t.permute(5, 0, 1, 3, 6, 2, 4, 7).reshape(3, b * nh * nw, heads, n, d).double().unbind(0)
    bias = win.bias.double()[None]
    if win.masks is not None:
        per = torch.zeros(nh * nw, n, n, dtype=torch.float64)
        sel = win.mask_of >= 0
        per[sel] = win.masks.double()[win.mask_of[sel].long()]
        bias = bias + per.repeat(b, 1, 1)[:, None]
    o = torch.softmax(q @ k.transpose(-1, -2) * d ** -0.5 + bias, -1) @ v
    o = o.view(b, nh, nw, heads, wh, ww, d).permute(0, 1, 4, 2, 5, 3, 6).reshape(b, nh * wh, wp, heads * d)
    rows = (win.outrow >= 0).nonzero().flatten()
    keep = (cols < out.shape[2]).nonzero().flatten()
    span = slice(win.out_channel, win.out_channel + heads * d)
    out[:, win.outrow.long()[rows][:, None], cols[keep][None, :], span] = o[:, rows][:, :, keep].to(out.dtype)


def _map_windows_fit(win: Any) -> bool:
    """Whether the kernel takes ``win`` and every address it will form lies inside its tensors."""
    qkv, out = win.qkv, win.out
    wh, ww = win.window
    n, d = wh * ww, win.head_dim
    tensors = [qkv, out, win.bias, *([] if win.masks is None else [win.masks])]
    if (qkv.dim() != 4 or out.dim() != 4 or n % 8 or not 0 < d <= ATTENTION_MAX_HEAD
            or any(t.dtype != torch.float32 or t.device.type != "cpu" for t in tensors)
            or qkv.stride(3) != 1 or out.stride(3) != 1 or qkv.shape[0] != out.shape[0]):
        return False
    b, r, wp, c3 = qkv.shape
    rows = win.rowmap.numel()
    if (c3 % 3 or wp % ww or rows % wh or rows != win.outrow.numel() or out.shape[2] > wp
            or win.channel < 0 or win.channel + win.heads * d > c3 // 3
            or win.out_channel < 0 or win.out_channel + win.heads * d > out.shape[3]
            or tuple(win.bias.shape) != (win.heads, n, n) or not 0 <= win.col_shift < wp):
        return False
    if rows and (int(win.rowmap.min()) < 0 or int(win.rowmap.max()) >= r or int(win.outrow.max()) >= out.shape[1]):
        return False
    if win.masks is not None:
        windows = rows // wh * (wp // ww)
        if (win.mask_of is None or win.masks.dim() != 3 or tuple(win.masks.shape[1:]) != (n, n)
                or win.mask_of.numel() != windows or (windows and int(win.mask_of.max()) >= win.masks.shape[0])):
            return False
    return True


def map_attention_kernel(kern: _CKernels, pool: _Pool | _Inline) -> Callable[[Any], bool]:
    """The compiled windowed attention as a :func:`superres.archs.base.attention_kernel` function: the
    windows split over the engine's workers; False (the architecture's torch path) for inputs it does not
    take."""

    def attend(win: Any) -> bool:
        if not _map_windows_fit(win):
            return False
        longs = {f: getattr(win, f).to(torch.int64).contiguous() for f in ("rowmap", "outrow")}
        mask_of = None if win.masks is None else win.mask_of.to(torch.int64).contiguous()
        win = replace(win, **longs)
        bias = attention_bias_blocks(win.bias)
        masks = None if win.masks is None or not win.masks.numel() else attention_bias_blocks(win.masks[:, None])
        total = win.qkv.shape[0] * (win.rowmap.numel() // win.window[0]) * (win.qkv.shape[2] // win.window[1])
        chunks = min(total, 4 * pool.workers)

        def item(i: int) -> None:
            kern.map_attention(total * i // chunks, total * (i + 1) // chunks, win, bias,
                               masks, mask_of if masks is not None else None)

        pool.map(item, chunks)
        return True

    return attend


def engine_map_attention(win: Any) -> bool:
    """The engine's windowed attention for the channels-last forward (kernels built on first use; False
    without a C compiler), on the workers of ``torch.get_num_threads()``."""
    kern = c_kernels()
    return kern is not None and map_attention_kernel(kern, _pool(torch.get_num_threads()))(win)


# ---- channels-last -----------------------------------------------------------------------------------------


def _channels_last(net: nn.Module) -> Forward:
    cl = copy.deepcopy(net).eval().requires_grad_(False).to(memory_format=torch.channels_last)
    descriptor = getattr(cl, "descriptor", None)
    continuous = bool(getattr(descriptor, "continuous", False)) and hasattr(cl, "upscale_to")

    from ..archs.base import attention_kernel, item_workers

    def forward(x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode(), attention_kernel(engine_map_attention), item_workers(worker_map()):
            x = x.contiguous(memory_format=torch.channels_last)
            if continuous:  # LIIF at its nominal scale, query blocks on the workers (as the pipeline runs it)
                s = int(getattr(cl, "scale"))
                render: Any = cl.upscale_to
                return render(x, x.shape[-2] * s, x.shape[-1] * s, map_blocks=worker_map()).contiguous()
            return cl(x).contiguous()

    return forward


# ---- accelerate ------------------------------------------------------------------------------------------

_CACHE_LOCK = threading.Lock()
_CACHE: "weakref.WeakKeyDictionary[nn.Module, dict[tuple, tuple[tuple, Forward]]]"
_CACHE = weakref.WeakKeyDictionary()
_WARNED: set[str] = set()
_WINOGRAD = {"winograd": ("c", 6), "winograd_f4": ("c", 4), "winograd_torch": ("torch", 4)}


def _warn_once(msg: str) -> None:
    with _CACHE_LOCK:
        if msg in _WARNED:
            return
        _WARNED.add(msg)
    log.warning("%s", msg)


def _fingerprint(net: nn.Module) -> tuple:
    return tuple((t.data_ptr(), t._version, tuple(t.shape)) for t in [*net.parameters(), *net.buffers()])


def _resolve(net: nn.Module, device: torch.device, mode: str) -> str:
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; expected one of {', '.join(MODES)}")
    if mode == "eager":
        return mode
    params = list(net.parameters())
    if device.type != "cpu" or any(p.dtype != torch.float32 or p.device.type != "cpu" for p in params):
        if mode != "auto":
            _warn_once(f"mode {mode!r} is for fp32 CPU networks; running eager on {device}")
        return "eager"
    if mode == "auto":
        return "winograd" if has_plan(net) and c_kernels() is not None else "channels_last"
    if mode in _WINOGRAD and not has_plan(net):
        _warn_once(f"no Winograd plan for {type(net).__name__}; using channels_last")
        return "channels_last"
    if _WINOGRAD.get(mode, ("",))[0] == "c" and c_kernels() is None:
        return "channels_last"  # c_kernels() logged why; the PyTorch transforms are slower than this
    return mode


def _build(net: nn.Module, mode: str) -> Forward:
    if mode == "eager":
        return net
    if mode == "channels_last":
        return _channels_last(net)
    kind, m = _WINOGRAD[mode]
    kern = c_kernels() if kind == "c" else _TorchKernels()
    run = _Runner(kern, m, _pool(torch.get_num_threads()))
    return run.call(lambda: _make_plan(net, run))  # the float64 weight transforms, single-threaded


def accelerate(net: nn.Module, device: torch.device | str = "cpu", *, mode: str = "auto") -> Forward:
    """A forward function for float32 NCHW input equal to ``net(x)`` within float rounding.

    ``mode``:

    * ``auto``: the fastest measured method available for this network and device: ``winograd`` for
      the planned families (``has_plan``) on CPU when a C compiler works, else ``channels_last``;
      ``eager`` off CPU or for non-fp32 networks.
    * ``eager``: the network itself. ``channels_last``: a channels-last copy (oneDNN direct convolutions).
    * ``winograd``: F(6x6, 3x3) with the compiled transforms; ``winograd_f4``: F(4x4, 3x3) (less rounding,
      ~15% slower); ``winograd_torch``: F(4x4, 3x3) with PyTorch transforms (no compiler needed, slow).

    A method that cannot run here falls back to the next best one and says why once in the log. The work
    (kernel build, weight transforms) is done once per network and mode; a network whose parameters were
    changed in place is prepared again. The number of worker threads is ``torch.get_num_threads()`` at
    the first call.
    """
    device = torch.device(device)
    resolved = _resolve(net, device, mode)
    if resolved == "eager":
        return net
    key = (resolved, str(device), torch.get_num_threads())
    fp = _fingerprint(net)
    with _CACHE_LOCK:
        entry = _CACHE.get(net, {}).get(key)
    if entry is not None and entry[0] == fp:
        return entry[1]
    try:
        with torch.no_grad():
            fwd = _build(net, resolved)
    except Exception as e:  # noqa: BLE001 - a method that cannot handle this network is skipped
        fallback = "channels_last" if resolved != "channels_last" else "eager"
        _warn_once(f"{resolved} unavailable for {type(net).__name__} ({e}); using {fallback}")
        return accelerate(net, device, mode=fallback)
    with _CACHE_LOCK:
        _CACHE.setdefault(net, {})[key] = (fp, fwd)
    return fwd


def method_of(net: nn.Module, device: torch.device | str = "cpu", mode: str = "auto") -> str:
    """The method ``accelerate(net, device, mode=mode)`` uses (for reports)."""
    return _resolve(net, torch.device(device), mode)
