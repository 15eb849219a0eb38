"""Run the frozen backbone (eval mode: BatchNorm statistics fixed) over every split once and
stream the penultimate features into the feature store.

The work is cut into chunks of `chunk_rows` images of one view of one split. Each finished
chunk is saved on its own (atomically) in a partial folder beside the store, so a killed
extraction resumes at the first unfinished chunk. Under torchrun each process computes its
contiguous slice of every split's chunks; then the first process writes the store from the
chunks in order. The store's bytes do not depend on the number of processes, on where a run
was interrupted, or on the batch size: every augmented crop is drawn from its own sample's
generator (seed, view, index).
"""
from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from tqdm.auto import tqdm

from lttools.atomic import atomic_path
from lttools.backbone.distributed import DistContext
from lttools.backbone.saved import SavedBackbone
from lttools.data.augment import CropFlip, apply_crop_flip
from lttools.data.decode import sample_rng
from lttools.data.loader import EpochBatches, ImageFiles, default_workers, keyed_batches, make_loader
from lttools.data.prepared import AnySplits, FileSplits
from lttools.errors import LTError, check_range
from lttools.features.store import DTYPES, SPLITS, FeatureBatch, StoreLayout, write_store
from lttools.features.head_fit import HeadFit
from lttools.features.head_fit import fit_head as fit_head_on
from lttools.provenance import sha256_file

RUNTIME_ONLY = ("device", "workers", "chunk_rows")  # change speed, not the store


@dataclass(frozen=True)
class ExtractConfig:
    views: int = 2  # augmented views of each training image, besides the clean one
    flip_test: bool = True
    batch_size: int = 512
    crop_pad: int = 4
    dtype: str = "float32"
    seed: int = 0
    device: str = "auto"
    workers: int = 0  # image files: DataLoader worker processes (0: one per CPU core, up to 16)
    chunk_rows: int = 4096  # images per saved chunk (what an interrupted run keeps)
    # a head fitted on the clean training features, for a backbone that has none (see head_fit)
    head_epochs: int = 30
    head_lr: float = 0.1
    head_weight_decay: float = 5e-4
    head_batch_size: int = 256

    def validate(self) -> None:
        HeadFit(self.head_epochs, self.head_lr, self.head_weight_decay,
                self.head_batch_size).validate("features")
        if self.dtype not in DTYPES:
            raise LTError(f"features.dtype = {self.dtype!r} is not valid; choose one of "
                          f"{', '.join(DTYPES)}")
        check_range("features.views", self.views, low=0)
        check_range("features.batch_size", self.batch_size, low=1)
        check_range("features.crop_pad", self.crop_pad, low=0)
        check_range("features.workers", self.workers, low=0)
        check_range("features.chunk_rows", self.chunk_rows, low=1)


@dataclass(frozen=True)
class Chunk:
    split: str
    view: int
    kind: str  # clean | augmented | flipped
    start: int
    stop: int

    @property
    def name(self) -> str:
        return f"{self.split}-{self.view}-{self.start:09d}.npy"


def view_plan(cfg: ExtractConfig) -> list[tuple[str, int, str]]:
    plan = [("train", 0, "clean")] + [("train", v, "augmented") for v in range(1, cfg.views + 1)]
    plan += [("val", 0, "clean"), ("test", 0, "clean")]
    if cfg.flip_test:  # validation is scored as test is: both get the flipped view
        plan += [("val", 1, "flipped"), ("test", 1, "flipped")]
    return plan


