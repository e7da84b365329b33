"""Device-side spike arrays: padded, masked, and in (tick, offset) form.

Absolute times are never held as one float on the device (float32 resolves
only ~2 ms at 8 h). Each time is an integer tick count plus a float offset inside the tick,
`t = tick * unit + offset` with `0 <= offset < unit`; intervals are formed from integer tick
differences, so they stay exact however long the protocol. Protocols of different lengths
are padded to a common length with masked entries, so batches vmap.
"""

import dataclasses
from collections.abc import Sequence
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._custom_types import Array, Bool, Float, Int
from ._limits import MAX_TICKS
from ._protocols import Protocol
from ._validation import traced

PRE, POST, END, GRID = 0, 1, 2, 3


class Spikes(eqx.Module):
    """Padded spike trains of one protocol (or a batch, with a leading axis on every array).

    `*_tick` / `*_offset` give times as `tick * unit + offset` (ms); `*_mask` marks real
    spikes. `end_tick` / `end_offset` give the protocol duration. `unit` (ms per tick) and
    `max_per_tick` (the most spikes of one train inside any window of one unit, which bounds
    the spikes a time-stepped solver meets in one step) and `n_ticks` (whole or partial ticks the
    longest protocol of the batch spans) are static.
    """

    pre_tick: Int[Array, "... n_pre"]
    pre_offset: Float[Array, "... n_pre"]
    pre_mask: Bool[Array, "... n_pre"]
    post_tick: Int[Array, "... n_post"]
    post_offset: Float[Array, "... n_post"]
    post_mask: Bool[Array, "... n_post"]
    end_tick: Int[Array, "..."]
    end_offset: Float[Array, "..."]
    unit: float = eqx.field(static=True)
    max_per_tick: int = eqx.field(static=True)
    n_ticks: int = eqx.field(static=True)


def _split(times: np.ndarray, unit: float) -> tuple[np.ndarray, np.ndarray]:
    ticks = np.floor(times / unit)
    offsets = times - ticks * unit
    # Guard the float64 edges where times / unit rounds across a whole number.
    carry = (offsets >= unit).astype(np.int64) - (offsets < 0)
    return ticks.astype(np.int64) + carry, np.maximum(offsets - carry * unit, 0.0)


def _max_per_window(times: np.ndarray, width: float) -> int:
    if times.size == 0:
        return 0
    return int(np.max(np.searchsorted(times, times + width, side="left") - np.arange(times.size)))


def to_spikes(protocols: Protocol | Sequence[Protocol], unit: float = 0.1) -> Spikes:
    """Turn one protocol, or a batch of them, into padded `Spikes` with ticks of `unit` ms.

    A single protocol gives unbatched arrays; a sequence gives arrays with a leading batch
    axis, padded to the longest train in the batch.
    """
    if not (np.isfinite(unit) and unit > 0):
        raise ValueError(f"to_spikes: unit (the solver step, ms) must be > 0, got {unit!r}")
    single = isinstance(protocols, Protocol)
    batch = [protocols] if single else list(protocols)
    if not batch or not all(isinstance(p, Protocol) for p in batch):
        raise ValueError("to_spikes: expected a Protocol or a non-empty sequence of Protocols")
    if max(np.ceil(p.duration / unit) for p in batch) >= MAX_TICKS:
        raise ValueError(f"to_spikes: a protocol of {max(p.duration for p in batch):g} ms has more than 2**31 - 1 "
                         f"ticks of {unit:g} ms; use a longer tick (`unit`; `step` of stdp_ratios) or shorter protocols")
    n_pre = max(1, max(p.pre.size for p in batch))
    n_post = max(1, max(p.post.size for p in batch))
    arrays = {}
    for side, n in (("pre", n_pre), ("post", n_post)):
        ticks, offsets, masks = [], [], []
        for p in batch:
            times = getattr(p, side)
            pad = n - times.size
            tick, offset = _split(np.concatenate([times, np.full(pad, p.duration)]), unit)
            ticks.append(tick)
            offsets.append(offset)
            masks.append(np.arange(n) < times.size)
        arrays[side] = (np.stack(ticks), np.stack(offsets), np.stack(masks))
    ends = [_split(np.array([p.duration]), unit) for p in batch]
    end_tick = np.array([t[0] for t, _ in ends])
    end_offset = np.array([o[0] for _, o in ends])
    max_per_tick = max(max(_max_per_window(p.pre, unit), _max_per_window(p.post, unit)) for p in batch)

    def device(x, dtype=None):
        x = x[0] if single else x
        return jax.device_put(np.asarray(x, dtype=dtype))  # a copy to the device, no program to compile

    float_dtype = jnp.result_type(float)
    return Spikes(
        pre_tick=device(arrays["pre"][0], jnp.int32),
        pre_offset=device(arrays["pre"][1], float_dtype),
        pre_mask=device(arrays["pre"][2]),
        post_tick=device(arrays["post"][0], jnp.int32),
        post_offset=device(arrays["post"][1], float_dtype),
        post_mask=device(arrays["post"][2]),
        end_tick=device(end_tick, jnp.int32),
        end_offset=device(end_offset, float_dtype),
        unit=float(unit),
        max_per_tick=max(1, max_per_tick),
        n_ticks=int(np.max(end_tick + (end_offset > 0))),
    )


