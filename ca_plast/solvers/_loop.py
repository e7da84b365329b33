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
"""

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from .._calcium import AbstractCalcium
from .._custom_types import Array, CalciumState, Int
from .._spikes import GRID, POST, PRE, Spikes, event_sequence, tick_count

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
) -> tuple[CalciumState, Carry, Any]:
    """Run one protocol (unbatched `spikes`) event by event.

    - `interval(carry, state, s, index)`: the solver's synapses over `s` ms of free calcium
      decay from calcium state `state`; `index` is the event's position in the sequence
      (for per-event random keys).
    - `grid`: tick numbers (multiples of `spikes.unit`, non-decreasing) of the solver's grid
      points; `at_grid(carry, state, g)` acts at grid point `g` (0, 1, ...), with calcium at
      its left limit.
    - `record(carry, state)`: what to keep at each grid point (after `at_grid`).
    - `D`: the presynaptic delay (ms), `calcium.D` by default (a calcium model whose fields
      are arrays over synapses, e.g. with hardware mismatch, passes the shared scalar).

    Returns the final calcium state, the final carry and the records stacked over the grid
    points (None without `record`). The body is `jax.checkpoint`ed: reverse mode stores one
    carry per event.
    """
    intervals, kinds, active = event_sequence(spikes, calcium.D if D is None else D, grid)

    @jax.checkpoint
    def body(loop, event):
        state, carry, g = loop
        s, kind, act, index = event
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

    events = (intervals, kinds, active, jnp.arange(intervals.shape[0]))
    (state, carry, _), outs = jax.lax.scan(body, (calcium.init(), carry, jnp.array(0)), events)
    if record is None or grid is None:
        return state, carry, None
    where = jnp.nonzero(kinds == GRID, size=grid.shape[0])[0]
    return state, carry, jax.tree.map(lambda x: x[where], outs)
