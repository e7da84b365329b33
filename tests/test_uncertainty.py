"""Tests of a fit's uncertainty: the Laplace approximation, profile likelihoods, their records and figures.

References: the Gauss-Newton covariance from a finite-difference Jacobian of the predictions
(exact for a fit without residuals), the closed form's exact invariance (tau, gamma_p,
gamma_d, sigma^2) -> k (...), the profile likelihood against the Laplace interval where the
loss is close to quadratic, and Monte Carlo coverage over simulated data sets.
"""

import dataclasses
import json

import numpy as np
import pytest
from ca_plast.fitting import _uncertainty
from ca_plast.fitting._synthetic import simulated

import ca_plast
from ca_plast import fitting
from ca_plast._cli import main

TRUTH = "DP"


@pytest.fixture(scope="module")
def sjostrom():
    return fitting.load_dataset("sjostrom2001")


def _exact_fit(dataset, free, *, sem_factor=1.0, bounds=None):
    """A closed-form fit that sits exactly on the rule that made its data (no residuals): DP's
    own prediction as data, the fit's model and predictions replaced by DP's."""
    truth = fitting._precision.to_float64(ca_plast.gb2012_preset(TRUTH))
    prediction = np.asarray(fitting.predict(truth, dataset.spikes()))
    data = dataclasses.replace(dataset, data=prediction, sem=dataset.sem * sem_factor)
    result = fitting.fit(data, truth, free, steps=1, n_starts=1, method="closed-form", bounds=bounds)
    return dataclasses.replace(result, model=truth, prediction=prediction)


def _gauss_newton_covariance(result, h=1e-6):
    """(J^T W J)^-1 with J the central-difference Jacobian of the predictions in v = log x."""
    free = fitting.FreeParameters(result.initial_model, result.free, result.settings["bounds"])
    spikes = result.dataset.spikes()
    values = free.values(result.model)
    columns = []
    for name in result.free:
        shifted = [np.asarray(fitting.predict(free.with_values(result.model, {**values, name: values[name] * np.exp(s)}),
                                              spikes)) for s in (h, -h)]
        columns.append((shifted[0] - shifted[1]) / (2 * h))
    jacobian = np.stack(columns, axis=1) / result.dataset.sem[:, None]
    return np.linalg.inv(jacobian.T @ jacobian)


def test_laplace_equals_gauss_newton_without_residuals(sjostrom):
    """Without residuals the Hessian of 1/2 sum z^2 is J^T W J: the exact Hessian (JAX) against finite differences."""
    result = _exact_fit(sjostrom, ["theta_p", "gamma_p", "tau_ca"])
    fitted = fitting.laplace(result)
    reference = _gauss_newton_covariance(result)
    print("se:", dict(zip(fitted.names, fitted.se)), "flat:", fitted.flat, "eigenvalues:", fitted.eigenvalues)
    assert fitted.scale2 == 1.0 and fitted.flat == () and np.all(fitted.identified)
    np.testing.assert_allclose(fitted.covariance, reference, rtol=1e-5)
    np.testing.assert_allclose(fitted.gradient, 0.0, atol=1e-9)
    v = np.log(fitted.estimate)
    half = 1.959963984540054 * np.sqrt(np.diag(reference))
    np.testing.assert_allclose(fitted.ci95, np.exp(np.stack([v - half, v + half], axis=1)), rtol=1e-6)
    np.testing.assert_allclose(fitted.se, fitted.estimate * np.sqrt(np.diag(reference)), rtol=1e-5)
    np.testing.assert_allclose(np.diag(fitted.correlation), 1.0)


def test_error_scale_widens_intervals_when_the_model_misses(sjostrom):
    """s^2 = sum z^2 / (n - p) when above 1: the covariance scales by it exactly."""
    exact = _exact_fit(sjostrom, ["theta_p", "theta_d"])
    offset = exact.prediction + 3 * sjostrom.sem * np.where(np.arange(10) % 2, 1, -1)
    missing = dataclasses.replace(exact, dataset=dataclasses.replace(exact.dataset, data=offset))
    fitted = fitting.laplace(missing)
    assert fitted.scale2 == pytest.approx(9 * 10 / 8)
    assert any("widened by s = 3.35" in note for note in fitted.notes)