def without_ticks(spikes: Spikes) -> Spikes:
    """`spikes` with no tick count (`n_ticks` -1), for the solvers that never step through ticks
    (closed form, events, density).

    `n_ticks` is static, so a compiled program depends on it; without it, one compiled
    program of those solvers serves protocols of every duration (same spike counts).
    """
    return dataclasses.replace(spikes, n_ticks=-1)


def whole_steps(record_every: float, unit: float, owner: str) -> int:
    """`record_every` ms as a whole number >= 1 of steps of `unit` ms; ValueError naming `owner` otherwise."""
    steps = record_every / unit
    if not (np.isfinite(steps) and steps >= 1 and abs(steps - round(steps)) < 1e-9 * steps):
        raise ValueError(f"{owner}: record_every must be a whole number >= 1 of {unit} ms steps, got {record_every!r} ms")
    return int(round(steps))


def tick_count(spikes: Spikes, owner: str) -> int:
    """`spikes.n_ticks`, the number of steps a time-stepped solver takes; ValueError for spikes made by `without_ticks`."""
    if spikes.n_ticks < 0:
        raise ValueError(f"{owner}: these spikes carry no tick count (without_ticks); make them with to_spikes")
    return spikes.n_ticks


def shift(tick: Array, offset: Array, delay: Array, unit: float) -> tuple[Array, Array]:
    """Times `tick * unit + offset` delayed by `delay` ms, renormalised to `0 <= offset < unit`.

    Differentiable in `delay` through the offset; the tick carry is integer.
    """
    total = offset + delay
    carry = jax.lax.stop_gradient(jnp.floor(total / unit))
    return tick + carry.astype(tick.dtype), total - carry * unit


def interval(tick_a: Array, offset_a: Array, tick_b: Array, offset_b: Array, unit: float) -> Array:
    """Time from a to b in ms, from the integer tick difference (exact) plus the offsets."""
    return (tick_b - tick_a).astype(offset_a.dtype) * unit + (offset_b - offset_a)


class EventList(NamedTuple):
    """Merged, sorted events of one protocol: times (`tick`, `offset`, as in `Spikes`), the
    interval (ms) from the previous event (or from time 0), kind, whether it acts, and a tag
    (e.g. the synapse it belongs to)."""

    tick: Int[Array, " n"]
    offset: Float[Array, " n"]
    length: Float[Array, " n"]
    kind: Int[Array, " n"]
    active: Bool[Array, " n"]
    tag: Int[Array, " n"]


