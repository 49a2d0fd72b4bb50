"""Named hardware presets, each citing where its numbers come from.

Figures marked (estimate) are first-order choices where no source states
the value for that chip; they are listed in each preset's ``source``.
"""
from __future__ import annotations

from typing import Callable

from .config import HardwareConfig
from .crossbar import CrossbarConfig
from .device import RMDeviceConfig
from .digital import DigitalUnitConfig

_DIGITAL = ("every digital energy derived by avalanche_rm.costs.prices from the node and supply: Horowitz ISSCC 2014 "
            "(45 nm, 0.9 V: 8/32-bit add 0.03/0.1 pJ, 8/32-bit multiply 0.2/3.1 pJ, FP32 add/multiply 0.9/3.7 pJ; "
            "INT8 MAC = 8-bit multiply + 32-bit add; SRAM 1.25/2.5/12.5 pJ/B at 8 KB/32 KB/1 MB, interpolated "
            "by capacity) scaled by C*V^2 with C proportional to the node; DRAM 2.0 nJ per 64-bit access (the "
            "middle of Horowitz's 1.3-2.6 nJ, DDR3 era), set by its interface and not node-scaled; register files 1 pJ per 32-bit access at 45 nm (Han et al., "
            "EIE, ISCA 2016); a transcendental as 4 MACs (estimate: piecewise-linear unit); 0.5 KiB of local "
            "buffer per PE (Eyeriss, Chen et al. ISCA 2016); a 64-bit SRAM port (8 B per cycle, estimate); one "
            "x16 DDR3-1600 DRAM channel, 3.2 GB/s (JEDEC JESD79-3; estimate of the interface); FP32 master copy "
            "and FP32 optimiser moments (4 B each)")


def _digital(node_nm: float, vdd_v: float, sram_kib: float, mac_time_ns: float, pe_count: int) -> DigitalUnitConfig:
    return DigitalUnitConfig(
        adapter_bits=8,
        activation_bits=8,
        sram_kib=sram_kib,
        local_buffer_kib=0.5 * pe_count,
        transcendental_alu_ops=4.0,
        mac_time_ns=mac_time_ns,
        pe_count=pe_count,
        tech_node_nm=node_nm,
        vdd_v=vdd_v,
        sram_bytes_per_cycle=8.0,
        dram_bandwidth_gb_s=3.2,
    )


_PERIPHERY = ("row DAC drive = a quarter of an ADC conversion (ISAAC, Shafiee et al. ISCA 2016, Table 1: 4 mW of "
              "one-bit DACs against 16 mW of ADCs for the same crossbars per cycle); verify sense = a window compare, "
              "two comparator decisions priced as 1-bit conversions at the ADC's Walden figure of merit (Walden, "
              "IEEE JSAC 1999); cells conduct while their column is connected to its ADC (t_read + t_adc)")


_ADC_RANGE = ("ADC full scale calibrated per tile column block (shared by the input tiles stacked on it) at the "
              "99.9th percentile of the partial sums seen on calibration data, as real macros set ranges from data "
              "rather than the worst case: ISAAC "
              "(Shafiee et al., ISCA 2016) encodes operands so an 8-bit ADC covers its crossbar's partial sums, "
              "NeuRRAM (Wan et al., Nature 2022) tunes its voltage-mode neurons' range to the output distribution, "
              "aihwkit clips outputs at out_bound with bound management, CrossSim sets ADC calibrated_range on "
              "data; adc_range='worst_case' keeps the never-clipping range")


