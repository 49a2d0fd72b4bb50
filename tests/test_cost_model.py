"""The cost model a hardware reviewer signs (issue #23): memory by capacity and level, ops by kind and width, fair
baselines, placement by access, parallel latency, re-pricing, and one field table for every list of cost keys."""
import inspect
import math

import pytest
import torch
from torch import nn

from avalanche_rm import convert_to_hybrid, get_preset
from avalanche_rm.costs import fields, pricing
from avalanche_rm.costs.ledger import QUANTITIES
from avalanche_rm.costs.prices import SRAM_POINTS_45NM, node_factor, prices, sram_pj_per_byte_45nm
from avalanche_rm.costs.residency import place
from avalanche_rm.costs.sensitivity import ASSUMPTIONS, Recording, reprice
from avalanche_rm.nn import reference_model

HW = get_preset("paper-180nm")


def chip(module, x, hw=HW, **over):
    m = convert_to_hybrid(module, hw.replace(**over) if over else hw)
    m.program(seed=0, calibration_data=x)
    m.set_analog_noise(False)
    return m


# ------------------------------------------------------------------ memory priced by capacity and level
def test_a_larger_buffer_has_dearer_bytes():
    sizes = [0.5, 2, 8, 16, 32, 64, 256, 512, 1024]
    e = [sram_pj_per_byte_45nm(kib * 1024) for kib in sizes]
    assert all(a < b for a, b in zip(e, e[1:])), e  # strictly dearer with capacity up to the 1 MB point
    for cap, pj in SRAM_POINTS_45NM:  # it passes through Horowitz's published points
        assert sram_pj_per_byte_45nm(cap) == pytest.approx(pj)
    small, big = (prices(HW.replace(digital={"sram_kib": k})) for k in (64.0, 512.0))
    assert big.sram_read_pj_per_byte > small.sram_read_pj_per_byte
    # on the chip: the same traffic through a larger buffer costs more
    x = torch.rand(16, 64)
    costs = []
    for kib in (8.0, 256.0):
        m = chip(nn.Sequential(nn.Linear(64, 96), nn.ReLU(), nn.Linear(96, 10)), x,
                 digital={"sram_kib": kib, "local_buffer_kib": 0.0})
        c = m.inference_cost(x)
        costs.append((c["energy_sram_pj"], c["sram_read_bytes"] + c["sram_write_bytes"]))
    assert costs[0][1] == costs[1][1] and costs[1][0] > costs[0][0]


def test_one_node_rule_for_logic_and_sram():
    a, b = prices(HW), prices(get_preset("rram-generic"))
    k = node_factor(180, 1.8) / node_factor(40, 1.1)
    assert a.int8_add_pj / b.int8_add_pj == pytest.approx(k)
    assert a.fp32_mac_pj / b.fp32_mac_pj == pytest.approx(k)
    same_size = get_preset("rram-generic", digital={"sram_kib": HW.digital.sram_kib})
    assert a.sram_read_pj_per_byte / prices(same_size).sram_read_pj_per_byte == pytest.approx(k)
    # DRAM is its interface's energy (stated), the same at every node unless a preset fixes it
    assert a.dram_pj_per_byte == b.dram_pj_per_byte == pytest.approx(2000 / 8)


def test_a_stationary_adapter_stays_in_the_local_buffer():
    x = torch.rand(8, 64)
    near, far = (chip(nn.Sequential(nn.Linear(64, 32)), x, digital={"local_buffer_kib": kib}) for kib in (6.0, 0.0))
    for m in (near, far):
        m.add_adapter("a", rank=4, alpha=8, seed=0)
    c_near, c_far = near.inference_cost(x), far.inference_cost(x)
    assert c_near["weight_read_bytes"] == c_far["weight_read_bytes"] > 0
    assert c_near.get("sram_read_bytes", 0.0) == 0 and c_far["sram_read_bytes"] >= c_far["weight_read_bytes"]
    assert c_near["energy_pj"] < c_far["energy_pj"]


# ------------------------------------------------------------------ ops priced by kind and width
def test_an_add_is_cheaper_than_a_mac():
    p = prices(HW)
    assert p.int8_add_pj < p.int32_add_pj < p.int8_mac_pj < p.fp32_mac_pj
    assert p.int8_mul_pj < p.int8_mac_pj and p.fp32_add_pj < p.fp32_mac_pj
    assert p.int8_mac_pj == pytest.approx(p.int8_mul_pj + p.int32_add_pj)  # INT8 x INT8 into an INT32 accumulator
    # on the chip: a bias costs an INT32 add per output (and its read), far less than a MAC per output
    x = torch.rand(4, 64)
    with_b = chip(nn.Sequential(nn.Linear(64, 10)), x)
    without = chip(nn.Sequential(nn.Linear(64, 10, bias=False)), x)
    d = {k: with_b.inference_cost(x).get(k, 0.0) - without.inference_cost(x).get(k, 0.0)
         for k in ("int32_adds", "energy_digital_pj", "weight_read_bytes")}
    assert d["int32_adds"] == 10 and d["weight_read_bytes"] == 10 * pricing.BIAS_BYTES
    assert d["energy_digital_pj"] == pytest.approx(10 * p.int32_add_pj) and d["energy_digital_pj"] < 10 * p.int8_mac_pj


