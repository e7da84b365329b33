"""Every rule with every calcium model and every solver that applies to it, in one suite (a registry,
as diffrax's tests have): jit equals eager, vmap over protocols equals a loop (padding changes
nothing), vmap over parameter sets equals a loop, and the same key gives the same result; for the
early phase (GB2012, Shouval 2002) and for tagging and capture (Luboeinski & Tetzlaff 2021).
The emulation's float configuration is the scan solver's scheme (tests/test_hardware.py,
tests/test_shouval2002.py); the 8-bit one here runs with mismatch and read noise."""

import dataclasses
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ca_plast as cp

DP = cp.gb2012_preset("DP")

CALCIUM = {
    "linear": cp.LinearCalcium(C_pre=1.0, C_post=2.0, tau_ca=20.0, D=13.7),
    "nonlinear": cp.NonlinearCalcium(C_pre=1.0, C_post=2.0, tau_ca=20.0, D=5.0, nl=2.0),
    "coincidence": cp.CoincidenceCalcium(window=1.0),
}

RULES: dict[str, Callable[[cp.AbstractCalcium], eqx.Module]] = {
    "gb2012": lambda calcium: dataclasses.replace(DP, calcium=calcium),
    "shouval2002": lambda calcium: cp.Shouval2002(calcium=calcium, n_pieces=16),
    "lt2021": lambda calcium: dataclasses.replace(cp.luboeinski_tetzlaff2021(), calcium=calcium),
}
PARAMETER = {"gb2012": "theta_p", "shouval2002": "alpha_p", "lt2021": "theta_p"}  # varied across the batch
EARLY = ("gb2012", "shouval2002")  # early-phase rules (AbstractRule); lt2021 is tagging and capture


@dataclasses.dataclass(frozen=True)
class Solver:
    """How to run one protocol: `run(rule, spikes, key)` -> final state (efficacies, a ratio, or
    (h, p, z)); which rules it takes; whether it has noise."""

    run: Callable
    rules: tuple[str, ...] = EARLY
    stochastic: bool = True


def _w0(rule):
    return rule.initial_population(4, jnp.float64)


def _final(solution):
    return jnp.stack([solution.state.h, solution.state.p, solution.state.z])


BSS2_8BIT = dict(mismatch_tau_ca=0.1, mismatch_amplitude=0.1, read_noise=0.5)
STC = dict(record_every=50.0, neuron=None, synapses=False)  # 50 ms: whole 25-step tiles of the fine solver at 0.5 ms

SOLVERS = {
    "events": Solver(lambda r, s, k: cp.solve(r, s, _w0(r), cp.Events(), key=k).rho),
    "scan": Solver(lambda r, s, k: cp.solve(r, s, _w0(r), cp.Scan(chunk=4), key=k).rho),
    "hardware-8bit": Solver(lambda r, s, k: cp.solve(r, s, _w0(r), cp.Hardware(cp.BSS2(period=1.0, **BSS2_8BIT)), key=k).rho),
    "closed-form": Solver(lambda r, s, k: cp.closed_form_ratio(r, s), rules=("gb2012",), stochastic=False),
    "density": Solver(lambda r, s, k: cp.density_ratio(r, s, cp.DensityGrid(cells_per_unit=40)), rules=("gb2012",),
                      stochastic=False),
    "stc": Solver(lambda r, s, k: _final(cp.STCEvents().run(r, s, key=k, **STC)), rules=("lt2021",)),
    "stc-fine": Solver(lambda r, s, k: _final(cp.STCFine().run(r, s, key=k, **STC)), rules=("lt2021",)),
    "stc-hardware-8bit": Solver(lambda r, s, k: _final(cp.STCHardware(
        cp.BSS2(state=cp.FixedPoint(8, 7), period=1.0, **BSS2_8BIT)).run(r, s, key=k, **STC)), rules=("lt2021",)),
}

PROTOCOLS = [cp.pairs(10.0, 3, 10.0), cp.burst(-10.0, 2, 10.0)]
CASES = [(rule, calcium, solver) for solver, spec in SOLVERS.items() for rule in spec.rules for calcium in CALCIUM]


@pytest.mark.parametrize("rule_name, calcium_name, solver_name", CASES)
def test_solver_contract(rule_name, calcium_name, solver_name):
    """One jitted, vmapped program over a batch that varies the protocol (padded to the longest), a
    parameter and the key, against eager runs of each protocol alone (unpadded): vmap == loop,
    jit == eager and padding changes nothing in one comparison; then keys."""
    rule = RULES[rule_name](CALCIUM[calcium_name])
    solver = SOLVERS[solver_name]
    name = PARAMETER[rule_name]
    values = jnp.array([1.0, 1.1]) * getattr(rule, name)

    def run(value, spikes, key):
        return solver.run(eqx.tree_at(lambda r: getattr(r, name), rule, value), spikes, key)

    batched = eqx.filter_jit(jax.vmap(run))
    keys = jax.random.split(jax.random.key(7), len(PROTOCOLS))
    batch = cp.to_spikes(PROTOCOLS, unit=0.5)
    result = batched(values, batch, keys)
    for i, protocol in enumerate(PROTOCOLS):
        eager = run(values[i], cp.to_spikes(protocol, unit=0.5), keys[i])
        np.testing.assert_allclose(result[i], eager, rtol=1e-12, atol=1e-14)
    assert np.array_equal(batched(values, batch, keys), result)  # same key, same result
    if solver.stochastic and rule_name != "shouval2002":  # GB2012 and LT2021 have noise: another key, another result
        other = batched(values, batch, jax.random.split(jax.random.key(8), len(PROTOCOLS)))
        assert not np.array_equal(other[0], result[0])
    if solver.stochastic and rule_name == "gb2012":
        assert np.std(np.asarray(result[0][:4])) > 0  # synapses of one initial state get independent noise
