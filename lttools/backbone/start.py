"""Where stage 1 starts: the input normalisation, and the weights of an imported checkpoint
(`backbone.init`) when there is one."""
from __future__ import annotations

from typing import Callable

import torch

from lttools.backbone.config import BackboneConfig
from lttools.backbone.evaluate import channel_stats
from lttools.models.import_weights import ImportedWeights, load_into, read_checkpoint
from lttools.models.normalized import IMAGENET_MEAN, IMAGENET_STD, NormalizedBackbone


def normalization(cfg: BackboneConfig, train_images: Callable[[], torch.Tensor],
                  channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std on the 0..255 scale: the training set's (`dataset`; images from
    `train_images()`), torchvision's ImageNet statistics (`imagenet`; a grayscale dataset gets
    their average), or `explicit`."""
    if cfg.normalization == "dataset":
        return channel_stats(train_images())
    if cfg.normalization == "imagenet":
        mean, std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
    else:
        mean, std = torch.tensor(cfg.mean) * 255, torch.tensor(cfg.std) * 255
    if channels == 1 and len(mean) == 3:
        mean, std = mean.mean(0, keepdim=True), std.mean(0, keepdim=True)
    if len(mean) != channels:
        from lttools.errors import LTError
        raise LTError(f"backbone.mean / std have {len(mean)} values for images with {channels} "
                      "channel(s)")
    return mean.float(), std.float()


def prepare_model(model: NormalizedBackbone, cfg: BackboneConfig,
                  train_images: Callable[[], torch.Tensor]) -> ImportedWeights | None:
    """Set the normalisation; load `backbone.init` into the model when it is set."""
    model.set_normalization(*normalization(cfg, train_images, model.mean.shape[1]))
    if not cfg.init:
        return None
    weights = read_checkpoint(cfg.init, model)
    load_into(model, weights)
    return weights
