"""BrainScaleS-2 emulation: analog calcium, plasticity solved periodically in fixed point.

On BSS-2 (the multi-timescale plasticity paper, arXiv:2412.02515) the
calcium trace is an analog circuit that runs continuously, 1000x faster than biology, while
the plasticity ODE is solved by the plasticity processing unit (PPU) under a timer: every
update period it reads the analog state through the column ADC (CADC), computes the update
at higher precision, and writes the state back in an 8- or 16-bit fractional saturating
format with rounding; synaptic weights are 6-bit.

The emulation here (`solve_hardware`) does exactly that for every update period:

1. analog: calcium is stepped exactly (the time-stepped solver's own machinery,
   `advance_calcium`), giving the time it spent above theta_p and theta_d during the
   period and its value at the period's end; per-synapse mismatch of tau_ca and of the jump
   amplitudes is drawn once per chip;
2. readout (`threshold_time`): "integrate" -- a comparator per threshold drives an analog
   integrator, and the PPU reads the two integrals (time above threshold as a fraction of
   the period) through the CADC; "sample" -- the PPU reads calcium itself through the CADC
   at the update and assumes what it sees held for the whole period. Each read has
   `cadc_bits` bits and optional Gaussian temporal noise (`read_noise`, in LSB);
3. PPU: one explicit step of the rule's ODE over the period with the read times
   (`gamma_p (1 - rho) T_p - gamma_d rho T_d` plus the cubic drift, and the rule's noise
   `sigma sqrt((T_p + T_d) / tau) N(0, 1)`), rounded into the state format, which holds
   `rho - offset` (`FixedPoint.accumulate`). `state=None` instead applies the exact float
   update of the period: the float model, with the same random numbers, as the reference.

Random numbers: the rule's noise uses `jax.random.normal(fold_in(key, period_index))`
(as `solve_scan` does per chunk); rounding uses one cheap counter-based U[0, 1) number per
synapse and period (`counter_uniform`, the stand-in for the PPU's per-column LFSRs) seeded
from `fold_in(key, 2^32 - 1)`. Configurations run together in one call share the analog
substrate and all random numbers (common random numbers), so differences between them are
measured with far less Monte Carlo noise than independent runs would give.
"""

import dataclasses
import functools
import math
from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._calcium import AbstractCalcium
from ._custom_types import Array, Key
from ._early_phase import Affine, GraupnerBrunel2012, safe_sqrt
from ._fixed_point import FixedPoint
from ._programs import stored_jit
from ._progress import in_chunks
from ._protocols import Protocol
from ._rounding import (
    RANDOM_ROUNDINGS,
    SOURCE_BITS,
    check_random_bits,
    check_rounding,
    counter_uniform,
    straight_through,
)
from ._scan import ScanSolution, advance_calcium, arrival_spikes
from ._spikes import Spikes, tick_count, to_spikes
from ._stdp import population_ratio
from ._validation import check_finite, checked

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
    - `rounding`: "nearest", "floor", "stochastic" or "hardware" (add `random_bits` random
      low bits from an 8-bit source, then truncate);
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
    rounding: str = _static("stochastic")
    random_bits: int = _static(SOURCE_BITS)
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
        check_rounding("BSS2", self.rounding)
        check_random_bits("BSS2", self.random_bits)
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

    def read_times(self, rule: GraupnerBrunel2012, a_p: Array, a_d: Array, c: Array, elapsed: Array,
                   noise: tuple[Array, Array] | None) -> tuple[Array, Array]:
        """Time above theta_p and theta_d as the PPU learns it over a period of `elapsed` ms.

        `a_p`, `a_d`: exact analog times (ms); `c`: calcium at the update; `noise`: standard
        normal numbers for the two reads (None: noise-free). Straight-through gradients
        through the CADC quantisation.
        """
        levels = 2**self.cadc_bits - 1

        def cadc(value, full_scale, normal):
            x = value / full_scale * levels
            noisy = x if normal is None else x + self.read_noise * normal
            return straight_through(noisy, jnp.clip(jnp.round(noisy), 0, levels)) / levels * full_scale

        normals = (None, None) if noise is None else noise
        if self.threshold_time == "integrate":
            span = jnp.where(elapsed > 0, elapsed, 1.0)
            return cadc(a_p, span, normals[0]), cadc(a_d, span, normals[1])
        c_p = cadc(c, self.cadc_range, normals[0])
        c_d = c_p if noise is None else cadc(c, self.cadc_range, normals[1])
        return jnp.where(c_p >= rule.theta_p, elapsed, 0.0), jnp.where(c_d >= rule.theta_d, elapsed, 0.0)


