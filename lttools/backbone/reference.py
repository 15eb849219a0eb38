"""The paper's way of running stage 1, kept only to compare against (bench/): a DataLoader
whose workers crop and flip one image at a time on the CPU, fp32, torch's own optimizer and
cosine schedule. Same recipe and model as the fast path (train.py)."""
from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from lttools.data.prepared import Splits
from lttools.models import create_backbone
from lttools.backbone.config import BackboneConfig
from lttools.backbone.evaluate import channel_stats


class AugmentedImages(Dataset):
    def __init__(self, images: torch.Tensor, labels: torch.Tensor, pad: int, flip: bool):
        self.images, self.labels = images, labels
        size = images.shape[-2:]
        steps = [v2.RandomCrop(size, padding=pad)] + ([v2.RandomHorizontalFlip()] if flip else [])
        self.transform = v2.Compose(steps)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.transform(self.images[i]), self.labels[i]


def train_reference(splits: Splits, cfg: BackboneConfig, device: str = "cpu", workers: int = 2,
                    epochs: int | None = None) -> tuple[torch.nn.Module, list[float]]:
    """Returns the model and images/s of every epoch."""
    torch.manual_seed(cfg.seed)
    dev = torch.device(device)
    x = torch.from_numpy(splits.images["train"])
    y = torch.from_numpy(splits.labels["train"])
    model = create_backbone(cfg.arch, splits.num_classes, x.shape[1])
    model.set_normalization(*channel_stats(x))
    model.to(dev)
    loader = DataLoader(AugmentedImages(x, y, cfg.crop_pad, cfg.flip), batch_size=cfg.batch_size,
                        shuffle=True, num_workers=workers, pin_memory=dev.type == "cuda",
                        persistent_workers=workers > 0,
                        generator=torch.Generator().manual_seed(cfg.seed))
    opt = torch.optim.SGD(model.parameters(), lr=cfg.scaled_lr, momentum=cfg.momentum,
                          weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs)
    speeds = []
    for _ in range(epochs or cfg.epochs):
        model.train()
        t0, seen = time.perf_counter(), 0
        for xb, yb in loader:
            if len(yb) < 2:
                continue
            xb, yb = xb.to(dev, non_blocking=True), yb.to(dev, non_blocking=True)
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            seen += len(yb)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        speeds.append(seen / (time.perf_counter() - t0))
        sched.step()
    return model, speeds
