import pickle

import pytest
import torch

from avalanche_rm.hardware import (CrossbarConfig, DigitalUnitConfig, HardwareConfig, RMDeviceConfig, get_preset,
                                   list_presets, write_verify)
from avalanche_rm.costs.pricing import price_programming, verify_read_energy_pj, write_pulse_energy_pj
from avalanche_rm.hardware.drift import LogGaussianDrift, PowerLawDrift


def programmed(d, start, target, seed, hw=None):
    """write_verify with its report priced (energy and latency come from the cost model; ``hw`` the chip, whose
    ADC prices the verify compare: by default a chip with device ``d``)."""
    res = write_verify(d, start, target, torch.Generator().manual_seed(seed))
    price_programming(hw if hw is not None else HardwareConfig(device=d), res.report)
    return res


@pytest.mark.parametrize("name", list_presets())
def test_write_verify_lands_99_percent_and_reports_the_rest(name):
    hw = get_preset(name)
    d = hw.device
    gen = torch.Generator().manual_seed(0)
    target = d.g_min_us + torch.rand(50_000, generator=gen) * d.g_range_us
    res = programmed(d, torch.full_like(target, d.g_min_us), target, 1)
    inside = (res.g_us - target).abs() <= d.wv_tolerance_us
    assert inside.float().mean() >= 0.99
    assert res.report.failed_cells == int((~inside).sum())
    assert torch.equal(res.failed, ~inside)
    assert res.report.pulses == int(res.pulses.sum())
    assert res.report.cells == 50_000
    assert sum(res.report.pulse_histogram) == 50_000
    assert res.report.energy_pj > 0 and res.report.latency_ns > 0


def test_write_verify_same_seed_same_result_and_seed_matters():
    d = get_preset("paper-180nm").device
    target = torch.linspace(d.g_min_us, d.g_max_us, 4096)
    start = torch.full_like(target, d.g_min_us)
    a, b, c = programmed(d, start, target, 7), programmed(d, start, target, 7), programmed(d, start, target, 8)
    assert torch.equal(a.g_us, b.g_us) and torch.equal(a.pulses, b.pulses)
    assert a.report.energy_pj == b.report.energy_pj
    assert not torch.equal(a.g_us, c.g_us)


def test_programming_energy_scales_linearly_with_cells():
    d = get_preset("paper-180nm").device
    per_cell = []
    for n in (20_000, 40_000, 80_000):
        gen = torch.Generator().manual_seed(n)
        target = d.g_min_us + torch.rand(n, generator=gen) * d.g_range_us
        rep = programmed(d, torch.full_like(target, d.g_min_us), target, 3).report
        per_cell.append(rep.energy_pj / n)
    assert max(per_cell) / min(per_cell) < 1.03


def test_cells_already_on_target_cost_only_a_verify_read():
    hw = get_preset("ideal")
    d = hw.device
    target = torch.full((1000,), 50.0)
    rep = programmed(d, target.clone(), target, 0, hw).report
    assert rep.pulses == 0 and rep.verify_reads == 1000 and rep.pulse_energy_pj == 0
    assert rep.verify_energy_pj == pytest.approx(verify_read_energy_pj(hw, 50.0 * 1000, 1000))


def test_cells_inside_the_acceptance_window_get_no_pulse():
    # a cell within the window but outside the guard band the loop converges into is left alone
    d = get_preset("paper-180nm").device.replace(read_noise_sigma_us=0.01, verify_guard_sigmas=40.0)  # band 0.6
    target = torch.full((1000,), 50.0)
    start = target + torch.linspace(0.7, 0.9, 1000) * d.wv_tolerance_us * torch.tensor([1.0, -1.0]).repeat(500)
    res = programmed(d, start, target, 0)
    assert res.report.pulses == 0 and torch.equal(res.g_us, start)
    outside = target + 1.5 * d.wv_tolerance_us
    assert programmed(d, outside, target, 0).report.pulses > 0