def merge_events(streams, end_tick: Array, end_offset: Array, end_kind: int, unit: float) -> EventList:
    """The sorted `EventList` of `streams`, each `(tick, offset, mask, kind, tag)` (arrays; `kind`
    an int for the whole stream), closed by the protocol's end (kind `end_kind`, tag 0).

    Events past the end move onto it and do not act; masked events do not act. Simultaneous
    events keep the order of their streams (the end last).
    """
    ticks = jnp.concatenate([s[0] for s in streams] + [end_tick[None]])
    ranks = jnp.concatenate([jnp.full(s[0].shape, r) for r, s in enumerate(streams)] + [jnp.array([len(streams)])])
    offsets = jnp.concatenate([s[1] for s in streams] + [end_offset[None]])
    masks = jnp.concatenate([s[2] for s in streams] + [jnp.array([True])])
    kinds = jnp.concatenate([jnp.full(s[0].shape, s[3]) for s in streams] + [jnp.array([end_kind])])
    tags = jnp.concatenate([jnp.asarray(s[4], jnp.int32) for s in streams] + [jnp.zeros((1,), jnp.int32)])
    past_end = (ticks > end_tick) | ((ticks == end_tick) & (offsets > end_offset))
    ticks = jnp.where(past_end, end_tick, ticks)
    offsets = jnp.where(past_end, end_offset, offsets)
    masks = masks & ~past_end
    order = jnp.lexsort((ranks, jax.lax.stop_gradient(offsets), ticks))
    ticks, offsets, kinds, masks, tags = ticks[order], offsets[order], kinds[order], masks[order], tags[order]
    return EventList(ticks, offsets, _lengths(ticks, offsets, unit), kinds, masks, tags)


def _lengths(ticks: Array, offsets: Array, unit: float) -> Array:
    prev_tick = jnp.concatenate([jnp.zeros((1,), ticks.dtype), ticks[:-1]])
    prev_offset = jnp.concatenate([jnp.zeros((1,), offsets.dtype), offsets[:-1]])
    return interval(prev_tick, prev_offset, ticks, offsets, unit)


def event_sequence(
    spikes: Spikes, D: Array, grid: Int[Array, " n_grid"] | None = None
) -> tuple[Float[Array, " n"], Int[Array, " n"], Bool[Array, " n"]]:
    """The merged, sorted events of one (unbatched) protocol, ending with the protocol's end.

    Presynaptic spikes are delayed by `D` (ms). `grid`: optional tick numbers of a solver's
    grid points (kind `GRID`, at offset 0), non-decreasing, which may lie past the protocol's
    end. Returns
    the interval (ms) from the previous event (or from time 0) to each event, its kind
    (`PRE`, `POST`, `END` or `GRID`) and whether it acts. Padding and arrivals past the end
    are moved onto the end and do not act. Simultaneous events keep the order grid, pre,
    post, end.
    """
    events = event_list(spikes, D, grid)
    return events.length, events.kind, events.active


def event_list(spikes: Spikes, D: Array, grid: Int[Array, " n_grid"] | None = None) -> EventList:
    """`event_sequence` as an `EventList` (with times; tags 0)."""
    unit = spikes.unit
    pre_tick, pre_offset = shift(spikes.pre_tick, spikes.pre_offset, D, unit)
    untagged = jnp.zeros((), jnp.int32)
    events = merge_events([(pre_tick, pre_offset, spikes.pre_mask, PRE, jnp.broadcast_to(untagged, pre_tick.shape)),
                           (spikes.post_tick, spikes.post_offset, spikes.post_mask, POST,
                            jnp.broadcast_to(untagged, spikes.post_tick.shape))],
                          spikes.end_tick, spikes.end_offset, END, unit)
    if grid is None:
        return events
    if not traced(grid) and np.any(np.diff(np.asarray(grid)) < 0):
        raise ValueError(f"event_sequence: grid tick numbers must be non-decreasing, got {np.asarray(grid)!r}")
    # Merge the (sorted) grid in. A grid point opens its tick: it comes before every event of
    # that tick, whatever the rounding of their offsets (a delayed arrival may sit a few ulp
    # below 0). A merge by positions, not a sort: the grid may hold 10^6 points.
    ticks, grid = events.tick, grid.astype(events.tick.dtype)
    n = ticks.shape[0] + grid.shape[0]
    at_event = jnp.arange(ticks.shape[0]) + jnp.searchsorted(grid, ticks, side="right")
    at_grid = jnp.arange(grid.shape[0]) + jnp.searchsorted(ticks, grid, side="left")

    def merged(values, points):
        return jnp.zeros(n, values.dtype).at[at_event].set(values).at[at_grid].set(points)

    ticks = merged(ticks, grid)
    offsets = merged(events.offset, jnp.zeros(grid.shape, events.offset.dtype))
    kinds = merged(events.kind, jnp.full(grid.shape, GRID, events.kind.dtype))
    active = merged(events.active, jnp.ones(grid.shape, bool))
    return EventList(ticks, offsets, _lengths(ticks, offsets, unit), kinds, active, jnp.zeros(n, jnp.int32))
