"""The `backbone:` section of params.yaml: the stage-1 recipe."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lttools.config import from_section
from lttools.errors import LTError, check_range

AMP_CHOICES = ("auto", "bf16", "off")
NORMALIZATIONS = ("dataset", "imagenet", "explicit")
INIT_DIR = "models/pretrained"  # checkpoints to start from; a DVC dependency of stage 1
# Settings that change where and how fast training runs but not what it computes; a
# checkpoint may be resumed under different values of these.
RUNTIME_ONLY = ("compile", "cuda_graphs", "cudnn_benchmark", "device", "checkpoint_every",
                "workers", "gpu_decode", "eval_every")


@dataclass(frozen=True)
class BackboneConfig:
    arch: str = "resnet32"
    epochs: int = 200
    batch_size: int = 64  # the global batch (all processes together)
    lr: float = 0.01  # for base_batch_size; scaled linearly to batch_size
    base_batch_size: int = 64
    warmup_epochs: float = 0.0  # linear warm-up from lr/steps to lr, then cosine
    momentum: float = 0.9
    weight_decay: float = 5e-3
    crop_pad: int = 4
    flip: bool = True
    seed: int = 0
    amp: str = "auto"  # auto: bf16 autocast on CUDA, fp32 on CPU
    channels_last: bool = True
    compile: bool = False  # torch.compile the model (first epoch pays for compilation)
    cuda_graphs: bool = False  # CUDA only: compile with mode="reduce-overhead" (CUDA graphs)
    cudnn_benchmark: bool = True  # CUDA only: autotune convolutions for the fixed input size
    sync_bn: bool = True  # under torchrun: BatchNorm statistics over the global batch
    device: str = "auto"  # auto: CUDA when present, else CPU
    checkpoint_every: int = 5  # epochs between resumable checkpoints
    workers: int = 0  # image files: DataLoader worker processes (0: one per CPU core, up to 16)
    gpu_decode: bool = False  # image files on CUDA: JPEGs decoded on the GPU (nvJPEG)
    eval_every: int = 1  # validation balanced accuracy every this many epochs (and the last)
    init: str = ""  # a checkpoint under models/pretrained/ to start from; "": from scratch
    normalization: str = "dataset"  # dataset statistics | imagenet | explicit (mean, std)
    mean: list[float] | None = None  # explicit normalisation, per channel, on the 0..1 scale
    std: list[float] | None = None

    def validate(self) -> None:
        # epochs 0: the imported checkpoint as it is
        check_range("backbone.epochs", self.epochs, low=0 if self.init else 1)
        if self.normalization not in NORMALIZATIONS:
            raise LTError(f"backbone.normalization = {self.normalization!r} is not valid; choose "
                          f"one of {', '.join(NORMALIZATIONS)}")
        if (self.normalization == "explicit") != (self.mean is not None and self.std is not None):
            raise LTError("backbone.mean and backbone.std (per channel, 0..1 scale) go with "
                          "backbone.normalization: explicit, and only with it")
        if self.init and not Path(self.init).as_posix().startswith(INIT_DIR + "/"):
            raise LTError(f"backbone.init = {self.init!r} lies outside {INIT_DIR}/, the folder DVC "
                          f"tracks as stage 1's dependency: copy the checkpoint there (for a large "
                          f"file, `dvc add {INIT_DIR}/<file>`) and point backbone.init at it")
        check_range("backbone.batch_size", self.batch_size, low=2)
        check_range("backbone.base_batch_size", self.base_batch_size, low=1)
        check_range("backbone.lr", self.lr, low=0, low_inclusive=False)
        check_range("backbone.warmup_epochs", self.warmup_epochs, 0, self.epochs)
        check_range("backbone.momentum", self.momentum, 0, 1, high_inclusive=False)
        check_range("backbone.weight_decay", self.weight_decay, low=0)
        check_range("backbone.crop_pad", self.crop_pad, low=0)
        check_range("backbone.checkpoint_every", self.checkpoint_every, low=1)
        check_range("backbone.workers", self.workers, low=0)
        check_range("backbone.eval_every", self.eval_every, low=1)
        if self.amp not in AMP_CHOICES:
            raise LTError(f"backbone.amp = {self.amp!r} is not valid; choose one of "
                          f"{', '.join(AMP_CHOICES)}")

    @property
    def scaled_lr(self) -> float:
        return self.lr * self.batch_size / self.base_batch_size

    def recipe(self) -> dict[str, Any]:
        """The settings that decide the result (what a resumed run must share)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in RUNTIME_ONLY}

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> "BackboneConfig":
        return from_section(cls, params, "backbone")
