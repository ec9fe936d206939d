"""Splitting scikit-learn's bundled datasets (no download) into a Dataset."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.model_selection import train_test_split

from lrsearch.workers.workloads.base import Dataset

VAL_FRACTION = 0.2


def split(x: np.ndarray, y: np.ndarray, seed: int, *, standardize: bool = True) -> Dataset:
    """A stratified 80/20 split fixed by ``seed``; features standardized with the training set's
    statistics only, so nothing about the validation set leaks into training."""
    train_x, val_x, train_y, val_y = train_test_split(
        x, y, test_size=VAL_FRACTION, stratify=y, random_state=seed % 2**32
    )
    if standardize:
        mean = train_x.mean(axis=0)
        std = train_x.std(axis=0)
        std[std == 0] = 1.0  # constant features (digits' blank border pixels) stay 0
        train_x = (train_x - mean) / std
        val_x = (val_x - mean) / std
    return Dataset(
        train_x=torch.as_tensor(train_x, dtype=torch.float32),
        train_y=torch.as_tensor(train_y, dtype=torch.int64),
        val_x=torch.as_tensor(val_x, dtype=torch.float32),
        val_y=torch.as_tensor(val_y, dtype=torch.int64),
    )
