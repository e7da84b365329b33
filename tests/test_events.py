"""Event-driven solver: against the scan solver, an independent ODE reference, the closed form,
finite differences; jit/vmap/key behaviour; bad input."""

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import tree_allclose
from references import drive_pieces, gaussian_law
from scipy.integrate import solve_ivp
from scipy.stats import ks_2samp, kstest, norm

import ca_plast as cp
from ca_plast._cli import main

RHO0 = jnp.array([0.0, 0.2, 0.45, 0.55, 0.8, 1.0])

# Short versions of the protocol families (at most 2 s, so that a 0.01 ms scan stays affordable).
DETERMINISTIC_PROTOCOLS = [
    cp.pairs(10.0, n=2, freq=1.0),
    cp.pairs(-10.0, n=2, freq=1.0),
    cp.burst(10.0, n=4, freq=5.0),  # Wittenberg & Wang 2006: 2 post APs 11.5 ms apart
    cp.burst(10.0, n=2, freq=1.0, n_post=3, interval=20.0, reference="first"),  # Nevian & Sakmann 2006
    cp.triplet("pre-post-pre", 5.0, -5.0, n=2),
    cp.triplet("post-pre-post", -5.0, 5.0, n=2),
    cp.trains(10.0, 20.0, pairs_per_train=5, n_trains=2, train_period=1000.0),  # Sjostrom 2001
    cp.trains(-10.0, 40.0, pairs_per_train=5, n_trains=2, train_period=1000.0),
]


# Jitted solvers shared by the tests, so that equal shapes share one compilation.
solve = eqx.filter_jit(cp.solve_events)


@eqx.filter_jit
def solve_batch(rule, spikes, rho0, keys):
    """Final rho for a batch of protocols (padded spikes), one noise key each."""
    return jax.vmap(lambda s, k: cp.solve_events(rule, s, rho0, key=k).rho)(spikes, keys)


def _unbatch(spikes, i):
    return jax.tree.map(lambda x: x[i], spikes)


def test_deterministic_matches_scan_at_fine_step():
    """Noise off: pairs, bursts, triplets, Sjostrom trains vs the scan solver at 0.01 ms."""
    rule = cp.gb2012_preset("DP")
    spikes = cp.to_spikes(DETERMINISTIC_PROTOCOLS, unit=0.01)
    scan = eqx.filter_jit(jax.vmap(lambda s: cp.solve_scan(rule, s, RHO0).rho))(spikes)
    events = jax.vmap(lambda s: solve(rule, s, RHO0).rho)(spikes)
    diff = np.abs(np.asarray(events) - np.asarray(scan))
    print("max |rho_events - rho_scan| per protocol:", diff.max(axis=1))
    assert diff.max() < 1e-4
    # The protocols do move rho: the comparison is not between two unchanged states.
    assert np.abs(np.asarray(scan) - np.asarray(RHO0)[None]).max() > 1e-2


