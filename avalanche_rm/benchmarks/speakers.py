"""Speaker-identity streams on the Free Spoken Digit Dataset (FSDD; 6 speakers, 8 kHz WAV).

Files are ``{digit}_{speaker}_{index}.wav``; the class is the speaker. Features
are log-power spectrograms pooled to ``bands x frames``. Licence of the data:
CC BY-SA 4.0 (Zohar Jackson et al.).
"""
from __future__ import annotations

import re
import zipfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from avalanche.benchmarks import nc_benchmark

from ._download import download as _download
from .digits import tensor_dataset

FSDD_URL = "https://github.com/Jakobovski/free-spoken-digit-dataset/archive/refs/tags/v1.0.10.zip"
_NAME = re.compile(r"^(\d)_([a-z]+)_(\d+)\.wav$")


def fetch_fsdd(data_home: str | Path, timeout_s: float = 30.0) -> Path:
    """Download and unpack FSDD into ``data_home``; returns the recordings folder."""
    data_home = Path(data_home)
    rec = next(iter(data_home.glob("free-spoken-digit-dataset-*/recordings")), None)
    if rec is not None:
        return rec
    archive = _download(FSDD_URL, data_home / "fsdd.zip", timeout_s=timeout_s, what="the FSDD corpus")
    with zipfile.ZipFile(archive) as z:
        z.extractall(data_home)
    return next(iter(data_home.glob("free-spoken-digit-dataset-*/recordings")))


def log_spectrogram(wave: np.ndarray, bands: int = 32, frames: int = 32, n_samples: int = 8000) -> torch.Tensor:
    """Log-power STFT of a 1 s (padded/cropped) clip, average-pooled to ``[bands, frames]``."""
    w = torch.zeros(n_samples)
    x = torch.from_numpy(wave.astype(np.float32))
    if x.abs().max() > 0:
        x = x / x.abs().max()
    w[: min(n_samples, len(x))] = x[:n_samples]
    spec = torch.stft(w, n_fft=256, hop_length=64, window=torch.hann_window(256), return_complex=True).abs().pow(2)
    spec = torch.log1p(spec * 100.0)
    return F.adaptive_avg_pool2d(spec.unsqueeze(0), (bands, frames)).squeeze(0)


def load_fsdd(root: str | Path | None = None, data_home: str | Path | None = None, download: bool = True,
              bands: int = 32, frames: int = 32) -> tuple[torch.Tensor, torch.Tensor, list[str], torch.Tensor]:
    """Features ``[N, bands, frames]``, speaker ids, speaker names (sorted) and spoken digits."""
    from scipy.io import wavfile

    if root is None:
        if data_home is None:
            raise ValueError("give root= (a recordings folder) or data_home= (where to download FSDD)")
        if not download:
            hit = next(iter(Path(data_home).glob("free-spoken-digit-dataset-*/recordings")), None)
            if hit is None:
                raise RuntimeError(f"FSDD not found under data_home={str(data_home)!r} and download=False")
            root = hit
        else:
            root = fetch_fsdd(data_home)
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"FSDD recordings folder not found: {root}")
    files = sorted(p for p in root.iterdir() if _NAME.match(p.name))
    if not files:
        raise ValueError(f"{root} holds no files named {{digit}}_{{speaker}}_{{index}}.wav")
    names = sorted({_NAME.match(p.name).group(2) for p in files})
    feats, spk, digit = [], [], []
    for p in files:
        m = _NAME.match(p.name)
        _, wave = wavfile.read(p)
        feats.append(log_spectrogram(np.asarray(wave, dtype=np.float32), bands, frames))
        spk.append(names.index(m.group(2)))
        digit.append(int(m.group(1)))
    x = torch.stack(feats)
    x = (x - x.mean()) / (x.std() + 1e-8)
    return x, torch.tensor(spk), names, torch.tensor(digit)


def split_speakers(n_experiences: int = 3, *, root: str | Path | None = None, data_home: str | Path | None = None,
                   download: bool = True, seed: int = 0, test_fraction: float = 0.2, flatten: bool = True,
                   task_labels: bool = False):
    """Class-incremental stream whose classes are speakers."""
    from sklearn.model_selection import train_test_split

    x, y, names, _ = load_fsdd(root=root, data_home=data_home, download=download)
    if flatten:
        x = x.flatten(1)
    idx = np.arange(len(y))
    tr, te = train_test_split(idx, test_size=test_fraction, random_state=seed, stratify=y.numpy())
    tr, te = torch.from_numpy(tr), torch.from_numpy(te)
    return nc_benchmark(tensor_dataset(x[tr], y[tr]), tensor_dataset(x[te], y[te]), n_experiences,
                        task_labels=task_labels, seed=seed)