def _check_number(name: str, value, unit: str, *, positive: bool) -> None:
    ok = isinstance(value, (int, float)) and np.isfinite(value) and (value > 0 if positive else value >= 0)
    if not ok:
        raise ValueError(f"BSS2: {name} must be a finite number {'> 0' if positive else '>= 0'}{unit}, got {value!r}")


def ppu_increment(rule: GraupnerBrunel2012, rho: Array, T_p: Array, T_d: Array, elapsed: Array, normal: Array) -> Array:
    """One explicit PPU step of the GB2012 ODE over `elapsed` ms, given the times above threshold.

    `(gamma_p (1 - rho) T_p - gamma_d rho T_d - rho (1 - rho)(rho_star - rho) elapsed) / tau
    + sigma sqrt((T_p + T_d) / tau) normal`: the drive integrated with the measured times,
    the noise with its exact variance over the period.
    """
    if not isinstance(rule, GraupnerBrunel2012):
        raise TypeError(f"solve_hardware: no PPU update is defined for {type(rule).__name__}; supported: GraupnerBrunel2012")
    drift = rule.gamma_p * (1 - rho) * T_p - rule.gamma_d * rho * T_d - rho * (1 - rho) * (rule.rho_star - rho) * elapsed
    return drift / rule.tau + rule.sigma * safe_sqrt((T_p + T_d) / rule.tau) * normal


def normal_when(active: Array, key: Key, shape: tuple[int, ...], dtype) -> Array:
    """Standard normals of `shape` from `key` if `active`, else zeros (the noise is then multiplied by 0).

    The draw dominates the cost of a period, and calcium is above threshold in a few percent
    of periods only. Under `vmap` a plain `cond` with a batched predicate (e.g. one per fit
    start) would become a select and draw every period; the batching rule here draws
    whenever any member of the batch is active, with the same numbers as unbatched.
    """

    def draw(k):
        return jax.random.normal(k, shape, dtype)

    @jax.custom_batching.custom_vmap
    def draw_if(active, key):
        return jax.lax.cond(active, lambda: draw(key), lambda: jnp.zeros(shape, dtype))

    @draw_if.def_vmap
    def _(axis_size, in_batched, active, key):
        active_batched, key_batched = in_batched
        any_active = jnp.any(active) if active_batched else active
        if key_batched:
            return jax.lax.cond(any_active, lambda: jax.vmap(draw)(key), lambda: jnp.zeros((axis_size, *shape), dtype)), True
        return draw_if(any_active, key), False

    return draw_if(active, key)


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


