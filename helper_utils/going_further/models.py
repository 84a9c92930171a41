"""Notebook 08's stronger model: a wider, deeper backbone built from the course's block by a config table.

Written as torchvision's ``mobilenetv2.py`` is: a literal ``(t, c, n, s)`` table, explicit and flat.
"""

from __future__ import annotations

import torch
from torch import nn

from helper_utils.reference import InvertedResidualBlock

__all__ = ["WideMobileNetBackbone", "WideMobileNetClassifier"]


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
