"""Backbones by name."""
from __future__ import annotations

from typing import Callable

from lttools.errors import unknown_name
from lttools.models.resnet_cifar import CifarResNet, resnet32, resnet34

ARCHS: dict[str, Callable[..., CifarResNet]] = {"resnet32": resnet32, "resnet34": resnet34}


def create_backbone(arch: str, num_classes: int, in_channels: int) -> CifarResNet:
    if arch not in ARCHS:
        raise unknown_name("arch", arch, list(ARCHS))
    model = ARCHS[arch](num_classes, in_channels)
    model.arch_name = arch
    return model
