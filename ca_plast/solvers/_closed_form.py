"""GB2012 closed form: time above thresholds from the exact calcium trajectory, then U, D, ratio.

The calcium trajectory of any protocol is a sum of exponentials; between events the time
above each threshold is known exactly. With the fractions alpha_p, alpha_d of the protocol
duration T spent above theta_p, theta_d, GB2012 treat the drive as constant on average and
the cubic drift as negligible during the protocol, so rho is an Ornstein-Uhlenbeck process:

    G_p = gamma_p alpha_p, G_d = gamma_d alpha_d, rho_bar = G_p / (G_p + G_d),
    s2 = sigma^2 (alpha_p + alpha_d) / (G_p + G_d), tau_eff = tau / (G_p + G_d),
    x(rho0) = -(rho_star - rho_bar + (rho_bar - rho0) e^{-T/tau_eff}) / sqrt(s2 (1 - e^{-2T/tau_eff})),
    U = (1 + erf(x(0))) / 2,  D = (1 - erf(x(1))) / 2.
"""

import jax.numpy as jnp
from jax.lax import erf  # what jax.scipy.special.erf calls, without importing that module (0.06 s)

from .._custom_types import Array, ArrayLike
from .._spikes import Spikes, interval
from .._validation import checked
from ..rules._gb2012 import GraupnerBrunel2012
from ._loop import event_loop


def time_above_thresholds(rule: GraupnerBrunel2012, spikes: Spikes) -> tuple[Array, Array]:
    """Total time (ms) the protocol's calcium spends above theta_p and above theta_d (unbatched)."""

    def interval(carry, state, s, index):
        a_p, a_d = rule.times_above(rule.calcium.concentration(state), s)
        return carry[0] + a_p, carry[1] + a_d

    zero = jnp.zeros((), spikes.pre_offset.dtype)
    _, (t_p, t_d), _ = event_loop(rule.calcium, spikes, (zero, zero), interval)
    return t_p, t_d


def duration(spikes: Spikes) -> Array:
    """Protocol duration in ms (unbatched)."""
    zero = jnp.zeros_like(spikes.end_tick)
    return interval(zero, jnp.zeros_like(spikes.end_offset), spikes.end_tick, spikes.end_offset, spikes.unit)


def transition_probabilities(
    rule: GraupnerBrunel2012, t_p: ArrayLike, t_d: ArrayLike, T: ArrayLike
) -> tuple[Array, Array]:
    """GB2012 closed form: (U, D) = (P(DOWN->UP), P(UP->DOWN)) given the times above threshold.

    `t_p`, `t_d`: total time (ms) above theta_p, theta_d during a protocol of `T` ms. No
    time above either threshold gives U = D = 0 (no change), with finite gradients.
    """
    T = jnp.asarray(T)
    alpha_p, alpha_d = t_p / T, t_d / T
    G_p, G_d = rule.gamma_p * alpha_p, rule.gamma_d * alpha_d
    G = G_p + G_d
    driven = G > 0
    G_safe = jnp.where(driven, G, 1.0)
    rho_bar = G_p / G_safe
    s2 = rule.sigma**2 * (alpha_p + alpha_d) / G_safe
    decay = jnp.exp(-T * G_safe / rule.tau)
    spread = jnp.sqrt(jnp.where(driven, s2 * -jnp.expm1(-2 * T * G_safe / rule.tau), 1.0))

    def x(rho0):
        return -(rule.rho_star - rho_bar + (rho_bar - rho0) * decay) / spread

    up = jnp.where(driven, (1 + erf(x(0.0))) / 2, 0.0)
    down = jnp.where(driven, (1 - erf(x(1.0))) / 2, 0.0)
    return up, down


def closed_form_ratio(rule: GraupnerBrunel2012, spikes: Spikes) -> Array:
    """GB2012 closed-form change ratio (weight after / before) of one protocol (unbatched)."""
    rule = checked(rule, "closed_form_ratio")
    t_p, t_d = time_above_thresholds(rule, spikes)
    up, down = transition_probabilities(rule, t_p, t_d, duration(spikes))
    return rule.change_ratio(up, down)
