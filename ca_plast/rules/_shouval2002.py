"""The calcium control rule of Shouval, Bear & Cooper (2002, PNAS 99:10831).

    dw/dt = eta(c) (Omega(c) - lambda_ w)

    Omega(c) = 0.25 + sig(c - alpha_p, beta_p) - 0.25 sig(c - alpha_d, beta_d),  sig(x, beta) = 1 / (1 + e^(-beta x))
    eta(c) = 1 / tau(c),  tau(c) = P1 / (P2 + c^P3) + P4

Calcium `c` in uM above rest, time in ms. Omega is the BCM-like calcium dependence: no change
below alpha_d (0.35 uM), depression between alpha_d and alpha_p (0.55 uM), potentiation
above. The learning rate eta grows steeply with calcium, so that without calcium the weight
relaxes to Omega(0) / lambda_ = 0.25 with the time constant tau(0) / lambda_ = P1 / P2 + P4
= 10,001 s (the paper's "about 3 h"), and within about 1 s at high calcium. Parameters are the
published ones (P1 = 0.1 s, P2 = P1 1e-4 -- the value the paper's figures use, its printed
text has a typo -- P3 = 3, P4 = 1 s), converted to ms.

The rule is linear in w for a fixed calcium, so over an interval of free calcium decay its
exact solution is an affine map. It is computed by splitting the interval into `n_pieces`
pieces of equal calcium drop from c0 down to `c_floor` (uniform in calcium, so the steep
sigmoids of Omega are resolved wherever calcium crosses them), each solved exactly with eta
and Omega held at the piece's midpoint calcium, and one tail piece below `c_floor` (where eta
and Omega no longer change to 1e-4). The midpoint rule is second order in the piece width;
with the defaults the map agrees with a fine reference integration to about 1e-6 (tested).
"""

from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp

from .._calcium import AbstractCalcium
from .._custom_types import Array, ArrayLike
from .._fields import to_array
from .._validation import NONNEGATIVE, POSITIVE, POSITIVE_MS, Bound, check_fields
from ._abstract import AbstractRule
from ._affine import Affine


