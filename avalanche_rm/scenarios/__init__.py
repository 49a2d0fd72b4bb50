"""The reference's three scenarios on simulated hybrid chips: faces, speakers, stylised generation.

``run_faces``, ``run_speakers`` and ``run_generation`` each return the standard
report (hybrid LoRA against a full-weight baseline on the same chip); the
models, data loaders, noise studies and the generation metric are importable
on their own.
"""
from .data import ScenarioData, face_data, generation_data, speaker_data
from .faces import FaceConfig, run_faces
from .generation import GenerationConfig, run_generation
from .models import DiffusionDenoiser, MLPMixer, SpikingLSM
from .speakers import SpeakerConfig, run_speakers

__all__ = ["DiffusionDenoiser", "FaceConfig", "GenerationConfig", "MLPMixer", "ScenarioData", "SpeakerConfig",
           "SpikingLSM", "face_data", "generation_data", "run_faces", "run_generation", "run_speakers",
           "speaker_data"]
