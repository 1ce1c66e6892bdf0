"""Deployment: ONNX / OpenVINO / TensorRT export, runtime sessions, INT8 quantization, real-time video.

Nothing here is imported by plain torch upscaling: :func:`superres.load_model` (:mod:`superres.loading`)
imports :mod:`superres.deploy.runtime` only when a non-torch backend is asked for, and each runtime package
(onnx, onnxruntime, openvino, tensorrt) is imported inside the function that needs it. The speed benchmark
behind ``superres bench`` is :mod:`superres.eval.speed` (it loads models through the backend table).
"""
