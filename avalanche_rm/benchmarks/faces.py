"""Face-identity streams on the Olivetti (AT&T) faces: 40 people x 10 images of 64x64.

Loads from the MATLAB file ``olivettifaces.mat`` (``mat_path``) or through
scikit-learn's fetcher (``data_home``, downloading when allowed). Each class is
one person, so a forget request for an identity is a class-level request.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from avalanche.benchmarks import nc_benchmark

from ._download import socket_timeout
from .digits import PublicPrivateSplit, assign_owners, tensor_dataset


def load_olivetti(mat_path: str | Path | None = None, data_home: str | Path | None = None, download: bool = True,
                  timeout_s: float = 30.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Images ``[400, 64, 64]`` in [0, 1] and person ids ``[400]`` (image i is person i // 10)."""
    if mat_path is not None:
        mat_path = Path(mat_path)
        if not mat_path.is_file():
            raise FileNotFoundError(f"Olivetti .mat file not found: {mat_path}")
        from scipy.io import loadmat

        faces = np.asarray(loadmat(str(mat_path))["faces"], dtype=np.float32)  # [4096, N], column-major images
        if faces.shape[0] != 4096:
            raise ValueError(f"{mat_path}: expected 'faces' of shape [4096, N], got {faces.shape}")
        imgs = faces.T.reshape(-1, 64, 64).transpose(0, 2, 1) / 255.0
        y = np.arange(imgs.shape[0]) // 10
        return torch.from_numpy(np.ascontiguousarray(imgs)), torch.from_numpy(y).long()
    from sklearn.datasets import fetch_olivetti_faces

    try:
        with socket_timeout(timeout_s):
            bunch = fetch_olivetti_faces(data_home=None if data_home is None else str(data_home),
                                         download_if_missing=download)
    except OSError as e:
        raise RuntimeError(
            f"Olivetti faces are not cached in data_home={data_home!r} and could not be downloaded ({e}). "
            "Pass mat_path= to a local olivettifaces.mat, or run once with network access."
        ) from e
    return torch.from_numpy(bunch.images.astype(np.float32)), torch.from_numpy(bunch.target).long()