def test_verify_is_a_compare_and_the_dac_follows_the_adc():
    p = prices(HW)
    fom = HW.crossbar.adc_energy_pj / 2 ** HW.crossbar.adc_bits
    assert p.verify_compare_pj == pytest.approx(2 * fom * 2)  # two 1-bit decisions at the ADC's figure of merit
    assert p.verify_compare_pj < p.adc_pj / 10
    assert p.dac_pj == pytest.approx(HW.crossbar.adc_energy_pj / 4)  # ISAAC's DAC : ADC power per cycle
    fixed = HW.replace(crossbar={"dac_energy_pj": 1.0}, device={"verify_sense_energy_pj": 0.5})
    assert prices(fixed).dac_pj == 1.0 and prices(fixed).verify_compare_pj == 0.5
    assert prices(HW.replace(price_overrides=(("adc_pj", 3.1),))).adc_pj == 3.1  # a preset can fix any price
    with pytest.raises(ValueError, match="unknown price override"):
        prices(HW.replace(price_overrides=(("adc_nj", 3.1),)))
    with pytest.raises(ValueError, match="price_overrides"):
        HW.replace(price_overrides=(("adc_pj", -1.0),))


def test_cells_are_charged_for_the_time_the_read_takes():
    dev, xbar = HW.device, HW.crossbar
    p = prices(HW)
    assert p.cell_read_pj_per_us == pytest.approx(dev.read_voltage_v ** 2 * (dev.read_time_ns + xbar.adc_time_ns) * 1e-3)
    assert p.vector_read_ns == pytest.approx(xbar.col_mux * (dev.read_time_ns + xbar.adc_time_ns))
    slow = prices(HW.replace(crossbar={"adc_time_ns": 2 * xbar.adc_time_ns}))
    assert slow.cell_read_pj_per_us > p.cell_read_pj_per_us


def test_both_designs_pay_for_receiving_their_update():
    x = torch.rand(8, 64)
    m = chip(nn.Sequential(nn.Linear(64, 32)), x)
    deploy = m.ledger.summary("deploy")
    # programming from reset: every cell's level arrives through the input FIFO (written once, read once)
    assert deploy.fifo_bytes == 2 * deploy.cells_programmed * pricing.LEVEL_BYTES_PER_CELL
    layer = m.hybrid_layers()[0]
    snap = m.ledger.snapshot()
    with torch.no_grad():
        rep = layer.reprogram_weight(layer.target_weight() + 0.05, phase="update", from_fp32=False)
    got = m.ledger.total_since(snap)
    # an update trained off chip: the changed cells' addresses and levels, no on-chip comparison
    assert rep.cells > 0 and got["fifo_bytes"] == 2 * rep.cells * pricing.UPDATE_BYTES_PER_CELL
    assert got.get("digital_ops", 0.0) == 0
    snap = m.ledger.snapshot()
    with torch.no_grad():
        layer.reprogram_weight(layer.target_weight() - 0.05, phase="update")  # FP32 weights computed on chip
    got = m.ledger.total_since(snap)
    assert got["fp32_muls"] == got["int8_adds"] == 64 * 32 and got.get("fifo_bytes", 0.0) == 0
    # the hybrid's update: its adapter through the same FIFO, then written where its weights live
    a = pricing.adapter_deployment(1000.0).counts
    assert a["fifo_bytes"] == 2000.0 and a["weight_write_bytes"] == 1000.0


# ------------------------------------------------------------------ placement by access; no double traffic
def test_counted_bytes_of_a_toy_layer_equal_the_analytic_count():
    n, d_in, d_out, r = 5, 48, 24, 3
    x = torch.rand(n, d_in)
    m = chip(nn.Sequential(nn.Linear(d_in, d_out)), x)
    m.add_adapter("a", rank=r, alpha=6, seed=0, bias=True)
    m.add_adapter("b", rank=2, alpha=4, seed=1, bias=True)
    c = m.inference_cost(x)
    # the LoRA branches share the analogue read's input fetch and accumulate into its output: one read, one write
    assert c["activation_read_bytes"] == d_in and c["activation_write_bytes"] == d_out
    # every active adapter's factors (INT8) once per sample, one pre-summed INT32 bias vector
    assert c["weight_read_bytes"] == (r + 2) * (d_in + d_out) + d_out * pricing.BIAS_BYTES
    levels = c.get("local_bytes", 0) + c.get("sram_read_bytes", 0) + c.get("sram_write_bytes", 0) + c.get("dram_bytes", 0)
    assert levels == pytest.approx(c["activation_read_bytes"] + c["activation_write_bytes"] + c["weight_read_bytes"])
    ref = reference_model(m, x).inference_cost(x)
    assert ref["activation_read_bytes"] == d_in and ref["activation_write_bytes"] == d_out
    assert ref["weight_read_bytes"] == d_in * d_out + d_out * pricing.BIAS_BYTES