def _paper_180nm() -> HardwareConfig:
    return HardwareConfig(
        name="paper-180nm",
        device=RMDeviceConfig(
            g_min_us=20.0, g_max_us=80.0, n_levels=64,
            prog_noise_rel_sigma=0.0, prog_noise_poly_us=(1.0,), write_gain=0.6,
            wv_tolerance_us=1.0, wv_max_iterations=50,
            pulse_voltage_v=2.0, pulse_width_ns=50.0, wire_capacitance_ff=20.0,
            verify_voltage_v=0.2, verify_time_ns=10.0,
            read_noise_sigma_us=0.2, read_voltage_v=0.2, read_time_ns=10.0,
            drift_model="log_gaussian", drift_t0_s=1.0,
            drift_mean_us_per_ln_s=-0.089, drift_std_us_per_sqrt_ln_s=0.265,
        ),
        crossbar=CrossbarConfig(
            rows=128, cols=128, mapping="offset", g_zero_us=50.0, weight_scale="tensor",
            dac_bits=8, adc_bits=8, adc_range="calibrated", adc_calibration_percentile=99.9,
            adc_energy_pj=12.8, adc_time_ns=50.0,
            col_mux=8, program_parallel_cells=128,
        ),
        digital=_digital(180.0, 1.8, sram_kib=64.0, mac_time_ns=10.0, pe_count=12),
        source=(
            "Reference chip (arXiv 2601.10037; MrLinNing/RMAdaptiveMachine README v3): 180 nm CMOS, "
            "128x128 1T1R macro. Its code: 20-80 uS window, zero weight at 50 uS, one cell per weight, "
            "one scale per tensor (30 uS/max|w|), nominal write noise 1 uS -> per-pulse sigma 1 uS, "
            "acceptance window +-1 uS. Not stated by the reference, taken from elsewhere: 64 levels "
            "and 2 V write pulses (MLP+NeuroSim Cell.cpp IdealDevice), 50 ns pulses (DNN+NeuroSim V2.1), "
            "pulse energy V^2*G*t + V^2*C_wire (NeuroSim Cell.cpp); read noise 0.2 uS and log-time "
            "relaxation (mean -0.089 uS/ln s, ~0.76 uS std at 1 h) from aihwkit ReRamCMONoiseModel "
            "(Falcone et al. 2025); col_mux 8 (DNN+NeuroSim V1.4 numColMuxed); 8-bit DAC/ADC (estimate, "
            "aihwkit StandardHWATrainingPreset uses 8 bit); " + _ADC_RANGE + "; ADC 12.8 pJ/conversion = Walden FoM 50 fJ/step "
            "x 2^8 for a 180 nm SAR ADC (estimate, Murmann ADC survey range), 50 ns/conversion (estimate); "
            + _PERIPHERY + "; "
            "write gain 0.6 per pulse (estimate giving ~5 pulses per cell from reset, inside the 5-20 "
            "range quoted for 4-5 bit targets); offset mapping senses each column against a reference column "
            "per tile (one cell per row at 50 uS, programmed and read like the others). Digital unit: " + _DIGITAL +
            "; at 180 nm / 1.8 V (x16): INT8 MAC 4.8 pJ, FP32 MAC 73.6 pJ, 64 KiB SRAM 55 pJ/B, 0.5 KiB local "
            "buffer 5 pJ/B; DRAM 250 pJ/B; 64 KiB SRAM and 12 PEs (4x3 PE array drawn in the reference's Fig. "
            "main.png; SRAM size not stated: estimate), 6 KiB of local buffers."
        ),
    )


def _rram_generic() -> HardwareConfig:
    return HardwareConfig(
        name="rram-generic",
        device=RMDeviceConfig(
            g_min_us=8.0, g_max_us=90.0, n_levels=32,
            prog_noise_rel_sigma=0.0, prog_noise_poly_us=(0.01122, 0.01129 * 90.0), write_gain=0.5,
            wv_tolerance_us=1.0, wv_max_iterations=60,
            pulse_voltage_v=1.5, pulse_width_ns=100.0, wire_capacitance_ff=10.0,
            verify_voltage_v=0.2, verify_time_ns=10.0,
            read_noise_sigma_us=0.22, read_voltage_v=0.2, read_time_ns=10.0,
            drift_model="log_gaussian", drift_t0_s=1.0,
            drift_mean_us_per_ln_s=-0.089, drift_std_us_per_sqrt_ln_s=0.265,
        ),
        crossbar=CrossbarConfig(
            rows=256, cols=256, mapping="differential", weight_scale="column",
            dac_bits=8, adc_bits=8, adc_range="calibrated", adc_calibration_percentile=99.9,
            adc_energy_pj=1.3, adc_time_ns=10.0,
            col_mux=8, program_parallel_cells=256,
        ),
        digital=_digital(40.0, 1.1, sram_kib=256.0, mac_time_ns=2.0, pe_count=64),
        source=(
            "Filamentary CMO/HfOx RRAM as modelled by aihwkit ReRamCMONoiseModel (Falcone et al., "
            "arXiv 2502.04524): 8-90 uS, programming sigma 0.01122 + 0.01129*g uS, read sigma ~0.22 uS, "
            "drift mean -0.089 uS per ln s and ~0.76 uS std at 1 h. 256x256 cores (NeuRRAM, Wan et al. "
            "Nature 2022); differential pairs and per-column scales (aihwkit SinglePairConductanceConverter "
            "style); 32 levels (estimate inside the 4-6 bit range of RRAM write-verify); 1.5 V / 100 ns "
            "pulses (estimate inside NeuroSim's 2-4 V, 10-300 ns range); ADC 1.3 pJ = 5 fJ/step x 2^8 "
            "at 40 nm (estimate); col_mux 8 (DNN+NeuroSim V1.4); " + _ADC_RANGE + "; " + _PERIPHERY +
            ". Digital unit: " + _DIGITAL + "; at 40 nm / 1.1 V."
        ),
    )


