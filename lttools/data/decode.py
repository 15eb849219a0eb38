"""One image file (or its bytes) to the uint8 [3, S, S] crop the backbone sees.

- train: RandomResizedCrop (scale 0.08..1, aspect 3/4..4/3, torchvision's drawing rule) and a
  horizontal flip with probability 1/2;
- eval: resize the shorter side to S * 256 / 224, centre crop S (as torchvision's references).

PIL decodes; a JPEG whose crop is at least twice as large as S both ways is decoded at 1/2,
1/4 or 1/8 scale (the decoder's DCT scaling, `Image.draft`). The crop, at whole pixels, is
resized by torch's uint8 bilinear interpolation with antialiasing (channels-last, the kernel
torchvision's tensor transforms use; faster than PIL's resize and within rounding of it:
bench/data.py, tests/test_images.py). Random
draws come from a generator seeded by the sample's own key (seed, epoch or view, index), so
they do not depend on worker processes, batch boundaries or resumption. The output stays
uint8: the model normalises (on the GPU, when there is one).
"""
from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

# lttools' own limit (data.max_image_pixels, checked on every file by prepare_data) replaces
# PIL's decompression-bomb guard, which warns or raises without naming the file
Image.MAX_IMAGE_PIXELS = None
SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N")  # 16-bit greyscale (e.g. 16-bit PNG)
NO_FIXED_RANGE = ("I", "F")  # 32-bit integer or float pixels: no range to map to 8 bits

EVAL_RESIZE = 256 / 224
SCALE = (0.08, 1.0)
RATIO = (3 / 4, 4 / 3)
Box = tuple[float, float, float, float]  # left, top, right, bottom in pixels


def random_resized_box(width: int, height: int, rng: np.random.Generator) -> Box:
    """torchvision's RandomResizedCrop.get_params: up to 10 tries of an area fraction in SCALE
    and a log-uniform aspect ratio in RATIO, else a centre crop at the nearest ratio."""
    area = width * height
    log_ratio = (math.log(RATIO[0]), math.log(RATIO[1]))
    for _ in range(10):
        target = area * rng.uniform(*SCALE)
        aspect = math.exp(rng.uniform(*log_ratio))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            return left, top, left + w, top + h
    in_ratio = width / height
    if in_ratio < RATIO[0]:
        w, h = width, int(round(width / RATIO[0]))
    elif in_ratio > RATIO[1]:
        w, h = int(round(height * RATIO[1])), height
    else:
        w, h = width, height
    left, top = (width - w) // 2, (height - h) // 2
    return left, top, left + w, top + h


def center_box(width: int, height: int, size: int) -> Box:
    """The region that resizing the shorter side to size * 256/224 and centre-cropping size
    keeps, in the original's pixels."""
    side = size / (size * EVAL_RESIZE / min(width, height))  # crop side in original pixels
    left, top = (width - side) / 2, (height - side) / 2
    return left, top, left + side, top + side


def _open(source: bytes | str | Path) -> Image.Image:
    return Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)


def to_rgb(img: Image.Image) -> Image.Image:
    """8-bit RGB: greyscale, palette, RGBA (alpha dropped), CMYK as PIL converts them; 16-bit
    greyscale by its top 8 bits (PIL's own conversion clips it to 255)."""
    if img.mode in SIXTEEN_BIT:
        img = Image.fromarray((np.asarray(img, dtype=np.uint16) >> 8).astype(np.uint8), "L")
    return img if img.mode == "RGB" else img.convert("RGB")


def load_crop(source: bytes | str | Path, size: int, train: bool, rng: np.random.Generator | None,
              flip: bool = False) -> np.ndarray:
    """uint8 [3, size, size]. train: a random resized crop and flip drawn from `rng`; else the
    eval centre crop, mirrored when `flip`."""
    img = _open(source)
    width, height = img.size
    box = random_resized_box(width, height, rng) if train else center_box(width, height, size)
    if train:
        flip = bool(rng.random() < 0.5)
    if img.format == "JPEG":  # decode at a reduced scale while the crop keeps >= size pixels
        shrink = min((box[2] - box[0]) / size, (box[3] - box[1]) / size)
        factor = next((f for f in (8, 4, 2) if shrink >= f), 1)
        if factor > 1:
            img.draft("RGB", (math.ceil(width / factor), math.ceil(height / factor)))
            sx, sy = img.size[0] / width, img.size[1] / height
            box = (box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy)
    img = to_rgb(img)
    pixels = torch.from_numpy(np.array(img, dtype=np.uint8)).permute(2, 0, 1)  # [3, H, W]
    out = resize_region(pixels, box, (size, size)) if train else eval_crop(pixels, size)
    return (out.flip(2) if flip else out).contiguous().numpy()


def eval_crop(image: torch.Tensor, size: int) -> torch.Tensor:
    """torchvision's evaluation transform on a uint8 [3, H, W] image: Resize(round(size *
    256/224)) of the shorter side (the longer one truncated, as torchvision computes it), then
    CenterCrop(size)."""
    height, width = image.shape[1:]
    short = round(size * EVAL_RESIZE)
    if width <= height:
        new_w, new_h = short, int(short * height / width)
    else:
        new_w, new_h = int(short * width / height), short
    resized = resize_region(image, (0, 0, width, height), (new_h, new_w))
    top, left = int(round((new_h - size) / 2.0)), int(round((new_w - size) / 2.0))
    return resized[:, top:top + size, left:left + size]


def pixel_region(box: Box, width: int, height: int) -> tuple[int, int, int, int]:
    """The box at whole pixels (rounded; at least one pixel, inside the image). A training box
    is whole already, unless the JPEG was decoded at a reduced scale: then this moves it by at
    most half a pixel of the reduced image."""
    left, top = min(max(0, round(box[0])), width - 1), min(max(0, round(box[1])), height - 1)
    right = min(width, max(left + 1, round(box[2])))
    bottom = min(height, max(top + 1, round(box[3])))
    return left, top, right, bottom


def resize_region(image: torch.Tensor, box: Box, shape: tuple[int, int]) -> torch.Tensor:
    """uint8 [3, *shape]: the box of a uint8 [3, H, W] image, resized (bilinear,
    antialiased). On the CPU in uint8 and channels-last layout (torch's fast path);
    on a GPU in float32, rounded back."""
    left, top, right, bottom = pixel_region(box, image.shape[2], image.shape[1])
    region = image[None, :, top:bottom, left:right]
    if image.is_cuda:
        region = region.float()
    else:
        region = region.contiguous(memory_format=torch.channels_last)
    out = F.interpolate(region, size=shape, mode="bilinear",
                        align_corners=False, antialias=True)[0]
    return out.round().clamp(0, 255).to(torch.uint8) if out.is_floating_point() else out


def sample_rng(*key: int) -> np.random.Generator:
    """A generator for one sample's random draws, from its key (seed, epoch or view, index)."""
    return np.random.default_rng([int(k) for k in key])


def reencode(source: bytes | str | Path, shorter_side: int, quality: int = 90) -> bytes:
    """The image as RGB JPEG bytes with its shorter side reduced to `shorter_side` (never
    enlarged), for the packed image file."""
    img = _open(source)
    width, height = img.size
    scale = shorter_side / min(width, height)
    if img.format == "JPEG" and scale < 0.5:
        img.draft("RGB", (math.ceil(width * scale), math.ceil(height * scale)))
    img = to_rgb(img)
    if scale < 1:
        img = img.resize((max(1, round(width * scale)), max(1, round(height * scale))),
                         Image.Resampling.BILINEAR, reducing_gap=None)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()
