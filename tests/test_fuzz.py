"""Property-based checks: every config or payload either validates or raises ValueError naming a field."""
import math

from hypothesis import given, settings
from hypothesis import strategies as st

from avalanche_rm.benchmarks import ForgetRequest
from avalanche_rm.hardware import CrossbarConfig, RMDeviceConfig

numbers = st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=32), st.integers(-10, 300), st.none(),
                    st.text(max_size=3), st.booleans())

DEVICE_FIELDS = ["g_min_us", "g_max_us", "n_levels", "prog_noise_rel_sigma", "write_gain", "wv_tolerance_us",
                 "wv_max_iterations", "pulse_voltage_v", "pulse_width_ns", "read_noise_sigma_us", "drift_t0_s",
                 "sa0_rate", "sa1_rate", "verify_guard_sigmas"]
XBAR_FIELDS = ["rows", "cols", "dac_bits", "adc_bits", "adc_range_fraction", "adc_energy_pj", "col_mux",
               "program_parallel_cells", "g_zero_us"]


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(DEVICE_FIELDS), numbers, max_size=4))
def test_device_config_fuzz(kw):
    try:
        cfg = RMDeviceConfig(**kw)
    except ValueError as e:
        assert any(f in str(e) for f in kw), (kw, str(e))
        return
    assert cfg.g_max_us > cfg.g_min_us >= 0 and math.isfinite(cfg.g_max_us)
    assert cfg.n_levels is None or cfg.n_levels >= 2


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(XBAR_FIELDS), numbers, max_size=4))
def test_crossbar_config_fuzz(kw):
    try:
        cfg = CrossbarConfig(**kw)
    except ValueError as e:
        assert any(f in str(e) for f in kw), (kw, str(e))
        return
    assert cfg.rows >= 1 and cfg.cols >= 1


payload_values = st.one_of(st.none(), st.integers(-5, 50), st.text(max_size=4), st.booleans(),
                           st.lists(st.one_of(st.integers(-3, 40), st.text(max_size=2)), max_size=4),
                           st.dictionaries(st.text(max_size=2), st.integers(), max_size=2))


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(st.sampled_from(["requester", "sample_ids", "classes", "owner", "request_id", "junk"]),
                       payload_values, max_size=4))
def test_forget_request_payload_fuzz(payload):
    try:
        req = ForgetRequest.from_dict(payload)
    except ValueError:
        return
    assert req.kind in ("samples", "classes", "owner")
    assert sum(x is not None for x in (req.sample_ids, req.classes, req.owner)) == 1
    assert ForgetRequest.from_dict(req.to_dict()) == req


_KEY = None


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["requester", "sample_ids", "classes", "owner", "request_id", "method", "audience", "issued_at",
                        "key_id", "signature"]),
       st.one_of(st.none(), st.integers(-3, 2 ** 40), st.text(max_size=8), st.booleans(),
                 st.lists(st.integers(0, 50), max_size=3)))
def test_a_signed_request_altered_anywhere_is_refused(field, value):
    """Change any one field of a signed request's JSON: it fails to parse (ValueError) or to verify (ForgetRefused)."""
    import pytest

    from avalanche_rm.unlearning import ForgetRefused, SignedRequest, generate_keys

    global _KEY
    if _KEY is None:
        _KEY = generate_keys("fuzz lab", owners=[2], controllers=["dpo"])
    trust, keys = _KEY
    original = keys[2].sign(ForgetRequest(requester=2, sample_ids=(3, 4), method="neg_ce"), "fuzz lab")
    d = original.to_dict()
    target = d if field in ("audience", "issued_at", "key_id", "signature") else d["request"]
    target[field] = value
    try:
        signed = SignedRequest.from_dict(d)
    except ValueError:
        return
    if signed == original:  # the same request written another way (e.g. ids reordered): nothing altered
        return
    with pytest.raises(ForgetRefused):
        trust.verify(signed)
