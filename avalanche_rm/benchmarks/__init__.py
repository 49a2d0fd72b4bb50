"""Avalanche benchmarks: digits (offline default), faces, speakers, and Avalanche's classics."""
from .classic import split_cifar, split_mnist
from .digits import PublicPrivateSplit, assign_owners, public_private_digits, split_digits, tensor_dataset
from .forget import ForgetRequest, LearnForgetStream, learn_forget_stream
from .faces import load_lfw, load_olivetti, public_private_faces, split_faces
from .speakers import load_fsdd, split_speakers

__all__ = ["ForgetRequest", "LearnForgetStream", "PublicPrivateSplit", "assign_owners", "learn_forget_stream",
           "load_fsdd", "load_lfw", "load_olivetti", "public_private_digits", "public_private_faces", "split_cifar",
           "split_digits", "split_faces", "split_mnist", "split_speakers", "tensor_dataset"]
