"""The event loop every early-phase solver runs on.

Between two events calcium only decays (every calcium model of `ca_plast` decays as one
exponential between spikes), so a solver needs to say only two things: what its synapses do
over an interval of free calcium decay (`interval`), and, for solvers that act on a fixed
time grid, what happens at a grid point (`at_grid`). The loop owns the rest, once for
every solver: the merged, sorted events (`event_sequence`: presynaptic arrivals `D` ms after
the spikes, postsynaptic spikes, the protocol's end, grid points), the exact calcium between
them, the spikes' jumps, and what is recorded.

Order at equal times: grid point, presynaptic arrival, postsynaptic spike, end. So a grid
point sees the left limit of calcium (a spike exactly at a grid time acts after it).

A dense grid (the emulation's update every 0.1 ms: 600,000 grid points in a minute of
protocol) is mostly quiet: no spike arrives and calcium is below every threshold. A solver
that says when its intervals do nothing (`quiet`) gets the loop in blocks of consecutive
events; a block of grid points only that starts quiet takes a lean path (calcium decays, the
solver acts at each grid point, `interval` is skipped) with the same numbers as the full one.
Keep that path small: XLA on CPU runs a loop body of a few operations in sequence, a larger
one through a scheduler that costs about a microsecond per iteration.
"""

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from .._calcium import AbstractCalcium
from .._custom_types import Array, CalciumState, Int
from .._spikes import END, GRID, POST, PRE, Spikes, event_sequence, tick_count

Carry = Any


def tree_where(flag: Array, new, old):
    """`new` where `flag`, else `old`, leaf by leaf (pytrees of the same structure)."""
    return jax.tree.map(lambda a, b: jnp.where(flag, a, b), new, old)


