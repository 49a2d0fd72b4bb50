import os

import numpy as np
import pytest
import torch

from avalanche_rm.benchmarks import load_fsdd, load_lfw, load_olivetti, split_digits, split_faces, split_speakers


def test_split_digits_is_an_avalanche_benchmark():
    bm = split_digits(5, seed=0)
    assert len(bm.train_stream) == 5 and len(bm.test_stream) == 5
    seen = set()
    for exp in bm.train_stream:
        seen |= set(exp.classes_in_this_experience)
    assert seen == set(range(10))


def _fake_mat(path, people=4):
    from scipy.io import savemat

    rng = np.random.default_rng(0)
    faces = rng.integers(0, 243, size=(4096, people * 10)).astype(np.uint8)
    savemat(str(path), {"faces": faces})


def test_faces_loader_on_generated_mat(tmp_path):
    _fake_mat(tmp_path / "olivettifaces.mat")
    x, y = load_olivetti(mat_path=tmp_path / "olivettifaces.mat")
    assert x.shape == (40, 64, 64) and int(y.max()) == 3 and 0 <= float(x.min()) and float(x.max()) <= 1
    bm = split_faces(2, identities=4, image_size=16, mat_path=tmp_path / "olivettifaces.mat")
    assert bm.train_stream[0].dataset[0][0].shape == (1, 16, 16)


def test_faces_offline_error_is_clear(tmp_path):
    with pytest.raises(RuntimeError, match="mat_path"):
        load_olivetti(data_home=tmp_path, download=False)
    with pytest.raises(FileNotFoundError):
        load_olivetti(mat_path=tmp_path / "missing.mat")
    with pytest.raises(RuntimeError, match="LFW"):
        load_lfw(data_home=tmp_path, download=False)
    with pytest.raises(ValueError, match="dataset"):
        split_faces(dataset="celebs", mat_path=tmp_path / "missing.mat")


def _fake_fsdd(folder, speakers=("anna", "bob", "carl")):
    from scipy.io import wavfile

    folder.mkdir()
    rng = np.random.default_rng(0)
    for si, s in enumerate(speakers):
        for d in range(2):
            for i in range(5):
                t = np.arange(4000) / 8000
                wave = np.sin(2 * np.pi * (200 + 150 * si) * t) + 0.1 * rng.standard_normal(4000)
                wavfile.write(str(folder / f"{d}_{s}_{i}.wav"), 8000, (wave * 3000).astype(np.int16))


def test_speaker_loader_on_generated_wavs(tmp_path):
    _fake_fsdd(tmp_path / "recordings")
    x, y, names, digits = load_fsdd(root=tmp_path / "recordings")
    assert names == ["anna", "bob", "carl"] and x.shape == (30, 32, 32) and set(y.tolist()) == {0, 1, 2}
    bm = split_speakers(3, root=tmp_path / "recordings")
    assert len(bm.train_stream) == 3


def test_speaker_offline_error_is_clear(tmp_path):
    with pytest.raises(RuntimeError, match="download=False"):
        load_fsdd(data_home=tmp_path, download=False)


def test_real_faces_and_speakers(shared_data):
    x, y = load_olivetti(mat_path=os.path.join(shared_data, "olivettifaces.mat"))
    assert x.shape == (400, 64, 64) and int(y.max()) == 39
    bm = split_faces(5, identities=10, mat_path=os.path.join(shared_data, "olivettifaces.mat"))
    assert sum(len(e.dataset) for e in bm.train_stream) == 70
    xs, ys, names, _ = load_fsdd(root=os.path.join(shared_data, "fsdd", "recordings"))
    assert len(names) == 6 and len(ys) == 3000 and torch.isfinite(xs).all()
