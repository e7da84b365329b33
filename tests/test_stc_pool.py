"""Several synapses onto one neuron sharing its protein pool (Luboeinski & Tetzlaff 2021): reduction
to one synapse, synaptic tagging and capture across synapses, the 0.2 ms fine-step reference, bad input."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import tree_allclose

import ca_plast as cp

HOUR = cp._stc_protocols.MS_PER_HOUR
RULE = cp.luboeinski_tetzlaff2021()
H0 = float(RULE.h0)


def _w_pct(rule, solution):
    return 100 * np.asarray(solution.h + rule.h0 * solution.z) / H0


def test_identical_synapses_with_scaled_theta_pro_behave_like_one():
    """N = 3 copies of one STET synapse with theta_pro x 3: sum_j |h_j - h0| = 3 |h - h0| throughout."""
    proto = cp.stc_protocol("STET", hours=0.25, settle=1000.0, poisson=True, seed=3)
    one = cp.solve_stc(RULE, cp.to_spikes(proto, unit=1.0), record_every=60_000.0)
    rule3 = eqx.tree_at(lambda r: r.theta_pro, RULE, 3 * RULE.theta_pro)
    three = cp.solve_stc(rule3, cp.to_spikes([proto] * 3, unit=1.0), record_every=60_000.0, synapses=True)
    assert three.h.shape == (one.h.size, 3) and three.p.shape == one.p.shape
    assert float(one.state.p) > 1e-3  # protein was made: the shared threshold mattered
    for j in range(3):
        np.testing.assert_allclose(three.h[:, j], one.h, rtol=1e-12)
        np.testing.assert_allclose(three.z[:, j], one.z, rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(three.p, one.p, rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(three.stats.time_pro, float(one.stats.time_pro), rtol=1e-9)
    np.testing.assert_allclose(three.stats.time_tag_ltp, float(one.stats.time_tag_ltp), rtol=1e-9)


def _two(onset_b, hours):
    """Synapse A: STET at 10 s; synapse B: WTET `onset_b` ms after A's first train."""
    a = cp.stc_protocol("STET", hours=hours, settle=10_000.0)
    b = cp.stc_protocol("WTET", hours=hours, settle=10_000.0 + onset_b)
    b = cp.Protocol(pre=b.pre, post=b.post, duration=a.duration, name=b.name)
    return a, b


def test_weak_synapse_captures_protein_made_by_strong_one():
    """Synaptic tagging and capture: WTET alone gives only early-LTP (no protein); 5 min after STET
    on a neighbour sharing the protein pool, the tagged weak synapse gets late-LTP."""
    a, b = _two(300_000.0, 4.0)
    pooled = cp.simulate_stc(RULE, [[a, b]], record_every=HOUR)
    alone = cp.simulate_stc(RULE, [b], record_every=HOUR)
    z_a, z_b = (float(x) for x in pooled.state.z[0])
    print(f"shared pool: z_A {z_a:.4f}, z_B {z_b:.4f}, p {float(pooled.state.p[0]):.4f}; "
          f"B alone: z {float(alone.state.z[0]):.4f}, p {float(alone.state.p[0]):.4f}")
    assert float(alone.state.p[0]) == 0.0 and float(alone.state.z[0]) == 0.0
    assert float(pooled.stats.time_tag_ltp[0, 1]) > 0.5 * HOUR  # B stayed tagged
    assert z_b > 0.1 and z_a > 0.1
    assert cp.OUTCOMES[int(cp.classify_outcome(RULE, z_b, pooled.stats.h_max[0, 1], pooled.stats.h_min[0, 1]))] == "late-LTP"
    assert cp.OUTCOMES[int(cp.classify_outcome(RULE, alone.state.z[0], alone.stats.h_max[0], alone.stats.h_min[0]))] == "early-LTP with tag"


def test_two_synapses_agree_with_fine_step_scan():
    """STET on A overlapping WTET on B (500 ms later), Poisson, noise off, 20 s, a neuron driven by
    both (threshold lowered to -62 mV so that it fires): exact events vs 0.2 ms Euler."""
    neuron = cp.LeakyIntegrateAndFire(V_th=-62.0)
    a = cp.stc_protocol("STET", hours=20_000.0 / HOUR, settle=1000.0, poisson=True, seed=5)
    b = cp.stc_protocol("WTET", hours=19_500.0 / HOUR, settle=1500.0, poisson=True, seed=6)
    b = cp.Protocol(pre=b.pre, post=b.post, duration=a.duration, name=b.name)
    kwargs = dict(neuron=neuron, record_every=1000.0, synapses=True)
    multi = cp.solve_stc(RULE, cp.to_spikes([a, b], unit=1.0), max_post_spikes=512, **kwargs)
    fine = cp.solve_stc_fine(RULE, cp.to_spikes([a, b], unit=0.2), **kwargs)
    gap = np.max(np.abs(_w_pct(RULE, multi) - _w_pct(RULE, fine)))
    print(f"max |w difference| {gap:.4f} % of h0; p {float(multi.state.p):.3e} vs {float(fine.state.p):.3e}; "
          f"protein on {float(multi.stats.time_pro[0]):.1f} vs {float(fine.stats.time_pro[0]):.1f} ms; "
          f"post spikes {int(multi.n_post)} vs {int(fine.n_post)}")
    assert gap < 0.5
    assert float(multi.state.p) > 0 and float(multi.state.p) == pytest.approx(float(fine.state.p), rel=0.01)
    assert float(multi.stats.time_pro[0]) == pytest.approx(float(fine.stats.time_pro[0]), rel=0.01)
    assert int(multi.n_late) == 0 and int(multi.n_post) > 10
    assert abs(int(multi.n_post) - int(fine.n_post)) <= 0.02 * int(fine.n_post) + 2


