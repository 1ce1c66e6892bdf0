"""Deployment: ONNX / OpenVINO / TensorRT export, runtime sessions, INT8 quantization, real-time video, bench.

Nothing here is imported by plain torch upscaling: :func:`superres.inference.upscaler.load_model` imports
:mod:`superres.deploy.runtime` only when a non-torch backend is asked for, and each runtime package
(onnx, onnxruntime, openvino, tensorrt) is imported inside the function that needs it.
"""