class Shouval2002(AbstractRule):
    """Shouval, Bear & Cooper 2002 calcium control rule (module docstring); calcium in uM, time in ms.

    Fields: `calcium` model (jump amplitudes in uM); `alpha_d`, `alpha_p` (uM) and `beta_d`,
    `beta_p` (1/uM): onsets and steepness of depression and potentiation in Omega;
    `P1` (ms uM^P3), `P2` (uM^P3), `P3`, `P4` (ms): the learning rate's time constant;
    `lambda_`: weight decay; `w0`: the weight every synapse starts a protocol with (the
    resting fixed point 0.25 by default). `n_pieces` (static): pieces per interval.
    """

    calcium: AbstractCalcium
    alpha_d: Array = eqx.field(converter=to_array, default=0.35)
    alpha_p: Array = eqx.field(converter=to_array, default=0.55)
    beta_d: Array = eqx.field(converter=to_array, default=80.0)
    beta_p: Array = eqx.field(converter=to_array, default=80.0)
    P1: Array = eqx.field(converter=to_array, default=100.0)
    P2: Array = eqx.field(converter=to_array, default=1e-5)
    P3: Array = eqx.field(converter=to_array, default=3.0)
    P4: Array = eqx.field(converter=to_array, default=1000.0)
    lambda_: Array = eqx.field(converter=to_array, default=1.0)
    w0: Array = eqx.field(converter=to_array, default=0.25)
    c_floor: float = eqx.field(static=True, default=1e-3)
    n_pieces: int = eqx.field(static=True, default=128)

    BOUNDS: ClassVar[dict[str, Bound]] = {
        "alpha_d": NONNEGATIVE, "alpha_p": NONNEGATIVE, "beta_d": POSITIVE, "beta_p": POSITIVE, "P1": POSITIVE,
        "P2": POSITIVE, "P3": POSITIVE, "P4": POSITIVE_MS, "lambda_": POSITIVE, "w0": POSITIVE,
    }

    def __check_init__(self):
        check_fields(self)

    def omega(self, c: ArrayLike) -> Array:
        """Omega(c): the weight calcium `c` drives towards (times lambda_)."""
        return 0.25 + jax.nn.sigmoid(self.beta_p * (c - self.alpha_p)) - 0.25 * jax.nn.sigmoid(self.beta_d * (c - self.alpha_d))

    def eta(self, c: ArrayLike) -> Array:
        """eta(c) = 1 / (P1 / (P2 + c^P3) + P4), per ms."""
        return 1 / (self.P1 / (self.P2 + jnp.maximum(c, 0.0) ** self.P3) + self.P4)

    def thresholds(self) -> tuple[Array, Array]:
        return self.alpha_p, self.alpha_d

    def _pieces(self, c0: Array, s: Array) -> tuple[Array, Array]:
        """Lengths (ms) and midpoint calcium of the pieces of `s` ms of decay from `c0`, in order (leading axis)."""
        # Pieces along a new leading axis; c0 and tau_ca may be arrays over synapses (hardware mismatch).
        c0, s = jnp.broadcast_arrays(jnp.asarray(c0), jnp.asarray(s))
        tau_ca = jnp.broadcast_to(self.calcium.tau_ca, c0.shape)[None]
        top = jnp.maximum(c0, self.c_floor)[None]
        fractions = jnp.linspace(0.0, 1.0, self.n_pieces + 1).reshape((-1,) + (1,) * c0.ndim)
        edges = top + (self.c_floor - top) * fractions  # equal drops of calcium from c0 down to c_floor
        times = jnp.where(c0[None] > self.c_floor, jnp.minimum(tau_ca * jnp.log(top / edges), s[None]), 0.0)
        times = jnp.concatenate([times, s[None]])  # then the tail, to the end of the interval
        middles = jnp.maximum(c0, 0.0)[None] * jnp.exp(-(times[:-1] + times[1:]) / (2 * tau_ca))
        return jnp.diff(times, axis=0), middles

    def drive(self, c0: Array, s: Array) -> Affine:
        lengths, c = self._pieces(c0, s)
        rate = self.lambda_ * self.eta(c)
        gains = jnp.exp(-rate * lengths)
        shifts = self.omega(c) / self.lambda_ * -jnp.expm1(-rate * lengths)
        # Compose the pieces in order: w -> g_n (... (g_1 w + b_1) ...) + b_n.
        later = jnp.cumprod(gains[::-1], axis=0)[::-1]  # product of the gains from piece i to the end
        after = jnp.concatenate([later[1:], jnp.ones_like(later[:1])])
        return Affine(gain=later[0], shift=jnp.sum(shifts * after, axis=0), variance=jnp.zeros_like(later[0]))

    def initial_population(self, n_synapses: int, dtype) -> Array:
        """`n_synapses` synapses at `w0`."""
        return jnp.full(n_synapses, self.w0, dtype)

    def readout(self, w: Array) -> tuple[Array, Array]:
        """Mean weight after / `w0`, and its standard error over the synapses."""
        n = w.shape[-1]
        sem = jnp.std(w, axis=-1) / jnp.sqrt(max(n - 1, 1)) / self.w0
        return jnp.mean(w, axis=-1) / self.w0, sem

    def rates(self, c: Array) -> tuple[Array, Array]:
        """eta(c) and eta(c) Omega(c), per ms."""
        eta = self.eta(c)
        return eta, eta * self.omega(c)

    @property
    def rate_scales(self) -> tuple[ArrayLike, ...]:
        """The largest eta is 1 / P4 (high calcium); Omega is at most 1."""
        return 1 / self.P4, 1 / self.P4

    def integrals(self, c0: Array, s: Array) -> tuple[Array, Array]:
        """Time integrals of eta and eta Omega over the interval, on the pieces of `drive`."""
        lengths, c = self._pieces(c0, s)
        eta, eta_omega = self.rates(c)
        return jnp.sum(eta * lengths, axis=0), jnp.sum(eta_omega * lengths, axis=0)

    def increment(self, w: Array, integrals: tuple[Array, ...], elapsed: Array, normal: Array | None) -> Array:
        """One explicit step: `int eta Omega dt - lambda_ w int eta dt` (the rule has no noise)."""
        eta, eta_omega = integrals
        return eta_omega - self.lambda_ * w * eta