def test_stuck_cells_fail_and_burn_pulses():
    d = get_preset("paper-180nm").device
    target = torch.full((100,), 60.0)
    faults = torch.zeros(100, dtype=torch.int8)
    faults[:10] = 1  # stuck at g_min = 20 uS, far from 60
    res = write_verify(d, torch.full_like(target, 20.0), target, torch.Generator().manual_seed(0), fault_code=faults)
    assert res.failed[:10].all() and not res.failed[10:].any()
    assert (res.pulses[:10] == d.wv_max_iterations).all()
    assert (res.g_us[:10] == d.g_min_us).all()


def test_pulse_energy_formula_matches_neurosim():
    d = RMDeviceConfig(pulse_voltage_v=2.0, pulse_width_ns=50.0, wire_capacitance_ff=0.0)
    assert write_pulse_energy_pj(HardwareConfig(device=d), 50.0, 1) == pytest.approx(10.0)  # 2 V, 50 uS, 50 ns
    d2 = RMDeviceConfig(pulse_voltage_v=2.0, pulse_width_ns=50.0, wire_capacitance_ff=20.0)
    assert write_pulse_energy_pj(HardwareConfig(device=d2), 50.0, 1) == pytest.approx(10.0 + 4 * 20e-3)  # + V^2 C


def test_device_config_selects_its_drift_and_noise_models():
    assert isinstance(get_preset("pcm-like").device.drift_law(), PowerLawDrift)
    assert isinstance(get_preset("paper-180nm").device.drift_law(), LogGaussianDrift)
    assert get_preset("paper-180nm").device.programming_noise().constant_us == 1.0
    pcm = get_preset("pcm-like").device.programming_noise()
    assert pcm.constant_us is None and float(pcm.sigma_us(torch.tensor([25.0]))) == pytest.approx(1.0554, abs=1e-3)


def test_power_law_drift_composes():
    law = get_preset("pcm-like").device.drift_law()
    g = torch.full((10_000,), 12.0)
    nu = torch.full_like(g, 0.05)
    gen = torch.Generator()
    one = law.age(g, 0.0, 1000.0, gen, nu)
    two = law.age(law.age(g, 0.0, 10.0, gen, nu), 10.0, 1000.0, gen, nu)
    assert torch.allclose(one, two, rtol=1e-5)
    assert (one < g).all()


def test_log_gaussian_drift_statistics():
    d = get_preset("paper-180nm").device
    law = d.drift_law()
    g = torch.full((200_000,), 50.0)
    out = law.age(g, 0.0, 3600.0, torch.Generator().manual_seed(0))
    dln = torch.log(torch.tensor(3600.0 + d.drift_t0_s)) - torch.log(torch.tensor(d.drift_t0_s))
    assert float((out - g).mean()) == pytest.approx(d.drift_mean_us_per_ln_s * float(dln), abs=0.01)
    assert float((out - g).std()) == pytest.approx(d.drift_std_us_per_sqrt_ln_s * float(dln) ** 0.5, rel=0.02)


@pytest.mark.parametrize("field,value", [
    ("g_min_us", -1.0), ("g_max_us", 10.0), ("n_levels", 1), ("wv_max_iterations", 0), ("write_gain", 1.5),
    ("sa0_rate", 1.2), ("drift_model", "magic"), ("pulse_width_ns", 0.0), ("g_max_us", float("nan")),
    ("prog_noise_rel_sigma", -0.1), ("read_noise_sigma_us", float("inf")),
])
def test_bad_device_values_raise_naming_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        RMDeviceConfig(**{field: value})


def test_inverted_window_names_both_fields():
    with pytest.raises(ValueError, match="g_max_us"):
        RMDeviceConfig(g_min_us=80.0, g_max_us=20.0)


@pytest.mark.parametrize("field,value", [
    ("rows", 0), ("cols", -4), ("mapping", "triple"), ("adc_bits", 1), ("dac_bits", 0), ("col_mux", 0),
    ("adc_range_fraction", 2.0), ("adc_energy_pj", -1.0), ("weight_scale", "row"), ("adc_range", "auto"),
    ("adc_calibration_percentile", 101.0),
])
def test_bad_crossbar_values_raise_naming_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        CrossbarConfig(**{field: value})


