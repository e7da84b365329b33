"""What a fit leaves behind: fit.json (the record), fit.csv (per point) and fit.png (the figure).

Every file is written to a temporary file in the output folder and moved into place
(`os.replace`), so a reader never sees a half-written file.
"""

import csv
import io
import json
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from matplotlib.lines import Line2D

import ca_plast
from ca_plast._output import write_file
from ca_plast._plotting import Figure, figure_bytes
from ca_plast._validation import whole_number

from ._comparison import information_criteria
from ._fit import FitResult, versions
from ._losses import checked_prediction, chi2
from ._panels import by_panel, split_name
from ._precision import in_float64
from ._transforms import parameter_values


def reference_method(result: FitResult) -> str:
    """How the data set's published (GB2012) set is predicted next to a fit: by the fit's method
    when that is one of GB2012's, else by the density solver (the GB2012 model's own prediction;
    the event solver with noise off, which fits rules without noise, is not GB2012's model)."""
    return result.method if result.method in ("density", "closed-form") else "density"


def reference_score(result: FitResult) -> dict | None:
    """Mean z^2 of the data set's published GB2012 parameter set (if it has one) on the same
    points, by `reference_method` and by the closed form."""
    name = result.dataset.reference
    if name is None:
        return None
    data = result.dataset
    rule = ca_plast.gb2012_preset(name)
    method = reference_method(result)
    record: dict[str, Any] = {"preset": name, "method": method}
    for how in dict.fromkeys((method, "closed-form")):
        model = checked_prediction(rule, data.spikes(), how)
        record["chi2_mean" if how == method else "chi2_mean_closed_form"] = float(chi2(model, data.data, data.sem))
        if how == method and len(panel_points(data)) > 1:
            record["per_dataset"] = {panel: float(chi2(model[idx], data.data[idx], data.sem[idx]))
                                     for panel, idx in panel_points(data).items()}
    return record


def panel_points(data) -> dict[str, np.ndarray]:
    """The points of each panel (each data set of a joint fit), in order."""
    return {panel: np.flatnonzero([p == panel for p in data.panel]) for panel in dict.fromkeys(data.panel)}


def per_dataset(result: FitResult) -> dict | None:
    """Mean z^2 of the fitted and the initial rule on each data set of a joint fit (each
    panel; None when there is one)."""
    data = result.dataset
    if len(panel_points(data)) < 2:
        return None
    return {panel: {"n_points": int(idx.size),
                    "chi2_mean": float(chi2(result.prediction[idx], data.data[idx], data.sem[idx])),
                    "chi2_mean_initial": float(chi2(result.initial_prediction[idx], data.data[idx], data.sem[idx]))}
            for panel, idx in panel_points(data).items()}


CHECK_SYNAPSES = 10_000
# Large data sets are checked with fewer synapses, at least CHECK_MIN_SYNAPSES per state: the
# check's cost is synapses x events.
CHECK_BUDGET = 2e7
CHECK_MIN_SYNAPSES = 2000