def my_chunks(splits: AnySplits, cfg: ExtractConfig, ctx: DistContext) -> list[Chunk]:
    """This process's contiguous slice of every (split, view)'s chunks."""
    out = []
    for split, view, kind in view_plan(cfg):
        n = splits.size(split)
        chunks = [Chunk(split, view, kind, a, min(a + cfg.chunk_rows, n))
                  for a in range(0, n, cfg.chunk_rows)]
        per = -(-len(chunks) // ctx.world_size)
        out += chunks[ctx.rank * per:(ctx.rank + 1) * per]
    return out


def _array_crops(images: torch.Tensor, indices: range, pad: int, seed: int,
                 view: int) -> torch.Tensor:
    """Crop + flip of each image drawn from its own (seed, view, index) generator."""
    draws = [sample_rng(seed, view, i) for i in indices]
    oy = torch.tensor([int(r.integers(0, 2 * pad + 1)) for r in draws]) if pad else None
    ox = torch.tensor([int(r.integers(0, 2 * pad + 1)) for r in draws]) if pad else None
    flip = torch.tensor([bool(r.random() < 0.5) for r in draws])
    return apply_crop_flip(images, pad, CropFlip(oy, ox, flip).to(images.device))


def _batches(splits: AnySplits, chunk: Chunk, cfg: ExtractConfig,
             dev: torch.device) -> Iterator[torch.Tensor]:
    """The chunk's images as the backbone sees them, batch by batch, on `dev`."""
    if isinstance(splits, FileSplits):
        files = ImageFiles(splits, chunk.split, train=chunk.kind == "augmented", seed=cfg.seed,
                           flip=chunk.kind == "flipped")
        sampler = EpochBatches()
        sampler.batches = keyed_batches(range(chunk.start, chunk.stop), chunk.view,
                                        cfg.batch_size)
        loader = make_loader(files, sampler, cfg.workers or default_workers(),
                             pin=dev.type == "cuda")
        for x, _ in loader:
            yield x.to(dev, non_blocking=True)
        return
    images = splits.images[chunk.split]
    for a in range(chunk.start, chunk.stop, cfg.batch_size):
        b = min(a + cfg.batch_size, chunk.stop)
        x = torch.from_numpy(images[a:b]).to(dev)
        if chunk.kind == "augmented":
            x = _array_crops(x, range(a, b), cfg.crop_pad, cfg.seed, chunk.view)
        elif chunk.kind == "flipped":
            x = x.flip(3)
        yield x


def partial_dir(out: Path) -> Path:
    return out.parent / f".partial-{out.name}"


def _fingerprint(cfg: ExtractConfig, checkpoint_sha256: str, splits: AnySplits) -> dict:
    recipe = {k: v for k, v in asdict(cfg).items() if k not in RUNTIME_ONLY}
    return {**recipe, "checkpoint_sha256": checkpoint_sha256, "data": dict(splits.meta),
            "sizes": {s: splits.size(s) for s in SPLITS}}


def _open_partial(folder: Path, fingerprint: dict, ctx: DistContext) -> None:
    """Keep an interrupted run's chunks when it had the same fingerprint; else start afresh."""
    record = folder / "fingerprint.json"
    if ctx.is_main:
        same = record.exists() and json.loads(record.read_text()) == fingerprint
        if folder.exists() and not same:
            shutil.rmtree(folder)
        folder.mkdir(parents=True, exist_ok=True)
        if not same:
            with atomic_path(record) as tmp:
                tmp.write_text(json.dumps(fingerprint, sort_keys=True))
    ctx.barrier()


def compute_chunks(saved: SavedBackbone, splits: AnySplits, cfg: ExtractConfig, folder: Path,
                   ctx: DistContext, quiet: bool = False) -> int:
    """Compute and save this process's missing chunks; returns how many were already there."""
    model = saved.model.eval().to(memory_format=torch.channels_last)  # faster convolutions
    dev = next(model.parameters()).device
    mine = my_chunks(splits, cfg, ctx)
    done = [c for c in mine if (folder / c.name).exists()]
    todo = [c for c in mine if not (folder / c.name).exists()]
    bar = tqdm(total=sum(c.stop - c.start for c in mine), initial=sum(c.stop - c.start for c in done),
               desc="features", unit="img", disable=quiet)
    with torch.no_grad():
        for chunk in todo:
            feats = [model.features(x.contiguous(memory_format=torch.channels_last)).float()
                     .cpu().numpy() for x in _batches(splits, chunk, cfg, dev)]
            with atomic_path(folder / chunk.name) as tmp:
                with open(tmp, "wb") as f:
                    np.save(f, np.concatenate(feats) if feats else np.zeros((0, model.feature_dim),
                                                                           np.float32))
            bar.update(chunk.stop - chunk.start)
    bar.close()
    return len(done)


def _from_chunks(splits: AnySplits, cfg: ExtractConfig, folder: Path) -> Iterator[FeatureBatch]:
    for chunk in my_chunks(splits, cfg, DistContext()):  # every chunk, in order
        yield chunk.split, chunk.view, chunk.start, np.load(folder / chunk.name)


def extract_to_store(saved: SavedBackbone, splits: AnySplits, checkpoint: str | Path,
                     out: str | Path, cfg: ExtractConfig, quiet: bool = False,
                     ctx: DistContext | None = None) -> None:
    """Every split through the frozen backbone into the store at `out`. A backbone without a
    head for these classes gets one fitted on the clean training features (cfg.head_*)."""
    cfg.validate()
    ctx = ctx or DistContext()
    out, checkpoint_sha256 = Path(out), sha256_file(checkpoint)
    folder = partial_dir(out)
    _open_partial(folder, _fingerprint(cfg, checkpoint_sha256, splits), ctx)
    resumed = compute_chunks(saved, splits, cfg, folder, ctx, quiet)
    if resumed and not quiet:
        print(f"resumed: {resumed} chunk(s) of an interrupted extraction were kept")
    ctx.barrier()
    if ctx.is_main:
        _assemble(saved, splits, checkpoint_sha256, out, cfg, folder)
        shutil.rmtree(folder)
    ctx.barrier()


def _assemble(saved: SavedBackbone, splits: AnySplits, checkpoint_sha256: str, out: Path,
              cfg: ExtractConfig, folder: Path) -> None:
    model = saved.model
    fitted = saved.head == "missing"
    views = {s: 0 for s in SPLITS}
    for split, view, _ in view_plan(cfg):
        views[split] = max(views[split], view + 1)
    layout = StoreLayout(
        labels=splits.labels, views=views,
        head_weight=None if fitted else model.fc.weight.detach().cpu().numpy(),
        head_bias=None if fitted else model.fc.bias.detach().cpu().numpy(),
        class_counts=splits.class_counts, feature_dim=model.feature_dim)
    meta = {k: v for k, v in splits.meta.items() if k not in ("seed", "root", "packed")}
    attrs = {**meta, "data_seed": splits.meta.get("seed", 0), "arch": model.arch_name,
             "checkpoint_sha256": checkpoint_sha256, "views": cfg.views,
             "torch_version": torch.__version__.split("+")[0],
             "head_source": {"trained": "stage 1", "checkpoint": "the imported checkpoint"}.get(
                 saved.head, "fitted"),
             "normalization": json.dumps({"mean": model.mean.flatten().tolist(),
                                          "std": model.std.flatten().tolist(),
                                          **saved.notes}, sort_keys=True)}
    fit = HeadFit(cfg.head_epochs, cfg.head_lr, cfg.head_weight_decay, cfg.head_batch_size,
                  cfg.seed)

    def fit_head(features, labels):
        return fit_head_on(torch.from_numpy(features), torch.from_numpy(labels),
                           splits.num_classes, fit, next(model.parameters()).device)

    write_store(out, layout, attrs, _from_chunks(splits, cfg, folder), cfg.dtype,
                fit_head=fit_head if fitted else None)
