"""Protocol builders against the experiments' descriptions; spike arrays; validation."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ca_plast as cp
from ca_plast._spikes import event_sequence


def test_pairs_timing_and_duration():
    p = cp.pairs(-10.0, n=60, freq=1.0)
    assert p.pre.size == p.post.size == 60
    np.testing.assert_allclose(p.post - p.pre, -10.0)
    np.testing.assert_allclose(np.diff(p.pre), 1000.0)
    assert p.duration == 60_000.0
    assert p.post[0] == 0.0


def test_wittenberg_wang_burst_dt_to_second_ap():
    p = cp.burst(15.0, n=100, freq=5.0)
    assert p.pre.size == 100 and p.post.size == 200
    np.testing.assert_allclose(p.post[1::2] - p.pre, 15.0)
    np.testing.assert_allclose(p.post[1::2] - p.post[::2], 11.5)
    assert p.duration == 20_000.0


def test_nevian_sakmann_burst_dt_to_first_ap():
    p = cp.burst(-30.0, n=60, freq=0.1, n_post=3, interval=20.0, reference="first")
    first = p.post[::3]
    np.testing.assert_allclose(first - p.pre, -30.0)
    np.testing.assert_allclose(p.post[2::3] - first, 40.0)
    assert p.duration == 600_000.0


def test_sjostrom_trains():
    p = cp.trains(10.0, freq=20.0)
    assert p.pre.size == 75
    np.testing.assert_allclose(p.pre[:5], [0, 50, 100, 150, 200])
    np.testing.assert_allclose(p.pre[5] - p.pre[0], 10_000.0)
    np.testing.assert_allclose(p.post - p.pre, 10.0)
    assert p.duration == 150_000.0


def test_random_pairs_reproducible_and_in_range():
    a = cp.random_pairs(20.0, n=75, seed=3)
    b = cp.random_pairs(20.0, n=75, seed=3)
    np.testing.assert_array_equal(a.post, b.post)
    dts = a.post - a.pre
    assert np.all((dts >= -15.0) & (dts <= 15.0))
    assert not np.array_equal(a.post, cp.random_pairs(20.0, n=75, seed=4).post)


def test_triplets_and_quadruplets():
    t = cp.triplet("pre-post-pre", 5.0, -15.0, n=2)
    np.testing.assert_allclose(t.post[0] - t.pre[:2], [5.0, -15.0])
    t = cp.triplet("post-pre-post", -10.0, 10.0, n=2)
    np.testing.assert_allclose(t.post[:2] - t.pre[0], [-10.0, 10.0])
    q = cp.quadruplet(83.7, n=1)
    # post-pre pair (-5 ms) first, pre-post pair (+5 ms) whose centre is T later.
    np.testing.assert_allclose(q.post - q.pre, [-5.0, 5.0])
    np.testing.assert_allclose((q.pre[1] + q.post[1]) / 2 - (q.pre[0] + q.post[0]) / 2, 83.7)
    q = cp.quadruplet(-88.5, n=1)
    np.testing.assert_allclose(q.post - q.pre, [5.0, -5.0])


def test_poisson_rates():
    p = cp.poisson(10.0, 5.0, 1_000_000.0, seed=0)
    assert abs(p.pre.size - 10_000) < 5 * 100
    assert abs(p.post.size - 5_000) < 5 * 71


def test_to_spikes_ticks_offsets_and_padding():
    protocols = [cp.pairs(10.0, 2, 10.0), cp.pairs(-3.33, 5, 10.0)]
    s = cp.to_spikes(protocols, unit=0.1)
    assert s.pre_tick.shape == (2, 5)
    times = np.asarray(s.pre_tick) * 0.1 + np.asarray(s.pre_offset)
    np.testing.assert_allclose(times[1], protocols[1].pre, atol=1e-9)
    assert np.asarray(s.pre_mask).sum(axis=1).tolist() == [2, 5]
    assert np.all((np.asarray(s.pre_offset) >= 0) & (np.asarray(s.pre_offset) < 0.1))
    assert s.n_ticks == 5000


def test_long_protocol_times_are_exact_in_float32_form():
    """8 h = 2.88e7 ms: float32 resolves ~2 ms there, the tick form keeps 0.1 ms offsets exact."""
    t = 8 * 3600e3 - 0.05
    s = cp.to_spikes(cp.Protocol(pre=[t], post=[], duration=8 * 3600e3), unit=0.1)
    assert int(s.pre_tick[0]) == 287_999_999
    assert abs(float(s.pre_offset[0]) - 0.05) < 1e-6


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(pre=[5.0, 1.0], post=[], duration=10.0), "pre spike times must be sorted"),
        (dict(pre=[-1.0], post=[], duration=10.0), "pre spike times must be >= 0"),
        (dict(pre=[], post=[12.0], duration=10.0), "post spike times must be < duration"),
        (dict(pre=[float("nan")], post=[], duration=10.0), "pre spike times must be finite"),
        (dict(pre=[], post=[], duration=0.0), "duration must be"),
    ],
)
def test_protocol_rejects_bad_times(kwargs, match):
    with pytest.raises(ValueError, match=match):
        cp.Protocol(**kwargs)


def test_builders_reject_bad_arguments():
    with pytest.raises(ValueError, match="frequency must be"):
        cp.pairs(10.0, 60, -1.0)
    with pytest.raises(ValueError, match="whole number >= 1"):
        cp.pairs(10.0, 0)
    with pytest.raises(ValueError, match="longer than the period"):
        cp.pairs(2000.0, 5, 1.0)
    with pytest.raises(ValueError, match="unit .* must be > 0"):
        cp.to_spikes(cp.pairs(10.0), unit=0.0)
    with pytest.raises(ValueError, match="unit .* must be > 0"):
        cp.to_spikes(cp.pairs(10.0), unit=-0.1)
    with pytest.raises(ValueError, match="kind must be"):
        cp.triplet("pre-pre-post", 1.0, 2.0)


def test_offsets_stay_in_range_at_rounding_edges():
    times = np.array([1000.05, 0.3, 0.7, 123456.789, 2.9999999999999996])
    for unit in (0.01, 0.1, 0.3):
        s = cp.to_spikes(cp.Protocol(pre=np.sort(times), post=[], duration=2e5), unit=unit)
        offset = np.asarray(s.pre_offset)
        assert np.all((offset >= 0) & (offset < unit))
        np.testing.assert_allclose(np.asarray(s.pre_tick) * unit + offset, np.sort(times), rtol=0, atol=1e-9)


def _sorted_reference(spikes, D, grid):
    """The merged sequence by a plain sort (numpy): keys tick, offset (-inf for a grid point,
    which opens its tick), kind; intervals from the exact times."""
    unit = spikes.unit
    total = np.asarray(spikes.pre_offset) + D
    pre_tick = np.asarray(spikes.pre_tick) + np.floor(total / unit).astype(int)
    pre_offset = total - np.floor(total / unit) * unit
    end_tick, end_offset = int(spikes.end_tick), float(spikes.end_offset)
    rows = []  # (tick, sort key, kind, offset, acts)
    for tick, offset, mask, kind in [*zip(pre_tick, pre_offset, np.asarray(spikes.pre_mask), [0] * pre_tick.size),
                                     *zip(np.asarray(spikes.post_tick), np.asarray(spikes.post_offset),
                                          np.asarray(spikes.post_mask), [1] * spikes.post_tick.size)]:
        past = tick > end_tick or (tick == end_tick and offset > end_offset)
        tick, offset = (end_tick, end_offset) if past else (int(tick), float(offset))
        rows.append((tick, offset, kind, offset, bool(mask) and not past))
    rows.append((end_tick, end_offset, 2, end_offset, True))
    rows += [(int(g), -np.inf, 3, 0.0, True) for g in grid]
    rows.sort(key=lambda r: (r[0], r[1], r[2]))
    ticks = np.array([r[0] for r in rows])
    offsets = np.array([r[3] for r in rows])
    times_ = ticks * unit + offsets
    return np.diff(times_, prepend=0.0), np.array([r[2] for r in rows]), np.array([r[4] for r in rows])


@pytest.mark.parametrize("D", [0.0, 13.7])
def test_event_sequence_merges_a_grid_as_a_sort_would(D):
    """Grid points merged by position equal a plain sort of everything, ties included: grid
    points on spike ticks, delayed arrivals on grid ticks, padding and arrivals past the end."""
    rng = np.random.default_rng(3)
    pre = np.sort(np.concatenate([rng.uniform(0, 60, 15), [5.0, 10.0, 59.9]]))
    post = np.sort(np.concatenate([rng.uniform(0, 60, 12), [10.0, 20.0]]))
    spikes = cp.to_spikes([cp.Protocol(pre=pre, post=post, duration=61.3),
                           cp.Protocol(pre=pre[:4], post=post[:2], duration=20.0)], unit=0.5)
    merge = eqx.filter_jit(event_sequence)  # one compilation per grid, not per operation
    for i, every in ((0, 10), (1, 3), (0, 1)):
        one = jax.tree.map(lambda x, i=i: x[i], spikes)
        n_steps = int(one.end_tick) + (float(one.end_offset) > 0)
        grid = np.minimum(np.arange(1, -(-spikes.n_ticks // every) + 1) * every, n_steps)  # the last ones clamp
        intervals, kinds, acts = merge(one, jnp.asarray(D), jnp.asarray(grid))
        ref_intervals, ref_kinds, ref_acts = _sorted_reference(one, D, grid)
        np.testing.assert_array_equal(np.asarray(kinds), ref_kinds)
        np.testing.assert_array_equal(np.asarray(acts), ref_acts)
        np.testing.assert_allclose(np.asarray(intervals), ref_intervals, rtol=0, atol=1e-9)


def test_event_sequence_refuses_an_unsorted_grid():
    spikes = cp.to_spikes(cp.Protocol(pre=[1.0, 5.0], post=[2.0], duration=10.0), unit=0.1)
    with pytest.raises(ValueError, match="non-decreasing"):
        event_sequence(spikes, jnp.asarray(0.0), jnp.asarray([60, 20]))
