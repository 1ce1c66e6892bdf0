"""Architectures behind one registry: ``build``, ``detect`` and a typed ``ModelDescriptor`` for each."""

from .base import ArchSpec, ModelDescriptor, SRNet, build, detect, detection_order, get_arch, list_archs, register

__all__ = [
    "ArchSpec", "ModelDescriptor", "SRNet", "build", "detect", "detection_order", "get_arch", "list_archs", "register",
]
