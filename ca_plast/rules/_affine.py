"""Exact affine maps of linear drives: what a rule's calcium-driven part does over an interval.

Over an interval of free calcium decay the calcium-driven part of a rule is linear in the
efficacy, so its solution is an affine map with a Gaussian increment (`Affine`).
`threshold_drive` is that map for drives switched by calcium thresholds (GB2012's rho,
Luboeinski & Tetzlaff 2021's early-phase weight).
"""

import equinox as eqx
import jax.numpy as jnp

from .._custom_types import Array


class Affine(eqx.Module):
    """The stochastic affine map `x -> gain * x + shift + sqrt(variance) * N(0, 1)` of an interval."""

    gain: Array
    shift: Array
    variance: Array

    @classmethod
    def identity(cls, like: Array) -> "Affine":
        return cls(gain=jnp.ones_like(like), shift=jnp.zeros_like(like), variance=jnp.zeros_like(like))

    def after(self, first: "Affine") -> "Affine":
        """The map of `first` followed by `self`."""
        return Affine(
            gain=self.gain * first.gain,
            shift=self.gain * first.shift + self.shift,
            variance=self.gain**2 * first.variance + self.variance,
        )

    def __call__(self, x: Array, normal: Array | None = None) -> Array:
        mean = self.gain * x + self.shift
        return mean if normal is None else mean + safe_sqrt(self.variance) * normal


def safe_sqrt(x: Array) -> Array:
    """`sqrt(x)` for x >= 0 with a zero (not NaN) gradient at x = 0, where an interval has no noise."""
    positive = x > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, x, 1.0)), 0.0)


def threshold_drive(
    a_p: Array,
    a_d: Array,
    s: Array,
    *,
    gamma_p: Array,
    gamma_d: Array,
    tau: Array,
    sigma: Array,
    top: float | Array = 1.0,
    leak: float | Array = 0.0,
    rest: float | Array = 0.0,
) -> Affine:
    """Exact map of `tau dx/dt = leak (rest - x) + gamma_p (top - x) H_p - gamma_d x H_d + noise` over `s` ms.

    Calcium decays monotonically inside the interval, so H_p is on for the first `a_p` ms and
    H_d for the first `a_d` ms (`time_above`); the interval splits into three pieces of
    constant drive, each solved exactly, noise `sigma sqrt(tau (H_p + H_d)) eta / tau` as an
    exact Ornstein-Uhlenbeck increment. GB2012 rho: top 1, no leak. Luboeinski & Tetzlaff
    2021 early weight h (mV): top 10, leak 0.1 towards rest h0.
    """
    p_only = a_p > a_d
    first, last = jnp.minimum(a_p, a_d), jnp.maximum(a_p, a_d)
    pieces = (
        (first, gamma_p, gamma_d, 2.0),
        (last - first, jnp.where(p_only, gamma_p, 0.0), jnp.where(p_only, 0.0, gamma_d), 1.0),
        (s - last, 0.0, 0.0, 0.0),
    )
    affine = Affine.identity(jnp.zeros_like(s + a_p))
    for length, g_p, g_d, n_active in pieces:
        rate = (g_p + g_d + leak) / tau
        # x -> x e^{-rate L} + x_inf (1 - e^{-rate L}), x_inf = (g_p top + leak rest) / (g_p + g_d + leak),
        # written without the division so that rate 0 is safe.
        piece = Affine(
            gain=jnp.exp(-rate * length),
            shift=(g_p * top + leak * rest) / tau * _phi(rate, length),
            variance=sigma**2 * n_active / tau * _phi(2 * rate, length),
        )
        affine = piece.after(affine)
    return affine


def _phi(rate: Array, length: Array) -> Array:
    """`(1 - exp(-rate * length)) / rate`, continuous (= length) at rate 0."""
    safe = jnp.where(rate > 0, rate, 1.0)
    return jnp.where(rate > 0, -jnp.expm1(-safe * length) / safe, length)