def solve_hardware(
    rule: GraupnerBrunel2012,
    spikes: Spikes,
    rho0: Array,
    *,
    hardware: BSS2 | Sequence[BSS2],
    key: Key,
    record_every: int | None = None,
    chunk: int = 100,
) -> ScanSolution | tuple[ScanSolution, ...]:
    """Simulate one protocol (unbatched `spikes`) on emulated BSS-2 hardware.

    `rho0`: initial efficacies (any shape; rounded to nearest into the state format);
    `hardware`: a `BSS2` configuration, or a sequence of them run together on the same
    analog substrate and random numbers (they must share period and mismatch), giving a
    tuple of solutions; `key`: keyword-only, drives the rule's noise and the rounding.
    The update period must be a multiple of the solver step `spikes.unit`.

    Returns `ScanSolution`s as `solve_scan` does: final `rho` (values on the format's
    grid), final calcium, exact analog times above threshold, and with `record_every`
    (in update periods) calcium and rho at the end of every that many periods. Periods are
    grouped in `jax.checkpoint`ed chunks of `chunk` periods (`record_every` when given).
    """
    rule = checked(rule, "solve_hardware")
    configs = _as_configs(hardware)
    if spikes.pre_tick.ndim != 1:
        raise ValueError(f"solve_hardware: expected unbatched spikes (1-d trains); got shape {spikes.pre_tick.shape}")
    for name, value in (("record_every", record_every), ("chunk", chunk)):
        if value is not None and (int(value) != value or value < 1):
            raise ValueError(f"solve_hardware: {name} must be a whole number of periods >= 1, got {value!r}")
    m = configs[0].steps_per_period(spikes.unit)
    rho0 = jnp.asarray(rho0, dtype=jnp.result_type(float))
    check_finite("solve_hardware", "rho0", rho0)
    shape = rho0.shape
    rho_flat = rho0.reshape(-1)
    dtype = rho0.dtype

    calcium = rule.calcium
    arrivals = arrival_spikes(spikes, calcium.D)
    if configs[0].mismatched:
        local = configs[0].draw_mismatch(calcium, rho_flat.shape, key=jax.random.key(configs[0].chip))

        def advance(carry, steps):
            def one(cal, carry):
                return advance_calcium(eqx.tree_at(lambda r: r.calcium, rule, cal), arrivals, carry, steps)

            return jax.vmap(one)(local, carry)

        ptr = jnp.zeros(rho_flat.shape, jnp.int32)
        analog0 = (local.init(), ptr, ptr)
        concentration = local.concentration
        decay = jax.vmap(lambda cal, state, s: cal.decay(state, s), in_axes=(0, 0, None))
        decay = functools.partial(decay, local)
    else:

        def advance(carry, steps):
            return advance_calcium(rule, arrivals, carry, steps)

        analog0 = (calcium.init(), jnp.array(0), jnp.array(0))
        concentration = calcium.concentration
        decay = calcium.decay

    n_steps = spikes.end_tick + (spikes.end_offset > 0)
    n_periods = -(-tick_count(spikes, "solve_hardware") // m)
    chunk = int(record_every or chunk)
    n_chunks = -(-n_periods // chunk)
    unit_ = jnp.asarray(spikes.unit, dtype)
    random_rounding = any(c.state is not None and c.rounding in RANDOM_ROUNDINGS for c in configs)
    read_noise = any(c.read_noise > 0 for c in configs)
    round_seeds = jax.random.bits(jax.random.fold_in(key, ROUNDING_STREAM), (2, *rho_flat.shape), jnp.uint32)
    read_key = jax.random.fold_in(key, READ_STREAM)

    def ppu(rhos, k, a_p, a_d, c, affine, normal, elapsed):
        """Every configuration's update at the end of period k (float: the exact map of the period)."""
        uniform = counter_uniform(round_seeds, k, dtype) if random_rounding else None
        noise = None
        if read_noise:
            draws = jax.random.normal(jax.random.fold_in(read_key, k), (2, *rho_flat.shape), dtype)
            noise = (draws[0], draws[1])
        new = []
        for config, rho in zip(configs, rhos):
            if config.state is None:
                new.append(rule.cubic(affine(rule.cubic(rho, elapsed / 2), normal), elapsed / 2))
                continue
            T_p, T_d = config.read_times(rule, a_p, a_d, c, elapsed, noise if config.read_noise > 0 else None)
            delta = ppu_increment(rule, rho + config.offset, T_p, T_d, elapsed, normal)
            new.append(config.state.accumulate(rho, delta, config.rounding, uniform=uniform,
                                               random_bits=config.random_bits))
        return tuple(new)

    def elapsed_in(k):
        return jnp.clip(n_steps - k * m, 0, m).astype(dtype) * unit_

    def period_update(carry, k):
        analog, totals, rhos = carry
        zero = jnp.zeros_like(totals[0])
        (state, ptr_pre, ptr_post, a_p, a_d), affine = advance((*analog, zero, zero), k * m + jnp.arange(m))
        normal = normal_when(jnp.any(a_p + a_d > 0), jax.random.fold_in(key, k), rho_flat.shape, dtype)
        rhos = ppu(rhos, k, a_p, a_d, concentration(state), affine, normal, elapsed_in(k))
        return ((state, ptr_pre, ptr_post), (totals[0] + a_p, totals[1] + a_d), rhos), None

    def quiet_update(carry, k):
        # No spike arrives and calcium decays from below both thresholds: no drive, no noise.
        (state, ptr_pre, ptr_post), totals, rhos = carry
        elapsed = elapsed_in(k)
        state = decay(state, elapsed)
        zero = jnp.zeros_like(totals[0])
        rhos = ppu(rhos, k, zero, zero, concentration(state), Affine.identity(elapsed), jnp.zeros_like(rho_flat), elapsed)
        return ((state, ptr_pre, ptr_post), totals, rhos), None

    def quiet(carry, index) -> Array:
        """Whether chunk `index` is quiet: no arrival before its end, calcium below both thresholds at its start."""
        state, ptr_pre, ptr_post = carry[0]
        end = (index + 1) * chunk * m

        def silent(tick, mask, ptr):
            i = jnp.minimum(ptr, tick.shape[0] - 1)
            return (ptr >= tick.shape[0]) | ~mask[i] | (tick[i] >= end)

        below = concentration(state) < jnp.minimum(rule.theta_p, rule.theta_d)
        return jnp.all(silent(arrivals.pre_tick, arrivals.pre_mask, ptr_pre)
                       & silent(arrivals.post_tick, arrivals.post_mask, ptr_post) & below)

    @jax.checkpoint
    def run_chunk(carry, index):
        periods = index * chunk + jnp.arange(chunk)
        # Chunks wholly past this protocol's end (padding of a batch) change nothing: skip them.
        # Quiet chunks (most of a low-frequency protocol) skip the calcium machinery: the
        # same updates with the same random numbers, about four times cheaper.
        branch = jnp.where(index * chunk * m >= n_steps, 0, jnp.where(quiet(carry, index), 1, 2))
        carry = jax.lax.switch(branch, [
            lambda c: c,
            lambda c: jax.lax.scan(quiet_update, c, periods)[0],
            lambda c: jax.lax.scan(period_update, c, periods)[0],
        ], carry)
        return carry, (concentration(carry[0][0]), carry[2])

    zero = jnp.zeros(rho_flat.shape if configs[0].mismatched else (), dtype)
    # hardware programs carry the stored value rho - offset
    rhos0 = tuple(rho_flat if c.state is None else c.state.quantise(rho_flat - c.offset) for c in configs)
    init = (analog0, (zero, zero), rhos0)
    indices = jnp.arange(n_chunks)
    ((state, _, _), (t_p, t_d), rhos), (c_trace, rho_traces) = jax.lax.scan(run_chunk, init, indices)
    ts = None if record_every is None else jnp.minimum((indices + 1) * chunk * m, n_steps).astype(dtype) * spikes.unit
    shifts = [0.0 if c.state is None else c.offset for c in configs]
    solutions = tuple(
        ScanSolution(
            rho=(rho + shift).reshape(shape),
            calcium=state,
            time_p=t_p,
            time_d=t_d,
            ts=ts,
            c=None if record_every is None else c_trace,
            rho_trace=None if record_every is None else (trace + shift).reshape(n_chunks, *shape),
        )
        for rho, trace, shift in zip(rhos, rho_traces, shifts)
    )
    return solutions[0] if isinstance(hardware, BSS2) else solutions


@stored_jit
def _batched_populations(rule, configs, spikes, keys, n_synapses):
    def one(args):
        sp, k = args
        dtype = sp.pre_offset.dtype
        rho0 = jnp.concatenate([jnp.zeros(n_synapses, dtype), jnp.ones(n_synapses, dtype)])
        return jnp.stack([s.rho for s in solve_hardware(rule, sp, rho0, hardware=configs, key=k)])

    # lax.map, not vmap: the per-period `cond` skips the noise draws while calcium is below
    # both thresholds; under vmap it would become a select and draw them every period.
    return jax.lax.map(one, (spikes, keys))


def hardware_populations(
    rule: GraupnerBrunel2012,
    protocols: Sequence[Protocol],
    hardware: BSS2 | Sequence[BSS2],
    *,
    n_synapses: int = 1000,
    key: Key,
    step: float = 0.1,
    progress: bool = False,
) -> np.ndarray:
    """Final rho of `n_synapses` synapses started DOWN, then as many UP, per configuration and protocol.

    Shape `(len(configs), len(protocols), 2 * n_synapses)`. Protocol i uses
    `fold_in(key, i)`; configurations share the analog substrate and the random numbers.
    Every update period must be a multiple of the solver `step` (ms); since calcium is
    exact whatever the step, it is stepped once per update period. `progress`: run in slices
    of the protocols with a progress bar (`stdp_ratios`).
    """
    configs = _as_configs(hardware)
    for config in configs:
        config.steps_per_period(step)
    if int(n_synapses) != n_synapses or n_synapses < 1:
        raise ValueError(f"n_synapses must be a whole number >= 1, got {n_synapses!r}")
    spikes = to_spikes(list(protocols), unit=configs[0].period)
    keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(len(protocols)))
    rho = in_chunks(lambda part: _batched_populations(rule, configs, *part, int(n_synapses)), (spikes, keys),
                    label=f"stdp (scan, emulated BSS-2, {len(protocols)} protocols)", progress=progress)
    return np.asarray(rho).transpose(1, 0, 2)


def hardware_ratios(
    rule: GraupnerBrunel2012,
    protocols: Sequence[Protocol],
    hardware: BSS2 | Sequence[BSS2],
    *,
    n_synapses: int = 1000,
    key: Key,
    step: float = 0.1,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """GB2012 change ratio and its standard error of each protocol under each configuration.

    Readout of `hardware_populations` by `grid_population_ratio`. Arrays of shape
    `(len(configs), len(protocols))`, or `(len(protocols),)` for a single `BSS2`. `progress`:
    as in `hardware_populations`.
    """
    configs = _as_configs(hardware)
    rho = jnp.asarray(hardware_populations(rule, protocols, configs, n_synapses=n_synapses, key=key, step=step,
                                           progress=progress))
    n = int(n_synapses)
    stats = [jax.vmap(lambda r: grid_population_ratio(rule, r[:n], r[n:], c))(rho_c) for c, rho_c in zip(configs, rho)]
    ratio, sem = np.stack([np.asarray(r) for r, _ in stats]), np.stack([np.asarray(e) for _, e in stats])
    return (ratio[0], sem[0]) if isinstance(hardware, BSS2) else (ratio, sem)


def tie_shift(config: BSS2) -> float:
    """A quarter of the state format's step (0 for float): moves values off rho_star and nothing else across it."""
    return 0.0 if config.state is None else config.state.step / 4


def grid_population_ratio(rule: GraupnerBrunel2012, rho_from_down: Array, rho_from_up: Array,
                          config: BSS2) -> tuple[Array, Array]:
    """`population_ratio` for efficacies on the state grid of `config`.

    On the grid a synapse can end exactly at rho_star (about 2% of them at 8 bits for preset
    DP), which "UP means rho > rho_star" would always count DOWN: a bias of about -0.015 in
    the ratio. Such a synapse sits on the unstable fixed point, so it counts half UP and
    half DOWN: the mean of the readouts of rho + and - `tie_shift(config)` (the ratio is
    linear in U and D). Float configurations read out as `population_ratio`.
    """
    shift = tie_shift(config)
    high = population_ratio(rule, rho_from_down + shift, rho_from_up + shift)
    low = population_ratio(rule, rho_from_down - shift, rho_from_up - shift)
    return (high[0] + low[0]) / 2, (high[1] + low[1]) / 2


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
    if int(n_synapses) != n_synapses or n_synapses < 1:
        raise ValueError(f"hardware_prediction: n_synapses must be a whole number >= 1, got {n_synapses!r}")
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
