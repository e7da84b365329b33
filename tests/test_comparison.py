"""Tests of model comparison: information criteria, cross-validation, `ca-plast compare`.

References: the criteria computed by hand from fit.csv's z; cross-validation folds refitted
independently by the full multi-start fit; held-out predictions of noise-free data.
"""

import dataclasses
import json

import numpy as np
import pytest
from ca_plast.fitting._precision import to_float64

import ca_plast
from ca_plast import fitting
from ca_plast._cli import main


@pytest.fixture(scope="module")
def noisy_fit():
    data = fitting.simulated(fitting.load_dataset("sjostrom2001"), ca_plast.gb2012_preset("DP"), seed=4,
                             method="closed-form")
    return fitting.fit(data, "DP", ["theta_p", "theta_d"], n_starts=4, steps=300, method="closed-form")


def test_information_criteria_by_hand(noisy_fit):
    z = (noisy_fit.prediction - noisy_fit.dataset.data) / noisy_fit.dataset.sem
    found = fitting.information_criteria(noisy_fit)
    n, p, total = 10, 2, float(np.sum(z**2))
    assert found["sum_z2"] == pytest.approx(total, rel=1e-12)
    assert found["aic"] == pytest.approx(total + 4, rel=1e-12)
    assert found["aicc"] == pytest.approx(total + 4 + 2 * 2 * 3 / (n - p - 1), rel=1e-12)
    assert found["bic"] == pytest.approx(total + 2 * np.log(10), rel=1e-12)


def test_cross_validation_refits_match_independent_fits(noisy_fit):
    """Each fold's refit (L-BFGS from the full fit) lands where a full multi-start fit of the same
    training points lands, and its held-out score is computed on the points it left out."""
    cv = fitting.cross_validate(noisy_fit, folds=5, seed=1)
    assert cv["folds"] == 5 and len(cv["per_fold"]) == 5
    held = sorted(i for fold in cv["per_fold"] for i in fold["held_out"])
    assert held == list(range(10))
    for fold in cv["per_fold"][:2]:
        train = np.setdiff1d(np.arange(10), fold["held_out"])
        independent = fitting.fit(noisy_fit.dataset.subset(train), "DP", ["theta_p", "theta_d"], n_starts=8, steps=600,
                                  method="closed-form")
        for name in ("theta_p", "theta_d"):
            assert fold["params"][name] == pytest.approx(independent.params[name], rel=2e-3)
        rule = independent.model
        held_out = noisy_fit.dataset.subset(fold["held_out"])
        expected = fitting.chi2(fitting.predict(rule, held_out.spikes()), held_out.data, held_out.sem)
        assert fold["chi2_held_out"] == pytest.approx(float(expected), rel=1e-2)
    prediction = np.asarray(cv["prediction_held_out"])
    assert cv["chi2_mean_held_out"] == pytest.approx(
        float(np.mean(((prediction - noisy_fit.dataset.data) / noisy_fit.dataset.sem) ** 2)), rel=1e-12)
    assert cv["chi2_mean_held_out"] > cv["chi2_mean_fit"]


def test_noise_free_data_predict_held_out_points_exactly():
    truth = to_float64(ca_plast.gb2012_preset("DP"))
    sjostrom = fitting.load_dataset("sjostrom2001")
    exact = dataclasses.replace(sjostrom, data=np.asarray(fitting.predict(truth, sjostrom.spikes())))
    result = fitting.fit(exact, truth, ["theta_p", "theta_d"], steps=1, n_starts=1, method="closed-form")
    result = dataclasses.replace(result, model=truth, prediction=exact.data)
    cv = fitting.cross_validate(result, folds=10)
    assert cv["chi2_mean_held_out"] < 1e-10
    with pytest.raises(ValueError, match="folds must be a whole number from 2 to 10"):
        fitting.cross_validate(result, folds=11)


def test_compare_on_the_command_line(tmp_path, capsys):
    common = ["--dataset", "sjostrom2001", "--init", "DP", "--starts", "2", "--steps", "30", "--method", "closed-form",
              "--uncertainty", "none", "--check-synapses", "2000", "--cv", "2"]
    assert main(["fit", *common, "--free", "theta_p,theta_d", "--out", str(tmp_path / "two")]) == 0
    assert main(["fit", *common, "--free", "theta_p,theta_d,sigma", "--out", str(tmp_path / "three")]) == 0
    records = {name: json.loads((tmp_path / name / "fit.json").read_text()) for name in ("two", "three")}
    for record in records.values():
        assert record["cross_validation"]["folds"] == 2 and record["model_comparison"]["n_points"] == 10
    capsys.readouterr()
    assert main(["compare", str(tmp_path / "two"), str(tmp_path / "three" / "fit.json")]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:4] == ["fit", "free", "mean", "z^2"] and len(table) == 4
    two = table[1].split()
    assert two[1] == "2" and float(two[3]) == pytest.approx(records["two"]["model_comparison"]["aic"], rel=1e-3)
    assert float(two[-1]) == pytest.approx(records["two"]["cross_validation"]["chi2_mean_held_out"], rel=1e-3)
    assert min(float(table[1].split()[4]), float(table[2].split()[4])) == 0  # dAIC of the better fit
    # Other data: refused; not a fit.json: one line, exit 2.
    other = tmp_path / "other.json"
    other.write_text(json.dumps({**records["three"], "data": [1.0] * 10}))
    assert main(["compare", str(tmp_path / "two"), str(other)]) == 2
    assert "fitted to other data" in capsys.readouterr().err
    (tmp_path / "junk.json").write_text("[1, 2]")
    assert main(["compare", str(tmp_path / "two"), str(tmp_path / "junk.json")]) == 2
    assert "is not a fit.json" in capsys.readouterr().err
    assert main(["fit", *common[:-2], "--cv", "11", "--free", "theta_p", "--out", str(tmp_path / "x")]) == 2
    assert "--cv must be loo or a whole number of folds from 2 to 10" in capsys.readouterr().err
