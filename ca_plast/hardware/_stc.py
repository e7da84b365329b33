"""BrainScaleS-2 emulation of synaptic tagging and capture (Luboeinski & Tetzlaff 2021).

The set-up of the multi-timescale plasticity paper (Atoui et al., arXiv:2412.02515): calcium
and the neuron run in analog circuits; the plasticity processing unit (PPU) solves the
equations of h, p and z in fixed-point arithmetic under a timer, every `hardware.period` ms,
with stochastic rounding and an adjusted solver time step.

`solve_stc_hardware` emulates that:

- analog substrate, exactly as `solve_stc`: the same event loop (`run_events`: calcium
  arrivals after D, current arrivals, imposed postsynaptic spikes, records, and the
  neuron's own threshold crossings located exactly by `LeakyIntegrateAndFire.first_spike`);
  calcium decays in closed form between events;
- two analog integrators hold the time calcium spent above theta_p and theta_d since the
  last update (integrated exactly, `rule.times_above`, over every piece of free decay);
- at each update (times k * period, k >= 1) the PPU reads them through the CADC
  (`BSS2.read_times`: "integrate" reads the integrators, "sample" reads calcium at the
  update and holds it for the period; `cadc_bits`, `read_noise`) and takes one explicit
  step over the period (`stc_ppu_increment`): h from the early-phase equation with the
  measured times, p and z with the tag and protein Heavisides of the state before the step;
  each variable is rounded into `hardware.state` with `hardware.rounding`
  (`FixedPoint.accumulate`). The state format holds h / h_max (h in [0, 10] mV), p / alpha
  and z (in [-0.5, 1]): all inside the signed fractional range [-1, 1) (`BSS2.offset` is
  GB2012's and is not used here; h = h_max, p = alpha and z = 1 saturate one step below);
- the PPU writes the total weight w = h + h0 z back as a 6-bit code on a full scale of
  h_max + h0 (`stc_weight_codes`: 0..63, 0.225 mV per step with the published parameters);
  the neuron is driven by that written-back weight, not by the float w.

`hardware.state = None` is the float reference of the same program: exact times above
threshold (no CADC), no rounding, float weight; it differs from the exact model (`solve_stc`)
only by the explicit step over each period and the weight held between updates.

Many updates fall between two events (hours of quiet with records every 30 s: 3000 updates
of 10 ms per record interval); inside each interval of the event loop they run in a
`jax.lax.while_loop` whose body is one closed form calcium decay, one PPU step and one
write-back. Reverse-mode gradients are therefore not available; forward evaluation is jit-
and vmap-compatible.

Random numbers, as in `solve_hardware`: the rule's noise in update k uses
`jax.random.normal(fold_in(key, k))` (drawn only when calcium was above a threshold in the
period); rounding uses `counter_uniform` numbers (one per stored variable and update) seeded
from `fold_in(key, 2^32 - 1)`; CADC read noise `fold_in(fold_in(key, 2^32 - 2), k)`.
Mismatch (`mismatch_tau_ca`, `mismatch_amplitude`) gives each synapse its own calcium,
drawn once from `jax.random.key(chip)`: the same synapse on the same chip in every trial.
"""

import equinox as eqx
import jax
import jax.numpy as jnp

from .._custom_types import Array, ArrayLike, Key
from .._lif import LeakyIntegrateAndFire
from .._spikes import Spikes, interval as interval_ms
from .._validation import checked
from ..rules._affine import safe_sqrt
from ..rules._lt2021 import LuboeinskiTetzlaff2021, STCState, STCStats
from ..solvers._loop import run_events
from ..solvers._stc import STCSolution, check_spare, neuron_at_event, neuron_split, stc_events, stc_solution
from ._bss2 import BSS2, READ_STREAM, ROUNDING_STREAM, normal_when
from ._fixed_point import FixedPoint
from ._rounding import counter_uniform

