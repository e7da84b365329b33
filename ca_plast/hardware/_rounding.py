"""Rounding to an integer grid, and the straight-through estimator that makes it trainable.

A rounding is an object (`AbstractRounding`): it maps a value `v` measured in units of the
grid step (least significant bits) to an integer-valued float. The four here:

- `Nearest()`: `round(v)`, ties to even (as `numpy.round`);
- `Floor()`: truncation towards minus infinity (what dropping low bits does);
- `Stochastic()`: `floor(v) + [u < frac(v)]` with `u ~ U[0, 1)`, so `P(up) = frac(v)` and
  `E[round(v)] = v` exactly; the variance is `frac (1 - frac) <= 1/4` (in squared steps);
- `HardwareRounding(random_bits=k)`: the BSS-2 recipe: add `k` random low bits taken from an
  8-bit random source, then truncate. `P(up) = floor(2^k frac) / 2^k`, so it is unbiased only
  down to `2^-k` of a step: increments below `2^-k` steps still vanish.

Wherever a rounding is asked for, its name ("nearest", "floor", "stochastic", "hardware")
gives the default object of that kind. A new rounding subclasses `AbstractRounding`.

Gradients go straight through (`straight_through`): forward value exactly the rounded one,
derivative exactly the identity (optionally zero where a mask is off), in forward and reverse
mode, as in google/aqt.
"""

import abc
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp

from .._custom_types import Array, ArrayLike, Key

SOURCE_BITS = 8


def check_random_bits(owner: str, random_bits: int) -> None:
    if not (isinstance(random_bits, int) and 1 <= random_bits <= SOURCE_BITS):
        raise ValueError(
            f"{owner}: random_bits (low bits added by hardware rounding) must be a whole number in "
            f"1..{SOURCE_BITS} (the random source is {SOURCE_BITS}-bit), got {random_bits!r}"
        )


class AbstractRounding(eqx.Module):
    """A rounding of `v` (in grid steps) to an integer-valued float.

    `round(v, uniform)` computes it without gradient (callers wrap it in `straight_through`);
    `random`: whether it needs `uniform`, U[0, 1) numbers of `v`'s shape. `str()` gives its
    name, as printed by the command line.
    """

    random: ClassVar[bool] = False
    name: ClassVar[str] = "custom"

    @abc.abstractmethod
    def round(self, v: Array, uniform: Array | None = None) -> Array:
        ...

    def __str__(self) -> str:
        return self.name

    def _uniform(self, uniform: Array | None) -> Array:
        if uniform is None:
            raise ValueError(f"{self.name} rounding needs uniform= (U[0, 1) numbers of v's shape)")
        return uniform


class Nearest(AbstractRounding):
    """`round(v)`, ties to even."""

    name: ClassVar[str] = "nearest"

    def round(self, v: Array, uniform: Array | None = None) -> Array:
        return jnp.round(jax.lax.stop_gradient(v))


class Floor(AbstractRounding):
    """Truncation towards minus infinity."""

    name: ClassVar[str] = "floor"

    def round(self, v: Array, uniform: Array | None = None) -> Array:
        return jnp.floor(jax.lax.stop_gradient(v))


class Stochastic(AbstractRounding):
    """Unbiased stochastic rounding: up with probability `frac(v)`."""

    random: ClassVar[bool] = True
    name: ClassVar[str] = "stochastic"

    def round(self, v: Array, uniform: Array | None = None) -> Array:
        v = jax.lax.stop_gradient(v)
        low = jnp.floor(v)
        return low + (self._uniform(uniform) < v - low).astype(v.dtype)


class HardwareRounding(AbstractRounding):
    """The BSS-2 recipe: the top `random_bits` bits of an 8-bit random source (`floor(256 u)`)
    are added below the least significant bit, then the value is truncated."""

    random_bits: int = eqx.field(static=True, default=SOURCE_BITS)

    random: ClassVar[bool] = True
    name: ClassVar[str] = "hardware"

    def __check_init__(self):
        check_random_bits("HardwareRounding", self.random_bits)

    def round(self, v: Array, uniform: Array | None = None) -> Array:
        v = jax.lax.stop_gradient(v)
        low = jnp.floor(v)
        source = jnp.floor(self._uniform(uniform) * 2**SOURCE_BITS)
        added = jnp.floor(source / 2 ** (SOURCE_BITS - self.random_bits)) / 2**self.random_bits
        return low + (v - low + added >= 1).astype(v.dtype)