def record_grid(spikes: Spikes, every: int, owner: str) -> Int[Array, " n"]:
    """Tick numbers of a grid every `every` ticks, the last one at the protocol's end (the
    grid of the time-stepped solvers, the emulation's update times, the record times)."""
    n_steps = spikes.end_tick + (spikes.end_offset > 0)
    n_grid = -(-tick_count(spikes, owner) // every)
    return jnp.minimum((jnp.arange(n_grid) + 1) * every, n_steps)


def event_loop(
    calcium: AbstractCalcium,
    spikes: Spikes,
    carry: Carry,
    interval: Callable[[Carry, CalciumState, Array, Array], Carry],
    *,
    grid: Int[Array, " n_grid"] | None = None,
    at_grid: Callable[[Carry, CalciumState, Array], Carry] | None = None,
    record: Callable[[Carry, CalciumState], Any] | None = None,
    D: Array | None = None,
    quiet: Callable[[Carry, CalciumState], Array] | None = None,
    at_quiet_grid: Callable[[Carry, CalciumState, Array], Carry] | None = None,
) -> tuple[CalciumState, Carry, Any]:
    """Run one protocol (unbatched `spikes`) event by event.

    - `interval(carry, state, s, index)`: the solver's synapses over `s` ms of free calcium
      decay from calcium state `state`; `index` is the event's position in the sequence
      (for per-event random keys).
    - `grid`: tick numbers (multiples of `spikes.unit`, non-decreasing) of the solver's grid
      points; `at_grid(carry, state, g)` acts at grid point `g` (0, 1, ...), with calcium at
      its left limit.
    - `record(carry, state)`: what to keep at each grid point (after `at_grid`), or at every
      event (after its interval, before its jump) when there is no grid.
    - `D`: the presynaptic delay (ms), `calcium.D` by default (a calcium model whose fields
      are arrays over synapses, e.g. with hardware mismatch, passes the shared scalar).
    - `quiet(carry, state)`: the solver's promise that from `state`, as long as no spike
      arrives, `interval` leaves `carry` exactly as it is (e.g. calcium below both thresholds
      of a rule not driven there). With it and a grid, events run in blocks (`quiet_block`);
      a block of grid points only whose start is quiet skips `interval` (calcium decays, the
      solver acts at each grid point): the same numbers, several times cheaper.
      `at_quiet_grid`: `at_grid` for those grid points, where the solver may leave out work it
      knows to be void there (`at_grid` by default).

    Returns the final calcium state, the final carry and the records stacked over the grid
    points, or over the events without a grid (None without `record`). Reverse mode stores
    one carry per event (per block with `quiet`) and recomputes the rest (`jax.checkpoint`).
    """
    intervals, kinds, active = event_sequence(spikes, calcium.D if D is None else D, grid)
    n = intervals.shape[0]

    def step(loop, event):
        state, carry, g = loop
        s, kind, act, index = event[:4]
        carry = interval(carry, state, s, index)
        state = calcium.decay(state, s)
        if at_grid is not None:
            on_grid, act_at = kind == GRID, at_grid
            carry = jax.lax.cond(on_grid, lambda c: act_at(c, state, g), lambda c: c, carry)
            g = g + on_grid.astype(g.dtype)
        out = None if record is None else record(carry, state)
        state = tree_where(act & (kind == PRE), calcium.on_pre(state), state)
        state = tree_where(act & (kind == POST), calcium.on_post(state), state)
        return (state, carry, g), out

    events = (intervals, kinds, active, jnp.arange(n))
    init = (calcium.init(), carry, jnp.array(0))
    block = 1 if quiet is None or grid is None or at_grid is None else quiet_block(grid.shape[0], n - grid.shape[0])
    if block == 1:
        (state, carry, _), outs = jax.lax.scan(jax.checkpoint(step), init, events)
    else:
        (state, carry, _), outs = _blocks(calcium, step, at_quiet_grid or at_grid, record, quiet, init, events, block)
    if record is None or grid is None:
        return state, carry, outs
    where = jnp.nonzero(kinds == GRID, size=grid.shape[0])[0]
    return state, carry, jax.tree.map(lambda x: x[where], outs)


MIN_QUIET_GRID = 20_000


def quiet_block(n_grid: int, n_events: int) -> int:
    """Events per block of a loop with a quiet path: about a quarter of the mean number of
    grid points between two events, at most 128 (0.1 ms updates, 60 pairs at 1 Hz: 128), so
    that most blocks hold grid points only. 1 (no blocks) below `MIN_QUIET_GRID` grid points:
    the lean path saves about 2 us per quiet grid point on the CPU but adds about a second of
    compilation, which a smaller grid does not earn back."""
    if n_grid < MIN_QUIET_GRID:
        return 1
    return int(min(128, max(1, n_grid // (4 * max(1, n_events)))))


def _blocks(calcium, step, at_grid, record, quiet, init, events, block):
    """`scan(step, init, events)` in blocks of `block` events, a block of grid points only
    that starts quiet by the lean path (no `interval`). Returns what the plain scan would."""
    kinds = events[1]
    n = kinds.shape[0]
    n_blocks = -(-n // block)
    pad = n_blocks * block - n
    # Padding: events of no length and no kind the loop acts on, kept out of the carry below.
    valid = jnp.arange(n_blocks * block) < n
    padded = [jnp.concatenate([x, jnp.full((pad,), fill, x.dtype)])
              for x, fill in zip(events, (0, END, False, n))]
    blocks = jax.tree.map(lambda x: x.reshape(n_blocks, block), (*padded, valid))
    grid_only = jnp.all(blocks[1] == GRID, axis=1) & jnp.all(blocks[4], axis=1)

    def full(loop, event):
        new, out = step(loop, event)
        return tree_where(event[4], new, loop), out

    def lean(loop, event):
        # A grid point in a quiet stretch: what `step` does when `interval` is the identity.
        state, carry, g = loop
        state = calcium.decay(state, event[0])
        carry = at_grid(carry, state, g)
        return (state, carry, g + 1), None if record is None else record(carry, state)

    @jax.checkpoint
    def run_block(loop, args):
        block_events, only_grid = args
        state, carry, _ = loop
        return jax.lax.cond(_for_all(only_grid & quiet(carry, state)),
                            lambda lp: jax.lax.scan(lean, lp, block_events),
                            lambda lp: jax.lax.scan(full, lp, block_events), loop)

    final, outs = jax.lax.scan(run_block, init, (blocks, grid_only))
    return final, jax.tree.map(lambda x: x.reshape(n_blocks * block, *x.shape[2:])[:n], outs)


@jax.custom_batching.custom_vmap
def _for_all(flag: Array) -> Array:
    """`flag`; under `vmap`, whether it holds for the whole batch (unbatched). A `cond` on it
    stays a branch under `vmap` (taking the full path for all unless all are quiet, which is
    exact either way) instead of becoming a select that runs both paths."""
    return flag


@_for_all.def_vmap
def _(axis_size, in_batched, flag):
    return jnp.all(flag), False
