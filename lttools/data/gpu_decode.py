"""JPEG decoding on the GPU (`backbone.gpu_decode: true`, CUDA only): loader workers only read
each image's bytes and draw its crop from the header's size (no pixel is decoded on the CPU);
the training process decodes the whole batch with torchvision.io.decode_jpeg on the device,
then crops, resizes (bilinear, antialiased) and flips each image there. A file that is not a
JPEG is decoded and cropped by the worker as usual. The crops are drawn exactly as
lttools.data.decode draws them, from the sample's own key."""
from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image

from lttools.data.decode import center_box, load_crop, random_resized_box, resize_region
from lttools.data.loader import ImageFiles


class EncodedImageFiles(ImageFiles):
    """(stream, index) -> (JPEG bytes as uint8 [n], box [4], flip, label), or for another
    format (its decoded uint8 [3, S, S] crop, no box, flip False, label)."""

    def __getitem__(self, key):
        i, rng = self.index_and_rng(key)
        data = (self.packed(i) if self.packed is not None
                else (self.root / self.paths[i]).read_bytes())
        with Image.open(io.BytesIO(data)) as img:
            fmt, mode, (width, height) = img.format, img.mode, img.size
        if fmt != "JPEG" or mode not in ("RGB", "L"):
            crop = load_crop(data, self.size, self.train, rng, self.flip)
            return torch.from_numpy(crop), torch.full((4,), -1.0), False, self.labels[i]
        box = random_resized_box(width, height, rng) if self.train else center_box(width, height,
                                                                                    self.size)
        flip = bool(rng.random() < 0.5) if self.train else self.flip
        return (torch.from_numpy(np.frombuffer(data, np.uint8).copy()),
                torch.tensor(box, dtype=torch.float64), flip, self.labels[i])


def collate(items):
    """Keep the variable-sized byte arrays as a list."""
    payloads, boxes, flips, labels = zip(*items)
    return list(payloads), torch.stack(boxes), torch.tensor(flips), torch.stack(labels)


def decode_batch(payloads: list[torch.Tensor], boxes: torch.Tensor, flips: torch.Tensor,
                 size: int, device: torch.device) -> torch.Tensor:
    """uint8 [B, 3, S, S] on `device` from the workers' JPEG bytes (decoded there) and crops."""
    from torchvision.io import ImageReadMode, decode_jpeg

    jpeg = [i for i, b in enumerate(boxes) if b[0] >= 0]
    out = torch.empty(len(payloads), 3, size, size, dtype=torch.uint8, device=device)
    for i, b in enumerate(boxes):
        if b[0] < 0:  # decoded by the worker
            out[i] = payloads[i].to(device)
    if jpeg:
        decoded = decode_jpeg([payloads[i] for i in jpeg], mode=ImageReadMode.RGB, device=device)
        for i, img in zip(jpeg, decoded):
            x = resize_region(img, tuple(boxes[i].tolist()), (size, size))
            out[i] = x.flip(2) if flips[i] else x
    return out