def test_placement_fills_levels_by_accesses_per_byte():
    needs = {"weight": 50_000.0, "activation": 2_000.0, "state": 10_000.0}
    # inference: activations (touched every token) before weights (once per sample); the state is not touched
    inference = place(1_000, 20_000, needs, {"activation": 40.0, "weight": 1.0, "state": 0.0})
    assert inference["activation"] == pytest.approx((0.5, 0.5, 0.0))
    assert inference["weight"] == pytest.approx((0.0, 19 / 50, 31 / 50)) and inference["state"] == (0.0, 0.0, 1.0)
    # training on a minibatch of 64: weights (read per sample) before saved activations before the state
    training = place(1_000, 20_000, needs, {"activation": 3.0, "weight": 64.0, "state": 2.0})
    assert training["weight"] == pytest.approx((1 / 50, 20 / 50, 29 / 50))
    assert training["activation"] == training["state"] == (0.0, 0.0, 1.0)
    # on a chip: activations of the pass in flight are not priced as DRAM when idle adapters exceed the buffer
    x = torch.rand(4, 64)
    m = chip(nn.Sequential(nn.Linear(64, 64)), x, digital={"sram_kib": 1.0, "local_buffer_kib": 0.0})
    for i in range(8):
        m.add_adapter(f"a{i}", rank=16, alpha=16, seed=i, activate=False)  # idle: read by no pass
    assert m.inference_cost(x).get("dram_bytes", 0.0) == 0
    m.set_active_adapters([f"a{i}" for i in range(8)])  # active: 16 KiB read per sample through a 1 KiB buffer
    c = m.inference_cost(x)
    assert c["dram_bytes"] > 0 and c.get("sram_read_bytes", 0) >= c["activation_read_bytes"]


def test_the_reference_never_streams_weights_from_dram_when_its_rule_sizes_its_buffer():
    x = torch.rand(6, 64)
    big = nn.Sequential(nn.Linear(64, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 10))
    m = chip(big, x)
    weights = sum(p.numel() for p in big.parameters())
    assert weights > HW.digital.sram_bytes
    sized = reference_model(m, x, "working_set")
    assert sized.hardware.digital.sram_kib * 1024 >= weights - HW.digital.local_buffer_kib * 1024
    assert sized.inference_cost(x).get("dram_bytes", 0.0) == 0
    on_chip_buffer = reference_model(m, x, "chip")
    assert on_chip_buffer.hardware.digital.sram_kib == HW.digital.sram_kib
    assert on_chip_buffer.inference_cost(x)["dram_bytes"] > 0.5 * weights


# ------------------------------------------------------------------ latency as the hardware runs
def test_parallel_branches_take_the_max_and_memory_takes_bandwidth_time():
    x = torch.rand(1, 64)
    p = prices(HW)
    m = chip(nn.Sequential(nn.Linear(64, 32, bias=False)), x)
    alone = m.inference_cost(x)["latency_ns"]
    assert alone == pytest.approx(p.vector_read_ns)  # one vector, one tile: the crossbar is the busiest
    m.add_adapter("small", rank=1, alpha=1, seed=0)
    assert m.inference_cost(x)["latency_ns"] == pytest.approx(alone)  # the LoRA branch runs beside the read
    m.add_adapter("big", rank=64, alpha=64, seed=0)
    m.set_active_adapters(["big"])
    work = pricing.analog_read(HW, m.hybrid_layers()[0].grid, 1) + \
        pricing.lora_branch(HW.digital, 1, 1, 64, 64, 32, 64 * (64 + 32), False)
    expect = max(p.vector_read_ns, work.pe_ops / p.pe_ops_per_ns)
    got = m.inference_cost(x)["latency_ns"]
    assert got == pytest.approx(expect) and got > alone  # in parallel: the max, not the sum
    assert got < p.vector_read_ns + work.pe_ops / p.pe_ops_per_ns
    # memory-bound: bytes over the port's bandwidth
    w = pricing.Work({"weight_read_bytes": 8000.0}, pe_ops=10.0, analog_ns=100.0)
    assert pricing.latency_ns(w, {"sram_read_bytes": 8000.0}, p) == pytest.approx(8000.0 / p.sram_bytes_per_ns)
    assert pricing.latency_ns(w, {"dram_bytes": 8000.0}, p) == pytest.approx(max(100.0, 8000.0 / p.dram_bytes_per_ns))