ROUNDINGS: dict[str, type[AbstractRounding]] = {
    "nearest": Nearest, "floor": Floor, "stochastic": Stochastic, "hardware": HardwareRounding,
}


def to_rounding(owner: str, rounding: "AbstractRounding | str") -> AbstractRounding:
    """`rounding` as an object: an `AbstractRounding` as given, or the default one of a name in `ROUNDINGS`."""
    if isinstance(rounding, AbstractRounding):
        return rounding
    if isinstance(rounding, str) and rounding in ROUNDINGS:
        return ROUNDINGS[rounding]()
    raise ValueError(f"{owner}: rounding must be an AbstractRounding or one of {', '.join(ROUNDINGS)}, got {rounding!r}")


@jax.custom_jvp
def _straight_through(x: Array, rounded: Array, gate: Array) -> Array:
    return rounded


@_straight_through.defjvp
def _straight_through_jvp(primals, tangents):
    x, rounded, gate = primals
    x_dot, _, _ = tangents
    return rounded, x_dot * gate


def straight_through(x: Array, rounded: Array, mask: Array | None = None) -> Array:
    """`rounded` in the forward pass, bit for bit; derivative with respect to `x` the identity.

    Straight-through estimator as a `jax.custom_jvp` (so it holds in forward and reverse
    mode). With `mask` (boolean, shape of `x`), the derivative is zero where the mask is off,
    e.g. outside a format's saturation range.
    """
    gate = jnp.ones_like(x) if mask is None else jnp.where(mask, 1.0, 0.0).astype(x.dtype)
    return _straight_through(x, jax.lax.stop_gradient(rounded), gate)


def draw_uniform(rounding: AbstractRounding, shape, dtype, key: Key | None, uniform: ArrayLike | None,
                 owner: str) -> Array | None:
    """The U[0, 1) numbers a rounding needs: from `key`, or `uniform` as given; None if deterministic."""
    if not rounding.random:
        return None
    if (key is None) == (uniform is None):
        raise ValueError(f"{owner}: {rounding} rounding needs exactly one of key= or uniform= (U[0, 1) numbers)")
    if key is None:
        return jnp.broadcast_to(jnp.asarray(uniform, dtype), shape)
    return jax.random.uniform(key, shape, dtype)


def stochastic_round(x: ArrayLike, step: float, *, key: Key) -> Array:
    """Unbiased stochastic rounding of `x` to multiples of `step` (no range limits).

    `E[result] = x`, variance `<= step^2 / 4`. Straight-through gradient (identity).
    """
    x = jnp.asarray(x, jnp.result_type(x, float))
    u = jax.random.uniform(key, x.shape, x.dtype)
    return straight_through(x, Stochastic().round(x / step, u) * step)


def counter_uniform(seeds: Array, counter: Array, dtype) -> Array:
    """Cheap counter-based U[0, 1) numbers: one per element of `seeds[0]`, fresh for each `counter`.

    `seeds`: uint32 array of shape `(2, *shape)` drawn once from a key; `counter`: a uint32
    scalar (e.g. the update index). Each number is a two-round keyed integer hash (the
    "lowbias32" mixer) of the counter, with 24 random bits. This stands in for the per-column
    LFSRs of the BSS-2 PPU: as on the chip, a few integer operations per number, where a
    `jax.random` draw per synapse and update would dominate the emulation's cost.
    """
    z = _mix(_mix(counter.astype(jnp.uint32) ^ seeds[0]) + seeds[1])
    return (z >> 8).astype(dtype) * 2.0**-24


def _mix(z: Array) -> Array:
    z = (z ^ (z >> 16)) * jnp.uint32(0x7FEB352D)
    z = (z ^ (z >> 15)) * jnp.uint32(0x846CA68B)
    return z ^ (z >> 16)
