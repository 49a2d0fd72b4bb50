"""Promises the README makes that no other test pins down, each recomputed by hand from the preset's constants."""
import pickle
import struct

import numpy as np
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from avalanche_rm import convert_to_hybrid, get_preset
from avalanche_rm.cli import app
from avalanche_rm.hardware import list_presets

HW = get_preset("paper-180nm")


def programmed(module, hw=HW, seed=0, x=None):
    m = convert_to_hybrid(module, hw)
    m.program(seed=seed, calibration_data=x if x is not None else torch.rand(32, module.in_features))
    return m


def test_dac_adc_and_cell_read_energies_follow_the_readme_formulas():
    torch.manual_seed(0)
    m = programmed(nn.Linear(64, 32))
    layer = m.hybrid_layers()[0]
    x = torch.rand(1, 64)
    x[0, :10] = 0  # zero inputs drive no row
    snap = m.ledger.snapshot()
    m.eval()
    with torch.no_grad():
        m(x)
    got = m.ledger.total_since(snap)
    xb, dev = HW.crossbar, HW.device
    grid = layer.grid
    n_d = 2 ** (xb.dac_bits - 1) - 1
    codes = torch.round(x[0] / x[0].abs().max() * n_d)
    driven = int((codes != 0).sum())
    assert got["dac_conversions"] == driven * grid.n_out_tiles
    # a row DAC drive costs a quarter of an ADC conversion (ISAAC's DAC : ADC power)
    assert got["energy_dac_pj"] == pytest.approx(driven * grid.n_out_tiles * xb.adc_energy_pj / 4)
    conv = grid.n_in_tiles * grid.out_features
    assert got["adc_conversions"] == conv
    assert got["energy_adc_pj"] == pytest.approx(conv * xb.adc_energy_pj)
    # V_r^2 |x|^2 G t over every cell a driven row passes current through (reference column included), for the
    # time its column is connected: settling and its own conversion
    t = dev.read_time_ns + xb.adc_time_ns
    cell = dev.read_voltage_v ** 2 * t * 1e-3 * float(((codes / n_d) ** 2 * layer.array.g_row_sum_us).sum())
    assert got["energy_analog_pj"] == pytest.approx(cell, rel=1e-5)


def test_verify_energy_and_programming_latency_follow_the_readme_formulas():
    torch.manual_seed(0)
    m = convert_to_hybrid(nn.Linear(64, 32), HW)
    rep = m.program(seed=0)
    dev = HW.device
    # a verify read: the cell read and a window compare, two 1-bit decisions at the ADC's figure of merit
    compare = 2 * 2 * HW.crossbar.adc_energy_pj / 2 ** HW.crossbar.adc_bits
    verify = dev.verify_voltage_v ** 2 * dev.verify_time_ns * 1e-3 * rep.verify_g_sum_us + rep.verify_reads * compare
    pulse = dev.pulse_voltage_v ** 2 * (dev.pulse_width_ns * 1e-3 * rep.pulse_g_sum_us
                                        + rep.pulses * dev.wire_capacitance_ff * 1e-3)
    assert rep.verify_energy_pj == pytest.approx(verify) and rep.pulse_energy_pj == pytest.approx(pulse)
    assert rep.energy_pj == pytest.approx(verify + pulse)
    # row groups one after another: a verify read each, then pulse+verify rounds of the slowest cell
    assert rep.latency_ns == pytest.approx(rep.groups * dev.verify_time_ns
                                           + rep.rounds * (dev.pulse_width_ns + dev.verify_time_ns))
    assert rep.groups >= m.cells / HW.crossbar.program_parallel_cells


def test_adapter_factors_are_int8_in_the_forward():
    """The digital unit's adapter factors are INT8 (per-tensor symmetric): the branch's output is the one the
    quantised factors give, not the float one (activations left in float here to isolate the weights)."""
    torch.manual_seed(0)
    m = programmed(nn.Linear(64, 32), hw=get_preset("ideal", digital={"adapter_bits": 8}))
    m.add_adapter("a", rank=4, alpha=4, bias=False)
    layer = m.hybrid_layers()[0]
    with torch.no_grad():
        layer.lora_A["a"].normal_()
        layer.lora_B["a"].normal_()
    a, b = layer.lora_A["a"].detach().reshape(4, -1), layer.lora_B["a"].detach().reshape(32, 4)

    def q8(w):
        step = w.abs().max() / 127
        return torch.round(w / step).clamp(-127, 127) * step

    x = torch.rand(8, 64)
    m.eval()
    with torch.no_grad():
        y = m(x)
        m.set_active_adapters([])
        branch = y - m(x)
    s = layer.scaling["a"]
    want, fp = (x @ q8(a).t()) @ q8(b).t() * s, (x @ a.t()) @ b.t() * s
    assert torch.allclose(branch, want, atol=1e-4)
    assert (branch - fp).abs().max() > 10 * (branch - want).abs().max()


