"""Event-driven solver: `jax.lax.scan` over the merged, sorted spike events of a protocol.

Between two events calcium only decays, so everything the threshold terms do in that
interval has a closed form; the cost is O(spikes), not O(duration / step): 60 pairs at 1 Hz
take 121 scan steps (60 pre arrivals, 60 post spikes, the end) where a 0.1 ms grid takes
600,000. Spike times keep the precision of their (tick, offset) form: intervals come from
integer tick differences (`event_sequence`), never from accumulated float time.

One interval of `s` ms that starts with calcium `c0` (just after the previous event) is
integrated as follows (any `AbstractRule`; written here for GB2012, see the models page of the documentation):

1. Pieces of constant drive: calcium decays monotonically, so H(c - theta_p) and
   H(c - theta_d) are on for the first `a_p` and `a_d` ms (`time_above`, exact). The interval
   splits into the two-threshold piece `[0, min(a_p, a_d)]`, the one-threshold piece up to
   `max(a_p, a_d)` and the below-threshold tail.
2. Threshold drive: on each piece the drive is linear in rho and solved exactly
   (`GraupnerBrunel2012.drive`: one affine map with the exact Ornstein-Uhlenbeck variance),
   with one N(0, 1) draw per synapse and sub-step. A rule whose drive acts below its
   thresholds (`Shouval2002`, `DRIVEN_BELOW_THRESHOLDS`) has the tail take its drive too (at
   its midpoint, one more draw); GB2012's is the identity there and is skipped.
3. Cubic drift (time scale tau ~ 10^5 ms): each driven piece is cut into `drive_steps` equal
   sub-steps, and on each the cubic is Strang-split around the exact drive (half a sub-step
   of cubic, the drive, half a sub-step of cubic; adjacent halves merged, each integrated by
   one classical Runge-Kutta (RK4) step). The tail takes `quiet_steps` RK4 steps, half on
   each side of its drive (at least one each). Aligning the splitting with the threshold crossings keeps it
   second order: the error per interval is O(h^3 gamma^2 / tau^3) for sub-steps of h ms.
   Against a DOP853 reference (rtol 1e-12) one sub-step gives about 1e-8 per pairing for
   preset DP (tau = 150 s) and 5e-7 with tau = 34 s, falling as 1 / drive_steps^2. The RK4
   error of the tail is O(s (s / (quiet_steps tau))^4 / tau): with 4 steps below 1e-9 for a
   60 s gap at tau = 150 s and 2e-7 at tau = 34 s. Gaps approaching tau (minutes of silence)
   need more `quiet_steps`; RK4 is stable for steps below about
   2.8 tau / max(rho_star, 1 - rho_star).

The cubic has no explicit closed-form flow for general rho_star, hence the sub-steps. With
their number fixed, the result is a smooth function of spike times, thresholds, calcium and
rate parameters, so gradients (and pathwise gradients with a fixed key) exist.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._custom_types import Array, ArrayLike, Key
from .._spikes import Spikes
from .._validation import check_finite, checked, run_time_checks, traced, whole_number
from ..rules._abstract import AbstractRule
from ._loop import event_loop, record_grid
from ._solution import Solution

EventSolution = Solution  # the result of every early-phase solver


def solve_events(
    rule: AbstractRule,
    spikes: Spikes,
    rho0: ArrayLike,
    *,
    key: Key | None = None,
    drive_steps: int = 1,
    quiet_steps: int = 4,
    record_every: int | None = None,
) -> Solution:
    """Simulate one protocol (unbatched `spikes`) event by event (scheme: module docstring).

    `rho0`: initial efficacies of any shape; all synapses share the protocol's calcium (its
    times above threshold and drive coefficients are computed once per event) and get
    independent noise. `key`: noise key (keyword-only); None switches noise off. Event `i`
    draws its normals from `fold_in(key, i)`. `drive_steps`: Strang sub-steps per piece of
    constant threshold drive; `quiet_steps`: RK4 steps of the cubic drift in the
    below-threshold part of each interval. Any calcium model of `ca_plast` works. Batch with
    `jax.vmap` over padded spikes (`to_spikes` of a list), parameter sets or keys. Reverse mode
    stores one carry per event (`event_loop`).

    `record_every`: record c and rho every that many steps of `spikes.unit` ms (and at the
    end). The record times join the events: they split the intervals they fall in, which
    leaves the result unchanged up to the splitting error of the cubic drift, but, with noise
    on, gives another sample path of the same process (the normals are drawn per event).
    """
    rule = checked(rule, "solve_events")
    _check_structure("solve_events", spikes)
    drive_steps = whole_number("solve_events", "drive_steps", drive_steps)
    quiet_steps = whole_number("solve_events", "quiet_steps", quiet_steps)
    if record_every is not None:
        record_every = whole_number("solve_events", "record_every", record_every)
    rho0 = jnp.asarray(rho0, dtype=jnp.result_type(float))
    check_finite("solve_events", "rho0", rho0)
    spikes = _check_values("solve_events", spikes)
    calcium = rule.calcium

    def interval(carry, state, s, index):
        rho, t_p, t_d = carry
        a_p, a_d = rule.times_above(calcium.concentration(state), s)
        first, last = jnp.minimum(a_p, a_d), jnp.maximum(a_p, a_d)
        fraction = jnp.arange(drive_steps, dtype=s.dtype) / drive_steps
        begins = jnp.concatenate([first * fraction, first + (last - first) * fraction])
        lengths = jnp.concatenate([jnp.full((drive_steps,), first), jnp.full((drive_steps,), last - first)]) / drive_steps
        tail_driven = rule.DRIVEN_BELOW_THRESHOLDS
        normals = None if key is None else jax.random.normal(
            jax.random.fold_in(key, index), (2 * drive_steps + tail_driven, *rho.shape), rho.dtype)

        def sub_step(j, inner):
            rho, done = inner
            begin, h = begins[j], lengths[j]
            rho = _cubic_flow(rule, rho, begin + h / 2 - done, 1)
            drive = rule.drive(calcium.concentration(calcium.decay(state, begin)), h)
            rho = drive(rho, None if normals is None else normals[j])
            return rho, begin + h / 2

        rho, done = jax.lax.fori_loop(0, 2 * drive_steps, sub_step, (rho, jnp.zeros_like(s)))
        # The tail below both thresholds: its drive at its midpoint, for rules driven there.
        middle = (last + s) / 2
        rho = _cubic_flow(rule, rho, middle - done, max(1, quiet_steps // 2))
        if tail_driven:
            # The tail starts where calcium fell below the lower threshold: clamped there against
            # rounding, so that a threshold rule sees no drive in it (not a sliver of 1e-14 ms).
            c_tail = jnp.minimum(calcium.concentration(calcium.decay(state, last)), jnp.minimum(*rule.thresholds()))
            tail = rule.drive(c_tail, s - last)
            rho = tail(rho, None if normals is None else normals[-1])
        rho = _cubic_flow(rule, rho, s - middle, max(1, quiet_steps - quiet_steps // 2))
        return rho, t_p + a_p, t_d + a_d

    zero = jnp.zeros((), rho0.dtype)
    if record_every is None:
        state, (rho, t_p, t_d), _ = event_loop(calcium, spikes, (rho0, zero, zero), interval)
        return Solution(rho=rho, calcium=state, time_p=t_p, time_d=t_d)
    grid = record_grid(spikes, record_every, "solve_events")
    state, (rho, t_p, t_d), (c, rho_trace) = event_loop(
        calcium, spikes, (rho0, zero, zero), interval, grid=grid,
        record=lambda carry, state: (calcium.concentration(state), carry[0]))
    return Solution(rho=rho, calcium=state, time_p=t_p, time_d=t_d, ts=grid.astype(rho0.dtype) * spikes.unit, c=c,
                    rho_trace=rho_trace)


def _cubic_flow(rule: AbstractRule, rho: Array, length: Array, steps: int) -> Array:
    """`steps` classical RK4 steps of the bistable drift over `length` ms.

    Each stage's increment is one explicit Euler step of the rule's own drift
    (`rule.drift(x, h) - x`), so the drift is defined in one place.
    """
    h = length / steps

    def increment(x):
        return rule.drift(x, h) - x

    def rk4(_, rho):
        k1 = increment(rho)
        k2 = increment(rho + k1 / 2)
        k3 = increment(rho + k2 / 2)
        k4 = increment(rho + k3)
        return rho + (k1 + 2 * k2 + 2 * k3 + k4) / 6

    return jax.lax.fori_loop(0, steps, rk4, rho)


def check_spikes(owner: str, spikes: Spikes) -> Spikes:
    """Check one unbatched protocol for an event-driven solver named `owner`; returns `spikes` (with run-time checks when traced)."""
    _check_structure(owner, spikes)
    return _check_values(owner, spikes)


def _check_structure(owner: str, spikes: Spikes) -> None:
    """Shapes: one unbatched protocol whose tick, offset and mask arrays agree."""
    if not isinstance(spikes, Spikes):
        raise ValueError(f"{owner}: spikes must be ca_plast.Spikes (see to_spikes), got {type(spikes).__name__}")
    for side in ("pre", "post"):
        shapes = {f"{side}_{name}": getattr(spikes, f"{side}_{name}").shape for name in ("tick", "offset", "mask")}
        if len(set(shapes.values())) != 1:
            raise ValueError(f"{owner}: mismatched shapes {shapes}; the tick, offset and mask arrays of one train must agree")
    if spikes.pre_tick.ndim != 1 or spikes.post_tick.ndim != 1 or spikes.end_tick.ndim != 0 or spikes.end_offset.ndim != 0:
        raise ValueError(
            f"{owner}: expected unbatched spikes (1-d trains, scalar end); got pre shape "
            f"{spikes.pre_tick.shape}, post shape {spikes.post_tick.shape}, end shape {spikes.end_tick.shape}; "
            "vmap over the batch"
        )


def _check_values(owner: str, spikes: Spikes) -> Spikes:
    """Offsets finite, real spikes before the protocol's end.

    Raises ValueError on concrete values; traced values (under jit or vmap) are checked at
    run time with `eqx.branched_error_if` (unless `set_run_time_checks(False)`). Presynaptic spikes are checked before the delay D:
    an arrival after the end is legitimate and ignored (`event_sequence`).
    """
    is_traced = traced(spikes)
    xp = jnp if is_traced else np
    arrays = spikes if is_traced else jax.tree.map(np.asarray, spikes)
    checks = []
    for side in ("pre", "post", "end"):
        tick, offset = getattr(arrays, f"{side}_tick"), getattr(arrays, f"{side}_offset")
        checks.append((f"{side}_offset must be finite", ~xp.isfinite(offset), tick, offset))
    end_tick, end_offset = arrays.end_tick, arrays.end_offset
    for side in ("pre", "post"):
        tick, offset, mask = (getattr(arrays, f"{side}_{name}") for name in ("tick", "offset", "mask"))
        late = mask & ((tick > end_tick) | ((tick == end_tick) & (offset >= end_offset)))
        checks.append((f"{side} spike times must lie before the protocol's end (Protocol.duration)", late, tick, offset))
    messages = [f"{owner}: {requirement}" for requirement, *_ in checks]
    if is_traced and not run_time_checks():
        return spikes
    if is_traced:
        failed = jnp.stack([jnp.any(bad) for _, bad, _, _ in checks])
        checked = eqx.branched_error_if(spikes.end_offset, jnp.any(failed), jnp.argmax(failed), messages)
        return eqx.tree_at(lambda sp: sp.end_offset, spikes, checked)
    for message, (_, bad, tick, offset) in zip(messages, checks):
        if bad.any():
            times = tick * spikes.unit + offset
            raise ValueError(f"{message}; got {times[bad][:5]} ms")
    return spikes
