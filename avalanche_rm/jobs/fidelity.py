"""How close a programmed chip computes to its software network: ``avalanche-rm fidelity``.

For trained networks (an MLP and a small CNN on the digits, the face
MLP-Mixer on Olivetti) each preset programs the weights with several seeds,
calibrates the ADCs on training data and measures test accuracy with read
noise on, against the software network. A 256x256 layer on ReLU inputs gives
the relative output error of the periphery (DAC, read noise, ADC) against the
exact product with the programmed weights, and of the whole chip against
software.
"""
from __future__ import annotations

import statistics

import torch
from torch import nn
from tqdm.auto import tqdm

from ..report import make_report
from ..data import load_digits_split
from ..hardware import get_preset
from ..nn import convert_to_hybrid
from ..scenarios.common import Recipe, fit
from ..scenarios.data import face_data
from ..scenarios.models import MLPMixer
from ..training import accuracy, ce_loss, make_mlp, train_classifier
from ..validation import check_int

PRESETS = ("paper-180nm", "rram-generic", "pcm-like")
#: accuracy a programmed chip may lose against software (points), per preset
TOLERANCE_PTS = {"paper-180nm": 1.0, "rram-generic": 2.0, "pcm-like": 2.0}


def small_cnn(classes: int = 10) -> nn.Module:
    """A small CNN for 8x8 digit images."""
    return nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Flatten(), nn.Linear(32 * 4 * 4, classes))


def _networks(seed: int, faces_path, quick: bool):
    """(name, trained software net, train x, test x, test y, data label)."""
    torch.manual_seed(seed)
    flat = load_digits_split(seed=seed)
    img = load_digits_split(seed=seed, flatten=False)
    ep = 8 if quick else 40
    mlp = make_mlp()
    train_classifier(mlp, flat.x_train, flat.y_train, mlp.parameters(), epochs=ep, seed=seed, progress=False)
    cnn = small_cnn()
    train_classifier(cnn, img.x_train, img.y_train, cnn.parameters(), epochs=ep, lr=3e-3, seed=seed,
                     progress=False)
    nets = [("MLP 64-128-64-10, digits", mlp, flat.x_train, flat.x_test, flat.y_test, flat.source),
            ("CNN 16-32 conv + fc, digits", cnn, img.x_train, img.x_test, img.y_test, img.source)]
    faces = face_data(6, mat_path=faces_path, standin=faces_path is None, seed=seed,
                      augment=4 if quick else 30)
    mixer = MLPMixer(n_classes=6, image_size=faces.x_train.shape[-1])
    fit(mixer, mixer.parameters(), faces.x_train, faces.y_train, ce_loss, Recipe(30 if quick else 300, 0.01), seed,
        progress=False)
    nets.append(("MLP-Mixer (reference face model), faces", mixer, faces.x_train, faces.x_test, faces.y_test,
                 faces.source))
    return nets


def layer_error(preset: str, seed: int = 0, size: int = 256, adc_range: str = "calibrated") -> dict:
    """Relative output error of one ``size`` x ``size`` layer on ReLU inputs (ADC calibrated on other inputs)."""
    torch.manual_seed(seed)
    lin = nn.Linear(size, size)
    gen = torch.Generator().manual_seed(seed)
    x = torch.relu(torch.randn(1024, size, generator=gen))
    m = convert_to_hybrid(lin, get_preset(preset, crossbar={"adc_range": adc_range}))
    m.program(seed=seed, calibration_data=x[:512])
    xt = x[512:]
    with torch.no_grad():
        y = m(xt)
        exact = nn.functional.linear(xt, m.hybrid_layers()[0].effective_weight(), lin.bias)
        soft = lin(xt)

    def rel(a, b):
        return float((a - b).norm() / b.norm())

    return {"preset": preset, "periphery error (vs programmed weights)": rel(y, exact),
            "chip error (vs software)": rel(y, soft), "programming error (weights only)": rel(exact, soft)}


def run_fidelity(seeds: int = 5, faces_path=None, seed: int = 0, quick: bool = False, adc_range: str = "calibrated",
                 progress: bool = True) -> dict:
    """Accuracy of programmed chips vs software, per preset (mean over ``seeds`` programming seeds).

    ``adc_range="worst_case"`` repeats it with never-clipping ADC ranges (the old rule) for comparison.
    """
    check_int(seeds, "seeds", 1)
    if adc_range not in ("calibrated", "worst_case"):
        raise ValueError(f"adc_range must be 'calibrated' or 'worst_case', got {adc_range!r}")
    rows = []
    nets = _networks(seed, faces_path, quick)
    for name, net, x_cal, xt, yt, source in tqdm(nets, desc="fidelity: networks", disable=not progress):
        sw = accuracy(net, xt, yt)
        for preset in PRESETS:
            accs = []
            for s in range(seeds):
                chip = convert_to_hybrid(net, get_preset(preset, crossbar={"adc_range": adc_range}))
                chip.program(seed=seed + s, calibration_data=x_cal[:512])
                accs.append(accuracy(chip, xt, yt))
            mean = statistics.fmean(accs)
            rows.append({"network": name, "data": source.split(";")[0], "preset": preset,
                         "software %": 100 * sw, "chip mean %": 100 * mean, "chip min %": 100 * min(accs),
                         "loss (points)": 100 * (sw - mean), "tolerance (points)": TOLERANCE_PTS[preset],
                         "seeds": seeds})
    layers = [layer_error(p, seed, adc_range=adc_range) for p in PRESETS]
    hw = get_preset("paper-180nm")
    return make_report("fidelity", preset=", ".join(PRESETS), preset_source=hw.source, seed=seed,
                       data="; ".join(sorted({r["data"] for r in rows})), adc_range=adc_range,
                       tables={"programmed-chip accuracy": rows, "256x256 layer, ReLU inputs": layers})
