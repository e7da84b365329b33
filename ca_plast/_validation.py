"""Checks of user-supplied values that raise errors naming the value and the valid range."""

import jax
import numpy as np


def _concrete(value) -> np.ndarray | None:
    """The value as numpy, or None while it is being traced (checked at run time instead)."""
    if isinstance(value, jax.core.Tracer):
        return None
    return np.asarray(value)


def check_finite(owner: str, name: str, value) -> None:
    arr = _concrete(value)
    if arr is not None and not np.all(np.isfinite(arr)):
        raise ValueError(f"{owner}: {name} must be finite, got {value!r}")


def check_positive(owner: str, name: str, value, unit: str = "") -> None:
    """Raise ValueError unless every element is finite and > 0."""
    check_finite(owner, name, value)
    arr = _concrete(value)
    if arr is not None and np.any(arr <= 0):
        raise ValueError(f"{owner}: {name} must be > 0{unit}, got {value!r}")


def check_nonnegative(owner: str, name: str, value, unit: str = "") -> None:
    """Raise ValueError unless every element is finite and >= 0."""
    check_finite(owner, name, value)
    arr = _concrete(value)
    if arr is not None and np.any(arr < 0):
        raise ValueError(f"{owner}: {name} must be >= 0{unit}, got {value!r}")


def check_in_range(owner: str, name: str, value, low: float, high: float) -> None:
    """Raise ValueError unless every element lies in the closed interval [low, high]."""
    check_finite(owner, name, value)
    arr = _concrete(value)
    if arr is not None and (np.any(arr < low) or np.any(arr > high)):
        raise ValueError(f"{owner}: {name} must lie in [{low}, {high}], got {value!r}")
