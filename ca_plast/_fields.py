"""Model parameters as fields holding JAX arrays."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._custom_types import Array


def to_array(value) -> Array:
    """`jnp.asarray(value)` (same dtype, weak type and shape), with Python and NumPy numbers and
    arrays copied to the device directly: `jnp.asarray` compiles a small program per dtype
    for them, a noticeable part of a short command's start."""
    if isinstance(value, (bool, int, float, complex, np.ndarray, np.generic)):
        return jax.device_put(value)
    return jnp.asarray(value)


def array_field(**kwargs):
    """An `eqx.field` whose value is converted with `to_array`."""
    return eqx.field(converter=to_array, **kwargs)