BSS2_STC = BSS2(state=FixedPoint(16, 15), rounding="stochastic", period=100.0)
"""The STC configuration of `ca-plast stc --hardware bss2`: 16-bit state, stochastic rounding,
PPU update every 100 ms, integrated threshold times read by the 8-bit CADC, 6-bit weights.

Chosen by benchmarks/stc_hardware.py (20 regular-pulse trials per protocol, noise on, 4 h after
the onset, float64) as the cheapest configuration (longest period, then fewest bits) whose mean
final w is within max(3 s.e., 5 % of h0) of the exact solver's for STET, WTET, SLFS and WLFS
with a trial-to-trial s.d. at most twice float's + 2 % of h0. Measured (w in % of h0, float
first): STET 189.9 / 189.9, WTET 104.4 / 104.9, SLFS 48.0 / 48.3, WLFS 100.0 / 100.0; z 0.759 /
0.759 (STET), -0.379 / -0.377 (SLFS). Nearest rounding loses the late phase at 8 and 16 bits
and 10 or 100 ms (z stays 0; STET w 195 %, SLFS 0.6 % at 16 bits, 100 ms). 8-bit stochastic
rounding keeps the means (STET 188.1 +- 2.1 %) but spreads single trials tenfold (s.d. of w
9.6 % of h0 against 0.8 %). Updating every 10 ms changes the 16-bit means by <= 0.4 % of h0 at
six times the emulation cost.
"""


def _scales(rule: LuboeinskiTetzlaff2021) -> STCState:
    """Units of the stored variables: h / h_max, p / alpha (alpha = 0: p itself), z."""
    return STCState(h=rule.h_max, p=jnp.where(rule.alpha > 0, rule.alpha, 1.0), z=jnp.ones_like(rule.h0))


def _store(rule: LuboeinskiTetzlaff2021, state: STCState) -> STCState:
    return jax.tree.map(lambda x, unit: x / unit, state, _scales(rule))


def _value(rule: LuboeinskiTetzlaff2021, stored: STCState) -> STCState:
    return jax.tree.map(lambda x, unit: x * unit, stored, _scales(rule))


def _flat(state: STCState) -> Array:
    return jnp.concatenate([jnp.ravel(state.h), jnp.ravel(state.p), jnp.ravel(state.z)])


def _unflat(x: Array, like: STCState) -> STCState:
    n = jnp.size(like.h)
    return STCState(h=x[:n].reshape(jnp.shape(like.h)), p=x[n].reshape(jnp.shape(like.p)),
                    z=x[n + 1:].reshape(jnp.shape(like.z)))


def stc_weight_codes(rule: LuboeinskiTetzlaff2021, hardware: BSS2, state: STCState) -> Array:
    """6-bit codes (int32, 0..63 for the default weight format) the PPU writes for the total weight.

    w = h + h0 z (mV) on a full scale of h_max + h0 (the largest w: h = h_max, z = 1):
    code = nearest(63 w / (h_max + h0)), kept in range (w < 0 writes 0).
    """
    full = rule.h_max + rule.h0
    return hardware.weight.codes(hardware.weight.max_value * rule.weight(state) / full)


def _written_weight(rule: LuboeinskiTetzlaff2021, hardware: BSS2, state: STCState) -> Array:
    """The weight (mV) the neuron sees after the PPU writes `state` back."""
    if hardware.state is None:
        return rule.weight(state)
    codes = stc_weight_codes(rule, hardware, state)
    return codes * hardware.weight.step * (rule.h_max + rule.h0) / hardware.weight.max_value


def stc_ppu_increment(rule: LuboeinskiTetzlaff2021, state: STCState, T_p: ArrayLike, T_d: ArrayLike, period: ArrayLike,
                      normal: Array | None) -> STCState:
    """One explicit PPU step of (h, p, z) over `period` ms, given the times above threshold (ms).

    `dh = (leak (h0 - h) P + gamma_p (h_max - h) T_p - gamma_d h T_d) / tau_h
    + sigma_pl sqrt((T_p + T_d) / tau_h) normal` (the drive integrated with the measured times,
    the noise with its exact variance); `dp = (alpha H_pro - p) P / tau_p`,
    `dz = p ((1 - z) H_ltp - (z + 0.5) H_ltd) P / tau_z`, with the Heavisides of the state
    before the step. Increments in mV, protein units and late-weight units.
    """
    h, p, z = state.h, state.p, state.z
    T_p, T_d, period = jnp.asarray(T_p), jnp.asarray(T_d), jnp.asarray(period)
    pro, ltp, ltd = rule.flags(h - rule.h0)
    dh = (rule.leak * (rule.h0 - h) * period + rule.gamma_p * (rule.h_max - h) * T_p - rule.gamma_d * h * T_d) / rule.tau_h
    if normal is not None:
        dh = dh + rule.sigma_pl * safe_sqrt((T_p + T_d) / rule.tau_h) * normal
    dp = (rule.alpha * pro - p) * period / rule.tau_p
    dz = p * ((1 - z) * ltp - (z + 0.5) * ltd) * period / rule.tau_z
    return STCState(h=dh, p=dp, z=dz)


