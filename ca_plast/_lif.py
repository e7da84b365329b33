"""Leaky integrate-and-fire postsynaptic neuron with a current-based exponential synapse.

The single-synapse set-up of Luboeinski & Tetzlaff (2021) (authors' reference code,
`arbor_2N1S`): a presynaptic spike reaches the soma after `delay` ms and raises the synaptic
current by w / R (w: total synaptic weight in mV), which decays with `tau_syn`;

    tau_mem dV/dt = -(V - V_rest) + R I,    tau_syn dI/dt = -I,

a spike when V reaches V_th, then V is held at V_reset for `t_ref` ms. Both equations are
linear, so V and I are propagated exactly over any interval, and the first threshold crossing
inside an interval is found exactly: V - V_rest is a sum of two exponentials, which has at
most one extremum (closed form), so the crossing is bracketed on a monotone branch and
located by bisection, with one Newton step for its implicit derivative.
"""

from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp

from ._custom_types import Array, Bool
from ._fields import to_array
from ._roots import bisect
from ._validation import FINITE, NONNEGATIVE_MS, POSITIVE_MS, Bound, check_fields, traced


def _relative_expm1(a: Array) -> Array:
    """`(1 - exp(-a)) / a`, continuous (= 1) at a = 0."""
    small = jnp.abs(a) < 1e-8
    safe = jnp.where(small, 1.0, a)
    return jnp.where(small, 1.0 - a / 2, -jnp.expm1(-safe) / safe)


def _relative_log1p(a: Array) -> Array:
    """`log(1 + a) / a` for a > -1, continuous (= 1) at a = 0."""
    small = jnp.abs(a) < 1e-8
    safe = jnp.where(small, 1.0, a)
    return jnp.where(small, 1.0 - a / 2, jnp.log1p(safe) / safe)


class LIFState(eqx.Module):
    """Membrane potential `V` (mV), synaptic current `I` (nA), refractory time left (ms)."""

    V: Array
    I: Array
    refractory: Array


