"""Time-stepped solver: `jax.lax.scan` over steps of `spikes.unit` ms.

Each step is exact in everything but the slow cubic drift: spikes act at their true
offsets inside the step, calcium decays exactly between them, the time above each threshold
in every sub-interval is found in closed form, and the threshold-driven part of rho is
solved exactly with its noise as one exact Gaussian increment per step (`Affine`). The cubic
drift takes two half Euler steps around it (Strang splitting; its time scale is tau ~ 10^5
ms against a 0.1 ms step). Because spike offsets, thresholds and calcium enter smoothly,
gradients with respect to theta_p, theta_d, tau_ca, C_pre, C_post and D exist.
"""

import equinox as eqx
import jax
import jax.numpy as jnp

from ._custom_types import Array, Float, Key
from ._early_phase import Affine, GraupnerBrunel2012
from ._spikes import Spikes, shift
from ._validation import check_finite


class ScanSolution(eqx.Module):
    """Result of `solve_scan` for one protocol.

    `rho`: final efficacies (shape of `rho0`); `calcium`: final calcium state; `time_p`,
    `time_d`: total time (ms) calcium spent above theta_p and theta_d; `ts` (ms), `c`, `rho_trace`:
    values at the end of every `record_every`-th step, or None when no trace was asked for.
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


def solve_scan(
    rule: GraupnerBrunel2012,
    spikes: Spikes,
    rho0: Array,
    *,
    key: Key | None = None,
    record_every: int | None = None,
    chunk: int = 1000,
) -> ScanSolution:
    """Simulate one protocol (unbatched `spikes`) with steps of `spikes.unit` ms.

    `rho0`: initial efficacies of any shape; all share the protocol's calcium trace and get
    independent noise. `key`: noise key (keyword-only); None switches noise off. Per-step
    keys are `fold_in(key, step)`, so the result does not depend on `chunk`.
    `record_every`: record c and rho every that many steps. The loop is a scan of
    `jax.checkpoint`ed chunks of `chunk` steps (record_every when given), so reverse mode
    stores one carry per chunk.
    """
    unit = spikes.unit
    if spikes.pre_tick.ndim != 1:
        raise ValueError(f"solve_scan: expected unbatched spikes (1-d trains); got shape {spikes.pre_tick.shape}; vmap over the batch")
    if record_every is not None and (int(record_every) != record_every or record_every < 1):
        raise ValueError(f"solve_scan: record_every must be a whole number of steps >= 1, got {record_every!r}")
    rho0 = jnp.asarray(rho0, dtype=jnp.result_type(float))
    check_finite("solve_scan", "rho0", rho0)
    calcium = rule.calcium
    pre_tick, pre_offset = shift(spikes.pre_tick, spikes.pre_offset, calcium.D, unit)
    n_steps = spikes.end_tick + (spikes.end_offset > 0)
    per_step = spikes.max_per_tick
    chunk = int(record_every or chunk)
    n_pre, n_post = pre_tick.shape[0], spikes.post_tick.shape[0]
    unit_ = jnp.asarray(unit, rho0.dtype)

    def step(carry, k):
        state, rho, ptr_pre, ptr_post, t_p, t_d = carry
        offsets, hits, is_pre = [], [], []
        for _ in range(per_step):
            off, hit, ptr_pre = _pop(pre_tick, pre_offset, spikes.pre_mask, ptr_pre, k, n_pre, unit)
            offsets.append(off), hits.append(hit), is_pre.append(True)
        for _ in range(per_step):
            off, hit, ptr_post = _pop(spikes.post_tick, spikes.post_offset, spikes.post_mask, ptr_post, k, n_post, unit)
            offsets.append(off), hits.append(hit), is_pre.append(False)
        offsets = jnp.stack(offsets)
        order = jnp.argsort(jax.lax.stop_gradient(offsets), stable=True)
        offsets, hits, is_pre = offsets[order], jnp.stack(hits)[order], jnp.array(is_pre)[order]
        affine = Affine.identity(unit_)
        previous = jnp.zeros_like(unit_)
        for j in range(2 * per_step + 1):
            end = offsets[j] if j < 2 * per_step else unit_
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
        normal = None if key is None else _normal(key, k, affine.variance, rho.shape, rho.dtype)
        new_rho = rule.cubic(affine(rule.cubic(rho, unit_ / 2), normal), unit_ / 2)
        new = (state, new_rho, ptr_pre, ptr_post, t_p, t_d)
        active = k < n_steps
        return jax.tree.map(lambda a, b: jnp.where(active, a, b), new, carry)

    @jax.checkpoint
    def run_chunk(carry, first):
        carry, _ = jax.lax.scan(lambda c, k: (step(c, k), None), carry, first + jnp.arange(chunk))
        state, rho = carry[0], carry[1]
        return carry, (calcium.concentration(state), rho)

    n_chunks = -(-spikes.n_ticks // chunk)
    zero = jnp.zeros_like(unit_)
    init = (calcium.init(), rho0, jnp.array(0), jnp.array(0), zero, zero)
    firsts = chunk * jnp.arange(n_chunks)
    (state, rho, _, _, t_p, t_d), (c_trace, rho_trace) = jax.lax.scan(run_chunk, init, firsts)
    if record_every is None:
        return ScanSolution(rho=rho, calcium=state, time_p=t_p, time_d=t_d, ts=None, c=None, rho_trace=None)
    ts = (firsts + chunk).astype(rho0.dtype) * unit
    return ScanSolution(rho=rho, calcium=state, time_p=t_p, time_d=t_d, ts=ts, c=c_trace, rho_trace=rho_trace)


def _apply(flag: Array, new, old):
    return jax.tree.map(lambda a, b: jnp.where(flag, a, b), new, old)


def _normal(key: Key, k: Array, variance: Array, shape, dtype) -> Array:
    """Standard normals for step k, drawn only when the step carries noise at all."""
    return jax.lax.cond(
        jnp.any(variance > 0),
        lambda: jax.random.normal(jax.random.fold_in(key, k), shape, dtype),
        lambda: jnp.zeros(shape, dtype),
    )
