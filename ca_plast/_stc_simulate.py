"""Batches of STC trials: `simulate_stc` runs a solver of tagging and capture (`STCEvents`,
i.e. `solve_stc`, by default; `STCHardware` on the emulated chip; `STCFine`) over many
protocols at once, jit-compiled and vmapped."""

from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._custom_types import Key
from ._lif import LeakyIntegrateAndFire
from ._limits import check_memory, stc_bytes
from ._progress import in_chunks
from ._protocols import Protocol
from ._spikes import to_spikes
from .hardware._bss2 import BSS2
from .hardware._solver import STCHardware
from .rules._lt2021 import LuboeinskiTetzlaff2021
from .solvers._stc import AbstractSTCSolver, STCEvents, STCSolution


@eqx.filter_jit
def _batched(rule, neuron, spikes, keys, record_every, synapses, solver):
    def one(sp, key):
        return solver.run(rule, sp, neuron=neuron, key=key, record_every=record_every, synapses=synapses)

    return jax.vmap(one)(spikes, keys)


def simulate_stc(
    rule: LuboeinskiTetzlaff2021,
    protocols: Sequence[Protocol] | Sequence[Sequence[Protocol]],
    *,
    key: Key | None = None,
    neuron: LeakyIntegrateAndFire | None = None,
    record_every: float = 30_000.0,
    unit: float = 1.0,
    max_post_spikes: int = 64,
    hardware: BSS2 | None = None,
    progress: bool = False,
    solver: AbstractSTCSolver | None = None,
) -> STCSolution:
    """Simulate a batch of trials (one protocol each) with `solve_stc`, jit-compiled and vmapped.

    A trial given as a sequence of protocols, one per synapse, simulates several synapses onto
    one neuron sharing its protein pool (`solve_stc(synapses=True)`); every trial then needs the
    same number of synapses, and the synapses of a trial the same duration and postsynaptic spikes.
    `key`: noise key (keyword-only); trial i uses `fold_in(key, i)`; None for noise off.
    `neuron`: None (postsynaptic spikes from the protocols) or a `LeakyIntegrateAndFire`.
    `unit`: tick of the device time representation (ms). When a neuron fires more than
    `max_post_spikes` times in a trial, the batch is rerun with twice the room. The result
    has a leading trial axis. `hardware`: None, or a `BSS2` configuration to solve the
    plasticity on the emulated chip (`solve_stc_hardware`; its `period` a multiple of `unit`).
    `solver`: the solver of one trial, `STCEvents(max_post_spikes)` by default (with
    `hardware`: `STCHardware(hardware, max_post_spikes)`); `STCFine()` for the fine-step
    reference, or one of your own (`AbstractSTCSolver`); then leave `hardware` and
    `max_post_spikes` at their defaults.
    `progress`: run the trials in slices (about ten, at least 50 trials each: the solver
    vmaps them) with a progress bar on stderr once they take more than 2 s (same results:
    trial i keeps its key).
    """
    if solver is None:
        room = int(max_post_spikes)
        solver = STCEvents(max_post_spikes=room) if hardware is None else STCHardware(hardware, max_post_spikes=room)
    elif not isinstance(solver, AbstractSTCSolver):
        raise ValueError(f"simulate_stc: solver must be an AbstractSTCSolver (STCEvents(), STCFine(), STCHardware(...)), "
                         f"got {solver!r}")
    elif hardware is not None or max_post_spikes != 64:
        raise ValueError("simulate_stc: give either solver or hardware / max_post_spikes, not both "
                         "(e.g. solver=STCHardware(hardware, max_post_spikes=...))")
    given: list[Protocol | Sequence[Protocol]] = list(protocols)
    synapses = bool(given) and not isinstance(given[0], Protocol)
    # One list of protocols per trial: one protocol per synapse.
    trials = [[trial] if isinstance(trial, Protocol) else list(trial) for trial in given]
    every = [p for trial in trials for p in trial if isinstance(p, Protocol)]
    if every and np.isfinite(record_every) and record_every > 0:
        n_spikes = max(p.n_spikes for p in every)
        n_records = max(p.duration for p in every) / record_every + 1
        check_memory(stc_bytes(len(every), n_spikes, n_records),
                     f"simulate_stc ({len(every)} synapse trials of up to {n_spikes} spikes, {n_records:.0f} records)",
                     "use fewer or shorter trials, or a coarser record_every")
    if synapses:
        sizes = {len(trial) for trial in trials}
        if len(sizes) != 1 or 0 in sizes:
            raise ValueError(f"simulate_stc: every trial needs the same number (>= 1) of synapses (protocols); got {sorted(sizes)}")
        for i, trial in enumerate(trials):
            if any(p.duration != trial[0].duration or not np.array_equal(p.post, trial[0].post) for p in trial):
                raise ValueError(f"simulate_stc: the synapses of trial {i} must share the duration and the postsynaptic spikes")
        flat = to_spikes([p for trial in trials for p in trial], unit=unit)
        spikes = jax.tree.map(lambda x: x.reshape(len(trials), -1, *x.shape[1:]), flat)
    else:
        spikes = to_spikes([trial[0] for trial in trials], unit=unit)
    keys = None if key is None else jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(len(trials)))
    while True:
        solution = in_chunks(
            lambda part: _batched(rule, neuron, part[0], part[1], float(record_every), synapses, solver),
            (spikes, keys),
            label=f"stc ({len(trials)} trials)", progress=progress, min_size=50)
        room = solver.room
        if neuron is None or room is None or not np.any(np.asarray(solution.n_late)):
            return solution
        if room > 100 * spikes.pre_tick.shape[-1] + 1024:
            raise RuntimeError(f"simulate_stc: the neuron fires more than {room} times in a trial; check its parameters")
        solver = solver.with_room(2 * room + 1)