def _pcm_like() -> HardwareConfig:
    return HardwareConfig(
        name="pcm-like",
        device=RMDeviceConfig(
            g_min_us=0.0, g_max_us=25.0, n_levels=128,
            prog_noise_rel_sigma=0.0, prog_noise_poly_us=(0.26348, 1.9650, -1.1731), write_gain=0.5,
            wv_tolerance_us=0.5, wv_max_iterations=60,
            pulse_voltage_v=3.0, pulse_width_ns=100.0, wire_capacitance_ff=20.0,
            verify_voltage_v=0.2, verify_time_ns=250.0,
            read_noise_sigma_us=0.1, read_voltage_v=0.2, read_time_ns=250.0,
            drift_model="power_law", drift_t0_s=20.0, drift_nu_mean=0.05, drift_nu_std=0.008,
        ),
        crossbar=CrossbarConfig(
            rows=256, cols=256, mapping="differential", weight_scale="column",
            dac_bits=8, adc_bits=8, adc_range="calibrated", adc_calibration_percentile=99.9,
            adc_energy_pj=0.5, adc_time_ns=2.0,
            col_mux=8, program_parallel_cells=256,
        ),
        digital=_digital(14.0, 0.8, sram_kib=1024.0, mac_time_ns=1.0, pe_count=256),
        source=(
            "aihwkit PCMLikeNoiseModel (Nandakumar et al., ICECS 2019; ~1M IBM PCM devices): g_max 25 uS, "
            "differential pair, programming sigma (0.26348 + 1.9650x - 1.1731x^2) uS with x=g/g_max, "
            "power-law drift nu ~0.05 (clipped range 0.049-0.1), sigma_nu >= 0.008, t0 20 s, t_read 250 ns; "
            "1/f read noise 0.1 uS (Q_s=0.0088/x^0.65 is ~0.17 uS at mid range and shrinks towards t_read; estimate). 256x256 cores, 8-bit I/O "
            "and 14 nm node as HERMES (Le Gallo et al., Nat. Electron. 2023); ADC 0.5 pJ (estimate "
            "consistent with HERMES' 0.2-0.8 pJ/MAC chip level); 128 levels (estimate: PCM is near "
            "continuous); 3 V / 100 ns pulses (estimate); " + _ADC_RANGE + "; " + _PERIPHERY +
            ". Digital unit: " + _DIGITAL + "; at 14 nm / 0.8 V."
        ),
    )


def _ideal() -> HardwareConfig:
    base = _paper_180nm()
    return base.replace(
        name="ideal",
        device=dict(n_levels=None, prog_noise_poly_us=(0.0,), write_gain=1.0, wv_tolerance_us=1e-3,
                    read_noise_sigma_us=0.0, drift_model="none"),
        crossbar=dict(dac_bits=None, adc_bits=None),
        digital=dict(adapter_bits=None, activation_bits=None),
        source="paper-180nm energies with every non-ideality off (continuous levels, no noise, no quantisation): "
               "a numerical reference, not a real chip. " + base.source,
    )


_PRESETS: dict[str, Callable[[], HardwareConfig]] = {
    "paper-180nm": _paper_180nm,
    "rram-generic": _rram_generic,
    "pcm-like": _pcm_like,
    "ideal": _ideal,
}


def list_presets() -> list[str]:
    """Names accepted by :func:`get_preset`."""
    return sorted(_PRESETS)


def get_preset(name: str, **overrides) -> HardwareConfig:
    """A named hardware preset; ``overrides`` are passed to :meth:`HardwareConfig.replace`."""
    if name not in _PRESETS:
        raise ValueError(f"unknown hardware preset {name!r}; choose one of {list_presets()}")
    cfg = _PRESETS[name]()
    return cfg.replace(**overrides) if overrides else cfg
