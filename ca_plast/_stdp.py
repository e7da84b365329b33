"""STDP curves: change ratios of a rule for a batch of protocols, by closed form or simulation."""

import abc
from collections.abc import Sequence
from typing import ClassVar

import equinox as eqx
import jax
import numpy as np

from ._custom_types import Array, Key
from ._limits import check_memory, simulation_bytes
from ._programs import stored_jit
from ._protocols import Protocol
from ._spikes import Spikes, to_spikes, without_ticks
from ._validation import whole_number
from .hardware._solver import Hardware
from .rules._abstract import AbstractRule
from .rules._gb2012 import GraupnerBrunel2012
from .solvers._closed_form import closed_form_ratio
from .solvers._density import DensityGrid, density_ratios
from .solvers._solver import AbstractSolver, Events, Scan

METHODS = ("closed-form", "scan", "events", "density")


def _synapses(owner: str, n_synapses) -> int:
    """`n_synapses` as an int, or ValueError unless it is a whole number >= 1."""
    return whole_number(owner, "n_synapses", n_synapses)


def scan_ratio(rule: AbstractRule, spikes: Spikes, n_synapses: int, *, key: Key | None) -> tuple[Array, Array]:
    """Change ratio (and standard error) of one protocol from the rule's population (`initial_population`:
    GB2012, `n_synapses` DOWN and `n_synapses` UP) simulated by `solve_scan`, read out by `rule.readout`
    (`Scan().ratio`)."""
    return Scan().ratio(rule, spikes, _synapses("scan_ratio", n_synapses), key=key)


def events_ratio(rule: AbstractRule, spikes: Spikes, n_synapses: int, *, key: Key | None) -> tuple[Array, Array]:
    """As `scan_ratio`, with the event-driven solver (`solve_events`; `Events().ratio`)."""
    return Events().ratio(rule, spikes, _synapses("events_ratio", n_synapses), key=key)


@stored_jit
def _batched_closed_form(rule, spikes):
    return jax.vmap(closed_form_ratio, in_axes=(None, 0))(rule, spikes)


class AbstractPrediction(eqx.Module):
    """A deterministic prediction of change ratios for `stdp_ratios` (no noise drawn, s.e. 0).

    `MEMORY`: the kind of work, for the memory estimate (`simulation_bytes`)."""

    MEMORY: ClassVar[str]

    @abc.abstractmethod
    def ratios(self, rule: GraupnerBrunel2012, spikes: Spikes) -> np.ndarray:
        """The change ratio of each protocol of `spikes` (batched, without ticks)."""


class ClosedForm(AbstractPrediction):
    """GB2012's analytic approximation (`closed_form_ratio`): exact times above the thresholds,
    drive averaged over the protocol, the cubic drift neglected."""

    MEMORY: ClassVar[str] = "closed-form"

    def ratios(self, rule: GraupnerBrunel2012, spikes: Spikes) -> np.ndarray:
        return np.asarray(_batched_closed_form(rule, spikes))


class Density(AbstractPrediction):
    """The model's exact expectation over its noise (`density_ratios` on `grid`, widened or
    refined automatically where needed)."""

    MEMORY: ClassVar[str] = "density"
    grid: DensityGrid = eqx.field(default=DensityGrid())

    def ratios(self, rule: GraupnerBrunel2012, spikes: Spikes) -> np.ndarray:
        return density_ratios(rule, spikes, self.grid)[0]


def _method(method, hardware, grid) -> AbstractPrediction | AbstractSolver:
    """The object a `stdp_ratios` method names (a string, or an object passed through)."""
    if isinstance(method, AbstractPrediction | AbstractSolver):
        if hardware is not None or grid is not None:
            raise ValueError(f"stdp_ratios: with method={method!r} leave hardware and grid out (they belong to "
                             "Hardware(config) and Density(grid))")
        return method
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; valid methods: {', '.join(METHODS)}, or a solver or prediction "
                         "object (Events(), Scan(), Hardware(config), ClosedForm(), Density(grid))")
    if hardware is not None and method != "scan":
        raise ValueError(f"hardware emulation is a time-stepped simulation: use method 'scan', not {method!r}")
    if hardware is not None:
        return Hardware(hardware)
    return {"closed-form": ClosedForm(), "density": Density(DensityGrid() if grid is None else grid),
            "scan": Scan(), "events": Events()}[method]


def stdp_ratios(
    rule: GraupnerBrunel2012,
    protocols: Sequence[Protocol],
    *,
    method: str | AbstractPrediction | AbstractSolver = "closed-form",
    n_synapses: int = 1000,
    key: Key | None = None,
    step: float = 0.1,
    hardware=None,
    grid: DensityGrid | None = None,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Change ratio (after / before) and its standard error for each protocol.

    `method`: "closed-form" (GB2012's analytic approximation, sem 0), "scan" (time-stepped
    simulation with steps of `step` ms), "events" (event-driven simulation, `solve_events`;
    there `step` only sets the tick of the spike arrays) or "density" (the model's exact
    expectation over its noise, `solve_density` on `grid`, default `DensityGrid()`, widened
    automatically where mass would leave it; sem 0). Or an object: a prediction
    (`ClosedForm()`, `Density(grid)`) or a solver that simulates (`Events()`, `Scan(chunk)`,
    `Hardware(config)`, one of your own: `AbstractSolver.population_ratios`).
    Simulations use `n_synapses` synapses starting
    DOWN and as many starting UP, noise from `key` (keyword-only, required), protocol i with
    `fold_in(key, i)`.
    `hardware`: None, or a `BSS2` configuration to run the simulation on emulated
    BrainScaleS-2 hardware (`hardware_ratios`; method "scan", update period a multiple of
    `step`; the same as `method=Hardware(config)`).
    `progress`: simulations run in slices of the protocols (about ten; at least 32 each), with
    a progress bar on stderr once they take more than 2 s (same results: protocol i keeps its
    key).
    """
    how = _method(method, hardware, grid)
    name = method if isinstance(method, str) else type(how).__name__
    protocols = list(protocols)
    simulated = isinstance(how, AbstractSolver)
    n_synapses = _synapses("stdp_ratios", n_synapses) if simulated else 0
    n_spikes = max((p.n_spikes for p in protocols if isinstance(p, Protocol)), default=0)
    check_memory(simulation_bytes("events" if simulated else how.MEMORY, len(protocols), n_spikes, n_synapses),
                 f"stdp_ratios ({name}, {len(protocols)} protocols of up to {n_spikes} spikes"
                 + (f", {n_synapses} synapses per state)" if simulated else ")"),
                 "use fewer or shorter protocols" + (" or fewer synapses (n_synapses)" if simulated else ""))
    if not simulated:
        return how.ratios(rule, without_ticks(to_spikes(protocols, unit=step))), np.zeros(len(protocols))
    if key is None:
        raise ValueError(f"method {name!r} simulates noise and needs a key, e.g. key=jax.random.key(0)")
    return how.population_ratios(rule, protocols, n_synapses=n_synapses, key=key, step=step, progress=progress)
