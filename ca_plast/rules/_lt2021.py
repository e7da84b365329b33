"""Synaptic tagging and capture: the two-phase rule of Luboeinski & Tetzlaff (2021).

Early weight h (mV), protein amount p and late weight z of one synapse:

    tau_h dh/dt = leak (h0 - h) + gamma_p (h_max - h) H(c - theta_p) - gamma_d h H(c - theta_d) + xi,
        xi = sqrt(tau_h (H(c - theta_p) + H(c - theta_d))) sigma_pl Gamma(t)
    tau_p dp/dt = -p + alpha H(|h - h0| - theta_pro)
    tau_z dz/dt = p (1 - z) H((h - h0) - theta_tag) - p (z + 0.5) H((h0 - h) - theta_tag)
    w = h + h0 z,

with leak = 0.1 and h_max = 10 mV; the synapse is tagged while |h - h0| >= theta_tag, and z
stays in [-0.5, 1]. Calcium c is the GB2012 calcium (`LinearCalcium`, its own parameters).

Exact step (`step`). While calcium decays freely from c0, the interval splits into at most
three pieces of constant drive (`time_above`); on each, h relaxes exponentially towards a
known value and its map is exact (`threshold_drive`, noise as an exact Ornstein-Uhlenbeck
increment, added at the end of the piece). Along each exponential piece, h - h0 crosses the
four levels +-theta_tag, +-theta_pro at most once each, at times known in closed form; between
crossings the drive of p is constant (p relaxes exponentially) and z is linear given p
(1 - z or z + 0.5 shrinks by exp(-int p dt / tau_z)). So p and z are exact too, and smooth in
theta_tag, theta_pro, tau_p, tau_z (and in theta_p, theta_d through the calcium pieces):
the thresholds are located inside steps, never sampled. With noise off the whole step is
exact; with noise on, p and z follow h's exponential path inside each piece and h jumps by its
exact noise increment at the piece's end.

Several synapses onto one neuron (Luboeinski & Tetzlaff 2021, networks) share its protein
pool: tau_p dp/dt = -p + alpha H(sum_j |h_j - h0| - theta_pro), and every z_j is captured
with that p. Each synapse has its own calcium; the interval then splits at every synapse's
threshold times, and the crossing of the sum is located as `_late` describes (closed form
whenever all synapses relax with one rate, as in all quiet periods).
"""

from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp

from .._calcium import AbstractCalcium, LinearCalcium, time_above
from .._custom_types import Array, ArrayLike, Bool, Float
from .._fields import to_array
from .._roots import bisect
from .._validation import NONNEGATIVE, POSITIVE, POSITIVE_MS, Bound, check_fields, whole_number
from ._affine import threshold_drive

POSITIVE_MV = Bound(0.0, strict=True, unit=" mV")


OUTCOMES = (
    "none",
    "early-LTP",
    "early-LTP with tag",
    "late-LTP",
    "early-LTD",
    "early-LTD with tag",
    "late-LTD",
)


class STCState(eqx.Module):
    """Early weight `h` (mV), protein amount `p`, late weight `z` (in [-0.5, 1]): scalars for one
    synapse; for several synapses onto one neuron, `h` and `z` have shape (n,) and `p` (the
    neuron's shared protein pool) stays scalar."""

    h: Array
    p: Array
    z: Array


class STCStats(eqx.Module):
    """Totals over an interval: ms with protein synthesis on (`time_pro`), with the LTP tag
    (`time_tag_ltp`, h - h0 >= theta_tag) and the LTD tag (`time_tag_ltd`), and the extremes
    of h (mV) along the interval."""

    time_pro: Array
    time_tag_ltp: Array
    time_tag_ltd: Array
    h_max: Array
    h_min: Array

    @classmethod
    def start(cls, h: Array) -> "STCStats":
        zero = jnp.zeros_like(h)
        return cls(time_pro=zero, time_tag_ltp=zero, time_tag_ltd=zero, h_max=h, h_min=h)

    def then(self, later: "STCStats") -> "STCStats":
        """Totals over this interval followed by `later`."""
        return STCStats(
            time_pro=self.time_pro + later.time_pro,
            time_tag_ltp=self.time_tag_ltp + later.time_tag_ltp,
            time_tag_ltd=self.time_tag_ltd + later.time_tag_ltd,
            h_max=jnp.maximum(self.h_max, later.h_max),
            h_min=jnp.minimum(self.h_min, later.h_min),
        )


