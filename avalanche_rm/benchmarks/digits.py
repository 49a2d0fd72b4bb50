"""Split streams on scikit-learn's bundled digits (real data, no download)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from avalanche.benchmarks import nc_benchmark
from avalanche.benchmarks.utils import _make_taskaware_tensor_classification_dataset

from ..data import assign_owners, load_digits_split


def tensor_dataset(x: torch.Tensor, y: torch.Tensor, task_label: int = 0, sample_ids: torch.Tensor | None = None,
                   owners: torch.Tensor | None = None):
    """An Avalanche classification dataset with task labels (LwF and task-aware loaders need them).

    ``sample_ids`` and ``owners`` become data attributes (``ds.sample_ids``,
    ``ds.owners``) that survive Avalanche's subsets and concatenations, so
    forget requests can name samples and owners.
    """
    ds = _make_taskaware_tensor_classification_dataset(x, y, task_labels=task_label, targets=y)
    if sample_ids is not None:
        ds = ds.update_data_attribute("sample_ids", [int(i) for i in sample_ids])
    if owners is not None:
        ds = ds.update_data_attribute("owners", [int(o) for o in owners])
    return ds


def split_digits(n_experiences: int = 5, *, seed: int = 0, task_labels: bool = False,
                 fixed_class_order: Sequence[int] | None = None, test_fraction: float = 0.25, flatten: bool = True,
                 class_ids_from_zero_in_each_exp: bool = False, n_owners: int = 10):
    """Class-incremental (or task-incremental with ``task_labels=True``) digits stream.

    An ordinary Avalanche ``NCScenario``: ``train_stream``, ``test_stream``,
    ``classes_in_experience``... ``n_experiences`` must divide the 10 classes
    unless ``fixed_class_order`` says otherwise. Every training sample carries a
    stable ``sample_ids`` value (its index in the training split) and one of
    ``n_owners`` ``owners``.
    """
    if isinstance(n_experiences, bool) or not isinstance(n_experiences, int) or not 1 <= n_experiences <= 10:
        raise ValueError(f"n_experiences must be an int in 1..10, got {n_experiences!r}")
    data = load_digits_split(test_fraction=test_fraction, seed=seed, flatten=flatten)
    n = len(data.y_train)
    train = tensor_dataset(data.x_train, data.y_train, sample_ids=torch.arange(n),
                           owners=assign_owners(n, n_owners, seed))
    test = tensor_dataset(data.x_test, data.y_test)
    return nc_benchmark(train, test, n_experiences, task_labels=task_labels, seed=seed,
                        fixed_class_order=fixed_class_order,
                        class_ids_from_zero_in_each_exp=class_ids_from_zero_in_each_exp)


@dataclass
class PublicPrivateSplit:
    """Public data for pre-training the analogue base; a private stream that may later be forgotten."""

    public_x: torch.Tensor
    public_y: torch.Tensor
    benchmark: object
    test_x: torch.Tensor
    test_y: torch.Tensor
    source: str


def public_private_digits(n_experiences: int = 1, *, public_fraction: float = 0.3, n_owners: int = 5, seed: int = 0,
                          test_fraction: float = 0.25, flatten: bool = True, fixed_class_order=None,
                          public_classes: Sequence[int] | None = None) -> PublicPrivateSplit:
    """Digits split into a public pre-training set and a private, owner-labelled stream.

    The hybrid design's rule: only public data are programmed into the
    analogue base; private data (which owners may ask to forget) reach the
    digital adapters only. Private samples keep ids from the training split.
    """
    if not 0.0 < public_fraction < 1.0:
        raise ValueError(f"public_fraction must lie in (0, 1), got {public_fraction!r}")
    data = load_digits_split(test_fraction=test_fraction, seed=seed, flatten=flatten)
    n = len(data.y_train)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed + 1))
    n_pub = int(round(public_fraction * n))
    pub, priv = perm[:n_pub].sort().values, perm[n_pub:].sort().values
    if public_classes is not None:
        allowed = torch.isin(data.y_train[pub], torch.tensor(list(public_classes)))
        priv = torch.cat([priv, pub[~allowed]]).sort().values
        pub = pub[allowed]
    owners = assign_owners(n, n_owners, seed)
    train = tensor_dataset(data.x_train[priv], data.y_train[priv], sample_ids=priv, owners=owners[priv])
    test = tensor_dataset(data.x_test, data.y_test)
    bm = nc_benchmark(train, test, n_experiences, task_labels=False, seed=seed, fixed_class_order=fixed_class_order)
    return PublicPrivateSplit(data.x_train[pub], data.y_train[pub], bm, data.x_test, data.y_test,
                              data.source + f"; {len(pub)} public / {len(priv)} private samples, {n_owners} owners")