def test_noise_keys_jit_vmap_loop():
    a, b = _two(200.0, 0.05)
    key = jax.random.key(4)
    batch = cp.simulate_stc(RULE, [[a, b], [b, a]], key=key, record_every=60_000.0)
    solve = eqx.filter_jit(lambda sp, k: cp.solve_stc(RULE, sp, key=k, record_every=60_000.0, synapses=True))
    for i, pair in enumerate([[a, b], [b, a]]):
        one = solve(cp.to_spikes(pair, unit=1.0), jax.random.fold_in(key, i))
        assert tree_allclose(jax.tree.map(lambda x: x[i], batch), one, rtol=1e-12, atol=1e-12)
    other = cp.simulate_stc(RULE, [[a, b], [b, a]], key=jax.random.key(5), record_every=60_000.0)
    assert not np.allclose(batch.h[:, -1], other.h[:, -1])


def test_protein_crossing_with_unequal_rates_matches_root_finding_and_its_gradient():
    """A driven (calcium above theta_p all along, 0.35 s) and B quiet (1.9 h): the sum crosses
    theta_pro inside the step; compare with scipy's brentq on the closed-form h paths, and the
    derivative (bisection + Newton step) with a central finite difference."""
    from scipy.optimize import brentq

    s, d0 = 40.0, np.array([1.5, 0.5])
    c0 = jnp.asarray([3.0 * np.exp(s / 48.8) * 1.001, 0.0])

    @jax.jit
    def protein(theta_pro):
        rule = eqx.tree_at(lambda r: r.theta_pro, RULE, theta_pro)
        state = cp.STCState(h=RULE.h0 + jnp.asarray(d0), p=jnp.asarray(0.0), z=jnp.zeros(2))
        new, stats = rule.step(state, c0, jnp.asarray(s))
        return new.p, stats.time_pro[0]

    (h_inf_a, tau_a), (_, tau_b) = (RULE.regime(True, True), RULE.regime(False, False))
    h_inf_a, tau_a, tau_b = float(h_inf_a), float(tau_a), float(tau_b)

    def gap(t, theta):
        d_a = h_inf_a - H0 + (d0[0] + H0 - h_inf_a) * np.exp(-t / tau_a)
        return abs(d_a) + abs(d0[1] * np.exp(-t / tau_b)) - theta

    theta = float(RULE.theta_pro)
    crossing = brentq(gap, 0.0, s, args=(theta,), xtol=1e-14)
    p, time_pro = protein(RULE.theta_pro)
    assert 5.0 < crossing < 35.0
    assert float(time_pro) == pytest.approx(s - crossing, abs=1e-9)
    assert float(p) == pytest.approx(-np.expm1(-(s - crossing) / float(RULE.tau_p)), rel=1e-9)
    grad = float(jax.grad(lambda th: protein(th)[0])(RULE.theta_pro))
    eps = 1e-6
    fd = (float(protein(RULE.theta_pro + eps)[0]) - float(protein(RULE.theta_pro - eps)[0])) / (2 * eps)
    assert grad == pytest.approx(fd, rel=1e-5)


def _mismatched_durations():
    a, b = _two(0.0, 0.05)
    return cp.simulate_stc(RULE, [[a, cp.Protocol(pre=b.pre, post=b.post, duration=b.duration + 1.0)]])


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: cp.simulate_stc(RULE, [[cp.stc_protocol("WTET", hours=0.01)] * 2, [cp.stc_protocol("WTET", hours=0.01)]]),
         "same number"),
        (_mismatched_durations, "must share the duration"),
        (lambda: cp.solve_stc(RULE, cp.to_spikes(cp.stc_protocol("WTET", hours=0.01), unit=1.0), synapses=True),
         "expected spikes batched over the synapses"),
        (lambda: cp.solve_stc_fine(RULE, cp.to_spikes(cp.stc_protocol("WTET", hours=0.01), unit=0.2), synapses=True),
         "expected spikes batched over the synapses"),
        (lambda: RULE.step(RULE.init(3), jnp.zeros(2), jnp.asarray(1.0)), "c0 need one shape"),
        (lambda: RULE.init(0), "n_synapses must be a whole number >= 1"),
    ],
)
def test_bad_input_raises_value_error_naming_it(call, message):
    with pytest.raises(ValueError, match=message):
        call()
