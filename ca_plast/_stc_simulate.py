"""Batches of STC trials: `simulate_stc` runs `solve_stc` (or, on the emulated chip,
`solve_stc_hardware`) over many protocols at once, jit-compiled and vmapped."""

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
from .hardware._stc import solve_stc_hardware
from .rules._lt2021 import LuboeinskiTetzlaff2021
from .solvers._stc import STCSolution, solve_stc


@eqx.filter_jit
def _batched(rule, neuron, spikes, keys, record_every, max_post_spikes, synapses, hardware=None):
    def one(sp, key):
        kwargs = dict(neuron=neuron, key=key, record_every=record_every, max_post_spikes=max_post_spikes, synapses=synapses)
        if hardware is None:
            return solve_stc(rule, sp, **kwargs)
        return solve_stc_hardware(rule, sp, hardware=hardware, **kwargs)

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
    `progress`: run the trials in slices (about ten, at least 50 trials each: the solver
    vmaps them) with a progress bar on stderr once they take more than 2 s (same results:
    trial i keeps its key).
    """
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
    room = int(max_post_spikes)
    while True:
        solution = in_chunks(
            lambda part: _batched(rule, neuron, part[0], part[1], float(record_every), room, synapses, hardware),
            (spikes, keys),
            label=f"stc ({len(trials)} trials)", progress=progress, min_size=50)
        if neuron is None or not np.any(np.asarray(solution.n_late)):
            return solution
        if room > 100 * spikes.pre_tick.shape[-1] + 1024:
            raise RuntimeError(f"simulate_stc: the neuron fires more than {room} times in a trial; check its parameters")
        room = 2 * room + 1
