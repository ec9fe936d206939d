"""A generated regression task that trains in milliseconds per epoch: for scale tests."""

from __future__ import annotations

import torch
from torch import nn

from lrsearch.workers.workloads.base import Dataset, LossFn, Workload


class Synthetic(Workload):
    name = "synthetic"
    description = (
        "Generated regression (y = linear + tanh term + noise, 8 features), MLP 8-16-1, "
        "256 training / 64 validation samples: milliseconds per epoch, for scale tests."
    )
    task = "regression"
    batch_size = 64

    def __init__(self, num_train: int = 256, num_val: int = 64, num_features: int = 8) -> None:
        self.num_train = num_train
        self.num_val = num_val
        self.num_features = num_features

    def load_data(self, seed: int) -> Dataset:
        g = torch.Generator().manual_seed(seed)
        d = self.num_features
        w, v = torch.randn(d, 1, generator=g), torch.randn(d, 1, generator=g)
        x = torch.randn(self.num_train + self.num_val, d, generator=g)
        y = x @ w / d**0.5 + torch.tanh(x @ v) + 0.1 * torch.randn(len(x), 1, generator=g)
        n = self.num_train
        return Dataset(train_x=x[:n], train_y=y[:n], val_x=x[n:], val_y=y[n:])

    def build_model(self, seed: int) -> nn.Module:
        return nn.Sequential(nn.Linear(self.num_features, 16), nn.ReLU(), nn.Linear(16, 1))

    def loss_fn(self) -> LossFn:
        return nn.MSELoss()
