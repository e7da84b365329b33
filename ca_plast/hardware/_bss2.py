"""BrainScaleS-2 emulation: analog calcium, plasticity solved periodically in fixed point.

On BSS-2 (the multi-timescale plasticity paper, arXiv:2412.02515) the
calcium trace is an analog circuit that runs continuously, 1000x faster than biology, while
the plasticity ODE is solved by the plasticity processing unit (PPU) under a timer: every
update period it reads the analog state through the column ADC (CADC), computes the update
at higher precision, and writes the state back in an 8- or 16-bit fractional saturating
format with rounding; synaptic weights are 6-bit.

The emulation here (`solve_hardware`) does exactly that for every update period:

1. analog: calcium runs exactly from spike to spike (the event loop, `event_loop`), giving
   the time it spent above theta_p and theta_d during the period, the integrals of the
   rule's `rates` and its value at the period's end; per-synapse mismatch of tau_ca and of
   the jump amplitudes is drawn once per chip;
2. readout (`threshold_time`): "integrate" -- a comparator per threshold drives an analog
   integrator, and the PPU reads the two integrals (time above threshold as a fraction of
   the period) through the CADC; "sample" -- the PPU reads calcium itself through the CADC
   at the update and assumes what it sees held for the whole period. Each read has
   `cadc_bits` bits and optional Gaussian temporal noise (`read_noise`, in LSB);
3. PPU: one explicit step of the rule's equation over the period with the read integrals
   (`AbstractRule.increment`; GB2012: `gamma_p (1 - rho) T_p - gamma_d rho T_d` plus the
   cubic drift, and the noise `sigma sqrt((T_p + T_d) / tau) N(0, 1)`), rounded into the
   state format, which holds `rho - offset` (`FixedPoint.accumulate`). `state=None` instead applies the exact float
   update of the period: the float model, with the same random numbers, as the reference.

Random numbers: the rule's noise uses `jax.random.normal(fold_in(key, period_index))`
(as `solve_scan` does per chunk); rounding uses one cheap counter-based U[0, 1) number per
synapse and period (`counter_uniform`, the stand-in for the PPU's per-column LFSRs) seeded
from `fold_in(key, 2^32 - 1)`. Configurations run together in one call share the analog
substrate and all random numbers (common random numbers), so differences between them are
measured with far less Monte Carlo noise than independent runs would give.
"""

import dataclasses
import math
from collections.abc import Sequence
from typing import overload

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._calcium import AbstractCalcium
from .._custom_types import Array, ArrayLike, Key
from .._programs import stored_jit
from .._progress import in_chunks
from .._protocols import Protocol
from .._spikes import Spikes, to_spikes
from .._validation import check_finite, checked, whole_number
from ..rules._abstract import AbstractRule
from ..rules._affine import Affine
from ..rules._gb2012 import GraupnerBrunel2012
from ..solvers._loop import event_loop, record_grid
from ..solvers._solution import Solution
from ._fixed_point import FixedPoint
from ._rounding import AbstractRounding, Stochastic, counter_uniform, straight_through, to_rounding

THRESHOLD_TIMES = ("integrate", "sample")
ROUNDING_STREAM = 2**32 - 1
READ_STREAM = 2**32 - 2


def _static(default):
    return eqx.field(static=True, default=default)


