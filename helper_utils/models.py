"""Reference models of the course: the answers to the exercises of notebooks 02, 03 and 05.

Later notebooks import these so that an exercise never depends on an earlier answer being
right. Written in the style of torchvision's ``mobilenetv2.py``: explicit and flat.
"""

from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F

__all__ = [
    "InvertedResidualBlock",
    "MobileNetBackbone",
    "MobileNetLikeClassifier",
    "WideMobileNetBackbone",
    "WideMobileNetClassifier",
    "SiameseEncoder",
    "SiameseNetwork",
    "count_parameters",
]


class InvertedResidualBlock(nn.Module):
    """Expand (1x1) -> depthwise (3x3) -> linear projection (1x1), plus a skip connection.

    Departs from MobileNetV2 in two places, as the course's tutorial does: a ReLU after the
    residual add, and a 1x1 convolution on the skip path whenever the shape changes (where
    MobileNetV2 simply drops the skip).

    Args:
        in_channels: channels of the input ``(B, in_channels, H, W)``.
        out_channels: channels of the output.
        stride: stride of the depthwise convolution (1 keeps H and W, 2 halves them).
        expansion_factor: hidden width is ``in_channels * expansion_factor``.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, expansion_factor: int = 6) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride should be 1 or 2, got {stride!r}")
        hidden = in_channels * expansion_factor
        self.expand = nn.Sequential(  # pw: widen the channels
            nn.Conv2d(in_channels, hidden, kernel_size=1, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
        )
        self.depthwise = nn.Sequential(  # dw: one 3x3 filter per channel
            nn.Conv2d(hidden, hidden, kernel_size=3, stride=stride, padding=1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
        )
        self.project = nn.Sequential(  # pw-linear: no activation, keeps information in low dimensions
            nn.Conv2d(hidden, out_channels, kernel_size=1, bias=False),
            nn.BatchNorm2d(out_channels),
        )
        needs_shortcut = stride != 1 or in_channels != out_channels
        self.shortcut = (
            nn.Sequential(
                nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )
            if needs_shortcut
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = x if self.shortcut is None else self.shortcut(x)
        out = self.project(self.depthwise(self.expand(x)))
        return F.relu(out + skip)


class MobileNetBackbone(nn.Module):
    """Stem plus three inverted residual blocks: ``(B, 3, 64, 64) -> (B, 64, 4, 4)``."""

    # in, out, stride, expansion factor
    BLOCKS = [
        (16, 24, 2, 3),
        (24, 32, 2, 3),
        (32, 64, 2, 6),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 16, kernel_size=3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(16),
            nn.ReLU(inplace=True),
        )
        self.blocks = nn.Sequential(*[self._make_block(*row) for row in self.BLOCKS])

    def _make_block(self, in_channels: int, out_channels: int, stride: int, expansion_factor: int) -> nn.Module:
        return InvertedResidualBlock(in_channels, out_channels, stride, expansion_factor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)  # (B, 16, H/2, W/2)
        return self.blocks(x)  # (B, 64, H/16, W/16)


class MobileNetLikeClassifier(nn.Module):
    """Backbone plus a pooling/linear head that returns raw logits ``(B, num_classes)``."""

    def __init__(self, num_classes: int = 7) -> None:
        super().__init__()
        self.backbone = MobileNetBackbone()
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),  # (B, 64, 1, 1)
            nn.Flatten(),  # (B, 64)
            nn.Linear(64, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


class WideMobileNetBackbone(nn.Module):
    """A wider, deeper backbone from the same ``InvertedResidualBlock``, laid out by a config table.

    Notebook 08's stronger model: ``(B, 3, 64, 64) -> (B, 256, 4, 4)``, about 0.5M parameters
    (16x the course's backbone, still under MobileNetV2's 3.4M). As in torchvision's
    ``mobilenetv2.py``, each row of the table is one *stage*: ``n`` blocks with output channels
    ``c`` and expansion ``t``, the first of which has stride ``s``. A final 1x1 convolution widens
    the features before pooling, as MobileNetV2's last layer does.
    """

    # expansion t, output channels c, blocks n, stride s of the stage's first block
    CONFIG = [
        (1, 16, 1, 1),  # 32x32 (the stem already halved 64x64)
        (4, 24, 2, 2),  # 16x16
        (4, 48, 2, 2),  # 8x8
        (4, 96, 3, 2),  # 4x4
        (4, 128, 2, 1),  # 4x4, wider
    ]

    def __init__(self, config: list[tuple[int, int, int, int]] | None = None, stem_channels: int = 32,
                 last_channels: int = 256) -> None:
        super().__init__()
        config = self.CONFIG if config is None else config
        self.stem = nn.Sequential(
            nn.Conv2d(3, stem_channels, kernel_size=3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(stem_channels),
            nn.ReLU(inplace=True),
        )
        blocks = []
        in_channels = stem_channels
        for t, c, n, s in config:
            for i in range(n):
                blocks.append(InvertedResidualBlock(in_channels, c, stride=s if i == 0 else 1, expansion_factor=t))
                in_channels = c
        self.blocks = nn.Sequential(*blocks)
        self.last = nn.Sequential(  # 1x1 conv: more features for the head to pool
            nn.Conv2d(in_channels, last_channels, kernel_size=1, bias=False),
            nn.BatchNorm2d(last_channels),
            nn.ReLU(inplace=True),
        )
        self.out_channels = last_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.last(self.blocks(self.stem(x)))  # (B, last_channels, H/16, W/16)


class WideMobileNetClassifier(nn.Module):
    """``WideMobileNetBackbone`` plus a pooling/dropout/linear head that returns raw logits."""

    def __init__(self, num_classes: int = 7, backbone: nn.Module | None = None, dropout: float = 0.2) -> None:
        super().__init__()
        self.backbone = WideMobileNetBackbone() if backbone is None else backbone
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Dropout(dropout),  # as torchvision's MobileNetV2 head
            nn.Linear(self.backbone.out_channels, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


class SiameseEncoder(nn.Module):
    """Turns an image batch into embeddings ``(B, 64)`` with a (pre-trained) backbone."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.representation = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.representation(self.backbone(x))


class SiameseNetwork(nn.Module):
    """Runs anchor, positive and negative through one shared embedding network."""

    def __init__(self, embedding_network: nn.Module) -> None:
        super().__init__()
        self.embedding_network = embedding_network

    def forward(self, anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor):
        return self.get_embedding(anchor), self.get_embedding(positive), self.get_embedding(negative)

    def get_embedding(self, image: torch.Tensor) -> torch.Tensor:
        return self.embedding_network(image)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