def check_synapses(dataset) -> int:
    """Synapses per initial state of the simulated check of `dataset`: 10^4, fewer for data sets of many events."""
    events = sum(p.pre.size + p.post.size + 1 for p in dataset.protocols)
    return int(np.clip(CHECK_BUDGET // events, CHECK_MIN_SYNAPSES, CHECK_SYNAPSES))


def simulated_check(result: FitResult, n_synapses: int | None = None) -> dict:
    """Mean z^2 of the fitted rule in the simulated model (event solver, noise on), and its agreement with the fit's prediction.

    The event-driven simulation (`n_synapses` per initial state, by default
    `check_synapses(dataset)`, key
    `fold_in(key(seed), 1)`, which no stage of the fit uses) is an independent check of the
    prediction the fit reports: for the density solver the two must agree within the
    simulation's standard errors (`agreement`: z per point, `agreement_z`); GB2012's closed
    form neglects the bistable drift during a protocol and may not.
    """
    data = result.dataset
    key = jax.random.fold_in(jax.random.key(result.seed), 1)
    n_synapses = check_synapses(data) if n_synapses is None else whole_number("simulated_check", "n_synapses", n_synapses)
    ratio, sem, z = (np.empty(data.n_points) for _ in range(3))
    groups = by_panel(result.model, data.panel)  # one rule, or each panel's (a PanelRule's), with its points
    for g, (rule, idx) in enumerate(groups):
        ratio[idx], sem[idx] = ca_plast.stdp_ratios(rule, [data.protocols[i] for i in idx], method="events",
                                                    n_synapses=n_synapses,
                                                    key=key if len(groups) == 1 else jax.random.fold_in(key, g))
        z[idx] = agreement_z(ratio[idx], sem[idx], result.prediction[idx], rule, n_synapses)
    return {"method": "events", "n_synapses_per_state": n_synapses, "chi2_mean": float(chi2(ratio, data.data, data.sem)),
            "prediction": [float(r) for r in ratio], "sem": [float(e) for e in sem],
            "agreement": {"against": result.method if result.hardware is None else "hardware emulation", "z": [float(v) for v in z], "max_abs_z": float(np.max(np.abs(z))),
                          "within_3_se": bool(np.all(np.abs(z) <= 3))}}


RESOLUTION = 1e-9  # differences of float64 predictions of a rule without noise: rounding only


def agreement_z(simulated: np.ndarray, sem: np.ndarray, predicted: np.ndarray, rule, n_synapses: int) -> np.ndarray:
    """`(simulated - predicted) / s.e.` per point, the s.e. floored at the simulation's
    resolution: the change of the ratio when one simulated synapse ends as another started
    (the rule's own `readout`; GB2012: one synapse of one state flips,
    `|b - 1| max(beta, 1 - beta) / ((beta + (1 - beta) b) n)`), and at least `RESOLUTION`.

    The s.e. is 0 where every simulated synapse of a state ends alike (always, for a rule
    without noise); a difference below the simulation's resolution then says nothing, and is
    not shown as a huge z.
    """
    return (np.asarray(simulated) - np.asarray(predicted)) / np.maximum(np.asarray(sem), _one_synapse(rule, n_synapses))


@in_float64
def _one_synapse(rule, n_synapses: int) -> float:
    start = np.asarray(rule.initial_population(n_synapses, np.float64))
    first, last = start.copy(), start.copy()
    first[0], last[-1] = start[-1], start[0]
    ratios = [float(rule.readout(jnp.asarray(w))[0]) for w in (start, first, last)]
    return max(abs(ratios[1] - ratios[0]), abs(ratios[2] - ratios[0]), RESOLUTION)


@in_float64
def summary(result: FitResult, *, hardware: str = "none", check_synapses: int | None = None) -> dict:
    """The fit.json record: data set and modelling, free parameters before and after, losses, run facts.
    `check_synapses`: synapses per initial state of the simulated check (`simulated_check`)."""
    data = result.dataset
    final = parameter_values(result.model)
    return {
        "dataset": data.name,
        "modelling": data.modelling,
        "modelling_note": data.modelling_note,
        "n_points": data.n_points,
        "data": [float(v) for v in data.data],
        "sem": [float(v) for v in data.sem],
        "init": result.init_name,
        "free": list(result.free),
        "separate": result.settings.get("separate", []),
        "params": result.params,
        "initial": result.initial,
        "fixed": {k: v for k, v in final.items() if k not in result.params},
        "units": "time in ms (tau, tau_ca, D), calcium in units of theta_d, rates dimensionless",
        "method": _method_description(result, hardware),
        "density": result.density,
        "hardware": hardware,
        "quantisation_aware": result.hardware,
        "loss": result.loss,
        "chi2_mean": result.chi2_mean,
        "chi2_mean_initial": result.chi2_initial,
        "per_dataset": per_dataset(result),
        **uncertainty_record(result),
        "model_comparison": information_criteria(result),
        "cross_validation": result.cross_validation,
        "reference": reference_score(result),
        "simulated_check": simulated_check(result, check_synapses),
        "steps": result.steps,
        "stopped": result.stopped,
        "n_starts": result.n_starts,
        "seed": result.seed,
        "settings": result.settings,
        "start_losses": [float(v) for v in result.start_losses],
        "history": [float(v) for v in result.history],
        "wall_s": result.wall_s,
        "wall_s_total": result.wall_s_total,
        "versions": versions(),
        "source": data.source,
    }


def uncertainty_record(result: FitResult) -> dict:
    """fit.json's `uncertainty` (per free parameter: value, se, ci95, identified, ...) and `uncertainty_details`."""
    if result.uncertainty is None:
        why = ("a fit through hardware emulation has a stochastic loss (no Hessian or profile)" if result.hardware is not None
               else "not computed (fitting.with_uncertainty; on the command line --uncertainty laplace or profile)")
        return {"uncertainty": None, "uncertainty_details": {"notes": [why]}}
    per_parameter, details = result.uncertainty.record()
    return {"uncertainty": per_parameter, "uncertainty_details": details}


METHOD_LABELS = {"density": "density solver", "closed-form": "closed form", "events": "event solver, noise off"}


def _method_description(result: FitResult, hardware: str) -> str:
    stages = {"density": "closed-form screening and fit, then the density solver (the model's own prediction)",
              "closed-form": "closed form (GB2012's approximation)",
              "events": "event-driven solver with noise off, one synapse per initial state (the model's own "
                        "prediction for a rule without noise; the simulated check shows the noise's effect)"}[result.method]
    return stages if result.hardware is None else f"{stages}, then refined through {hardware} emulation"


def table(result: FitResult) -> str:
    """fit.csv: one row per data point (protocol, label, x, data, sem, model, initial, z)."""
    data = result.dataset
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["protocol", "label", "x", "data", "sem", "model", "initial", "z"])
    for i in range(data.n_points):
        z = (result.prediction[i] - data.data[i]) / data.sem[i]
        writer.writerow([data.protocols[i].name, data.labels[i], f"{data.x[i]:g}", f"{data.data[i]:.6g}",
                         f"{data.sem[i]:.6g}", f"{result.prediction[i]:.6f}", f"{result.initial_prediction[i]:.6f}",
                         f"{z:.4f}"])
    return out.getvalue()


CURVE_POINTS = 60


def _curve_grid(x: np.ndarray, log: bool) -> np.ndarray:
    """`CURVE_POINTS` values spanning the data's x (geometric on a log axis), and the data's own."""
    lo, hi = float(np.min(x)), float(np.max(x))
    grid = np.geomspace(lo, hi, CURVE_POINTS) if log else np.linspace(lo, hi, CURVE_POINTS)
    return np.unique(np.concatenate([grid, x]))


def _log_axis(x: np.ndarray) -> bool:
    return bool(np.all(x > 0) and x.max() / x.min() > 20)


def model_curves(result: FitResult) -> dict[str, dict] | None:
    """The model's change ratio on a fine grid of x for every series of the data set, for the
    fitted rule, the initial rule and the data set's published set (if any).

    Computed with the fit's prediction (`result.method`) on the float model; the published set
    with `reference_method`. Returns {series key: {"x", "fit", "initial", "reference"}} with
    key `panel|series`, or None when the data set's x is a category (no `Dataset.curve`).
    """
    data = result.dataset
    if data.curve is None or not data.x_label:
        return None
    rules = {"fit": result.model, "initial": result.initial_model}
    if data.reference is not None:
        rules["reference"] = ca_plast.gb2012_preset(data.reference)
    curves, protocols, panels, where = {}, [], [], []
    for key in dict.fromkeys(zip(data.panel, data.series)):
        idx = np.flatnonzero([(p, s) == key for p, s in zip(data.panel, data.series)])
        in_panel = np.array([p == key[0] for p in data.panel])
        grid = _curve_grid(data.x[idx], _log_axis(data.x[in_panel]))
        curves["|".join(key)] = {"x": grid}
        where.append(("|".join(key), len(protocols), len(protocols) + grid.size))
        protocols += [data.curve(int(idx[0]), float(x)) for x in grid]
        panels += [key[0]] * grid.size
    spikes = ca_plast.to_spikes(protocols, unit=1.0)
    for name, rule in rules.items():
        method = reference_method(result) if name == "reference" else result.method
        ratios = checked_prediction(rule, spikes, method, panel=panels)
        for key, start, stop in where:
            curves[key][name] = ratios[start:stop]
    return curves


def _data_label(series: str, dataset_name: str) -> str:
    return "data ± s.e.m." if series in ("", "cells", dataset_name) else f"data ± s.e.m., {series}"


@in_float64
def plot_fit(result: FitResult, check: dict | None = None, curves: dict | None = None) -> Figure:
    """Data (mean ± s.e.m.), the fitted, initial and published models, the simulated check, and the loss history.

    Model curves are drawn on a fine grid of x (`model_curves`, computed here unless given),
    markers only where x is a category. `check`: the `simulated_check` record, drawn as open
    diamonds with their standard errors at the data's x.
    """
    data = result.dataset
    curves = model_curves(result) if curves is None else curves
    simulated = None if check is None else (np.asarray(check["prediction"]), np.asarray(check["sem"]))
    method = METHOD_LABELS[result.method]
    panels = list(dict.fromkeys(data.panel))
    fig = Figure(figsize=(5.2 * len(panels) + 4.2, 4.6), layout="constrained")
    axes = fig.subplots(1, len(panels) + 1, squeeze=False, width_ratios=[5] * len(panels) + [3.5])[0]
    init = result.init_name or "initial rule"
    for ax, panel in zip(axes, panels):
        in_panel = np.array([p == panel for p in data.panel])
        categorical = curves is None
        for colour, series in enumerate(dict.fromkeys(s for s, keep in zip(data.series, in_panel) if keep)):
            idx = np.flatnonzero(in_panel & np.array([s == series for s in data.series]))
            idx = idx[np.argsort(data.x[idx], kind="stable")]
            x = data.x[idx]
            c = f"C{colour}"
            ax.errorbar(x, data.data[idx], yerr=data.sem[idx], fmt="o", color=c, ms=4, capsize=2,
                        label=_data_label(series, data.name))
            if categorical:
                ax.plot(x, result.prediction[idx], "s", color=c, ms=5, mfc="none")
                ax.plot(x, result.initial_prediction[idx], "x", color=c, alpha=0.6)
            else:
                curve = curves[f"{panel}|{series}"]
                ax.plot(curve["x"], curve["fit"], "-", color=c, lw=1.6)
                ax.plot(curve["x"], curve["initial"], "--", color=c, lw=1, alpha=0.6)
                if "reference" in curve:
                    ax.plot(curve["x"], curve["reference"], ":", color=c, lw=1.2)
            if simulated is not None:
                ax.errorbar(x, simulated[0][idx], yerr=simulated[1][idx], fmt="D", color=c, ms=4, mfc="white", capsize=2,
                            lw=0.8, zorder=3)
        ax.axhline(1.0, color="0.6", lw=0.8)
        if categorical:
            ax.set_xticks(data.x[in_panel], [data.labels[i] for i in np.flatnonzero(in_panel)], rotation=60,
                          ha="right", fontsize=7)
        else:
            ax.set_xlabel(data.x_label_of(panel))
            if _log_axis(data.x[in_panel]):
                ax.set_xscale("log")
        ax.set_ylabel("change in synaptic strength (after / before)")
        score = "" if len(panel_points(data)) < 2 else \
            f": mean z² {float(chi2(result.prediction[in_panel], data.data[in_panel], data.sem[in_panel])):.3g}"
        own = [f"{split_name(name)[0]} {value:.3g}" for name, value in result.params.items() if split_name(name)[1] == panel]
        ax.set_title((panel or data.name) + score + (f"\n{', '.join(own)}" if own else ""), fontsize=10)
        handles, _ = ax.get_legend_handles_labels()
        line: dict[str, Any] = {"ls": "", "marker": "s", "mfc": "none"} if categorical else {"ls": "-"}
        initial_line: dict[str, Any] = {"ls": "", "marker": "x"} if categorical else {"ls": "--"}
        styles = [Line2D([], [], color="0.3", label=f"fit ({method})", **line),
                  Line2D([], [], color="0.3", alpha=0.6, label=f"initial: {init}", **initial_line)]
        if data.reference is not None and not categorical:
            how = reference_method(result)
            label = f"published: {data.reference}" + ("" if how == result.method else f" ({METHOD_LABELS[how]})")
            styles.append(Line2D([], [], color="0.3", ls=":", label=label))
        if check is not None:  # exactly when `simulated` is not None
            styles.append(Line2D([], [], color="0.3", ls="", marker="D", mfc="white", ms=4,
                                 label=f"fit, simulated ± s.e. ({check['n_synapses_per_state']} synapses/state)"))
        ax.legend(handles=[h for h in handles if h.get_label().startswith("data")] + styles, frameon=False, fontsize=7)
    ax = axes[-1]
    loss_name = "mean z²" if result.loss == "chi2" else "soft-L1 loss"
    best = np.minimum.accumulate(result.history) if result.history.size else result.history
    ax.plot(np.arange(1, best.size + 1), best, color="k", lw=1.2, label=f"closed form (Adam, best of {result.n_starts} starts)")
    if result.density is not None:
        losses = np.asarray(result.density["history"])
        ax.plot(best.size + np.arange(1, losses.size + 1), losses, color="C2", lw=1.2,
                label="density solver (L-BFGS, from " + ("the initial rule)" if result.density["scale_chosen"] is None
                                                          else f"k = {result.density['scale_chosen']:g})"))
    if result.hardware is not None:
        losses = np.asarray(result.hardware["history"])
        ax.plot(best.size + np.arange(1, losses.size + 1), losses, color="C3", lw=0.8,
                label="refinement through the emulation\n(one fresh draw per step)")
    ax.legend(frameon=False, fontsize=7)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel(loss_name)
    ax.set_title("loss", fontsize=10)
    separate = result.settings.get("separate", [])
    names = ", ".join(dict.fromkeys(split_name(name)[0] for name in result.free))
    if separate:
        names += f" ({', '.join(separate)} per data set)"
    fig.suptitle(f"{data.name} ({data.modelling}): {init} → fit of {names}\n"
                 f"mean z² {result.chi2_initial:.3g} → {result.chi2_mean:.3g} ({data.n_points} points, "
                 f"{'under hardware emulation' if result.hardware is not None else method + ' prediction'})",
                 fontsize=10)
    return fig


@in_float64
def write_report(result: FitResult, out: str | Path, *, hardware: str = "none", check_synapses: int | None = None) -> dict:
    """Write fit.json, fit.csv and fit.png into the folder `out` (which must exist), and with the fit's
    uncertainty corner.png (and profiles.png where profiles were computed); returns the fit.json record.
    `check_synapses`: as for `summary`."""
    from ._uncertainty_plots import plot_corner, plot_profiles

    out = Path(out)
    record = summary(result, hardware=hardware, check_synapses=check_synapses)
    figure = figure_bytes(plot_fit(result, record["simulated_check"]), "fit.png", dpi=110)
    write_file(out / "fit.csv", table(result).encode())
    write_file(out / "fit.png", figure)
    if result.uncertainty is not None:
        write_file(out / "corner.png", figure_bytes(plot_corner(result), "corner.png", dpi=90))
        if result.uncertainty.profiles is not None:
            write_file(out / "profiles.png", figure_bytes(plot_profiles(result), "profiles.png", dpi=100))
    write_file(out / "fit.json", (json.dumps(record, indent=2) + "\n").encode())
    return record
