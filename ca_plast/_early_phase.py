"""The early-phase bistable synaptic efficacy of Graupner & Brunel (2012).

    tau drho/dt = -rho (1 - rho)(rho_star - rho) + gamma_p (1 - rho) H(c - theta_p)
                  - gamma_d rho H(c - theta_d) + sigma sqrt(tau) sqrt(H(c - theta_p) + H(c - theta_d)) eta(t)

Within an interval where calcium decays freely from c0, each Heaviside switches off once,
at a time known in closed form (`time_above`). The interval therefore splits into at most
three pieces with constant drive; on each the threshold terms are linear in rho and are
solved exactly, with their noise as an exact Ornstein-Uhlenbeck increment. The slow cubic
drift (time scale tau, ~10^5 ms) is added by Strang splitting.
"""

from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp

from ._calcium import AbstractCalcium, time_above
from ._custom_types import Array
from ._fields import to_array
from ._validation import NONNEGATIVE, POSITIVE, POSITIVE_MS, UNIT_INTERVAL, Bound, check_fields


class GraupnerBrunel2012(eqx.Module):
    """GB2012 calcium-based rule for one synapse (or a population sharing one calcium trace).

    Fields (time in ms, calcium in units of theta_d): `calcium` model; thresholds `theta_p`,
    `theta_d`; rates `gamma_p`, `gamma_d`; time constant `tau`; noise amplitude `sigma`;
    unstable fixed point `rho_star`; readout: `beta` (fraction of synapses initially DOWN)
    and `b` (ratio of UP to DOWN weights, w1/w0).
    """

    calcium: AbstractCalcium
    theta_p: Array = eqx.field(converter=to_array)
    theta_d: Array = eqx.field(converter=to_array)
    gamma_p: Array = eqx.field(converter=to_array)
    gamma_d: Array = eqx.field(converter=to_array)
    tau: Array = eqx.field(converter=to_array)
    sigma: Array = eqx.field(converter=to_array)
    rho_star: Array = eqx.field(converter=to_array, default=0.5)
    beta: Array = eqx.field(converter=to_array, default=0.5)
    b: Array = eqx.field(converter=to_array, default=5.0)

    BOUNDS: ClassVar[dict[str, Bound]] = {
        "theta_p": POSITIVE, "theta_d": POSITIVE, "gamma_p": NONNEGATIVE, "gamma_d": NONNEGATIVE,
        "tau": POSITIVE_MS, "sigma": NONNEGATIVE, "rho_star": UNIT_INTERVAL, "beta": UNIT_INTERVAL, "b": POSITIVE,
    }

    def __check_init__(self):
        check_fields(self)

    def times_above(self, c0: Array, s: Array) -> tuple[Array, Array]:
        """Time (ms) above theta_p and above theta_d in an interval of `s` ms starting at `c0`."""
        tau_ca = self.calcium.tau_ca
        return time_above(c0, self.theta_p, tau_ca, s), time_above(c0, self.theta_d, tau_ca, s)

    def drive(self, c0: Array, s: Array) -> "Affine":
        """The exact threshold-driven map of rho over `s` ms of free calcium decay from `c0`.

        Between threshold crossings the drive is linear in rho, so over the whole interval
        rho -> gain * rho + shift + sqrt(variance) * N(0, 1), with the same coefficients for
        every synapse that sees this calcium. The cubic drift is left out (see `cubic`).
        """
        a_p, a_d = self.times_above(c0, s)
        return threshold_drive(a_p, a_d, s, gamma_p=self.gamma_p, gamma_d=self.gamma_d, tau=self.tau, sigma=self.sigma)

    def cubic(self, rho: Array, s: Array) -> Array:
        """One explicit Euler step of the bistable drift over `s` ms (s << tau)."""
        return rho - s / self.tau * rho * (1 - rho) * (self.rho_star - rho)

    def cubic_flow(self, rho: Array, t: Array) -> Array:
        """Exact flow of the bistable drift `tau drho/dt = -rho (1 - rho)(rho_star - rho)` over `t` ms.

        `t < 0` flows backwards; points that reach infinity in that time (backwards from
        outside [0, 1]) come back as +-inf. Differentiable in `rho`, `t`, `rho_star` and `tau`
        (`bistable_flow`).
        """
        return bistable_flow(rho, t, self.rho_star, self.tau)

    def change_ratio(self, up: Array, down: Array) -> Array:
        """Mean synaptic weight after / before, from P(DOWN->UP) = `up` and P(UP->DOWN) = `down`.

        GB2012: `[beta(1-U) + (1-beta)D + b(beta U + (1-beta)(1-D))] / (beta + (1-beta) b)`.
        """
        beta, b = self.beta, self.b
        after = beta * (1 - up) + (1 - beta) * down + b * (beta * up + (1 - beta) * (1 - down))
        return after / (beta + (1 - beta) * b)


def _log_abs(y: Array) -> Array:
    return jnp.log(jnp.maximum(jnp.abs(y), 1e-300))


