"""Workloads on scikit-learn's small bundled tables."""

from __future__ import annotations

from sklearn.datasets import load_breast_cancer, load_wine
from torch import nn

from lrsearch.workers.workloads._sklearn_data import split
from lrsearch.workers.workloads.base import Dataset, LossFn, Workload


class LogRegBreastCancer(Workload):
    name = "logreg-breast-cancer"
    description = (
        "Logistic regression (one linear layer, 2-class softmax) on scikit-learn's breast cancer "
        "table: 569 samples, 30 standardized features, 80/20 split."
    )
    batch_size = 32

    def load_data(self, seed: int) -> Dataset:
        table = load_breast_cancer()
        return split(table.data, table.target, seed)

    def build_model(self, seed: int) -> nn.Module:
        # Two logits with softmax cross-entropy is the same model as one logit with a sigmoid.
        return nn.Linear(30, 2)

    def loss_fn(self) -> LossFn:
        return nn.CrossEntropyLoss()


class MLPWine(Workload):
    name = "mlp-wine"
    description = "MLP 13-32-3 (ReLU) on scikit-learn's wine table: 178 samples, 13 standardized features, 80/20 split."
    batch_size = 16  # 142 training samples: small batches give enough steps per epoch

    def load_data(self, seed: int) -> Dataset:
        table = load_wine()
        return split(table.data, table.target, seed)

    def build_model(self, seed: int) -> nn.Module:
        return nn.Sequential(nn.Linear(13, 32), nn.ReLU(), nn.Linear(32, 3))

    def loss_fn(self) -> LossFn:
        return nn.CrossEntropyLoss()
