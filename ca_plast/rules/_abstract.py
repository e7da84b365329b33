"""The interface of a calcium-based plasticity rule: what every solver of `ca_plast` needs.

A rule describes the efficacy `w` of synapses that share one calcium trace. Its dynamics
split into two parts:

    dw/dt = [calcium-driven part, affine in w] + [calcium-independent drift] (+ noise in the first)

The calcium-driven part is linear in `w` for every fixed calcium, so over an interval in
which calcium decays freely (between two spikes) it is an affine map
`w -> gain w + shift + sqrt(variance) N(0, 1)` (`drive`), which the rule computes exactly
(or to a stated accuracy). The drift is slow and autonomous (`drift`, e.g. GB2012's
bistable cubic); the solvers add it by Strang splitting. A rule that implements the abstract
methods below runs with the event solver (`solve_events`), the time-stepped solver
(`solve_scan`), `stdp_ratios(method="scan" | "events")`, the fits with `method="events"`
and the BrainScaleS-2 emulation (`solve_hardware`, through `rates`, `integrals` and
`increment`). The closed form and the density solver are GB2012's own
(`GraupnerBrunel2012`).
"""

import abc
from typing import ClassVar

import equinox as eqx
import jax.numpy as jnp

from .._calcium import AbstractCalcium, time_above
from .._custom_types import Array, ArrayLike
from .._validation import Bound
from ._affine import Affine


class AbstractRule(eqx.Module):
    """A calcium-based plasticity rule (time in ms).

    Attributes: `calcium`, the calcium model; `BOUNDS` (class variable), the valid range of
    each parameter field (`ca_plast._validation.Bound`), which every solver checks;
    `DRIVEN_BELOW_THRESHOLDS` (class variable, default True): whether calcium below both
    `thresholds` still drives `w`. False promises that there `rates` and `integrals` are
    exactly 0 and `drive` is exactly the identity (gain 1, shift 0, variance 0), which lets
    the event solver and the emulation skip that part (GB2012).

    Abstract methods: `thresholds`, `drive`, `initial_population`, `readout`, `rates`,
    `increment`. Optional: `drift` (default: none), `integrals` (default: Gauss-Legendre
    quadrature of `rates` over the interval; override it with the exact integral where
    there is one), `rate_scales` (default 1).
    """

    calcium: eqx.AbstractVar[AbstractCalcium]
    BOUNDS: ClassVar[dict[str, Bound]]
    DRIVEN_BELOW_THRESHOLDS: ClassVar[bool] = True

    @abc.abstractmethod
    def thresholds(self) -> tuple[Array, Array]:
        """Calcium levels of potentiation and of depression; solutions report the time spent above each."""

    @abc.abstractmethod
    def drive(self, c0: Array, s: Array) -> Affine:
        """The map of the calcium-driven part of `w` over `s` ms of free calcium decay from `c0`."""

    def drift(self, w: Array, /, s: Array) -> Array:
        """One explicit Euler step over `s` ms of the calcium-independent drift (none by default)."""
        return w

    @abc.abstractmethod
    def initial_population(self, n_synapses: int, dtype) -> Array:
        """Initial efficacies of the population simulated for a change ratio (`n_synapses` per initial state)."""

    @abc.abstractmethod
    def readout(self, w: Array, /) -> tuple[Array, Array]:
        """Change ratio (mean weight after / before) and its standard error from the final `w` of `initial_population`."""

    @abc.abstractmethod
    def rates(self, c: Array) -> tuple[Array, ...]:
        """The calcium-dependent factors of the vector field at calcium `c`, each in [0, `rate_scales`]."""

    @abc.abstractmethod
    def increment(self, w: Array, /, integrals: tuple[Array, ...], elapsed: Array, normal: Array | None) -> Array:
        """One explicit step of `w` over `elapsed` ms given the time integrals of `rates` over it (the PPU's update).

        `normal`: standard normal numbers for the rule's noise (None: noise off). The emulation
        draws them only in periods where calcium crossed one of the rule's `thresholds` (or
        when its reads are noisy), zeros elsewhere: a rule's noise acts above its thresholds.
        """

    @property
    def rate_scales(self) -> tuple[ArrayLike, ...]:
        """The largest value of each rate (the full scale of the hardware's integrators)."""
        return (1.0,) * len(self.rates(jnp.zeros(())))

    def integrals(self, c0: Array, s: Array) -> tuple[Array, ...]:
        """Time integrals (ms) of `rates` over `s` ms of free decay from `c0`.

        Default: 16-point Gauss-Legendre quadrature in time; accurate while the rates vary
        smoothly on the scale of s / 16 (override with the exact integral where there is one).
        """
        nodes, weights = _gauss_legendre()
        c0, s = jnp.broadcast_arrays(jnp.asarray(c0), jnp.asarray(s))
        shape = (-1,) + (1,) * c0.ndim  # nodes along a new leading axis
        t = s[None] * (nodes.reshape(shape) + 1) / 2
        c = c0[None] * jnp.exp(-t / jnp.broadcast_to(self.calcium.tau_ca, c0.shape)[None])
        return tuple(s / 2 * jnp.tensordot(weights, r, axes=1) for r in self.rates(c))

    def times_above(self, c0: Array, s: Array) -> tuple[Array, Array]:
        """Time (ms) above the potentiation and the depression levels in `s` ms of free decay from `c0`."""
        theta_p, theta_d = self.thresholds()
        tau_ca = self.calcium.tau_ca
        return time_above(c0, theta_p, tau_ca, s), time_above(c0, theta_d, tau_ca, s)


def _gauss_legendre(n: int = 16) -> tuple[Array, Array]:
    import numpy as np

    nodes, weights = np.polynomial.legendre.leggauss(n)
    return jnp.asarray(nodes), jnp.asarray(weights)
