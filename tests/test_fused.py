"""The fused compiled read against the eager reference: same outputs, gradients and ledger on the same noise stream.

Tolerance (stated in :mod:`avalanche_rm.hardware.fused`): outputs to 1e-5 relative, except that float rounding
may move a value across an ADC rounding boundary (one ADC step, on at most 0.1 % of outputs); counts to 1e-5
relative, saturations to 1 %.
"""
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from torch import nn

from avalanche_rm.hardware import fused, get_preset
from avalanche_rm.nn import convert_to_hybrid


@pytest.fixture
def fused_on():
    was = fused.fused_enabled()
    yield
    fused.set_fused(was)


def _models():
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(200, 48), nn.ReLU(), nn.Linear(48, 10))  # 2 input tiles, padded; 1 tile
    # one tile (27 inputs), then two (144 inputs: the receptive fields go in padded to whole tiles)
    cnn = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 8, 3, padding=1), nn.ReLU(),
                        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(8 * 8 * 8, 5))
    return [("mlp", mlp, torch.rand(24, 200)), ("cnn", cnn, torch.randn(6, 3, 16, 16))]


def _run(hyb, x, y, fused_read: bool, seed: int):
    """One adapter training step (forward + backward) and one eval forward, from the same noise-stream state."""
    fused.set_fused(fused_read)
    hyb.noise_source.reseed(seed)  # table offsets, exact generator and counter keys all restart
    before = hyb.ledger.total().as_dict()
    hyb.train()
    for p in hyb.adapter_parameters():
        p.grad = None
    out = hyb(x)
    nn.functional.cross_entropy(out, y).backward()
    grads = [p.grad.clone() for p in hyb.adapter_parameters()]
    hyb.eval()
    with torch.no_grad():
        ev = hyb(x)
    after = hyb.ledger.total().as_dict()
    return out.detach(), ev, grads, {k: after[k] - before.get(k, 0.0) for k in after}


def _close_outputs(a: torch.Tensor, b: torch.Tensor) -> None:
    diff = (a - b).abs()
    off = diff > 1e-5 * a.abs().clamp_min(1e-3)
    assert float(off.float().mean()) <= 1e-3, float(diff.max())


@pytest.mark.parametrize("mode", ["table", "counter", "exact"])
def test_fused_read_matches_eager_outputs_gradients_and_ledger(mode, fused_on):
    _check_equivalence(mode)


def test_fused_read_without_onednn_takes_bmm_and_matches_eager(fused_on, monkeypatch):
    """Where the tile products cannot run as a oneDNN convolution (a GPU, a build without MKL-DNN): bmm."""
    monkeypatch.setattr(fused, "grouped_tiles", lambda device: False)
    no_conv_weights = []
    real_run = fused.run

    def spy(kind, *args, **static):
        no_conv_weights.append(args[-6] is None)  # (..., w, w_conv, inv_step, out_factor, g_row_sum, draws, keys)
        return real_run(kind, *args, **static)

    monkeypatch.setattr(fused, "run", spy)
    _check_equivalence("table")
    assert no_conv_weights and all(no_conv_weights)


def _check_equivalence(mode: str) -> None:
    for name, plain, x in _models():
        hyb = convert_to_hybrid(plain, get_preset("paper-180nm"))
        hyb.program(seed=0, calibration_data=x)
        hyb.add_adapter("a", rank=2, alpha=4.0)
        with torch.no_grad():  # a non-zero adapter, so that gradients reach the first layer's input too
            for p in hyb.adapter_parameters():
                p.add_(0.05 * torch.randn_like(p))
        hyb.set_noise_sampler(mode)
        y = torch.randint(0, 5, (x.shape[0],))
        e_out, e_ev, e_grads, e_bill = _run(hyb, x, y, False, seed=11)
        f_out, f_ev, f_grads, f_bill = _run(hyb, x, y, True, seed=11)
        _close_outputs(e_out, f_out)
        _close_outputs(e_ev, f_ev)
        for ge, gf in zip(e_grads, f_grads):
            assert torch.allclose(ge, gf, rtol=1e-4, atol=1e-6), (name, float((ge - gf).abs().max()))
        assert set(e_bill) == set(f_bill)
        for k, v in e_bill.items():
            tol = 1e-2 if k == "adc_saturations" else 1e-5
            assert abs(f_bill[k] - v) <= tol * max(abs(v), 1.0), (name, k, v, f_bill[k])
        assert e_bill["energy_pj"] > 0
        # a different noise stream gives different outputs: the comparison above is not vacuous
        _, other, _, _ = _run(hyb, x, y, True, seed=12)
        assert not torch.equal(other, f_ev)
    assert fused.fallback_reason() is None
    assert any(k.startswith("codes") for k in fused.compile_seconds())  # the conv layer took the fused path