class BSS2(eqx.Module):
    """A BrainScaleS-2 configuration for `solve_hardware` (all fields static).

    - `state`: fixed-point format of the plasticity state on the PPU vector unit (8-bit
      `FixedPoint(8, 7)`: step 1/128; 16-bit `FixedPoint(16, 15)`), or None for float
      arithmetic with the exact update (the float reference);
    - `offset`: the PPU stores `rho - offset` in `state`; 0.5 centres GB2012's stable states
      0 and 1 in the signed format (range [-0.5, 1.5) at 8 bits), so neither saturates;
    - `rounding`: an `AbstractRounding`: `Nearest()`, `Floor()`, `Stochastic()` or
      `HardwareRounding(random_bits)` (add `random_bits` random low bits from an 8-bit
      source, then truncate), or its name ("nearest", "floor", "stochastic", "hardware");
    - `period`: PPU update period in ms of biological time, a multiple of the solver step;
    - `threshold_time`: how the PPU learns the time calcium spent above each threshold
      during a period: "integrate" (analog integrators read through the CADC) or
      "sample" (calcium read through the CADC at the update, held for the period);
    - `cadc_bits`, `cadc_range`: resolution of the column ADC and, for "sample", the
      calcium value at full scale (units of calcium; times are read with the period at
      full scale); `read_noise`: Gaussian temporal noise of each read, in LSB (the code is
      clipped at 0, so noise on an empty integrator reads a positive time on average:
      0.16 LSB per read at `read_noise = 0.5`, a real drive in quiet periods);
    - `mismatch_tau_ca`, `mismatch_amplitude`: per-synapse fixed-pattern spread of tau_ca
      and of every calcium jump amplitude (fields `C_*`), log-normal with this standard
      deviation of the logarithm (about the relative spread), drawn once from
      `jax.random.key(chip)`: the same chip has the same mismatch in every run;
    - `weight`: synaptic weight format (6-bit, 0..63), see `write_back`;
    - `speedup`: acceleration of the chip over biological time (1000).

    The default is the 8-bit configuration of the precision-period study
    (benchmarks/precision_map.py): integrated threshold times, 10 ms update period,
    stochastic rounding: max |ratio - float ratio| = 0.029 over dt = -100..100 ms for preset
    DP (60 pairs at 1 Hz, noise on), where updating every 0.1 ms gives 0.088 (stochastic)
    and 0.207 (nearest), and sampling calcium instead of integrating gives 0.50 at 10 ms.
    """

    state: FixedPoint | None = FixedPoint(8, 7)
    offset: float = _static(0.5)
    rounding: AbstractRounding = eqx.field(static=True, default=Stochastic(),
                                           converter=lambda value: to_rounding("BSS2", value))
    period: float = _static(10.0)
    threshold_time: str = _static("integrate")
    cadc_bits: int = _static(8)
    cadc_range: float = _static(4.0)
    read_noise: float = _static(0.0)
    mismatch_tau_ca: float = _static(0.0)
    mismatch_amplitude: float = _static(0.0)
    chip: int = _static(0)
    weight: FixedPoint = FixedPoint(6, 0, signed=False)
    speedup: float = _static(1000.0)

    def __check_init__(self):
        if self.state is not None and not isinstance(self.state, FixedPoint):
            raise ValueError(f"BSS2: state must be a FixedPoint format or None (float), got {self.state!r}")
        if not (isinstance(self.offset, (int, float)) and np.isfinite(self.offset)):
            raise ValueError(f"BSS2: offset must be a finite number, got {self.offset!r}")
        _check_number("period", self.period, " ms", positive=True)
        if self.threshold_time not in THRESHOLD_TIMES:
            raise ValueError(f"BSS2: threshold_time must be one of {', '.join(THRESHOLD_TIMES)}, got {self.threshold_time!r}")
        if not (isinstance(self.cadc_bits, int) and 1 <= self.cadc_bits <= 16):
            raise ValueError(f"BSS2: cadc_bits must be a whole number in 1..16, got {self.cadc_bits!r}")
        _check_number("cadc_range", self.cadc_range, "", positive=True)
        for name in ("read_noise", "mismatch_tau_ca", "mismatch_amplitude"):
            _check_number(name, getattr(self, name), "", positive=False)
        if not isinstance(self.chip, int):
            raise ValueError(f"BSS2: chip (the mismatch seed) must be a whole number, got {self.chip!r}")
        if not isinstance(self.weight, FixedPoint):
            raise ValueError(f"BSS2: weight must be a FixedPoint format, got {self.weight!r}")
        _check_number("speedup", self.speedup, "", positive=True)

    @property
    def mismatched(self) -> bool:
        return self.mismatch_tau_ca > 0 or self.mismatch_amplitude > 0

    def steps_per_period(self, step: float) -> int:
        """Solver steps of `step` ms per update period; ValueError unless the period is a multiple."""
        if not (np.isfinite(step) and step > 0):
            raise ValueError(f"BSS2: the solver step must be > 0 ms, got {step!r}")
        m = round(self.period / step)
        if m < 1 or not math.isclose(m * step, self.period, rel_tol=1e-9, abs_tol=0.0):
            raise ValueError(
                f"BSS2: update period {self.period} ms is not a whole multiple of the solver step {step} ms; "
                f"choose a period of k * {step} ms"
            )
        return m

    @property
    def precision(self) -> str:
        """The weights' number format in words: "8-bit", "16-bit", ..., or "float"."""
        return "float" if self.state is None else f"{self.state.total_bits}-bit"

    def hardware_time(self, biological_ms) -> float | Array:
        """Wall-clock time (ms) the chip needs for `biological_ms` of emulated biological time."""
        return biological_ms / self.speedup

    def draw_mismatch(self, calcium: AbstractCalcium, shape: tuple[int, ...], *, key: Key) -> AbstractCalcium:
        """Per-synapse copy of `calcium` (every array field of `shape`) with this chip's mismatch."""
        amplitudes = [f.name for f in dataclasses.fields(calcium) if f.name.startswith("C_")]
        key_tau, key_amp = jax.random.split(key)

        def spread(value, sigma, k):
            value = jnp.asarray(value)
            return value * jnp.exp(sigma * jax.random.normal(k, shape, value.dtype))

        tau_ca = spread(calcium.tau_ca, self.mismatch_tau_ca, key_tau)
        jumps = [spread(getattr(calcium, n), self.mismatch_amplitude, jax.random.fold_in(key_amp, i))
                 for i, n in enumerate(amplitudes)]
        calcium = eqx.tree_at(lambda c: (c.tau_ca, *(getattr(c, n) for n in amplitudes)), calcium, (tau_ca, *jumps))
        return jax.tree.map(lambda x: jnp.broadcast_to(x, shape), calcium)

    def write_back(self, rule: GraupnerBrunel2012, rho: Array) -> Array:
        """6-bit weight codes the PPU writes for efficacies `rho`: `w = w0 + rho (w1 - w0)`, w1 at full scale.

        With `b = w1 / w0` (GB2012), code = nearest(max_code (1 + (b - 1) rho) / b), kept in
        the weight format's range (0..63).
        """
        full = self.weight.max_code * self.weight.step
        return self.weight.codes(full * (1 + (rule.b - 1) * rho) / rule.b)

    def cadc(self, value: ArrayLike, full_scale: ArrayLike, normal: Array | None) -> Array:
        """A column-ADC read of `value` with `full_scale` at the top code (`cadc_bits` bits, `read_noise` LSB of
        Gaussian noise with `normal`, None: noise-free); straight-through gradients through the quantisation."""
        levels, full_scale = 2**self.cadc_bits - 1, jnp.asarray(full_scale)
        x = jnp.asarray(value) / full_scale * levels
        noisy = x if normal is None else x + self.read_noise * normal
        return straight_through(noisy, jnp.clip(jnp.round(noisy), 0, levels)) / levels * full_scale

    def read_times(self, rule, a_p: Array, a_d: Array, c: Array, elapsed: Array,
                   noise: tuple[Array, Array] | None) -> tuple[Array, Array]:
        """Time above theta_p and theta_d (fields of `rule`) as the PPU learns it over a period of `elapsed` ms.

        `a_p`, `a_d`: exact analog times (ms); `c`: calcium at the update; `noise`: standard
        normal numbers for the two reads (None: noise-free).
        """
        normals = (None, None) if noise is None else noise
        if self.threshold_time == "integrate":
            span = jnp.where(elapsed > 0, elapsed, 1.0)
            return self.cadc(a_p, span, normals[0]), self.cadc(a_d, span, normals[1])
        c_p = self.cadc(c, self.cadc_range, normals[0])
        c_d = c_p if noise is None else self.cadc(c, self.cadc_range, normals[1])
        return jnp.where(c_p >= rule.theta_p, elapsed, 0.0), jnp.where(c_d >= rule.theta_d, elapsed, 0.0)

    def read_integrals(self, rule: AbstractRule, integrals: tuple[Array, ...], c: Array, elapsed: Array,
                       noise: Array | None) -> tuple[Array, ...]:
        """The time integrals of the rule's `rates` over a period of `elapsed` ms, as the PPU learns them.

        "integrate": each integral is read from its analog integrator through the CADC, with
        `elapsed * rate_scale` at full scale; "sample": calcium is read through the CADC at
        the update (one read per rate) and held for the period. `noise`: standard normal
        numbers, one row per rate (None: noise-free). GB2012's integrals are the times above
        theta_p and theta_d.
        """
        normals = [None] * len(integrals) if noise is None else list(noise)
        if self.threshold_time == "integrate":
            span = jnp.where(elapsed > 0, elapsed, 1.0)
            return tuple(self.cadc(value, span * scale, normal)
                         for value, scale, normal in zip(integrals, rule.rate_scales, normals))
        reads = [self.cadc(c, self.cadc_range, normals[0])]
        for normal in normals[1:]:
            reads.append(reads[0] if noise is None else self.cadc(c, self.cadc_range, normal))
        return tuple(rule.rates(c_read)[k] * elapsed for k, c_read in enumerate(reads))


