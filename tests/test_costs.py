"""The cost model: one home for every formula, the same rules for both designs, nothing left uncharged."""
import ast
import pathlib
import warnings

import pytest
import torch
from torch import nn

import avalanche_rm
from avalanche_rm.costs import SramOverflowError, pricing
from avalanche_rm.hardware import get_preset
from avalanche_rm.nn import DigitalReferenceModel, convert_to_hybrid, dense_reference

#: configuration fields that hold an energy or a quantity an energy formula multiplies, and the unit prices
ENERGY_FIELDS = {
    "sram_energy_pj_per_byte", "dram_energy_pj_per_byte", "adc_energy_pj", "dac_energy_pj",
    "verify_sense_energy_pj", "pulse_voltage_v", "read_voltage_v", "verify_voltage_v", "wire_capacitance_ff",
    "transcendental_alu_ops", "price_overrides",
    *(f.price for f in __import__("avalanche_rm.costs.fields", fromlist=["x"]).PRICED),
}


def test_energy_constants_are_used_only_in_costs():
    root = pathlib.Path(avalanche_rm.__file__).parent
    bad = []
    for path in root.rglob("*.py"):
        rel = path.relative_to(root)
        if rel.parts[0] == "costs" or rel.as_posix() in ("hardware/presets.py", "hardware/config.py"):
            continue  # pricing itself; presets and configs define the constants
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in ENERGY_FIELDS and isinstance(node.ctx, ast.Load):
                bad.append(f"{rel}:{node.lineno} reads {node.attr}")
    assert not bad, bad


def mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 96), nn.GELU(), nn.LayerNorm(96), nn.Linear(96, 10))


def chip(preset="paper-180nm", module=None, x=None, **over):
    m = convert_to_hybrid(module or mlp(), get_preset(preset, **over))
    m.program(seed=0, calibration_data=x if x is not None else torch.rand(64, 64))
    return m


def test_inference_per_sample_does_not_depend_on_the_batch():
    x = torch.rand(64, 64)
    h = chip(x=x)
    h.add_adapter("a", rank=4, alpha=8, seed=0, bias=True)
    with torch.no_grad():
        for p in h.adapter_parameters():
            p.normal_(0, 0.05)
    h.set_analog_noise(False)  # read noise moves later layers' inputs, and event-driven costs follow inputs
    batched = h.inference_cost(x)["energy_pj"]
    one_by_one = sum(h.inference_cost(x[i:i + 1])["energy_pj"] for i in range(64)) / 64
    assert one_by_one == pytest.approx(batched, rel=1e-6)
    ref_batched = dense_reference(h, x)["energy_pj"]
    ref_single = sum(dense_reference(h, x[i:i + 1])["energy_pj"] for i in range(64)) / 64
    assert ref_single == pytest.approx(ref_batched, rel=1e-6)


def test_both_designs_pay_the_same_per_mac_and_per_byte():
    dig = get_preset("paper-180nm").digital
    lora = pricing.lora_branch(dig, 10, 2, 3, 40, 20, 3 * (40 + 20), False).counts
    dense = pricing.dense_layer(dig, 10, 2, 40, 20, False, False).counts
    # both read their weights once per sample at the adapter precision and move activations by the same rule
    assert lora["weight_read_bytes"] == 2 * 3 * 60 * dig.adapter_bytes_per_param
    assert dense["weight_read_bytes"] == 2 * 800 * dig.adapter_bytes_per_param
    assert dense["activation_read_bytes"] == 10 * 40 * dig.activation_bytes
    # and their MACs are the same field, priced at one price
    assert pricing.lora_nonzero_coefficients(20, False)["int8_macs"] == 20
    p = pricing.prices(get_preset("paper-180nm"))
    assert pricing.priced({"int8_macs": 1.0}, p)["energy_pj"] == p.int8_mac_pj


def test_network_digital_work_outside_crossbars_is_charged():
    x = torch.rand(32, 64)
    with_norm = chip(x=x)
    plain = chip(module=nn.Sequential(nn.Linear(64, 96), nn.Linear(96, 10)), x=x)
    prof = with_norm.digital_profile(x)
    assert prof.transcendental_ops == pytest.approx(96 + 96)  # GELU and the norm's rsqrt-and-divide per value
    assert prof.ops["int32_adds"] == pytest.approx(2 * 96)  # the norm's mean and variance sums, at INT32
    assert prof.simple_ops > 0 and prof.macs == 0
    assert plain.digital_profile(x).simple_ops == 0
    a = with_norm.inference_cost(x)
    b = plain.inference_cost(x)
    assert a["digital_ops"] > b["digital_ops"] > 0  # DAC scaling and tile sums even without a norm


