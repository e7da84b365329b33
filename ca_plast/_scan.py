"""Time-stepped solver: `jax.lax.scan` over steps of `spikes.unit` ms.

Each step is exact in everything but the slow cubic drift: spikes act at their true
offsets inside the step, calcium decays exactly between them, the time above each threshold
in every sub-interval is found in closed form, and the threshold-driven part of rho is
solved exactly, its noise as an exact Gaussian increment (`Affine`). The cubic drift is
added by Strang splitting (its time scale is tau ~ 10^5 ms). Because spike offsets, thresholds and calcium enter smoothly,
gradients with respect to theta_p, theta_d, tau_ca, C_pre, C_post and D exist.
"""

import equinox as eqx
import jax
import jax.numpy as jnp

from ._custom_types import Array, ArrayLike, Float, Key
from ._early_phase import Affine, GraupnerBrunel2012
from ._loop import event_loop
from ._spikes import Spikes, shift, tick_count
from ._validation import check_finite, checked


class ScanSolution(eqx.Module):
    """Result of `solve_scan` for one protocol.

    `rho`: final efficacies (shape of `rho0`); `calcium`: final calcium state; `time_p`,
    `time_d`: total time (ms) calcium spent above theta_p and theta_d; `ts` (ms), `c`, `rho_trace`:
    values at the end of every `record_every`-th step and at the protocol's end (left limits:
    a spike exactly at a record time shows in the next record), or None when not asked for.
    """

    rho: Array
    calcium: object
    time_p: Array
    time_d: Array
    ts: Float[Array, " n_records"] | None
    c: Float[Array, " n_records"] | None
    rho_trace: Array | None


def _pop(tick: Array, offset: Array, mask: Array, ptr: Array, step: Array, size: int, unit: float):
    """Take the next spike of a sorted train if it falls in `step`; absent spikes sit at the step's end."""
    i = jnp.minimum(ptr, size - 1)
    hit = (ptr < size) & mask[i] & (tick[i] == step)
    return jnp.where(hit, offset[i], unit), hit, ptr + hit


def arrival_spikes(spikes: Spikes, D: Array) -> Spikes:
    """`spikes` (unbatched) with presynaptic times moved to their arrival at the synapse, `D` ms later."""
    pre_tick, pre_offset = shift(spikes.pre_tick, spikes.pre_offset, D, spikes.unit)
    return eqx.tree_at(lambda sp: (sp.pre_tick, sp.pre_offset), spikes, (pre_tick, pre_offset))


def advance_calcium(rule: GraupnerBrunel2012, arrivals: Spikes, carry: tuple, steps: Array) -> tuple[tuple, Affine]:
    """Step calcium exactly through the consecutive solver steps `steps` of one protocol.

    `arrivals`: unbatched spikes with presynaptic arrival times (`arrival_spikes`). `carry`:
    `(calcium state, next pre index, next post index, time above theta_p, time above theta_d)`
    (times in ms, accumulated). Spikes act at their true offsets inside a step; steps past
    the protocol's end have zero length. Returns the new carry and the composed exact
    `Affine` map of rho's threshold drive over the steps (cubic drift left out).
    """
    unit = arrivals.unit
    calcium = rule.calcium
    n_steps = arrivals.end_tick + (arrivals.end_offset > 0)
    per_step = arrivals.max_per_tick
    n_pre, n_post = arrivals.pre_tick.shape[0], arrivals.post_tick.shape[0]
    unit_ = jnp.asarray(unit, carry[3].dtype)

    def step(carry, k):
        state, ptr_pre, ptr_post, t_p, t_d, affine = carry
        offsets, hits, is_pre = [], [], []
        for _ in range(per_step):
            off, hit, ptr_pre = _pop(arrivals.pre_tick, arrivals.pre_offset, arrivals.pre_mask, ptr_pre, k, n_pre, unit)
            offsets.append(off), hits.append(hit), is_pre.append(True)
        for _ in range(per_step):
            off, hit, ptr_post = _pop(arrivals.post_tick, arrivals.post_offset, arrivals.post_mask, ptr_post, k, n_post, unit)
            offsets.append(off), hits.append(hit), is_pre.append(False)
        offsets = jnp.stack(offsets)
        order = jnp.argsort(jax.lax.stop_gradient(offsets), stable=True)
        offsets, hits, is_pre = offsets[order], jnp.stack(hits)[order], jnp.array(is_pre)[order]
        # Steps past the protocol's end (batch padding) have zero length: nothing changes.
        length = jnp.where(k < n_steps, unit_, 0.0)
        previous = jnp.zeros_like(unit_)
        for j in range(2 * per_step + 1):
            end = jnp.minimum(offsets[j], length) if j < 2 * per_step else length
            s = end - previous
            c0 = calcium.concentration(state)
            a_p, a_d = rule.times_above(c0, s)
            t_p, t_d = t_p + a_p, t_d + a_d
            affine = rule.drive(c0, s).after(affine)
            state = calcium.decay(state, s)
            if j < 2 * per_step:
                state = _apply(hits[j] & is_pre[j], calcium.on_pre(state), state)
                state = _apply(hits[j] & ~is_pre[j], calcium.on_post(state), state)
                previous = end
        return (state, ptr_pre, ptr_post, t_p, t_d, affine), None

    (*carry, affine), _ = jax.lax.scan(step, (*carry, Affine.identity(unit_)), steps)
    return tuple(carry), affine


