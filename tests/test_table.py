"""Own data as CSV (`Dataset.from_csv`, `ca-plast fit --data`): every protocol kind builds what
the `ca_plast` builders build, every shipped data set round-trips through the format, and every
bad file is one line naming the file, line and column."""

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from ca_plast.fitting import DATASETS, Dataset, load_dataset, modellings

import ca_plast as cp
from ca_plast import fitting
from ca_plast._cli import main

MINIMAL = """# my lab, slice recordings, 2026
protocol,dt_ms,n_pairs,freq_hz,ratio,sem
pairs,10,60,1,1.21,0.05
pairs,-10,60,1,0.83,0.04
"""

# One row of each kind and what the builders give for it (the reference).
EVERY_KIND = """protocol,dt_ms,n_pairs,freq_hz,n_post,interval_ms,dt_to,dt1_ms,dt2_ms,T_ms,pair_dt_ms,pairs_per_train,n_trains,train_period_ms,pre_ms,post_ms,ratio,sem,series
pairs,10,60,1,,,,,,,,,,,,,1.2,0.05,
pairs,-25.5,100,5,,,,,,,,,,,,,0.8,0.05,
burst,10,100,5,2,11.5,,,,,,,,,,,1.3,0.1,
burst,-10,60,0.1,3,20,first,,,,,,,,,,0.9,0.1,my bursts
pre-post-pre,,60,1,,,,5,-5,,,,,,,,1.1,0.05,
post-pre-post,,60,1,,,,-5,5,,,,,,,,1.2,0.05,
quadruplet,,60,1,,,,,,15,,,,,,,1.1,0.05,
quadruplet,,60,1,,,,,,-15,10,,,,,,1.0,0.05,
trains,10,,20,,,,,,,,5,15,10000,,,1.4,0.1,
pattern,,60,0.1,,,,,,,,,,,0,10;30;50,1.5,0.2,
"""
BUILT = [
    cp.pairs(10, 60, 1),
    cp.pairs(-25.5, 100, 5),
    cp.burst(10, 100, 5, n_post=2, interval=11.5, reference="last"),
    cp.burst(-10, 60, 0.1, n_post=3, interval=20, reference="first"),
    cp.triplet("pre-post-pre", 5, -5, 60, 1),
    cp.triplet("post-pre-post", -5, 5, 60, 1),
    cp.quadruplet(15, 60, 1),
    cp.quadruplet(-15, 60, 1, dt=10),
    cp.trains(10, 20, pairs_per_train=5, n_trains=15, train_period=10000),
    cp.repeated([0.0], [10.0, 30.0, 50.0], 60, 10000.0),
]


def _same_protocol(a: cp.Protocol, b: cp.Protocol) -> bool:
    return np.array_equal(a.pre, b.pre) and np.array_equal(a.post, b.post) and a.duration == b.duration


def test_the_minimal_pairs_file(tmp_path):
    path = tmp_path / "mylab.csv"
    path.write_text(MINIMAL)
    data = Dataset.from_csv(path)
    assert data.name == "mylab" and data.n_points == 2 and data.source == "my lab, slice recordings, 2026"
    assert _same_protocol(data.protocols[0], cp.pairs(10.0, 60, 1.0))
    assert _same_protocol(data.protocols[1], cp.pairs(-10.0, 60, 1.0))
    np.testing.assert_array_equal(data.data, [1.21, 0.83])
    np.testing.assert_array_equal(data.sem, [0.05, 0.04])
    np.testing.assert_array_equal(data.x, [10.0, -10.0])  # drawn against dt
    assert _same_protocol(data.curve(0, 37.5), cp.pairs(37.5, 60, 1.0))


def test_every_protocol_kind_builds_what_the_builders_build(tmp_path):
    path = tmp_path / "kinds.csv"
    path.write_text(EVERY_KIND)
    data = Dataset.from_csv(path)
    assert data.n_points == len(BUILT)
    for i, (got, want) in enumerate(zip(data.protocols, BUILT)):
        assert _same_protocol(got, want), i
    assert data.curve is None and data.x_label == ""  # not every row has dt_ms: categories
    assert data.series[3] == "my bursts" and data.series[4] == "pre-post-pre"


@pytest.mark.parametrize("name", DATASETS)
def test_every_shipped_data_set_round_trips(name, tmp_path):
    """Written in the format and read back: the same protocols (spike for spike), numbers and labels."""
    for modelling in modellings(name):
        shipped = load_dataset(name, modelling)
        path = tmp_path / f"{name}_{modelling}.csv"
        path.write_text(shipped.to_csv())
        read = Dataset.from_csv(path)
        assert read.n_points == shipped.n_points
        assert all(_same_protocol(a, b) for a, b in zip(read.protocols, shipped.protocols))
        np.testing.assert_array_equal(read.data, shipped.data)
        np.testing.assert_array_equal(read.sem, shipped.sem)
        assert (read.labels, read.series, read.panel) == (shipped.labels, shipped.series, shipped.panel)
        assert read.source == shipped.source