def test_an_unconverted_layer_is_a_digital_matmul():
    x = torch.rand(16, 64)
    m = convert_to_hybrid(mlp(), get_preset("paper-180nm"), target_modules=["0"])
    m.program(seed=0, calibration_data=x)
    prof = m.digital_profile(x)
    assert prof.macs == 96 * 10 and prof.weight_values == 96 * 10


def test_digital_bias_is_charged():
    x = torch.rand(8, 64)
    with_bias = chip(module=nn.Sequential(nn.Linear(64, 10)), x=x)
    without = chip(module=nn.Sequential(nn.Linear(64, 10, bias=False)), x=x)
    assert with_bias.inference_cost(x)["digital_ops"] - without.inference_cost(x)["digital_ops"] == 10


def test_lora_activations_are_quantised_with_a_straight_through_gradient():
    x = torch.rand(32, 64)
    h = chip("ideal", module=nn.Sequential(nn.Linear(64, 10)), x=x, digital={"activation_bits": 3})
    h.set_analog_noise(False)
    h.add_adapter("a", rank=4, alpha=8, seed=0)
    with torch.no_grad():
        for p in h.adapter_parameters():
            p.normal_(0, 0.5, generator=torch.Generator().manual_seed(1))
        h.set_active_adapters([])
        y0 = h(x)
        h.set_active_adapters(["a"])
        y1 = h(x)
    # the branch's output is quantised to 3 bits with a scale per sample: at most 2 * 3 + 1 values per row
    branch = (y1 - y0).round(decimals=4)
    counts = [torch.unique(row).numel() for row in branch]
    assert max(counts) <= 7 and max(counts) > 2
    xr = x.clone().requires_grad_(True)
    h(xr).sum().backward()
    layer = h.hybrid_layers()[0]
    assert xr.grad.abs().sum() > 0 and layer.lora_A["a"].grad.abs().sum() > 0


def test_sram_overflow_spills_to_dram_or_refuses():
    x = torch.rand(32, 64)
    small = chip(x=x, digital={"sram_kib": 1.0, "local_buffer_kib": 0.0})
    big = chip(x=x, digital={"sram_kib": 4096.0})
    for m in (small, big):
        m.add_adapter("a", rank=16, alpha=16, seed=0)  # 16 * (64 + 96 + 96 + 10) INT8 bytes > 1 KiB
    cs, cb = small.inference_cost(x), big.inference_cost(x)
    assert cs["dram_bytes"] > 0 and cb.get("dram_bytes", 0.0) == 0
    assert cs["energy_pj"] > cb["energy_pj"]
    strict = chip(x=x, digital={"sram_kib": 1.0, "local_buffer_kib": 0.0, "sram_overflow": "error"})
    before = dict(strict.ledger.by_phase())
    strict.add_adapter("a", rank=16, alpha=16, seed=0)
    with pytest.raises(SramOverflowError, match="sram_kib=1.0"):
        strict(x)
    assert strict.ledger.by_phase() == before  # nothing was charged before the refusal


def test_optimizer_steps_are_charged_once_however_they_are_attached():
    from avalanche_rm.strategies import HardwareCostPlugin

    x, y = torch.rand(16, 64), torch.randint(0, 10, (16,))
    h = chip(x=x)
    h.add_adapter("a", rank=4, alpha=8, seed=0)
    opt = torch.optim.Adam(h.adapter_parameters(), lr=1e-2)
    h.attach_optimizer(opt)
    h.attach_optimizer(opt)
    HardwareCostPlugin()._attach(type("S", (), {"model": h, "optimizer": opt})())
    nn.functional.cross_entropy(h(x), y).backward()
    opt.step()
    train = h.ledger.summary("train")
    assert train.steps == 1
    n = h.adapter_num_parameters()
    state = pricing.training_state_bytes(h.hardware.digital, "adam", n)
    assert state == n * (4 + 4 + 8)  # FP32 master, gradient, two FP32 moments: from the preset, not a literal
    sgd = torch.optim.SGD(h.adapter_parameters(), lr=1e-2)
    assert pricing.optimizer_kind(sgd) == "sgd" and pricing.optimizer_kind(opt) == "adam"