class LeakyIntegrateAndFire(eqx.Module):
    """LIF neuron driven by a current-based synapse (Luboeinski & Tetzlaff 2021 single-synapse set-up).

    Fields: `tau_mem` (ms, 10), `R` (MOhm, 10), `V_rest` (-65 mV), `V_th` (-55 mV),
    `V_reset` (-70 mV), `t_ref` (ms, 2), synaptic `tau_syn` (ms, 5) and `delay` (ms, 3,
    from the presynaptic spike to the current jump).
    """

    tau_mem: Array = eqx.field(converter=to_array, default=10.0)
    R: Array = eqx.field(converter=to_array, default=10.0)
    V_rest: Array = eqx.field(converter=to_array, default=-65.0)
    V_th: Array = eqx.field(converter=to_array, default=-55.0)
    V_reset: Array = eqx.field(converter=to_array, default=-70.0)
    t_ref: Array = eqx.field(converter=to_array, default=2.0)
    tau_syn: Array = eqx.field(converter=to_array, default=5.0)
    delay: Array = eqx.field(converter=to_array, default=3.0)

    BOUNDS: ClassVar[dict[str, Bound]] = {
        "tau_mem": POSITIVE_MS, "tau_syn": POSITIVE_MS, "R": Bound(0.0, strict=True, unit=" MOhm"),
        "t_ref": NONNEGATIVE_MS, "delay": NONNEGATIVE_MS, "V_rest": FINITE, "V_th": FINITE, "V_reset": FINITE,
    }

    def __check_init__(self):
        owner = "LeakyIntegrateAndFire"
        check_fields(self)
        for name in ("V_rest", "V_reset"):
            value = getattr(self, name)
            if not traced((value, self.V_th)) and jnp.any(value >= self.V_th):
                raise ValueError(f"{owner}: {name} must be below V_th = {self.V_th} mV, got {value!r}")

    def init(self) -> LIFState:
        zero = jnp.zeros_like(self.V_rest)
        return LIFState(V=self.V_rest + zero, I=zero, refractory=zero)

    def on_input(self, state: LIFState, w: Array) -> LIFState:
        """A presynaptic spike arrives through a synapse of weight `w` (mV): I += w / R."""
        return LIFState(V=state.V, I=state.I + w / self.R, refractory=state.refractory)

    def on_spike(self, state: LIFState) -> LIFState:
        """The neuron fires: V is reset and held for `t_ref` ms."""
        return LIFState(V=jnp.full_like(state.V, self.V_reset), I=state.I, refractory=jnp.full_like(state.V, self.t_ref))

    def _free(self, V: Array, I: Array, u: Array) -> tuple[Array, Array]:
        """V and I after `u` ms outside the refractory period (exact)."""
        k = 1 / self.tau_syn - 1 / self.tau_mem
        decay = jnp.exp(-u / self.tau_mem)
        V = self.V_rest + decay * (V - self.V_rest + self.R * I * (u / self.tau_mem) * _relative_expm1(k * u))
        return V, I * jnp.exp(-u / self.tau_syn)

    def _clamp(self, state: LIFState, s: Array) -> tuple[Array, Array]:
        """Refractory part of an interval of `s` ms: its length and the current after it."""
        held = jnp.minimum(state.refractory, s)
        return held, state.I * jnp.exp(-held / self.tau_syn)

    def propagate(self, state: LIFState, s: Array) -> LIFState:
        """Exact state after `s` ms without input and without firing."""
        held, I = self._clamp(state, s)
        V, I = self._free(state.V, I, s - held)
        return LIFState(V=V, I=I, refractory=state.refractory - held)

    def first_spike(self, state: LIFState, s: Array) -> tuple[Bool[Array, ""], Array]:
        """Whether V reaches V_th within the next `s` ms (no input meanwhile), and when (ms).

        The time is `s` when there is no crossing. Differentiable in the parameters and the
        state through one Newton step on the bisected crossing (implicit function theorem).
        """
        held, I = self._clamp(state, s)
        free = s - held
        V0, y = state.V, self.R * I
        x = V0 - self.V_rest
        # The only extremum of x e^{-u/tau_mem} + (sum of exponentials in y): solve V' = 0.
        k = 1 / self.tau_syn - 1 / self.tau_mem
        safe_y = jnp.where(y != 0, y, 1.0)
        a = k * self.tau_syn * (x / safe_y - 1)
        exists = (y != 0) & (a > -1)
        u_star = self.tau_syn * (1 - x / safe_y) * _relative_log1p(jnp.where(exists, a, 0.0))
        inside = exists & (u_star > 0) & (u_star < free)
        # Excitatory current: rising, then falling; inhibitory: falling, then rising.
        lo = jnp.where((y < 0) & inside, u_star, 0.0)
        hi = jnp.where((y > 0) & inside, u_star, free)

        def gap(u, neuron, V0, I):
            return neuron._free(V0, I, u)[0] - neuron.V_th

        at_start = gap(jnp.zeros_like(free), self, V0, I) >= 0
        fires = at_start | (gap(hi, self, V0, I) >= 0)
        lo, hi = jnp.where(at_start, 0.0, lo), jnp.where(at_start, 0.0, hi)

        # Bisection only while some crossing is still being located (usually none is): the
        # loop sees no traced gradients, the Newton step below supplies the derivative.
        frozen = jax.lax.stop_gradient((self, V0, I))

        _, u = bisect(lambda u: gap(u, *frozen), lo, hi, fires & ~at_start)
        V_u, I_u = self._free(V0, I, u)
        slope = (self.R * I_u - (V_u - self.V_rest)) / self.tau_mem
        steep = slope > 1e-12
        u = u - jnp.where(steep, (V_u - self.V_th) / jnp.where(steep, slope, 1.0), 0.0)
        u = jnp.where(at_start, 0.0, jnp.clip(u, 0.0, free))
        return fires, jnp.where(fires, held + u, s)
