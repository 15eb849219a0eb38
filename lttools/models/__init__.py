"""Backbones by name: the CIFAR ResNets, or any torchvision classification model."""
from __future__ import annotations

from typing import Callable

from lttools.errors import LTError
from lttools.models.normalized import NormalizedBackbone
from lttools.models.resnet_cifar import resnet32, resnet34

ARCHS: dict[str, Callable[..., NormalizedBackbone]] = {"resnet32": resnet32, "resnet34": resnet34}


def create_backbone(arch: str, num_classes: int, in_channels: int) -> NormalizedBackbone:
    if arch in ARCHS:
        model = ARCHS[arch](num_classes, in_channels)
    else:
        from lttools.models.torchvision_nets import TorchvisionBackbone, torchvision_names

        if arch not in torchvision_names():
            raise LTError(f"unknown arch {arch!r}; valid archs: {', '.join(sorted(ARCHS))} (CIFAR "
                          "ResNets) or any torchvision classification model by name, e.g. "
                          "resnet50, resnext50_32x4d")
        model = TorchvisionBackbone(arch, num_classes, in_channels)
    model.arch_name = arch
    return model
