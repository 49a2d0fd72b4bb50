"""``avalanche-rm scenario faces|speakers|generation``: pick the data, build the recipe, run it."""
from __future__ import annotations

from pathlib import Path

from ..scenarios.common import NoiseStudy
from ..scenarios.data import face_data, speaker_data

SCENARIOS = ("faces", "speakers", "generation")


def load_scenario_data(name: str, data: str | Path | None, seed: int, augment: int = 30):
    """Real data when ``data`` points at it, else the offline stand-in (the report says which).

    faces: ``olivettifaces.mat`` or a scikit-learn ``data_home`` holding Olivetti;
    speakers: an FSDD ``recordings`` folder or an SSC ``ssc_train.h5``;
    generation: always the bundled digits.
    """
    if name == "faces":
        if data is None:
            return face_data(6, standin=True, seed=seed)
        p = Path(data)
        if p.suffix == ".mat":
            return face_data(6, mat_path=p, augment=augment, seed=seed)
        if p.is_dir():
            return face_data(6, data_home=p, augment=augment, seed=seed)
        raise ValueError(f"--data for faces must be olivettifaces.mat or a scikit-learn data_home folder, got {str(p)!r}")
    if name == "speakers":
        if data is None:
            return speaker_data(standin=True, seed=seed)
        p = Path(data)
        if p.suffix in (".h5", ".hdf5"):
            return speaker_data(ssc_h5=p, seed=seed)
        if p.is_dir():
            return speaker_data(fsdd_root=p, seed=seed)
        raise ValueError(f"--data for speakers must be an FSDD recordings folder or ssc_train.h5, got {str(p)!r}")
    if name == "generation":
        if data is not None:
            raise ValueError("the generation scenario runs on the bundled digits; drop --data")
        return None
    raise ValueError(f"unknown scenario {name!r}; choose one of {SCENARIOS}")


def run_scenario(name: str, *, data: str | Path | None = None, preset: str = "paper-180nm", seed: int = 0,
                 device: str = "cpu", epoch_scale: float = 1.0, noise_runs: int = 100,
                 noise_sigmas_us: tuple[float, ...] = tuple(float(s) for s in range(1, 11)),
                 calibration_sigma_us: float = 2.0, hidden: int | None = None, augment: int = 30,
                 composition: str = "summed", method: str | None = None, method_options: dict | None = None,
                 progress: bool = True) -> dict:
    """Run one scenario with the reference recipe scaled by ``epoch_scale``; returns its report.

    ``method`` (with ``method_options``) replaces the recipe's unlearning objective (faces: the hybrid's;
    speakers and generation: both designs', as the reference runs one objective on both)."""
    if not epoch_scale > 0:
        raise ValueError(f"epoch scale must be > 0, got {epoch_scale!r}")
    if hidden is not None and hidden < 1:
        raise ValueError(f"hidden must be >= 1, got {hidden!r}")
    if composition != "summed" and name != "faces":
        raise ValueError(f"composition={composition!r} applies to the faces scenario only")
    d = load_scenario_data(name, data, seed, augment)
    noise = NoiseStudy(tuple(noise_sigmas_us), noise_runs, calibration_sigma_us)
    if name == "faces":
        from ..scenarios.faces import FaceConfig, run_faces

        return run_faces(FaceConfig(epoch_scale=epoch_scale, noise=noise, composition=composition,
                                    unlearn_method=method, unlearn_options=method_options),
                         data=d, preset=preset, seed=seed, device=device, progress=progress)
    if name == "speakers":
        from ..scenarios.speakers import SpeakerConfig, run_speakers

        cfg = SpeakerConfig(epoch_scale=epoch_scale, noise=noise, unlearn_method=method, unlearn_options=method_options,
                            **({"hidden": hidden} if hidden else {}))
        return run_speakers(cfg, data=d, preset=preset, seed=seed, device=device, progress=progress)
    from ..scenarios.generation import GenerationConfig, run_generation

    cfg = GenerationConfig(epoch_scale=epoch_scale, unlearn_method=method, unlearn_options=method_options,
                           **({"hidden": hidden} if hidden else {}))
    return run_generation(cfg, preset=preset, seed=seed, device=device, progress=progress)
