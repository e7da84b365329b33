"""Checks of user-supplied values that raise errors naming the value and the valid range.

Models declare the range of each parameter once, as a `Bound` in their `BOUNDS` class
attribute. `check_fields` checks them when the model is built (`__check_init__`), and
`checked` checks them again where a solver starts: a model changed with `eqx.tree_at`, or
built under `jit` from traced values, skipped the constructor's checks, and would otherwise
run on a negative time constant or a NaN and return NaN or meaningless numbers silently.
"""

import math
import os
from collections.abc import Mapping
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.core import Tracer


class Bound(NamedTuple):
    """The valid values of a parameter: finite, >= `low` (> `low` if `strict`), <= `high`."""

    low: float = -math.inf
    high: float = math.inf
    strict: bool = False
    unit: str = ""

    def requirement(self) -> str:
        """What a valid value is, besides finite, e.g. 'must be > 0 ms'."""
        if math.isfinite(self.low) and math.isfinite(self.high):
            return f"must lie in [{self.low:g}, {self.high:g}]{self.unit}"
        if math.isfinite(self.low):
            return f"must be {'>' if self.strict else '>='} {self.low:g}{self.unit}"
        return "must be finite"

    def violated(self, value, xp=np):
        """Elementwise: where `value` is not a valid value (NaN and infinities never are)."""
        below = value <= self.low if self.strict else value < self.low
        return ~xp.isfinite(value) | below | (value > self.high)


FINITE = Bound()
POSITIVE = Bound(0.0, strict=True)
NONNEGATIVE = Bound(0.0)
UNIT_INTERVAL = Bound(0.0, 1.0)
POSITIVE_MS = Bound(0.0, strict=True, unit=" ms")
NONNEGATIVE_MS = Bound(0.0, unit=" ms")


def traced(value) -> bool:
    """Whether any leaf of `value` is traced (under jit, vmap or grad), i.e. not concrete."""
    return any(isinstance(leaf, Tracer) for leaf in jax.tree.leaves(value))


def check_value(owner: str, name: str, value, bound: Bound) -> None:
    """Raise ValueError naming `owner.name`, the value and `bound` unless every element is valid.

    Traced values (under jit, vmap or grad) are not checked here: `checked` checks them at
    run time.
    """
    if traced(value):
        return
    array = np.asarray(value)
    if np.any(bound.violated(array)):
        requirement = bound.requirement() if np.all(np.isfinite(array)) else "must be finite"
        shown = repr(array.item()) if array.ndim == 0 else np.array2string(array, threshold=6)
        raise ValueError(f"{owner}: {name} {requirement}, got {shown}")


def check_finite(owner: str, name: str, value) -> None:
    check_value(owner, name, value, FINITE)


def check_positive(owner: str, name: str, value, unit: str = "") -> None:
    """Raise ValueError unless every element is finite and > 0."""
    check_value(owner, name, value, Bound(0.0, strict=True, unit=unit))


def check_nonnegative(owner: str, name: str, value, unit: str = "") -> None:
    """Raise ValueError unless every element is finite and >= 0."""
    check_value(owner, name, value, Bound(0.0, unit=unit))


def check_in_range(owner: str, name: str, value, low: float, high: float) -> None:
    """Raise ValueError unless every element lies in the closed interval [low, high]."""
    check_value(owner, name, value, Bound(low, high))


def whole_number(owner: str | None, name: str, value, minimum: int = 1, of: str = "") -> int:
    """`value` as an int; ValueError "owner: name must be a whole number[ of ...] >= minimum, got
    value" unless it is one (booleans, strings and non-finite numbers are refused too)."""
    number = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))
    if not (number and math.isfinite(value) and int(value) == value and value >= minimum):
        prefix = "" if owner is None else f"{owner}: "
        raise ValueError(f"{prefix}{name} must be a whole number{of} >= {minimum}, got {value!r}")
    return int(value)


def check_fields(module: eqx.Module) -> None:
    """Check every field named in `type(module).BOUNDS` (for `__check_init__`)."""
    owner = type(module).__name__
    for name, bound in _bounds(module).items():
        check_value(owner, name, getattr(module, name), bound)


def _bounds(module) -> Mapping[str, Bound]:
    return getattr(type(module), "BOUNDS", {})


def _constrained(module) -> list[eqx.Module]:
    """`module` and the modules among its fields (recursively) that declare `BOUNDS`."""
    out = [module] if _bounds(module) else []
    for value in vars(module).values():
        if isinstance(value, eqx.Module):
            out += _constrained(value)
    return out


# On unless the environment says CA_PLAST_RUN_TIME_CHECKS=0 (read once, at import).
_RUN_TIME_CHECKS = [os.environ.get("CA_PLAST_RUN_TIME_CHECKS", "1") != "0"]


def set_run_time_checks(enabled: bool) -> bool:
    """Turn the run-time checks of traced values (see `checked`) on or off; returns the previous setting.

    Concrete values are always checked. A program traced with the checks on carries a host
    callback, which JAX's persistent compilation cache does not store; the command line,
    which checks every value it passes before anything is traced, turns them off so that
    its programs are cached on disk. Set this before anything is traced: a program keeps
    the setting it was traced with. The environment variable CA_PLAST_RUN_TIME_CHECKS=0
    turns them off from the start.
    """
    previous = _RUN_TIME_CHECKS[0]
    _RUN_TIME_CHECKS[0] = bool(enabled)
    return previous


def run_time_checks() -> bool:
    """Whether traced values get run-time checks (`set_run_time_checks`)."""
    return _RUN_TIME_CHECKS[0]


def checked(module, owner: str):
    """`module` with its `BOUNDS` (and those of the modules among its fields) checked.

    Concrete values raise ValueError at once (one line: `owner`, the field, the value, the
    valid range). Traced values are checked at run time with `eqx.branched_error_if`, which
    raises an error naming the field and the valid range when the computation runs; use
    the returned module, which carries the check. Solvers call this on the rule they are
    given.
    """
    if not _bounds(module):
        raise TypeError(f"checked: {type(module).__name__} declares no BOUNDS")
    parts = _constrained(module)
    if not traced(module):
        for part in parts:
            for name, bound in _bounds(part).items():
                check_value(f"{owner}: {type(part).__name__}", name, getattr(part, name), bound)
        return module
    if not run_time_checks():
        return module
    failed, messages = [], []
    for part in parts:
        for name, bound in _bounds(part).items():
            failed.append(jnp.any(bound.violated(jnp.asarray(getattr(part, name)), jnp)))
            finite = "" if bound == FINITE else " and be finite"
            messages.append(f"{owner}: {type(part).__name__}.{name} {bound.requirement()}{finite}")
    # The check rides on the module's own first bounded field (every model that is
    # checked declares BOUNDS itself).
    name = next(iter(_bounds(module)))
    value = eqx.branched_error_if(jnp.asarray(getattr(module, name)), jnp.any(jnp.stack(failed)),
                                  jnp.argmax(jnp.stack(failed)), messages)
    return eqx.tree_at(lambda m: getattr(m, name), module, value)
