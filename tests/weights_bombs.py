"""Hostile weights files, built byte by byte: small files that declare huge networks or huge records.

Shared by the tests (tests/test_weights_limits.py) and the benchmarks (benchmarks/weights_bombs.py,
benchmarks/bad_inputs.py), so the attack the tests refuse is the one whose memory the benchmark measures.
Every builder writes the file it is given and returns its path; nothing here imports superres.
"""

from __future__ import annotations

import io
import json
import re
import struct
import zipfile
import zlib
from pathlib import Path

# name -> (safetensors dtype, shape, raw bytes)
Tensors = dict[str, tuple[str, tuple[int, ...], bytes]]


def write_safetensors(path: Path, tensors: Tensors, metadata: dict[str, str] | None = None) -> Path:
    """A safetensors file written by hand, so shapes may be zero-size (the library allows it too)."""
    header: dict[str, object] = {"__metadata__": metadata} if metadata else {}
    offset, blobs = 0, []
    for name, (dtype, shape, data) in tensors.items():
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)
    path.write_bytes(struct.pack("<Q", len(head)) + head + b"".join(blobs))
    return path


def srvgg_bomb(path: Path, num_feat: int = 30_000) -> Path:
    """An SRVGG whose detected width is ``num_feat``: three empty tensors, ~270 bytes, whose hidden conv
    would take num_feat^2 * 9 * 4 bytes (32.4 GB at 30,000)."""
    empty = "F32", (num_feat, 0, 3, 3), b""
    return write_safetensors(path, {"body.0.weight": empty, "body.2.weight": empty,
                                    "body.4.weight": ("F32", (48, 0, 3, 3), b"")})


def rrdb_bomb(path: Path, blocks: int = 3000, one_value: bool = False) -> Path:
    """An RRDBNet with ``blocks`` residual-in-residual blocks, each named by one tensor: empty tensors
    (``one_value=False``, ~290 KB at 3,000 blocks) or one float each (so every tensor is backed by bytes,
    and only the network the keys imply is too big)."""
    def t(*shape: int) -> tuple[str, tuple[int, ...], bytes]:
        if one_value:
            return "F32", (1,) * len(shape), b"\0\0\0\0"
        return "F32", shape, b""
    tensors: Tensors = {"conv_first.weight": t(64, 3, 0, 3)}
    for i in range(blocks):
        tensors[f"body.{i}.rdb1.conv1.weight"] = t(32, 0, 3, 3)
    for name in ("conv_body", "conv_up1", "conv_up2", "conv_hr"):
        tensors[f"{name}.weight"] = t(64, 0, 3, 3)
    tensors["conv_last.weight"] = t(3, 0, 3, 3)
    if one_value:  # detection reads the widths from these shapes: give them theirs, backed by bytes
        tensors["conv_first.weight"] = "F32", (64, 3, 1, 1), b"\0" * 4 * 64 * 3
        tensors["body.0.rdb1.conv1.weight"] = "F32", (32, 1, 1, 1), b"\0" * 4 * 32
        tensors["conv_last.weight"] = "F32", (3, 1, 1, 1), b"\0" * 4 * 3
    return write_safetensors(path, tensors)


def _torch_zip_members(tensors: dict[str, int]) -> dict[str, bytes]:
    """The members ``torch.save`` writes for ``{name: float32 tensor of n values}``, storages left out."""
    import torch

    buf = io.BytesIO()
    torch.save({k: torch.zeros(n) for k, n in tensors.items()}, buf)
    with zipfile.ZipFile(io.BytesIO(buf.getvalue())) as z:
        return {i.filename: z.read(i) for i in z.infolist()}