def solve_scan(
    rule: GraupnerBrunel2012,
    spikes: Spikes,
    rho0: ArrayLike,
    *,
    key: Key | None = None,
    record_every: int | None = None,
    chunk: int = 100,
) -> ScanSolution:
    """Simulate one protocol (unbatched `spikes`) on a time grid of `chunk` steps of `spikes.unit` ms.

    `rho0`: initial efficacies of any shape; all share the protocol's calcium trace and get
    independent noise. `key`: noise key (keyword-only); None switches noise off.

    rho is stepped on a grid of `chunk` steps (`record_every` when given): 10 ms by default.
    Between grid points calcium and the exact affine map of the threshold drive are carried
    from spike to spike (the event loop, `event_loop`: exact, since the drive is linear in rho,
    see `Affine`) and composed; at each grid point the synapses take the composed map with one
    Gaussian increment of the exact variance (key `fold_in(key, grid index)`), between two half
    steps of the cubic drift (Strang splitting at the grid period, against tau ~ 10^5 ms). So
    the cost grows with the spikes and grid points, not with the steps, and does not grow with
    the number of synapses between grid points. Reverse mode stores one carry per event.
    `record_every`: record c and rho every that many steps.
    """
    rule = checked(rule, "solve_scan")
    unit = spikes.unit
    if spikes.pre_tick.ndim != 1:
        raise ValueError(f"solve_scan: expected unbatched spikes (1-d trains); got shape {spikes.pre_tick.shape}; vmap over the batch")
    if record_every is not None and (int(record_every) != record_every or record_every < 1):
        raise ValueError(f"solve_scan: record_every must be a whole number of steps >= 1, got {record_every!r}")
    if int(chunk) != chunk or chunk < 1:
        raise ValueError(f"solve_scan: chunk must be a whole number of steps >= 1, got {chunk!r}")
    rho0 = jnp.asarray(rho0, dtype=jnp.result_type(float))
    check_finite("solve_scan", "rho0", rho0)
    n_steps = spikes.end_tick + (spikes.end_offset > 0)
    chunk = int(record_every or chunk)
    n_grid = -(-tick_count(spikes, "solve_scan") // chunk)
    grid = jnp.minimum((jnp.arange(n_grid) + 1) * chunk, n_steps)
    unit_ = jnp.asarray(unit, rho0.dtype)
    zero = jnp.zeros_like(unit_)

    def interval(carry, state, s, index):
        rho, affine, t_p, t_d = carry
        c0 = rule.calcium.concentration(state)
        a_p, a_d = rule.times_above(c0, s)
        return rho, rule.drive(c0, s).after(affine), t_p + a_p, t_d + a_d

    def at_grid(carry, state, g):
        rho, affine, t_p, t_d = carry
        elapsed = (grid[g] - jnp.where(g > 0, grid[g - 1], 0)).astype(unit_.dtype) * unit_
        normal = None if key is None else jax.random.normal(jax.random.fold_in(key, g), rho.shape, rho.dtype)
        rho = rule.cubic(affine(rule.cubic(rho, elapsed / 2), normal), elapsed / 2)
        return rho, Affine.identity(zero), t_p, t_d

    def record(carry, state):
        return rule.calcium.concentration(state), carry[0]

    carry = (rho0, Affine.identity(zero), zero, zero)
    state, (rho, _, t_p, t_d), records = event_loop(
        rule.calcium, spikes, carry, interval, grid=grid, at_grid=at_grid,
        record=None if record_every is None else record)
    if record_every is None:
        return ScanSolution(rho=rho, calcium=state, time_p=t_p, time_d=t_d, ts=None, c=None, rho_trace=None)
    c_trace, rho_trace = records
    return ScanSolution(rho=rho, calcium=state, time_p=t_p, time_d=t_d, ts=grid.astype(rho0.dtype) * unit,
                        c=c_trace, rho_trace=rho_trace)


def _apply(flag: Array, new, old):
    return jax.tree.map(lambda a, b: jnp.where(flag, a, b), new, old)
