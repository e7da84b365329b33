"""Synaptic tagging and capture (Luboeinski & Tetzlaff 2021): closed forms, an ODE reference, the
fine-step scan, finite differences, the published 100-trial outcomes, and `ca-plast stc`."""

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import tree_allclose
from scipy.integrate import solve_ivp

import ca_plast as cp
from ca_plast._cli import main

HOUR = cp._stc_protocols.MS_PER_HOUR
RULE = cp.luboeinski_tetzlaff2021()
H0 = float(RULE.h0)


def _w_pct(solution):
    return 100 * np.asarray(solution.h + RULE.h0 * solution.z) / H0


# ---------------------------------------------------------------- rule: preset and closed forms


def test_preset_is_the_published_single_synapse_set():
    assert H0 == pytest.approx(4.20075, abs=1e-5)
    assert float(RULE.theta_tag) == pytest.approx(0.840149, abs=1e-6)
    assert float(RULE.theta_pro) == pytest.approx(2.10037, abs=1e-5)
    cal = RULE.calcium
    assert [float(x) for x in (cal.tau_ca, cal.C_pre, cal.C_post, cal.D)] == [48.8, 1.0, 0.2758, 18.8]
    assert float(RULE.tau_h) == 688_400.0 and float(RULE.tau_p) == float(RULE.tau_z) == 3_600_000.0


def _held(c0, s, n, h):
    """h after n steps of s ms, calcium restarting from c0 at every step (noise off)."""
    state = eqx.tree_at(lambda st: st.h, RULE.init(), jnp.asarray(h))

    def body(state, _):
        return RULE.step(state, jnp.asarray(c0), jnp.asarray(s))[0], None

    return float(jax.lax.scan(body, state, None, length=n)[0].h)


@pytest.mark.parametrize(
    "regime, c0, s, n, start, h_inf_pct, tau_ms, rel",
    [
        # Calcium held above theta_p: 200 % of h0 with 0.35 s (+-2 %).
        ("above theta_p", 3.0 * np.exp(1000 / 48.8) * 1.001, 1000.0, 1, H0, 200.0, 350.0, 0.02),
        # Between the thresholds (c from 2.9 down to 1.28 in each 40 ms step): ~0 with 2.2 s.
        ("between", 2.9, 40.0, 100, H0, 0.0, 2200.0, 0.02),
        # At rest: back to h0 with ~1.9 h.
        ("rest", 0.0, 2 * HOUR, 1, 2 * H0, 100.0, 1.9 * HOUR, 0.01),
    ],
)
def test_regimes_closed_form_and_solver(regime, c0, s, n, start, h_inf_pct, tau_ms, rel):
    above_p, above_d = {"above theta_p": (True, True), "between": (False, True), "rest": (False, False)}[regime]
    h_inf, tau = (float(x) for x in RULE.regime(above_p, above_d))
    assert 100 * h_inf / H0 == pytest.approx(h_inf_pct, abs=0.05)
    assert tau == pytest.approx(tau_ms, rel=rel)
    # The exact step reproduces the exponential relaxation; read its time constant back.
    h = _held(c0, s, n, start)
    measured = -n * s / np.log((h - h_inf) / (start - h_inf))
    assert measured == pytest.approx(tau, rel=1e-9)


def test_one_pre_spike_stays_below_theta_d():
    assert float(RULE.calcium.C_pre) < float(RULE.theta_d)