def test_switch_keeps_reads_on_the_eager_path(fused_on):
    _, plain, x = _models()[0]
    hyb = convert_to_hybrid(plain, get_preset("paper-180nm"))
    hyb.program(seed=0, calibration_data=x)
    fused.set_fused(False)
    n = len(fused.compile_seconds())
    with torch.no_grad():
        hyb(torch.rand(7, 200))  # a batch size no test compiled
    assert len(fused.compile_seconds()) == n
    with pytest.raises(ValueError, match="enabled"):
        fused.set_fused("yes")


def test_missing_compiler_falls_back_to_eager_with_one_log_line(tmp_path):
    script = textwrap.dedent("""
        import logging, torch
        from torch import nn
        logging.basicConfig(level=logging.WARNING, format="LOG %(message)s")
        from avalanche_rm.hardware import fused, get_preset
        from avalanche_rm.nn import convert_to_hybrid
        torch.manual_seed(0)
        hyb = convert_to_hybrid(nn.Sequential(nn.Linear(40, 6)), get_preset("paper-180nm"))
        x = torch.rand(5, 40)
        hyb.program(seed=0, calibration_data=x)
        hyb.eval()
        hyb.noise_source.reseed(3)
        with torch.no_grad():
            fused.set_fused(False)
            ref = hyb(x)
            fused.set_fused(True)
            hyb.noise_source.reseed(3)
            got = hyb(x)
            hyb(x)
        assert fused.fallback_reason() is not None and not fused.fused_enabled()
        assert torch.equal(ref, got)
        print("RESULT ok")
    """)
    # a fresh inductor cache, so that nothing compiled earlier on this machine stands in for the compiler
    env = dict(os.environ, CXX=str(tmp_path / "no-such-compiler"), TORCHINDUCTOR_CACHE_DIR=str(tmp_path / "inductor"))
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    text = out.stdout + out.stderr
    assert "RESULT ok" in text
    lines = [ln for ln in text.splitlines() if "could not be compiled" in ln]
    assert len(lines) == 1 and "using the eager path" in lines[0]


def test_counter_draws_are_standard_normal_independent_and_reproducible():
    from avalanche_rm.hardware.noise_source import NormalSource, counter_normals

    z = counter_normals(1_000_000, torch.tensor([1, 2, 3]))
    assert abs(float(z.mean())) < 0.005 and abs(float(z.std()) - 1) < 0.005
    assert abs(float((z ** 4).mean()) - 3) < 0.05  # Gaussian kurtosis
    for lag in (1, 2, 3):
        assert abs(float(torch.corrcoef(torch.stack([z[:-lag], z[lag:]]))[0, 1])) < 0.005
    other = counter_normals(1_000_000, torch.tensor([1, 2, 4]))
    assert abs(float(torch.corrcoef(torch.stack([z, other]))[0, 1])) < 0.005
    src = NormalSource("counter", seed=4)
    a = [src.normal((50, 7), torch.device("cpu")) for _ in range(3)]
    assert not torch.equal(a[0], a[1])
    src.reseed(4)
    assert torch.equal(src.normal((50, 7), torch.device("cpu")), a[0])


def test_the_environment_switch_names_a_bad_value():
    assert fused.parse_switch("1") and fused.parse_switch(" On ") and not fused.parse_switch("0")
    with pytest.raises(ValueError, match="'maybe'"):
        fused.parse_switch("maybe")


def test_fused_counts_stay_exact_on_a_large_batch(fused_on):
    """Driven rows and sum(code^2 G) of 16384 vectors (a conv layer's receptive fields at batch 64) to 1e-6 of
    the float64 value: a float32 total over the batch drifted by 6e-5 at this size."""
    from avalanche_rm.hardware import crossbar as xb

    torch.manual_seed(0)
    hyb = convert_to_hybrid(nn.Sequential(nn.Linear(144, 32)), get_preset("paper-180nm"))  # 2 tiles, padded
    x = torch.rand(16384, 144) * 2 - 1  # codes spread over the DAC's range: large squares, a large total
    hyb.program(seed=0, calibration_data=x[:1024])
    arr = hyb.hybrid_layers()[0].array
    fused.set_fused(True)
    _, driven, x2g, _ = arr.read_fused(x)
    codes = xb.dac_encode(hyb.hardware.crossbar, x)[2].double()
    sq = codes * codes
    exact_x2g = float(sq.sum(0) @ arr.g_row_sum_us.double())
    assert float(driven) == float((sq > 0).sum())
    assert abs(float(x2g) - exact_x2g) <= 1e-6 * exact_x2g, (float(x2g), exact_x2g)
