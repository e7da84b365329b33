"""The BSS-2 emulation as solvers: of `ca_plast.solve` (any early-phase rule) and of
`ca_plast.simulate_stc` (tagging and capture)."""

from collections.abc import Sequence

import equinox as eqx
import numpy as np

from .._custom_types import ArrayLike, Key
from .._lif import LeakyIntegrateAndFire
from .._protocols import Protocol
from .._spikes import Spikes
from ..rules._abstract import AbstractRule
from ..rules._lt2021 import LuboeinskiTetzlaff2021
from ..solvers._solution import Solution
from ..solvers._solver import AbstractSolver
from ..solvers._stc import AbstractSTCSolver, STCSolution
from ._bss2 import BSS2, hardware_ratios, solve_hardware
from ._stc import BSS2_STC, solve_stc_hardware


class Hardware(AbstractSolver):
    """The emulated chip (`solve_hardware`): the analog side exact, every `config.period` ms one
    fixed-point update of the plasticity processor, for any rule. Records are taken at update
    times: `record_every` must be a whole number of periods. Needs a key (noise, rounding)."""

    config: BSS2 = eqx.field(default=BSS2())

    def run(self, rule: AbstractRule, spikes: Spikes, rho0: ArrayLike, *, key: Key | None,
            record_every: int | None) -> Solution:
        if key is None:
            raise ValueError("solve: the Hardware solver needs a key (the rule's noise and random rounding)")
        periods = None
        if record_every is not None:
            m = self.config.steps_per_period(spikes.unit)
            if record_every % m:
                raise ValueError(f"solve: record_every must be a whole number of the Hardware update period "
                                 f"({self.config.period} ms), got {record_every * spikes.unit} ms")
            periods = record_every // m
        return solve_hardware(rule, spikes, rho0, hardware=self.config, key=key, record_every=periods)

    def population_ratios(self, rule: AbstractRule, protocols: Sequence[Protocol], *, n_synapses: int, key: Key,
                          step: float, progress: bool) -> tuple[np.ndarray, np.ndarray]:
        """`hardware_ratios`: the emulated populations, read out on the state format's grid."""
        return hardware_ratios(rule, protocols, self.config, n_synapses=n_synapses, key=key, step=step,
                               progress=progress)


class STCHardware(AbstractSTCSolver):
    """Tagging and capture on the emulated chip (`solve_stc_hardware`): the analog side exact,
    (h, p, z) in the plasticity processor's fixed point every `config.period` ms;
    `max_post_spikes` as in `STCEvents`."""

    config: BSS2 = eqx.field(default=BSS2_STC)
    max_post_spikes: int = eqx.field(static=True, default=64)

    def run(self, rule: LuboeinskiTetzlaff2021, spikes: Spikes, *, neuron: LeakyIntegrateAndFire | None,
            key: Key | None, record_every: float, synapses: bool) -> STCSolution:
        return solve_stc_hardware(rule, spikes, hardware=self.config, neuron=neuron, key=key, record_every=record_every,
                                  max_post_spikes=self.max_post_spikes, synapses=synapses)

    @property
    def room(self) -> int:
        return self.max_post_spikes

    def with_room(self, room: int) -> "STCHardware":
        return STCHardware(config=self.config, max_post_spikes=room)
