"""Parameters separate per data set (`fitting.PanelRule`, `fit(separate=...)`, `ca-plast fit --separate`).

References: each panel's plain rule predicts its own protocols; finite differences; a joint fit
whose shared parameters are held at its optimum decomposes into one independent fit per panel;
the Gauss-Newton covariance from a finite-difference Jacobian.
"""

import dataclasses
import json

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ca_plast.fitting import _fit
from ca_plast.fitting._losses import checked_prediction
from ca_plast.fitting._precision import to_float64

import ca_plast
from ca_plast import fitting
from ca_plast._cli import main

DP = to_float64(ca_plast.gb2012_preset("DP"))


@pytest.fixture(scope="module")
def halves():
    """Sjostrom 2001 as two data sets (0.1-10 Hz and 20-50 Hz): a joint data set of two panels, and its parts."""
    shipped = fitting.load_dataset("sjostrom2001")
    a = dataclasses.replace(shipped.subset(range(4)), name="low")
    b = dataclasses.replace(shipped.subset(range(4, 10)), name="high")
    return fitting.joint([a, b]), a, b


def _panel_rule(rule, **per_panel):
    """`rule` with the calcium parameters `per_panel` (name -> (low, high)) separate per panel."""
    return fitting.PanelRule(rule, list(per_panel), [("calcium", n) for n in per_panel], ["low", "high"],
                             [list(v) for v in per_panel.values()])


@pytest.mark.parametrize("method", ["closed-form", "density"])
def test_each_protocol_is_predicted_by_its_panels_rule(halves, method):
    joint, a, b = halves
    model = _panel_rule(DP, C_pre=(1.4, 0.7), C_post=(2.0, 2.6))
    together = checked_prediction(model, joint.spikes(), method, panel=joint.panel)
    apart = np.concatenate([checked_prediction(model.of("low"), a.spikes(), method),
                            checked_prediction(model.of("high"), b.spikes(), method)])
    np.testing.assert_allclose(together, apart, rtol=1e-12, atol=0)
    assert float(model.of("high").calcium.C_pre) == 0.7 and float(model.of("low").calcium.C_post) == 2.0
    if method == "closed-form":
        # The closed form's invariance holds for a PanelRule rescaled as a whole.
        rescaled = checked_prediction(_fit.rescaled(model, 8.0), joint.spikes(), method, panel=joint.panel)
        np.testing.assert_allclose(rescaled, together, rtol=1e-10)
        with pytest.raises(ValueError, match="pass panel="):
            fitting.predict(model, joint.spikes())
        with pytest.raises(ValueError, match="panel 'other' has no values of the separate parameters"):
            fitting.predict(model, a.spikes(), panel=("other",) * a.n_points)


def test_gradient_of_a_panels_value_matches_finite_differences_and_touches_only_its_points(halves):
    joint, _, _ = halves
    model = _panel_rule(DP, C_pre=(1.4, 0.7))
    free = fitting.FreeParameters(model, ["theta_p", "C_pre[low]", "C_pre[high]"])
    u, static = free.split(model)
    low = np.array([p == "low" for p in joint.panel])

    def predictions(u):
        return fitting.predict(free.combine(u, static), joint.spikes(), panel=joint.panel)

    jacobian = jax.jacfwd(predictions)(u)
    d_low, d_high = (np.asarray(free.get(jacobian)[i]) for i in (1, 2))
    assert np.all(d_low[~low] == 0) and np.all(d_high[low] == 0) and np.any(d_low[low] != 0) and np.any(d_high[~low] != 0)
    for i in (1, 2):
        def along(x, i=i):
            leaves = list(free.get(u))
            leaves[i] = x
            return predictions(free.set(u, leaves))
        h = 1e-6
        difference = (np.asarray(along(free.get(u)[i] + h)) - np.asarray(along(free.get(u)[i] - h))) / (2 * h)
        np.testing.assert_allclose(np.asarray(free.get(jacobian)[i]), difference, rtol=1e-5, atol=1e-9)


def test_free_parameters_of_a_panel_rule_name_each_value():
    model = _panel_rule(DP, C_pre=(1.4, 0.7))
    free = fitting.FreeParameters(model, ["theta_p", "C_pre[low]", "C_pre[high]"], bounds={"C_pre": (0.5, 3.0)})
    assert free.values(model) == {"theta_p": pytest.approx(1.3), "C_pre[low]": 1.4, "C_pre[high]": 0.7}
    assert free.lower == (0.1, 0.5, 0.5) and free.upper == (10.0, 3.0, 3.0)
    values = fitting.parameter_values(model)
    assert values["C_pre[low]"] == 1.4 and values["C_pre[high]"] == 0.7 and "C_pre" not in values
    assert values["C_post"] == pytest.approx(float(DP.calcium.C_post))
    for name, message in (("C_pre", "'C_pre' is separate per panel: free it as C_pre\\[low\\], C_pre\\[high\\]"),
                          ("C_post[low]", "'C_post' is not separate per panel"),
                          ("C_pre[mid]", "no panel 'mid'; panels: low, high")):
        with pytest.raises(ValueError, match=message):
            fitting.FreeParameters(model, [name])


