"""Calcium models: scan traces against closed-form sums of exponentials, validation."""

import jax.numpy as jnp
import numpy as np
import pytest

import ca_plast as cp


def _exact_linear(ts, pre, post, C_pre, C_post, tau, D):
    """c(t) = sum C_pre e^{-(t - t_pre - D)/tau} + sum C_post e^{-(t - t_post)/tau} over spikes before t.

    Recorded values are left limits: a spike exactly at a record time shows in the next record.
    """
    c = np.zeros_like(ts)
    for times, amp in ((pre + D, C_pre), (post, C_post)):
        for t_i in times:
            c += np.where(ts > t_i, amp * np.exp(-(ts - t_i) / tau), 0.0)
    return c


def _rule(calcium):
    return cp.GraupnerBrunel2012(calcium=calcium, theta_p=1.3, theta_d=1.0, gamma_p=321.808, gamma_d=200.0,
                                 tau=150_000.0, sigma=0.0)


@pytest.mark.parametrize("dt", [10.0, -23.37, 0.0])
def test_linear_scan_trace_equals_sum_of_exponentials(dt):
    calcium = cp.LinearCalcium(C_pre=1.0, C_post=2.0, tau_ca=20.0, D=13.7)
    protocol = cp.pairs(dt, n=5, freq=20.0)
    sol = cp.solve_scan(_rule(calcium), cp.to_spikes(protocol, unit=0.1), jnp.zeros(()), record_every=7)
    ts = np.asarray(sol.ts)
    exact = _exact_linear(ts, protocol.pre, protocol.post, 1.0, 2.0, 20.0, 13.7)
    np.testing.assert_allclose(np.asarray(sol.c), exact, rtol=1e-10, atol=1e-300)


def test_nonlinear_calcium_trace():
    """Post spike adds C_post + eta c_pre(t), eta = (nl - 1)(C_pre + C_post) / C_pre."""
    C_pre, C_post, tau, D, nl = 1.0, 2.0, 20.0, 5.0, 2.0
    eta = (nl - 1) * (C_pre + C_post) / C_pre
    calcium = cp.NonlinearCalcium(C_pre=C_pre, C_post=C_post, tau_ca=tau, D=D, nl=nl)
    protocol = cp.Protocol(pre=[0.0], post=[15.0], duration=100.0)
    sol = cp.solve_scan(_rule(calcium), cp.to_spikes(protocol, unit=0.1), jnp.zeros(()), record_every=10)
    ts = np.asarray(sol.ts)
    c_pre_at_post = C_pre * np.exp(-(15.0 - D) / tau)
    exact = np.where(ts > D, C_pre * np.exp(-(ts - D) / tau), 0.0) + np.where(
        ts > 15.0, (C_post + eta * c_pre_at_post) * np.exp(-(ts - 15.0) / tau), 0.0)
    np.testing.assert_allclose(np.asarray(sol.c), exact, rtol=1e-10, atol=1e-300)


def test_nonlinear_with_nl_one_is_linear():
    linear = cp.LinearCalcium(C_pre=1.0, C_post=2.0, tau_ca=20.0, D=5.0)
    nonlinear = cp.NonlinearCalcium(C_pre=1.0, C_post=2.0, tau_ca=20.0, D=5.0, nl=1.0)
    spikes = cp.to_spikes(cp.pairs(10.0, n=3, freq=10.0), unit=0.1)
    a = cp.solve_scan(_rule(linear), spikes, jnp.zeros(()), record_every=5).c
    b = cp.solve_scan(_rule(nonlinear), spikes, jnp.zeros(()), record_every=5).c
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-12)


@pytest.mark.parametrize("gap, extra", [(0.05, 2.0), (0.0, 2.0), (3.0, 0.0)])
def test_coincidence_calcium(gap, extra):
    """Sketch model: pre +0.5, post +1.0, +2.0 more when the two fall within one 0.1 ms window."""
    calcium = cp.CoincidenceCalcium()
    protocol = cp.Protocol(pre=[10.0], post=[10.0 + gap], duration=200.0)
    sol = cp.solve_scan(_rule(calcium), cp.to_spikes(protocol, unit=0.1), jnp.zeros(()), record_every=10)
    ts = np.asarray(sol.ts)
    exact = (np.where(ts > 10.0, 0.5 * np.exp(-(ts - 10.0) / 50.0), 0.0)
             + np.where(ts > 10.0 + gap, (1.0 + extra) * np.exp(-(ts - 10.0 - gap) / 50.0), 0.0))
    np.testing.assert_allclose(np.asarray(sol.c), exact, rtol=1e-10, atol=1e-300)


def test_time_above_closed_form():
    c0, theta, tau = 2.0, 1.3, 20.0
    assert np.isclose(cp.time_above(c0, theta, tau, 1e9), tau * np.log(c0 / theta))
    assert cp.time_above(c0, theta, tau, 3.0) == 3.0
    assert cp.time_above(1.0, theta, tau, 100.0) == 0.0
    assert cp.time_above(0.0, theta, tau, 100.0) == 0.0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(tau_ca=0.0), "tau_ca must be > 0"),
        (dict(tau_ca=-20.0), "tau_ca must be > 0"),
        (dict(D=-1.0), "D must be >= 0"),
        (dict(C_pre=float("nan")), "C_pre must be finite"),
    ],
)
def test_calcium_rejects_bad_values(kwargs, match):
    params = dict(C_pre=1.0, C_post=2.0, tau_ca=20.0, D=13.7) | kwargs
    with pytest.raises(ValueError, match=match):
        cp.LinearCalcium(**params)
