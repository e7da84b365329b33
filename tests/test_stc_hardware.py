"""Synaptic tagging and capture on emulated BSS-2 (`solve_stc_hardware`): against the exact event
solver `solve_stc`, the float PPU program, an independent fine-grid time above threshold, the
vanishing late phase under nearest rounding, and `ca-plast stc --hardware bss2`."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import tree_allclose

import ca_plast as cp
from ca_plast._cli import main

QUIET_RULE = eqx.tree_at(lambda r: r.sigma_pl, cp.luboeinski_tetzlaff2021(), jnp.asarray(0.0))
H0 = float(QUIET_RULE.h0)
SIXTEEN = cp.FixedPoint(16, 15)
# One LSB of each stored variable at 16 bits: h / h_max, p / alpha, z.
LSB = {"h": 10.0 * SIXTEEN.step, "p": SIXTEEN.step, "z": SIXTEEN.step}


def _train(length_ms: float, minutes: float) -> cp.Protocol:
    """One 100 Hz train of presynaptic pulses from t = 1 min, then quiet until `minutes`."""
    return cp.Protocol(pre=60_000.0 + 10.0 * np.arange(int(length_ms / 10)), post=np.zeros(0),
                       duration=minutes * 60_000.0)


def _runs(protocol, period, record_every, trials):
    """Exact solver, the float PPU program, and `trials` runs at 16-bit stochastic rounding (noise off)."""
    spikes = cp.to_spikes(protocol, unit=1.0)
    exact = cp.solve_stc(QUIET_RULE, spikes, record_every=record_every)
    floating = cp.solve_stc_hardware(QUIET_RULE, spikes, hardware=cp.BSS2(state=None, period=period),
                                     record_every=record_every)
    stochastic = cp.simulate_stc(QUIET_RULE, [protocol] * trials, key=jax.random.key(1), record_every=record_every,
                                 hardware=cp.BSS2(state=SIXTEEN, rounding="stochastic", period=period))
    return exact, floating, stochastic


@pytest.fixture(scope="module")
def weak():
    """WTET-like: 0.2 s at 100 Hz, 3 min in all, updates every 1 ms, 8 trials."""
    return _runs(_train(200.0, 3.0), 1.0, 10_000.0, 8)


@pytest.fixture(scope="module")
def strong():
    """One 1 s train at 100 Hz (early-LTP, tag, protein synthesis), then quiet: h relaxes towards h0, protein
    synthesis stops after about 1.2 h and p decays, z is captured. 2 h, updates every 10 ms, 16 trials."""
    return _runs(_train(1000.0, 120.0), 10.0, 600_000.0, 16)


def _check_tracking(exact, floating, stochastic, tolerance):
    for name in "hpz":
        ref, flt = np.asarray(getattr(exact, name)), np.asarray(getattr(floating, name))
        runs = np.asarray(getattr(stochastic, name))
        # The float program differs from the exact model by its explicit step per period only.
        assert np.abs(flt - ref).max() <= tolerance[name], name
        # Stochastic rounding is unbiased: the mean over trials is the float program's result within
        # 4 standard errors, plus half an LSB for the initial value rounded to the grid.
        mean, sem = runs.mean(axis=0), runs.std(axis=0, ddof=1) / np.sqrt(runs.shape[0])
        assert np.all(np.abs(mean - flt) <= 4 * sem + LSB[name] / 2 + 1e-12), name
        assert np.allclose(mean, ref, rtol=0, atol=tolerance[name] + 4 * sem.max() + LSB[name]), name


def test_weak_tetanus_tracks_the_exact_solver(weak):
    exact, floating, stochastic = weak
    assert float(exact.h.max()) > 1.3 * H0  # early-LTP with tag, no protein synthesis
    # Explicit step over 1 ms against h's 0.35 s time constant above theta_p: error of order
    # (1 ms / 0.35 s) of h's rise of 1.5 mV per time constant, 0.004 mV; measured 0.0018 mV.
    _check_tracking(exact, floating, stochastic, {"h": 0.005, "p": 0.0, "z": 0.0})


def test_strong_train_and_quiet_stretch_track_the_exact_solver(strong):
    exact, floating, stochastic = strong
    h, p = np.asarray(exact.h), np.asarray(exact.p)
    assert h.max() > H0 + float(QUIET_RULE.theta_pro) and p.max() > 0.5 and p[-1] < 0.8 * p.max()
    assert float(exact.z[-1]) > 0.4 and h[-1] < h.max() - 1.5
    # 10 ms steps during the 1 s train: h within 0.015 mV (measured 0.009). Near the end of protein
    # synthesis h falls by about 5e-7 mV/ms, so an h error of 0.015 mV moves that end by about 30 s:
    # 0.01 in p (alpha 30 s / tau_p) and less in z.
    _check_tracking(exact, floating, stochastic, {"h": 0.015, "p": 0.01, "z": 0.01})


def test_late_phase_vanishes_under_nearest_rounding(strong):
    """alpha P / tau_p = 2.8e-6 per 10 ms update, below half an LSB (1.5e-5) at 16 bits: p and z
    never leave 0 under nearest rounding, and h never relaxes (leak increments ~1e-6 mV), while
    the exact p rises above 0.5 and the stochastic mean follows it (test above)."""
    exact, _, stochastic = strong
    nearest = cp.solve_stc_hardware(QUIET_RULE, cp.to_spikes(_train(1000.0, 120.0), unit=1.0), record_every=600_000.0,
                                    hardware=cp.BSS2(state=SIXTEEN, rounding="nearest", period=10.0))
    assert np.all(np.asarray(nearest.p) == 0) and np.all(np.asarray(nearest.z) == 0)
    assert float(nearest.stats.time_pro) > 3_600_000.0  # protein synthesis on all along
    h_top = float(nearest.h[2])
    assert np.all(np.asarray(nearest.h[2:]) == h_top) and h_top > float(exact.h[-1]) + 1.5
    p_end, z_end = np.asarray(stochastic.p[:, -1]), np.asarray(stochastic.z[:, -1])
    for runs, ref in ((p_end, exact.p[-1]), (z_end, exact.z[-1])):
        sem = runs.std(ddof=1) / np.sqrt(runs.size)
        assert float(ref) > 0.15 and abs(runs.mean() - float(ref)) <= 4 * sem + 0.01


def _time_above_fine(pre, theta, tau, D, start, end, n=2_000_001):
    """Time calcium (C_pre = 1 per presynaptic spike) spends above theta in [start, end]: fine grid."""
    t = np.linspace(start, end, n)
    c = sum(np.where(t >= s + D, np.exp(-(t - s - D) / tau), 0.0) for s in pre)
    return np.mean(c >= theta) * (end - start)


@pytest.mark.parametrize("state", [None, SIXTEEN])
def test_ppu_reads_the_time_above_threshold(state):
    """With only the LTP drive on (gamma_d = 0, leak ~ 0, noise off), the first update changes h by
    gamma_p (h_max - h) T_p / tau_h: read T_p back and compare it with a fine-grid integral of the
    calcium above theta_p. Float program: the exact time; 16-bit PPU: within one CADC LSB (period/255)."""
    rule = eqx.tree_at(lambda r: (r.gamma_d, r.leak, r.tau_h), QUIET_RULE,
                       (jnp.asarray(0.0), jnp.asarray(1e-12), jnp.asarray(40_000.0)))
    pre = np.array([5.0, 8.0, 11.0, 14.0])  # arrivals from 23.8 ms; calcium peaks near 3.5 > theta_p
    period = 50.0
    protocol = cp.Protocol(pre=pre, post=np.zeros(0), duration=200.0)
    hardware = cp.BSS2(state=state, rounding="nearest", period=period)
    solution = cp.solve_stc_hardware(rule, cp.to_spikes(protocol, unit=1.0), hardware=hardware, record_every=period)
    h0, h1 = float(solution.h[0]), float(solution.h[1])
    T_p = (h1 - h0) * float(rule.tau_h) / (float(rule.gamma_p) * (float(rule.h_max) - h0))
    cal = rule.calcium
    reference = _time_above_fine(pre, float(rule.theta_p), float(cal.tau_ca), float(cal.D), 0.0, period)
    assert reference > 5.0
    if state is None:
        assert T_p == pytest.approx(reference, abs=1e-3)
    else:
        # h's own rounding adds at most half an LSB: 1.5e-4 mV, below 1e-3 ms of T_p here.
        assert abs(T_p - reference) <= period / 255 + 1e-3


def test_weight_write_back_is_six_bit():
    rule, hardware = QUIET_RULE, cp.BSS2_STC
    h = jnp.array([-1.0, 0.0, H0, 8.4, 10.0, 12.0])
    for z in (-0.5, 0.0, 1.0):
        codes = np.asarray(cp.stc_weight_codes(rule, hardware, cp.STCState(h=h, p=jnp.zeros(()), z=jnp.full_like(h, z))))
        assert codes.dtype == np.int32 and codes.min() >= 0 and codes.max() <= 63
        assert np.all(np.diff(codes) >= 0)
        w = np.asarray(h) + H0 * z
        expected = np.clip(np.round(63 * w / (10.0 + H0)), 0, 63)
        np.testing.assert_array_equal(codes, expected)
    # Full scale h_max + h0: h = h_max, z = 1 writes 63; the resting weight h0 writes round(18.6) = 19.
    assert int(cp.stc_weight_codes(rule, hardware, cp.STCState(h=jnp.asarray(10.0), p=jnp.zeros(()), z=jnp.ones(())))) == 63
    assert int(cp.stc_weight_codes(rule, hardware, rule.init())) == 19


def test_simulate_on_hardware_runs_trial_i_with_key_fold_in_i():
    """With a neuron: the batch is the loop over trials (the solver's own jit, vmap and key
    contract: tests/test_registry.py)."""
    rule, neuron = cp.luboeinski_tetzlaff2021(), cp.LeakyIntegrateAndFire()
    protocols = cp.stc_protocols("WTET", 2, poisson=True, seed=3, hours=0.01, settle=1000.0)
    hardware = cp.BSS2(state=cp.FixedPoint(8, 7), period=10.0)
    key = jax.random.key(7)
    batch = cp.simulate_stc(rule, protocols, key=key, neuron=neuron, record_every=30_000.0, hardware=hardware)
    assert float(jnp.std(batch.h[0])) > 0  # noise and rounding act

    @jax.jit
    def one(spikes, k):
        return cp.solve_stc_hardware(rule, spikes, hardware=hardware, neuron=neuron, key=k, record_every=30_000.0)

    for i, protocol in enumerate(protocols):
        jitted = one(cp.to_spikes(protocol, unit=1.0), jax.random.fold_in(key, i))
        assert tree_allclose(jax.tree.map(lambda x: x[i], batch), jitted, rtol=0, atol=1e-12)


def test_mismatch_is_a_fixed_chip_property():
    protocol = cp.stc_protocol("WTET", hours=0.01, settle=10_000.0)
    spikes = cp.to_spikes(protocol, unit=1.0)

    def run(**kwargs):
        hardware = cp.BSS2(state=None, period=10.0, **kwargs)
        return cp.solve_stc_hardware(QUIET_RULE, spikes, hardware=hardware, record_every=30_000.0).state.h

    plain, chip0, chip0_again, chip1 = run(), run(mismatch_tau_ca=0.2, chip=0), run(mismatch_tau_ca=0.2, chip=0), \
        run(mismatch_tau_ca=0.2, chip=1)
    assert float(chip0) == float(chip0_again)
    assert len({float(plain), float(chip0), float(chip1)}) == 3


def test_several_synapses_share_the_protein_pool():
    """Two synapses onto one neuron (imposed spikes, noise off): float program vs exact solver."""
    strong, quiet = _train(1000.0, 30.0), cp.Protocol(pre=np.array([60_000.0]), post=np.zeros(0), duration=1_800_000.0)
    spikes = cp.to_spikes([strong, quiet], unit=1.0)
    exact = cp.solve_stc(QUIET_RULE, spikes, record_every=600_000.0, synapses=True)
    floating = cp.solve_stc_hardware(QUIET_RULE, spikes, hardware=cp.BSS2(state=None, period=10.0),
                                     record_every=600_000.0, synapses=True)
    assert exact.h.shape == floating.h.shape == (4, 2) and floating.p.shape == (4,)
    assert float(exact.p[-1]) > 0.05 and float(exact.z[-1, 0]) > 0 and float(exact.z[-1, 1]) == 0
    np.testing.assert_allclose(np.asarray(floating.h), np.asarray(exact.h), atol=0.015)
    np.testing.assert_allclose(np.asarray(floating.p), np.asarray(exact.p), atol=1e-3)
    np.testing.assert_allclose(np.asarray(floating.z), np.asarray(exact.z), atol=1e-3)


def test_bad_input():
    spikes = cp.to_spikes(cp.stc_protocol("WTET", hours=0.01, settle=0.0), unit=1.0)
    with pytest.raises(ValueError, match=r"update period 2.5 ms is not a whole multiple of the solver step 1.0 ms"):
        cp.solve_stc_hardware(QUIET_RULE, spikes, hardware=cp.BSS2(period=2.5), key=jax.random.key(0))
    with pytest.raises(ValueError, match="stochastic rounding needs a key"):
        cp.solve_stc_hardware(QUIET_RULE, spikes, hardware=cp.BSS2(period=10.0))
    with pytest.raises(ValueError, match="state format must be signed"):
        cp.solve_stc_hardware(QUIET_RULE, spikes, hardware=cp.BSS2(state=cp.FixedPoint(8, 8, signed=False)),
                              key=jax.random.key(0))
    with pytest.raises(ValueError, match="hardware must be a BSS2 configuration, got 'bss2'"):
        cp.solve_stc_hardware(QUIET_RULE, spikes, hardware="bss2")
    with pytest.raises(ValueError, match="max_post_spikes must be a whole number >= 0, got -1"):
        cp.solve_stc_hardware(QUIET_RULE, spikes, hardware=cp.BSS2(state=None), max_post_spikes=-1)
    with pytest.raises(ValueError, match="record_every must be a whole number >= 1 of 1.0 ms steps, got 0.5 ms"):
        cp.solve_stc_hardware(QUIET_RULE, spikes, hardware=cp.BSS2(state=None), record_every=0.5)


def test_cli_stc_hardware(tmp_path, capsys):
    csv = tmp_path / "wtet.csv"
    assert main(["stc", "--protocol", "WTET", "--hours", "0.1", "--trials", "2", "--hardware", "bss2",
                 "--csv", str(csv)]) == 0
    lines = csv.read_text().splitlines()
    assert lines[0] == "t_h,h_pct,z_pct,w_pct,p"
    rows = np.array([[float(x) for x in line.split(",")] for line in lines[1:]])
    assert rows.shape == (33, 5) and rows[-1, 0] == pytest.approx(0.1)
    assert rows[:, 1].max() > 110 and np.all(rows[:, 4] == 0)
    err = capsys.readouterr().err
    assert "WTET (regular), 2 trials, 0.1 h after onset on emulated BSS-2" in err
    assert f"{cp.BSS2_STC.state.total_bits}-bit {cp.BSS2_STC.rounding} rounding" in err and "Traceback" not in err


def test_sample_mode_tracks_the_exact_solver(weak):
    """"sample": calcium read through the CADC at each 1 ms update and held for the period."""
    exact = weak[0]
    runs = cp.simulate_stc(QUIET_RULE, [_train(200.0, 3.0)] * 8, key=jax.random.key(2), record_every=10_000.0,
                           hardware=cp.BSS2(state=SIXTEEN, rounding="stochastic", period=1.0, threshold_time="sample"))
    # Each of the ~40 threshold crossings of the train is misplaced by up to one period (1 ms, mean 0.5 ms,
    # either sign), and h moves by at most gamma_p (h_max - h) / tau_h = 0.014 mV per ms above theta_p:
    # about sqrt(40) * 0.5 * 0.014 = 0.044 mV. Measured 0.006 mV.
    assert np.abs(np.asarray(runs.h).mean(axis=0) - np.asarray(exact.h)).max() < 0.05


def test_read_noise_on_empty_integrators_is_rectified_by_the_cadc():
    """Noise on a zero reading cannot go below code 0: every read then has a positive mean, which
    drives h as a constant time above both thresholds would (closed form of the linear h equation)."""
    noise, period, minutes = 0.5, 1.0, 3.0
    quiet = cp.Protocol(pre=np.zeros(0), post=np.zeros(0), duration=minutes * 60_000.0)
    runs = cp.simulate_stc(QUIET_RULE, [quiet] * 16, key=jax.random.key(11), record_every=60_000.0,
                           hardware=cp.BSS2(state=SIXTEEN, rounding="stochastic", period=period, read_noise=noise))
    # Mean code of clip(round(noise N), 0, 255) = sum_k P(noise N >= k - 1/2), k >= 1.
    code = sum(0.5 * math.erfc((k - 0.5) / noise / math.sqrt(2)) for k in range(1, 20))
    T = code / 255 * period  # ms above theta_p and above theta_d per period, on average
    r = QUIET_RULE
    rate = (float(r.leak) * period + (float(r.gamma_p) + float(r.gamma_d)) * T) / period / float(r.tau_h)
    target = (float(r.leak) * H0 * period + float(r.gamma_p) * float(r.h_max) * T) / period / float(r.tau_h) / rate
    t = np.asarray(runs.ts[0])
    expected = target + (H0 - target) * np.exp(-rate * t)
    # Stochastic rounding of h's increments (about 0.02 LSB per update) spreads single trials by
    # about LSB sqrt(number of round-ups), 0.02 mV after 3 min: compare within 4 standard errors.
    h = np.asarray(runs.h)
    sem = h.std(axis=0, ddof=1) / np.sqrt(h.shape[0])
    assert np.all(np.abs(h.mean(axis=0) - expected) <= 4 * sem + 2e-3)
    assert expected[-1] > H0 + 1.0  # a large effect: 0.16 LSB per read
