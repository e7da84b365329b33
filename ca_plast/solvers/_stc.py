"""Multi-timescale solver for synaptic tagging and capture over hours, and its fine-step reference.

`solve_stc` is event-driven: the event loop of every solver (`run_events`) over the merged,
sorted events of a protocol (calcium arrivals of presynaptic spikes after `D`,
synaptic-current arrivals after the neuron's delay, imposed postsynaptic spikes, and a grid
of record times every `record_every` ms). Between two events nothing but exponential decay of calcium happens, and
`LuboeinskiTetzlaff2021.step` maps (h, p, z) over the interval exactly, with every threshold
crossing of calcium and of h located inside the interval. Hence the time resolution is fine
exactly where it is needed (a few ms between spikes during a tetanus) and coarse elsewhere
(the record grid, tens of seconds, while the late phase evolves for hours), all inside one
jit-compiled scan with no Python loop over time. With a `LeakyIntegrateAndFire` neuron, its
threshold crossings inside an interval are found exactly (`first_spike`) and split the
interval (the loop's `split`): the spike adds C_post to calcium and resets the neuron.

Times stay exact over 8 h: every event is an integer tick plus an offset (`Spikes`) and
intervals come from integer tick differences (`_spikes.interval`), never from an
accumulated float clock. Reverse-mode gradients flow through the whole run; the loop runs in
`jax.checkpoint`ed chunks, so reverse mode stores one carry per chunk and recomputes inside.

With `synapses=True` several synapses onto one neuron (each with its own presynaptic train
and calcium) share its protein pool and its spikes; the neuron sums their inputs.

`solve_stc_fine` is the plain reference: Euler-Maruyama steps of `spikes.unit` ms (0.2 ms,
as in the model authors' code) with every Heaviside sampled at the step start.
"""

import abc

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._custom_types import Array, Float, Int, Key
from .._lif import LeakyIntegrateAndFire
from .._spikes import END, GRID, POST, PRE, EventList, Spikes, merge_events, shift, tick_count, whole_steps
from .._validation import checked, whole_number
from ..rules._lt2021 import LuboeinskiTetzlaff2021, STCState, STCStats
from ._loop import run_events, tree_where

CURRENT = 4  # a synaptic current reaching the neuron (the loop's own kinds are 0..3)
_TILE = 25  # steps per innermost loop of `solve_stc_fine`


class STCSolution(eqx.Module):
    """Result of an STC simulation (a leading trial axis on every array when batched).

    `state`: final (h, p, z); `ts`: record times (ms from the protocol start, first 0);
    `h`, `p`, `z`: values at the record times; `stats`: totals over the run (`STCStats`:
    ms with protein synthesis and with each tag, extremes of h); `n_post`: postsynaptic
    spikes; `n_late`: events left unprocessed because the neuron fired more than the solver
    had room for (0 in a complete run; see `solve_stc`).
    """

    state: STCState
    ts: Float[Array, "... n_records"]
    h: Float[Array, "... n_records"]
    p: Float[Array, "... n_records"]
    z: Float[Array, "... n_records"]
    stats: STCStats
    n_post: Int[Array, "..."]
    n_late: Int[Array, "..."]


class AbstractSTCSolver(eqx.Module):
    """A solver of synaptic tagging and capture: how `simulate_stc` advances one trial.

    `run(rule, spikes, *, neuron, key, record_every, synapses)` takes the arguments of
    `solve_stc` and returns an `STCSolution`. A solver whose neuron may fire more often than it
    has iterations for reports it in `n_late` and gives a copy with more room (`with_room`).
    """

    @abc.abstractmethod
    def run(self, rule: LuboeinskiTetzlaff2021, spikes: Spikes, *, neuron: LeakyIntegrateAndFire | None,
            key: Key | None, record_every: float, synapses: bool) -> STCSolution:
        """Simulate one trial (unbatched `spikes`)."""

    @property
    def room(self) -> int | None:
        """Spare iterations for the neuron's own spikes (None: the solver needs none)."""
        return None

    def with_room(self, room: int) -> "AbstractSTCSolver":
        """This solver with `room` spare iterations for the neuron's spikes."""
        return self