def pth_deflated_bomb(path: Path, inflated: int = 2 << 30) -> Path:
    """A torch zip checkpoint whose one storage record is DEFLATEd zeros that inflate to ``inflated``
    bytes (2 GiB: about 2 MB on disk) while its pickle declares a 16-value tensor. Written by hand: one
    fully-flushed deflate block of 1 MiB of zeros repeated, so building it takes no compression time."""
    members = _torch_zip_members({"body.0.weight": 16})
    storage = next(n for n in members if "/data/" in n)
    chunk = 1 << 20
    assert inflated % chunk == 0 and inflated < 1 << 32  # no zip64 fields needed
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = comp.compress(bytes(chunk)) + comp.flush(zlib.Z_FULL_FLUSH)  # independent of what precedes
    tail = comp.flush(zlib.Z_FINISH)
    crc, zeros = 0, bytes(chunk)
    for _ in range(inflated // chunk):
        crc = zlib.crc32(zeros, crc)
    entries = [(n, 0, zlib.crc32(d), len(d), len(d), d, b"") for n, d in members.items() if n != storage]
    entries.append((storage, 8, crc, len(block) * (inflated // chunk) + len(tail), inflated, block, tail))
    central, offset = b"", 0
    with open(path, "wb") as f:
        for name, method, crc32, csize, usize, data, end in entries:
            raw = name.encode()
            head = struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, method, 0, 0x21, crc32, csize, usize,
                               len(raw), 0) + raw
            f.write(head)
            if method:
                for _ in range(usize // chunk):
                    f.write(data)
                f.write(end)
            else:
                f.write(data)
            central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, method, 0, 0x21, crc32, csize,
                                   usize, len(raw), 0, 0, 0, 0, 0, offset) + raw
            offset += len(head) + csize
        f.write(central)
        n = len(entries)
        f.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, n, n, len(central), offset, 0))
    return path


def pth_stride_bomb(path: Path, shape: tuple[int, ...] = (30_000, 3, 3, 3)) -> Path:
    """A zip checkpoint whose tensor is a stride-0 view of one float: huge shape, 4 bytes of data."""
    import torch

    t = torch.zeros(1).expand(*shape)
    torch.save({"body.0.weight": t, "body.2.weight": torch.zeros(1).expand(48, shape[0], 3, 3)}, path)
    return path


def pth_legacy_bomb(path: Path, numel: int = 1 << 33) -> Path:
    """A legacy (non-zip) checkpoint whose one storage declares ``numel`` float32 values (32 GiB at 2^33)
    and holds 4: torch sizes the storage from the declaration before it reads the data."""
    import torch

    buf = io.BytesIO()
    torch.save({"w": torch.zeros(1)}, buf, _use_new_zipfile_serialization=False)
    # The storage's persistent id is ('storage', FloatStorage, key, 'cpu', numel): numel is BININT1 1
    # right after the location; make it a LONG1 of 5 bytes.
    huge = b"\x8a\x05" + numel.to_bytes(5, "little") + b"N"
    data, n = re.subn(rb"(X\x03\x00\x00\x00cpuq.)K\x01N", lambda m: m.group(1) + huge, buf.getvalue(),
                      count=1)
    if n != 1:
        raise RuntimeError("legacy pickle layout not recognised; cannot build the bomb")
    path.write_bytes(data)
    return path


def ncnn_negative_size(folder: Path, size: int = -64) -> Path:
    """An SRVGG ncnn .param whose first convolution declares ``weight_data_size`` ``size``, and a .bin.
    Returns the .param path (the .bin sits beside it)."""
    param = folder / "neg.param"
    lines = ["7767517", "4 4", "Input in 0 1 in",
             f"Convolution conv0 1 1 in c0 0=16 1=3 4=1 5=1 6={size}",
             "PReLU act0 1 1 c0 a0 0=16",
             "Convolution conv1 1 1 a0 out 0=48 1=3 4=1 5=1 6=6912"]
    param.write_text("\n".join(lines) + "\n")
    body = struct.pack("<I", 0) + b"\0" * 4 * 16  # tag, then (with the negative size) the bias
    body += b"\0" * 4 * 16 + struct.pack("<I", 0) + b"\0" * 4 * (6912 + 48)
    (folder / "neg.bin").write_bytes(body)
    return param
