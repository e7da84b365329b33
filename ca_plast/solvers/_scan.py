"""Time-stepped solver: rho stepped on a fixed time grid, calcium exact between spikes.

rho is updated every `chunk` steps of `spikes.unit` ms (10 ms by default): at each grid point
the synapses take the exact affine map of the rule's calcium-driven part over the grid
period (`AbstractRule.drive`, composed from spike to spike by the event loop: spikes act at
their true times, calcium decays exactly between them, the time above each threshold has a
closed form), with one Gaussian increment of the exact variance, between two half steps of
the slow calcium-independent drift (`AbstractRule.drift`; Strang splitting at the grid
period, against tau ~ 10^5 ms for GB2012). Because spike times, thresholds and calcium enter
smoothly, gradients with respect to theta_p, theta_d, tau_ca, C_pre, C_post and D exist.
The cost grows with the number of spikes and grid points, not with the number of steps.
"""

import jax
import jax.numpy as jnp

from .._custom_types import ArrayLike, Key
from .._spikes import Spikes
from .._validation import check_finite, checked, whole_number
from ..rules._abstract import AbstractRule
from ..rules._affine import Affine
from ._loop import event_loop, record_grid
from ._solution import Solution

ScanSolution = Solution  # the result of every early-phase solver


def solve_scan(
    rule: AbstractRule,
    spikes: Spikes,
    rho0: ArrayLike,
    *,
    key: Key | None = None,
    record_every: int | None = None,
    chunk: int = 100,
) -> Solution:
    """Simulate one protocol (unbatched `spikes`) on a time grid of `chunk` steps of `spikes.unit` ms.

    `rho0`: initial efficacies of any shape; all share the protocol's calcium trace and get
    independent noise. `key`: noise key (keyword-only); None switches noise off.

    rho is stepped on a grid of `chunk` steps (`record_every` when given): 10 ms by default.
    Between grid points calcium and the exact affine map of the threshold drive are carried
    from spike to spike (the event loop, `event_loop`: exact, since the drive is linear in rho,
    see `Affine`) and composed; at each grid point the synapses take the composed map with one
    Gaussian increment of the exact variance (key `fold_in(key, grid index)`), between two half
    steps of the cubic drift (Strang splitting at the grid period, against tau ~ 10^5 ms). So
    the cost grows with the spikes and grid points, not with the steps, and does not grow with
    the number of synapses between grid points. Reverse mode stores one carry per event.
    `record_every`: record c and rho every that many steps.
    """
    rule = checked(rule, "solve_scan")
    unit = spikes.unit
    if spikes.pre_tick.ndim != 1:
        raise ValueError(f"solve_scan: expected unbatched spikes (1-d trains); got shape {spikes.pre_tick.shape}; vmap over the batch")
    if record_every is not None:
        record_every = whole_number("solve_scan", "record_every", record_every, of=" of steps")
    chunk = whole_number("solve_scan", "chunk", chunk, of=" of steps")
    rho0 = jnp.asarray(rho0, dtype=jnp.result_type(float))
    check_finite("solve_scan", "rho0", rho0)
    grid = record_grid(spikes, record_every or chunk, "solve_scan")
    unit_ = jnp.asarray(unit, rho0.dtype)
    zero = jnp.zeros_like(unit_)

    def interval(carry, state, s, index):
        rho, affine, t_p, t_d = carry
        c0 = rule.calcium.concentration(state)
        a_p, a_d = rule.times_above(c0, s)
        return rho, rule.drive(c0, s).after(affine), t_p + a_p, t_d + a_d

    def at_grid(carry, state, g):
        rho, affine, t_p, t_d = carry
        elapsed = (grid[g] - jnp.where(g > 0, grid[g - 1], 0)).astype(unit_.dtype) * unit_
        normal = None if key is None else jax.random.normal(jax.random.fold_in(key, g), rho.shape, rho.dtype)
        rho = rule.drift(affine(rule.drift(rho, elapsed / 2), normal), elapsed / 2)
        return rho, Affine.identity(zero), t_p, t_d

    def record(carry, state):
        return rule.calcium.concentration(state), carry[0]

    carry = (rho0, Affine.identity(zero), zero, zero)
    state, (rho, _, t_p, t_d), records = event_loop(
        rule.calcium, spikes, carry, interval, grid=grid, at_grid=at_grid,
        record=None if record_every is None else record)
    if record_every is None:
        return Solution(rho=rho, calcium=state, time_p=t_p, time_d=t_d, ts=None, c=None, rho_trace=None)
    c_trace, rho_trace = records
    return Solution(rho=rho, calcium=state, time_p=t_p, time_d=t_d, ts=grid.astype(rho0.dtype) * unit,
                        c=c_trace, rho_trace=rho_trace)
