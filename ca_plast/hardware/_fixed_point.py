"""Binary fixed-point formats with saturation and straight-through rounding.

A `FixedPoint` format stores integers (codes) `n` and represents `n * 2^-frac_bits`. The
BSS-2 PPU vector unit works in 8-bit and 16-bit signed fractional saturating formats
(`FixedPoint(8, 7)`: step 1/128, range [-1, 127/128]); synaptic weights are 6-bit unsigned
integers (`FixedPoint(6, 0, signed=False)`: 0..63), as on BrainScaleS-2.
"""

import equinox as eqx
import jax.numpy as jnp

from .._custom_types import Array, ArrayLike, Key
from ._rounding import AbstractRounding, draw_uniform, straight_through, to_rounding

MAX_BITS = 31


class FixedPoint(eqx.Module):
    """A fixed-point format: `total_bits` bits, `frac_bits` of them after the binary point.

    `signed`: two's complement codes `-2^(total-1) .. 2^(total-1) - 1`, else `0 .. 2^total - 1`.
    `saturate`: out-of-range values clip to the nearest bound; otherwise they wrap around
    (two's complement overflow). All fields are static: a format is a description, not a
    parameter.
    """

    total_bits: int = eqx.field(static=True)
    frac_bits: int = eqx.field(static=True)
    signed: bool = eqx.field(static=True, default=True)
    saturate: bool = eqx.field(static=True, default=True)

    def __check_init__(self):
        if not (isinstance(self.total_bits, int) and 1 <= self.total_bits <= MAX_BITS):
            raise ValueError(f"FixedPoint: total_bits must be a whole number in 1..{MAX_BITS}, got {self.total_bits!r}")
        if not (isinstance(self.frac_bits, int) and 0 <= self.frac_bits <= self.total_bits):
            raise ValueError(
                f"FixedPoint: frac_bits must be a whole number in 0..total_bits ({self.total_bits}), "
                f"got {self.frac_bits!r}"
            )
        for name in ("signed", "saturate"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"FixedPoint: {name} must be True or False, got {getattr(self, name)!r}")

    @property
    def step(self) -> float:
        """Value of one least significant bit, `2^-frac_bits`."""
        return 2.0**-self.frac_bits

    @property
    def min_code(self) -> int:
        return -(2 ** (self.total_bits - 1)) if self.signed else 0

    @property
    def max_code(self) -> int:
        return 2 ** (self.total_bits - 1) - 1 if self.signed else 2**self.total_bits - 1

    @property
    def min_value(self) -> float:
        return self.min_code * self.step

    @property
    def max_value(self) -> float:
        return self.max_code * self.step

    def _in_range(self, n: Array) -> Array:
        if self.saturate:
            return jnp.clip(n, self.min_code, self.max_code)
        return self.min_code + jnp.mod(n - self.min_code, 2**self.total_bits)

    def _finish(self, exact: Array, n: Array, mask_gradient: bool) -> Array:
        mask = (exact >= self.min_value) & (exact <= self.max_value) if mask_gradient else None
        return straight_through(exact, self._in_range(n) * self.step, mask)

    def quantise(
        self,
        x: ArrayLike,
        rounding: AbstractRounding | str = "nearest",
        *,
        key: Key | None = None,
        uniform: ArrayLike | None = None,
        mask_gradient: bool = False,
    ) -> Array:
        """`x` rounded onto the format's grid and brought into its range (values, not codes).

        `rounding`: an `AbstractRounding` (`Nearest()`, `Floor()`, `Stochastic()`,
        `HardwareRounding(random_bits)`) or its name ("nearest", "floor", "stochastic", "hardware").
        The random roundings need exactly one of `key` (keyword-only) or `uniform` (U[0, 1)
        numbers of `x`'s shape, e.g. from a hardware-like source). Gradient: straight-through
        identity; with `mask_gradient`, zero outside [min_value, max_value].
        """
        rounding = to_rounding("FixedPoint.quantise", rounding)
        x = jnp.asarray(x, jnp.result_type(x, float))
        u = draw_uniform(rounding, x.shape, x.dtype, key, uniform, "FixedPoint.quantise")
        return self._finish(x, rounding.round(x / self.step, u), mask_gradient)

    def accumulate(
        self,
        x: ArrayLike,
        delta: ArrayLike,
        rounding: AbstractRounding | str = "nearest",
        *,
        key: Key | None = None,
        uniform: ArrayLike | None = None,
        mask_gradient: bool = False,
    ) -> Array:
        """`x + delta` in this format, for `x` already on the grid: what a processor's update does.

        The increment `delta` (computed at higher precision) is rounded in units of the step
        and added to the code of `x`, so increments far below float resolution at `x` (a
        1e-8 change of rho = 0.5 in float32) still round up with the right probability.
        Equal to `quantise(x + delta, ...)` except for the tie-breaking of `nearest`.
        Gradient: straight-through identity with respect to both `x` and `delta`.
        """
        rounding = to_rounding("FixedPoint.accumulate", rounding)
        x = jnp.asarray(x, jnp.result_type(x, delta, float))
        delta = jnp.asarray(delta, x.dtype)
        shape = jnp.broadcast_shapes(x.shape, delta.shape)
        u = draw_uniform(rounding, shape, x.dtype, key, uniform, "FixedPoint.accumulate")
        n = jnp.round(x / self.step) + rounding.round(delta / self.step, u)
        return self._finish(x + delta, n, mask_gradient)

    def codes(self, x: ArrayLike) -> Array:
        """Integer codes (int32) of the values `x`, rounded to nearest and brought into range."""
        x = jnp.asarray(x, jnp.result_type(x, float))
        return self._in_range(jnp.round(x / self.step)).astype(jnp.int32)