def _check_number(name: str, value, unit: str, *, positive: bool) -> None:
    ok = isinstance(value, (int, float)) and np.isfinite(value) and (value > 0 if positive else value >= 0)
    if not ok:
        raise ValueError(f"BSS2: {name} must be a finite number {'> 0' if positive else '>= 0'}{unit}, got {value!r}")


def normal_when(active: Array, key: Key, index: Array, shape: tuple[int, ...], dtype) -> Array:
    """Standard normals of `shape` from `fold_in(key, index)` if `active`, else zeros (the noise is
    then multiplied by 0).

    The draw (and the key derivation) dominates the cost of a period, and calcium is above
    threshold in a few percent of periods only. Under `vmap` a plain `cond` with a batched
    predicate (e.g. one per fit start) would become a select and draw every period; the
    batching rule here draws whenever any member of the batch is active, with the same numbers
    as unbatched.
    """

    def draw(key, index):
        return jax.random.normal(jax.random.fold_in(key, index), shape, dtype)

    @jax.custom_batching.custom_vmap
    def draw_if(active, key, index):
        return jax.lax.cond(active, lambda: draw(key, index), lambda: jnp.zeros(shape, dtype))

    @draw_if.def_vmap
    def _(axis_size, in_batched, active, key, index):
        active_batched, key_batched, index_batched = in_batched
        any_active = jnp.any(active) if active_batched else active
        if key_batched or index_batched:
            batched = jax.vmap(draw, in_axes=(0 if key_batched else None, 0 if index_batched else None))
            return jax.lax.cond(any_active, lambda: batched(key, index), lambda: jnp.zeros((axis_size, *shape), dtype)), True
        return draw_if(any_active, key, index), False

    return draw_if(active, key, index)


