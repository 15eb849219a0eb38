"""The paper's way of running stage 1, kept only to compare against (bench/): a DataLoader
whose workers crop and flip one image at a time on the CPU, fp32, torch's own optimizer and
cosine schedule. Same recipe and model as the fast path (train.py). For image files: the
torchvision ImageFolder way, PIL decoding, RandomResizedCrop, flip, ToTensor and Normalize in
the workers, float batches."""
from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from lttools.backbone.config import BackboneConfig
from lttools.backbone.evaluate import channel_stats, train_sample
from lttools.data.prepared import AnySplits, FileSplits
from lttools.models import create_backbone


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


class TorchvisionImageFiles(Dataset):
    """The standard torchvision training pipeline over the prepared image files."""

    def __init__(self, splits: FileSplits, mean: torch.Tensor, std: torch.Tensor):
        from torchvision import transforms as T

        self.root, self.paths = splits.root, splits.paths["train"]
        self.labels = torch.from_numpy(splits.labels["train"])
        self.transform = T.Compose([T.RandomResizedCrop(splits.image_size),
                                    T.RandomHorizontalFlip(), T.ToTensor(),
                                    T.Normalize((mean / 255).tolist(), (std / 255).tolist())])

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        from PIL import Image

        with Image.open(f"{self.root}/{self.paths[i]}") as img:
            return self.transform(img.convert("RGB")), self.labels[i]


def train_reference(splits: AnySplits, cfg: BackboneConfig, device: str = "cpu", workers: int = 2,
                    epochs: int | None = None) -> tuple[torch.nn.Module, list[float]]:
    """Returns the model and images/s of every epoch."""
    torch.manual_seed(cfg.seed)
    dev = torch.device(device)
    model = create_backbone(cfg.arch, splits.num_classes, splits.in_channels)
    mean, std = channel_stats(train_sample(splits))
    if isinstance(splits, FileSplits):  # the dataset normalises; the model passes through
        dataset = TorchvisionImageFiles(splits, mean, std)
        model.set_normalization(torch.zeros(3), torch.ones(3))
    else:
        x, y = torch.from_numpy(splits.images["train"]), torch.from_numpy(splits.labels["train"])
        dataset = AugmentedImages(x, y, cfg.crop_pad, cfg.flip)
        model.set_normalization(mean, std)
    model.to(dev)
    loader = DataLoader(dataset, batch_size=cfg.batch_size,
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
    model.set_normalization(mean, std)  # from here on it takes 0..255 images like any backbone
    return model, speeds
