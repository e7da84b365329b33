"""Model parameters as fields holding JAX arrays: `eqx.field(converter=to_array)`.

The field is declared with `eqx.field` itself (not a wrapper), so that type checkers see the
converter and accept what users pass (floats, NumPy values, arrays) in the constructors."""

import jax
import jax.numpy as jnp
import numpy as np

from ._custom_types import Array, ArrayLike


def to_array(value: ArrayLike) -> Array:
    """`jnp.asarray(value)` (same dtype, weak type and shape), with Python and NumPy numbers and
    arrays copied to the device directly: `jnp.asarray` compiles a small program per dtype
    for them, a noticeable part of a short command's start."""
    if isinstance(value, (bool, int, float, complex, np.ndarray, np.generic)):
        return jax.device_put(value)
    return jnp.asarray(value)

