"""Shouval, Bear & Cooper 2002, added through the rule interface alone: its published functions and
time constant, an ODE reference, every solver that applies, the BSS-2 emulation, finite
differences and a fit to shipped data."""

import dataclasses
import json

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import solve_ivp

import ca_plast as cp
from ca_plast import fitting

TAU_CA = 50.0
CALCIUM = cp.LinearCalcium(C_pre=0.25, C_post=0.6, tau_ca=TAU_CA, D=5.0)
RULE = cp.Shouval2002(calcium=CALCIUM)


def _omega(c):
    """The paper's Omega, written out: 0.25 + sig(c - 0.55) - 0.25 sig(c - 0.35), slopes 80 / uM."""
    sig = lambda x: 1 / (1 + np.exp(-80 * x))  # noqa: E731
    return 0.25 + sig(c - 0.55) - 0.25 * sig(c - 0.35)


def _eta(c):
    """The paper's eta per ms: 1 / (0.1 s / (1e-5 + c^3) + 1 s)."""
    return 1 / ((0.1 / (1e-5 + c**3) + 1.0) * 1000.0)


def test_published_functions_and_resting_time_constant():
    c = np.linspace(0.0, 2.0, 201)
    np.testing.assert_allclose(np.asarray(RULE.omega(jnp.asarray(c))), _omega(c), rtol=1e-12)
    np.testing.assert_allclose(np.asarray(RULE.eta(jnp.asarray(c))), _eta(c), rtol=1e-12)
    # Without calcium the weight rests at 0.25 and returns to it with tau(0) = 10,001 s (the paper's "about 3 h").
    assert abs(float(RULE.omega(jnp.asarray(0.0))) - 0.25) < 1e-9
    assert float(1 / RULE.eta(jnp.asarray(0.0))) == pytest.approx(10_001_000.0, rel=1e-12)
    T = 3_600_000.0  # one silent hour from w = 1, exact in both solvers (calcium stays at 0)
    rest = _omega(0.0)  # 0.25 - 1.7e-13
    expected = rest + (1 - rest) * np.exp(-T * _eta(0.0))
    spikes = cp.to_spikes(cp.Protocol(pre=[], post=[], duration=T), unit=10.0)
    assert float(cp.solve_events(RULE, spikes, jnp.ones(1)).rho[0]) == pytest.approx(expected, abs=1e-15)
    # the time-stepped solver composes 3600 steps of 1 s: rounding only
    assert float(cp.solve_scan(RULE, spikes, jnp.ones(1)).rho[0]) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("c0, s", [(1.2, 50.0), (0.5, 1000.0), (3.0, 7.0), (0.45, 200.0)])
def test_drive_matches_an_ode_reference(c0, s):
    """The piecewise map of one interval of free decay against an adaptive ODE solve of the published equation."""
    def rhs(t, w):
        c = c0 * np.exp(-t / TAU_CA)
        return _eta(c) * (_omega(c) - w)

    for w0 in (0.0, 1.0):
        reference = solve_ivp(rhs, (0.0, s), [w0], method="DOP853", rtol=1e-12, atol=1e-14).y[0, -1]
        assert float(RULE.drive(jnp.asarray(c0), jnp.asarray(s))(jnp.asarray(w0))) == pytest.approx(reference, abs=2e-6)


def test_default_quadrature_of_the_rates():
    """`AbstractRule.integrals` (16-point Gauss-Legendre, for rules without exact integrals) against scipy's quad."""
    from scipy.integrate import quad

    c0, s = 0.3, 40.0  # calcium 0.3 -> 0.13 uM: eta and Omega smooth there
    eta, eta_omega = cp.AbstractRule.integrals(RULE, jnp.asarray(c0), jnp.asarray(s))
    c = lambda t: c0 * np.exp(-t / TAU_CA)  # noqa: E731
    assert float(eta) == pytest.approx(quad(lambda t: _eta(c(t)), 0, s, epsabs=0, epsrel=1e-13)[0], rel=1e-10)
    assert float(eta_omega) == pytest.approx(quad(lambda t: _eta(c(t)) * _omega(c(t)), 0, s, epsabs=0, epsrel=1e-13)[0],
                                             rel=1e-10)


