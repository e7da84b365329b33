"""STDP curves: change ratios of a rule for a batch of protocols, by closed form or simulation."""

from collections.abc import Sequence

import jax
import numpy as np

from ._custom_types import Array, Key
from ._limits import check_memory, simulation_bytes
from ._programs import stored_jit
from ._progress import in_chunks
from ._protocols import Protocol
from ._spikes import Spikes, to_spikes, without_ticks
from ._validation import whole_number
from .hardware._bss2 import hardware_ratios
from .rules._abstract import AbstractRule
from .rules._gb2012 import GraupnerBrunel2012
from .solvers._closed_form import closed_form_ratio
from .solvers._density import DensityGrid, density_ratios
from .solvers._events import solve_events
from .solvers._scan import solve_scan

METHODS = ("closed-form", "scan", "events", "density")


def _synapses(owner: str, n_synapses) -> int:
    """`n_synapses` as an int, or ValueError unless it is a whole number >= 1."""
    return whole_number(owner, "n_synapses", n_synapses)


def scan_ratio(rule: AbstractRule, spikes: Spikes, n_synapses: int, *, key: Key | None) -> tuple[Array, Array]:
    """Change ratio (and standard error) of one protocol from the rule's population (`initial_population`:
    GB2012, `n_synapses` DOWN and `n_synapses` UP) simulated by `solve_scan`, read out by `rule.readout`."""
    n_synapses = _synapses("scan_ratio", n_synapses)
    w = solve_scan(rule, spikes, rule.initial_population(n_synapses, spikes.pre_offset.dtype), key=key).rho
    return rule.readout(w)


def events_ratio(rule: AbstractRule, spikes: Spikes, n_synapses: int, *, key: Key | None) -> tuple[Array, Array]:
    """As `scan_ratio`, with the event-driven solver (`solve_events`)."""
    n_synapses = _synapses("events_ratio", n_synapses)
    w = solve_events(rule, spikes, rule.initial_population(n_synapses, spikes.pre_offset.dtype), key=key).rho
    return rule.readout(w)


@stored_jit
def _batched_events(rule, spikes, keys, n_synapses):
    return jax.vmap(lambda s, k: events_ratio(rule, s, n_synapses, key=k))(spikes, keys)


@stored_jit
def _batched_closed_form(rule, spikes):
    return jax.vmap(closed_form_ratio, in_axes=(None, 0))(rule, spikes)


@stored_jit
def _batched_scan(rule, spikes, keys, n_synapses):
    return jax.vmap(lambda s, k: scan_ratio(rule, s, n_synapses, key=k))(spikes, keys)


@stored_jit
def _protocol_keys(key: Key, index) -> Key:
    return jax.vmap(lambda i: jax.random.fold_in(key, i))(index)


def stdp_ratios(
    rule: GraupnerBrunel2012,
    protocols: Sequence[Protocol],
    *,
    method: str = "closed-form",
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
    automatically where mass would leave it; sem 0). Simulations use `n_synapses` synapses starting
    DOWN and as many starting UP, noise from `key` (keyword-only, required), protocol i with
    `fold_in(key, i)`.
    `hardware`: None, or a `BSS2` configuration to run the simulation on emulated
    BrainScaleS-2 hardware (`hardware_ratios`; method "scan", update period a multiple of
    `step`).
    `progress`: simulations run in slices of the protocols (about ten; at least 32 each for
    "events"), with a progress bar on stderr once they take more than 2 s (same results:
    protocol i keeps its key).
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; valid methods: {', '.join(METHODS)}")
    if hardware is not None and method != "scan":
        raise ValueError(f"hardware emulation is a time-stepped simulation: use method 'scan', not {method!r}")
    protocols = list(protocols)
    simulated = method in ("scan", "events")
    n_synapses = _synapses("stdp_ratios", n_synapses) if simulated else 0
    n_spikes = max((p.n_spikes for p in protocols if isinstance(p, Protocol)), default=0)
    check_memory(simulation_bytes(method, len(protocols), n_spikes, n_synapses),
                 f"stdp_ratios ({method}, {len(protocols)} protocols of up to {n_spikes} spikes"
                 + (f", {n_synapses} synapses per state)" if simulated else ")"),
                 "use fewer or shorter protocols" + (" or fewer synapses (n_synapses)" if simulated else ""))
    spikes = to_spikes(protocols, unit=step)
    if method != "scan":  # one compiled program for every protocol duration
        spikes = without_ticks(spikes)
    if method == "closed-form":
        ratio = _batched_closed_form(rule, spikes)
        return np.asarray(ratio), np.zeros(len(protocols))
    if method == "density":
        ratio, _ = density_ratios(rule, spikes, DensityGrid() if grid is None else grid)
        return ratio, np.zeros(len(protocols))
    if key is None:
        raise ValueError(f"method {method!r} simulates noise and needs a key, e.g. key=jax.random.key(0)")
    if hardware is not None:
        return hardware_ratios(rule, protocols, hardware, n_synapses=int(n_synapses), key=key, step=step,
                               progress=progress)
    keys = _protocol_keys(key, np.arange(len(protocols)))
    batched = _batched_scan if method == "scan" else _batched_events
    # Both solvers vmap the protocols: slices of at least 32 keep the vectors wide.
    ratio, sem = in_chunks(lambda part: batched(rule, *part, int(n_synapses)), (spikes, keys),
                           label=f"stdp ({method}, {len(protocols)} protocols)", progress=progress, min_size=32)
    return np.asarray(ratio), np.asarray(sem)
