"""Reference architectures that ``tripwire train`` builds and scripts to TorchScript.

Every model follows the model contract: ``forward(x)`` takes float32 NCHW in [0, 1] (or
``(N, D)`` for tables) and returns logits, ``features(x)`` returns the penultimate
activations, and ``forward_features(x)`` returns both from one pass, so that a gateway
can score an input for a trigger at no extra cost.

- ``cnn-small``: grey images (MNIST-like, any size >= 8x8); about 6 MFLOP at 28x28.
- ``cnn-compact``: colour images (CIFAR-10, GTSRB at 32x32); about 40 MFLOP (multiply-adds
  counted as one) at 32x32, so that scans stay fast on a CPU.
- ``resnet-mini``: a residual network of a different design (skip connections, global
  average pooling), for checking that detectors hold beyond one architecture family.
- ``mlp``: tables, with the standardisation statistics stored in the model.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

ARCHITECTURES = ("cnn-small", "cnn-compact", "resnet-mini", "mlp")


def _conv_bn(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
    )


class ContractModule(nn.Module):
    """Shared ``forward``/``forward_features`` on top of ``features`` and ``head``.

    Subclasses set ``self.head`` (the last layer maps features to logits).
    """

    if TYPE_CHECKING:  # declared for mypy only: TorchScript rejects Module annotations
        head: nn.Module

    def features(self, x: Tensor) -> Tensor:  # pragma: no cover - overridden
        raise RuntimeError("features() must be overridden")

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))

    @torch.jit.export
    def forward_features(self, x: Tensor) -> tuple[Tensor, Tensor]:
        f = self.features(x)
        return self.head(f), f


class SmallCNN(ContractModule):
    """Two conv blocks and a 128-unit penultimate layer, for grey images."""

    def __init__(self, in_channels: int, height: int, width: int, num_classes: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            _conv_bn(in_channels, 32),
            nn.MaxPool2d(2),
            _conv_bn(32, 64),
            nn.MaxPool2d(2),
        )
        flat = 64 * (height // 4) * (width // 4)
        self.neck = nn.Sequential(nn.Flatten(), nn.Dropout(0.25), nn.Linear(flat, 128), nn.ReLU())
        self.head = nn.Sequential(nn.Dropout(0.25), nn.Linear(128, num_classes))

    @torch.jit.export
    def features(self, x: Tensor) -> Tensor:
        return self.neck(self.body(x))


class CompactCNN(ContractModule):
    """Five 3x3 conv layers (32-64-64-128-128) and a 256-unit penultimate layer."""

    def __init__(self, in_channels: int, height: int, width: int, num_classes: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            _conv_bn(in_channels, 32),
            nn.MaxPool2d(2),
            _conv_bn(32, 64),
            _conv_bn(64, 64),
            nn.MaxPool2d(2),
            _conv_bn(64, 128),
            _conv_bn(128, 128),
            nn.MaxPool2d(2),
        )
        flat = 128 * (height // 8) * (width // 8)
        self.neck = nn.Sequential(nn.Flatten(), nn.Dropout(0.3), nn.Linear(flat, 256), nn.ReLU())
        self.head = nn.Sequential(nn.Dropout(0.3), nn.Linear(256, num_classes))

    @torch.jit.export
    def features(self, x: Tensor) -> Tensor:
        return self.neck(self.body(x))


class _Residual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.skip: nn.Module = (
            nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))
            if stride != 1 or cin != cout
            else nn.Identity()
        )

    def forward(self, x: Tensor) -> Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.skip(x))


class ResNetMini(ContractModule):
    """A small pre-activation-free ResNet (16-32-64 channels, global average pooling)."""

    def __init__(self, in_channels: int, height: int, width: int, num_classes: int) -> None:
        super().__init__()
        self.stem = _conv_bn(in_channels, 16)
        self.stages = nn.Sequential(
            _Residual(16, 16, 1), _Residual(16, 32, 2), _Residual(32, 64, 2)
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Sequential(nn.Linear(64, num_classes))

    @torch.jit.export
    def features(self, x: Tensor) -> Tensor:
        return torch.flatten(self.pool(self.stages(self.stem(x))), 1)


class MLP(ContractModule):
    """Two hidden layers; inputs are standardised with statistics kept as buffers."""

    def __init__(self, in_features: int, num_classes: int, hidden: int = 128) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(in_features))
        self.register_buffer("scale", torch.ones(in_features))
        self.body = nn.Sequential(
            nn.Linear(in_features, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU()
        )
        self.head = nn.Sequential(nn.Linear(hidden, num_classes))

    if TYPE_CHECKING:
        mean: Tensor
        scale: Tensor

    def set_standardisation(self, mean: Tensor, scale: Tensor) -> None:
        self.mean.copy_(mean)
        self.scale.copy_(torch.where(scale > 1e-8, scale, torch.ones_like(scale)))

    @torch.jit.export
    def features(self, x: Tensor) -> Tensor:
        return self.body((x - self.mean) / self.scale)


def auto_arch(input_shape: tuple[int, ...]) -> str:
    """Pick an architecture from the shape of one input (``(C, H, W)`` or ``(D,)``)."""
    if len(input_shape) == 1:
        return "mlp"
    return "cnn-small" if input_shape[0] == 1 else "cnn-compact"


def build_model(arch: str, input_shape: tuple[int, ...], num_classes: int) -> ContractModule:
    """Build an untrained model of architecture ``arch`` for inputs of ``input_shape``.

    Raises
    ------
    ValueError
        Unknown architecture, or one that does not fit the input shape.
    """
    if arch == "auto":
        arch = auto_arch(input_shape)
    if arch == "mlp":
        if len(input_shape) != 1:
            raise ValueError(f"architecture 'mlp' needs table inputs (N, D), got {input_shape}")
        return MLP(input_shape[0], num_classes)
    builders: dict[str, Callable[[int, int, int, int], ContractModule]] = {
        "cnn-small": SmallCNN,
        "cnn-compact": CompactCNN,
        "resnet-mini": ResNetMini,
    }
    if arch not in builders:
        raise ValueError(
            f"unknown architecture '{arch}' (choose from auto, {', '.join(ARCHITECTURES)})"
        )
    if len(input_shape) != 3:
        raise ValueError(f"architecture '{arch}' needs image inputs (C, H, W), got {input_shape}")
    c, h, w = input_shape
    if h < 8 or w < 8:
        raise ValueError(f"architecture '{arch}' needs images of at least 8x8, got {h}x{w}")
    return builders[arch](c, h, w, num_classes)
