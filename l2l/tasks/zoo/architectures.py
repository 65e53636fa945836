"""Classifier architectures of the target-model zoos, looked up by name (``--arch`` of train.target_model).

Each maps [n, 1, 28, 28] images in [0, 1] to 10 logits and comes from a distinct family, so that a
held-out target can be an architecture no surrogate shares: a multilayer perceptron, a LeNet-5-style
CNN (LeCun et al., 1998), the C&W CNN of the shipped targets (:class:`CWMnistCNN`), a small residual
network (He et al., 2016), a depthwise-separable network in the manner of MobileNet (Howard et al.,
2017) and a wide CNN (few layers, many channels). Sizes are kept to a few hundred thousand weights so
that each float32 ``state_dict`` stays a few MB and each trains in minutes on 2 CPU cores.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

from l2l.common.registry import Registry

ARCHITECTURES: Registry[Callable[..., nn.Module]] = Registry("architecture", "architectures")


def register_architecture(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Class decorator: make an architecture constructible by ``build_architecture(name)``."""
    return ARCHITECTURES.decorator(name)


def build_architecture(name: str, dropout: float = 0.5) -> nn.Module:
    """A freshly initialized network of the architecture ``name`` (a KeyError lists the names).

    Args:
        name: a registered architecture (:data:`ARCHITECTURES`).
        dropout: dropout rate of the architectures with a fully connected head (others ignore it).
    """
    return ARCHITECTURES[name](dropout=dropout)


@register_architecture("cw")
class CWMnistCNN(nn.Sequential):
    """The C&W MNIST architecture: conv32-conv32-pool-conv64-conv64-pool-fc200-fc200-fc10 (logits)."""

    def __init__(self, dropout: float = 0.5):
        super().__init__(
            nn.Conv2d(1, 32, 3), nn.ReLU(), nn.Conv2d(32, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3), nn.ReLU(), nn.Conv2d(64, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(64 * 4 * 4, 200), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(200, 200), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(200, 10),
        )  # fmt: skip


@register_architecture("mlp")
class MLP(nn.Sequential):
    """Two hidden layers of 256 ReLU units on the flattened image (no convolution at all)."""

    def __init__(self, dropout: float = 0.5):
        super().__init__(
            nn.Flatten(),
            nn.Linear(28 * 28, 256), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(256, 256), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(256, 10),
        )  # fmt: skip


@register_architecture("lenet")
class LeNet(nn.Sequential):
    """LeNet-5's layout: conv6 (5x5) - pool - conv16 (5x5) - pool - fc120 - fc84 - fc10, ReLU units."""

    def __init__(self, dropout: float = 0.5):
        super().__init__(
            nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(16 * 5 * 5, 120), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(120, 84), nn.ReLU(),
            nn.Linear(84, 10),
        )  # fmt: skip


@register_architecture("wide")
class WideCNN(nn.Sequential):
    """Two wide conv layers (a 5x5 one of 64 channels, a 3x3 one of 128), each max-pooled (to 14 and 3
    pixels), and one wide fully connected layer: shallow and wide where the C&W CNN is deep and narrow."""

    def __init__(self, dropout: float = 0.5):
        super().__init__(
            nn.Conv2d(1, 64, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(64, 128, 3, padding=1), nn.ReLU(), nn.MaxPool2d(4),
            nn.Flatten(), nn.Dropout(dropout),
            nn.Linear(128 * 3 * 3, 256), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(256, 10),
        )  # fmt: skip


def _conv_bn(c_in: int, c_out: int, stride: int = 1, groups: int = 1, kernel: int = 3) -> list[nn.Module]:
    """Convolution (no bias: the batch norm's shift replaces it) followed by batch norm."""
    pad = kernel // 2
    return [nn.Conv2d(c_in, c_out, kernel, stride, pad, groups=groups, bias=False), nn.BatchNorm2d(c_out)]


class BasicBlock(nn.Module):
    """He et al.'s basic residual block: two 3x3 conv-BN layers plus the input (a 1x1 projection when
    the shape changes), then ReLU.

    Args:
        c_in: input channels.
        c_out: output channels.
        stride: stride of the first conv (2 halves the resolution).
    """

    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        self.body = nn.Sequential(*_conv_bn(c_in, c_out, stride), nn.ReLU(), *_conv_bn(c_out, c_out))
        changes = stride != 1 or c_in != c_out
        self.shortcut = nn.Sequential(*_conv_bn(c_in, c_out, stride, kernel=1)) if changes else nn.Identity()
        self.relu = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(self.body(x) + self.shortcut(x))


@register_architecture("resnet")
class SmallResNet(nn.Sequential):
    """A ResNet with three stages of one basic block each (16, 32, 64 channels at 28, 14, 7 pixels)."""

    def __init__(self, dropout: float = 0.5):
        super().__init__(
            *_conv_bn(1, 16), nn.ReLU(),
            BasicBlock(16, 16), BasicBlock(16, 32, stride=2), BasicBlock(32, 64, stride=2),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
            nn.Linear(64, 10),
        )  # fmt: skip


def _separable(c_in: int, c_out: int, stride: int = 1) -> list[nn.Module]:
    """MobileNet's depthwise-separable unit: a 3x3 depthwise conv-BN-ReLU, then a 1x1 pointwise one."""
    depthwise = _conv_bn(c_in, c_in, stride, groups=c_in)
    return [*depthwise, nn.ReLU(), *_conv_bn(c_in, c_out, kernel=1), nn.ReLU()]


@register_architecture("mobilenet")
class MobileNetLike(nn.Sequential):
    """A MobileNet-v1-style stack: a full 3x3 conv stem of stride 2 (14 pixels), then depthwise-separable
    units (64-128-128-256 channels, at 14, 7, 7 and 4 pixels) and global average pooling."""

    def __init__(self, dropout: float = 0.5):
        super().__init__(
            *_conv_bn(1, 32, stride=2), nn.ReLU(),
            *_separable(32, 64), *_separable(64, 128, stride=2),
            *_separable(128, 128), *_separable(128, 256, stride=2),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
            nn.Linear(256, 10),
        )  # fmt: skip
