"""Split streams on scikit-learn's bundled digits (real data, no download)."""
from __future__ import annotations

from typing import Sequence

import torch
from avalanche.benchmarks import nc_benchmark
from avalanche.benchmarks.utils import _make_taskaware_tensor_classification_dataset

from ..data import load_digits_split


def tensor_dataset(x: torch.Tensor, y: torch.Tensor, task_label: int = 0):
    """An Avalanche classification dataset with task labels (LwF and task-aware loaders need them)."""
    return _make_taskaware_tensor_classification_dataset(x, y, task_labels=task_label, targets=y)


def split_digits(n_experiences: int = 5, *, seed: int = 0, task_labels: bool = False,
                 fixed_class_order: Sequence[int] | None = None, test_fraction: float = 0.25, flatten: bool = True,
                 class_ids_from_zero_in_each_exp: bool = False):
    """Class-incremental (or task-incremental with ``task_labels=True``) digits stream.

    An ordinary Avalanche ``NCScenario``: ``train_stream``, ``test_stream``,
    ``classes_in_experience``... ``n_experiences`` must divide the 10 classes
    unless ``fixed_class_order`` says otherwise.
    """
    if isinstance(n_experiences, bool) or not isinstance(n_experiences, int) or not 1 <= n_experiences <= 10:
        raise ValueError(f"n_experiences must be an int in 1..10, got {n_experiences!r}")
    data = load_digits_split(test_fraction=test_fraction, seed=seed, flatten=flatten)
    train = tensor_dataset(data.x_train, data.y_train)
    test = tensor_dataset(data.x_test, data.y_test)
    return nc_benchmark(train, test, n_experiences, task_labels=task_labels, seed=seed,
                        fixed_class_order=fixed_class_order,
                        class_ids_from_zero_in_each_exp=class_ids_from_zero_in_each_exp)
