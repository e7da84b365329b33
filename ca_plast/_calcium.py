"""Calcium dynamics driven by pre- and postsynaptic spikes.

Every model here has one property the solvers rely on: between spikes the total calcium
concentration decays as a single exponential with time constant `tau_ca`, so the time it
spends above a threshold has a closed form (`time_above`). Time is in ms and calcium is
dimensionless (in units of theta_d), as in GB2012.
"""

import abc
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp

from ._custom_types import Array, ArrayLike, CalciumState
from ._fields import to_array
from ._validation import NONNEGATIVE, NONNEGATIVE_MS, POSITIVE, POSITIVE_MS, Bound, check_fields


def time_above(c0: ArrayLike, theta: ArrayLike, tau_ca: ArrayLike, s: ArrayLike) -> Array:
    """Time (ms) within [0, s] that `c0 exp(-t / tau_ca)` spends at or above `theta`.

    Equal to `min(tau_ca ln(c0 / theta), s)` when `c0 > theta` and 0 otherwise; smooth in
    `c0`, `theta` and `tau_ca` wherever the crossing lies strictly inside the interval,
    which is what makes gradients with respect to the thresholds exist (GB2012).
    """
    ratio = jnp.asarray(c0) / theta
    above = ratio > 1
    crossing = tau_ca * jnp.log(jnp.where(above, ratio, 1.0))
    return jnp.where(above, jnp.minimum(crossing, s), 0.0)


def decay(x: Array, s: Array, tau: Array) -> Array:
    """Exponential relaxation of `x` towards zero over `s` ms."""
    return x * jnp.exp(-s / tau)


class AbstractCalcium(eqx.Module):
    """Calcium driven by presynaptic arrivals (at t_pre + D) and postsynaptic spikes.

    `init` gives the resting state; `decay` advances it by `s` ms without spikes;
    `on_pre` / `on_post` apply one spike; `concentration` reads the total calcium c.
    The state may be an array or a tuple of arrays; `rest` gives one per synapse.
    """

    tau_ca: eqx.AbstractVar[Array]
    D: eqx.AbstractVar[Array]

    @abc.abstractmethod
    def init(self) -> CalciumState:
        ...

    @abc.abstractmethod
    def decay(self, state: CalciumState, s: Array) -> CalciumState:
        ...

    @abc.abstractmethod
    def on_pre(self, state: CalciumState) -> CalciumState:
        ...

    @abc.abstractmethod
    def on_post(self, state: CalciumState) -> CalciumState:
        ...

    @abc.abstractmethod
    def concentration(self, state: CalciumState) -> Array:
        ...

    def rest(self, shape: tuple[int, ...]) -> CalciumState:
        """The resting state of synapses of `shape` (each part of `init()` broadcast to it)."""
        return jax.tree.map(lambda part: jnp.broadcast_to(part, shape), self.init())


class LinearCalcium(AbstractCalcium):
    """GB2012 calcium: `dc/dt = -c/tau_ca + C_pre sum delta(t - t_pre - D) + C_post sum delta(t - t_post)`.

    Fields: `C_pre`, `C_post` (jump amplitudes, units of theta_d), `tau_ca` (ms), `D` (ms,
    delay of the presynaptic contribution).
    """

    C_pre: Array = eqx.field(converter=to_array)
    C_post: Array = eqx.field(converter=to_array)
    tau_ca: Array = eqx.field(converter=to_array)
    D: Array = eqx.field(converter=to_array)

    BOUNDS: ClassVar[dict[str, Bound]] = {
        "C_pre": NONNEGATIVE, "C_post": NONNEGATIVE, "tau_ca": POSITIVE_MS, "D": NONNEGATIVE_MS,
    }

    def __check_init__(self):
        check_fields(self)

    def init(self) -> Array:
        return jnp.zeros_like(self.tau_ca)

    def decay(self, state: Array, s: Array) -> Array:
        return decay(state, s, self.tau_ca)

    def on_pre(self, state: Array) -> Array:
        return state + self.C_pre

    def on_post(self, state: Array) -> Array:
        return state + self.C_post

    def concentration(self, state: Array) -> Array:
        return state


