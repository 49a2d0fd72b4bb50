"""Data for the three scenarios: the reference's real sets, and offline stand-ins built from bundled digits.

Every loader returns a :class:`ScenarioData` whose ``source`` says which data
were used (real or a stand-in) so reports can state it.

- faces: Olivetti (real; ``.mat`` file or scikit-learn's fetcher), people as classes;
  stand-in: digit classes as identities, upsampled to 16x16.
- speakers: Spiking Speech Commands by speaker (real; HDF5, needs ``h5py``), or the Free
  Spoken Digit Dataset encoded as spike counts (real); stand-in: digits as Bernoulli spike trains.
- generation: scikit-learn's 8x8 digits in [-1, 1] (the stand-in for the reference's canvas10).
"""
from __future__ import annotations

import gzip
import math
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..benchmarks._download import download
from ..benchmarks.faces import load_olivetti
from ..benchmarks.speakers import load_fsdd
from ..data.digits import load_digits_split

SSC_URL = "https://zenkelab.org/datasets/ssc_train.h5.gz"


@dataclass
class ScenarioData:
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    source: str
    class_names: list[str]


def _per_class_split(y: torch.Tensor, test_fraction: float, gen: torch.Generator) -> torch.Tensor:
    """Boolean test mask holding ``round(test_fraction * n_c)`` (at least 1) samples of every class."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction!r}")
    mask = torch.zeros(len(y), dtype=torch.bool)
    for c in torch.unique(y).tolist():  # a handful of classes
        idx = torch.nonzero(y == c).squeeze(1)
        k = max(1, round(test_fraction * len(idx)))
        mask[idx[torch.randperm(len(idx), generator=gen)[:k]]] = True
    return mask


def augment_images(x: torch.Tensor, copies: int, gen: torch.Generator, max_rotation_deg: float = 30.0,
                   scale_range: tuple[float, float] = (0.8, 1.2)) -> torch.Tensor:
    """Each image plus ``copies - 1`` random rotations, horizontal flips and zooms (the reference's x30).

    Vectorised: one affine grid per augmented copy, sampled in a single call.
    ``x`` is ``[N, H, W]``; returns ``[N * copies, H, W]`` ordered copy-major.
    """
    if copies < 1:
        raise ValueError(f"augmentation copies must be >= 1, got {copies!r}")
    n = x.shape[0]
    if copies == 1:
        return x.clone()
    m = n * (copies - 1)
    ang = (torch.rand(m, generator=gen) * 2 - 1) * math.radians(max_rotation_deg)
    zoom = scale_range[0] + torch.rand(m, generator=gen) * (scale_range[1] - scale_range[0])
    flip = torch.where(torch.rand(m, generator=gen) < 0.5, -1.0, 1.0)
    cos, sin = torch.cos(ang) / zoom, torch.sin(ang) / zoom
    theta = torch.stack([torch.stack([cos * flip, -sin, torch.zeros(m)], 1),
                         torch.stack([sin * flip, cos, torch.zeros(m)], 1)], 1)
    src = x.repeat(copies - 1, 1, 1).unsqueeze(1)
    grid = F.affine_grid(theta, list(src.shape), align_corners=False)
    out = F.grid_sample(src, grid, padding_mode="border", align_corners=False).squeeze(1)
    return torch.cat([x, out])


def face_data(people: int = 6, *, mat_path: str | Path | None = None, data_home: str | Path | None = None,
              standin: bool = False, augment: int = 30, image_size: int = 16, test_per_person: int = 2,
              seed: int = 10) -> ScenarioData:
    """Face identities as classes ``0..people-1``, ``[N, image_size, image_size]`` in [0, 1].

    Real: Olivetti (10 images per person). The split is made on the original
    images (``test_per_person`` held out per person) before augmentation, so no
    augmented copy of a test image is trained on; both sides are augmented
    ``augment`` times (rotation +-30 deg, flip, zoom 0.8-1.2, as the reference).
    Stand-in (``standin=True``): digits classes as identities, no augmentation.
    """
    gen = torch.Generator().manual_seed(seed)
    if standin:
        d = load_digits_split(seed=seed, flatten=False)
        keep_tr, keep_te = d.y_train < people, d.y_test < people
        if people > 10:
            raise ValueError(f"the digits stand-in has 10 identities, asked for people={people}")

        def up(x):
            return F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False).squeeze(1)

        return ScenarioData(up(d.x_train[keep_tr]), d.y_train[keep_tr], up(d.x_test[keep_te]), d.y_test[keep_te],
                            "stand-in: scikit-learn digits 0-%d as identities, upsampled to %dx%d" %
                            (people - 1, image_size, image_size), [f"digit {i}" for i in range(people)])
    x, y = load_olivetti(mat_path=mat_path, data_home=data_home, download=mat_path is None)
    if not 2 <= people <= int(y.max()) + 1:
        raise ValueError(f"people must lie in 2..{int(y.max()) + 1}, got {people!r}")
    keep = y < people
    x, y = x[keep], y[keep]
    if not 1 <= test_per_person < 10:
        raise ValueError(f"test_per_person must lie in 1..9, got {test_per_person!r}")
    test = _per_class_split(y, test_per_person / 10, gen)
    parts = []
    for sel in (~test, test):
        xa = augment_images(x[sel], augment, gen)
        xa = F.interpolate(xa.unsqueeze(1), size=(image_size, image_size), mode="bilinear",
                           align_corners=False).squeeze(1)
        parts += [xa, y[sel].repeat(augment)]
    src = f"real: Olivetti faces, people 0-{people - 1}, {10 - test_per_person}/{test_per_person} originals " \
          f"per person train/test, each augmented x{augment}, {image_size}x{image_size}"
    return ScenarioData(*parts, source=src, class_names=[f"person {i}" for i in range(people)])


# ------------------------------------------------------------------ speakers
def spike_counts_from_features(feats: torch.Tensor, max_count: int = 4) -> torch.Tensor:
    """Level-crossing encoding of ``[N, channels, T]`` features into spike counts ``[N, T, channels]``.

    A channel fires one spike per half standard deviation above its own mean
    (up to ``max_count``), so quiet channels are silent and cost no analogue MACs.
    """
    mu = feats.mean(dim=(0, 2), keepdim=True)
    sd = feats.std(dim=(0, 2), keepdim=True) + 1e-8
    counts = torch.floor((feats - mu) / (0.5 * sd)).clamp(0, max_count)
    return counts.transpose(1, 2).contiguous()


def bin_spike_events(times_s: np.ndarray, units: np.ndarray, sample: np.ndarray, n_samples: int,
                     channels: int = 700, channels_per_bin: int = 5, steps: int = 10,
                     duration_s: float = 1.4) -> torch.Tensor:
    """Events (time, unit, sample index) -> counts ``[n_samples, steps, channels // channels_per_bin]``.

    The reference's SSC encoding: 700 cochlear channels summed in groups of 5
    (140 inputs), time binned into 10 steps over 1.4 s. Vectorised with one
    ``np.add.at`` over all events.
    """
    edges = np.linspace(0.0, duration_s, steps)
    t_bin = np.clip(np.digitize(times_s, edges) - 1, 0, steps - 1)
    c_bin = np.clip(units.astype(np.int64) // channels_per_bin, 0, channels // channels_per_bin - 1)
    out = np.zeros((n_samples, steps, channels // channels_per_bin), dtype=np.float32)
    np.add.at(out, (sample, t_bin, c_bin), 1.0)
    return torch.from_numpy(out)


def load_ssc_by_speaker(h5_path: str | Path | None = None, data_home: str | Path | None = None, top_n: int = 7,
                        download_ok: bool = True) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """Spiking Speech Commands (``ssc_train.h5``) relabelled by speaker: the ``top_n`` most frequent speakers.

    Returns counts ``[N, 10, 140]``, class ids (0 = most frequent speaker) and the
    original speaker ids. Needs ``h5py`` (``pip install avalanche-rm[speech]``).
    """
    try:
        import h5py
    except ImportError as e:
        raise RuntimeError("reading SSC needs h5py: pip install 'avalanche-rm[speech]'") from e
    if h5_path is None:
        if data_home is None:
            raise ValueError("give h5_path= (ssc_train.h5) or data_home= (where to download it)")
        h5_path = Path(data_home) / "ssc_train.h5"
        if not h5_path.exists():
            if not download_ok:
                raise RuntimeError(f"{h5_path} is absent and download_ok=False")
            gz = download(SSC_URL, Path(data_home) / "ssc_train.h5.gz", timeout_s=60.0, what="Spiking Speech Commands")
            with gzip.open(gz, "rb") as src, open(h5_path, "wb") as dst:
                shutil.copyfileobj(src, dst)
    h5_path = Path(h5_path)
    if not h5_path.is_file():
        raise FileNotFoundError(f"SSC file not found: {h5_path}")
    with h5py.File(h5_path, "r") as f:
        speakers = np.asarray(f["extra/speaker"]).astype(np.int64)
        ids, counts = np.unique(speakers, return_counts=True)
        order = ids[np.argsort(-counts, kind="stable")][:top_n]
        chosen = np.nonzero(np.isin(speakers, order))[0]
        times = [np.asarray(f["spikes/times"][i]) for i in chosen]
        units = [np.asarray(f["spikes/units"][i]) for i in chosen]
    lens = np.array([len(t) for t in times])
    sample = np.repeat(np.arange(len(chosen)), lens)
    x = bin_spike_events(np.concatenate(times), np.concatenate(units), sample, len(chosen))
    rank = {int(s): i for i, s in enumerate(order)}
    y = torch.tensor([rank[int(s)] for s in speakers[chosen]])
    return x, y, [int(s) for s in order]


def speaker_data(*, fsdd_root: str | Path | None = None, ssc_h5: str | Path | None = None, standin: bool = False,
                 speakers: int = 6, steps: int = 10, channels: int = 140, test_fraction: float = 4 / 21,
                 seed: int = 42) -> ScenarioData:
    """Speakers as classes, spike counts ``[N, steps, inputs]`` (0 = first speaker).

    Real: SSC via ``ssc_h5`` (the reference's corpus) or FSDD via ``fsdd_root``
    (log spectrogram with ``channels`` bands x ``steps`` frames, level-crossing
    encoded). Stand-in: digit classes as speakers, each pixel a Bernoulli spike
    train with rate = intensity (64 inputs). Per-speaker split as the reference (17/21 train).
    """
    gen = torch.Generator().manual_seed(seed)
    if standin:
        d = load_digits_split(seed=seed)
        x = torch.cat([d.x_train, d.x_test])
        y = torch.cat([d.y_train, d.y_test])
        keep = y < speakers
        x, y = x[keep], y[keep]
        spikes = (torch.rand(x.shape[0], steps, x.shape[1], generator=gen) < x.unsqueeze(1)).float()
        src = f"stand-in: scikit-learn digits 0-{speakers - 1} as speakers, pixels as Bernoulli spike trains " \
              f"({steps} steps x 64 inputs)"
        names = [f"digit {i}" for i in range(speakers)]
    elif ssc_h5 is not None:
        spikes, y, ids = load_ssc_by_speaker(ssc_h5, top_n=speakers)
        src = f"real: Spiking Speech Commands, top-{speakers} speakers, 140 inputs x 10 steps"
        names = [f"speaker {s}" for s in ids]
    elif fsdd_root is not None:
        feats, y, names, _ = load_fsdd(root=fsdd_root, bands=channels, frames=steps)
        keep = y < speakers
        spikes = spike_counts_from_features(feats[keep])
        y = y[keep]
        names = names[:speakers]
        src = f"real: Free Spoken Digit Dataset, speakers {names}, {channels}-band log spectrogram x {steps} " \
              "frames, level-crossing spike counts"
    else:
        raise ValueError("give fsdd_root= or ssc_h5= for real data, or standin=True")
    test = _per_class_split(y, test_fraction, gen)
    return ScenarioData(spikes[~test], y[~test], spikes[test], y[test], src, list(names))


# ------------------------------------------------------------------ generation
def generation_data(seed: int = 0) -> ScenarioData:
    """scikit-learn's 8x8 digits flattened to 64 values in [-1, 1] (stand-in for the reference's canvas10)."""
    d = load_digits_split(seed=seed)
    return ScenarioData(d.x_train * 2 - 1, d.y_train, d.x_test * 2 - 1, d.y_test,
                        "stand-in: scikit-learn 8x8 digits in [-1, 1] (classes are digits)",
                        [f"digit {i}" for i in range(10)])
