"""`solve` with solver objects: the same numbers as the solver functions, records in ms for every
solver (checked against a second solver), and one-line errors for what does not fit."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import tree_allclose

import ca_plast as cp

DP = cp.gb2012_preset("DP")
QUIET = dataclasses.replace(DP, sigma=0.0)
SPIKES = cp.to_spikes(cp.pairs(10.0, 6, 2.0), unit=0.1)
RHO0 = jnp.array([0.0, 0.4, 0.6, 1.0])


@pytest.mark.parametrize("solver, direct", [
    (cp.Events(drive_steps=2), lambda k: cp.solve_events(DP, SPIKES, RHO0, key=k, drive_steps=2)),
    (cp.Scan(chunk=50), lambda k: cp.solve_scan(DP, SPIKES, RHO0, key=k, chunk=50)),
    (cp.Hardware(cp.BSS2(period=5.0)), lambda k: cp.solve_hardware(DP, SPIKES, RHO0, hardware=cp.BSS2(period=5.0), key=k)),
], ids=["events", "scan", "hardware"])
def test_solve_is_the_solver_function(solver, direct):
    key = jax.random.key(3)
    assert tree_allclose(cp.solve(DP, SPIKES, RHO0, solver, key=key), direct(key), rtol=0, atol=0)


def test_records_in_ms_agree_between_solvers():
    """Noise off, records every 25 ms: the event solver's records (record times split its
    intervals) against the scan solver stepped on the same 25 ms grid, and against the event
    solver without records at the end."""
    events = cp.solve(QUIET, SPIKES, RHO0, cp.Events(), record_every=25.0)
    scan = cp.solve(QUIET, SPIKES, RHO0, cp.Scan(), record_every=25.0)
    plain = cp.solve(QUIET, SPIKES, RHO0, cp.Events())
    assert events.ts is not None and scan.ts is not None and events.rho_trace is not None and scan.rho_trace is not None
    np.testing.assert_allclose(events.ts, scan.ts, rtol=0, atol=1e-9)
    assert float(events.ts[-1]) == pytest.approx(SPIKES.end_tick * 0.1 + float(SPIKES.end_offset))
    np.testing.assert_allclose(events.c, scan.c, rtol=1e-12, atol=1e-12)  # calcium is exact in both
    np.testing.assert_allclose(events.rho_trace, scan.rho_trace, rtol=0, atol=2e-6)
    np.testing.assert_allclose(events.rho_trace[-1], events.rho, rtol=0, atol=0)
    # Splitting at the record times changes only the cubic drift's splitting error (~1e-8 per pairing).
    np.testing.assert_allclose(events.rho, plain.rho, rtol=0, atol=1e-7)
    assert np.ptp(np.asarray(events.rho_trace[:, 1])) > 1e-3  # the records follow a moving rho


def test_hardware_records_at_update_times():
    chip = cp.Hardware(cp.BSS2(period=5.0))
    solution = cp.solve(DP, SPIKES, RHO0, chip, key=jax.random.key(0), record_every=20.0)
    direct = cp.solve_hardware(DP, SPIKES, RHO0, hardware=chip.config, key=jax.random.key(0), record_every=4)
    assert tree_allclose(solution, direct, rtol=0, atol=0)


@pytest.mark.parametrize("call, message", [
    (lambda: cp.solve(DP, SPIKES, RHO0, cp.Events(), record_every=0.05), "record_every must be a whole number >= 1 of 0.1 ms steps"),
    (lambda: cp.solve(DP, SPIKES, RHO0, cp.Events(), record_every=-1.0), "record_every must be a whole number"),
    (lambda: cp.solve(DP, SPIKES, RHO0, cp.Hardware(cp.BSS2(period=10.0)), key=jax.random.key(0), record_every=15.0),
     "whole number of the Hardware update period"),
    (lambda: cp.solve(DP, SPIKES, RHO0, cp.Hardware()), "needs a key"),
    (lambda: cp.solve(DP, SPIKES, RHO0, "events"), "solver must be an AbstractSolver"),  # type: ignore[arg-type]
])
def test_bad_input_raises_value_error_naming_it(call, message):
    with pytest.raises(ValueError, match=message):
        call()


PROTOCOLS = [cp.pairs(10.0, 30, 20.0), cp.pairs(-10.0, 100, 10.0)]  # ratios 1.20, 0.89 (closed form)


@pytest.mark.parametrize("obj, name, extra", [
    (cp.ClosedForm(), "closed-form", {}),
    (cp.Density(cp.DensityGrid(cells_per_unit=40)), "density", {"grid": cp.DensityGrid(cells_per_unit=40)}),
    (cp.Events(), "events", {}),
    (cp.Scan(), "scan", {}),
    (cp.Hardware(cp.BSS2(period=5.0)), "scan", {"hardware": cp.BSS2(period=5.0)}),
], ids=["closed-form", "density", "events", "scan", "hardware"])
def test_stdp_ratios_takes_the_object_a_method_names(obj, name, extra):
    run = dict(n_synapses=40, key=jax.random.key(4), step=0.5)
    by_object = cp.stdp_ratios(DP, PROTOCOLS, method=obj, **run)
    by_name = cp.stdp_ratios(DP, PROTOCOLS, method=name, **run, **extra)
    np.testing.assert_array_equal(by_object[0], by_name[0])
    np.testing.assert_array_equal(by_object[1], by_name[1])
    assert np.all(np.abs(by_object[0] - 1) > 0.03)  # the protocols change the weights


class _Halved(cp.Events):
    """A solver of one's own: the event solver at half the rule's noise."""

    def run(self, rule, spikes, rho0, *, key, record_every):
        return super().run(dataclasses.replace(rule, sigma=rule.sigma / 2), spikes, rho0, key=key,
                           record_every=record_every)


def test_stdp_ratios_simulates_with_a_solver_of_ones_own():
    """Its population, keys and readout come from `AbstractSolver`: the same numbers as the event
    solver on the rule with half the noise."""
    run = dict(n_synapses=40, key=jax.random.key(5), step=0.5)
    own = cp.stdp_ratios(DP, PROTOCOLS, method=_Halved(), **run)
    halved = cp.stdp_ratios(dataclasses.replace(DP, sigma=DP.sigma / 2), PROTOCOLS, method="events", **run)
    np.testing.assert_array_equal(own[0], halved[0])
    np.testing.assert_array_equal(own[1], halved[1])
    assert not np.array_equal(own[0], cp.stdp_ratios(DP, PROTOCOLS, method="events", **run)[0])


def test_stdp_ratios_refuses_an_object_with_hardware_or_grid():
    with pytest.raises(ValueError, match="leave hardware and grid out"):
        cp.stdp_ratios(DP, PROTOCOLS, method=cp.Events(), hardware=cp.BSS2(), key=jax.random.key(0))
    with pytest.raises(ValueError, match="valid methods"):
        cp.stdp_ratios(DP, PROTOCOLS, method="euler")
