"""Solvers as objects, and `solve`: one call for every early-phase solver.

A solver is an `AbstractSolver`: an Equinox module holding its own settings, whose `run`
advances one protocol. `solve` is the one entry point: it takes the rule, the protocol, the
initial efficacies, the solver and what to record (`record_every`, in ms for every solver),
and returns a `Solution`. The solvers here are `Events` (exact event-driven) and `Scan`
(rho on a time grid); `ca_plast.Hardware` wraps the BSS-2 emulation as a third. A solver of
your own subclasses `AbstractSolver` and implements `run`.
"""

import abc

import equinox as eqx

from .._custom_types import ArrayLike, Key
from .._spikes import Spikes, whole_steps
from ..rules._abstract import AbstractRule
from ._events import solve_events
from ._scan import solve_scan
from ._solution import Solution


class AbstractSolver(eqx.Module):
    """An early-phase solver: how `solve` advances one protocol."""

    @abc.abstractmethod
    def run(self, rule: AbstractRule, spikes: Spikes, rho0: ArrayLike, *, key: Key | None,
            record_every: int | None) -> Solution:
        """Simulate one protocol (unbatched `spikes`) from `rho0`; records every `record_every`
        ticks of `spikes.unit` ms (None: no records)."""


class Events(AbstractSolver):
    """The exact event-driven solver (`solve_events`): cost O(spikes); `drive_steps`,
    `quiet_steps` as there."""

    drive_steps: int = eqx.field(static=True, default=1)
    quiet_steps: int = eqx.field(static=True, default=4)

    def run(self, rule: AbstractRule, spikes: Spikes, rho0: ArrayLike, *, key: Key | None,
            record_every: int | None) -> Solution:
        return solve_events(rule, spikes, rho0, key=key, drive_steps=self.drive_steps, quiet_steps=self.quiet_steps,
                            record_every=record_every)


class Scan(AbstractSolver):
    """The time-stepped solver (`solve_scan`): rho stepped every `chunk` ticks (records, when
    asked for, set the grid instead)."""

    chunk: int = eqx.field(static=True, default=100)

    def run(self, rule: AbstractRule, spikes: Spikes, rho0: ArrayLike, *, key: Key | None,
            record_every: int | None) -> Solution:
        return solve_scan(rule, spikes, rho0, key=key, record_every=record_every, chunk=self.chunk)


def solve(
    rule: AbstractRule,
    spikes: Spikes,
    rho0: ArrayLike,
    solver: AbstractSolver = Events(),
    *,
    key: Key | None = None,
    record_every: float | None = None,
) -> Solution:
    """Simulate one protocol (unbatched `spikes`) with any rule and any early-phase solver.

    `rho0`: initial efficacies of any shape (each synapse shares the protocol's calcium and gets
    its own noise); `solver`: `Events()` (default), `Scan(chunk)`, `Hardware(config)` or one
    of your own; `key`: noise (and random rounding) key, None for noise off where the solver
    allows it; `record_every`: ms between records of c and rho (a whole number of
    `spikes.unit` ticks; for `Hardware` of update periods), None for none. Batch with
    `jax.vmap`; jit with `equinox.filter_jit`.
    """
    if not isinstance(solver, AbstractSolver):
        raise ValueError(f"solve: solver must be an AbstractSolver (Events(), Scan(), Hardware(...)), got {solver!r}")
    ticks = None if record_every is None else whole_steps(record_every, spikes.unit, "solve")
    return solver.run(rule, spikes, rho0, key=key, record_every=ticks)
