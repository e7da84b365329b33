"""Solvers as objects, and `solve`: one call for every early-phase solver.

A solver is an `AbstractSolver`: an Equinox module holding its own settings, whose `run`
advances one protocol. `solve` is the one entry point: it takes the rule, the protocol, the
initial efficacies, the solver and what to record (`record_every`, in ms for every solver),
and returns a `Solution`. The solvers here are `Events` (exact event-driven) and `Scan`
(rho on a time grid); `ca_plast.Hardware` wraps the BSS-2 emulation as a third. A solver of
your own subclasses `AbstractSolver` and implements `run`.
"""

import abc
from collections.abc import Sequence
from typing import ClassVar

import equinox as eqx
import jax
import numpy as np

from .._custom_types import Array, ArrayLike, Key
from .._programs import stored_jit
from .._progress import in_chunks
from .._protocols import Protocol
from .._spikes import Spikes, to_spikes, whole_steps, without_ticks
from .._validation import whole_number
from ..rules._abstract import AbstractRule
from ._events import solve_events
from ._scan import solve_scan
from ._solution import Solution


class AbstractSolver(eqx.Module):
    """An early-phase solver: how `solve` advances one protocol, and how `stdp_ratios`
    simulates the rule's population over many (`population_ratios`).

    `TIME_GRID`: whether the solver steps through ticks of `spikes.unit` (its compiled
    program then depends on the protocol's duration).
    """

    TIME_GRID: ClassVar[bool] = True

    @abc.abstractmethod
    def run(self, rule: AbstractRule, spikes: Spikes, rho0: ArrayLike, *, key: Key | None,
            record_every: int | None) -> Solution:
        """Simulate one protocol (unbatched `spikes`) from `rho0`; records every `record_every`
        ticks of `spikes.unit` ms (None: no records)."""

    def ratio(self, rule: AbstractRule, spikes: Spikes, n_synapses: int, *, key: Key | None) -> tuple[Array, Array]:
        """Change ratio (and standard error) of one protocol: the rule's population
        (`initial_population`, e.g. GB2012: `n_synapses` DOWN and as many UP) simulated by this
        solver, read out by `rule.readout`."""
        n_synapses = whole_number(f"{type(self).__name__}.ratio", "n_synapses", n_synapses)
        w = self.run(rule, spikes, rule.initial_population(n_synapses, spikes.pre_offset.dtype), key=key,
                     record_every=None).rho
        return rule.readout(w)

    def population_ratios(self, rule: AbstractRule, protocols: Sequence[Protocol], *, n_synapses: int, key: Key,
                          step: float, progress: bool) -> tuple[np.ndarray, np.ndarray]:
        """`ratio` of every protocol (spike times in ticks of `step` ms), protocol i with
        `fold_in(key, i)`, vmapped in slices of at least 32 protocols (`progress`: with a
        progress bar on stderr once they take more than 2 s; the same results)."""
        spikes = to_spikes(protocols, unit=step)
        if not self.TIME_GRID:  # one compiled program for every protocol duration
            spikes = without_ticks(spikes)
        keys = _protocol_keys(key, np.arange(len(protocols)))
        ratio, sem = in_chunks(lambda part: _batched_ratio(self, rule, *part, int(n_synapses)), (spikes, keys),
                               label=f"stdp ({type(self).__name__}, {len(protocols)} protocols)", progress=progress,
                               min_size=32)
        return np.asarray(ratio), np.asarray(sem)


@stored_jit
def _batched_ratio(solver: AbstractSolver, rule: AbstractRule, spikes: Spikes, keys: Key, n_synapses: int):
    return jax.vmap(lambda s, k: solver.ratio(rule, s, n_synapses, key=k))(spikes, keys)


@stored_jit
def _protocol_keys(key: Key, index) -> Key:
    return jax.vmap(lambda i: jax.random.fold_in(key, i))(index)


class Events(AbstractSolver):
    """The exact event-driven solver (`solve_events`): cost O(spikes); `drive_steps`,
    `quiet_steps` as there."""

    TIME_GRID: ClassVar[bool] = False

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
