"""GB2012 rule: closed form against the authors' numbers, scan against closed form, gradients."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import central_difference

import ca_plast as cp

# Parameters whose gradients must exist: (where, name) with where "rule" or "calcium".
GRAD_PARAMS = [("rule", "theta_p"), ("rule", "theta_d"), ("calcium", "tau_ca"), ("calcium", "C_pre"),
               ("calcium", "C_post"), ("calcium", "D")]


def _get(rule, where, name):
    return getattr(rule.calcium if where == "calcium" else rule, name)


def _set(rule, where, name, value):
    return eqx.tree_at(lambda r: getattr(r.calcium if where == "calcium" else r, name), rule, value)


@pytest.mark.parametrize("dt, expected", [(10.0, 1.221), (-10.0, 0.882)])
def test_closed_form_dp_matches_authors(dt, expected):
    """Values of the model authors' own analytic code: DP, 60 pairs at 1 Hz."""
    rule = cp.gb2012_preset("DP")
    ratio = cp.closed_form_ratio(rule, cp.to_spikes(cp.pairs(dt, 60, 1.0)))
    assert abs(float(ratio) - expected) <= 0.003


def test_closed_form_time_above_for_isolated_pairs():
    """Pairs far apart: time above theta is n * sum of tau ln(peak / theta) over the transient's pieces."""
    rule = cp.gb2012_preset("DP")
    cal = rule.calcium
    tau, C_pre, C_post, D = (float(x) for x in (cal.tau_ca, cal.C_pre, cal.C_post, cal.D))
    dt = 30.0  # post 30 ms after pre, pre arrives at D = 13.7: pre transient first, then post
    gap = dt - D
    peak_post = C_post + C_pre * np.exp(-gap / tau)

    def above(theta):
        first = min(tau * np.log(C_pre / theta), gap) if C_pre > theta else 0.0
        return first + tau * np.log(peak_post / theta)

    t_p, t_d = cp.time_above_thresholds(rule, cp.to_spikes(cp.pairs(dt, 60, 1.0)))
    np.testing.assert_allclose([t_p, t_d], [60 * above(1.3), 60 * above(1.0)], rtol=1e-10)


def test_no_crossing_gives_ratio_one():
    rule = cp.gb2012_preset("DP")
    rule = eqx.tree_at(lambda r: (r.theta_p, r.theta_d), rule, (jnp.asarray(50.0), jnp.asarray(40.0)))
    spikes = cp.to_spikes(cp.pairs(10.0, 60, 1.0))
    ratio = cp.closed_form_ratio(rule, spikes)
    assert float(ratio) == 1.0
    grad = jax.grad(lambda r: cp.closed_form_ratio(r, spikes))(rule)
    assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grad))


@pytest.mark.parametrize("dt", [10.0, -20.0])
def test_stochastic_scan_matches_closed_form(dt, getkey):
    rule = cp.gb2012_preset("DP")
    protocol = cp.pairs(dt, 60, 1.0)
    ratio, sem = cp.scan_ratio(rule, cp.to_spikes(protocol, unit=0.1), 2000, key=getkey())
    expected = cp.closed_form_ratio(rule, cp.to_spikes(protocol))
    assert abs(float(ratio) - float(expected)) < 3 * float(sem), (ratio, sem, expected)


@pytest.mark.parametrize("where, name", GRAD_PARAMS)
def test_closed_form_gradients_match_finite_differences(where, name):
    rule = cp.gb2012_preset("DP")
    spikes = cp.to_spikes(cp.pairs(10.0, 60, 1.0))
    f = lambda v: cp.closed_form_ratio(_set(rule, where, name, v), spikes)  # noqa: E731
    x = _get(rule, where, name)
    grad = jax.grad(f)(x)
    fd = central_difference(f, x, 1e-6 * float(x))
    assert grad != 0
    np.testing.assert_allclose(grad, fd, rtol=1e-4)