HEADER = "protocol,dt_ms,n_pairs,freq_hz,ratio,sem"
BAD = {
    "empty file": ("", "no header line"),
    "comments only": ("# nothing here\n\n", "no header line"),
    "header only": (HEADER + "\n", "no data rows after the header (line 1)"),
    "missing column": ("protocol,dt_ms,n_pairs,freq_hz,ratio\npairs,10,60,1,1.2\n", "line 1: missing column(s) sem"),
    "unknown column": (HEADER + ",notes\npairs,10,60,1,1.2,0.1,x\n", "line 1: unknown column 'notes'"),
    "column twice": ("protocol,dt_ms,dt_ms,n_pairs,freq_hz,ratio,sem\n", "line 1: column 'dt_ms' appears twice"),
    "unknown protocol": (HEADER + "\npairs,10,60,1,1.2,0.1\npiars,10,60,1,1.2,0.1\n",
                         "line 3, column 'protocol': unknown protocol 'piars'; valid protocols: pairs, burst"),
    "not a number": (HEADER + "\npairs,ten,60,1,1.2,0.1\n", "line 2, column 'dt_ms': 'ten' is not a number"),
    "NaN": (HEADER + "\npairs,10,60,1,nan,0.1\n", "line 2, column 'ratio': must be a finite number, got 'nan'"),
    "zero sem": (HEADER + "\npairs,10,60,1,1.2,0\n", "line 2, column 'sem': must be > 0"),
    "negative sem": (HEADER + "\npairs,10,60,1,1.2,-0.1\n", "line 2, column 'sem': must be > 0"),
    "negative ratio": (HEADER + "\npairs,10,60,1,-1.2,0.1\n", "line 2, column 'ratio': must be > 0"),
    "empty value": (HEADER + "\npairs,,60,1,1.2,0.1\n", "line 2, column 'dt_ms': empty; protocol 'pairs' needs"),
    "duplicated header": (HEADER + "\npairs,10,60,1,1.2,0.1\n" + HEADER + "\n",
                          "line 3: the header is repeated (first on line 1)"),
    "too many fields": (HEADER + "\npairs,10,60,1,1.2,0.1,7\n", "line 2: 7 fields, but the header (line 1) has 6"),
    "fractional count": (HEADER + "\npairs,10,60.5,1,1.2,0.1\n", "line 2, column 'n_pairs': must be a whole number"),
    "zero frequency": (HEADER + "\npairs,10,60,0,1.2,0.1\n", "line 2, column 'freq_hz': must be > 0"),
    "column of another protocol": ("protocol,dt_ms,n_pairs,freq_hz,T_ms,ratio,sem\npairs,10,60,1,5,1.2,0.1\n",
                                   "line 2, column 'T_ms': not used by protocol 'pairs'"),
    "column the header lacks": (HEADER + "\nquadruplet,,60,1,1.2,0.1\n",
                                "line 2: protocol 'quadruplet' needs column 'T_ms' (it uses T_ms, n_pairs, freq_hz), which the header lacks"),
    "bad spike list": ("protocol,pre_ms,post_ms,n_pairs,freq_hz,ratio,sem\npattern,0,10;x,60,1,1.2,0.1\n",
                       "line 2, column 'post_ms': '10;x' is not a list of spike times"),
    "pattern longer than its period": ("protocol,pre_ms,post_ms,n_pairs,freq_hz,ratio,sem\n"
                                       "pattern,0,10;2000,60,1,1.2,0.1\n", "line 2: protocol 'pattern': "),
    "bad dt_to": ("protocol,dt_ms,n_pairs,freq_hz,n_post,interval_ms,dt_to,ratio,sem\n"
                  "burst,10,60,1,2,10,middle,1.2,0.1\n", "line 2, column 'dt_to': 'middle' is not valid; valid: first, last"),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_files_are_one_line_naming_file_line_and_column(case, tmp_path):
    text, expected = BAD[case]
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(ValueError) as error:
        Dataset.from_csv(path)
    message = str(error.value)
    assert "\n" not in message and message.startswith(f"{path}") and expected in message, message


def test_unreadable_files(tmp_path):
    with pytest.raises(ValueError, match="no such file"):
        Dataset.from_csv(tmp_path / "missing.csv")
    with pytest.raises(ValueError, match="is a folder"):
        Dataset.from_csv(tmp_path)
    (tmp_path / "latin1.csv").write_bytes(HEADER.encode() + b"\npairs,10,60,1,1.2,0.1,\xe9\n")
    with pytest.raises(ValueError, match="not UTF-8 text"):
        Dataset.from_csv(tmp_path / "latin1.csv")


def _ca_plast(*argv, cwd):
    return subprocess.run([str(Path(sys.executable).with_name("ca-plast")), *argv], capture_output=True, text=True,
                          cwd=cwd, timeout=900)


def test_bad_csv_on_the_command_line_exits_2_with_one_line(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text(HEADER + "\npairs,10,60,1,1.2,0\n")
    proc = _ca_plast("fit", "--data", str(path), "--init", "DP", "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"ca-plast fit: {path}, line 2, column 'sem': must be > 0 "
                                                "(the standard error of the ratio), got '0'"]
    assert not (tmp_path / "out").exists()


API_FIT = """
import json, sys
from ca_plast import fitting
result = fitting.fit(fitting.Dataset.from_csv(sys.argv[1]), "DP", ["theta_p", "gamma_p", "sigma"],
                     method="closed-form", steps=40, n_starts=4, seed=3)
print(json.dumps({"params": result.params, "chi2": result.chi2_mean}))
"""


def test_api_and_command_line_give_the_same_fit_of_own_data(tmp_path):
    """`ca-plast fit --data` and `fitting.fit` in a process left in JAX's default float32 give
    the same fit (both compute in float64), to the last digit."""
    path = tmp_path / "mylab.csv"
    path.write_text(MINIMAL + "pairs,25,60,1,1.10,0.06\npairs,-30,60,1,0.90,0.05\n")
    env = {k: v for k, v in os.environ.items() if k != "JAX_ENABLE_X64"}
    env["JAX_COMPILATION_CACHE_DIR"] = os.environ["CA_PLAST_TEST_CACHE"]  # this run's programs (conftest.py)
    api = subprocess.run([sys.executable, "-c", API_FIT, str(path)], capture_output=True, text=True, env=env,
                         timeout=900)
    assert api.returncode == 0, api.stderr[-3000:]
    api = json.loads(api.stdout.strip().splitlines()[-1])
    assert main(["fit", "--check-synapses", "2000", "--data", str(path), "--init", "DP", "--free", "theta_p,gamma_p,sigma", "--method", "closed-form",
                 "--steps", "40", "--starts", "4", "--seed", "3", "--uncertainty", "none", "--out",
                 str(tmp_path / "out")]) == 0
    record = json.loads((tmp_path / "out" / "fit.json").read_text())
    assert record["dataset"] == "mylab" and record["n_points"] == 4
    assert record["params"] == api["params"] and record["chi2_mean"] == api["chi2"]


def test_subset_keeps_every_per_point_field_and_the_curves():
    shipped = load_dataset("wittenberg_wang2006")
    part = shipped.subset([40, 2, 3])
    assert part.n_points == 3 and part.labels == tuple(shipped.labels[i] for i in (40, 2, 3))
    np.testing.assert_array_equal(part.data, shipped.data[[40, 2, 3]])
    assert part.specs == tuple(shipped.specs[i] for i in (40, 2, 3))
    assert _same_protocol(part.curve(0, 12.5), shipped.curve(40, 12.5))
    with pytest.raises(ValueError, match="subset needs indices from 0 to 74"):
        shipped.subset([75])


def test_joint_fit_scores_each_data_set(tmp_path, capsys):
    """`--dataset A --dataset B`: one fit on all points; fit.json's per_dataset holds each data set's
    mean z^2 (checked against fit.csv's rows), the published set's too, and each panel keeps its x label."""
    out = tmp_path / "joint"
    assert main(["fit", "--check-synapses", "2000", "--dataset", "wittenberg_wang2006_pairs", "--dataset", "wittenberg_wang2006_burst100",
                 "--init", "hippocampal_slices", "--free", "theta_p,theta_d", "--method", "closed-form",
                 "--steps", "20", "--starts", "2", "--uncertainty", "none", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    record = json.loads((out / "fit.json").read_text())
    pairs, burst = (load_dataset(n) for n in ("wittenberg_wang2006_pairs", "wittenberg_wang2006_burst100"))
    assert record["n_points"] == pairs.n_points + burst.n_points
    rows = list(csv.DictReader(io.StringIO((out / "fit.csv").read_text())))
    z2 = np.array([((float(r["model"]) - float(r["data"])) / float(r["sem"])) ** 2 for r in rows])
    parts = {"wittenberg_wang2006_pairs": z2[:pairs.n_points], "wittenberg_wang2006_burst100": z2[pairs.n_points:]}
    assert list(record["per_dataset"]) == list(parts)
    for name, values in parts.items():
        assert record["per_dataset"][name]["n_points"] == values.size
        assert record["per_dataset"][name]["chi2_mean"] == pytest.approx(values.mean(), rel=1e-4)
        assert f"  {name} ({values.size} points): mean z^2" in printed
    assert record["chi2_mean"] == pytest.approx(z2.mean(), rel=1e-4)
    assert set(record["reference"]["per_dataset"]) == set(parts)
    combined = fitting.joint([pairs, burst])
    assert combined.x_label_of("wittenberg_wang2006_pairs") == pairs.x_label
    assert combined.x_label_of("wittenberg_wang2006_burst100") == burst.x_label