def _first_integral(x: Array, r: Array) -> Array:
    """`G(x) = ln|x - r| - (1 - r) ln|x| - r ln|1 - x|`, which grows at the rate r (1 - r) / tau along the flow."""
    return _log_abs(x - r) - (1 - r) * _log_abs(x) - r * _log_abs(1 - x)


@jax.custom_jvp
def bistable_flow(rho: Array, t: Array, rho_star: Array, tau: Array) -> Array:
    """Exact flow of `tau drho/dt = rho (1 - rho)(rho - rho_star)` from `rho` over `t` ms (GB2012's cubic drift).

    The drift has the first integral `G` (`_first_integral`) growing at the constant rate
    `rho_star (1 - rho_star) / tau`. For rho_star = 1/2 this inverts in closed form,
    `u(t) = u sqrt(E / (1 + 4 u^2 (E - 1)))` with `u = rho - 1/2`, `E = exp(t / (2 tau))`.
    Otherwise that formula, applied in a coordinate that puts rho_star at 1/2 on each side,
    starts Newton steps on G (kept inside the starting point's interval between the fixed
    points 0, rho_star, 1). Derivatives come from the implicit-function theorem applied to
    G (exact, whatever the number of Newton steps).
    """
    r = rho_star
    below = rho < r
    outside = (rho < 0) | (rho > 1)
    u = jnp.where(below, rho * 0.5 / r, 0.5 + (rho - r) * 0.5 / (1 - r)) - 0.5
    # Beyond exponent 700 every point but the fixed points has reached 0 or 1 to double precision.
    E = jnp.exp(jnp.minimum(2 * r * (1 - r) * t / tau, 700.0))
    denominator = 1 + 4 * u * u * (E - 1)
    u = u * jnp.sqrt(E / jnp.where(denominator > 0, denominator, 1.0))
    guess = jnp.where(below, (u + 0.5) * 2 * r, r + u * 2 * (1 - r))

    def exact(x):
        """rho_star = 1/2: the formula is the flow; a denominator <= 0 means the point reached infinity."""
        return jnp.where(denominator > 0, x, jnp.where(rho > r, jnp.inf, -jnp.inf))

    def polish(x):
        # Outside [0, 1], G > 0 falls to 0 at +-infinity (G ~ r (1 - r) / (2 x^2)): backwards, the flow
        # reaches infinity when G would fall to 0 or below.
        target = _first_integral(rho, r) + r * (1 - r) * t / tau
        finite = ~outside | (target > 0)
        far = jnp.sqrt(r * (1 - r) / (2 * jnp.where(target > 0, target, 1.0)))
        x = jnp.where(finite, jnp.where(denominator > 0, x, jnp.where(rho > 1, 1 + far, -far)), rho)
        lower = jnp.where(rho < 0, -jnp.inf, jnp.where(below, 0.0, jnp.where(rho < 1, r, 1.0)))
        upper = jnp.where(rho < 0, 0.0, jnp.where(below, r, jnp.where(rho < 1, 1.0, jnp.inf)))
        def newton(_, x):
            step = x - (_first_integral(x, r) - target) * x * (1 - x) * (x - r) / (r * (1 - r))
            # A step past a fixed point goes halfway to it instead (the flow never crosses one).
            return jnp.where(step < lower, (x + lower) / 2, jnp.where(step > upper, (x + upper) / 2, step))

        x = jax.lax.fori_loop(0, 8, newton, x)
        finite = finite & jnp.isfinite(x)
        return jnp.where(finite, x, jnp.where(rho > r, jnp.inf, -jnp.inf))

    return jax.lax.cond(jnp.all(r == 0.5), exact, polish, guess)


@bistable_flow.defjvp
def _bistable_flow_jvp(primals, tangents):
    rho, t, r, tau = primals
    d_rho, d_t, d_r, d_tau = tangents
    x = bistable_flow(rho, t, r, tau)
    finite = jnp.isfinite(x)
    x_safe = jnp.where(finite, x, rho)
    field_x = x_safe * (1 - x_safe) * (x_safe - r)
    field_rho = rho * (1 - rho) * (rho - r)
    moving = jnp.abs(field_rho) > 1e-300
    # G_x(rho) / G_x(x); at a fixed point x = rho and the linearised flow gives exp(f'(rho) t / tau).
    slope = (1 - 2 * rho) * (rho - r) + rho * (1 - rho)
    stretch = jnp.where(moving, field_x / jnp.where(moving, field_rho, 1.0), jnp.exp(slope * t / tau))
    away = jnp.abs(rho - r) > 0
    # (G_r(rho) - G_r(x)) / G_x(x), with the poles at r cancelled analytically.
    from_r = field_x / (r * (1 - r)) * (_log_abs(rho) - _log_abs(1 - rho) - _log_abs(x_safe) + _log_abs(1 - x_safe)) \
        + x_safe * (1 - x_safe) / (r * (1 - r)) * (1 - (x_safe - r) / jnp.where(away, rho - r, 1.0))
    from_rate = field_x * t * (1 - 2 * r) / (r * (1 - r) * tau)
    d_x = stretch * d_rho + field_x / tau * d_t + (from_r + from_rate) * d_r - field_x * t / tau**2 * d_tau
    return x, jnp.where(finite, d_x, 0.0)


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
