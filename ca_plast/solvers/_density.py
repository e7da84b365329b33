"""Population-density solver: the probability density of rho, propagated event by event on a grid.

Every synapse of a population sees the same calcium trace, so the density p(rho, t) of its
efficacies obeys a linear Fokker-Planck equation (GB2012; `rho` as in `GraupnerBrunel2012`)

    dp/dt = -d/drho [A(rho, c) p / tau] + sigma^2 (H_p + H_d) / (2 tau) d^2 p / drho^2,
    A = -rho (1 - rho)(rho_star - rho) + gamma_p (1 - rho) H_p - gamma_d rho H_d,

whose drift and diffusion change only at threshold crossings. The solver follows the
event-driven solver (`solve_events`) interval by interval, but moves the whole distribution
instead of samples, so the result is the expectation over the rule's noise: deterministic,
smooth in every parameter, and free of Monte Carlo error.

Representation. The cumulative distribution F(x) = P(rho <= x) is held at the edges of a
uniform grid of cells of width h = 1 / `cells_per_unit` covering [-margin, 1 + margin]
(margin 0.75 by default: 252 edges, FFT length 512);
rho = 0 and rho = 1 are cell centres, so the initial point masses (all synapses DOWN, or all
UP) are single cells centred on the truth. Between grid points F is the monotone cubic
Hermite interpolant with Steffen's (1990) slopes: monotone (no negative density), exact for
linear F, and smooth in the evaluation point.

One interval of `s` ms after an event, with calcium `c0` (module docstring of `_events`):

1. The threshold drive acts during the first L = max(a_p, a_d) ms (`time_above`). Over that
   time it is the exact affine map with Ornstein-Uhlenbeck variance of `rule.drive`:
   rho -> g rho + m + sqrt(v) N(0, 1), the same for every synapse of the population.
2. Strang splitting as in the event solver: the cubic drift (time scale tau) acts for L/2
   before the drive and s - L/2 after it. Consecutive cubic flows compose exactly (the
   flow is autonomous), so the solver carries the pending cubic time forward and applies
   it, together with the next drive, in one remap; intervals without drive (calcium below
   both thresholds) add no interpolation error (their remap is computed, as vmap needs,
   and discarded).
3. Deterministic part: semi-Lagrangian remap of F, F_new(x) = F_old(C_{-t}((x - m) / g)),
   with C the exact flow of the cubic (`GraupnerBrunel2012.cubic_flow`, closed form for
   rho_star = 1/2). Mass is transported, never created (F stays a distribution function).
4. Noise: the cell masses are convolved (by FFT, zero-padded so nothing wraps) with the
   semi-discrete heat kernel of variance v / h^2 cells^2 (Fourier symbol
   exp(-(v / h^2)(1 - cos w))): positive, mass-conserving, and exactly of variance v for
   any v, however small compared with a cell.
5. Mass pushed beyond the grid is folded back into the edge cells (so it is still counted
   on the correct side of rho_star) and summed in `DensitySolution.escaped`, which the
   public entry points check (`check_density`): nothing leaves the grid silently.

6. Events per remap (`events_per_remap` E, default 2): the drives of E consecutive
   intervals (a pre-post pairing, say) are composed into one affine map with one variance
   (`Affine.after`: exact, the noise of an earlier drive passes the later affine maps
   unchanged in law), so one remap and one convolution serve E events. The cubic time
   inside the group (between its first and last drive, `inside`) is split half before and
   half after the group, Strang-like; so the group's noise meets the cubic drift up to
   `inside` ms early or late. Its size, inside / tau, is reported as `DensitySolution.lag`
   (largest over the groups) and checked (`MAX_LAG`); `density_ratios` falls back to E = 1
   where it is exceeded. Groups are aligned per protocol so that long quiet intervals end
   them (`_slots`). Measured at 800 cells per unit, E = 2 against E = 1: pairs and
   quadruplets (lag <= 1.4e-4) differ by <= 1e-5 where both are converged; triplets at
   1 Hz (lag 6.5e-3, DP) by <= 5e-5. Half the remaps also halve the interpolation error of
   the default grid (post-pre pairs, cortical_slices: 5e-5 from the exact drift-free law
   instead of 1.7e-4).

With `drive_steps` K > 1 (and E = 1) the driven part is cut into K equal sub-intervals,
each with its own exact affine map and its own remap and convolution (the cubic acting in
between), as the event solver's sub-steps do. Readout: U = P(rho > rho_star | started DOWN) and
D = P(rho <= rho_star | started UP) are read off the final distribution functions at
rho_star by the same interpolation, so they are differentiable in rho_star too.

The scheme runs in two passes: the event loop (`event_loop`, as every early-phase solver)
carries calcium, the drives and the Strang bookkeeping (scalars) and leaves one step per
group; a scan then applies the remaps and convolutions to the distribution functions.

Accuracy is set by the grid (h) and the splitting (K, E); the convergence
table in `benchmarks/density.py` and the tests against 10^5 simulated synapses per state
(`tests/test_density.py`) measure it. Cost per event: O(n log n) for n cells.
"""

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._custom_types import Array, Float
from .._spikes import Spikes, event_sequence, without_ticks
from .._validation import checked
from ..rules._affine import Affine
from ..rules._gb2012 import GraupnerBrunel2012
from ._events import check_spikes
from ._loop import event_loop, tree_where

