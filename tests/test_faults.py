"""Bad input and faults: output files, Ctrl-C, corrupt checkpoints, limits and API misuse.

Every case asserts the exit status (command line) or the error (Python API), that the message
is one line without a traceback, and that nothing but the paths the user named was touched.
"""

import fcntl
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ca_plast.fitting import _fit

import ca_plast as cp
from ca_plast import fitting
from ca_plast._cli import main
from ca_plast._output import output_target, write_file

CA_PLAST = Path(sys.executable).with_name("ca-plast")
SMALL = ["stdp", "--preset", "DP", "--dt-range", "0:10:10"]  # two closed-form points: quick
FIT = ["fit", "--dataset", "sjostrom2001", "--init", "DP"]


def one_line(err: str) -> str:
    """The only non-empty line of `err` (a one-line error, no traceback)."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def snapshot(folder: Path) -> dict:
    """Everything under `folder`: type, mode and content (or link target) of each path."""
    out = {}
    for path in sorted(folder.rglob("*")):
        info = path.lstat()
        if stat.S_ISLNK(info.st_mode):
            out[path] = ("link", os.readlink(path))
        elif stat.S_ISREG(info.st_mode):
            out[path] = ("file", stat.S_IMODE(info.st_mode), path.read_bytes())
        else:
            out[path] = (stat.S_IFMT(info.st_mode), stat.S_IMODE(info.st_mode))
    return out


# --- output files ------------------------------------------------------------------------

@pytest.mark.parametrize("make, option, message", [
    (lambda d: (d / "folder").mkdir() or d / "folder", "--csv", "is a folder"),
    (lambda d: d / "missing" / "out.csv", "--csv", "does not exist"),
    (lambda d: "", "--csv", "empty path"),
    (lambda d: d / "curve.xyz", "--plot", "extension 'xyz'; valid extensions:"),
    (lambda d: d / "curve", "--plot", "no extension; valid extensions:"),
    (lambda d: "-", "--plot", "cannot write to standard output"),
])
def test_unusable_output_paths_are_refused_before_anything_runs(tmp_path, capsys, make, option, message):
    target = make(tmp_path)
    before = snapshot(tmp_path)
    # The CSV is named too: it must not be written when the plot path is refused.
    argv = SMALL + [option, str(target)] + (["--csv", str(tmp_path / "ok.csv")] if option == "--plot" else [])
    assert main(argv) == 2
    line = one_line(capsys.readouterr().err)
    assert line.startswith("ca-plast stdp: ") and message in line
    assert option in line
    assert snapshot(tmp_path) == before


def test_links_are_written_through_and_stay_links(tmp_path):
    real = tmp_path / "real.csv"
    real.write_text("old\n")
    link = tmp_path / "link.csv"
    link.symlink_to(real)
    dangling = tmp_path / "dangling.pdf"
    dangling.symlink_to(tmp_path / "new.pdf")
    assert main(SMALL + ["--csv", str(link), "--plot", str(dangling)]) == 0
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert real.read_text().startswith("dt_ms,ratio,sem\n0,")
    assert dangling.is_symlink() and (tmp_path / "new.pdf").read_bytes()[:4] == b"%PDF"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dangling.pdf", "link.csv", "new.pdf", "real.csv"]


def test_named_pipes_are_written_not_replaced(tmp_path):
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    received = []
    reader = threading.Thread(target=lambda: received.append(pipe.read_text()))
    reader.start()
    assert main(SMALL + ["--csv", str(pipe)]) == 0
    reader.join(timeout=60)
    assert stat.S_ISFIFO(pipe.lstat().st_mode)
    assert received and received[0].startswith("dt_ms,ratio,sem\n")


def test_devices_are_streams_and_other_special_files_are_refused(tmp_path):
    # Checked, not written: a regression here must not replace /dev/null on the test machine.
    assert output_target("/dev/null", "--csv").kind == "stream"
    sock_path = tmp_path / "s"
    import socket

    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(sock_path))
        with pytest.raises(ValueError, match="--csv '.*s' is a socket"):
            output_target(str(sock_path), "--csv")


def test_dash_is_standard_output(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(SMALL + ["--csv", "-"]) == 0
    assert capsys.readouterr().out.startswith("dt_ms,ratio,sem\n")
    assert list(tmp_path.iterdir()) == []


def test_writer_respects_the_umask_and_keeps_an_existing_mode(tmp_path):
    previous = os.umask(0o027)
    try:
        write_file(tmp_path / "new.csv", b"x")
        existing = tmp_path / "old.csv"
        existing.write_text("y")
        existing.chmod(0o604)
        write_file(existing, b"z")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "new.csv").stat().st_mode) == 0o640
    assert stat.S_IMODE(existing.stat().st_mode) == 0o604 and existing.read_bytes() == b"z"


@pytest.mark.parametrize("fault", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_a_failed_write_leaves_the_target_as_it_was(tmp_path, monkeypatch, fault):
    target = tmp_path / "fit.json"
    target.write_text("before")

    def fail(*args):
        raise fault

    monkeypatch.setattr(os, "fsync", fail)
    with pytest.raises(type(fault)) as raised:
        write_file(target, b"after")
    if isinstance(fault, OSError):
        assert str(raised.value) == f"cannot write {target}: No space left on device"
    assert target.read_text() == "before" and [p.name for p in tmp_path.iterdir()] == ["fit.json"]


# --- fits: existing results, locks, checkpoints, Ctrl-C -------------------------------------

def test_an_existing_fit_is_not_overwritten(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "fit.json").write_text("{}")
    (out / "checkpoint.npz").write_bytes(b"earlier run")
    before = snapshot(tmp_path)
    assert main(FIT + ["--out", str(out)]) == 2
    line = one_line(capsys.readouterr().err)
    assert "already holds a fit (checkpoint.npz, fit.json)" in line and "--resume" in line and "--force" in line
    after = snapshot(tmp_path)
    after.pop(out / ".ca-plast-fit.lock")
    assert after == before
    assert main(FIT + ["--out", str(out), "--resume", "--force"]) == 2
    assert "give one of them" in one_line(capsys.readouterr().err)


def test_a_report_path_that_is_a_folder_is_refused_before_the_fit(tmp_path, capsys):
    out = tmp_path / "out"
    (out / "fit.png").mkdir(parents=True)
    before = snapshot(tmp_path)
    assert main(FIT + ["--out", str(out), "--force"]) == 2
    assert f"--out '{out / 'fit.png'}' is a folder" in one_line(capsys.readouterr().err)
    after = snapshot(tmp_path)
    after.pop(out / ".ca-plast-fit.lock")
    assert after == before


def test_force_replaces_only_the_fit_and_ctrl_c_before_a_checkpoint_says_so(tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    for name in ("fit.json", "fit.png", "checkpoint.npz", "checkpoint_density.npz", "notes.txt"):
        (out / name).write_text("earlier")

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(_fit, "fit", interrupted)
    assert main(FIT + ["--out", str(out), "--force"]) == 130
    line = one_line(capsys.readouterr().err)
    assert line == f"ca-plast fit: interrupted before the first checkpoint was written (screening starts); nothing to resume in {out}"
    assert sorted(p.name for p in out.iterdir()) == [".ca-plast-fit.lock", "notes.txt"]


def test_ctrl_c_after_a_checkpoint_names_it(tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"

    def saves_then_interrupted(*args, checkpoint, **kwargs):
        Path(checkpoint).write_bytes(b"progress")
        raise KeyboardInterrupt

    monkeypatch.setattr(_fit, "fit", saves_then_interrupted)
    assert main(FIT + ["--out", str(out)]) == 130
    line = one_line(capsys.readouterr().err)
    assert line == f"ca-plast fit: interrupted; progress saved in {out / 'checkpoint.npz'}; continue with --resume"


def test_a_second_fit_in_the_same_folder_is_refused(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    with open(out / ".ca-plast-fit.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        held.write("pid 4242\n")
        held.flush()
        assert main(FIT + ["--out", str(out)]) == 2
    line = one_line(capsys.readouterr().err)
    assert "another fit (pid 4242) is running in --out" in line
    assert [p.name for p in out.iterdir()] == [".ca-plast-fit.lock"]


def _checkpoint(path: Path, **changes) -> tuple[dict, dict]:
    """A valid checkpoint of a small state at `path`; returns the state and meta to load it with."""
    state = {"u": np.arange(3.0), "count": np.array(7)}
    meta = {"format": _fit.CHECKPOINT_FORMAT, "dataset": "sjostrom2001", "seed": 0}
    _fit._save_checkpoint(path, state, [3.0, 2.0], 1.5, meta | changes)
    return state, meta


def _rewrite(path: Path, **arrays) -> None:
    """Replace some arrays of an .npz file, keeping the rest (and so its stored checksum)."""
    with np.load(path) as stored:
        content = {name: stored[name] for name in stored.files} | arrays
    np.savez(path, **content)


CORRUPTIONS = {
    "truncated": lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]),
    "not a zip": lambda p: p.write_bytes(b"\x00garbage" * 100),
    "empty": lambda p: p.write_bytes(b""),
    "another program's npz": lambda p: np.savez(p, weights=np.ones(3)),
    "pickled objects": lambda p: np.savez(p, kind=np.array([{"evil": 1}], dtype=object)),
    "tampered": lambda p: _rewrite(p, history=np.array([3.0, 1.0])),
}


@pytest.mark.parametrize("how", CORRUPTIONS)
def test_corrupt_checkpoints_are_one_line_errors(tmp_path, how):
    path = tmp_path / "checkpoint.npz"
    state, meta = _checkpoint(path)
    assert _fit._load_checkpoint(path, state, meta)[1] == [3.0, 2.0]
    CORRUPTIONS[how](path)
    with pytest.raises(ValueError) as raised:
        _fit._load_checkpoint(path, state, meta)
    message = str(raised.value)
    assert "\n" not in message and str(path) in message and "pickle" not in message
    assert "start afresh" in message


def test_a_checkpoint_of_another_fit_or_shape_is_refused(tmp_path):
    path = tmp_path / "checkpoint.npz"
    state, meta = _checkpoint(path, seed=5)
    with pytest.raises(ValueError, match="belongs to a different fit: seed was 5, now 0"):
        _fit._load_checkpoint(path, state, meta)
    state, meta = _checkpoint(path)
    with pytest.raises(ValueError, match="does not hold this fit's optimiser state"):
        _fit._load_checkpoint(path, {"u": np.arange(4.0), "count": np.array(7)}, meta)


def test_resume_from_a_corrupt_checkpoint_on_the_command_line(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "checkpoint.npz").write_bytes(b"PK\x03\x04 truncated")
    before = snapshot(out)
    assert main(FIT + ["--out", str(out), "--resume", "--steps", "5", "--starts", "2"]) == 2
    line = one_line(capsys.readouterr().err)
    assert line.startswith(f"ca-plast fit: checkpoint {out / 'checkpoint.npz'} cannot be read")
    after = snapshot(out)
    after.pop(out / ".ca-plast-fit.lock")
    assert after == before


# --- Ctrl-C in a real process ------------------------------------------------------------

def _interrupt(argv: list[str], folder: Path, after: float | None = None, when=None) -> tuple[int, str]:
    """Run `ca-plast argv` in `folder`, send SIGINT `after` seconds (or once `when()` is true)."""
    process = subprocess.Popen([str(CA_PLAST), *argv], cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    started = time.monotonic()
    while process.poll() is None and (when() if when else time.monotonic() - started >= after) is False:
        time.sleep(0.05)
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    return process.returncode, err


@pytest.mark.parametrize("after", [0.3, 1.5, 4.0])
def test_ctrl_c_in_stdp_exits_130_with_one_line(tmp_path, after):
    # Start-up (imports), compilation and simulation of a run that takes far longer than 4 s.
    rc, err = _interrupt(["stdp", "--preset", "DP", "--method", "events", "--trials", "200000", "--csv", "out.csv"],
                         tmp_path, after)
    assert rc == 130
    assert one_line(err) in ("ca-plast: interrupted; nothing written", "ca-plast stdp: interrupted; nothing written")
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_in_a_fit_reports_what_it_saved(tmp_path):
    out = tmp_path / "out"
    started = time.time()
    # The checkpoint appears at step 100 of 300; the simulated check and the report take seconds more.
    rc, err = _interrupt(FIT + ["--out", str(out), "--starts", "4", "--free", "theta_p,theta_d", "--method",
                                "closed-form", "--steps", "300"], tmp_path, when=lambda: (out / "checkpoint.npz").exists())
    assert rc == 130
    line = one_line(err.splitlines()[-1])
    saved = line.removeprefix("ca-plast fit: interrupted; progress saved in ").removesuffix("; continue with --resume")
    assert saved == str(out / "checkpoint.npz")
    assert Path(saved).stat().st_mtime >= started - 1
    assert not [p for p in out.iterdir() if p.suffix == ".tmp" or p.name.startswith("fit.")]


# --- limits --------------------------------------------------------------------------------

@pytest.mark.parametrize("argv, message", [
    (["stdp", "--preset", "DP", "--pairs", "100000000"], "lower --pairs or raise --freq or --step-ms"),
    (["stdp", "--preset", "DP", "--freq", "1e-9"], "lower --pairs or raise --freq or --step-ms"),
    (["stdp", "--preset", "DP", "--method", "scan", "--step-ms", "1e-7"], "steps of --step-ms 1e-07 ms"),
    (["stdp", "--preset", "DP", "--method", "events", "--trials", "1000000000"],
     "GiB allowed (half of this machine's memory); lower --trials, --pairs or the number of --dt-range points"),
    (["stdp", "--preset", "DP", "--dt-range=-1e308:1e308:1e308"], "gives inf points; at most 10000"),
    (["stdp", "--preset", "DP", "--dt-range", "0:1e308:1e307"], "shorter than the pairing period 1000 ms"),
    (["stdp", "--preset", "DP", "--method", ""], "unknown --method ''"),
    (["stdp", "--preset", "DP", "--seed", "-1"], "--seed: must be a whole number from 0 to 4294967295, got '-1'"),
    (["stdp", "--preset", "DP", "--seed", str(2**32)], "--seed: must be a whole number from 0 to 4294967295"),
    (["stc", "--protocol", "STET", "--seed", str(10**30)], "--seed: must be a whole number from 0 to 4294967295"),
    (["stc", "--protocol", "STET", "--hours", "1e300"], "--hours must be > 0 and at most 596"),
    (["stc", "--protocol", "STET", "--trials", "100000000"], "lower --trials or --hours"),
    (FIT + ["--seed", str(2**32)], "--seed: must be a whole number from 0 to 4294967295"),
    (FIT + ["--starts", "100000000"], "lower --starts"),
    (FIT + ["--steps", "10000000"], "--steps must be >= 1 and <= 1000000"),
])
def test_limits_are_checked_up_front(tmp_path, capsys, argv, message):
    out = ["--out", str(tmp_path / "out")] if argv[0] == "fit" else ["--csv", str(tmp_path / "out.csv")]
    assert main(argv + out) == 2
    line = one_line(capsys.readouterr().err)
    assert line.startswith(f"ca-plast {argv[0]}") and message in line
    assert list(tmp_path.iterdir()) == []


# --- the Python API --------------------------------------------------------------------------

BAD_RULES = {
    "tau": (lambda r: r.tau, -1.0, "GraupnerBrunel2012.tau must be > 0 ms"),
    "tau_ca": (lambda r: r.calcium.tau_ca, -5.0, "LinearCalcium.tau_ca must be > 0 ms"),
    "sigma": (lambda r: r.sigma, np.nan, "GraupnerBrunel2012.sigma must be >= 0"),
    "theta_d": (lambda r: r.theta_d, -0.5, "GraupnerBrunel2012.theta_d must be > 0"),
}


def test_rules_changed_after_construction_are_checked_by_every_solver(run_time_checks):
    spikes = cp.to_spikes(cp.pairs(10.0, 3, 1.0))
    rho0 = jnp.zeros(4)
    solvers = {
        "closed_form_ratio": lambda rule: cp.closed_form_ratio(rule, spikes),
        "solve_events": lambda rule: cp.solve_events(rule, spikes, rho0, key=jax.random.key(0)).rho,
        "solve_scan": lambda rule: cp.solve_scan(rule, spikes, rho0, key=jax.random.key(0)).rho,
        "solve_density": lambda rule: cp.solve_density(rule, spikes).up,
        "solve_hardware": lambda rule: cp.solve_hardware(rule, spikes, rho0, hardware=cp.BSS2(), key=jax.random.key(0)).rho,
    }
    compiled = {name: eqx.filter_jit(solve) for name, solve in solvers.items()}  # one compilation per solver
    gradient = eqx.filter_jit(eqx.filter_grad(solvers["closed_form_ratio"]))
    for where, value, message in BAD_RULES.values():
        rule = eqx.tree_at(where, cp.gb2012_preset("DP"), jnp.asarray(value))
        field = message.split(" ")[0].split(".")[1]
        for name, solve in solvers.items():
            # Eager: at once, naming the value.
            with pytest.raises(ValueError, match=f"{name}: .*: {field} must be"):
                solve(rule)
            # Traced (jit, and under grad): when the computation runs, naming the field and the range.
            with pytest.raises(Exception, match=f"{name}: {message}"):
                jax.block_until_ready(compiled[name](rule))
        with pytest.raises(Exception, match=f"closed_form_ratio: {message}"):
            jax.block_until_ready(gradient(rule))
    good = cp.gb2012_preset("DP")
    for name, solve in compiled.items():
        assert np.all(np.isfinite(np.asarray(solve(good)))), name


def test_stc_rules_and_neurons_are_checked_at_run_time(run_time_checks):
    rule = eqx.tree_at(lambda r: r.tau_p, cp.luboeinski_tetzlaff2021(), jnp.asarray(-1.0))
    protocol = cp.stc_protocol("WTET", hours=0.01, settle=0.0)
    with pytest.raises(ValueError, match="solve_stc: LuboeinskiTetzlaff2021: tau_p must be > 0 ms"):
        cp.solve_stc(rule, cp.to_spikes(protocol, unit=1.0), key=jax.random.key(0))
    with pytest.raises(Exception, match="solve_stc: LuboeinskiTetzlaff2021.tau_p must be > 0 ms"):
        cp.simulate_stc(rule, [protocol], key=jax.random.key(0))
    neuron = eqx.tree_at(lambda n: n.tau_mem, cp.LeakyIntegrateAndFire(), jnp.asarray(np.nan))
    with pytest.raises(ValueError, match="solve_stc: LeakyIntegrateAndFire: tau_mem must be finite, got nan"):
        cp.solve_stc(cp.luboeinski_tetzlaff2021(), cp.to_spikes(protocol, unit=1.0), key=jax.random.key(0), neuron=neuron)


def test_whole_float_synapse_counts_are_accepted():
    rule, spikes = cp.gb2012_preset("DP"), cp.to_spikes(cp.pairs(10.0, 3, 1.0))
    ratio, sem = cp.events_ratio(rule, spikes, 50.0, key=jax.random.key(0))
    assert np.isfinite(ratio) and np.isfinite(sem)


@pytest.mark.parametrize("n", [0, -3, 2.5, True])
def test_synapse_counts_are_checked(n):
    rule, spikes = cp.gb2012_preset("DP"), cp.to_spikes(cp.pairs(10.0, 3, 1.0))
    for name, ratio in (("scan_ratio", cp.scan_ratio), ("events_ratio", cp.events_ratio)):
        with pytest.raises(ValueError, match=f"{name}: n_synapses must be a whole number >= 1, got {n!r}"):
            ratio(rule, spikes, n, key=jax.random.key(0))
    with pytest.raises(ValueError, match="stdp_ratios: n_synapses must be a whole number >= 1"):
        cp.stdp_ratios(rule, [cp.pairs(10.0, 3, 1.0)], method="events", n_synapses=n, key=jax.random.key(0))


def test_sizes_beyond_memory_are_refused_with_the_option_to_change():
    with pytest.raises(ValueError, match=r"stdp_ratios \(events, 1 protocols of up to 6 spikes, 1000000000000 "
                                         r"synapses per state\) would allocate about .* GiB.*fewer synapses \(n_synapses\)"):
        cp.stdp_ratios(cp.gb2012_preset("DP"), [cp.pairs(10.0, 3, 1.0)], method="events", n_synapses=10**12,
                       key=jax.random.key(0))


@pytest.mark.parametrize("data, sem, message", [
    ([np.nan, 1.0], [0.1, 0.1], "the ratio (after / before) of point 'a' must be a finite number > 0, got nan"),
    ([1.0, -0.2], [0.1, 0.1], "the ratio (after / before) of point 'b' must be a finite number > 0, got -0.2"),
    ([1.0, 1.0], [0.1, np.inf], "the error of point 'b' must be a finite number > 0, got inf"),
])
def test_datasets_reject_non_finite_or_negative_data(data, sem, message):
    with pytest.raises(ValueError) as raised:
        fitting.Dataset(name="mine", modelling="pairs", modelling_note="", source="test", labels=("a", "b"),
                        data=np.array(data), sem=np.array(sem), protocols=(cp.pairs(10.0, 3, 1.0),) * 2,
                        x=np.zeros(2), x_label="dt (ms)", series=("s", "s"), panel=("p", "p"))
    assert str(raised.value) == f"Dataset 'mine': {message}"


def test_other_arguments_and_sizes_are_checked():
    with pytest.raises(ValueError, match="random_pairs: need finite dt_low <= dt_high"):
        cp.random_pairs(1.0, dt_low=5.0, dt_high=-5.0, seed=0)
    with pytest.raises(ValueError, match=r"to_spikes: a protocol of 6e\+13 ms has more than 2\*\*31 - 1 ticks of 0.1 ms; "
                                         r"use a longer tick"):
        cp.to_spikes(cp.pairs(10.0, 60, 1e-9))
    with pytest.raises(ValueError, match=r"simulate_stc \(1000 synapse trials of up to 20 spikes, 28800001 records\) "
                                         r"would allocate about .* GiB.*coarser record_every"):
        cp.simulate_stc(cp.luboeinski_tetzlaff2021(), [cp.stc_protocol("WTET", hours=8, settle=0.0)] * 1000,
                        record_every=1.0)
    dataset = fitting.load_dataset("sjostrom2001")
    with pytest.raises(ValueError, match="fit: seed must be a whole number from 0 to 4294967295, got 4294967296"):
        fitting.fit(dataset, "DP", ["theta_p"], seed=2**32)


@pytest.mark.parametrize("method", ["closed-form", "events", "density"])
def test_memory_estimates_bound_what_xla_allocates(method):
    """The up-front estimate (`simulation_bytes`) against XLA's own memory analysis of the
    compiled batch (arguments, outputs, temporaries): an upper bound, and not a wild one."""
    from ca_plast import _stdp
    from ca_plast._limits import simulation_bytes
    from ca_plast.solvers import _solver

    rule, n_synapses = cp.gb2012_preset("DP"), 500
    protocols = [cp.pairs(float(dt), 120, 1.0) for dt in (-20.0, -10.0, 10.0, 20.0)]
    spikes = cp.to_spikes(protocols)
    keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.key(0), i))(jnp.arange(len(protocols)))
    batched = {
        "closed-form": lambda r: _stdp._batched_closed_form(r, spikes),
        "events": lambda r: _solver._batched_ratio(cp.Events(), r, spikes, keys, n_synapses),
        "density": lambda r: jax.vmap(cp.density_ratio, in_axes=(None, 0))(r, spikes),
    }[method]
    analysis = jax.jit(batched).lower(rule).compile().memory_analysis()
    measured = analysis.temp_size_in_bytes + analysis.argument_size_in_bytes + analysis.output_size_in_bytes
    estimate = simulation_bytes(method, len(protocols), 240, n_synapses if method == "events" else 0)
    assert measured <= estimate <= 8 * measured, (measured, estimate)