# ------------------------------------------------------------------ fair baselines
def test_the_full_weight_baseline_writes_its_chip_whenever_its_accuracy_moves():
    from avalanche_rm.scenarios.common import AnalogWriteBack
    from avalanche_rm.training import make_mlp
    from avalanche_rm.unlearning import accuracy_of
    from sklearn.datasets import load_digits

    d = load_digits()
    xs = torch.tensor(d.data[:300], dtype=torch.float32) / 16
    ys = torch.tensor(d.target[:300])
    seen = []
    for lr in (1e-7, 3e-2):
        torch.manual_seed(0)
        m = chip(make_mlp(), xs)
        wb = AnalogWriteBack(m, every=1)
        opt = torch.optim.Adam(wb.params(), lr=lr)
        m.attach_optimizer(opt)

        def acc():
            with m.fork_read_noise(7):
                return accuracy_of(m, xs, ys)

        before, snap = acc(), m.ledger.snapshot()
        m.train()
        for i in range(0, 300, 50):
            opt.zero_grad()
            nn.functional.cross_entropy(m(xs[i:i + 50]), ys[i:i + 50]).backward()
            opt.step()
            wb.after_step(opt)
        wb.freeze()
        pulses = m.ledger.total_since(snap).get("pulses", 0.0)
        moved = acc() != before
        assert pulses > 0 or not moved, (lr, pulses)  # no baseline "trains" without changing its chip
        seen.append((moved, pulses > 0))
    assert seen == [(False, False), (True, True)]  # both cases happen: the check above is not vacuous


# ------------------------------------------------------------------ re-pricing a recorded run
def test_repricing_a_recorded_run_gives_the_ledger_and_moves_with_each_assumption():
    x = torch.rand(8, 64)
    m = chip(nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 64)), x)
    m.add_adapter("a", rank=8, alpha=8, seed=0)
    c = m.inference_cost(x)
    rec = Recording.of(m, c)
    assert reprice(rec) == pytest.approx(c["energy_pj"], rel=1e-9)
    adc = next(a for a in ASSUMPTIONS if a.name.startswith("ADC"))
    low, high = (reprice(rec, s) for s in adc.settings)
    assert low < c["energy_pj"] < high
    for a in ASSUMPTIONS:  # every assumption about the chip moves its bill (none is decoration)
        if a.name.startswith(("all-digital", "write pulse", "DRAM")):
            continue  # the reference's rule; no write in an inference; nothing spills here
        assert any(reprice(rec, s) != pytest.approx(c["energy_pj"], rel=1e-6) for s in a.settings), a.name
    ref = reference_model(m, x)
    rc = ref.inference_cost(x)
    rrec = Recording.of(ref, rc, "reference")
    assert reprice(rrec) == pytest.approx(rc["energy_pj"], rel=1e-9)
    chip_buffer = next(s for a in ASSUMPTIONS for s in a.settings if s.reference is not None)
    assert reprice(rrec, chip_buffer, m.hardware) > rc["energy_pj"]  # the 64 KiB buffer spills its weights
    with pytest.raises(ValueError, match="unknown price"):
        prices(HW, bogus=2.0)


# ------------------------------------------------------------------ one field table for every list of cost keys
def test_one_field_table_generates_every_list_of_cost_keys():
    from avalanche_rm.evaluation.hardware_metrics import LABELS, hardware_cost_metrics
    from avalanche_rm.unlearning.core import COST_KEYS

    assert QUANTITIES == {f.name: f.unit for f in fields.FIELDS}
    assert {q for _, q in LABELS.values()} == {f.name for f in fields.FIELDS if f.metric}
    assert COST_KEYS == fields.AUDIT_KEYS
    assert set(fields.reply_metrics({"energy_pj": 1.0})) == {fields.FIELD[k].reply_key for k in fields.REPLY_KEYS}
    assert fields.from_reply(fields.reply_metrics({"pulses": 3.0}))["pulses"] == 3.0
    assert {str(m) for m in hardware_cost_metrics(sram=True, trainable_params=False)} == \
        {"HW_energy_pJ", "HW_latency_ns", "HW_pulses", "HW_programmed_cells", "HW_sram_write_B"}
    with pytest.raises(ValueError, match="unknown hardware metric"):
        hardware_cost_metrics(bogus=True)
    for f in fields.PRICED:  # every priced field names a price the chip resolves and a breakdown field
        assert math.isfinite(getattr(prices(HW), f.price)) and f.bucket in QUANTITIES
    src = inspect.getsource(__import__("avalanche_rm.flower.client", fromlist=["x"]))
    assert '"energy-pj"' not in src and "REPLY_KEYS" in src  # the Flower replies come from the table too
