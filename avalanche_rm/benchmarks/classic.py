"""Avalanche's own classic benchmarks, re-exported for users with internet access."""
from __future__ import annotations


def split_mnist(n_experiences: int = 5, **kwargs):
    """``avalanche.benchmarks.classic.SplitMNIST`` (downloads MNIST on first use)."""
    from avalanche.benchmarks.classic import SplitMNIST

    return SplitMNIST(n_experiences=n_experiences, **kwargs)


def split_cifar(n_experiences: int = 5, **kwargs):
    """``avalanche.benchmarks.classic.SplitCIFAR10`` (downloads CIFAR-10 on first use)."""
    from avalanche.benchmarks.classic import SplitCIFAR10

    return SplitCIFAR10(n_experiences=n_experiences, **kwargs)