class NonlinearCalcium(AbstractCalcium):
    """NMDA-coincidence calcium (Graupner et al. 2016 J Neurosci; Deperrois & Graupner 2020).

    As `LinearCalcium`, except that a postsynaptic spike adds `C_post + eta c_pre(t)`, where
    `c_pre` is the presynaptically evoked part of the calcium and
    `eta = (nl - 1)(C_pre + C_post) / C_pre`; `nl = 1` recovers the linear model. Both parts
    decay with the same `tau_ca`. State: `(c, c_pre)`.
    """

    C_pre: Array = eqx.field(converter=to_array)
    C_post: Array = eqx.field(converter=to_array)
    tau_ca: Array = eqx.field(converter=to_array)
    D: Array = eqx.field(converter=to_array)
    nl: Array = eqx.field(converter=to_array, default=2.0)

    BOUNDS: ClassVar[dict[str, Bound]] = {
        "C_pre": POSITIVE, "C_post": NONNEGATIVE, "tau_ca": POSITIVE_MS, "D": NONNEGATIVE_MS, "nl": POSITIVE,
    }

    def __check_init__(self):
        check_fields(self)

    @property
    def eta(self) -> Array:
        return (self.nl - 1) * (self.C_pre + self.C_post) / self.C_pre

    def init(self) -> tuple[Array, Array]:
        zero = jnp.zeros_like(self.tau_ca)
        return zero, zero

    def decay(self, state: tuple[Array, Array], s: Array) -> tuple[Array, Array]:
        c, c_pre = state
        return decay(c, s, self.tau_ca), decay(c_pre, s, self.tau_ca)

    def on_pre(self, state: tuple[Array, Array]) -> tuple[Array, Array]:
        c, c_pre = state
        return c + self.C_pre, c_pre + self.C_pre

    def on_post(self, state: tuple[Array, Array]) -> tuple[Array, Array]:
        c, c_pre = state
        return c + self.C_post + self.eta * c_pre, c_pre

    def concentration(self, state: tuple[Array, Array]) -> Array:
        return state[0]


class CoincidenceCalcium(AbstractCalcium):
    """The simple coincidence calcium of the original sketch.

    A presynaptic arrival adds `C_pre` (0.5), a postsynaptic spike `C_post` (1.0), and a
    pre arrival and post spike closer than `window` ms (one 0.1 ms solver step by default)
    add `C_coinc` (2.0) once more; decay with `tau_ca` (50 ms). State:
    `(c, time since last pre arrival, time since last post spike)`, times in ms.
    """

    C_pre: Array = eqx.field(converter=to_array, default=0.5)
    C_post: Array = eqx.field(converter=to_array, default=1.0)
    C_coinc: Array = eqx.field(converter=to_array, default=2.0)
    tau_ca: Array = eqx.field(converter=to_array, default=50.0)
    D: Array = eqx.field(converter=to_array, default=0.0)
    window: Array = eqx.field(converter=to_array, default=0.1)

    BOUNDS: ClassVar[dict[str, Bound]] = {
        "C_pre": NONNEGATIVE, "C_post": NONNEGATIVE, "C_coinc": NONNEGATIVE, "tau_ca": POSITIVE_MS,
        "D": NONNEGATIVE_MS, "window": POSITIVE_MS,
    }

    def __check_init__(self):
        check_fields(self)

    def init(self) -> tuple[Array, Array, Array]:
        never = jnp.full_like(self.tau_ca, jnp.inf)
        return jnp.zeros_like(self.tau_ca), never, never

    def decay(self, state, s):
        c, since_pre, since_post = state
        return decay(c, s, self.tau_ca), since_pre + s, since_post + s

    def on_pre(self, state):
        c, _, since_post = state
        extra = jnp.where(since_post < self.window, self.C_coinc, 0.0)
        return c + self.C_pre + extra, jnp.zeros_like(c), since_post

    def on_post(self, state):
        c, since_pre, _ = state
        extra = jnp.where(since_pre < self.window, self.C_coinc, 0.0)
        return c + self.C_post + extra, since_pre, jnp.zeros_like(c)

    def concentration(self, state) -> Array:
        return state[0]

