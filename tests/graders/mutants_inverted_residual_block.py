"""Answers to notebook 02's exercise that ``unittests.test_block`` must judge correctly.

``CORRECT``: right however written (the tutorial's code, explicit named layers, torchvision's
``Conv2dNormActivation``, convolutions with bias). ``STUBS``: the learner's untouched cell.
``MUTANTS``: plausible mistakes, each with a phrase its hint must contain.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn
import torch.nn.functional as F
from torchvision.ops import Conv2dNormActivation

from helper_utils.reference import InvertedResidualBlock as Reference


# ---------------------------------------------------------------------------------------
# Correct alternatives
# ---------------------------------------------------------------------------------------

class TutorialBlock(nn.Module):
    """The tutorial's own code: a flag for the residual, an in-place add."""

    def __init__(self, in_channels, out_channels, stride=1, expansion_factor=6):
        super().__init__()
        hidden_dim = in_channels * expansion_factor
        self.stride = stride
        self.expand = nn.Sequential(
            nn.Conv2d(in_channels, hidden_dim, 1, bias=False), nn.BatchNorm2d(hidden_dim), nn.ReLU(inplace=True))
        self.depthwise = nn.Sequential(
            nn.Conv2d(hidden_dim, hidden_dim, 3, stride, 1, groups=hidden_dim, bias=False),
            nn.BatchNorm2d(hidden_dim), nn.ReLU(inplace=True))
        self.project = nn.Sequential(nn.Conv2d(hidden_dim, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels))
        self.use_shortcut = stride != 1 or in_channels != out_channels
        self.shortcut = None
        if self.use_shortcut:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False), nn.BatchNorm2d(out_channels))

    def forward(self, x):
        identity = x
        out = self.expand(x)
        out = self.depthwise(out)
        out = self.project(out)
        if self.shortcut is not None:
            identity = self.shortcut(x)
        out += identity
        return F.relu(out)


class NamedLayersBiasBlock(nn.Module):
    """Named layers, convolutions with bias, shortcut registered first, a functional forward."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, expansion_factor: int = 6):
        super().__init__()
        hidden = in_channels * expansion_factor
        if stride == 1 and in_channels == out_channels:
            self.shortcut = None
        else:
            self.shortcut = nn.Sequential(OrderedDict(
                conv=nn.Conv2d(in_channels, out_channels, kernel_size=(1, 1), stride=(stride, stride)),
                bn=nn.BatchNorm2d(out_channels)))
        self.expand = nn.Sequential(OrderedDict(
            conv=nn.Conv2d(in_channels, hidden, 1), bn=nn.BatchNorm2d(hidden), act=nn.ReLU()))
        self.depthwise = nn.Sequential(OrderedDict(
            conv=nn.Conv2d(hidden, hidden, 3, stride=stride, padding=1, groups=hidden),
            bn=nn.BatchNorm2d(hidden), act=nn.ReLU()))
        self.project = nn.Sequential(OrderedDict(
            conv=nn.Conv2d(hidden, out_channels, 1), bn=nn.BatchNorm2d(out_channels)))

    def forward(self, x):
        skip = self.shortcut(x) if self.shortcut is not None else x
        return torch.relu(torch.add(self.project(self.depthwise(self.expand(x))), skip))


class TorchvisionOpsBlock(nn.Module):
    """Stages built from ``torchvision.ops.Conv2dNormActivation``."""

    def __init__(self, in_channels, out_channels, stride=1, expansion_factor=6):
        super().__init__()
        hidden = in_channels * expansion_factor
        self.expand = Conv2dNormActivation(in_channels, hidden, kernel_size=1)
        self.depthwise = Conv2dNormActivation(hidden, hidden, kernel_size=3, stride=stride, groups=hidden)
        self.project = Conv2dNormActivation(hidden, out_channels, kernel_size=1, activation_layer=None)
        needs = stride != 1 or in_channels != out_channels
        self.shortcut = (Conv2dNormActivation(in_channels, out_channels, kernel_size=1, stride=stride,
                                              activation_layer=None) if needs else None)

    def forward(self, x):
        out = self.project(self.depthwise(self.expand(x)))
        return (out + (x if self.shortcut is None else self.shortcut(x))).clamp(min=0)


CORRECT = {
    "tutorial": TutorialBlock,
    "named-layers-with-bias": NamedLayersBiasBlock,
    "torchvision-ops": TorchvisionOpsBlock,
}


# ---------------------------------------------------------------------------------------
# Stubs: the learner's cell before any code is written
# ---------------------------------------------------------------------------------------

class StubBlock(nn.Module):
    """As the learner's notebook has it."""

    def __init__(self, in_channels, out_channels, stride=1, expansion_factor=6):
        super().__init__()
        hidden = None  # the expanded width: in_channels * expansion_factor
        self.expand = None  # 1x1 conv -> BatchNorm -> ReLU
        self.depthwise = None  # 3x3 depthwise conv -> BatchNorm -> ReLU
        self.project = None  # 1x1 conv -> BatchNorm
        needs_shortcut = None
        self.shortcut = None

    def forward(self, x):
        skip = None
        out = None
        return out