def load_lfw(data_home: str | Path | None = None, min_faces_per_person: int = 20, download: bool = True,
             timeout_s: float = 60.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Labeled Faces in the Wild via scikit-learn's ``fetch_lfw_people``: grey images in [0, 1], person ids."""
    from sklearn.datasets import fetch_lfw_people

    try:
        with socket_timeout(timeout_s):
            bunch = fetch_lfw_people(data_home=None if data_home is None else str(data_home),
                                     min_faces_per_person=min_faces_per_person, download_if_missing=download)
    except OSError as e:
        raise RuntimeError(f"LFW is not cached in data_home={data_home!r} and could not be downloaded ({e}); "
                           "run once with network access or use dataset='olivetti' with a local mat_path") from e
    imgs = bunch.images.astype(np.float32)
    imgs = imgs / max(float(imgs.max()), 1.0)
    return torch.from_numpy(imgs), torch.from_numpy(bunch.target).long()


def split_faces(n_experiences: int = 5, *, identities: int = 10, image_size: int = 16, seed: int = 0,
                test_per_person: int = 3, mat_path: str | Path | None = None, data_home: str | Path | None = None,
                download: bool = True, flatten: bool = False, task_labels: bool = False, dataset: str = "olivetti",
                n_owners: int | None = None):
    """Class-incremental stream over the first ``identities`` people, images resized to ``image_size``.

    ``dataset`` is ``"olivetti"`` (10 images per person) or ``"lfw"`` (people
    with at least 20 images). ``test_per_person`` images of each person go to
    the test stream. Training samples carry ``sample_ids`` and ``owners`` (by
    default each person owns their own images).
    """
    if dataset == "olivetti":
        x, y = load_olivetti(mat_path=mat_path, data_home=data_home, download=download)
    elif dataset == "lfw":
        x, y = load_lfw(data_home=data_home, download=download)
    else:
        raise ValueError(f"dataset must be 'olivetti' or 'lfw', got {dataset!r}")
    n_people = int(y.max()) + 1
    if not 2 <= identities <= n_people:
        raise ValueError(f"identities must lie in 2..{n_people}, got {identities!r}")
    if not isinstance(test_per_person, int) or test_per_person < 1:
        raise ValueError(f"test_per_person must be a positive int, got {test_per_person!r}")
    keep = y < identities
    x, y = x[keep], y[keep]
    x = F.interpolate(x.unsqueeze(1), size=(image_size, image_size), mode="bilinear", align_corners=False)
    if flatten:
        x = x.flatten(1)
    gen = torch.Generator().manual_seed(seed)
    test_mask = torch.zeros(len(y), dtype=torch.bool)
    for c in range(identities):
        idx = torch.nonzero(y == c).squeeze(1)
        test_mask[idx[torch.randperm(len(idx), generator=gen)[:test_per_person]]] = True
    ids = torch.arange(len(y))
    owners = y.clone() if n_owners is None else assign_owners(len(y), n_owners, seed)
    train = tensor_dataset(x[~test_mask], y[~test_mask], sample_ids=ids[~test_mask], owners=owners[~test_mask])
    test = tensor_dataset(x[test_mask], y[test_mask])
    return nc_benchmark(train, test, n_experiences, task_labels=task_labels, seed=seed)


def public_private_faces(n_experiences: int = 1, *, public_people: Sequence[int] = range(20, 40),
                         private_people: Sequence[int] = range(20), image_size: int = 16, test_per_person: int = 5,
                         seed: int = 0, flatten: bool = False, mat_path: str | Path | None = None,
                         data_home: str | Path | None = None, download: bool = True) -> PublicPrivateSplit:
    """Olivetti faces split by person: the public people's images (all of them) pre-train the analogue base;
    the private people form a class-incremental stream (each person owns their images), with
    ``test_per_person`` of each private person's images held out for testing.
    """
    pub_set, priv_set = set(int(p) for p in public_people), set(int(p) for p in private_people)
    if not pub_set or not priv_set or pub_set & priv_set:
        raise ValueError(f"public_people and private_people must be non-empty and disjoint, got "
                         f"{sorted(pub_set)} and {sorted(priv_set)}")
    x, y = load_olivetti(mat_path=mat_path, data_home=data_home, download=download)
    n_people = int(y.max()) + 1
    bad = [p for p in pub_set | priv_set if not 0 <= p < n_people]
    if bad:
        raise ValueError(f"people must lie in 0..{n_people - 1}, got {sorted(bad)}")
    if isinstance(test_per_person, bool) or not isinstance(test_per_person, int) or not 1 <= test_per_person < 10:
        raise ValueError(f"test_per_person must be an int in 1..9, got {test_per_person!r}")
    x = F.interpolate(x.unsqueeze(1), size=(image_size, image_size), mode="bilinear", align_corners=False)
    if flatten:
        x = x.flatten(1)
    pub = torch.isin(y, torch.tensor(sorted(pub_set)))
    priv = torch.isin(y, torch.tensor(sorted(priv_set)))
    gen = torch.Generator().manual_seed(seed)
    test = torch.zeros(len(y), dtype=torch.bool)
    for c in sorted(priv_set):
        idx = torch.nonzero(y == c).squeeze(1)
        test[idx[torch.randperm(len(idx), generator=gen)[:test_per_person]]] = True
    tr = priv & ~test
    ids = torch.arange(len(y))
    bm = nc_benchmark(tensor_dataset(x[tr], y[tr], sample_ids=ids[tr], owners=y[tr]),
                      tensor_dataset(x[test], y[test]), n_experiences, task_labels=False, seed=seed)
    src = (f"Olivetti faces (real{', ' + str(mat_path) if mat_path else ''}), {image_size}x{image_size}; "
           f"{len(pub_set)} public people ({int(pub.sum())} images), {len(priv_set)} private people "
           f"({int(tr.sum())} train / {int(test.sum())} test images), each person owns their images")
    return PublicPrivateSplit(x[pub], y[pub], bm, x[test], y[test], src)