def test_read_noise_reseeds_from_the_chip_seed_after_load_state_dict():
    torch.manual_seed(0)
    m = programmed(nn.Linear(64, 32), seed=7)
    sd = m.state_dict()
    x = torch.rand(4, 64)
    outs = []
    for _ in range(2):
        r = convert_to_hybrid(nn.Linear(64, 32), HW)
        r.load_state_dict(sd)
        r.eval()
        with torch.no_grad():
            outs.append((r(x), r(x)))
    assert torch.equal(outs[0][0], outs[1][0]) and torch.equal(outs[0][1], outs[1][1])  # same stream
    assert not torch.equal(outs[0][0], outs[0][1])  # and it is noise: successive reads differ


def test_presets_command_lists_every_preset_with_its_source():
    res = CliRunner().invoke(app, ["presets"])
    assert res.exit_code == 0
    for name in list_presets():
        assert f"{name}:" in res.output
    assert res.output.count("source:") == len(list_presets())


@pytest.mark.slow
def test_bench_prints_every_section(capsys):
    from avalanche_rm import bench

    bench.main(["--cells", "20000", "--ray-clients", "2", "--no-fused", "--repeats", "1"])  # the fused table: tests/test_fused.py
    out = capsys.readouterr().out
    for section in ("forward time, hybrid / plain torch, eager", "tiled matmul only", "held-out MLP ratio",
                    "write-verify programming throughput", "module memory", "federated round",
                    "software LoRA (no chip; the floor)",
                    "federation of 2 clients on Flower's simulation engine", "ratios hybrid / plain: round time",
                    "calls per training step"):
        assert section in out
    assert "paper-180nm    exact" in out and "paper-180nm    table" in out
    cnn = next(line for line in out.splitlines() if line.strip().startswith("CNN"))
    assert cnn.rstrip().endswith("x"), cnn  # the convolutions' floor is measured too
    from avalanche_rm.hardware import fused

    if fused.grouped_tiles(torch.device("cpu")):
        assert "tile grouped conv (oneDNN)" in out and "linear (BLAS)" in out


def _idx(path, arr, labels=False):
    with open(path, "wb") as f:
        if labels:
            f.write(struct.pack(">II", 2049, len(arr)))
        else:
            f.write(struct.pack(">IIII", 2051, len(arr), 28, 28))
        f.write(arr.astype(np.uint8).tobytes())


def test_split_mnist_on_generated_files(tmp_path):
    from avalanche_rm.benchmarks import split_mnist

    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 200), ("t10k", 50)):
        _idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 255, (n, 28, 28)))
        _idx(raw / f"{prefix}-labels-idx1-ubyte", np.arange(n) % 10, labels=True)
    bm = split_mnist(5, dataset_root=str(tmp_path), seed=0)
    assert len(bm.train_stream) == 5 and sum(len(e.dataset) for e in bm.train_stream) == 200
    assert len(bm.train_stream[0].classes_in_this_experience) == 2


def test_split_cifar_on_generated_files(tmp_path, monkeypatch):
    from avalanche_rm.benchmarks import split_cifar

    base = tmp_path / "cifar-10-batches-py"
    base.mkdir()
    rng = np.random.default_rng(0)

    def batch(n):
        return {"data": rng.integers(0, 255, (n, 3072), dtype=np.uint8), "labels": list(np.arange(n) % 10)}

    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(base / name, "wb") as f:
            pickle.dump(batch(20), f)
    with open(base / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"c{i}" for i in range(10)]}, f)
    # generated files cannot carry the official md5 sums; the loader's parsing is what this tests
    monkeypatch.setattr("torchvision.datasets.cifar.check_integrity", lambda *args, **kwargs: True)
    bm = split_cifar(5, dataset_root=str(tmp_path), seed=0)
    assert len(bm.train_stream) == 5 and sum(len(e.dataset) for e in bm.train_stream) == 100
