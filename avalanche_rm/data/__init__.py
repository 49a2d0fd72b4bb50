"""Offline data that ships with installed packages (used as the default everywhere)."""
from .digits import DigitsSplit, load_digits_split

__all__ = ["DigitsSplit", "load_digits_split"]
