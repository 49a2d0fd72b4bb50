import copy
import pickle

import pytest
import torch
from torch import nn

from avalanche_rm.hardware import get_preset
from avalanche_rm.nn import HybridLinear, HybridModel, convert_to_hybrid


def mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(200, 150), nn.ReLU(), nn.Linear(150, 10))


def cnn():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 4, 3, stride=2), nn.Flatten(),
                         nn.Linear(4 * 3 * 3, 5))


@pytest.mark.parametrize("mapping", ["offset", "differential"])
def test_ideal_hybrid_equals_torch(mapping):
    m = mlp()
    hw = get_preset("ideal", crossbar={"mapping": mapping, "rows": 64, "cols": 64})
    h = convert_to_hybrid(m, hw)
    h.program(seed=0)
    x = torch.randn(32, 200)
    with torch.no_grad():
        assert torch.allclose(h(x), m(x), atol=1e-5, rtol=1e-5)


def test_ideal_hybrid_conv_equals_torch():
    m = cnn()
    h = convert_to_hybrid(m, get_preset("ideal", crossbar={"rows": 16, "cols": 16}))
    h.program(seed=0)
    x = torch.randn(4, 3, 8, 8)
    with torch.no_grad():
        assert torch.allclose(h(x), m(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("stride,padding,dilation", [(1, 1, 1), (2, 0, 1), (2, 2, 1), (1, 1, 2)])
def test_conv_patches_match_the_im2col_reference(stride, padding, dilation):
    """The strided-patch conv path gives the im2col rows' DAC/ADC result and the straight-through gradient."""
    import torch.nn.functional as F

    from avalanche_rm.hardware import crossbar as xb

    torch.manual_seed(0)
    conv = nn.Conv2d(5, 6, 3, stride=stride, padding=padding, dilation=dilation)
    hw = get_preset("paper-180nm", crossbar={"rows": 16, "cols": 16})  # 45 inputs: 3 tiles, padded
    h = convert_to_hybrid(nn.Sequential(conv), hw)
    h.program(seed=0)
    h.set_analog_noise(False)
    layer = h.hybrid_layers()[0]
    x = torch.randn(2, 5, 9, 11, requires_grad=True)
    y = h(x)
    prepared, eff = layer.array.prepared()
    rows = F.unfold(x.detach(), 3, dilation=dilation, padding=padding, stride=stride).transpose(1, 2).reshape(-1, 45)
    alpha, buf, codes = xb.dac_encode(hw.crossbar, rows, xb.input_pad(hw.crossbar, layer.grid))
    ref = xb.analog_mvm(hw.crossbar, 0.0, buf, codes, alpha, layer.grid, prepared).y
    ho, wo = y.shape[2:]
    ref = ref.view(2, ho * wo, 6).transpose(1, 2).reshape(2, 6, ho, wo) + layer.bias.view(1, -1, 1, 1)
    assert torch.allclose(y, ref, atol=1e-6)
    g = torch.randn_like(y)
    y.backward(g)
    xr = x.detach().clone().requires_grad_(True)
    F.conv2d(xr, eff.view(6, 5, 3, 3), None, stride, padding, dilation).backward(g)
    assert torch.allclose(x.grad, xr.grad, atol=1e-5)


@pytest.mark.parametrize("kernel,stride", [((3, 3), (1, 1)), ((3, 3), (2, 2)), ((2, 3), (3, 1)), ((1, 5), (1, 2))])
def test_window_max_is_max_pooling(kernel, stride):
    """Each receptive field's DAC scale comes from a running maximum that must equal max pooling exactly."""
    import torch.nn.functional as F

    from avalanche_rm.nn.layers import _window_max

    a = torch.randn(3, 1, 11, 13).abs()
    ref = F.max_pool2d(a, kernel, stride)
    assert torch.equal(_window_max(a, kernel, stride, tuple(ref.shape[2:])), ref)


def test_quantisation_error_stays_inside_dac_adc_bound():
    torch.manual_seed(1)
    lin = nn.Linear(300, 40)
    dac_bits, adc_bits, rows = 6, 7, 128
    hw = get_preset("ideal", crossbar={"dac_bits": dac_bits, "adc_bits": adc_bits, "rows": rows,
                                       "adc_range_fraction": 1.0})
    h = HybridLinear.from_linear(lin, hw, name="l")
    h.program(seed=0)
    x = torch.randn(64, 300)
    with torch.no_grad():
        err = (h(x) - lin(x)).abs()
    w = lin.weight
    alpha = x.abs().amax(1, keepdim=True)
    n_d, n_a = 2 ** (dac_bits - 1) - 1, 2 ** (adc_bits - 1) - 1
    dac_bound = (alpha / (2 * n_d)) * w.abs().sum(1)  # [B, out]
    step_w = h.array.adc_fs_us / n_a / float(h.array.scale_us)  # one ADC step per column, weight units
    adc_bound = alpha * (h.grid.n_in_tiles * step_w / 2)
    assert (err <= dac_bound + adc_bound + 1e-5).all()
    assert err.max() > 0  # quantisation really happened


def test_read_noise_has_the_modelled_spread():
    lin = nn.Linear(128, 64, bias=False)
    sigma = 0.5
    hw = get_preset("ideal", device={"read_noise_sigma_us": sigma}, crossbar={"rows": 128})
    h = HybridLinear.from_linear(lin, hw, name="l")
    h.program(seed=0)
    x = torch.ones(4000, 128)
    torch.manual_seed(0)
    with torch.no_grad():
        y = h(x)
        ref = lin(x)
    # noise on one column = sigma * ||x|| * sqrt(2) uS (the cell and its reference cell are both read),
    # i.e. sigma*sqrt(2*128)/scale in weight units
    expected = sigma * (2 * 128) ** 0.5 / float(h.array.scale_us)
    assert (y - ref).std().item() == pytest.approx(expected, rel=0.05)


def test_same_seed_same_chip_different_seed_different_chip():
    m = mlp()
    hw = get_preset("paper-180nm")
    a, b, c = (convert_to_hybrid(m, hw) for _ in range(3))
    ra, rb = a.program(seed=3), b.program(seed=3)
    c.program(seed=4)
    la, lb, lc = (x.hybrid_layers()[0] for x in (a, b, c))
    assert torch.equal(la.array.g_us, lb.array.g_us) and ra.pulses == rb.pulses and ra.energy_pj == rb.energy_pj
    assert not torch.equal(la.array.g_us, lc.array.g_us)
    x = torch.rand(8, 200)
    torch.manual_seed(5)
    ya = a(x)
    torch.manual_seed(5)
    yb = b(x)
    assert torch.equal(ya, yb)


def test_adapter_add_then_delete_is_bit_identical():
    h = convert_to_hybrid(mlp(), get_preset("paper-180nm"))
    h.program(seed=0)
    x = torch.rand(16, 200)
    h.noise_source.reseed(9)  # the same read-noise draws for both forwards
    before = h(x)
    h.add_adapter("a", rank=4, alpha=8)
    with torch.no_grad():
        for p in h.adapter_parameters(["a"]):
            p.add_(0.1)
    h.delete_adapter("a")
    h.noise_source.reseed(9)
    assert torch.equal(h(x), before)
    assert h.adapter_names == [] and list(h.parameters()) == []


def test_adapter_verbs_and_parameters_are_only_lora_factors():
    h = convert_to_hybrid(mlp(), get_preset("paper-180nm"))
    h.program(seed=0)
    assert list(h.parameters()) == []  # analogue base is buffers only
    h.add_adapter("t0", rank=4, alpha=8, seed=1)
    h.add_adapter("t1", rank=2, alpha=4, target_modules=["2"], seed=1)
    assert h.adapter_names == ["t0", "t1"] and h.active_adapters == ["t0", "t1"]
    assert {id(p) for p in h.parameters()} == {id(p) for p in h.adapter_parameters()}
    assert h.adapter_num_parameters("t0") == 4 * (200 + 150) + 4 * (150 + 10)
    sd = h.adapter_state_dict("t1")
    assert set(sd) == {"2.lora_A", "2.lora_B"}
    h.set_active_adapters(["t1"])
    assert h.hybrid_layers()[0].active_adapters == []
    with pytest.raises(ValueError, match="zzz"):
        h.set_active_adapters(["zzz"])
    with pytest.raises(ValueError, match="rank"):
        h.add_adapter("bad", rank=0)
    with pytest.raises(ValueError, match="already exists"):
        h.add_adapter("t0")
    with pytest.raises(ValueError, match="adapter name"):
        h.add_adapter("has space")
    before = h.adapter_names
    for reserved in ("update", "keys", "pop"):
        with pytest.raises(ValueError, match="reserved"):
            h.add_adapter(reserved)
    assert h.adapter_names == before and all("update" not in layer.lora_A for layer in h.hybrid_layers())
    # a refused load changes nothing
    good = h.adapter_state_dict("t1")
    with pytest.raises(ValueError, match="shape"):
        h.load_adapter_state_dict("t1", {"2.lora_A": torch.zeros(3, 3), "2.lora_B": good["2.lora_B"]})
    assert all(torch.equal(good[k], v) for k, v in h.adapter_state_dict("t1").items())


def test_adapter_trains_and_improves_loss():
    torch.manual_seed(0)
    h = convert_to_hybrid(mlp(), get_preset("paper-180nm"))
    h.program(seed=0)
    h.add_adapter("a", rank=4, alpha=8, seed=0)
    x, y = torch.rand(128, 200), torch.randint(0, 10, (128,))
    opt = torch.optim.Adam(h.adapter_parameters(), lr=1e-2)
    h.attach_optimizer(opt)
    losses = []
    for _ in range(30):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(h(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] * 0.8
    train = h.ledger.summary("train")
    assert train.steps == 30 and train.sram_write_bytes > 0 and train.digital_macs > 0
    assert train.pulses == 0  # training never writes analogue cells
    assert h.ledger.summary("infer").analog_macs == 0  # every layer's training forward is charged to "train"


def test_merge_adapter_reprograms_and_is_charged():
    h = convert_to_hybrid(mlp(), get_preset("paper-180nm"))
    h.program(seed=0)
    deploy_pulses = h.ledger.summary("deploy").pulses
    h.add_adapter("a", rank=4, alpha=8, seed=0)
    with torch.no_grad():
        for p in h.adapter_parameters():
            p.normal_(0, 0.3)
    layer = h.hybrid_layers()[0]
    expected = layer.target_weight() + layer.get_delta_weight("a")
    rep = h.merge_adapter("a")
    assert rep.pulses > 0 and h.ledger.summary("merge").pulses == rep.pulses
    assert h.ledger.summary("deploy").pulses == deploy_pulses
    assert "a" not in h.adapter_names
    lim = float(h.hardware.device.g_range_us / 2 / layer.array.scale_us)
    err = (layer.target_weight() - expected.clamp(-lim, lim)).abs().max()
    assert err <= h.hardware.device.level_step_us / float(layer.array.scale_us)


def test_merging_a_zero_adapter_pulses_nothing_and_pulses_grow_with_the_change():
    h = convert_to_hybrid(mlp(), get_preset("paper-180nm"))
    h.program(seed=0)
    h.add_adapter("zero", rank=4, alpha=8, seed=0)  # B = 0: the merged weights are the programmed ones
    rep = h.merge_adapter("zero")
    assert rep.pulses == 0 and rep.cells == 0 and h.ledger.summary("merge").pulses == 0
    pulses = []
    for k, scale in enumerate((0.005, 0.02, 0.08)):
        h.add_adapter(f"d{k}", rank=4, alpha=8, seed=k)
        with torch.no_grad():
            h.hybrid_layers()[0].lora_B[f"d{k}"].normal_(0, scale, generator=torch.Generator().manual_seed(k))
        pulses.append(h.merge_adapter(f"d{k}").pulses)
    assert 0 < pulses[0] < pulses[1] < pulses[2], pulses


def test_drift_changes_weights_and_stuck_cells_stay():
    hw = get_preset("paper-180nm", device={"sa0_rate": 0.01, "sa1_rate": 0.01})
    h = convert_to_hybrid(mlp(), hw)
    rep = h.program(seed=0)
    assert rep.failed_cells > 0 and sum(rep.failed_per_layer.values()) == rep.failed_cells
    layer = h.hybrid_layers()[0]
    stuck = layer.array.fault_codes(0)[0] != 0
    before = layer.array.g_us.clone()
    h.drift(3600.0)
    assert torch.equal(layer.array.g_us[stuck], before[stuck])
    assert not torch.equal(layer.array.g_us[~stuck], before[~stuck])
    assert float(layer.array.age_s) == 3600.0
    with pytest.raises(ValueError, match="drift seconds"):
        h.drift(-1.0)


def test_bad_inputs_raise_clear_errors():
    h = convert_to_hybrid(mlp(), get_preset("paper-180nm"))
    with pytest.raises(RuntimeError, match="not programmed"):
        h(torch.rand(2, 200))
    h.program(seed=0)
    with pytest.raises(ValueError, match="200 features"):
        h(torch.rand(2, 199))
    with pytest.raises(ValueError, match="NaN"):
        h(torch.full((2, 200), float("nan")))
    with pytest.raises(ValueError, match="dtype"):
        h(torch.ones(2, 200, dtype=torch.long))
    bad = nn.Linear(4, 2)
    with torch.no_grad():
        bad.weight[0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        convert_to_hybrid(bad, get_preset("paper-180nm"))
    with pytest.raises(ValueError, match="weight shape"):
        HybridLinear(4, 2, get_preset("paper-180nm"), weight=torch.zeros(3, 3))
    with pytest.raises(ValueError, match="seed"):
        h.program(seed=-1)
    with pytest.raises(ValueError, match="target_modules"):
        convert_to_hybrid(mlp(), get_preset("paper-180nm"), target_modules=["nope"])


def test_deepcopy_and_pickle_keep_state():
    h = convert_to_hybrid(mlp(), get_preset("paper-180nm"))
    h.program(seed=0)
    h.add_adapter("a", rank=2, alpha=2, seed=0)
    h(torch.rand(4, 200))
    for clone in (copy.deepcopy(h), pickle.loads(pickle.dumps(h))):
        assert isinstance(clone, HybridModel)
        assert clone.adapter_names == ["a"]
        assert torch.equal(clone.hybrid_layers()[0].array.g_us, h.hybrid_layers()[0].array.g_us)
        assert clone.ledger.total().as_dict() == h.ledger.total().as_dict()
        assert clone.ledger is not h.ledger
        assert all(layer.ledger is clone.ledger for layer in clone.hybrid_layers())


def test_state_dict_roundtrip_restores_chip():
    h = convert_to_hybrid(mlp(), get_preset("paper-180nm"))
    h.program(seed=2)
    h.add_adapter("a", rank=2, alpha=2, seed=0)
    other = convert_to_hybrid(mlp(), get_preset("paper-180nm"))
    other.add_adapter("a", rank=2, alpha=2, seed=1)
    other.load_state_dict(h.state_dict())
    x = torch.rand(4, 200)
    h.set_analog_noise(False)
    other.set_analog_noise(False)
    assert torch.equal(other(x), h(x))


def test_ledger_phases_and_event_driven_energy():
    h = convert_to_hybrid(nn.Sequential(nn.Linear(64, 32)), get_preset("paper-180nm"))
    h.program(seed=0)
    h.eval()
    with torch.no_grad():
        h(torch.zeros(10, 64))
    silent = h.ledger.summary("infer")
    assert silent.analog_macs == 0 and silent.dac_conversions == 0
    with torch.no_grad(), h.ledger.phase("custom"):
        h(torch.ones(10, 64))
    busy = h.ledger.summary("custom")
    assert busy.analog_macs == 10 * 64 * 32 and busy.energy_pj > 0
    assert set(h.ledger.phases) >= {"deploy", "infer", "custom"}
    snap = h.ledger.snapshot()
    with torch.no_grad():
        h(torch.ones(3, 64))  # phase "infer"
        with h.ledger.phase("custom"):
            h(torch.ones(2, 64))
    spent = h.ledger.total_since(snap)  # summed over both phases, earlier charges excluded
    assert spent["analog_macs"] == 5 * 64 * 32 and spent["pulses"] == 0


def test_differential_targets_are_stored_signed_and_decode_to_the_weights():
    m = mlp()
    h = convert_to_hybrid(m, get_preset("rram-generic"))
    layer = h.hybrid_layers()[0]
    assert layer.array.target.shape[0] == 1 and layer.array.target.dtype == torch.int8
    g = layer.array.target_conductance()
    assert g.shape[0] == 2 and bool(((g[0] == h.hardware.device.g_min_us) | (g[1] == h.hardware.device.g_min_us)).all())
    step_w = h.hardware.device.level_step_us / layer.array.scale_us.view(-1, 1)
    assert ((layer.target_weight() - m[0].weight).abs() <= step_w / 2 + 1e-6).all()


def test_failures_are_reported_per_tile_and_remapped_to_spares():
    faulty = {"sa0_rate": 0.003, "sa1_rate": 0.003}
    m = mlp()
    rep_only = convert_to_hybrid(m, get_preset("paper-180nm", device=faulty, crossbar={"rows": 64, "cols": 64}))
    r1 = rep_only.program(seed=0)
    assert r1.failed_cells > 0
    assert sum(sum(map(sum, t)) for t in r1.failed_per_tile.values()) == r1.failed_cells
    assert len(r1.failed_per_tile["0"]) == 4  # 200 inputs on 64-row tiles
    remap = convert_to_hybrid(m, get_preset("paper-180nm", device=faulty,
                                           crossbar={"rows": 64, "cols": 64, "failure_policy": "remap",
                                                     "spare_cols": 16}))
    r2 = remap.program(seed=0)
    assert sum(r2.remapped_columns.values()) > 0
    assert r2.failed_cells < 0.7 * r1.failed_cells  # spares can be faulty too, so not all failures go away
    assert r2.cells > r1.cells and r2.energy_pj > r1.energy_pj  # spares are programmed and charged
    layer = remap.hybrid_layers()[0]
    before = layer.array.g_us.clone()
    remap.drift(10.0)
    stuck = layer.array.fault_codes(0)[0] != 0
    assert torch.equal(layer.array.g_us[stuck], before[stuck])
    with pytest.raises(ValueError, match="spare_cols"):
        get_preset("paper-180nm", crossbar={"failure_policy": "remap"})
