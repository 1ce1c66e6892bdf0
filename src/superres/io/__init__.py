"""Image reading and writing (video lives in ``superres.video``): modes, bit depth, alpha,
EXIF/ICC and atomic writes. Importing this package never imports PyAV."""

from __future__ import annotations

from .image import ImageData, encode_image, from_array, read_image, read_image_bytes, write_image

__all__ = ["ImageData", "encode_image", "from_array", "read_image", "read_image_bytes", "write_image"]