class STCEvents(AbstractSTCSolver):
    """The exact multi-timescale solver (`solve_stc`): `max_post_spikes`, `chunk` as there."""

    max_post_spikes: int = eqx.field(static=True, default=64)
    chunk: int = eqx.field(static=True, default=32)

    def run(self, rule: LuboeinskiTetzlaff2021, spikes: Spikes, *, neuron: LeakyIntegrateAndFire | None,
            key: Key | None, record_every: float, synapses: bool) -> STCSolution:
        return solve_stc(rule, spikes, neuron=neuron, key=key, record_every=record_every,
                         max_post_spikes=self.max_post_spikes, chunk=self.chunk, synapses=synapses)

    @property
    def room(self) -> int:
        return self.max_post_spikes

    def with_room(self, room: int) -> "STCEvents":
        return STCEvents(max_post_spikes=room, chunk=self.chunk)


class STCFine(AbstractSTCSolver):
    """The fine-step Euler-Maruyama reference (`solve_stc_fine`): steps of `spikes.unit` ms."""

    def run(self, rule: LuboeinskiTetzlaff2021, spikes: Spikes, *, neuron: LeakyIntegrateAndFire | None,
            key: Key | None, record_every: float, synapses: bool) -> STCSolution:
        return solve_stc_fine(rule, spikes, neuron=neuron, key=key, record_every=record_every, synapses=synapses)


def _layout(spikes: Spikes, synapses: bool, name: str):
    """Presynaptic trains as (n_synapses, max) arrays, their synapse indices, and the shared
    postsynaptic train and end; n_synapses None for one synapse (scalar state)."""
    if spikes.pre_tick.ndim != (2 if synapses else 1):
        expected = "spikes batched over the synapses (2-d trains)" if synapses else "unbatched spikes (1-d trains)"
        raise ValueError(f"{name}: expected {expected}; got shape {spikes.pre_tick.shape}; vmap over the batch")
    if not synapses:
        pre = (spikes.pre_tick[None], spikes.pre_offset[None], spikes.pre_mask[None])
        post = (spikes.post_tick, spikes.post_offset, spikes.post_mask)
        return None, pre, post, spikes.end_tick, spikes.end_offset
    post = (spikes.post_tick[0], spikes.post_offset[0], spikes.post_mask[0])
    pre = (spikes.pre_tick, spikes.pre_offset, spikes.pre_mask)
    return spikes.pre_tick.shape[0], pre, post, spikes.end_tick[0], spikes.end_offset[0]



def check_spare(name: str, max_post_spikes: int) -> None:
    whole_number(name, "max_post_spikes", max_post_spikes, minimum=0)


def stc_events(rule: LuboeinskiTetzlaff2021, spikes: Spikes, neuron: LeakyIntegrateAndFire | None,
               record_every: float, synapses: bool, name: str) -> tuple[int | None, int, int, EventList]:
    """The merged `EventList` of an STC run (see `solve_stc`), the number of synapses (None for
    one), ticks between records, and the number of records after the start."""
    unit = spikes.unit
    n_syn, (pre_tick, pre_offset, pre_mask), post, end_tick, end_offset = _layout(spikes, synapses, name)
    record_steps = whole_steps(record_every, unit, name)
    n_records = tick_count(spikes, name) // record_steps
    source = jnp.broadcast_to(jnp.arange(pre_tick.shape[0], dtype=jnp.int32)[:, None], pre_tick.shape).reshape(-1)

    def flat(delay, kind: int):
        tick, offset = shift(pre_tick, pre_offset, delay, unit)
        return tick.reshape(-1), offset.reshape(-1), pre_mask.reshape(-1), kind, source

    def shared(tick, offset, mask, kind: int):
        return tick, offset, mask, kind, jnp.zeros(tick.shape, jnp.int32)

    streams = [flat(rule.calcium.D, PRE)]
    if neuron is not None:
        streams.append(flat(neuron.delay, CURRENT))
    streams.append(shared(*post, POST))
    record_tick = jnp.asarray(record_steps * np.arange(1, n_records + 1), end_tick.dtype)
    streams.append(shared(record_tick, jnp.zeros(n_records, end_offset.dtype), jnp.ones(n_records, bool), GRID))
    return n_syn, record_steps, n_records, merge_events(streams, end_tick, end_offset, END, unit)


