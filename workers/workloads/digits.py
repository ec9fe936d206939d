"""Workloads on scikit-learn's 8x8 handwritten digits (1797 images, 10 classes)."""

from __future__ import annotations

from sklearn.datasets import load_digits
from torch import nn

from lrsearch.workers.workloads._sklearn_data import split
from lrsearch.workers.workloads.base import Dataset, LossFn, Workload


class MLPDigits(Workload):
    name = "mlp-digits"
    description = "MLP 64-64-10 (ReLU) on scikit-learn's 8x8 digits, standardized pixels, 80/20 split."
    batch_size = 64

    def load_data(self, seed: int) -> Dataset:
        digits = load_digits()
        return split(digits.data, digits.target, seed)

    def build_model(self, seed: int) -> nn.Module:
        return nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))

    def loss_fn(self) -> LossFn:
        return nn.CrossEntropyLoss()


class CNNDigits(Workload):
    name = "cnn-digits"
    description = "Small CNN (3x3 conv 16, 3x3 conv 32, linear; ReLU) on scikit-learn's 8x8 digits, 80/20 split."
    batch_size = 64

    def load_data(self, seed: int) -> Dataset:
        digits = load_digits()
        # Scale pixels to [0, 1] rather than standardize each one: convolutions share weights across pixels.
        flat = split(digits.data / 16.0, digits.target, seed, standardize=False)
        return Dataset(
            train_x=flat.train_x.reshape(-1, 1, 8, 8),
            train_y=flat.train_y,
            val_x=flat.val_x.reshape(-1, 1, 8, 8),
            val_y=flat.val_y,
        )

    def build_model(self, seed: int) -> nn.Module:
        # Unpadded 3x3 convolutions, 8x8 -> 6x6 -> 4x4: padding or pooling made it 3x slower per step
        # on one CPU core for no better accuracy.
        return nn.Sequential(
            nn.Conv2d(1, 16, kernel_size=3),
            nn.ReLU(),
            nn.Conv2d(16, 32, kernel_size=3),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(32 * 4 * 4, 10),
        )

    def loss_fn(self) -> LossFn:
        return nn.CrossEntropyLoss()