def test_separate_values_are_each_panels_own_fit_given_the_shared_ones(halves):
    """With C_post shared and C_pre separate, each panel's fitted C_pre is the one a fit of that panel
    alone finds with C_post held at the joint fit's value (the joint loss is the sum of the panels'),
    and the report scores each panel as that fit does."""
    joint, a, b = halves
    settings = dict(n_starts=2, steps=400, method="closed-form")
    result = fitting.fit(joint, "DP", ["C_pre", "C_post"], separate=["C_pre"], **settings)
    assert result.free == ("C_pre[low]", "C_pre[high]", "C_post") and isinstance(result.model, fitting.PanelRule)
    assert result.settings["separate"] == ["C_pre"]
    held = eqx.tree_at(lambda r: r.calcium.C_post, DP, jnp.asarray(result.params["C_post"]))
    record = fitting.summary(result, check_synapses=2000)
    for panel, part in (("low", a), ("high", b)):
        alone = fitting.fit(part, held, ["C_pre"], **settings)
        print(panel, result.params[f"C_pre[{panel}]"], alone.params["C_pre"])
        assert result.params[f"C_pre[{panel}]"] == pytest.approx(alone.params["C_pre"], rel=1e-4)
        assert record["per_dataset"][panel]["chi2_mean"] == pytest.approx(alone.chi2_mean, rel=1e-4)
    assert record["separate"] == ["C_pre"] and "C_pre" not in record["fixed"]
    assert record["params"] == result.params
    # The simulated check (event solver) runs each panel's rule: it agrees with the density solver's expectation.
    check = record["simulated_check"]
    expected = checked_prediction(result.model, joint.spikes(), "density", panel=joint.panel)
    assert np.all(np.abs(np.array(check["prediction"]) - expected) <= 3 * np.array(check["sem"]) + 0.002)
    cv = fitting.cross_validate(result, 2)
    assert set(cv["per_fold"][0]["params"]) == set(result.free)
    with pytest.raises(ValueError, match="not supported with hardware="):
        fitting.fit(joint, "DP", ["C_pre"], separate=["C_pre"], hardware=ca_plast.BSS2(), steps=1, n_starts=1)
    with pytest.raises(ValueError, match="'low' is one \\(one panel\\)"):
        fitting.fit(a, "DP", ["C_pre"], separate=["C_pre"], steps=1, n_starts=1)


def test_laplace_of_separate_values_is_the_gauss_newton_covariance(halves):
    """Noise-free data from a PanelRule: the exact Hessian of 1/2 sum z^2 (JAX) equals J^T W J from a
    central-difference Jacobian of the predictions in v = log x."""
    joint, _, _ = halves
    truth = _panel_rule(DP, C_pre=(1.4, 0.7))
    data = dataclasses.replace(joint, data=checked_prediction(truth, joint.spikes(), "closed-form", panel=joint.panel))
    result = fitting.fit(data, truth, ["theta_d", "C_pre"], steps=1, n_starts=1, method="closed-form")
    result = dataclasses.replace(result, model=truth, prediction=data.data)
    fitted = fitting.laplace(result)
    free = fitting.FreeParameters(truth, result.free)
    values, h, columns = free.values(truth), 1e-6, []
    for name in result.free:
        shifted = [checked_prediction(free.with_values(truth, {**values, name: values[name] * np.exp(s)}), data.spikes(),
                                      "closed-form", panel=data.panel) for s in (h, -h)]
        columns.append((shifted[0] - shifted[1]) / (2 * h))
    jacobian = np.stack(columns, axis=1) / data.sem[:, None]
    np.testing.assert_allclose(fitted.covariance, np.linalg.inv(jacobian.T @ jacobian), rtol=1e-5)
    assert fitted.names == ("theta_d", "C_pre[low]", "C_pre[high]")


def test_command_line_fits_separate_values(halves, tmp_path, capsys):
    _, a, b = halves
    for part in (a, b):
        (tmp_path / f"{part.name}.csv").write_text(part.to_csv())
    common = ["fit", "--data", str(tmp_path / "low.csv"), "--data", str(tmp_path / "high.csv"), "--init", "DP",
              "--method", "closed-form", "--steps", "20", "--starts", "2", "--uncertainty", "none"]
    out = tmp_path / "run"
    assert main([*common, "--free", "theta_p,C_pre", "--separate", "C_pre", "--out", str(out)]) == 0
    record = json.loads((out / "fit.json").read_text())
    names = ["theta_p", "C_pre[low]", "C_pre[high]"]
    assert record["free"] == names and list(record["params"]) == names
    assert record["separate"] == ["C_pre"] and set(record["per_dataset"]) == {"low", "high"}
    assert "C_pre[high] = " in capsys.readouterr().out
    for extra, message in ((["--free", "theta_p", "--separate", "C_pre"], "separate parameters must be free parameters"),
                           (["--free", "C_pre", "--separate", "C_pre", "--hardware", "bss2"], "--separate needs --hardware none")):
        assert main([*common, *extra, "--out", str(tmp_path / "x")]) == 2
        assert message in capsys.readouterr().err
    assert main(["fit", "--check-synapses", "2000", "--data", str(tmp_path / "low.csv"), "--init", "DP", "--free", "C_pre", "--separate", "C_pre",
                 "--out", str(tmp_path / "y")]) == 2
    assert "separate parameters take one value per data set of a joint fit" in capsys.readouterr().err