class LuboeinskiTetzlaff2021(eqx.Module):
    """Calcium-based early phase plus tagging, protein synthesis and capture (one synapse, or
    several sharing one neuron's protein pool: `init(n_synapses)`).

    Fields (time in ms, weights in mV, calcium in units of theta_d): `calcium` model;
    thresholds `theta_p`, `theta_d`; rates `gamma_p`, `gamma_d`; early-phase time constant
    `tau_h`; noise amplitude `sigma_pl` (mV); initial and resting weight `h0` (mV); tagging
    and protein-synthesis thresholds `theta_tag`, `theta_pro` (mV, on |h - h0|); protein
    synthesis rate `alpha`; time constants `tau_p`, `tau_z`; `leak` (0.1) and the ceiling
    `h_max` (10 mV) of the early-phase equation. See `luboeinski_tetzlaff2021()` for the
    published single-synapse values.
    """

    calcium: AbstractCalcium
    theta_p: Array = eqx.field(converter=to_array)
    theta_d: Array = eqx.field(converter=to_array)
    gamma_p: Array = eqx.field(converter=to_array)
    gamma_d: Array = eqx.field(converter=to_array)
    tau_h: Array = eqx.field(converter=to_array)
    sigma_pl: Array = eqx.field(converter=to_array)
    h0: Array = eqx.field(converter=to_array)
    theta_tag: Array = eqx.field(converter=to_array)
    theta_pro: Array = eqx.field(converter=to_array)
    alpha: Array = eqx.field(converter=to_array)
    tau_p: Array = eqx.field(converter=to_array)
    tau_z: Array = eqx.field(converter=to_array)
    leak: Array = eqx.field(converter=to_array, default=0.1)
    h_max: Array = eqx.field(converter=to_array, default=10.0)

    BOUNDS: ClassVar[dict[str, Bound]] = {
        "theta_p": POSITIVE, "theta_d": POSITIVE, "theta_tag": POSITIVE, "theta_pro": POSITIVE, "leak": POSITIVE,
        "h0": POSITIVE_MV, "h_max": POSITIVE_MV, "tau_h": POSITIVE_MS, "tau_p": POSITIVE_MS, "tau_z": POSITIVE_MS,
        "gamma_p": NONNEGATIVE, "gamma_d": NONNEGATIVE, "sigma_pl": NONNEGATIVE, "alpha": NONNEGATIVE,
    }

    def __check_init__(self):
        check_fields(self)

    def init(self, n_synapses: int | None = None) -> STCState:
        """Resting synapse: h = h0, no protein, no late-phase change. `n_synapses`: None for one
        synapse (scalar h, z), or the number of synapses sharing the protein pool ((n,) h, z)."""
        zero = jnp.zeros_like(self.h0)
        if n_synapses is None:
            return STCState(h=self.h0 + zero, p=zero, z=zero)
        many = jnp.zeros((whole_number("init", "n_synapses", n_synapses),), zero.dtype)
        return STCState(h=self.h0 + many, p=zero, z=many)

    def weight(self, state: STCState) -> Array:
        """Total weight w = h + h0 z (mV)."""
        return state.h + self.h0 * state.z

    def regime(self, above_p: Array, above_d: Array) -> tuple[Array, Array]:
        """Fixed point (mV) and time constant (ms) of h while calcium stays above / below each threshold.

        Closed form of the early-phase equation with constant drive:
        `h_inf = (gamma_p h_max H_p + leak h0) / (gamma_p H_p + gamma_d H_d + leak)`,
        `tau = tau_h / (gamma_p H_p + gamma_d H_d + leak)`. With the published parameters:
        above theta_p 8.40 mV (200 % of h0) with 0.35 s; between the thresholds ~0 with 2.2 s;
        at rest h0 with 1.9 h.
        """
        g_p = self.gamma_p * jnp.asarray(above_p, self.h0.dtype)
        g_d = self.gamma_d * jnp.asarray(above_d, self.h0.dtype)
        total = g_p + g_d + self.leak
        return (g_p * self.h_max + self.leak * self.h0) / total, self.tau_h / total

    def times_above(self, c0: Array, s: Array) -> tuple[Array, Array]:
        """Time (ms) above theta_p and above theta_d in `s` ms of free calcium decay from `c0`."""
        tau_ca = self.calcium.tau_ca
        return time_above(c0, self.theta_p, tau_ca, s), time_above(c0, self.theta_d, tau_ca, s)

    def vector_field(self, state: STCState, c: Array) -> tuple[STCState, Array]:
        """Drift of (h, p, z) per ms with every Heaviside sampled at calcium `c`, and the noise
        amplitude of h (mV / sqrt(ms)): `dh = drift dt + amplitude dW`. For plain time-stepping."""
        h_p = (c >= self.theta_p).astype(state.h.dtype)
        h_d = (c >= self.theta_d).astype(state.h.dtype)
        dh = (self.leak * (self.h0 - state.h) + self.gamma_p * (self.h_max - state.h) * h_p
              - self.gamma_d * state.h * h_d) / self.tau_h
        pro, ltp, ltd = self.flags(state.h - self.h0)
        dp = (-state.p + self.alpha * pro) / self.tau_p
        dz = (state.p * (1 - state.z) * ltp - state.p * (state.z + 0.5) * ltd) / self.tau_z
        return STCState(h=dh, p=dp, z=dz), self.sigma_pl * jnp.sqrt((h_p + h_d) / self.tau_h)

    def step(
        self, state: STCState, c0: Array, s: Array, normal: Float[Array, "2 ..."] | None = None
    ) -> tuple[STCState, STCStats]:
        """Exact map of (h, p, z) over `s` ms while calcium decays freely from `c0` (see module doc).

        One synapse: scalar `h`, `z`, `c0`. Several synapses sharing the protein pool: `h`,
        `z`, `c0` of shape (n,) (each synapse's own calcium), scalar `p`. `normal`: standard
        normals for the noise, shape (2,) for one synapse and (2 n, n) for n (one per synapse
        and piece with some calcium above a threshold), or None for noise off. Returns the new
        state and the interval's `STCStats` (per synapse; time_pro is shared).
        """
        pool = jnp.ndim(state.h) == 1
        if jnp.shape(state.z) != jnp.shape(state.h) or jnp.shape(c0) != jnp.shape(state.h) or jnp.ndim(state.p) != 0:
            raise ValueError(
                f"step: h, z and c0 need one shape, () or (n_synapses,), and p a scalar; got h {jnp.shape(state.h)}, "
                f"z {jnp.shape(state.z)}, c0 {jnp.shape(c0)}, p {jnp.shape(state.p)}"
            )
        h, z, c0 = (jnp.atleast_1d(x) for x in (state.h, state.z, c0))
        n = h.shape[0]
        a_p, a_d = self.times_above(c0, s)
        # Pieces of constant drive for every synapse: between the sorted times at which some
        # synapse's calcium falls below theta_p or theta_d (one synapse: both, one, none).
        bounds = jnp.sort(jnp.concatenate([a_p, a_d]))
        starts = jnp.concatenate([jnp.zeros_like(s)[None], bounds])
        ends = jnp.concatenate([bounds, s[None]])
        zeros = jnp.zeros((1, n), s.dtype)
        normals = jnp.zeros((2 * n + 1, n), s.dtype) if normal is None else jnp.concatenate([normal.reshape(2 * n, n), zeros])

        def piece(carry, x):
            h, p, z, stats = carry
            start, end, normal = x
            length, middle = end - start, (start + end) / 2
            on_p, on_d = (a_p > middle).astype(s.dtype), (a_d > middle).astype(s.dtype)
            h_inf, tau = self.regime(on_p, on_d)
            p, z, late = self._late(h, h_inf, 1 / tau, length, p, z)
            affine = threshold_drive(
                on_p * length, on_d * length, length, gamma_p=self.gamma_p, gamma_d=self.gamma_d,
                tau=self.tau_h, sigma=self.sigma_pl, top=self.h_max, leak=self.leak, rest=self.h0,
            )
            h = affine(h, normal)  # noise amplitude via the gradient-safe square root
            return (h, p, z, stats.then(late).then(STCStats.start(h))), None

        init = (h, state.p, z, STCStats.start(h))
        (h, p, z, stats), _ = jax.lax.scan(piece, init, (starts, ends, normals))
        if not pool:
            h, z, stats = h[0], z[0], jax.tree.map(lambda x: x[0], stats)
        return STCState(h=h, p=p, z=z), stats

    def flags(self, d: Array) -> tuple[Bool[Array, ""], Bool[Array, "..."], Bool[Array, "..."]]:
        """Protein synthesis on (sum over synapses of |d| >= theta_pro), LTP tag, LTD tag, for
        d = h - h0 (scalar or one per synapse; right-continuous Heavisides)."""
        return jnp.sum(jnp.abs(d)) >= self.theta_pro, d >= self.theta_tag, -d >= self.theta_tag

    def _late(self, h: Array, h_inf: Array, rate: Array, length: Array, p: Array, z: Array):
        """Exact p and z over `length` ms while h = h_inf + (h - h_inf) exp(-rate t) (arrays over synapses).

        Each h_j - h0 crosses +-theta_tag and 0 at most once (closed form); between the sorted
        crossings the tags and the signs of h_j - h0 are constant, so the protein signal
        S(t) = sum_j |h_j - h0| is A + sum_j B_j exp(-rate_j t). When all synapses relax with
        one rate (always for one synapse, and whenever no calcium is above a threshold) its
        crossing of theta_pro is closed form. Otherwise (some synapses driven by calcium, others
        not: only during stimulation, inside one inter-spike interval) it is bisected between
        the sub-interval's ends, with one Newton step for its derivative; a double crossing
        inside one such sub-interval (an excursion of S across theta_pro shorter than it) is
        not resolved. Between the crossings p relaxes exponentially to alpha or 0, and 1 - z
        (LTP tag) or z + 0.5 (LTD tag) shrinks by exp(-int p dt / tau_z).
        """
        d_inf = h_inf - self.h0
        span = h - h_inf
        levels = jnp.stack([self.theta_tag, -self.theta_tag, jnp.zeros_like(self.theta_tag)]).astype(h.dtype)
        zero = jnp.zeros_like(length)
        crossings = jnp.sort(_level_time(d_inf[None], span[None], rate[None], levels[:, None], zero, length).reshape(-1))
        starts = jnp.concatenate([zero[None], crossings])
        ends = jnp.concatenate([crossings, length[None]])
        common = jnp.all(rate == rate[0])

        def signal(t, sign, d_inf, span, rate):
            return jnp.sum(sign * (d_inf + span * jnp.exp(-rate * t)))

        def protein_time(a, b, sign):
            """Time in (a, b) where S crosses theta_pro, else b."""
            a_, b_ = sign * d_inf, sign * span
            closed = _level_time(jnp.sum(a_), jnp.sum(b_), rate[0], self.theta_pro, a, b)
            frozen = jax.lax.stop_gradient((sign, d_inf, span, rate, self.theta_pro))

            def gap(t):
                return signal(t, *frozen[:4]) - frozen[4]

            changes = (gap(a) < 0) != (gap(b) < 0)
            lo, hi = bisect(gap, a, b, changes & ~common)
            t = (lo + hi) / 2
            slope = -jnp.sum(b_ * rate * jnp.exp(-rate * t))
            steep = jnp.abs(slope) > 0
            t = jnp.clip(t - jnp.where(steep, (signal(t, sign, d_inf, span, rate) - self.theta_pro) / jnp.where(steep, slope, 1.0), 0.0), a, b)
            return jnp.where(common, closed, jnp.where(changes, t, b))

        def constant(carry, a, b, ltp, ltd):
            """Advance p, z over (a, b), with no crossing inside: the flags at the midpoint hold throughout."""
            p, z, stats = carry
            sub = b - a
            pro = self.flags(d_inf + span * jnp.exp(-rate * (a + b) / 2))[0]
            p_inf = self.alpha * pro.astype(h.dtype)
            integral = p_inf * sub - (p - p_inf) * self.tau_p * jnp.expm1(-sub / self.tau_p)
            p = p_inf + (p - p_inf) * jnp.exp(-sub / self.tau_p)
            capture = jnp.exp(-integral / self.tau_z)
            z = jnp.where(ltp, 1 - (1 - z) * capture, jnp.where(ltd, (z + 0.5) * capture - 0.5, z))
            stats = STCStats(
                time_pro=stats.time_pro + sub * pro,
                time_tag_ltp=stats.time_tag_ltp + sub * ltp,
                time_tag_ltd=stats.time_tag_ltd + sub * ltd,
                h_max=stats.h_max,
                h_min=stats.h_min,
            )
            return p, z, stats

        def sub_interval(carry, bounds):
            a, b = bounds
            d_mid = d_inf + span * jnp.exp(-rate * (a + b) / 2)
            _, ltp, ltd = self.flags(d_mid)
            t = protein_time(a, b, jnp.sign(d_mid))
            return constant(constant(carry, a, t, ltp, ltd), t, b, ltp, ltd), None

        (p, z, stats), _ = jax.lax.scan(sub_interval, (p, z, STCStats.start(h)), (starts, ends))
        return p, z, stats


