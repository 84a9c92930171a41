"""Answers to notebook 03's exercises that ``unittests.test_backbone`` and ``unittests.test_classifier``
must judge correctly: correct alternatives, the learner's stubs, and plausible mistakes, each
mistake with a phrase its hint must contain.
"""

from __future__ import annotations

from collections import OrderedDict

from torch import nn
import torch.nn.functional as F

from helper_utils.reference import InvertedResidualBlock
from helper_utils.reference import MobileNetBackbone as Reference
from helper_utils.reference import MobileNetLikeClassifier as ReferenceClassifier


# =======================================================================================
# MobileNetBackbone
# =======================================================================================

class TutorialBackbone(nn.Module):
    """The tutorial's way: one _make_block call per block, an nn.Sequential of them."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU(inplace=True))
        self.blocks = nn.Sequential(
            self._make_block(16, 24, 2, 3),
            self._make_block(24, 32, 2, 3),
            self._make_block(32, 64, 2, 6),
        )

    def _make_block(self, in_channels, out_channels, stride, expansion_factor):
        return InvertedResidualBlock(in_channels, out_channels, stride=stride, expansion_factor=expansion_factor)

    def forward(self, x):
        x = self.stem(x)
        x = self.blocks(x)
        return x


class ModuleListBiasBackbone(nn.Module):
    """An nn.ModuleList looped over in forward, a stem conv with bias, a table of blocks."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(OrderedDict(
            conv=nn.Conv2d(3, 16, kernel_size=3, stride=2, padding=1), bn=nn.BatchNorm2d(16), act=nn.ReLU()))
        table = [(16, 24, 2, 3), (24, 32, 2, 3), (32, 64, 2, 6)]
        self.blocks = nn.ModuleList(self._make_block(i, o, s, e) for i, o, s, e in table)

    @staticmethod
    def _make_block(in_channels, out_channels, stride, expansion_factor):
        return InvertedResidualBlock(in_channels, out_channels, stride, expansion_factor)

    def forward(self, x):
        x = self.stem(x)
        for block in self.blocks:
            x = block(x)
        return x


BACKBONE_CORRECT = {"tutorial": TutorialBackbone, "modulelist-with-bias": ModuleListBiasBackbone}


class StubBackbone(nn.Module):
    """As the learner's notebook has it: the forward is given, the placeholders are None."""

    def __init__(self):
        super().__init__()
        self.stem = None  # 3x3 conv stride 2 (3 -> 16) -> BatchNorm -> ReLU
        self.blocks = None  # three blocks built with self._make_block

    def _make_block(self, in_channels, out_channels, stride, expansion_factor):
        block = None  # one InvertedResidualBlock with these arguments
        return block

    def forward(self, x):
        x = self.stem(x)
        x = self.blocks(x)
        return x


class StubMakeBlock(TutorialBackbone):
    """stem and blocks written, _make_block still the placeholder."""

    def _make_block(self, in_channels, out_channels, stride, expansion_factor):
        return None


BACKBONE_STUBS = {"stub": StubBackbone, "none": None, "make-block-stub": StubMakeBlock}


def _table(rows):
    """A backbone whose blocks follow ``rows`` of (in, out, stride, expansion factor) instead of the course's."""

    class Mutant(Reference):
        def __init__(self):
            super().__init__()
            self.blocks = nn.Sequential(*[self._make_block(*row) for row in rows])

    return Mutant


class StemStride1(Reference):
    def __init__(self):
        super().__init__()
        self.stem[0] = nn.Conv2d(3, 16, 3, stride=1, padding=1, bias=False)


class StemWithoutBatchNorm(Reference):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.ReLU())


class StemWithoutRelu(Reference):
    def __init__(self):
        super().__init__()
        self.stem = self.stem[:2]


class MakeBlockDropsExpansion(Reference):
    def _make_block(self, in_channels, out_channels, stride, expansion_factor):
        return InvertedResidualBlock(in_channels, out_channels, stride)


class PooledBackbone(Reference):
    def forward(self, x):
        return F.adaptive_avg_pool2d(super().forward(x), 1).flatten(1)


