"""The BSS-2 emulation as a solver of `ca_plast.solve`."""

import equinox as eqx

from .._custom_types import ArrayLike, Key
from .._spikes import Spikes
from ..rules._abstract import AbstractRule
from ..solvers._solution import Solution
from ..solvers._solver import AbstractSolver
from ._bss2 import BSS2, solve_hardware


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