def test_rate_dependence_ltd_then_ltp():
    """100 presynaptic spikes: no change at 1 Hz, depression at 20 Hz, potentiation at 100 Hz (the rule's BCM shape)."""
    def ratio(freq):
        protocol = cp.Protocol(pre=np.arange(100) * 1000.0 / freq, post=[], duration=100_000.0 / freq + 100.0)
        return float(cp.solve_events(RULE, cp.to_spikes(protocol), jnp.full(1, 0.25)).rho[0]) / 0.25

    low, middle, high = ratio(1.0), ratio(20.0), ratio(100.0)
    print("1 Hz", low, "20 Hz", middle, "100 Hz", high)
    assert abs(low - 1) < 0.01 and middle < 0.95 and high > 1.2


def test_every_solver_and_the_hardware_agree():
    protocols = [cp.pairs(dt, 20, 1.0) for dt in (-20.0, 10.0)]
    key = jax.random.key(0)
    events, _ = cp.stdp_ratios(RULE, protocols, method="events", n_synapses=1, key=key)
    scan, _ = cp.stdp_ratios(RULE, protocols, method="scan", n_synapses=1, key=key)
    np.testing.assert_allclose(events, scan, rtol=1e-4)
    print("events", events, "scan", scan)
    assert events[0] < 0.995 and events[1] > 1.1  # depression for post-pre, potentiation for pre-post
    configs = [cp.BSS2(state=None), cp.BSS2(state=cp.FixedPoint(16, 15)), cp.BSS2()]
    hardware, _ = cp.hardware_ratios(RULE, protocols, configs, n_synapses=8, key=key)
    np.testing.assert_allclose(hardware[0], scan, rtol=1e-10)  # float emulation: the scan solver's scheme
    assert np.max(np.abs(hardware[1] - scan)) < 0.01  # 16-bit PPU
    assert np.max(np.abs(hardware[2] - scan)) < 0.1  # 8-bit PPU, stochastic rounding (8 synapses)


def test_gradients_match_finite_differences():
    spikes = cp.to_spikes(cp.pairs(10.0, 5, 2.0))

    def weight(values):
        rule = eqx.tree_at(lambda r: (r.calcium.C_post, r.alpha_p, r.calcium.tau_ca), RULE, tuple(values))
        return cp.solve_events(rule, spikes, jnp.full(1, 0.25)).rho[0]

    values = jnp.array([0.6, 0.55, TAU_CA])
    value_and_grad = jax.jit(jax.value_and_grad(weight))
    grad = np.asarray(value_and_grad(values)[1])
    for i in range(3):
        h = 1e-5 * float(values[i])
        step = jnp.zeros(3).at[i].set(h)
        fd = (float(value_and_grad(values + step)[0]) - float(value_and_grad(values - step)[0])) / (2 * h)
        assert grad[i] != 0 and abs(grad[i] - fd) < 1e-4 * abs(fd)


def test_fit_to_shipped_data_is_checked_in_the_model(tmp_path):
    dataset = fitting.load_dataset("sjostrom2001")
    start = cp.Shouval2002(calcium=cp.LinearCalcium(C_pre=0.4, C_post=0.6, tau_ca=20.0, D=5.0), n_pieces=32)
    result = fitting.fit(dataset, start, ["C_pre", "C_post"], method="events", n_starts=1, steps=40,
                         bounds={"C_pre": (0.05, 2.0), "C_post": (0.05, 2.0)})
    print("mean z^2", result.chi2_initial, "->", result.chi2_mean, result.params)
    assert result.chi2_mean < result.chi2_initial / 10
    # The reported prediction is the model's: the time-stepped solver, with the default 128 pieces per
    # interval instead of the fit's 32, gives the same ratios (within the 32 pieces' quadrature error).
    fine = dataclasses.replace(result.model, n_pieces=128)
    scan, _ = cp.stdp_ratios(fine, dataset.protocols, method="scan", n_synapses=1, key=jax.random.key(0), step=1.0)
    np.testing.assert_allclose(result.prediction, scan, rtol=2e-3)
    # The report of a rule other than GB2012: its method named, the published GB2012 set scored
    # by GB2012's own model (density solver), the simulated check equal to the noise-free prediction.
    fitting.write_report(result, tmp_path, check_synapses=2000)
    record = json.loads((tmp_path / "fit.json").read_text())
    assert "noise off" in record["method"] and record["reference"]["method"] == "density"
    published = fitting._losses.checked_prediction(cp.gb2012_preset("cortical_slices"), dataset.spikes(), "density")
    assert record["reference"]["chi2_mean"] == pytest.approx(float(fitting.chi2(published, dataset.data, dataset.sem)))
    check = record["simulated_check"]
    np.testing.assert_allclose(check["prediction"], result.prediction, rtol=1e-12)
    assert check["agreement"]["within_3_se"] and (tmp_path / "fit.png").stat().st_size > 10_000