BACKBONE_MUTANTS = {
    "second-block-stride-1": (_table([(16, 24, 2, 3), (24, 32, 1, 3), (32, 64, 2, 6)]), "a stride-2 is missing"),
    "last-block-48-channels": (_table([(16, 24, 2, 3), (24, 32, 2, 3), (32, 48, 2, 6)]), "outputs 64 channels"),
    "stem-stride-1": (StemStride1, "the stem halves H and W"),
    "stem-without-batchnorm": (StemWithoutBatchNorm, "missing BatchNorm2d(16)"),
    "stem-without-relu": (StemWithoutRelu, "the stem ends with ReLU"),
    "blocks-in-wrong-order": (_table([(16, 24, 2, 3), (32, 64, 2, 6), (24, 32, 2, 3)]),
                              "blocks[1] should be _make_block(24, 32, 2, 3)"),
    "expansion-6-everywhere": (_table([(16, 24, 2, 6), (24, 32, 2, 6), (32, 64, 2, 6)]),
                               "blocks[0] should be _make_block(16, 24, 2, 3): expected expansion_factor 3, got 6"),
    "expansions-swapped": (_table([(16, 24, 2, 6), (24, 32, 2, 3), (32, 64, 2, 3)]),
                           "blocks[2] should be _make_block(32, 64, 2, 6): expected expansion_factor 6, got 3"),
    "extra-block": (_table([(16, 24, 2, 3), (24, 32, 2, 3), (32, 64, 2, 6), (64, 64, 1, 6)]), "exactly three blocks"),
    "make-block-drops-expansion": (MakeBlockDropsExpansion, "pass expansion_factor through"),
    "pooled-output": (PooledBackbone, "no pooling or flattening in the backbone"),
}


# =======================================================================================
# MobileNetLikeClassifier
# =======================================================================================

class TutorialClassifier(nn.Module):
    def __init__(self, num_classes=7):
        super().__init__()
        self.backbone = Reference()
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten(1), nn.Linear(64, num_classes))

    def forward(self, x):
        features = self.backbone(x)
        return self.head(features)


class _MeanHead(nn.Module):
    """Average pooling written as a mean, then a Linear layer."""

    def __init__(self, num_classes):
        super().__init__()
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x):
        return self.fc(x.mean(dim=(2, 3)))


class MeanHeadClassifier(nn.Module):
    def __init__(self, num_classes: int = 7):
        super().__init__()
        self.head = _MeanHead(num_classes)
        self.backbone = TutorialBackbone()

    def forward(self, x):
        return self.head(self.backbone(x))


CLASSIFIER_CORRECT = {"tutorial": TutorialClassifier, "mean-head": MeanHeadClassifier}


class StubClassifier(nn.Module):
    def __init__(self, num_classes=7):
        super().__init__()
        self.backbone = None  # the MobileNetBackbone
        self.head = None  # AdaptiveAvgPool2d(1) -> Flatten -> Linear(64, num_classes)

    def forward(self, x):
        features = self.backbone(x)
        return self.head(features)


CLASSIFIER_STUBS = {"stub": StubClassifier, "none": None}


def _with_head(make_head):
    class Mutant(ReferenceClassifier):
        def __init__(self, num_classes=7):
            super().__init__(num_classes)
            self.head = make_head(num_classes)

    return Mutant


class SoftmaxOutput(ReferenceClassifier):
    def forward(self, x):
        return F.softmax(super().forward(x), dim=1)


class LogSoftmaxOutput(ReferenceClassifier):
    def forward(self, x):
        return F.log_softmax(super().forward(x), dim=1)


class ReluOutput(ReferenceClassifier):
    def forward(self, x):
        return F.relu(super().forward(x))


CLASSIFIER_MUTANTS = {
    "softmax-at-the-end": (SoftmaxOutput, "remove the softmax"),
    "softmax-in-head": (_with_head(lambda n: nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, n),
                                                           nn.Softmax(dim=1))), "remove the softmax"),
    "log-softmax": (LogSoftmaxOutput, "remove the log_softmax"),
    "relu-on-logits": (ReluOutput, "no activation after the last Linear"),
    "no-pooling": (_with_head(lambda n: nn.Sequential(nn.Flatten(), nn.Linear(64 * 4 * 4, n))),
                   "pool before the Linear layer"),
    "no-flatten": (_with_head(lambda n: nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Linear(64, n))),
                   "add nn.Flatten()"),
    "seven-classes-hard-coded": (_with_head(lambda n: nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                                                    nn.Linear(64, 7))), "don't hard-code 7"),
    "max-pooling": (_with_head(lambda n: nn.Sequential(nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(64, n))),
                    "AdaptiveAvgPool2d(1)"),
}