def test_closed_form_invariance_leaves_tau_unidentified(sjostrom):
    """The closed form is exactly invariant under (tau, gamma_p, gamma_d, sigma^2) -> k (...): one flat
    direction along it, tau unidentified, and tau's profile flat across its whole range (bounds wide
    enough for the others to follow)."""
    wide = {"gamma_p": (1e-2, 1e7), "gamma_d": (1e-2, 1e7), "sigma": (1e-2, 1e4)}
    result = _exact_fit(sjostrom, ["theta_p", "tau", "gamma_p", "gamma_d", "sigma"], bounds=wide)
    fitted = fitting.laplace(result)
    tau = fitted.names.index("tau")
    assert not fitted.identified[tau] and np.isnan(fitted.se[tau])
    assert fitted.ci95[tau].tolist() == pytest.approx([2.5e3, 2.5e6])
    assert any("unidentified by construction" in note for note in fitted.notes)
    direction = np.array([0, 1, 1, 1, 0.5]) / np.log(np.asarray(fitted.upper) / np.asarray(fitted.lower))
    flat = fitted.eigenvectors[:, fitted.flat[0]]
    assert abs(direction @ flat) / np.linalg.norm(direction) == pytest.approx(1.0, abs=1e-6)
    assert fitted.identified[0], "theta_p is not on the invariance"
    profile = fitting.profiles(result, fitted, names=["tau"])["tau"]
    print("tau profile:", profile.x, profile.rise)
    assert profile.flat and not profile.identified and profile.sides == ("open", "open")
    assert np.max(np.abs(profile.rise)) < 1e-3
    assert profile.x[0] == pytest.approx(2.5e3, rel=1e-5) and profile.x[-1] == pytest.approx(2.5e6, rel=1e-5)


def test_profile_agrees_with_laplace_where_the_loss_is_quadratic(sjostrom):
    """With errors 100x smaller the loss is close to quadratic over the interval: the profile
    (the other parameters refitted at each point) and the Laplace interval agree within 2 %."""
    result = _exact_fit(sjostrom, ["theta_p", "theta_d", "sigma"], sem_factor=0.01)
    fitted = fitting.laplace(result)
    # The model confirms the quadratic: delta chi^2 at the interval's ends is 3.84.
    np.testing.assert_allclose(np.asarray(fitted.check, dtype=float), 3.841458820694124, rtol=0.03)
    found = fitting.profiles(result, fitted)
    for i, name in enumerate(fitted.names):
        profile = found[name]
        print(name, "profile", profile.ci95, "laplace", fitted.ci95[i], profile.evaluations, "evaluations")
        assert profile.identified and not profile.flat and profile.sides == ("closed", "closed")
        np.testing.assert_allclose(np.log(profile.ci95), np.log(fitted.ci95[i]), atol=0.02 * np.log(
            fitted.ci95[i][1] / fitted.ci95[i][0]))
        assert np.all(profile.rise >= -1e-6) and np.all(np.diff(profile.x) > 0)


@pytest.mark.slow  # 30 s; NUTS draws run by default in test_cli_reports_uncertainty
def test_posterior_matches_laplace_where_the_loss_is_quadratic(sjostrom):
    """NUTS draws (blackjax) against the Laplace approximation where the loss is close to quadratic
    (errors 100x smaller): same standard deviations within Monte Carlo error, mean at the fit; same
    seed, same draws."""
    result = _exact_fit(sjostrom, ["theta_p", "theta_d"], sem_factor=0.01)
    fitted = fitting.laplace(result)
    posterior = fitting.sample_posterior(result, samples=400, warmup=300, chains=2, seed=1)
    v = np.log(posterior.samples.reshape(-1, 2))
    sd = np.sqrt(np.diag(fitted.covariance))
    print("posterior sd", v.std(axis=0), "laplace", sd, "ess", posterior.ess, "rhat", posterior.rhat)
    assert posterior.samples.shape == (2, 400, 2) and posterior.divergent.sum() == 0
    assert np.all(posterior.rhat < 1.02) and np.all(posterior.ess > 100)
    np.testing.assert_allclose(v.std(axis=0), sd, rtol=0.15)
    assert np.all(np.abs(v.mean(axis=0) - np.log(fitted.estimate)) < 4 * sd / np.sqrt(posterior.ess))
    record = posterior.record()
    assert record["parameters"]["theta_p"]["ci95"][0] < 1.3 < record["parameters"]["theta_p"]["ci95"][1]
    again = fitting.sample_posterior(result, samples=400, warmup=300, chains=2, seed=1)  # compiled programs reused
    np.testing.assert_array_equal(again.samples, posterior.samples)