# `DensitySolution.escaped` above this (probability mass) is an error of the public entry points. In
# float32 the bookkeeping itself carries the FFT's rounding, about 1e-7 per event.
ESCAPE_TOLERANCE = {"float64": 1e-6, "float32": 1e-3}
# `DensitySolution.lag` (cubic time inside a group of merged events, in units of tau) above this is an
# error of `check_density`; `density_ratios` then solves again with one event per remap.
MAX_LAG = 1e-2
# Fewer cells than this across the spread of the accumulated threshold noise is an error too
# (measured: cortical_slices on Sjostrom 2001 spreads over 9.6 cells at 100 cells per unit, error
# 4e-4; over 4.8 cells at 50, error 5e-3).
MIN_SPREAD_CELLS = 6.0


class DensityGrid(eqx.Module):
    """Discretisation of `solve_density` (all static: a new setting compiles anew).

    `cells_per_unit`: cells per unit of rho (cell width h = 1 / cells_per_unit); `margin`:
    the grid covers [-margin, 1 + margin] (rho leaves [0, 1] only by noise; the bistable
    drift pulls it back); `drive_steps`: sub-intervals of the driven part of each interval
    (each adds a remap and its interpolation error: at 100 cells per unit 2 or 4 sub-steps are
    less accurate than 1; they pay off from about 400 cells per unit; needs
    `events_per_remap` = 1); `events_per_remap`: consecutive events whose drives share one
    remap and one convolution (module docstring, item 6; 1 follows the event solver
    interval by interval, 2 halves the cost of pairing protocols). The defaults reproduce 10^5
    simulated synapses per state within their standard errors on every shipped protocol
    (see the module docstring for how to check a setting).
    """

    cells_per_unit: int = eqx.field(static=True, default=100)
    margin: float = eqx.field(static=True, default=0.75)
    drive_steps: int = eqx.field(static=True, default=1)
    events_per_remap: int = eqx.field(static=True, default=2)

    def __check_init__(self):
        for name, minimum in (("cells_per_unit", 2), ("drive_steps", 1), ("events_per_remap", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
                raise ValueError(f"DensityGrid: {name} must be a whole number >= {minimum}, got {value!r}")
        if isinstance(self.margin, bool) or not (np.isfinite(self.margin) and self.margin > 0):
            raise ValueError(f"DensityGrid: margin must be a finite number > 0 (rho units), got {self.margin!r}")
        if self.drive_steps > 1 and self.events_per_remap > 1:
            raise ValueError(f"DensityGrid: drive_steps = {self.drive_steps} needs events_per_remap = 1 (each sub-step "
                             f"is its own remap), got events_per_remap = {self.events_per_remap}")

    @property
    def width(self) -> float:
        """Cell width h (rho units)."""
        return 1.0 / self.cells_per_unit

    @property
    def n_cells(self) -> int:
        return int(round((1 + 2 * self.margin) * self.cells_per_unit)) + 1

    def edges(self, dtype=None) -> Array:
        """Cell edges, shape `(n_cells + 1,)`; cell k is centred on `-margin + k h` (0 and 1 are centres)."""
        h = self.width
        lowest = -round(self.margin * self.cells_per_unit) * h
        return jnp.asarray(lowest - h / 2 + h * np.arange(self.n_cells + 1), dtype=dtype)


class DensitySolution(eqx.Module):
    """Result of `solve_density` for one protocol.

    `edges`: the grid's cell edges, shape `(n + 1,)`; `cdf`: P(rho <= edge) at the end of
    the protocol for the population that started DOWN (row 0, rho = 0) and UP (row 1,
    rho = 1), shape `(2, n + 1)`; `up` = P(DOWN -> UP) and `down` = P(UP -> DOWN) (UP
    means rho > rho_star); `escaped`: probability mass that reached beyond the grid and was
    folded back into its edge cells (per population, summed over the protocol); `spread`:
    standard deviation (rho units) of all the threshold noise of the protocol (sqrt of the
    summed interval variances); `travel`: summed deterministic displacement of the drive
    (rho units, |m| + |1 - g| per interval); `time_p`, `time_d`: time (ms) calcium spent
    above theta_p and theta_d; `lag`: the largest cubic time inside a group of merged
    events, in units of tau (module docstring, item 6; 0 with one event per remap).
    """

    edges: Float[Array, " n_edges"]
    cdf: Float[Array, "2 n_edges"]
    up: Array
    down: Array
    escaped: Float[Array, " 2"]
    spread: Array
    travel: Array
    time_p: Array
    time_d: Array
    lag: Array

    def density(self) -> Float[Array, "2 n_cells"]:
        """Probability density (per unit rho) in every cell, for the populations started DOWN and UP."""
        return jnp.diff(self.cdf, axis=-1) / jnp.diff(self.edges)[..., None, :]


def solve_density(rule: GraupnerBrunel2012, spikes: Spikes, grid: DensityGrid = DensityGrid()) -> DensitySolution:
    """Propagate the density of rho of a population through one protocol (unbatched `spikes`).

    Scheme: module docstring. Deterministic (no key); any calcium model of `ca_plast`
    works; batch with `jax.vmap` over padded spikes (`to_spikes` of a list) or parameter
    sets. Differentiable in every parameter of the rule, its calcium and the spike times.
    The scan body is `jax.checkpoint`ed, so reverse mode stores one carry per event.
    """
    rule = checked(rule, "solve_density")
    if not isinstance(grid, DensityGrid):
        raise ValueError(f"solve_density: grid must be a ca_plast.DensityGrid, got {type(grid).__name__}")
    spikes = check_spikes("solve_density", spikes)
    dtype = spikes.pre_offset.dtype
    calcium = rule.calcium
    intervals = event_sequence(spikes, calcium.D)[0]  # for the alignment of the slots
    edges = grid.edges(dtype)
    h = grid.width
    lo, hi = edges[0], edges[-1]
    n = grid.n_cells
    size = _fft_size(2 * n)
    # Heat-kernel symbol per unit of variance in cells^2: exp(-t (1 - cos w)).
    symbol = jnp.asarray(1 - np.cos(2 * np.pi * np.fft.rfftfreq(size)), dtype=dtype)
    K, E = grid.drive_steps, grid.events_per_remap

    starts, ends, n_slots = _slots(intervals, E)
    zero = jnp.zeros_like(intervals[0])
    fresh = (Affine.identity(zero), zero, zero, jnp.zeros((), bool))  # a slot's merged drive, first, inside, seen
    no_step = (jnp.zeros((), bool), zero, Affine.identity(zero))

    def interval(carry, state, s, index):
        """One event's drive and the Strang bookkeeping (scalars only): the steps it leaves for the
        distribution functions (K of them with E = 1; with E > 1 its slot's merged step, if it closes one)."""
        pending, variance, travel, t_p, t_d, lag, slot, _ = carry
        merged, first, inside, seen = tree_where(starts[index], fresh, slot) if E > 1 else fresh
        steps = []
        a_p, a_d = rule.times_above(calcium.concentration(state), s)
        length = jnp.maximum(a_p, a_d)
        driven = length > 0
        piece = length / K
        for j in range(K):
            affine = rule.drive(calcium.concentration(calcium.decay(state, piece * j)), piece)
            t = pending + piece / 2
            variance = variance + jnp.where(driven, affine.variance, 0.0)
            travel = travel + jnp.where(driven, jnp.abs(affine.shift) + jnp.abs(1 - affine.gain), 0.0)
            pending = jnp.where(driven, piece / 2, pending)
            if E == 1:
                steps.append((driven, t, affine))
            else:  # K == 1: the slot's drives become one step (module docstring, item 6)
                first = jnp.where(driven & ~seen, t, first)
                inside = inside + jnp.where(driven & seen, t, 0.0)
                merged = tree_where(driven, affine.after(merged), merged)
                seen = seen | driven
        pending = pending + jnp.where(driven, s - length, s)
        if E > 1:
            end = ends[index]
            steps.append((seen & end, first + inside / 2, merged))
            pending = pending + jnp.where(end, inside / 2, 0.0)
            lag = jnp.where(end, jnp.maximum(lag, inside / rule.tau), lag)
        stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *steps)
        return pending, variance, travel, t_p + a_p, t_d + a_d, lag, (merged, first, inside, seen), stacked

    def remap(cdf, t, affine):
        """F_new(x) = F_old(C_{-t}((x - m) / g)): the cubic flow for `t` ms, then the affine mean."""
        x = jnp.clip(rule.cubic_flow(jnp.clip((edges - affine.shift) / affine.gain, lo, hi), -t), lo, hi)
        new = interpolate(cdf, x, lo, h)
        escaped = new[:, 0] + (1 - new[:, -1])
        return new.at[:, 0].set(0.0).at[:, -1].set(1.0), escaped

    def diffuse(cdf, variance):
        """Convolve the cell masses with the heat kernel of `variance` (rho units^2); fold what leaves the grid."""
        mass = jnp.diff(cdf, axis=-1)
        spectrum = jnp.fft.rfft(mass, n=size, axis=-1) * jnp.exp(-(variance / h**2) * symbol)[None]
        spread = jnp.fft.irfft(spectrum, n=size, axis=-1)
        split = n + (size - n) // 2
        right, left = jnp.sum(spread[:, n:split], axis=-1), jnp.sum(spread[:, split:], axis=-1)
        mass = spread[:, :n].at[:, 0].add(left).at[:, -1].add(right)
        cdf = jnp.concatenate([jnp.zeros_like(mass[:, :1]), jnp.cumsum(mass, axis=-1)], axis=-1)
        return cdf.at[:, -1].set(1.0), left + right

    @jax.checkpoint
    def propagate(carry, step):
        cdf, escaped = carry
        driven, t, affine = step
        moved, out_remap = remap(cdf, t, affine)
        moved, out_noise = diffuse(moved, affine.variance)
        return (jnp.where(driven, moved, cdf), escaped + jnp.where(driven, out_remap + out_noise, 0.0)), None

    empty = jax.tree.map(lambda *xs: jnp.stack(xs), *[no_step] * (K if E == 1 else 1))
    init = (zero, zero, zero, zero, zero, zero, fresh, empty)
    _, (pending, variance, travel, t_p, t_d, lag, _, _), steps = event_loop(
        calcium, spikes, init, interval, record=lambda carry, state: carry[-1])
    if E > 1:  # one step per slot, at its last event
        closing = jnp.nonzero(ends, size=n_slots, fill_value=0)[0]
        steps = jax.tree.map(lambda x: x[closing], steps)
        steps = (steps[0] & (jnp.arange(n_slots) < jnp.sum(ends))[:, None], *steps[1:])
    steps = jax.tree.map(lambda x: x.reshape(-1, *x.shape[2:]), steps)
    start = jnp.stack([(edges > 0).astype(dtype), (edges > 1).astype(dtype)])
    (cdf, escaped), _ = jax.lax.scan(propagate, (start, jnp.zeros(2, dtype)), steps)
    final, out = remap(cdf, pending, Affine.identity(zero))
    cdf = jnp.where(pending > 0, final, cdf)
    escaped = escaped + jnp.where(pending > 0, out, 0.0)
    at_star = interpolate(cdf, rule.rho_star, lo, h)
    return DensitySolution(
        edges=edges, cdf=cdf, up=1 - at_star[0], down=at_star[1], escaped=escaped, spread=jnp.sqrt(variance),
        travel=travel, time_p=t_p, time_d=t_d, lag=lag,
    )


def density_ratio(rule: GraupnerBrunel2012, spikes: Spikes, grid: DensityGrid = DensityGrid()) -> Array:
    """Change ratio (after / before, GB2012 readout) of one protocol from the density solver (unbatched)."""
    solution = solve_density(rule, spikes, grid)
    return rule.change_ratio(solution.up, solution.down)


@eqx.filter_jit
def _batched_solutions(rule: GraupnerBrunel2012, spikes: Spikes, grid: DensityGrid, rule_axis: int | None = None
                       ) -> tuple[Array, DensitySolution]:
    solution = jax.vmap(solve_density, in_axes=(rule_axis, 0, None))(rule, spikes, grid)
    return rule.change_ratio(solution.up, solution.down), solution


WIDEST_MARGIN = 8.0
FINEST_CELLS = 1600  # the finest grid (cells per unit) density_ratios refines to for weak noise


def density_ratios(rule: GraupnerBrunel2012, spikes: Spikes, grid: DensityGrid = DensityGrid(), *,
                   rule_per_protocol: bool = False) -> tuple[np.ndarray, DensityGrid]:
    """Change ratios of a batch of protocols (batched `spikes`) by the density solver, checked; returns them and the grid used.

    `rule_per_protocol`: `rule` is batched too (every leaf with the batch's leading axis), one
    rule per protocol; by default one rule serves every protocol.

    Where merged events meet too much cubic time (`DensitySolution.lag` > `MAX_LAG`), the
    batch is solved again with one event per remap. Where probability mass leaves the grid,
    the margin is doubled (up to `WIDEST_MARGIN`) and the batch solved again: automatic
    widening. Where the noise of a protocol spreads rho over fewer than `MIN_SPREAD_CELLS`
    cells (weak noise, e.g. preset DPD), the grid is refined to what that takes (in steps of
    50 cells per unit) where that is at most `FINEST_CELLS`. A grid still too narrow or too
    coarse is a ValueError (`check_density`).
    """
    spikes = without_ticks(spikes)  # one compiled program for every protocol duration
    # Strongly typed float leaves: presets (weakly typed) and fitted rules then share one compilation.
    rule = jax.tree.map(lambda x: jnp.asarray(x, dtype=spikes.pre_offset.dtype) if eqx.is_inexact_array_like(x) else x, rule)
    while True:
        ratio, solution = _batched_solutions(rule, spikes, grid, 0 if rule_per_protocol else None)
        escaped = float(np.max(np.asarray(solution.escaped)))
        if float(np.max(np.asarray(solution.lag))) > MAX_LAG and grid.events_per_remap > 1:
            grid = dataclasses.replace(grid, events_per_remap=1)
        elif escaped > _tolerance(solution) and np.isfinite(escaped) and grid.margin < WIDEST_MARGIN:
            grid = dataclasses.replace(grid, margin=min(2 * grid.margin, WIDEST_MARGIN))
        elif (needed := _cells_needed(solution, grid)) is not None and needed <= FINEST_CELLS:
            grid = dataclasses.replace(grid, cells_per_unit=50 * int(np.ceil(needed / 50)))
        else:
            break
    check_density(solution, grid)
    return np.asarray(ratio), grid


def check_density(solution: DensitySolution, grid: DensityGrid, what: str = "") -> None:
    """Raise ValueError if a (possibly batched) solution lost mass beyond the grid or was too coarse for its noise.

    Mass beyond the grid is folded back into its edge cells and counted on the right side
    of rho_star, but its return under the bistable drift is then wrong: more than
    `ESCAPE_TOLERANCE` (1e-6 in float64, 1e-3 in float32) is an error (widen `margin`). A protocol whose drive moved the
    density by a cell or more while all its noise spread it over fewer than
    `MIN_SPREAD_CELLS` cells is resolved too coarsely (raise `cells_per_unit`). Merged events
    that meet more than `MAX_LAG` tau of cubic time are an error too (use one event per remap).
    """
    where = f" ({what})" if what else ""
    lag = float(np.max(np.asarray(solution.lag)))
    if not lag <= MAX_LAG:
        raise ValueError(
            f"density solver{where}: events merged into one remap are {lag:.3g} tau apart, more than {MAX_LAG:g} tau; "
            f"use DensityGrid(events_per_remap=1) for this protocol"
        )
    escaped = float(np.max(np.asarray(solution.escaped)))
    if not np.isfinite(escaped) or escaped > _tolerance(solution):
        raise ValueError(
            f"density solver{where}: probability mass left the grid [-{grid.margin:g}, {1 + grid.margin:g}] "
            f"({escaped:.3g} summed over the protocol's intervals, tolerance {_tolerance(solution):g}); "
            f"widen it with a larger DensityGrid(margin=...)"
        )
    needed = _cells_needed(solution, grid)
    if needed is not None:
        cells = grid.cells_per_unit * MIN_SPREAD_CELLS / needed
        raise ValueError(
            f"density solver{where}: the noise of the protocol spreads rho over {cells:.3g} cells of the grid, fewer "
            f"than {MIN_SPREAD_CELLS:g}; use a finer grid, DensityGrid(cells_per_unit >= {int(np.ceil(needed))})"
        )


def _cells_needed(solution: DensitySolution, grid: DensityGrid) -> float | None:
    """The cells per unit at which the narrowest noise of a drifting protocol spans `MIN_SPREAD_CELLS`
    cells, where `grid` is too coarse for it (None where it is not)."""
    spread = np.asarray(solution.spread) / grid.width
    coarse = (np.asarray(solution.travel) >= grid.width) & (spread < MIN_SPREAD_CELLS)
    if not np.any(coarse):
        return None
    return grid.cells_per_unit * MIN_SPREAD_CELLS / max(float(np.min(spread[coarse])), 1e-3)


def _tolerance(solution: DensitySolution) -> float:
    return ESCAPE_TOLERANCE["float64" if solution.cdf.dtype == jnp.float64 else "float32"]


def interpolate(cdf: Float[Array, "rows n_edges"], x: Array, lowest: Array, h: float) -> Float[Array, "rows ..."]:
    """Monotone cubic Hermite interpolant (Steffen 1990 slopes) of each row of `cdf`, on uniform edges `lowest + k h`, at `x`.

    Points outside the edges take the end values. Monotone data give a monotone
    interpolant; linear data are reproduced exactly; the result is continuously
    differentiable in `x`. All rows share the points, so one gather serves them all.
    """
    secant = jnp.diff(cdf, axis=-1)
    before, after = secant[:, :-1], secant[:, 1:]
    both = (before > 0) & (after > 0) | (before < 0) & (after < 0)
    smallest = jnp.minimum(jnp.minimum(jnp.abs(before), jnp.abs(after)), jnp.abs(before + after) / 4)
    slope = jnp.concatenate([secant[:, :1], jnp.where(both, 2 * jnp.sign(before) * smallest, 0.0), secant[:, -1:]], axis=-1)
    rows, cells = cdf.shape[0], secant.shape[-1]
    # Per cell: the values and slopes at both of its edges, for every row.
    table = jnp.concatenate([cdf[:, :-1], cdf[:, 1:], slope[:, :-1], slope[:, 1:]]).T
    position = jnp.clip((x - lowest) / h, 0, cells)
    k = jnp.clip(jnp.floor(jax.lax.stop_gradient(position)), 0, cells - 1).astype(jnp.int32)
    t = (position - k)[..., None]
    t2, t3 = t * t, t * t * t
    value = table[k]
    left, right, d_left, d_right = (value[..., i * rows:(i + 1) * rows] for i in range(4))
    out = (2 * t3 - 3 * t2 + 1) * left + (t3 - 2 * t2 + t) * d_left + (3 * t2 - 2 * t3) * right + (t3 - t2) * d_right
    return jnp.moveaxis(out, -1, 0)


def _fft_size(minimum: int) -> int:
    """The smallest 2^a 3^b >= `minimum` (fast FFT lengths)."""
    best = 1 << (minimum - 1).bit_length()
    power3 = 1
    while power3 < best:
        size = power3
        while size < minimum:
            size *= 2
        best = min(best, size)
        power3 *= 3
    return best


def _slots(intervals: Array, per_slot: int) -> tuple[Array, Array, int]:
    """Groups of `per_slot` consecutive events, aligned so that the long quiet intervals end them:
    whether each event opens a group, whether it closes one, and the most groups there can be.

    Inside a group, noise is moved past the cubic time between its events (`DensitySolution.lag`),
    so the groups should hold the events of one pairing, episode or burst. Of the `per_slot` possible
    alignments (the first group short by 0 .. per_slot - 1 events), the one with the least quiet
    time inside groups (the intervals before each group's last event) is taken, per protocol.
    """
    n = intervals.shape[0]
    slots = -(-(n + per_slot - 1) // per_slot)
    if per_slot == 1:
        every = jnp.ones(n, bool)
        return every, every, n
    length = slots * per_slot
    # The intervals behind `per_slot - 1` empty events and padded to whole groups: alignment `phase`
    # starts reading at `per_slot - 1 - phase`.
    padded = jnp.concatenate([jnp.zeros(per_slot - 1, intervals.dtype), jax.lax.stop_gradient(intervals),
                              jnp.zeros(length - n, intervals.dtype)])
    inside = [jnp.sum(padded[per_slot - 1 - phase:][:length].reshape(slots, per_slot)[:, :-1]) for phase in range(per_slot)]
    lead = jnp.argmin(jnp.stack(inside))  # empty places before the first event in its group
    position = jnp.arange(n) + lead
    first, last = jnp.arange(n) == 0, jnp.arange(n) == n - 1
    return first | (position % per_slot == 0), last | (position % per_slot == per_slot - 1), slots