class StubForwardOnly(Reference):
    """Stages written, forward still the placeholder."""

    def forward(self, x):
        return None


STUBS = {"stub": StubBlock, "none": None, "forward-stub": StubForwardOnly}


# ---------------------------------------------------------------------------------------
# Mutants
# ---------------------------------------------------------------------------------------

def _cbr(cin, cout, k=1, stride=1, groups=1, relu=True):
    layers = [nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    return nn.Sequential(*layers, *([nn.ReLU(inplace=True)] if relu else []))


class NoResidual(Reference):
    def forward(self, x):
        return F.relu(self.project(self.depthwise(self.expand(x))))


class ReluOnProjection(Reference):
    def __init__(self, in_channels, out_channels, stride=1, expansion_factor=6):
        super().__init__(in_channels, out_channels, stride, expansion_factor)
        self.project = nn.Sequential(*self.project, nn.ReLU())


class ShortcutOnlyOnChannelChange(Reference):
    def __init__(self, in_channels, out_channels, stride=1, expansion_factor=6):
        super().__init__(in_channels, out_channels, stride, expansion_factor)
        if in_channels == out_channels:
            self.shortcut = None


class ShortcutAlways(Reference):
    def __init__(self, in_channels, out_channels, stride=1, expansion_factor=6):
        super().__init__(in_channels, out_channels, stride, expansion_factor)
        self.shortcut = _cbr(in_channels, out_channels, stride=stride, relu=False)


class DepthwiseWithoutGroups(Reference):
    def __init__(self, in_channels, out_channels, stride=1, expansion_factor=6):
        super().__init__(in_channels, out_channels, stride, expansion_factor)
        hidden = in_channels * expansion_factor
        self.depthwise = _cbr(hidden, hidden, k=3, stride=stride)


class StrideOnExpand(Reference):
    def __init__(self, in_channels, out_channels, stride=1, expansion_factor=6):
        super().__init__(in_channels, out_channels, stride, expansion_factor)
        hidden = in_channels * expansion_factor
        self.expand = _cbr(in_channels, hidden, stride=stride)
        self.depthwise = _cbr(hidden, hidden, k=3, groups=hidden)


class NoFinalRelu(Reference):
    def forward(self, x):
        skip = x if self.shortcut is None else self.shortcut(x)
        return self.project(self.depthwise(self.expand(x))) + skip


class ReluBeforeAdd(Reference):
    def forward(self, x):
        skip = x if self.shortcut is None else self.shortcut(x)
        return F.relu(self.project(self.depthwise(self.expand(x)))) + skip


class HiddenFromOutChannels(Reference):
    """hidden = out_channels * expansion_factor."""

    def __init__(self, in_channels, out_channels, stride=1, expansion_factor=6):
        super().__init__(in_channels, out_channels, stride, expansion_factor)
        hidden = out_channels * expansion_factor
        self.expand = _cbr(in_channels, hidden)
        self.depthwise = _cbr(hidden, hidden, k=3, stride=stride, groups=hidden)
        self.project = _cbr(hidden, out_channels, relu=False)


class ExpansionIgnored(Reference):
    """Always expands by 6, whatever expansion_factor says."""

    def __init__(self, in_channels, out_channels, stride=1, expansion_factor=6):
        super().__init__(in_channels, out_channels, stride, 6)


class ShortcutWithoutStride(Reference):
    def __init__(self, in_channels, out_channels, stride=1, expansion_factor=6):
        super().__init__(in_channels, out_channels, stride, expansion_factor)
        if self.shortcut is not None:
            self.shortcut = _cbr(in_channels, out_channels, relu=False)


class ShortcutUnused(Reference):
    """Builds the shortcut but adds x whenever the shapes allow, else nothing."""

    def forward(self, x):
        out = self.project(self.depthwise(self.expand(x)))
        return F.relu(out + x) if out.shape == x.shape else F.relu(out)


class ProjectWithoutBatchNorm(Reference):
    def __init__(self, in_channels, out_channels, stride=1, expansion_factor=6):
        super().__init__(in_channels, out_channels, stride, expansion_factor)
        self.project = nn.Sequential(nn.Conv2d(in_channels * expansion_factor, out_channels, 1, bias=False))


class NoSuperInit(nn.Module):
    def __init__(self, in_channels, out_channels, stride=1, expansion_factor=6):
        self.expand = _cbr(in_channels, in_channels * expansion_factor)


class SkipAfterExpand(Reference):
    """Overwrites x before taking the skip: the skip gets the expanded tensor."""

    def forward(self, x):
        x = self.expand(x)
        skip = x if self.shortcut is None else self.shortcut(x)
        return F.relu(self.project(self.depthwise(x)) + skip)


class SkipAfterDepthwise(Reference):
    def forward(self, x):
        x = self.depthwise(self.expand(x))
        skip = x if self.shortcut is None else self.shortcut(x)
        return F.relu(self.project(x) + skip)


# name: (mutant, a phrase the hints of its failed cases must contain)
MUTANTS = {
    "missing-residual-add": (NoResidual, "missing residual add"),
    "relu-on-projection": (ReluOnProjection, "the projection should end with BatchNorm"),
    "shortcut-only-on-channel-change": (ShortcutOnlyOnChannelChange, "shortcut is needed when stride != 1"),
    "shortcut-always": (ShortcutAlways, "no shortcut when stride == 1"),
    "depthwise-without-groups": (DepthwiseWithoutGroups, "groups=hidden_channels"),
    "stride-on-expand": (StrideOnExpand, "the stride belongs to the depthwise conv"),
    "no-final-relu": (NoFinalRelu, "missing final ReLU"),
    "relu-before-add": (ReluBeforeAdd, "the ReLU goes after the add"),
    "hidden-from-out-channels": (HiddenFromOutChannels, "in_channels*expansion_factor"),
    "expansion-factor-ignored": (ExpansionIgnored, "in_channels*expansion_factor"),
    "shortcut-without-stride": (ShortcutWithoutStride, "needs the block's stride"),
    "shortcut-unused": (ShortcutUnused, "missing residual add"),
    "project-without-batchnorm": (ProjectWithoutBatchNorm, "project: missing BatchNorm2d"),
    "no-super-init": (NoSuperInit, "super().__init__()"),
    "skip-after-expand": (SkipAfterExpand, "take the skip from the block's input"),
    "skip-after-depthwise": (SkipAfterDepthwise, "take the skip from the block's input"),
}