def test_scan_time_above_gradients_match_finite_differences():
    """Gradients of the scan's deterministic time above theta_p + theta_d, all parameters at once."""
    rule = cp.gb2012_preset("DP")
    spikes = cp.to_spikes(cp.pairs(10.0, 10, 1.0), unit=0.1)

    def total(r):
        sol = cp.solve_scan(r, spikes, jnp.zeros(()))
        return sol.time_p + 2 * sol.time_d

    run = jax.jit(total)
    grads = jax.jit(jax.grad(total))(rule)
    for where, name in GRAD_PARAMS:
        x = _get(rule, where, name)
        fd = central_difference(lambda v: run(_set(rule, where, name, v)), x, 1e-6 * float(x))
        g = _get(grads, where, name)
        assert g != 0, name
        np.testing.assert_allclose(g, fd, rtol=1e-4, err_msg=name)


def test_scan_reverse_mode_memory_is_bounded():
    """Reverse mode through 60 s at 0.1 ms (600,000 steps) needs at most a few hundred MB."""
    rule = cp.gb2012_preset("DP")
    spikes = cp.to_spikes(cp.pairs(10.0, 60, 1.0), unit=0.1)
    grad = jax.jit(jax.grad(lambda r: jnp.mean(cp.solve_scan(r, spikes, jnp.zeros(100)).rho)))
    memory = grad.lower(rule).compile().memory_analysis()
    assert memory.temp_size_in_bytes < 300e6, memory








def test_stdp_ratios_methods_agree(getkey):
    rule = cp.gb2012_preset("DP")
    protocols = [cp.pairs(dt, 60, 1.0) for dt in (-20.0, 10.0)]
    closed, sem0 = cp.stdp_ratios(rule, protocols)
    scan, sem = cp.stdp_ratios(rule, protocols, method="scan", n_synapses=2000, key=getkey())
    assert np.all(sem0 == 0)
    assert np.all(np.abs(scan - closed) < 3 * sem)


@pytest.mark.parametrize(
    "change, match",
    [
        (dict(tau=0.0), "tau must be > 0"),
        (dict(tau=-5.0), "tau must be > 0"),
        (dict(theta_p=float("nan")), "theta_p must be finite"),
        (dict(sigma=-1.0), "sigma must be >= 0"),
        (dict(beta=1.5), r"beta must lie in \[0, 1\]"),
    ],
)
def test_rule_rejects_bad_values(change, match):
    base = dict(calcium=cp.LinearCalcium(C_pre=1.0, C_post=2.0, tau_ca=20.0, D=13.7), theta_p=1.3, theta_d=1.0,
                gamma_p=321.8, gamma_d=200.0, tau=150_000.0, sigma=2.83)
    with pytest.raises(ValueError, match=match):
        cp.GraupnerBrunel2012(**(base | change))


def test_unknown_preset_and_method():
    with pytest.raises(ValueError, match="unknown preset 'XYZ'; valid presets: DP"):
        cp.gb2012_preset("XYZ")
    with pytest.raises(ValueError, match="unknown method 'euler'"):
        cp.stdp_ratios(cp.gb2012_preset("DP"), [cp.pairs(10.0)], method="euler")
    with pytest.raises(ValueError, match="needs a key"):
        cp.stdp_ratios(cp.gb2012_preset("DP"), [cp.pairs(10.0)], method="scan")


def test_all_presets_load_in_ms():
    for name in cp.GB2012_PRESETS:
        rule = cp.gb2012_preset(name)
        assert 5.0 < float(rule.calcium.tau_ca) < 100.0  # ms, not s
        assert float(rule.tau) > 1000.0
        assert "CalciumBasedPlasticityModel" in cp.preset_source(name)
    dp = cp.gb2012_preset("DP")
    assert float(dp.calcium.D) == pytest.approx(13.7)
    assert float(dp.tau) == pytest.approx(150_000.0)


def test_noisy_scan_has_finite_threshold_gradients(getkey):
    """Steps without drive have zero noise variance; their sqrt must not poison gradients."""
    rule = cp.gb2012_preset("DP")
    spikes = cp.to_spikes(cp.pairs(10.0, 3, 5.0), unit=0.1)
    key = getkey()
    grads = jax.grad(lambda r: jnp.mean(cp.solve_scan(r, spikes, jnp.full(8, 0.5), key=key).rho))(rule)
    assert np.isfinite(grads.theta_p) and np.isfinite(grads.theta_d) and grads.theta_p != 0
