"""Offline data that ships with installed packages (used as the default everywhere)."""
from .digits import DigitsSplit, load_digits_split
from .owners import assign_owners

__all__ = ["DigitsSplit", "assign_owners", "load_digits_split"]
