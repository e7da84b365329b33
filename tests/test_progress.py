"""Long runs in slices with a progress bar give the same results; compiled programs do not depend
on protocol durations; figures show themselves in Jupyter; run-time checks can be switched off."""

import logging

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ca_plast as cp
from ca_plast import fitting
from ca_plast._progress import Progress, in_chunks
from ca_plast._spikes import without_ticks
from ca_plast._validation import set_run_time_checks


def test_slices_with_progress_equal_one_call(getkey):
    """The bar's slices (here 32 and 8 protocols, padded to 32) give what one batched call gives:
    protocol i keeps its key."""
    rule = cp.gb2012_preset("DP")
    protocols = [cp.pairs(dt, 3, 5.0) for dt in np.linspace(-50.0, 50.0, 40)]
    key = getkey()
    whole = cp.stdp_ratios(rule, protocols, method="events", n_synapses=10, key=key)
    sliced = cp.stdp_ratios(rule, protocols, method="events", n_synapses=10, key=key, progress=True)
    np.testing.assert_array_equal(whole[0], sliced[0])
    np.testing.assert_array_equal(whole[1], sliced[1])


def test_in_chunks_pads_the_last_slice_and_keeps_keys():
    calls = []

    def fn(batch):
        values, keys = batch
        calls.append(values.shape[0])
        return values * 2, jax.vmap(lambda k: jax.random.uniform(k))(keys)

    values = jnp.arange(7.0)
    keys = jax.random.split(jax.random.key(0), 7)
    doubled, draws = in_chunks(fn, (values, keys), label="t", progress=True, chunks=3, delay=0.0)
    assert calls == [3, 3, 3]  # 7 elements: slices of 3, the last padded
    np.testing.assert_array_equal(doubled, 2 * np.arange(7.0))
    np.testing.assert_array_equal(draws, jax.vmap(lambda k: jax.random.uniform(k))(keys))


def test_progress_line_reports_time_left(capsys, monkeypatch):
    clock = iter([0.0, 10.0, 20.0, 30.0, 40.0])
    monkeypatch.setattr("ca_plast._progress.time.monotonic", lambda: next(clock))
    bar = Progress(True, 4, "job")  # started at 0 s
    bar.update(1)  # at 10 s: the first update (compilation included) starts the rate
    bar.update(2)  # at 20 s: one item per 10 s since then, two left
    bar.update(4, final=True)
    lines = capsys.readouterr().err.splitlines()
    assert lines[1] == "job [##########..........] 2/4  20.0 s, about 20 s left"
    assert lines[-1] == "job [####################] 4/4  30.0 s"


def test_progress_waits_for_its_delay(capsys):
    bar = Progress(True, 2, "quick", delay=60.0)
    bar.update(1)
    bar.update(2, final=True)
    assert capsys.readouterr().err == ""


def _compilations(caplog, run) -> int:
    caplog.clear()
    with jax.log_compiles(True), caplog.at_level(logging.WARNING):
        run()
    return sum("Compiling" in record.getMessage() for record in caplog.records)


def test_protocol_durations_do_not_recompile(caplog, getkey):
    """Nine pairing frequencies (nine durations), then nine others with the same spike counts: the
    closed form, density and event solvers and a whole closed-form fit compile nothing new."""
    rule = cp.gb2012_preset("DP")
    first = [cp.pairs(10.0, 3, f) for f in (1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0)]
    second = [cp.pairs(10.0, 3, f) for f in (1.5, 2.5, 3.5, 4.5, 5.5, 6.5, 7.5, 8.5, 9.5)]
    assert len({p.duration for p in first}) == 9
    key = getkey()

    def dataset(protocols):
        n = len(protocols)
        return fitting.Dataset(name="nine", modelling="pairs", modelling_note="", source="test",
                               labels=tuple(str(i) for i in range(n)), data=np.linspace(0.8, 1.3, n),
                               sem=np.full(n, 0.1), protocols=tuple(protocols), x=np.arange(n), x_label="i",
                               series=("a",) * n, panel=("a",) * n)

    def run(protocols):
        for method in ("closed-form", "density", "events"):
            cp.stdp_ratios(rule, protocols, method=method, n_synapses=10, key=key)
        fitting.fit(dataset(protocols), "DP", ["theta_p", "theta_d"], steps=3, n_starts=2, method="closed-form")

    run(first)
    assert _compilations(caplog, lambda: run(second)) == 0


def test_time_stepped_solvers_refuse_spikes_without_ticks():
    spikes = without_ticks(cp.to_spikes(cp.pairs(10.0, 3, 5.0)))
    with pytest.raises(ValueError, match="solve_scan: these spikes carry no tick count"):
        cp.solve_scan(cp.gb2012_preset("DP"), spikes, jnp.zeros(2))


def test_library_figures_show_as_images_in_jupyter():
    figure = cp.plot_stdp([-10.0, 10.0], [0.9, 1.2])
    assert isinstance(figure, cp.Figure) and figure._repr_png_()[:4] == b"\x89PNG"
    traces = {name: np.ones((2, 3)) for name in ("h_pct", "z_pct", "w_pct", "p")}
    assert isinstance(cp.plot_stc(np.arange(3.0), traces), cp.Figure)


def test_run_time_checks_can_be_switched_off(run_time_checks):
    """With the checks on, a traced negative time constant stops the run; off, it is not looked at
    (the command line checks every value before tracing)."""
    rule = cp.gb2012_preset("DP")
    spikes = cp.to_spikes(cp.pairs(10.0, 3, 5.0))
    bad = jax.jit(lambda tau: cp.closed_form_ratio(eqx.tree_at(lambda r: r.tau, rule, tau), spikes))
    with pytest.raises(Exception, match="tau"):
        jax.block_until_ready(bad(jnp.asarray(-1.0)))
    previous = set_run_time_checks(False)
    try:
        unchecked = jax.jit(lambda tau: cp.closed_form_ratio(eqx.tree_at(lambda r: r.tau, rule, tau), spikes))
        jax.block_until_ready(unchecked(jnp.asarray(-1.0)))  # computes, checks nothing
    finally:
        set_run_time_checks(previous)