def _as_configs(hardware) -> tuple[BSS2, ...]:
    configs = (hardware,) if isinstance(hardware, BSS2) else tuple(hardware)
    if not configs or not all(isinstance(c, BSS2) for c in configs):
        raise ValueError(f"hardware must be a BSS2 configuration or a non-empty sequence of them, got {hardware!r}")
    shared = ("period", "mismatch_tau_ca", "mismatch_amplitude", "chip")
    for name in shared:
        values = {getattr(c, name) for c in configs}
        if len(values) > 1:
            raise ValueError(f"configurations run together share one analog substrate: {name} differs ({sorted(values)})")
    return configs


@overload
def solve_hardware(rule: AbstractRule, spikes: Spikes, rho0: ArrayLike, *, hardware: BSS2, key: Key,
                   record_every: int | None = None, chunk: int = 100) -> Solution: ...


@overload
def solve_hardware(rule: AbstractRule, spikes: Spikes, rho0: ArrayLike, *, hardware: Sequence[BSS2], key: Key,
                   record_every: int | None = None, chunk: int = 100) -> tuple[Solution, ...]: ...


def solve_hardware(
    rule: AbstractRule,
    spikes: Spikes,
    rho0: ArrayLike,
    *,
    hardware: BSS2 | Sequence[BSS2],
    key: Key,
    record_every: int | None = None,
    chunk: int = 100,
) -> Solution | tuple[Solution, ...]:
    """Simulate one protocol (unbatched `spikes`) on emulated BSS-2 hardware, for any rule (`AbstractRule`).

    `rho0`: initial efficacies (any shape; rounded to nearest into the state format);
    `hardware`: a `BSS2` configuration, or a sequence of them run together on the same
    analog substrate and random numbers (they must share period and mismatch), giving a
    tuple of solutions; `key`: keyword-only, drives the rule's noise and the rounding.
    The update period must be a multiple of the solver step `spikes.unit`.

    The analog side runs on the event loop (`event_loop`: calcium exact from spike to spike,
    the integrals of the rule's `rates` accumulated exactly); every update period the PPU reads
    them (`BSS2.read_integrals`) and takes one step of `rule.increment`, rounded into the
    state format. Float configurations (`state=None`) take the exact map of the period
    instead (the rule's `drive` composed over it, Strang-split with its `drift`, as
    `solve_scan` does).

    Returns `Solution`s as `solve_scan` does: final `rho` (values on the format's
    grid), final calcium, exact analog times above the rule's thresholds, and with
    `record_every` (in update periods) calcium and rho at the end of every that many
    periods. `chunk` is accepted for compatibility and has no effect.
    """
    rule = checked(rule, "solve_hardware")
    configs = _as_configs(hardware)
    if spikes.pre_tick.ndim != 1:
        raise ValueError(f"solve_hardware: expected unbatched spikes (1-d trains); got shape {spikes.pre_tick.shape}")
    for name, value in (("record_every", record_every), ("chunk", chunk)):
        if value is not None:
            whole_number("solve_hardware", name, value, of=" of periods")
    m = configs[0].steps_per_period(spikes.unit)
    rho0 = jnp.asarray(rho0, dtype=jnp.result_type(float))
    check_finite("solve_hardware", "rho0", rho0)
    shape = rho0.shape
    rho_flat = rho0.reshape(-1)
    dtype = rho0.dtype
    calcium, D = rule.calcium, rule.calcium.D
    if configs[0].mismatched:
        # Per-synapse calcium: every field an array over the synapses, used elementwise.
        calcium = configs[0].draw_mismatch(calcium, rho_flat.shape, key=jax.random.key(configs[0].chip))
        rule = eqx.tree_at(lambda r: r.calcium, rule, calcium)

    grid = record_grid(spikes, m, "solve_hardware")
    unit_ = jnp.asarray(spikes.unit, dtype)
    exact = any(c.state is None for c in configs)
    random_rounding = any(c.state is not None and c.rounding.random for c in configs)
    read_noise = any(c.read_noise > 0 for c in configs)
    n_rates = len(rule.rates(jnp.zeros((), dtype)))
    round_seeds = jax.random.bits(jax.random.fold_in(key, ROUNDING_STREAM), (2, *rho_flat.shape), jnp.uint32)
    read_key = jax.random.fold_in(key, READ_STREAM)
    zero = jnp.zeros(rho_flat.shape if configs[0].mismatched else (), dtype)

    def empty():
        """The analog accumulators of a period: times above threshold, integrals of the rates, the exact map."""
        return (zero, zero), (zero,) * n_rates, Affine.identity(zero) if exact else None

    def interval(carry, state, s, index):
        rhos, (times, integrals, affine), totals = carry
        c0 = calcium.concentration(state)
        a_p, a_d = rule.times_above(c0, s)
        integrals = tuple(i + j for i, j in zip(integrals, rule.integrals(c0, s)))
        affine = rule.drive(c0, s).after(affine) if exact else None
        return rhos, ((times[0] + a_p, times[1] + a_d), integrals, affine), (totals[0] + a_p, totals[1] + a_d)

    n_steps = spikes.end_tick + (spikes.end_offset > 0)

    def at_grid(carry, state, k, quiet=False):
        """Every configuration's update at the end of period k (float: the exact map of the period).

        `quiet`: the period's accumulators are empty (calcium stayed below both thresholds of a
        rule not driven there): the same update without the work that is void then (the rule's
        noise, the reads of empty integrators), and the empty accumulators kept as they are."""
        rhos, ((a_p, a_d), integrals, affine), totals = carry
        # The grid is every m steps, the last point at the end: period k has this length (0 past the end).
        elapsed = jnp.clip(n_steps - k * m, 0, m).astype(dtype) * unit_
        # The rule's noise needs numbers where calcium crossed a threshold, or everywhere once the
        # reads are noisy (an empty integrator then reads a positive time).
        if quiet and not read_noise:
            normal = jnp.zeros(rho_flat.shape, dtype)
        else:
            normal = normal_when(jnp.any(a_p + a_d > 0) | read_noise, key, k, rho_flat.shape, dtype)
        uniform = counter_uniform(round_seeds, k, dtype) if random_rounding else None
        noise = jax.random.normal(jax.random.fold_in(read_key, k), (n_rates, *rho_flat.shape), dtype) if read_noise else None
        c = calcium.concentration(state)
        new = []
        for config, rho in zip(configs, rhos):
            if config.state is None:
                new.append(rule.drift(affine(rule.drift(rho, elapsed / 2), normal), elapsed / 2))
                continue
            if quiet and config.threshold_time == "integrate" and config.read_noise == 0:
                read = integrals  # an empty integrator reads 0
            else:
                read = config.read_integrals(rule, integrals, c, elapsed, noise if config.read_noise > 0 else None)
            delta = rule.increment(rho + config.offset, read, elapsed, normal)
            new.append(config.state.accumulate(rho, delta, config.rounding, uniform=uniform))
        # Periods past the protocol's end (padding of a batch) have no length: nothing happens in them.
        new = tuple(jnp.where(elapsed > 0, a, b) for a, b in zip(new, rhos))
        return new, carry[1] if quiet else empty(), totals

    def quiet(carry, state):
        """Calcium below both thresholds of a rule not driven there, and the period's accumulators
        empty: until the next spike, intervals add nothing."""
        (a_p, a_d), integrals, _ = carry[1]
        empty_ = jnp.all(a_p == 0) & jnp.all(a_d == 0) & jnp.all(jnp.stack([jnp.all(i == 0) for i in integrals]))
        return empty_ & jnp.all(calcium.concentration(state) < jnp.minimum(*rule.thresholds()))

    def record(carry, state):
        return calcium.concentration(state), carry[0]

    # hardware programs carry the stored value rho - offset
    rhos0 = tuple(rho_flat if c.state is None else c.state.quantise(rho_flat - c.offset) for c in configs)
    state, (rhos, _, (t_p, t_d)), records = event_loop(
        calcium, spikes, (rhos0, empty(), (zero, zero)), interval, grid=grid, at_grid=at_grid,
        record=None if record_every is None else record, D=D,
        quiet=None if rule.DRIVEN_BELOW_THRESHOLDS else quiet,
        at_quiet_grid=lambda carry, state, k: at_grid(carry, state, k, quiet=True))
    shifts = [0.0 if c.state is None else c.offset for c in configs]
    ts, c_trace, rho_traces = None, None, [None] * len(configs)
    if record_every is not None:
        every, n_periods = int(record_every), grid.shape[0]
        n_records = -(-n_periods // every)
        rows = jnp.minimum((jnp.arange(n_records) + 1) * every, n_periods) - 1
        ts = grid[rows].astype(dtype) * spikes.unit
        c_trace = records[0][rows]
        rho_traces = [(trace[rows] + shift).reshape(n_records, *shape) for trace, shift in zip(records[1], shifts)]
    solutions = tuple(
        Solution(rho=(rho + shift).reshape(shape), calcium=state, time_p=t_p, time_d=t_d, ts=ts, c=c_trace,
                     rho_trace=trace)
        for rho, trace, shift in zip(rhos, rho_traces, shifts)
    )
    return solutions[0] if isinstance(hardware, BSS2) else solutions


@stored_jit
def _batched_populations(rule, configs, spikes, keys, n_synapses):
    def one(args):
        sp, k = args
        rho0 = rule.initial_population(n_synapses, sp.pre_offset.dtype)
        return jnp.stack([s.rho for s in solve_hardware(rule, sp, rho0, hardware=configs, key=k)])

    # lax.map, not vmap: the per-period `cond` skips the noise draws while calcium is below
    # both thresholds; under vmap it would become a select and draw them every period.
    return jax.lax.map(one, (spikes, keys))


def hardware_populations(
    rule: AbstractRule,
    protocols: Sequence[Protocol],
    hardware: BSS2 | Sequence[BSS2],
    *,
    n_synapses: int = 1000,
    key: Key,
    step: float = 0.1,
    progress: bool = False,
) -> np.ndarray:
    """Final efficacies of the rule's population (`initial_population`; GB2012: `n_synapses` synapses started
    DOWN, then as many UP), per configuration and protocol.

    Shape `(len(configs), len(protocols), population size)`. Protocol i uses
    `fold_in(key, i)`; configurations share the analog substrate and the random numbers.
    Every update period must be a multiple of the solver `step` (ms); since calcium is
    exact whatever the step, it is stepped once per update period. `progress`: run in slices
    of the protocols with a progress bar (`stdp_ratios`).
    """
    configs = _as_configs(hardware)
    for config in configs:
        config.steps_per_period(step)
    whole_number(None, "n_synapses", n_synapses)
    spikes = to_spikes(list(protocols), unit=configs[0].period)
    keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(len(protocols)))
    rho = in_chunks(lambda part: _batched_populations(rule, configs, *part, int(n_synapses)), (spikes, keys),
                    label=f"stdp (scan, emulated BSS-2, {len(protocols)} protocols)", progress=progress)
    return np.asarray(rho).transpose(1, 0, 2)


