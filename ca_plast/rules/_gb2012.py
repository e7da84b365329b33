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

from .._calcium import AbstractCalcium
from .._custom_types import Array, ArrayLike
from .._fields import to_array
from .._validation import NONNEGATIVE, POSITIVE, POSITIVE_MS, UNIT_INTERVAL, Bound, check_fields
from ._abstract import AbstractRule
from ._affine import Affine, safe_sqrt, threshold_drive


class GraupnerBrunel2012(AbstractRule):
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

    DRIVEN_BELOW_THRESHOLDS: ClassVar[bool] = False  # below theta_d only the cubic drift acts

    def __check_init__(self):
        check_fields(self)

    def thresholds(self) -> tuple[Array, Array]:
        return self.theta_p, self.theta_d

    def drive(self, c0: Array, s: Array) -> Affine:
        """The exact threshold-driven map of rho over `s` ms of free calcium decay from `c0`.

        Between threshold crossings the drive is linear in rho, so over the whole interval
        rho -> gain * rho + shift + sqrt(variance) * N(0, 1), with the same coefficients for
        every synapse that sees this calcium. The cubic drift is left out (see `cubic`).
        """
        a_p, a_d = self.times_above(c0, s)
        return threshold_drive(a_p, a_d, s, gamma_p=self.gamma_p, gamma_d=self.gamma_d, tau=self.tau, sigma=self.sigma)

    def drift(self, rho: Array, s: Array) -> Array:
        """One explicit Euler step of the bistable drift over `s` ms (s << tau)."""
        return rho - s / self.tau * rho * (1 - rho) * (self.rho_star - rho)

    cubic = drift

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


    def initial_population(self, n_synapses: int, dtype) -> Array:
        """`n_synapses` synapses DOWN (rho = 0), then as many UP (rho = 1)."""
        return jnp.concatenate([jnp.zeros(n_synapses, dtype), jnp.ones(n_synapses, dtype)])

    def readout(self, rho: Array) -> tuple[Array, Array]:
        """`population_ratio` of the synapses started DOWN (first half) and UP (second half)."""
        n = rho.shape[-1] // 2
        return population_ratio(self, rho[..., :n], rho[..., n:])

    def rates(self, c: Array) -> tuple[Array, Array]:
        """H(c - theta_p), H(c - theta_d): the threshold detectors (comparators on BSS-2)."""
        return (c >= self.theta_p).astype(jnp.result_type(c, float)), (c >= self.theta_d).astype(jnp.result_type(c, float))

    def integrals(self, c0: Array, s: Array) -> tuple[Array, Array]:
        """The times above theta_p and theta_d (exact, `time_above`)."""
        return self.times_above(c0, s)

    def increment(self, rho: Array, integrals: tuple[Array, ...], elapsed: Array, normal: Array | None) -> Array:
        """One explicit step of the GB2012 equation over `elapsed` ms, given the times above threshold `(T_p, T_d)`.

        `(gamma_p (1 - rho) T_p - gamma_d rho T_d - rho (1 - rho)(rho_star - rho) elapsed) / tau
        + sigma sqrt((T_p + T_d) / tau) normal`: the drive integrated with the given times,
        the noise with its exact variance over the interval.
        """
        T_p, T_d = integrals
        drift = self.gamma_p * (1 - rho) * T_p - self.gamma_d * rho * T_d \
            - rho * (1 - rho) * (self.rho_star - rho) * elapsed
        noise = 0.0 if normal is None else self.sigma * safe_sqrt((T_p + T_d) / self.tau) * normal
        return drift / self.tau + noise


def population_ratio(rule: GraupnerBrunel2012, rho_from_down: ArrayLike, rho_from_up: ArrayLike) -> tuple[Array, Array]:
    """Change ratio and its standard error from simulated synapses (GB2012 readout).

    `rho_from_down` / `rho_from_up`: final rho of synapses that started at 0 / at 1. UP means
    rho > rho_star. U and D are binomial estimates; the ratio is linear in them, so its
    standard error follows exactly from theirs.
    """
    rho_from_down, rho_from_up = jnp.asarray(rho_from_down), jnp.asarray(rho_from_up)
    up = jnp.mean(rho_from_down > rule.rho_star, dtype=rho_from_down.dtype)
    down = jnp.mean(rho_from_up <= rule.rho_star, dtype=rho_from_up.dtype)
    var_up = up * (1 - up) / rho_from_down.size
    var_down = down * (1 - down) / rho_from_up.size
    norm = rule.beta + (1 - rule.beta) * rule.b
    sem = jnp.abs(rule.b - 1) / norm * jnp.sqrt((rule.beta**2) * var_up + (1 - rule.beta) ** 2 * var_down)
    return rule.change_ratio(up, down), sem


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