def neuron_split(neuron: LeakyIntegrateAndFire | None, lif, s: Array) -> tuple[Array, Array]:
    """The loop's `split` for an STC solver: whether the neuron (in state `lif`) reaches its
    threshold within the next `s` ms, and when (ms); never without a neuron."""
    if neuron is None:
        return jnp.array(False), s
    return neuron.first_spike(lif, s)


def neuron_at_event(neuron: LeakyIntegrateAndFire, lif, w: Array, kind: Array, acts: Array, post: Array):
    """The neuron at an event: a synaptic current through a synapse of weight `w` (mV) arrives
    (kind `CURRENT`, if it `acts`), and it fires (`post`: a given spike or its own)."""
    lif = tree_where(acts & (kind == CURRENT), neuron.on_input(lif, w), lif)
    return tree_where(post, neuron.on_spike(lif), lif)


def stc_solution(start: STCState, final: STCState, records: STCState, stats: STCStats, n_post, n_late,
                 unit: float, record_steps: int) -> STCSolution:
    """`STCSolution` from the (h, p, z) `records` at the record times after the start."""
    h, p, z = (jnp.concatenate([first[None], values])
               for first, values in zip((start.h, start.p, start.z), (records.h, records.p, records.z)))
    ts = unit * np.arange(h.shape[0]) * record_steps
    return STCSolution(state=final, ts=jnp.asarray(ts, h.dtype), h=h, p=p, z=z, stats=stats, n_post=n_post,
                       n_late=n_late)


