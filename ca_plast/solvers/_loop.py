"""The event loop every solver runs on.

Between two events calcium only decays (every calcium model of `ca_plast` decays as one
exponential between spikes), so a solver needs to say only two things: what its synapses do
over an interval of free calcium decay (`interval`), and, for solvers that act on a fixed
time grid, what happens at a grid point (`at_grid`). The loop owns the rest, once for
every solver: the merged, sorted events (`event_sequence` for the early phase: presynaptic
arrivals `D` ms after the spikes, postsynaptic spikes, the protocol's end, grid points), the
exact calcium between them, the spikes' jumps, and what is recorded.

Order at equal times: grid point, presynaptic arrival, postsynaptic spike, end. So a grid
point sees the left limit of calcium (a spike exactly at a grid time acts after it).

A solver with a spiking neuron (synaptic tagging and capture) cuts intervals short where the
neuron reaches its threshold (`split`): the loop then runs iterations, each to the next event
or to the neuron's spike, with spare iterations for those spikes.

A dense grid (the emulation's update every 0.1 ms: 600,000 grid points in a minute of
protocol) is mostly quiet: no spike arrives and calcium is below every threshold. A solver
that says when its intervals do nothing (`quiet`) gets the loop in blocks of consecutive
events; a block of grid points only that starts quiet takes a lean path (calcium decays, the
solver acts at each grid point, `interval` is skipped) with the same numbers as the full one.
Keep that path small: XLA on CPU runs a loop body of a few operations in sequence, a larger
one through a scheduler that costs about a microsecond per iteration.
"""

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from .._calcium import AbstractCalcium
from .._custom_types import Array, CalciumState, Int
from .._spikes import END, GRID, POST, PRE, EventList, Spikes, event_list, tick_count

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


class LoopResult(NamedTuple):
    """What `run_events` returns: the final calcium state and carry, the records (stacked over
    the grid points, or over the events without a grid; None without `record`), and the
    number of events left unprocessed (0 unless a split loop ran out of iterations)."""

    state: CalciumState
    carry: Carry
    records: Any
    n_late: Array


class Segment(NamedTuple):
    """Where an iteration of a split loop (`run_events` with `split`) stands, for `interval`:
    its number, the event it heads to (`event`: its position in the list, n once all are
    processed), the ms already run since the previous event, and whether the segment ends at
    that event (False: at the solver's own spike)."""

    iteration: Array
    event: Array
    elapsed: Array
    reached: Array


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
    """Run one protocol (unbatched `spikes`) event by event, from calcium at rest.

    The events are `event_sequence(spikes, D, grid)`; `D`: the presynaptic delay (ms),
    `calcium.D` by default (a calcium model whose fields are arrays over synapses, e.g. with
    hardware mismatch, passes the shared scalar). `grid`: tick numbers (multiples of
    `spikes.unit`, non-decreasing) of the solver's grid points. The rest as in `run_events`.
    Returns the final calcium state, the final carry and the records.
    """
    events = event_list(spikes, calcium.D if D is None else D, grid)
    result = run_events(calcium, events, calcium.init(), carry, interval, at_grid=at_grid, record=record,
                        n_grid=None if grid is None else grid.shape[0], quiet=quiet, at_quiet_grid=at_quiet_grid)
    return result.state, result.carry, result.records