def hardware_ratios(
    rule: AbstractRule,
    protocols: Sequence[Protocol],
    hardware: BSS2 | Sequence[BSS2],
    *,
    n_synapses: int = 1000,
    key: Key,
    step: float = 0.1,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Change ratio and its standard error of each protocol under each configuration.

    Readout of `hardware_populations` by `grid_readout`. Arrays of shape
    `(len(configs), len(protocols))`, or `(len(protocols),)` for a single `BSS2`. `progress`:
    as in `hardware_populations`.
    """
    configs = _as_configs(hardware)
    rho = jnp.asarray(hardware_populations(rule, protocols, configs, n_synapses=n_synapses, key=key, step=step,
                                           progress=progress))
    stats = [jax.vmap(lambda r: grid_readout(rule, r, c))(rho_c) for c, rho_c in zip(configs, rho)]
    ratio, sem = np.stack([np.asarray(r) for r, _ in stats]), np.stack([np.asarray(e) for _, e in stats])
    return (ratio[0], sem[0]) if isinstance(hardware, BSS2) else (ratio, sem)


def tie_shift(config: BSS2) -> float:
    """A quarter of the state format's step (0 for float): moves values off rho_star and nothing else across it."""
    return 0.0 if config.state is None else config.state.step / 4


def grid_readout(rule: AbstractRule, w: Array, config: BSS2) -> tuple[Array, Array]:
    """`rule.readout` for efficacies on the state grid of `config`.

    On the grid a synapse can end exactly at a readout threshold (GB2012: rho_star, about 2%
    of them at 8 bits for preset DP), which "UP means rho > rho_star" would always count
    DOWN: a bias of about -0.015 in the ratio. Such a synapse sits on the unstable fixed
    point, so it counts half UP and half DOWN: the mean of the readouts of w + and -
    `tie_shift(config)` (a readout linear in w, or in U and D, is unchanged by the average).
    Float configurations read out as `rule.readout`.
    """
    shift = tie_shift(config)
    high, low = rule.readout(w + shift), rule.readout(w - shift)
    return (high[0] + low[0]) / 2, (high[1] + low[1]) / 2


def grid_population_ratio(rule: GraupnerBrunel2012, rho_from_down: Array, rho_from_up: Array,
                          config: BSS2) -> tuple[Array, Array]:
    """`population_ratio` for efficacies on the state grid of `config` (`grid_readout` of GB2012's population)."""
    return grid_readout(rule, jnp.concatenate([rho_from_down, rho_from_up], axis=-1), config)


def hardware_prediction(
    rule: GraupnerBrunel2012,
    spikes: Spikes,
    hardware: BSS2,
    *,
    key: Key,
    n_synapses: int = 64,
    width: float = 0.02,
) -> Array:
    """Differentiable change ratio of each protocol of batched `spikes` under hardware emulation.

    For quantisation-aware fitting: `n_synapses` synapses start DOWN and as many UP per
    protocol (`solve_hardware`, protocol i with `fold_in(key, i)`); gradients pass the
    rounding and the CADC by the straight-through estimator, and the UP/DOWN readout is
    smoothed, `P(UP) = mean(sigmoid((rho - rho_star) / width))` (a synapse exactly at rho_star
    counts half, as in `grid_population_ratio`). With a fixed key the prediction is a
    deterministic function of the rule's parameters, but still a Monte Carlo estimate: with
    256 synapses per state its error is about 0.03 in a ratio, and a fit with many free
    parameters on one fixed key fits that key's noise (measured on Sjostrom 2001: training
    mean z^2 0.157, 0.24-0.38 on unseen keys). `fitting.refine_on_hardware` therefore draws
    a fresh key at every step and averages the iterates. Shape `(n_protocols,)`.
    """
    if not isinstance(hardware, BSS2):
        raise ValueError(f"hardware_prediction: hardware must be a BSS2 configuration, got {hardware!r}")
    whole_number("hardware_prediction", "n_synapses", n_synapses)
    if not (np.isfinite(width) and width > 0):
        raise ValueError(f"hardware_prediction: width must be > 0, got {width!r}")
    n = int(n_synapses)
    keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(spikes.pre_tick.shape[0]))

    def one(args):
        sp, k = args
        dtype = sp.pre_offset.dtype
        rho0 = jnp.concatenate([jnp.zeros(n, dtype), jnp.ones(n, dtype)])
        rho = solve_hardware(rule, sp, rho0, hardware=hardware, key=k).rho
        up = jnp.mean(jax.nn.sigmoid((rho[:n] - rule.rho_star) / width))
        down = jnp.mean(jax.nn.sigmoid((rule.rho_star - rho[n:]) / width))
        return rule.change_ratio(up, down)

    return jax.lax.map(one, (spikes, keys))
