"""An lrsearch workload plug-in: model, data and loss. Install it where the service and the Ray
workers run (`pip install ./examples/plugin`), restart the service, and jobs can name `mlp-iris`."""

from __future__ import annotations

import torch
from sklearn.datasets import load_iris
from sklearn.model_selection import train_test_split

from lrsearch.workloads import Dataset, Workload


class MLPIris(Workload):
    name = "mlp-iris"
    description = "MLP 4-16-3 on scikit-learn's iris (150 samples), 80/20 stratified split."
    task = "classification"  # reports val_accuracy
    batch_size = 16

    def load_data(self, seed: int) -> Dataset:
        x, y = load_iris(return_X_y=True)
        x_train, x_val, y_train, y_val = train_test_split(x, y, test_size=0.2, random_state=seed, stratify=y)
        mean, std = x_train.mean(0), x_train.std(0) + 1e-8  # statistics of the training set only
        return Dataset(
            train_x=torch.tensor((x_train - mean) / std, dtype=torch.float32),
            train_y=torch.tensor(y_train, dtype=torch.int64),
            val_x=torch.tensor((x_val - mean) / std, dtype=torch.float32),
            val_y=torch.tensor(y_val, dtype=torch.int64),
        )

    def build_model(self, seed: int) -> torch.nn.Module:
        # lrsearch seeds torch before calling this, so initialisation is reproducible.
        return torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))

    def loss_fn(self) -> torch.nn.Module:
        return torch.nn.CrossEntropyLoss()