def _ode_reference(h, p, z, t_end):
    """scipy reference for the quiet late phase (no calcium), restarted at every threshold crossing.

    At rest h relaxes monotonically to h0, so each level h0 +- theta is crossed at most once.
    """
    h0, tag, pro, tau_h, tau_p, tau_z = (float(x) for x in (RULE.h0, RULE.theta_tag, RULE.theta_pro,
                                                            RULE.tau_h, RULE.tau_p, RULE.tau_z))

    def rhs(t, y, on_pro, ltp, ltd):
        h, p, z = y
        return [0.1 * (h0 - h) / tau_h, (-p + on_pro) / tau_p, (p * (1 - z) * ltp - p * (z + 0.5) * ltd) / tau_z]

    ahead = [level for level in (tag, -tag, pro, -pro) if 0 < level / (h - h0) < 1]
    t, y = 0.0, np.array([h, p, z])
    while t < t_end:
        d = y[0] - h0
        # The flags on the way from the current level towards h0.
        d_next = max((lv for lv in ahead if abs(lv) < abs(d)), key=abs, default=0.0)
        d_mid = (d + d_next) / 2
        flags = (float(abs(d_mid) >= pro), float(d_mid >= tag), float(-d_mid >= tag))
        events = []
        if ahead:
            def hit(t, y, *flags):
                return y[0] - h0 - d_next
            hit.terminal = True
            events.append(hit)
        sol = solve_ivp(rhs, (t, t_end), y, args=flags, events=events, rtol=1e-12, atol=1e-14, method="DOP853")
        t, y = sol.t[-1], sol.y[:, -1]
        if sol.status == 1:
            ahead.remove(d_next)
    return y


@pytest.mark.parametrize("d0", [4.0, -3.5, 1.5])
def test_late_phase_exact_against_ode_and_under_splitting(d0):
    """Quiet 6 h after a change of h: tag, protein and capture in closed form vs a scipy ODE
    solve restarted at each crossing; one 6 h step equals 720 steps of 30 s."""
    start = cp.STCState(h=jnp.asarray(H0 + d0), p=jnp.asarray(0.2), z=jnp.asarray(0.1))
    one, _ = RULE.step(start, jnp.asarray(0.0), jnp.asarray(6 * HOUR))
    expected = _ode_reference(H0 + d0, 0.2, 0.1, 6 * HOUR)
    np.testing.assert_allclose([float(one.h), float(one.p), float(one.z)], expected, rtol=1e-8, atol=1e-10)

    def body(state, _):
        return RULE.step(state, jnp.asarray(0.0), jnp.asarray(30_000.0))[0], None

    many = jax.lax.scan(body, start, None, length=720)[0]
    assert tree_allclose(one, many, rtol=1e-10, atol=1e-12)


def test_step_stats_are_exact_times():
    """Time with protein synthesis / tag after h = h0 + d0 at rest: tau_rest ln(d0 / theta)."""
    d0 = 4.0
    _, stats = RULE.step(cp.STCState(h=jnp.asarray(H0 + d0), p=jnp.asarray(0.0), z=jnp.asarray(0.0)),
                         jnp.asarray(0.0), jnp.asarray(8 * HOUR))
    tau_rest = float(RULE.tau_h / RULE.leak)
    assert float(stats.time_pro) == pytest.approx(tau_rest * np.log(d0 / float(RULE.theta_pro)), rel=1e-10)
    assert float(stats.time_tag_ltp) == pytest.approx(tau_rest * np.log(d0 / float(RULE.theta_tag)), rel=1e-10)
    assert float(stats.time_tag_ltd) == 0.0
    assert float(stats.h_max) == pytest.approx(H0 + d0)


def test_classify_outcome():
    tag, h0 = float(RULE.theta_tag), H0
    z = jnp.array([0.7, 0.0, 0.0, 0.0, -0.3, 0.0, 0.0, 0.0])
    h_max = jnp.array([2 * h0, h0 + tag + 0.1, h0 + 0.5, h0, h0, h0, h0, h0 + 0.01])
    h_min = jnp.array([h0, h0, h0, h0 - 0.5, 0.1, h0 - tag - 0.1, h0, h0])
    names = [cp.OUTCOMES[i] for i in np.asarray(cp.classify_outcome(RULE, z, h_max, h_min))]
    assert names == ["late-LTP", "early-LTP with tag", "early-LTP", "early-LTD", "late-LTD", "early-LTD with tag",
                     "none", "none"]


# ---------------------------------------------------------------- neuron


def test_lif_psp_peak_closed_form():
    """tau_mem = 2 tau_syn: V - V_rest = w (e^{-t/tau_mem} - e^{-t/tau_syn}), peak w / 4 at tau_mem ln 2."""
    neuron = cp.LeakyIntegrateAndFire()
    w = 4.2
    state = neuron.on_input(neuron.init(), jnp.asarray(w))
    ts = jnp.linspace(0.0, 60.0, 601)
    V = jax.vmap(lambda t: neuron.propagate(state, t).V)(ts) - neuron.V_rest
    np.testing.assert_allclose(V, w * (np.exp(-ts / 10) - np.exp(-ts / 5)), atol=1e-12)
    peak = neuron.propagate(state, jnp.asarray(10 * np.log(2))).V - neuron.V_rest
    assert float(peak) == pytest.approx(w / 4, rel=1e-12)


