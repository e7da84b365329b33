"""`ca-plast stdp`: the command-line contract, errors without tracebacks."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import ca_plast as cp
from ca_plast import fitting
from ca_plast._cli import main, parse_range


def test_stdp_closed_form_writes_curve_and_plot(tmp_path):
    csv, png = tmp_path / "out.csv", tmp_path / "out.png"
    assert main(["stdp", "--preset", "DP", "--method", "closed-form", "--csv", str(csv), "--plot", str(png)]) == 0
    lines = csv.read_text().splitlines()
    assert lines[0] == "dt_ms,ratio,sem"
    rows = np.array([[float(x) for x in line.split(",")] for line in lines[1:]])
    assert rows.shape == (21, 3)
    np.testing.assert_allclose(rows[:, 0], np.arange(-100, 101, 10))
    assert np.all(rows[:, 2] == 0)
    expected = cp.stdp_ratios(cp.gb2012_preset("DP"), [cp.pairs(dt, 60, 1.0) for dt in rows[:, 0]])[0]
    np.testing.assert_allclose(rows[:, 1], expected, atol=1e-6)
    assert rows[rows[:, 0] == 10, 1] == pytest.approx(1.221, abs=0.003)
    assert png.stat().st_size > 10_000 and png.read_bytes()[:4] == b"\x89PNG"


def test_stdp_scan_prints_csv(capsys):
    assert main(["stdp", "--preset", "DP", "--method", "scan", "--dt-range", "10:10:1", "--pairs", "3",
                 "--freq", "5", "--trials", "20", "--step-ms", "0.5"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "dt_ms,ratio,sem" and len(out) == 2
    assert float(out[1].split(",")[2]) >= 0


@pytest.mark.parametrize(
    "argv, message",
    [
        (["stdp", "--preset", "NOPE"], "unknown preset 'NOPE'"),
        (["stdp", "--preset", "DP", "--dt-range", "1:2"], "--dt-range must be START:STOP:STEP"),
        (["stdp", "--preset", "DP", "--dt-range", "10:-10:5"], "STOP >= START"),
        (["stdp", "--preset", "DP", "--method", "euler"], "unknown --method 'euler'"),
        (["stdp", "--preset", "DP", "--freq", "0"], "--freq and --step-ms must be > 0"),
        (["stdp", "--preset", "DP", "--pairs", "0"], "--pairs and --trials must be >= 1"),
        (["stdp", "--preset", "DP", "--hardware", "loihi"], "unknown --hardware 'loihi'"),
        (["stdp"], "required: --preset"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_bad_arguments_exit_2_with_message(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err


def test_entry_point_has_no_traceback():
    proc = subprocess.run([sys.executable, "-m", "ca_plast._cli", "stdp", "--preset", "DP", "--dt-range", "x"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "--dt-range must be START:STOP:STEP" in proc.stderr and "Traceback" not in proc.stderr


def test_negative_range_start_is_accepted(capsys):
    assert main(["stdp", "--preset", "DP", "--dt-range", "-10:10:10"]) == 0
    rows = capsys.readouterr().out.splitlines()[1:]
    assert [float(r.split(",")[0]) for r in rows] == [-10.0, 0.0, 10.0]


def test_parse_range_includes_stop():
    np.testing.assert_allclose(parse_range("-100:100:10"), np.arange(-100, 101, 10))
    np.testing.assert_allclose(parse_range("0:1:0.25"), [0, 0.25, 0.5, 0.75, 1.0])


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"ca-plast {cp.__version__}"


@pytest.mark.parametrize("command, valid", [
    ("stdp", [*cp.GB2012_PRESETS, *cp.METHODS, "bss2"]),
    ("fit", [*fitting.DATASETS, *cp.GB2012_PRESETS, "density", "soft_l1"]),
    ("stc", list(cp.STC_PROTOCOLS)),
])
def test_help_lists_valid_values_defaults_and_examples(command, valid, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    for value in valid:
        assert value in text, f"{command} --help does not name {value!r}"
    assert f"examples: ca-plast {command} " in text
    assert "(default: " in text and "--no-cache" in text and "--cache-dir" in text


def _run(argv, env):
    return subprocess.run([str(Path(sys.executable).with_name("ca-plast")), *argv], capture_output=True, text=True,
                          env=env, timeout=600)


def test_console_script_caches_its_programs(tmp_path):
    """The command line's programs carry no host callback, so they can be kept on disk: the
    batched solver and the key are stored whole (programs/), the rest in JAX's cache; a second
    run with the same folder adds nothing, and --no-cache reads and writes nothing."""
    env = {**os.environ, "CA_PLAST_CACHE_DIR": str(tmp_path / "cache")}
    argv = ["stdp", "--preset", "DP", "--dt-range", "-10:10:10", "--pairs", "5"]
    first = _run(argv, env)
    assert first.returncode == 0, first.stderr
    entries = {str(p.relative_to(tmp_path)) for p in (tmp_path / "cache").rglob("*") if p.is_file()}
    stored = [name for name in entries if name.startswith("cache/programs/") and name.endswith(".ca-plast-program")]
    assert len(stored) == 2, sorted(entries)  # the closed form's batch and the key
    second = _run(argv, env)
    assert second.returncode == 0 and second.stdout == first.stdout
    assert {str(p.relative_to(tmp_path)) for p in (tmp_path / "cache").rglob("*") if p.is_file()} == entries
    off = _run([*argv, "--no-cache", "--cache-dir", str(tmp_path / "unused")], env)
    assert off.returncode == 0 and off.stdout == first.stdout and not (tmp_path / "unused").exists()


def test_unusable_cache_dir_is_a_usage_error(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["stdp", "--preset", "DP", "--cache-dir", str(blocker / "cache")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"ca-plast stdp: --cache-dir {str(blocker / 'cache')!r}: cannot create or write that folder"]