def _level_time(d_inf: Array, span: Array, rate: Array, level: Array, a: Array, b: Array) -> Array:
    """Time in (a, b) at which d_inf + span exp(-rate t) = level (at most one), else b."""
    moving = span != 0
    ratio = (level - d_inf) / jnp.where(moving, span, 1.0)
    inside = moving & (ratio < jnp.exp(-rate * a)) & (ratio > jnp.exp(-rate * b))
    return jnp.where(inside, -jnp.log(jnp.where(inside, ratio, 1.0)) / rate, b)


def luboeinski_tetzlaff2021() -> LuboeinskiTetzlaff2021:
    """The single-synapse parameters of Luboeinski & Tetzlaff (2021), as in the authors' reference code.

    Calcium (Li et al. 2016): tau_ca 48.8 ms, C_pre 1.0, C_post 0.2758, delay D 18.8 ms;
    theta_p 3.0, theta_d 1.2, gamma_p 1645.6, gamma_d 313.1, tau_h 688.4 s,
    sigma_pl 2.90436 mV, h0 = 5 gamma_p / (gamma_p + gamma_d) = 4.20075 mV,
    theta_tag = 0.2 h0, theta_pro = 0.5 h0, alpha 1, tau_p = tau_z = 60 min.
    """
    gamma_p, gamma_d = 1645.6, 313.1
    h0 = 5 * gamma_p / (gamma_p + gamma_d)
    return LuboeinskiTetzlaff2021(
        calcium=LinearCalcium(C_pre=1.0, C_post=0.2758, tau_ca=48.8, D=18.8),
        theta_p=3.0,
        theta_d=1.2,
        gamma_p=gamma_p,
        gamma_d=gamma_d,
        tau_h=688_400.0,
        sigma_pl=2.90436,
        h0=h0,
        theta_tag=0.2 * h0,
        theta_pro=0.5 * h0,
        alpha=1.0,
        tau_p=3_600_000.0,
        tau_z=3_600_000.0,
    )


def classify_outcome(
    rule: LuboeinskiTetzlaff2021,
    z: ArrayLike,
    h_max: ArrayLike,
    h_min: ArrayLike,
    *,
    late_threshold: float = 0.1,
    early_threshold: float = 0.05,
) -> Array:
    """Outcome of each trial as an index into `OUTCOMES`.

    `z`: final late weight; `h_max`, `h_min`: extremes of h over the run (mV). Late-LTP /
    late-LTD when |z| >= `late_threshold` (a late-phase change of that fraction of h0);
    otherwise the larger early excursion decides: with tag when it reached theta_tag, plain
    early-LTP / early-LTD when it reached `early_threshold` h0, else "none".
    """
    z, up, down = jnp.asarray(z), jnp.asarray(h_max) - rule.h0, rule.h0 - jnp.asarray(h_min)
    ltp = up >= down
    size = jnp.where(ltp, up, down)
    early = jnp.where(size >= rule.theta_tag, 2, jnp.where(size >= early_threshold * rule.h0, 1, 0))
    code = jnp.where(early == 0, 0, jnp.where(ltp, early, early + 3))
    code = jnp.where(z >= late_threshold, 3, code)
    return jnp.where(z <= -late_threshold, 6, code)