@pytest.mark.parametrize(
    "calcium, protocol",
    [
        (cp.NonlinearCalcium(C_pre=1.0, C_post=2.0, tau_ca=20.0, D=13.7), cp.pairs(10.0, n=2)),
        (cp.CoincidenceCalcium(), cp.pairs(0.05, n=2)),  # post 0.05 ms after pre: coincidence bonus
    ],
    ids=["nonlinear", "coincidence"],
)
def test_other_calcium_models_match_scan(calcium, protocol):
    rule = eqx.tree_at(lambda r: r.calcium, cp.gb2012_preset("DP"), calcium)
    spikes = cp.to_spikes(protocol, unit=0.01)
    scan = eqx.filter_jit(cp.solve_scan)(rule, spikes, RHO0)
    events = solve(rule, spikes, RHO0)
    np.testing.assert_allclose(events.rho, scan.rho, atol=1e-4, rtol=0)
    assert tree_allclose(events.calcium, scan.calcium, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose([events.time_p, events.time_d], [scan.time_p, scan.time_d], rtol=1e-9)
    if isinstance(calcium, cp.CoincidenceCalcium):  # the bonus acted: c = 0.5 e^{-0.05/50} + 1 + 2 after each post spike
        np.testing.assert_allclose(events.time_d, 2 * 50.0 * np.log(0.5 * np.exp(-0.05 / 50.0) + 3.0), rtol=1e-9)


def _ode_reference(rule, protocol, rho0):
    """Noise-free reference: scipy DOP853 (rtol 1e-12) on each piece of constant drive."""
    gamma_p, gamma_d, tau, rho_star = (float(x) for x in (rule.gamma_p, rule.gamma_d, rule.tau, rule.rho_star))
    rho = np.array(rho0, float)
    for length, h_p, h_d in drive_pieces(rule, protocol):

        def f(_, r, h_p=h_p, h_d=h_d):
            return (-r * (1 - r) * (rho_star - r) + gamma_p * (1 - r) * h_p - gamma_d * r * h_d) / tau

        rho = solve_ivp(f, (0.0, length), rho, method="DOP853", rtol=1e-12, atol=1e-14).y[:, -1]
    return rho


def test_deterministic_matches_ode_reference():
    """The splitting error is far below the acceptance tolerance and converges as 1 / drive_steps^2."""
    rule = cp.gb2012_preset("DP")
    protocols = [cp.pairs(10.0, n=3), cp.burst(-10.0, n=3, freq=5.0)]
    spikes = cp.to_spikes(protocols)
    reference = np.stack([_ode_reference(rule, p, RHO0) for p in protocols])
    errors = [
        np.abs(np.asarray(jax.vmap(lambda s, m=m: solve(rule, s, RHO0, drive_steps=m).rho)(spikes)) - reference).max()
        for m in (1, 4)
    ]
    print("max error vs ODE reference (drive_steps 1, 4):", errors)
    assert errors[0] < 1e-6
    assert errors[1] < errors[0] / 8


class _DrivenTail(cp.GraupnerBrunel2012):
    """GB2012 declared as driven below its thresholds: the event solver then takes its (identity) drive in every tail."""

    DRIVEN_BELOW_THRESHOLDS = True


def test_skipping_the_tail_drive_of_gb2012_changes_nothing():
    """GB2012's drive below both thresholds is the identity (with the tail's start clamped to the
    lower threshold): taking it or skipping it gives the same rho, noise off."""
    dp = cp.gb2012_preset("DP")
    driven = _DrivenTail(**{field.name: getattr(dp, field.name) for field in dataclasses.fields(dp)})
    quiet = {"sigma": 0.0}
    spikes = cp.to_spikes(DETERMINISTIC_PROTOCOLS[6], unit=0.1)
    plain = cp.solve_events(dataclasses.replace(dp, **quiet), spikes, RHO0).rho
    taken = cp.solve_events(dataclasses.replace(driven, **quiet), spikes, RHO0).rho
    np.testing.assert_allclose(taken, plain, rtol=0, atol=1e-14)


def test_long_silent_gaps():
    """Gaps of 10 s and 60 s where the cubic acts alone (RK4 tail) vs the ODE reference, for
    tau = 150 s (DP) and 33.76 s (the shortest preset tau)."""
    protocols = [cp.Protocol(pre=[0.0, gap], post=[10.0, gap + 10.0], duration=2 * gap) for gap in (10_000.0, 60_000.0)]
    spikes = cp.to_spikes(protocols)
    for tau in (150_000.0, 33_760.0):
        rule = eqx.tree_at(lambda r: r.tau, cp.gb2012_preset("DP"), jnp.asarray(tau))
        rho = jax.vmap(lambda s, rule=rule: solve(rule, s, RHO0, drive_steps=4).rho)(spikes)
        reference = np.stack([_ode_reference(rule, p, RHO0) for p in protocols])
        print(f"tau {tau} ms: max error {np.abs(np.asarray(rho) - reference).max():.2e}")
        np.testing.assert_allclose(rho, reference, atol=1e-6, rtol=0)


def test_times_above_and_calcium_match_closed_form():
    rule = cp.gb2012_preset("DP")
    # The last pre spike arrives after the end (D = 13.7 ms): it must be ignored, not an error.
    protocol = cp.Protocol(pre=[0.0, 500.0, 995.0], post=[10.0, 490.0], duration=1000.0)
    spikes = cp.to_spikes(protocol)
    sol = solve(rule, spikes, RHO0)
    np.testing.assert_allclose([sol.time_p, sol.time_d], cp.time_above_thresholds(rule, spikes), rtol=1e-12)
    tau_ca, C_pre, C_post, D = (float(x) for x in (rule.calcium.tau_ca, rule.calcium.C_pre, rule.calcium.C_post, rule.calcium.D))
    c_end = sum(C_pre * np.exp(-(1000.0 - t - D) / tau_ca) for t in (0.0, 500.0)) + sum(
        C_post * np.exp(-(1000.0 - t) / tau_ca) for t in (10.0, 490.0)
    )
    np.testing.assert_allclose(sol.calcium, c_end, rtol=1e-10)


def test_spike_times_at_arbitrary_precision():
    """Spike times off any grid: the tick unit of the spike arrays does not change the result."""
    rule = cp.gb2012_preset("DP")
    protocol = cp.Protocol(pre=[0.123456789, 1000.987654321], post=[10.00000037, 1003.3], duration=2000.0)
    results = [solve(rule, cp.to_spikes(protocol, unit=unit), RHO0).rho for unit in (0.1, 0.0037)]
    np.testing.assert_allclose(results[1], results[0], atol=1e-12, rtol=0)
    # ...and the solver resolves a 1e-7 ms shift of one spike (a time grid would not).
    shifted = cp.Protocol(pre=protocol.pre, post=[10.00000047, 1003.3], duration=2000.0)
    moved = solve(rule, cp.to_spikes(shifted), RHO0).rho
    assert 0 < np.abs(np.asarray(moved - results[0])).max() < 1e-6


DTS = [-20.0, -10.0, 10.0, 20.0]
N_SYNAPSES = 5000  # per initial state (DOWN and UP) and dt


def _populations():
    rho0 = jnp.concatenate([jnp.zeros(N_SYNAPSES), jnp.ones(N_SYNAPSES)])
    return rho0, slice(0, N_SYNAPSES), slice(N_SYNAPSES, None)


def test_noise_matches_closed_form_and_scan_spread():
    """DP, 60 pairs at 1 Hz, 5000 DOWN + 5000 UP synapses per dt: ratio within 3 standard errors
    of the closed form; the spread of final rho across synapses matches the scan solver's
    (two-sample KS test, p > 0.01, for each dt and initial state).

    The GB2012 closed form averages the drive over the protocol; for these protocols it lies
    about 0.01 above the exact model (events solver with 10^5 synapses per state: -0.011,
    -0.010, -0.008, -0.009 at dt = -20, -10, +10, +20 ms, about 1.5 standard errors here;
    `test_noise_matches_exact_gaussian` checks the noise against an exact reference).
    """
    rule = cp.gb2012_preset("DP")
    protocols = [cp.pairs(dt, 60, 1.0) for dt in DTS]
    spikes = cp.to_spikes(protocols, unit=0.1)
    rho0, down, up = _populations()
    events = np.asarray(solve_batch(rule, spikes, rho0, jax.random.split(jax.random.key(20120101), len(DTS))))
    ratio, sem = np.array([cp.population_ratio(rule, rho[down], rho[up]) for rho in events]).T
    closed, _ = cp.stdp_ratios(rule, protocols, method="closed-form")
    print("events ratio", ratio, "sem", sem, "closed form", closed, "z", (ratio - closed) / sem)
    assert np.all(np.abs(ratio - closed) < 3 * sem)
    assert np.all(np.abs(ratio - 1) > 0.05)  # the protocols do change the weights

    # Scan solver at 0.1 ms; chunk = 1000 steps: Strang splitting of the cubic every 100 ms (tau = 150 s).
    scan_keys = jax.random.split(jax.random.key(8), len(DTS))
    scan = eqx.filter_jit(jax.vmap(lambda s, k: cp.solve_scan(rule, s, rho0, key=k, chunk=1000).rho))(spikes, scan_keys)
    for i, dt in enumerate(DTS):
        for name, part in (("DOWN", down), ("UP", up)):
            result = ks_2samp(events[i, part], np.asarray(scan[i, part]))
            print(f"dt {dt} from {name}: KS statistic {result.statistic:.4f}, p {result.pvalue:.3f}, "
                  f"std events {np.std(events[i, part]):.4f} scan {np.std(scan[i, part]):.4f}")
            assert result.pvalue > 0.01


def test_noise_matches_exact_gaussian():
    """With the cubic made negligible (tau, gamma_p, gamma_d x 1000, sigma x sqrt(1000): same
    drive and noise, cubic 1000 times weaker) rho is an Ornstein-Uhlenbeck process with
    piecewise constant coefficients, and final rho is exactly Gaussian (`references.gaussian_law`).
    The event solver's samples match that law (KS test, p > 0.01) and give its change ratio
    within 3 standard errors."""
    dp = cp.gb2012_preset("DP")
    rule = eqx.tree_at(
        lambda r: (r.tau, r.gamma_p, r.gamma_d, r.sigma), dp,
        (dp.tau * 1000, dp.gamma_p * 1000, dp.gamma_d * 1000, dp.sigma * np.sqrt(1000)),
    )
    protocols = [cp.pairs(dt, 60, 1.0) for dt in DTS]
    rho0, down, up = _populations()
    events = np.asarray(solve_batch(rule, cp.to_spikes(protocols), rho0, jax.random.split(jax.random.key(1), len(DTS))))
    for i, protocol in enumerate(protocols):
        gain, shift, variance = gaussian_law(rule, protocol)
        for start, part in ((0.0, down), (1.0, up)):
            law = norm(loc=gain * start + shift, scale=np.sqrt(variance))
            result = kstest(events[i, part], law.cdf)
            print(f"dt {DTS[i]} from {start}: mean {events[i, part].mean():.4f} vs {law.mean():.4f}, "
                  f"std {events[i, part].std():.4f} vs {law.std():.4f}, KS p {result.pvalue:.3f}")
            assert result.pvalue > 0.01
        star = float(rule.rho_star)
        exact = rule.change_ratio(1 - norm.cdf(star, gain * 0 + shift, np.sqrt(variance)),
                                  norm.cdf(star, gain + shift, np.sqrt(variance)))
        ratio, sem = cp.population_ratio(rule, events[i, down], events[i, up])
        print(f"dt {DTS[i]}: ratio {float(ratio):.4f} +- {float(sem):.4f}, exact {float(exact):.4f}")
        assert abs(float(ratio - exact)) < 3 * float(sem)


GRAD_PARAMS = [("rule", "theta_p"), ("rule", "theta_d"), ("calcium", "tau_ca"), ("calcium", "C_pre"),
               ("calcium", "C_post"), ("calcium", "D"), ("rule", "gamma_p"), ("rule", "gamma_d")]


def _set(rule, place, name, value):
    return eqx.tree_at(lambda r: getattr(r.calcium if place == "calcium" else r, name), rule, value)


@pytest.mark.parametrize("noise", [False, True], ids=["noise-off", "fixed-key"])
def test_gradients_match_finite_differences(noise):
    """d mean(final rho) / d parameter: reverse mode vs central differences in float64."""
    rule = cp.gb2012_preset("DP")
    spikes = cp.to_spikes(cp.Protocol(pre=[0.0, 500.0, 1000.0], post=[10.0, 490.0, 1005.0], duration=1500.0))
    rho0 = jnp.linspace(0.1, 0.9, 16)
    key = jax.random.key(3) if noise else None
    values = jnp.stack([getattr(rule.calcium if place == "calcium" else rule, name) for place, name in GRAD_PARAMS])

    def mean_rho(theta):
        r = rule
        for (place, name), value in zip(GRAD_PARAMS, theta):
            r = _set(r, place, name, value)
        return jnp.mean(cp.solve_events(r, spikes, rho0, key=key).rho)

    value_and_grad = jax.jit(jax.value_and_grad(mean_rho))  # one compilation serves both
    grad = np.asarray(value_and_grad(values)[1])
    for i, (_, name) in enumerate(GRAD_PARAMS):
        h = 1e-5 * float(values[i])
        step = jnp.zeros_like(values).at[i].set(h)
        fd = (float(value_and_grad(values + step)[0]) - float(value_and_grad(values - step)[0])) / (2 * h)
        print(f"{name}: grad {grad[i]:.10e}, finite difference {fd:.10e}")
        assert grad[i] != 0
        assert abs(grad[i] - fd) < 1e-4 * abs(fd), name






def test_rho0_of_any_shape_shares_calcium(getkey):
    rule = cp.gb2012_preset("DP")
    spikes = cp.to_spikes(cp.pairs(10.0, n=3))
    grid = jnp.broadcast_to(RHO0, (2, 3, RHO0.size))
    deterministic = solve(rule, spikes, grid).rho
    np.testing.assert_allclose(deterministic, jnp.broadcast_to(solve(rule, spikes, RHO0).rho, grid.shape), rtol=1e-14)
    noisy = solve(rule, spikes, grid, key=getkey()).rho
    assert noisy.shape == grid.shape
    assert np.unique(np.asarray(noisy)).size == noisy.size  # independent noise per synapse


def test_bad_input(run_time_checks):
    rule = cp.gb2012_preset("DP")
    protocol = cp.pairs(10.0, n=3)
    spikes = cp.to_spikes(protocol)
    with pytest.raises(ValueError, match="unbatched"):
        cp.solve_events(rule, cp.to_spikes([protocol, protocol]), RHO0)
    with pytest.raises(ValueError, match="pre_offset"):
        cp.solve_events(rule, eqx.tree_at(lambda s: s.pre_offset, spikes, spikes.pre_offset[:-1]), RHO0)
    with pytest.raises(ValueError, match="post_offset must be finite"):
        cp.solve_events(rule, eqx.tree_at(lambda s: s.post_offset, spikes, spikes.post_offset.at[1].set(jnp.nan)), RHO0)
    late = eqx.tree_at(lambda s: s.post_tick, spikes, spikes.post_tick.at[-1].set(spikes.end_tick + 5))
    with pytest.raises(ValueError, match="post spike times must lie before the protocol's end"):
        cp.solve_events(rule, late, RHO0)
    # Traced (under jit) the same check runs at run time.
    with pytest.raises(Exception, match="post spike times must lie before the protocol's end"):
        solve(rule, late, RHO0).rho.block_until_ready()
    with pytest.raises(ValueError, match="spike times must be < duration"):
        cp.Protocol(pre=[0.0], post=[1000.0], duration=1000.0)
    with pytest.raises(ValueError, match="spike times must be finite"):
        cp.Protocol(pre=[np.nan], post=[10.0], duration=1000.0)
    with pytest.raises(ValueError, match="rho0 must be finite"):
        cp.solve_events(rule, spikes, jnp.array([0.0, jnp.nan]))
    with pytest.raises(ValueError, match="quiet_steps must be a whole number"):
        cp.solve_events(rule, spikes, RHO0, quiet_steps=0)
    with pytest.raises(ValueError, match="needs a key"):
        cp.stdp_ratios(rule, [protocol], method="events")


def test_cli_method_events(tmp_path):
    out = tmp_path / "curve.csv"
    assert main(["stdp", "--preset", "DP", "--method", "events", "--dt-range=-10:10:10", "--trials", "200",
                 "--csv", str(out)]) == 0
    lines = out.read_text().splitlines()
    assert lines[0] == "dt_ms,ratio,sem" and len(lines) == 4
    ratio = np.array([float(line.split(",")[1]) for line in lines[1:]])
    sem = np.array([float(line.split(",")[2]) for line in lines[1:]])
    assert np.all(sem > 0) and ratio[0] < 1 < ratio[2]