def test_profiles_resume_from_their_checkpoint(sjostrom, tmp_path, monkeypatch):
    result = _exact_fit(sjostrom, ["theta_p", "theta_d"])
    path = tmp_path / "profiles.json"
    first = fitting.with_uncertainty(result, profile=True, checkpoint=path)
    stored = json.loads(path.read_text())
    assert set(stored["profiles"]) == {"theta_p", "theta_d"}

    def refuses(*args, **kwargs):
        raise AssertionError("a stored profile was computed again")

    monkeypatch.setattr(_uncertainty._Profiler, "side", refuses)
    again = fitting.with_uncertainty(result, profile=True, checkpoint=path)
    for name in ("theta_p", "theta_d"):
        np.testing.assert_array_equal(again.uncertainty.profiles[name].rise, first.uncertainty.profiles[name].rise)
        assert again.uncertainty.profiles[name].ci95 == first.uncertainty.profiles[name].ci95
    # Another fit (other data) does not reuse them; a damaged file is ignored.
    other = dataclasses.replace(result, dataset=dataclasses.replace(result.dataset, sem=result.dataset.sem * 2))
    with pytest.raises(AssertionError, match="computed again"):
        fitting.with_uncertainty(other, profile=True, checkpoint=path)
    path.write_text("{not json")
    with pytest.raises(AssertionError, match="computed again"):
        fitting.with_uncertainty(result, profile=True, checkpoint=path)


def test_record_and_figures(sjostrom, tmp_path):
    result = fitting.with_uncertainty(_exact_fit(sjostrom, ["theta_p", "theta_d"]), profile=True)
    record = fitting.write_report(result, tmp_path, check_synapses=2000)
    for name in ("theta_p", "theta_d"):
        entry = record["uncertainty"][name]
        assert entry["identified"] is True and entry["source"] == "profile"
        lo, hi = entry["ci95"]
        assert lo < entry["value"] < hi and entry["se"] > 0
        assert entry["laplace_ci95"][0] < entry["value"] < entry["laplace_ci95"][1]
    details = record["uncertainty_details"]
    assert details["error_scale"] == 1.0 and len(details["correlation"]["matrix"]) == 2
    assert set(details["profiles"]) == {"theta_p", "theta_d"}
    assert json.loads((tmp_path / "fit.json").read_text())["uncertainty"] == record["uncertainty"]
    for figure in ("corner.png", "profiles.png"):
        assert (tmp_path / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    plain = fitting.summary(_exact_fit(sjostrom, ["theta_p"]))
    assert plain["uncertainty"] is None and "not computed" in plain["uncertainty_details"]["notes"][0]


def test_hardware_fits_are_refused(sjostrom):
    result = dataclasses.replace(_exact_fit(sjostrom, ["theta_p"]), hardware={"kept": "refined"})
    with pytest.raises(ValueError, match="stochastic loss"):
        fitting.with_uncertainty(result)


def test_simulated_data_set_has_the_rule_as_its_mean(sjostrom):
    rule = ca_plast.gb2012_preset(TRUTH)
    draws = np.stack([simulated(sjostrom, rule, seed=s, method="closed-form").data for s in range(400)])
    truth = np.asarray(fitting.predict(fitting._precision.to_float64(rule), sjostrom.spikes()))
    z = (draws.mean(axis=0) - truth) / (sjostrom.sem / np.sqrt(400))
    assert np.all(np.abs(z) < 4.5)
    np.testing.assert_allclose(draws.std(axis=0, ddof=1) / sjostrom.sem, 1.0, atol=0.15)
    again = simulated(sjostrom, rule, seed=3, method="closed-form")
    np.testing.assert_array_equal(again.data, draws[3])
    assert again.name == "sjostrom2001 (simulated)" and again.reference is None


def test_cli_reports_uncertainty(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["fit", "--check-synapses", "2000", "--dataset", "sjostrom2001", "--init", "DP", "--out", str(out), "--starts", "4", "--steps", "40",
                 "--free", "theta_p,theta_d", "--method", "closed-form", "--mcmc", "60"]) == 0  # profiles: the default
    printed = capsys.readouterr().out
    record = json.loads((out / "fit.json").read_text())
    for name in ("theta_p", "theta_d"):
        entry = record["uncertainty"][name]
        assert {"se", "ci95", "identified", "posterior_ci95"} <= set(entry) and entry["source"] == "profile"
        assert f"  {name} = " in printed
    assert "uncertainty, 95 % intervals from the profile likelihood" in printed and "posterior 95 % [" in printed
    assert record["uncertainty_details"]["posterior"]["settings"]["samples"] == 60
    assert (out / "profiles.png").is_file() and (out / "corner.png").is_file() and (out / "checkpoint_profiles.json").is_file()
    assert main(["fit", "--dataset", "sjostrom2001", "--init", "DP", "--out", str(tmp_path / "x"),
                 "--uncertainty", "mcmc"]) == 2
    assert "unknown --uncertainty 'mcmc'; valid: none, laplace, profile" in capsys.readouterr().err
