"""Locating a crossing inside an interval: bisection without gradients, for the callers'
Newton step (which supplies the derivative by the implicit function theorem)."""

from collections.abc import Callable

import jax
import jax.numpy as jnp

from ._custom_types import Array

BISECTIONS = 60  # halvings: a bracket of 8 h shrinks below 1e-14 ms


def bisect(gap: Callable[[Array], Array], lo: Array, hi: Array, active: Array) -> tuple[Array, Array]:
    """The bracket `[lo, hi]` of a sign change of `gap`, halved `BISECTIONS` times (none where
    `active` is False anywhere: the loop runs only while a crossing is being located).

    The side of `lo` is the sign of `gap(lo)`; a midpoint where `gap` is 0 closes the bracket
    from above. `gap` must not depend on values being differentiated (stop their gradients):
    the loop is a `while_loop`, and the result carries no gradient.
    """
    lo, hi, active = jax.lax.stop_gradient((lo, hi, active))
    below_lo = gap(lo) < 0

    def halve(bracket):
        lo, hi, count = bracket
        mid = (lo + hi) / 2
        same = (gap(mid) < 0) == below_lo
        return jnp.where(same, mid, lo), jnp.where(same, hi, mid), count + 1

    def searching(bracket):
        return jnp.any(active) & (bracket[2] < BISECTIONS)

    lo, hi, _ = jax.lax.while_loop(searching, halve, (lo, hi, jnp.zeros((), jnp.int32)))
    return lo, hi