@pytest.mark.parametrize(
    "V, I, refractory, s",
    [(-65.0, 2.5, 0.0, 30.0), (-58.0, 0.5, 0.0, 30.0), (-70.0, 3.0, 1.5, 30.0), (-56.0, -0.4, 0.0, 50.0),
     (-65.0, 1.2, 0.0, 30.0), (-60.0, 1.3, 0.0, 3.0)],
)
def test_lif_first_spike_matches_dense_sampling(V, I, refractory, s):
    neuron = cp.LeakyIntegrateAndFire()
    state = cp.LIFState(V=jnp.asarray(V), I=jnp.asarray(I), refractory=jnp.asarray(refractory))
    ts = jnp.linspace(0.0, s, 300_001)
    above = np.asarray(jax.vmap(lambda t: neuron.propagate(state, t).V)(ts) >= neuron.V_th)
    fires, t = neuron.first_spike(state, jnp.asarray(s))
    assert bool(fires) == bool(above.any())
    if above.any():
        assert float(t) == pytest.approx(float(ts[np.argmax(above)]), abs=2 * s / 300_000)
        assert float(neuron.propagate(state, t).V) == pytest.approx(float(neuron.V_th), abs=1e-9)
    else:
        assert float(t) == s


def test_lif_propagation_composes_and_refractory_holds_reset():
    neuron = cp.LeakyIntegrateAndFire()
    state = neuron.on_spike(neuron.on_input(neuron.init(), jnp.asarray(30.0)))
    held = neuron.propagate(state, jnp.asarray(1.5))
    assert float(held.V) == float(neuron.V_reset) and float(held.refractory) == pytest.approx(0.5)
    assert tree_allclose(neuron.propagate(held, jnp.asarray(6.5)), neuron.propagate(state, jnp.asarray(8.0)),
                         rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------- protocols


def test_regular_protocols_follow_the_reference_timing():
    settle = 600_000.0
    counts = {"STET": 300, "WTET": 20, "SLFS": 2700, "WLFS": 900}
    for name, n in counts.items():
        proto = cp.stc_protocol(name, settle=settle)
        assert proto.pre.size == n and proto.post.size == 0
        assert proto.pre[0] == settle and proto.duration == settle + 8 * HOUR
    stet = cp.stc_protocol("STET", settle=0.0).pre
    np.testing.assert_allclose(stet[[0, 99, 100, 200]], [0.0, 990.0, 600_000.0, 1_200_000.0])
    slfs = cp.stc_protocol("SLFS", settle=0.0).pre
    np.testing.assert_allclose(slfs[:6], [0.0, 50.0, 100.0, 1150.0, 1200.0, 1250.0])
    # Pulses past the end are dropped.
    assert cp.stc_protocol("STET", hours=0.2, settle=0.0).pre.size == 200


def test_poisson_protocols_rates_grid_and_seeds():
    trials = cp.stc_protocols("STET", 40, seed=3, poisson=True, settle=0.0)
    counts = np.array([p.pre.size for p in trials])
    assert abs(counts.mean() - 300) < 4 * np.sqrt(300 / 40)
    assert len({p.pre.size for p in trials}) > 1
    times = trials[0].pre
    np.testing.assert_allclose(times / 0.2, np.round(times / 0.2), atol=1e-6)
    assert np.all((times % 600_000.0) < 1000.0)
    again = cp.stc_protocols("STET", 2, seed=3, poisson=True, settle=0.0)
    np.testing.assert_array_equal(again[1].pre, trials[1].pre)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: cp.stc_protocol("TBS"), "unknown STC protocol 'TBS'"),
        (lambda: cp.stc_protocol("STET", hours=0.0), "hours"),
        (lambda: cp.stc_protocol("STET", settle=-1.0), "settle"),
        (lambda: cp.stc_protocol("STET", poisson=True), "seed"),
        (lambda: cp.stc_protocols("STET", 0), "trials must be a whole number >= 1, got 0"),
        (lambda: dataclasses.replace(RULE, tau_h=-1.0), "tau_h must be > 0 ms"),
        (lambda: dataclasses.replace(RULE, theta_tag=0.0), "theta_tag must be > 0"),
        (lambda: cp.LeakyIntegrateAndFire(V_reset=-50.0), "V_reset must be below V_th"),
        (lambda: cp.LeakyIntegrateAndFire(tau_syn=0.0), "tau_syn must be > 0 ms"),
        (lambda: cp.solve_stc(RULE, cp.to_spikes(cp.stc_protocol("WTET", hours=0.1), unit=1.0), record_every=0.5),
         "record_every must be a whole number"),
        (lambda: cp.solve_stc(RULE, cp.to_spikes([cp.stc_protocol("WTET", hours=0.1)] * 2, unit=1.0)),
         "expected unbatched spikes"),
    ],
)
def test_bad_input_raises_value_error_naming_it(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# ---------------------------------------------------------------- solvers


def test_multiscale_agrees_with_fine_step_scan_over_first_half_hour():
    """STET and WTET (Poisson), noise off, first simulated half hour (the tetanus, the early phase
    and the start of protein synthesis and capture): exact events vs 0.2 ms Euler."""
    protocols = [cp.stc_protocol(name, hours=0.5, settle=10_000.0, poisson=True, seed=11) for name in ("STET", "WTET")]
    fine_scan = jax.jit(lambda sp: cp.solve_stc_fine(RULE, sp, record_every=60_000.0))
    for proto in protocols:
        multi = cp.solve_stc(RULE, cp.to_spikes(proto, unit=1.0), record_every=60_000.0)
        fine = fine_scan(cp.to_spikes(proto, unit=0.2))
        gap = np.max(np.abs(_w_pct(multi) - _w_pct(fine)))
        print(f"{proto.name}: max |w difference| {gap:.4f} % of h0 over {multi.ts.size} records")
        assert gap < 0.5
        assert abs(float(RULE.weight(multi.state) - RULE.weight(fine.state))) / H0 < 0.005
    assert float(multi.state.p) == 0.0 and _w_pct(multi)[-1] > 110  # WTET: early-LTP, no protein


@pytest.mark.parametrize("calcium", [
    cp.NonlinearCalcium(C_pre=1.0, C_post=0.2758, tau_ca=48.8, D=0.0, nl=2.0),
    cp.CoincidenceCalcium(C_pre=1.0, C_post=0.2758, C_coinc=2.0, tau_ca=48.8, window=1.0),
], ids=["nonlinear", "coincidence"])
def test_other_calcium_models_agree_with_fine_step_scan(calcium):
    """Tagging and capture with calcium that has more state than c: exact events vs 0.2 ms Euler
    over a 20 Hz pairing (post 0.6 ms after pre arrivals, so the coincidence terms act); and
    the NMDA model with nl = 1 is the linear one exactly."""
    rule = dataclasses.replace(RULE, calcium=calcium)
    pre = np.arange(0.0, 2000.0, 50.0)
    proto = cp.Protocol(pre=pre, post=pre + 0.6, duration=4000.0)
    multi = cp.solve_stc(rule, cp.to_spikes(proto, unit=0.2), record_every=500.0)
    fine = cp.solve_stc_fine(rule, cp.to_spikes(proto, unit=0.2), record_every=500.0)
    linear_rule = dataclasses.replace(RULE, calcium=cp.LinearCalcium(C_pre=1.0, C_post=0.2758, tau_ca=48.8, D=0.0))
    linear = cp.solve_stc(linear_rule, cp.to_spikes(proto, unit=0.2), record_every=500.0)
    gain = _w_pct(multi)[-1] - _w_pct(linear)[-1]
    print(f"{type(calcium).__name__}: w {_w_pct(multi)[-1]:.3f} % (linear calcium {_w_pct(linear)[-1]:.3f} %), "
          f"max |exact - fine| {np.max(np.abs(_w_pct(multi) - _w_pct(fine))):.4f} %")
    assert gain > 1.0  # the extra calcium of coincident spikes potentiates more
    assert np.max(np.abs(_w_pct(multi) - _w_pct(fine))) < 0.05 * gain
    if isinstance(calcium, cp.NonlinearCalcium):
        same = cp.solve_stc(dataclasses.replace(rule, calcium=dataclasses.replace(calcium, nl=1.0)),
                            cp.to_spikes(proto, unit=0.2), record_every=500.0)
        assert tree_allclose(same, linear, rtol=1e-12, atol=1e-12)


def test_neuron_spikes_agree_with_fine_step_scan():
    """A 300 Hz drive makes the neuron fire: exact crossings vs threshold checks every 0.2 ms."""
    rng = np.random.default_rng(0)
    proto = cp.Protocol(pre=0.2 * np.flatnonzero(rng.random(15_000) < 0.06), post=np.zeros(0), duration=4000.0)
    neuron = cp.LeakyIntegrateAndFire()
    multi = cp.solve_stc(RULE, cp.to_spikes(proto, unit=1.0), neuron=neuron, record_every=200.0, max_post_spikes=256)
    fine = cp.solve_stc_fine(RULE, cp.to_spikes(proto, unit=0.2), neuron=neuron, record_every=200.0)
    assert int(multi.n_late) == 0 and int(multi.n_post) > 50
    assert abs(int(multi.n_post) - int(fine.n_post)) <= 2
    assert np.max(np.abs(_w_pct(multi) - _w_pct(fine))) < 0.1


def test_simulate_reruns_when_the_neuron_fires_more_than_room():
    rng = np.random.default_rng(1)
    proto = cp.Protocol(pre=0.2 * np.flatnonzero(rng.random(2_000) < 0.06), post=np.zeros(0), duration=2000.0)
    solution = cp.simulate_stc(RULE, [proto], neuron=cp.LeakyIntegrateAndFire(), record_every=1000.0,
                               max_post_spikes=4)
    # 8 spikes: the run with room for 4 stops short and is redone with room for 9.
    assert int(solution.n_late[0]) == 0 and int(solution.n_post[0]) == 8


def test_simulate_reruns_an_emulation_that_ran_out_of_room():
    """Room for 4 of the neuron's spikes: the batch is redone with room for 9, as a run given that room at once."""
    rng = np.random.default_rng(1)
    proto = cp.Protocol(pre=0.2 * np.flatnonzero(rng.random(2_000) < 0.06), post=np.zeros(0), duration=2000.0)
    run = dict(neuron=cp.LeakyIntegrateAndFire(), record_every=1000.0, key=jax.random.key(2))
    tight = cp.simulate_stc(RULE, [proto], solver=cp.STCHardware(max_post_spikes=4), **run)
    ample = cp.simulate_stc(RULE, [proto], solver=cp.STCHardware(max_post_spikes=9), **run)
    assert int(tight.n_late[0]) == 0 and int(tight.n_post[0]) > 4
    assert tree_allclose(tight, ample, rtol=0, atol=0)


def test_simulate_takes_any_stc_solver():
    """`solver=` runs that solver on every trial (here the fine-step reference, trial i with
    `fold_in(key, i)`); a solver together with `hardware` is refused."""
    protocols = [cp.stc_protocol("WTET", hours=0.001, settle=100.0, poisson=True, seed=s) for s in range(2)]
    key = jax.random.key(5)
    batch = cp.simulate_stc(RULE, protocols, key=key, record_every=500.0, unit=0.2, solver=cp.STCFine())
    padded = cp.to_spikes(protocols, unit=0.2)  # one compilation for both trials (padding changes nothing)
    fine = eqx.filter_jit(lambda spikes, k: cp.solve_stc_fine(RULE, spikes, key=k, record_every=500.0))
    for i in range(len(protocols)):
        one = fine(jax.tree.map(lambda x, i=i: x[i], padded), jax.random.fold_in(key, i))
        assert tree_allclose(jax.tree.map(lambda x, i=i: x[i], batch), one, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="either solver or hardware"):
        cp.simulate_stc(RULE, protocols, solver=cp.STCEvents(), hardware=cp.BSS2_STC)
    with pytest.raises(ValueError, match="AbstractSTCSolver"):
        cp.simulate_stc(RULE, protocols, solver="fine")


def test_simulate_runs_trial_i_with_key_fold_in_i():
    """The batch is the loop over trials, trial i with `fold_in(key, i)` (jit == eager, vmap == loop
    and same key == same result of `solve_stc` itself: tests/test_registry.py)."""
    protocols = [cp.stc_protocol("WTET", hours=0.02, settle=1000.0, poisson=True, seed=s) for s in range(2)]
    key = jax.random.key(7)
    batch = cp.simulate_stc(RULE, protocols, key=key, record_every=30_000.0)
    solve = eqx.filter_jit(lambda sp, k: cp.solve_stc(RULE, sp, key=k, record_every=30_000.0))
    for i, proto in enumerate(protocols):
        one = solve(cp.to_spikes(proto, unit=1.0), jax.random.fold_in(key, i))
        assert tree_allclose(jax.tree.map(lambda x: x[i], batch), one, rtol=1e-12, atol=1e-12)
    assert not np.allclose(batch.h[0, -1], batch.h[1, -1])


def test_time_is_exact_in_float32():
    """8 h in float32 (ticks + offsets, no accumulated clock) agrees with float64."""
    proto = cp.stc_protocol("STET")
    w64 = _w_pct(cp.simulate_stc(RULE, [proto]))[0, -1]
    with jax.enable_x64(False):
        rule32 = cp.luboeinski_tetzlaff2021()
        solution = cp.simulate_stc(rule32, [proto])
        assert solution.h.dtype == jnp.float32
        w32 = float(100 * (solution.h[0, -1] + rule32.h0 * solution.z[0, -1]) / rule32.h0)
    assert w32 == pytest.approx(w64, abs=0.01)
    assert w64 == pytest.approx(175.0, abs=5.0)


GRAD_NAMES = ("theta_tag", "theta_pro", "tau_p", "tau_z", "theta_p", "theta_d")


def test_gradients_of_mean_weight_match_finite_differences():
    """d mean w(8 h) / d parameter, reverse mode through the whole run, fixed key (noise on)."""
    protocols = cp.stc_protocols("STET", 3, seed=5, poisson=True, settle=60_000.0)
    spikes = cp.to_spikes(protocols, unit=1.0)
    keys = jax.random.split(jax.random.key(1), 3)

    def mean_w(values):
        rule = eqx.tree_at(lambda r: [getattr(r, n) for n in GRAD_NAMES], RULE, list(values))
        solution = jax.vmap(lambda sp, k: cp.solve_stc(rule, sp, key=k, record_every=3_600_000.0))(spikes, keys)
        return jnp.mean(rule.weight(solution.state)) / rule.h0

    x0 = jnp.stack([getattr(RULE, n) for n in GRAD_NAMES])
    value = jax.jit(lambda x: mean_w(list(x)))
    grad = jax.jit(jax.grad(lambda x: mean_w(list(x))))(x0)
    for i, name in enumerate(GRAD_NAMES):
        step = 1e-5 * float(x0[i])
        shift = jnp.zeros(6).at[i].set(step)
        fd = float(value(x0 + shift) - value(x0 - shift)) / (2 * step)
        print(f"{name}: reverse mode {float(grad[i]):.9g}, central difference {fd:.9g}")
        assert float(grad[i]) != 0.0
        assert float(grad[i]) == pytest.approx(fd, rel=1e-3)


# ---------------------------------------------------------------- the published outcomes, 100 trials each


@pytest.fixture(scope="module")
def outcomes():
    """100 Poisson trials of each protocol, 8 h after the onset, in one batch, authors' set-up."""
    settle = 600_000.0
    protocols = [p for name in cp.STC_PROTOCOLS
                 for p in cp.stc_protocols(name, 100, seed=2021, poisson=True, settle=settle)]
    solution = cp.simulate_stc(RULE, protocols, key=jax.random.key(2021), neuron=cp.LeakyIntegrateAndFire(),
                               record_every=600_000.0)
    at_7h = int(np.flatnonzero(np.isclose(np.asarray(solution.ts[0]), settle + 7 * HOUR))[0])
    w = _w_pct(solution)[:, at_7h].reshape(4, 100)
    codes = np.asarray(cp.classify_outcome(RULE, solution.state.z, solution.stats.h_max, solution.stats.h_min))
    names = np.array(cp.OUTCOMES)[codes].reshape(4, 100)
    protein = np.asarray(solution.stats.time_pro).reshape(4, 100)
    h_min = 100 * np.asarray(solution.stats.h_min).reshape(4, 100) / H0
    for i, name in enumerate(cp.STC_PROTOCOLS):
        kinds, counts = np.unique(names[i], return_counts=True)
        print(f"{name}: mean w at 7 h {w[i].mean():.1f} % (s.d. {w[i].std():.1f}); outcomes "
              f"{dict(zip(kinds.tolist(), counts.tolist()))}; trials with protein {np.sum(protein[i] > 0)}; "
              f"lowest h {h_min[i].mean():.1f} %")
    return {name: (w[i], names[i], protein[i], h_min[i]) for i, name in enumerate(cp.STC_PROTOCOLS)}


def test_stet_gives_late_ltp(outcomes):
    w, names, _, _ = outcomes["STET"]
    assert np.mean(names == "late-LTP") >= 0.9
    assert 165 <= w.mean() <= 185


def test_wtet_gives_early_ltp_without_late_phase(outcomes):
    w, names, protein, _ = outcomes["WTET"]
    assert np.all(protein == 0)
    assert not np.any(np.isin(names, ["late-LTP", "late-LTD"]))
    assert np.mean(np.isin(names, ["early-LTP", "early-LTP with tag"])) >= 0.9
    assert abs(w.mean() - 100) <= 5


def test_slfs_gives_late_ltd(outcomes):
    w, names, _, _ = outcomes["SLFS"]
    assert np.mean(names == "late-LTD") >= 0.8
    assert 55 <= w.mean() <= 72


def test_wlfs_gives_early_ltd_only(outcomes):
    w, names, protein, h_min = outcomes["WLFS"]
    assert np.all(protein == 0)
    assert np.all(np.isin(names, ["early-LTD", "early-LTD with tag", "none"]))
    assert np.mean(np.isin(names, ["early-LTD", "early-LTD with tag"])) >= 0.9
    assert abs(w.mean() - 100) <= 5 and h_min.mean() < 85


# ---------------------------------------------------------------- command line


def test_cli_writes_csv_and_plot(tmp_path, capsys):
    csv, png = tmp_path / "wtet.csv", tmp_path / "wtet.png"
    assert main(["stc", "--protocol", "WTET", "--hours", "0.5", "--trials", "3", "--poisson", "--seed", "4",
                 "--csv", str(csv), "--plot", str(png)]) == 0
    lines = csv.read_text().splitlines()
    assert lines[0] == "t_h,h_pct,z_pct,w_pct,p"
    rows = np.array([[float(x) for x in line.split(",")] for line in lines[1:]])
    np.testing.assert_allclose(rows[:, 0], (np.arange(rows.shape[0]) * 30 - 600) / 3600, atol=1e-5)
    assert rows[0, 1:4].tolist() == [100.0, 100.0, 100.0] and rows[-1, 0] == pytest.approx(0.5)
    np.testing.assert_allclose(rows[:, 3], rows[:, 1] + rows[:, 2] - 100, atol=2e-3)
    assert rows[:, 1].max() > 110 and np.all(rows[:, 4] == 0)
    assert "WTET (Poisson), 3 trials" in capsys.readouterr().err
    assert png.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["stc", "--protocol", "TBS"], "unknown --protocol 'TBS'"),
        (["stc", "--protocol", "STET", "--hours", "0"], "--hours must be > 0 and at most 596"),
        (["stc", "--protocol", "STET", "--hours", "-2"], "--hours must be > 0 and at most 596"),
        (["stc", "--protocol", "STET", "--trials", "0"], "--trials must be >= 1"),
        (["stc", "--protocol", "STET", "--hardware", "loihi"], "unknown --hardware 'loihi'"),
        (["stc"], "required: --protocol"),
    ],
)
def test_cli_bad_arguments_exit_2(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