def _check(hardware, spikes: Spikes, key) -> int:
    """Update period in ticks; ValueError for what this emulation does not do."""
    if not isinstance(hardware, BSS2):
        raise ValueError(f"solve_stc_hardware: hardware must be a BSS2 configuration, got {hardware!r}")
    if hardware.state is not None and not hardware.state.signed:
        raise ValueError(f"solve_stc_hardware: the state format must be signed (z in [-0.5, 1]), got {hardware.state!r}")
    if key is None and hardware.state is not None and hardware.rounding.random:
        raise ValueError(f"solve_stc_hardware: {hardware.rounding} rounding needs a key (pass key=...)")
    if key is None and hardware.state is not None and hardware.read_noise > 0:
        raise ValueError(f"solve_stc_hardware: read_noise={hardware.read_noise!r} needs a key (pass key=...)")
    return hardware.steps_per_period(spikes.unit)


def solve_stc_hardware(
    rule: LuboeinskiTetzlaff2021,
    spikes: Spikes,
    *,
    hardware: BSS2,
    neuron: LeakyIntegrateAndFire | None = None,
    key: Key | None = None,
    record_every: float = 30_000.0,
    max_post_spikes: int = 64,
    synapses: bool = False,
) -> STCSolution:
    """Simulate one protocol (unbatched `spikes`) with the plasticity solved by an emulated BSS-2 PPU.

    Same arguments and result as `solve_stc` (see the module docstring for the emulation),
    plus `hardware`: the `BSS2` configuration, whose `period` must be a whole multiple of
    `spikes.unit` (updates at k * period, k >= 1; none after the protocol's end). `key`
    (keyword-only): the rule's noise and the random rounding; None for noise off (then the
    rounding must be deterministic). Records and the final state are (h, p, z) as the PPU
    holds them (values on the format's grid); `stats` are accumulated from the PPU's state at
    the updates (flags of the state before each step times the period; extremes after).
    `max_post_spikes` spare scan iterations for the neuron's spikes (`n_late` counts events
    left unprocessed), as in `solve_stc`. Not reverse-differentiable (`while_loop`).
    """
    rule = checked(rule, "solve_stc_hardware")
    neuron = None if neuron is None else checked(neuron, "solve_stc_hardware")
    m = _check(hardware, spikes, key)
    check_spare("solve_stc_hardware", max_post_spikes)
    unit = spikes.unit
    n_syn, record_steps, n_records, events = stc_events(rule, spikes, neuron, record_every, synapses,
                                                        "solve_stc_hardware")
    dtype = events.length.dtype
    start = rule.init(n_syn)
    if hardware.mismatched:
        local = hardware.draw_mismatch(rule.calcium, jnp.shape(start.h), key=jax.random.key(hardware.chip))
        rule = eqx.tree_at(lambda r: r.calcium, rule, local)
    calcium = rule.calcium
    fmt: FixedPoint | None = hardware.state
    stored0 = _store(rule, start)
    if fmt is not None:
        stored0 = jax.tree.map(fmt.quantise, stored0)
    shape = jnp.shape(start.h)
    n_events = events.length.shape[0]
    period = jnp.asarray(hardware.period, dtype)
    random_rounding = fmt is not None and hardware.rounding.random
    read_noise = fmt is not None and hardware.read_noise > 0
    seeds = read_key = None
    if key is not None:
        seeds = jax.random.bits(jax.random.fold_in(key, ROUNDING_STREAM), (2, _flat(start).shape[0]), jnp.uint32)
        read_key = jax.random.fold_in(key, READ_STREAM)

    def ppu(stored, T_p, T_d, c, k, stats):
        """Update k: read the integrators (or calcium), step, round, write the weight back."""
        normal = None if key is None else normal_when(jnp.any(T_p + T_d > 0), key, k, shape, dtype)
        state = _value(rule, stored)
        if fmt is None:
            delta = stc_ppu_increment(rule, state, T_p, T_d, period, normal)
            new = jax.tree.map(lambda x, d, u: x + d / u, stored, delta, _scales(rule))
        else:
            noise = None
            if read_noise:
                assert read_key is not None  # _check: noisy reads need a key
                draws = jax.random.normal(jax.random.fold_in(read_key, k), (2, *shape), dtype)
                noise = (draws[0], draws[1])
            T_p, T_d = hardware.read_times(rule, T_p, T_d, c, period, noise)
            delta = _store(rule, stc_ppu_increment(rule, state, T_p, T_d, period, normal))
            uniform = None
            if random_rounding:
                assert seeds is not None  # _check: random rounding needs a key
                uniform = counter_uniform(seeds, k, dtype)
            new = _unflat(fmt.accumulate(_flat(stored), _flat(delta), hardware.rounding, uniform=uniform), stored)
        pro, ltp, ltd = rule.flags(state.h - rule.h0)
        h = _value(rule, new).h
        piece = STCStats(time_pro=period * pro, time_tag_ltp=period * ltp, time_tag_ltd=period * ltd, h_max=h, h_min=h)
        return new, _written_weight(rule, hardware, _value(rule, new)), stats.then(piece)

    def interval(carry, state, s, at):
        """PPU updates inside the segment of `s` ms (those at or before its end; one at an
        event's time comes before it), and the integrators over the free decay between."""
        stored, w, T_p, T_d, k, lif, stats, n_post = carry
        before = at.event > 0
        previous = jnp.maximum(at.event - 1, 0)
        tick_a = jnp.where(before, events.tick[previous], 0)
        offset_a = jnp.where(before, events.offset[previous], 0.0)
        tick_b = events.tick[jnp.minimum(at.event, n_events - 1)]
        end = at.elapsed + s

        def update_time(k):
            """Time (ms) of update k after the previous event, from integer ticks."""
            return interval_ms(tick_a, offset_a, k * m, jnp.zeros((), dtype), unit)

        def pending(inner):
            k = inner[0]
            return (at.event < n_events) & jnp.where(at.reached, k * m <= tick_b, update_time(k) <= end)

        def update(inner):
            k, cal, last, T_p, T_d, stored, w, stats = inner
            t_k = update_time(k)
            a_p, a_d = rule.times_above(calcium.concentration(cal), t_k - last)
            cal = calcium.decay(cal, t_k - last)
            stored, w, stats = ppu(stored, T_p + a_p, T_d + a_d, calcium.concentration(cal), k, stats)
            zero = jnp.zeros_like(T_p)
            return k + 1, cal, t_k, zero, zero, stored, w, stats

        inner = (k, state, at.elapsed, T_p, T_d, stored, w, stats)
        k, cal, last, T_p, T_d, stored, w, stats = jax.lax.while_loop(pending, update, inner)
        a_p, a_d = rule.times_above(calcium.concentration(cal), end - last)
        lif = None if neuron is None else neuron.propagate(lif, s)
        return stored, w, T_p + a_p, T_d + a_d, k, lif, stats, n_post

    def at_event(carry, kind, acts, tag, post):
        stored, w, T_p, T_d, k, lif, stats, n_post = carry
        if neuron is not None:
            lif = neuron_at_event(neuron, lif, w if n_syn is None else w[tag], kind, acts, post)
        return stored, w, T_p, T_d, k, lif, stats, n_post + post

    zero = jnp.zeros(shape, dtype)
    lif = None if neuron is None else neuron.init()
    first = _value(rule, stored0)
    carry = (stored0, _written_weight(rule, hardware, first), zero, zero, jnp.ones((), jnp.int32), lif,
             STCStats.start(first.h), jnp.zeros((), jnp.int32))
    spare = 0 if neuron is None else int(max_post_spikes)
    result = run_events(calcium, events, calcium.rest(shape), carry, interval, at_event=at_event,
                        record=lambda carry, state: _value(rule, carry[0]), n_grid=n_records, targets=n_syn,
                        split=lambda carry, state, s: neuron_split(neuron, carry[5], s), spare=spare, chunk=32)
    stored, _, _, _, _, _, stats, n_post = result.carry
    return stc_solution(first, _value(rule, stored), result.records, stats, n_post, result.n_late, unit, record_steps)
