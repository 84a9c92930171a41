"""Reference transforms of notebook 01: resize to 64x64, augment only in training, normalise to [-1, 1]."""

from __future__ import annotations

from torchvision import transforms as T

__all__ = ["IMAGE_SIZE", "MEAN", "STD", "train_transform", "val_transform"]

IMAGE_SIZE = 64  # the course's input size: small enough to train on a laptop CPU
MEAN = (0.5, 0.5, 0.5)  # maps [0, 1] pixels to [-1, 1]
STD = (0.5, 0.5, 0.5)

# Training: random flips and small rotations show the model new views of each photo.
train_transform = T.Compose([
    T.Resize((IMAGE_SIZE, IMAGE_SIZE)),
    T.RandomHorizontalFlip(),
    T.RandomRotation(10),
    T.ToTensor(),
    T.Normalize(MEAN, STD),
])

# Validation and search: deterministic, so the same photo always gives the same tensor.
val_transform = T.Compose([
    T.Resize((IMAGE_SIZE, IMAGE_SIZE)),
    T.ToTensor(),
    T.Normalize(MEAN, STD),
])