def test_adc_calibration_is_chip_state_and_beats_the_worst_case():
    torch.manual_seed(0)
    lin = nn.Linear(256, 256)
    x = torch.relu(torch.randn(512, 256))
    cal = convert_to_hybrid(lin, get_preset("paper-180nm"))
    cal.program(seed=0)
    with pytest.warns(UserWarning, match="never calibrated"):
        cal(x[:4])
    cal.calibrate_adc(x[:256])
    worst = convert_to_hybrid(lin, get_preset("paper-180nm", crossbar={"adc_range": "worst_case"}))
    worst.program(seed=0)
    xt = x[256:]
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("error")  # neither warns now
        exact = nn.functional.linear(xt, cal.hybrid_layers()[0].effective_weight(), lin.bias)
        e_cal = float((cal(xt) - exact).norm() / exact.norm())
        exact_w = nn.functional.linear(xt, worst.hybrid_layers()[0].effective_weight(), lin.bias)
        e_worst = float((worst(xt) - exact_w).norm() / exact_w.norm())
    assert e_cal <= 0.03 < e_worst
    # clipped conversions are counted: a few with the 99.9th-percentile ranges, none with worst-case ranges
    n_conv = cal.ledger.total().as_dict()["adc_conversions"]
    sat_cal = cal.ledger.total().as_dict().get("adc_saturations", 0.0)
    assert 0 < sat_cal < 0.02 * n_conv, (sat_cal, n_conv)
    assert worst.ledger.total().as_dict().get("adc_saturations", 0.0) == 0
    cal_bill = cal.ledger.summary("calibrate")
    assert cal_bill.adc_conversions > 0 and cal_bill.analog_macs > 0  # calibration reads are chip work: charged
    sd = cal.state_dict()
    assert bool(sd["base_model.layer.array.adc_calibrated"])
    other = convert_to_hybrid(lin, get_preset("paper-180nm"))
    other.load_state_dict(sd)
    assert other.adc_calibrated and torch.equal(other.hybrid_layers()[0].array.adc_fs_us,
                                                cal.hybrid_layers()[0].array.adc_fs_us)


def test_scrub_teacher_outputs_are_charged():
    from avalanche_rm.unlearning import get_objective, train_objective

    x, y = torch.rand(40, 64), torch.randint(0, 10, (40,))
    costs = {}
    for method in ("neg_ce", "scrub"):
        h = chip(x=x)
        h.add_adapter("u", rank=4, alpha=8, seed=0)
        snap = h.ledger.snapshot()
        with h.ledger.phase("unlearn"):
            train_objective(h, h.adapter_parameters(), get_objective(method), (x[:10], y[:10]), (x[10:], y[10:]),
                            epochs=1, lr=1e-2, batch_size=None, n_classes=10)
        costs[method] = h.ledger.total_since(snap)
    # SCRUB runs the model before unlearning once more over every sample, writes its outputs and reads them back
    # in the (one, full-batch) step: exactly that much more traffic than an objective without a teacher
    assert costs["scrub"]["analog_macs"] > costs["neg_ce"]["analog_macs"]
    forward = h.inference_cost(x)  # one eval pass, per sample
    teacher = 40 * 10 * h.hardware.digital.activation_bytes
    for d in ("read", "write"):
        extra = costs["scrub"][f"activation_{d}_bytes"] - costs["neg_ce"][f"activation_{d}_bytes"]
        assert extra == pytest.approx(40 * forward[f"activation_{d}_bytes"] + teacher), d
    assert costs["scrub"]["energy_pj"] > costs["neg_ce"]["energy_pj"]


def test_dense_reference_weights_beyond_sram_are_read_from_dram():
    x = torch.rand(8, 64)
    big = nn.Sequential(nn.Linear(64, 512), nn.Linear(512, 512), nn.Linear(512, 10))
    ref = DigitalReferenceModel(big, get_preset("paper-180nm"))  # with the chip's buffer, not sized for it
    c = ref.inference_cost(x)
    weights = sum(m.weight.numel() for m in big if isinstance(m, nn.Linear))
    assert weights > get_preset("paper-180nm").digital.sram_bytes
    assert c["dram_bytes"] > 0.5 * weights  # most weights stream from DRAM, once per sample