@pytest.mark.parametrize("field,value", [("adapter_bits", 1), ("sram_kib", 0.0), ("local_buffer_kib", -2.0),
                                         ("pe_count", 0), ("vdd_v", -1.0), ("activation_bits", 1),
                                         ("sram_overflow", "swap"), ("dram_energy_pj_per_byte", -1.0),
                                         ("sram_bytes_per_cycle", 0.0), ("dram_bandwidth_gb_s", -1.0)])
def test_bad_digital_values_raise_naming_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        DigitalUnitConfig(**{field: value})


def test_g_zero_outside_window_is_refused():
    with pytest.raises(ValueError, match="g_zero_us"):
        HardwareConfig(device=RMDeviceConfig(), crossbar=CrossbarConfig(mapping="offset", g_zero_us=90.0))


def test_unknown_preset_lists_known_ones():
    with pytest.raises(ValueError, match="paper-180nm"):
        get_preset("no-such-chip")


def test_presets_cite_sources_and_match_reference_chip():
    for name in list_presets():
        hw = get_preset(name)
        assert len(hw.source) > 80, name
    p = get_preset("paper-180nm")
    assert (p.crossbar.rows, p.crossbar.cols) == (128, 128)
    assert (p.device.g_min_us, p.device.g_max_us, p.crossbar.g_zero_us) == (20.0, 80.0, 50.0)
    assert p.digital.tech_node_nm == 180.0


def test_config_roundtrip_and_overrides():
    hw = get_preset("paper-180nm", device={"read_noise_sigma_us": 0.5})
    assert hw.device.read_noise_sigma_us == 0.5
    assert HardwareConfig.from_dict(hw.to_dict()) == hw
    assert pickle.loads(pickle.dumps(hw)) == hw
    with pytest.raises(ValueError, match="bogus"):
        HardwareConfig.from_dict({"device": {"bogus": 1}})
    with pytest.raises(ValueError, match="n_levels"):
        get_preset("paper-180nm", device={"n_levels": 1})


# ------------------------------------------------------------------ read-noise draws
def test_noise_table_draws_are_standard_normal_and_independent_within_a_call():
    from avalanche_rm.hardware.noise_source import NormalSource

    src = NormalSource("table", seed=1, table_min=1 << 16, reuse=1)
    cpu = torch.device("cpu")
    for _ in range(20):  # crosses several table epochs
        z = src.normal((200, 100), cpu).reshape(-1)
        assert abs(float(z.mean())) < 0.02 and abs(float(z.std()) - 1) < 0.02
        assert abs(float(torch.corrcoef(torch.stack([z[:-1], z[1:]]))[0, 1])) < 0.03
    assert src._epochs[("cpu", "torch.float32")][0] >= 3  # the table was redrawn, not reused forever


@pytest.mark.parametrize("mode", ["table", "exact", "counter"])
def test_noise_stream_resumes_after_pickling_and_restarts_on_reseed(mode):
    from avalanche_rm.hardware.noise_source import NormalSource

    cpu = torch.device("cpu")
    a = NormalSource(mode, seed=3, table_min=1000, reuse=2)
    first = [a.normal((7, 11), cpu).clone() for _ in range(30)]
    a.reseed(3)
    again = [a.normal((7, 11), cpu).clone() for _ in range(15)]
    assert all(torch.equal(x, y) for x, y in zip(first, again))
    b = pickle.loads(pickle.dumps(a))  # mid-stream, after at least one table epoch
    for _ in range(30):
        assert torch.equal(a.normal((7, 11), cpu), b.normal((7, 11), cpu))


@pytest.mark.parametrize("field,value", [("mode", "fast"), ("reuse", 0), ("table_min", -1), ("seed", -2)])
def test_bad_noise_source_values_raise_naming_the_field(field, value):
    from avalanche_rm.hardware.noise_source import NormalSource

    with pytest.raises(ValueError, match=field):
        NormalSource(**{field: value})


