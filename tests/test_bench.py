"""The bench's floors compute what they stand for (a floor that skipped work would flatter every ratio)."""
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from avalanche_rm.bench import _SoftwareLoRA, _tiled_matmul
from avalanche_rm.hardware import get_preset
from avalanche_rm.nn import HybridConv2d, convert_to_hybrid


@pytest.mark.parametrize("grouped", [True, False])  # oneDNN grouped 1x1 convolutions (on a CPU with it), bmm
def test_tiled_floor_is_the_convolution_of_the_programmed_weights(grouped):
    torch.manual_seed(0)
    # 144 inputs: two tiles of 128 rows (the second one padded); then one tile, stride 2
    net = nn.Sequential(nn.Conv2d(16, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 6, 3, padding=1, stride=2),
                        nn.Flatten(), nn.Linear(6 * 6 * 6, 5))
    x = torch.randn(3, 16, 12, 12)
    hyb = convert_to_hybrid(net, get_preset("paper-180nm"))
    hyb.program(seed=0, calibration_data=x)
    assert [m.grid.n_in_tiles for m in hyb.hybrid_layers()] == [2, 1, 2]
    # the floor runs each layer on its cells in ADC codes per DAC code; undo that scale to compare layer by layer
    h = x
    for m in hyb.base_model:
        if not hasattr(m, "array"):
            h = m(h)
            continue
        p, w_eff = m.array.prepared()
        with torch.no_grad():
            got = _tiled_matmul(SimpleNamespace(base_model=nn.Sequential(m)), grouped_tiles=grouped)(h)
            scale = p.out_factor * 127.0
            if isinstance(m, HybridConv2d):
                got = got * scale.view(1, -1, 1, 1)
                ref = F.conv2d(h, w_eff.view(m.out_channels, m.in_channels, *m.kernel_size), None, m.stride, m.padding)
            else:
                got = got * scale
                ref = h @ w_eff.t()
        torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)
        h = ref


def test_software_lora_trains_only_its_adapter():
    torch.manual_seed(0)
    layer = _SoftwareLoRA(nn.Linear(6, 4), rank=2, alpha=4.0)
    x = torch.randn(5, 6)
    torch.testing.assert_close(layer(x), layer.base(x))  # B starts at zero: the base function
    layer(x).sum().backward()
    assert layer.base.weight.grad is None and layer.lora_B.grad is not None and layer.lora_bias.grad is not None