def run_events(
    calcium: AbstractCalcium,
    events: EventList,
    state: CalciumState,
    carry: Carry,
    interval: Callable[[Carry, CalciumState, Array, Array], Carry],
    *,
    at_grid: Callable[[Carry, CalciumState, Array], Carry] | None = None,
    record: Callable[[Carry, CalciumState], Any] | None = None,
    n_grid: int | None = None,
    at_event: Callable[[Carry, Array, Array, Array, Array], Carry] | None = None,
    targets: int | None = None,
    split: Callable[[Carry, CalciumState, Array], tuple[Array, Array]] | None = None,
    spare: int = 0,
    chunk: int = 1,
    quiet: Callable[[Carry, CalciumState], Array] | None = None,
    at_quiet_grid: Callable[[Carry, CalciumState, Array], Carry] | None = None,
) -> LoopResult:
    """The event loop: `events` (sorted, kinds `PRE`, `POST`, `END`, `GRID` and the solver's
    own) from calcium `state` and the solver's `carry`.

    - `interval(carry, state, s, index)`: the solver's synapses over `s` ms of free calcium
      decay from calcium state `state`; `index` is the event's position (for per-event
      noise), with `split` a `Segment`.
    - `at_grid(carry, state, g)` acts at grid point `g` (0, 1, ...; events of kind `GRID`),
      with calcium at its left limit; `n_grid`: the number of grid points (static).
    - `record(carry, state)`: what to keep at each grid point (after `at_grid`), or at every
      event (after its interval, before its jump) when there is no grid (`n_grid` None).
    - The loop applies the spikes to calcium: a `PRE` arrival (to the synapse its tag names
      when calcium has a leading axis of `targets` synapses) and a `POST` spike.
      `at_event(carry, kind, acts, tag, post)`: what else an event does (e.g. to a neuron);
      `post` says whether a postsynaptic spike (given or the solver's own) happened.
    - `split(carry, state, s) -> (fire, segment)`: the solver may cut the next `s` ms short,
      at a postsynaptic spike of its own after `segment` ms (e.g. a neuron reaching its
      threshold). Then the loop runs iterations, not events: each advances to the next event
      or to such a spike; `spare` iterations beyond one per event are the room for those
      spikes, and `LoopResult.n_late` counts the events a run had no room for. Reverse mode
      stores one carry per `chunk` iterations and recomputes the rest (`jax.checkpoint`).
    - `quiet(carry, state)`: the solver's promise that from `state`, as long as no spike
      arrives, `interval` leaves `carry` exactly as it is (e.g. calcium below both thresholds
      of a rule not driven there). With it and a grid, events run in blocks (`quiet_block`);
      a block of grid points only whose start is quiet skips `interval` (calcium decays, the
      solver acts at each grid point): the same numbers, several times cheaper.
      `at_quiet_grid`: `at_grid` for those grid points, where the solver may leave out work it
      knows to be void there (`at_grid` by default). Not with `split`.

    Without `split`, reverse mode stores one carry per event (per block with `quiet`).
    """
    n = events.length.shape[0]
    n_grid_points = 0 if n_grid is None else n_grid

    def advance(loop, s, kind, act, tag, index, fire=None):
        """One segment of `s` ms ending at the event (`fire` None or False) or at the
        solver's own spike (`fire`); `act`: whether the event acts."""
        state, carry, g = loop
        carry = interval(carry, state, s, index)
        state = calcium.decay(state, s)
        reached = True if fire is None else ~fire
        if at_grid is not None:
            on_grid, act_at = reached & (kind == GRID), at_grid
            carry = jax.lax.cond(on_grid, lambda c: act_at(c, state, g), lambda c: c, carry)
            g = g + on_grid.astype(g.dtype)
        out = None if record is None else record(carry, state)
        acts = act if fire is None else act & reached
        arrive = acts & (kind == PRE)
        if targets is not None:
            arrive = arrive & (tag == jnp.arange(targets))
        post = acts & (kind == POST)
        if fire is not None:
            post = post | fire
        state = tree_where(arrive, calcium.on_pre(state), state)
        state = tree_where(post, calcium.on_post(state), state)
        if at_event is not None:
            carry = at_event(carry, kind, acts, tag, post)
        return (state, carry, g), out

    init = (state, carry, jnp.array(0))
    if split is not None:
        return _split_loop(events, split, advance, init, spare, chunk, record, n_grid)

    def step(loop, event):
        s, kind, act, index = event[:4]
        return advance(loop, s, kind, act, None if targets is None else event[4], index)

    xs = (events.length, events.kind, events.active, jnp.arange(n))
    if targets is not None:
        xs = (*xs, events.tag)
    block = 1
    if quiet is not None and at_grid is not None and n_grid_points:
        block = quiet_block(n_grid_points, n - n_grid_points)
    if block == 1:
        (state, carry, _), outs = jax.lax.scan(jax.checkpoint(step), init, xs)
    else:
        (state, carry, _), outs = _blocks(calcium, step, at_quiet_grid or at_grid, record, quiet, init, xs, block)
    n_late = jnp.zeros((), jnp.int32)
    if record is None or n_grid is None:
        return LoopResult(state, carry, outs, n_late)
    where = jnp.nonzero(events.kind == GRID, size=n_grid)[0]
    return LoopResult(state, carry, jax.tree.map(lambda x: x[where], outs), n_late)


def _split_loop(events: EventList, split, advance, init, spare: int, chunk: int, record, n_grid) -> LoopResult:
    """`run_events` with `split`: iterations that each advance to the next event or to the
    solver's own spike, whichever comes first, in checkpointed chunks."""
    n = events.length.shape[0]
    n_chunks = -(-(n + spare) // chunk)

    def iteration(loop, index):
        core, ptr, elapsed = loop
        live = ptr < n
        i = jnp.minimum(ptr, n - 1)
        s = jnp.where(live, events.length[i] - elapsed, 0.0)
        state, carry, _ = core
        fire, segment = split(carry, state, s)
        fire = fire & live
        reached = live & ~fire
        kind = jnp.where(live, events.kind[i], END)  # past the last event: nothing is reached
        where = Segment(index, ptr, elapsed, reached)
        core, out = advance(core, segment, kind, events.active[i] & live, events.tag[i], where, fire)
        return (core, ptr + reached, jnp.where(reached, 0.0, elapsed + segment)), (out, reached & (kind == GRID))

    @jax.checkpoint
    def run_chunk(loop, first):
        return jax.lax.scan(iteration, loop, first + jnp.arange(chunk))

    zero = jnp.zeros((), jnp.int32)
    loop = (init, zero, jnp.zeros((), events.length.dtype))
    ((state, carry, _), ptr, _), (outs, on_grid) = jax.lax.scan(run_chunk, loop, chunk * jnp.arange(n_chunks))
    if record is not None:
        outs = jax.tree.map(lambda x: x.reshape(n_chunks * chunk, *x.shape[2:]), outs)
        if n_grid is not None:
            where = jnp.nonzero(on_grid.reshape(-1), size=n_grid)[0]
            outs = jax.tree.map(lambda x: x[where], outs)
    return LoopResult(state, carry, outs, n - ptr)


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
              for x, fill in zip(events, (0, END, False, n, 0))]
    blocks = jax.tree.map(lambda x: x.reshape(n_blocks, block), (*padded, valid))
    grid_only = jnp.all(blocks[1] == GRID, axis=1) & jnp.all(blocks[-1], axis=1)

    def full(loop, event):
        new, out = step(loop, event[:-1])
        return tree_where(event[-1], new, loop), out

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