def test_table_and_exact_read_noise_have_the_same_spread():
    from torch import nn

    from avalanche_rm.nn import convert_to_hybrid

    torch.manual_seed(0)
    hw = get_preset("rram-generic", device={"read_noise_sigma_us": 2.0})
    spreads = {}
    for mode in ("table", "exact"):
        h = convert_to_hybrid(nn.Sequential(nn.Linear(300, 64)), hw)
        h.program(seed=0)
        h.set_noise_sampler(mode)
        h.eval()
        x = torch.rand(1, 300).expand(4000, 300).contiguous()  # one input read 4000 times
        with torch.no_grad():
            spreads[mode] = h(x).std(dim=0)
    assert spreads["exact"].mean() > 0
    assert torch.allclose(spreads["table"].mean(), spreads["exact"].mean(), rtol=0.05)


# ------------------------------------------------------------------ programming-noise draws
def test_shared_table_windows_are_standard_normal_and_independent_within_a_call():
    from avalanche_rm.hardware.noise_source import TableWindows

    w = TableWindows(seed=5)
    cpu = torch.device("cpu")
    for n in (20_000, 300_000, 2_000_000):  # the last needs a larger table than the minimum
        z = w.normal(n, cpu)
        assert z.numel() == n
        assert abs(float(z.mean())) < 5 / n ** 0.5 and abs(float(z.std()) - 1) < 0.02
        assert abs(float(torch.corrcoef(torch.stack([z[:-1], z[1:]]))[0, 1])) < 0.03
    a, b = TableWindows(seed=9), TableWindows(seed=9)
    assert torch.equal(a.normal(1000, cpu), b.normal(1000, cpu))
    assert not torch.equal(TableWindows(seed=10).normal(1000, cpu), TableWindows(seed=9).normal(1000, cpu))


@pytest.mark.parametrize("name", ["paper-180nm", "pcm-like"])
def test_table_and_exact_programming_noise_give_the_same_outcome_statistics(name):
    """Pulses per cell, the pulse histogram, failures and the landed error distribution agree between samplers."""
    d = get_preset(name).device
    gen = torch.Generator().manual_seed(0)
    target = d.g_min_us + torch.rand(200_000, generator=gen) * d.g_range_us
    start = torch.full_like(target, d.g_min_us)
    out = {s: write_verify(d, start, target, torch.Generator().manual_seed(1), sampler=s) for s in ("table", "exact")}
    t, e = out["table"], out["exact"]
    assert abs(t.report.pulses_per_cell / e.report.pulses_per_cell - 1) < 0.01
    assert abs(t.report.success_rate - e.report.success_rate) < 0.002
    ht, he = (torch.tensor(r.report.pulse_histogram[:8], dtype=torch.float64) / r.report.cells for r in (t, e))
    assert float((ht - he).abs().max()) < 0.01
    # two-sample Kolmogorov-Smirnov distance of the landed errors (critical value ~0.0043 at n = 200k, p = 0.05)
    et, ee = ((r.g_us - target).sort().values for r in (t, e))
    grid = torch.linspace(float(ee[100]), float(ee[-100]), 2001)
    ks = (torch.searchsorted(et, grid).double() - torch.searchsorted(ee, grid).double()).abs().max() / et.numel()
    assert float(ks) < 0.006
    assert not torch.equal(t.g_us, e.g_us)


def test_bad_programming_sampler_is_refused():
    d = get_preset("paper-180nm").device
    with pytest.raises(ValueError, match="sampler"):
        write_verify(d, torch.full((4,), 20.0), torch.full((4,), 50.0), torch.Generator(), sampler="fast")


def test_model_programming_sampler_is_honoured_and_checked():
    from torch import nn

    from avalanche_rm.nn import convert_to_hybrid

    hw = get_preset("paper-180nm")
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(64, 32))
    a, b = convert_to_hybrid(net, hw), convert_to_hybrid(net, hw)
    b.set_programming_sampler("table")
    ra, rb = a.program(seed=0), b.program(seed=0)
    ga, gb = a.hybrid_layers()[0].array.g_us, b.hybrid_layers()[0].array.g_us
    assert not torch.equal(ga, gb)  # other draws ...
    assert abs(ra.pulses_per_cell - rb.pulses_per_cell) < 0.3  # ... same process
    with pytest.raises(ValueError, match="programming sampler"):
        a.set_programming_sampler("fast")
