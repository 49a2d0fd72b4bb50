"""Avalanche benchmarks: digits (offline default), faces, speakers, and Avalanche's classics."""
from .classic import split_cifar, split_mnist
from .digits import split_digits, tensor_dataset

__all__ = ["split_cifar", "split_digits", "split_mnist", "tensor_dataset"]
