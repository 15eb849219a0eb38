"""Any torchvision classification model by name (resnet50, resnext50_32x4d, ...), created
offline (weights=None), as an lttools backbone: its last linear layer becomes `fc`, the rest
`net` gives the penultimate features. Grayscale inputs are repeated to three channels."""
from __future__ import annotations

import torch
from torch import nn

from lttools.models.normalized import NormalizedBackbone


def torchvision_names() -> list[str]:
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models))


def _detach_head(net: nn.Module, num_classes: int) -> tuple[str, nn.Linear]:
    """Replace the model's last nn.Linear giving `num_classes` outputs with Identity; return
    its name in torchvision's model and the layer."""
    heads = [(name, m) for name, m in net.named_modules()
             if isinstance(m, nn.Linear) and m.out_features == num_classes]
    name, head = heads[-1]
    parent = net.get_submodule(name.rpartition(".")[0]) if "." in name else net
    setattr(parent, name.rpartition(".")[2], nn.Identity())
    return name, head


class TorchvisionBackbone(NormalizedBackbone):
    def __init__(self, name: str, num_classes: int, in_channels: int):
        import torchvision

        super().__init__(in_channels)
        self.net = torchvision.models.get_model(name, weights=None, num_classes=num_classes)
        self.head_name, self.fc = _detach_head(self.net, num_classes)
        self.feature_dim = self.fc.in_features
        self.gray = in_channels == 1

    def body(self, x: torch.Tensor) -> torch.Tensor:
        if self.gray:
            x = x.expand(-1, 3, -1, -1)
        return torch.flatten(self.net(x), 1)