def solve_stc(
    rule: LuboeinskiTetzlaff2021,
    spikes: Spikes,
    *,
    neuron: LeakyIntegrateAndFire | None = None,
    key: Key | None = None,
    record_every: float = 30_000.0,
    max_post_spikes: int = 64,
    chunk: int = 32,
    synapses: bool = False,
) -> STCSolution:
    """Simulate one synapse (or several onto one neuron) through one protocol (unbatched `spikes`), multi-timescale and exact.

    `synapses`: True for several synapses onto one neuron, sharing its protein pool: `spikes`
    then holds one presynaptic train per synapse (`to_spikes(protocols)`, leading synapse
    axis), each with its own calcium; the postsynaptic spikes and the end are the first
    protocol's. h and z (state and records) then get a trailing synapse axis, p stays shared.
    `neuron`: None to take the postsynaptic spikes from the protocol; a
    `LeakyIntegrateAndFire` to have the neuron fire, driven by the synapses' weights w
    (protocol post spikes are then imposed spikes of the neuron). `key` (keyword-only):
    plasticity noise (all normals drawn at once from it); None for noise off.
    `record_every`: record grid (ms, a whole number of `spikes.unit` ticks).

    Each scan iteration advances to the next event, or to the neuron's next threshold
    crossing when that comes first (the event then waits for the next iteration); so the
    scan has one iteration per event plus `max_post_spikes` spare ones for the neuron's
    spikes. A run whose neuron fires more often stops short: `n_late` counts the events left
    unprocessed (`simulate_stc` then reruns with more room). `chunk`: iterations per
    `jax.checkpoint`ed block.
    """
    rule = checked(rule, "solve_stc")
    neuron = None if neuron is None else checked(neuron, "solve_stc")
    check_spare("solve_stc", max_post_spikes)
    whole_number("solve_stc", "chunk", chunk, of=" of iterations")
    n_syn, record_steps, n_records, events = stc_events(rule, spikes, neuron, record_every, synapses, "solve_stc")
    calcium = rule.calcium
    n_events = events.length.shape[0]
    spare = 0 if neuron is None else int(max_post_spikes)
    n_iterations = -(-(n_events + spare) // chunk) * chunk
    noise_shape = (2,) if n_syn is None else (2 * n_syn, n_syn)
    normals = None if key is None else jax.random.normal(key, (n_iterations, *noise_shape), events.length.dtype)

    def interval(carry, state, s, index):
        syn, lif, stats, n_post = carry
        normal = None if normals is None else normals[index.iteration]
        syn, piece = rule.step(syn, calcium.concentration(state), s, normal)
        lif = None if neuron is None else neuron.propagate(lif, s)
        return syn, lif, stats.then(piece), n_post

    def at_event(carry, kind, acts, tag, post):
        syn, lif, stats, n_post = carry
        if neuron is not None:
            w = rule.weight(syn) if n_syn is None else rule.weight(syn)[tag]
            lif = neuron_at_event(neuron, lif, w, kind, acts, post)
        return syn, lif, stats, n_post + post

    start = rule.init(n_syn)
    lif = None if neuron is None else neuron.init()
    carry = (start, lif, STCStats.start(start.h), jnp.zeros((), jnp.int32))
    result = run_events(calcium, events, calcium.rest(start.h.shape), carry, interval, at_event=at_event,
                        record=lambda carry, state: carry[0], n_grid=n_records, targets=n_syn,
                        split=lambda carry, state, s: neuron_split(neuron, carry[1], s), spare=spare, chunk=chunk)
    syn, _, stats, n_post = result.carry
    return stc_solution(start, syn, result.records, stats, n_post, result.n_late, spikes.unit, record_steps)


def solve_stc_fine(
    rule: LuboeinskiTetzlaff2021,
    spikes: Spikes,
    *,
    neuron: LeakyIntegrateAndFire | None = None,
    key: Key | None = None,
    record_every: float = 30_000.0,
    synapses: bool = False,
) -> STCSolution:
    """Plain fine-step reference: Euler-Maruyama steps of `spikes.unit` ms, Heavisides sampled.

    Each spike acts at the step nearest to its arrival; calcium and the neuron are propagated
    exactly over a step (`LeakyIntegrateAndFire.propagate`), the neuron fires when V >= V_th
    at a step's end (its calcium acts at the next step). (h, p, z) take explicit steps of
    `rule.vector_field` with the calcium at the step start. Same arguments and result as
    `solve_stc` (the stats are sampled at the steps, `synapses` likewise); records every `record_every` ms.
    A reference for short runs and for checking `solve_stc`: it costs one step per 0.2 ms.
    """
    rule = checked(rule, "solve_stc_fine")
    neuron = None if neuron is None else checked(neuron, "solve_stc_fine")
    dt = spikes.unit
    n_syn, (pre_tick, pre_offset, pre_mask), post, end_tick, end_offset = _layout(spikes, synapses, "solve_stc_fine")
    steps = whole_steps(record_every, dt, "solve_stc_fine")
    if steps % _TILE:
        raise ValueError(f"solve_stc_fine: record_every must be a whole number of {_TILE} steps of {dt} ms, got {record_every!r} ms")
    n_records = tick_count(spikes, "solve_stc_fine") // steps
    n_steps = end_tick + (end_offset >= dt / 2)
    calcium = rule.calcium
    dtype = spikes.pre_offset.dtype
    dt_ = jnp.asarray(dt, dtype)

    def nearest(tick, offset, delay):
        tick, offset = shift(tick, offset, delay, dt)
        return tick + (offset >= dt / 2)

    never = jnp.iinfo(pre_tick.dtype).max
    streams = [(pre_tick, pre_offset, pre_mask, calcium.D), (post[0][None], post[1][None], post[2][None], 0.0)]
    if neuron is not None:
        streams.append((pre_tick, pre_offset, pre_mask, neuron.delay))
    # Sorted arrival steps, one row per synapse (the post train: one row); padding never arrives.
    arrivals = [jnp.where(mask, nearest(tick, offset, delay), never) for tick, offset, mask, delay in streams]
    squeeze = (lambda x: x[..., 0]) if n_syn is None else (lambda x: x)
    bound = spikes.max_per_tick

    def repeat(n, apply, state):
        for j in range(bound):
            state = tree_where(n > j, apply(state), state)
        return state

    def step(carry, x):
        state, syn, lif, fired, stats, n_post = carry
        k, n_ca, n_given, n_cur, normal = x
        n_given = n_given[0]  # the postsynaptic train: one row
        state = repeat(n_ca, calcium.on_pre, state)
        state = repeat(n_given + fired, calcium.on_post, state)
        drift, amplitude = rule.vector_field(syn, calcium.concentration(state))
        noise = 0.0 if normal is None else amplitude * jnp.sqrt(dt_) * normal
        syn = STCState(h=syn.h + dt_ * drift.h + noise, p=syn.p + dt_ * drift.p, z=syn.z + dt_ * drift.z)
        pro, ltp, ltd = rule.flags(syn.h - rule.h0)
        stats = STCStats(
            time_pro=stats.time_pro + dt_ * pro,
            time_tag_ltp=stats.time_tag_ltp + dt_ * ltp,
            time_tag_ltd=stats.time_tag_ltd + dt_ * ltd,
            h_max=jnp.maximum(stats.h_max, syn.h),
            h_min=jnp.minimum(stats.h_min, syn.h),
        )
        state = calcium.decay(state, dt_)
        fired = jnp.zeros((), jnp.int32)
        if neuron is not None:
            w = rule.weight(syn)
            if n_syn is None:
                lif = repeat(n_cur, lambda v, cell=neuron: cell.on_input(v, w), lif)
            else:
                lif = neuron.on_input(lif, jnp.sum(n_cur * w))
            lif = tree_where(n_given > 0, neuron.on_spike(lif), lif)
            lif = neuron.propagate(lif, dt_)
            fired = (lif.V >= neuron.V_th).astype(jnp.int32)
            lif = tree_where(fired > 0, neuron.on_spike(lif), lif)
        new = (state, syn, lif, fired, stats, n_post + n_given + fired)
        # Steps past the protocol's end (the last block's tail) change nothing.
        return tree_where(k < n_steps, new, carry), None

    def tile(carry, x):
        # Tiles of a few steps keep every buffer the inner loop touches tiny (XLA's CPU
        # runtime then runs the loop body sequentially, without thread hand-offs per step).
        first, normals = x
        ks = first + jnp.arange(_TILE)
        edges = jnp.concatenate([ks, ks[-1:] + 1])
        # Arrivals per step and row: (_TILE, rows); one synapse: (_TILE,) for calcium and current.
        counts = [jax.vmap(lambda row: jnp.diff(jnp.searchsorted(row, edges)), out_axes=1)(a).astype(jnp.int32)
                  for a in arrivals]
        counts = [squeeze(counts[0]), counts[1], *(squeeze(c) for c in counts[2:])]
        n_cur = counts[2] if neuron is not None else jnp.zeros_like(counts[0])
        carry, _ = jax.lax.scan(step, carry, (ks, counts[0], counts[1], n_cur, normals))
        return carry, None

    @jax.checkpoint
    def block(carry, index):
        shape = (steps // _TILE, _TILE) + (() if n_syn is None else (n_syn,))
        normals = None if key is None else jax.random.normal(jax.random.fold_in(key, index), shape, dtype)
        firsts = index * steps + _TILE * jnp.arange(steps // _TILE)
        carry, _ = jax.lax.scan(tile, carry, (firsts, normals))
        syn = carry[1]
        return carry, (syn.h, syn.p, syn.z)

    start = rule.init(n_syn)
    zero = jnp.zeros((), jnp.int32)
    lif = None if neuron is None else neuron.init()
    init = (calcium.rest(start.h.shape), start, lif, zero, STCStats.start(start.h), zero)
    n_blocks = -(-tick_count(spikes, "solve_stc_fine") // steps)
    (_, syn, _, _, stats, n_post), trace = jax.lax.scan(block, init, jnp.arange(n_blocks))
    h, p, z = (jnp.concatenate([first[None], values[:n_records]]) for first, values in zip((start.h, start.p, start.z), trace))
    ts = dt * steps * np.arange(n_records + 1)
    return STCSolution(state=syn, ts=jnp.asarray(ts, h.dtype), h=h, p=p, z=z, stats=stats, n_post=n_post, n_late=zero)
