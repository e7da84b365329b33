"""Comparing fits on the same data: information criteria and cross-validated predictive error.

With independent Gaussian errors of the reported size, `-2 log L = sum z^2 + const`, so for
a fit with `p` free parameters on `n` points

    AIC  = sum z^2 + 2 p
    AICc = AIC + 2 p (p + 1) / (n - p - 1)        (n > p + 1)
    BIC  = sum z^2 + p log n

up to the same constant for every fit of the same data: differences between two rules or
two calcium models fitted to the same points are meaningful, absolute values are not. Lower
is better; a difference below about 2 does not distinguish them.

Cross-validation (`cross_validate`) measures what the criteria estimate, the error on points
a fit has not seen: the points are dealt into `folds` folds (`folds = n`: leave one point
out) in an order drawn with `seed`; for each fold the rule is refitted to the other points
and scored on the held-out ones, by the fit's own prediction. The refit starts from the
full fit and runs L-BFGS (at most `iterations`), not the full multi-start search: it
measures how much the fitted optimum moves without each fold, which is the usual
approximation of cross-validation for expensive models (and says so in its record).
"""

import numpy as np

from ca_plast._progress import Progress

from ._fit import FitResult, Problem, lbfgs_minimise, loss_and_grad
from ._losses import checked_prediction, chi2
from ._precision import in_float64
from ._transforms import FreeParameters


def information_criteria(result: FitResult) -> dict:
    """AIC, AICc and BIC of a fit (module docstring), with the numbers they come from."""
    n, p = result.dataset.n_points, len(result.free)
    total = float(np.sum(((np.asarray(result.prediction) - result.dataset.data) / result.dataset.sem) ** 2))
    aic = total + 2 * p
    return {"n_points": n, "n_free": p, "sum_z2": total, "aic": aic,
            "aicc": aic + 2 * p * (p + 1) / (n - p - 1) if n > p + 1 else None,
            "bic": total + p * float(np.log(n)),
            "note": "-2 log L = sum z^2 + const (Gaussian errors, the reported s.e.m.); compare differences between fits "
                    "of the same data only"}


def _folds(n: int, folds: int, seed: int) -> list[np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    return [np.sort(order[k::folds]) for k in range(folds)]


@in_float64
def cross_validate(result: FitResult, folds: int = 5, *, seed: int = 0, iterations: int = 30,
                   progress: bool = False) -> dict:
    """K-fold cross-validated mean z^2 of `result` on points it did not see (module docstring).

    `folds`: 2 to n (n: leave one point out). Returns the record for fit.json: the held-out
    mean z^2 over all points, per fold (held-out points, their mean z^2, the training
    loss), and the held-out prediction of every point.
    """
    data = result.dataset
    if result.hardware is not None:
        raise ValueError("cross_validate: a fit through hardware emulation has a stochastic loss; validate the float fit")
    if isinstance(folds, bool) or int(folds) != folds or not 2 <= folds <= data.n_points:
        raise ValueError(f"cross_validate: folds must be a whole number from 2 to {data.n_points} (the points), got {folds!r}")
    free = FreeParameters(result.initial_model, result.free, result.settings["bounds"])
    u0, static = free.split(result.model)
    held_out = np.full(data.n_points, np.nan)
    records = []
    bar = Progress(progress, folds, f"cross-validation ({folds} folds, refits in the model)", unit="fold")
    for k, test in enumerate(_folds(data.n_points, int(folds), seed)):
        train = np.setdiff1d(np.arange(data.n_points), test)
        part = data.subset(train)
        problem = Problem.of(part, free, result.loss, result.method, result.grid)

        def evaluate(u, problem=problem):
            return loss_and_grad(u, static, problem)

        state, value, steps = lbfgs_minimise(u0, evaluate, iterations=iterations,
                                             converged=lambda old, new: old - new <= 1e-6 * abs(old))
        rule = free.combine(state.u, static)
        held = data.subset(test)
        prediction = checked_prediction(rule, held.spikes(), result.method, result.grid, held.panel)
        held_out[test] = prediction
        records.append({"held_out": [int(i) for i in test], "chi2_held_out": float(chi2(prediction, held.data, held.sem)),
                        "training_loss": value, "iterations": steps, "params": free.values(rule)})
        bar.update(k + 1)
    bar.update(folds, final=True)
    return {"folds": int(folds), "seed": seed, "chi2_mean_held_out": float(chi2(held_out, data.data, data.sem)),
            "chi2_mean_fit": float(chi2(np.asarray(result.prediction), data.data, data.sem)),
            "prediction_held_out": [float(v) for v in held_out], "per_fold": records,
            "method": f"each fold refitted from the full fit by L-BFGS on the {result.method} prediction (at most "
                      f"{iterations} iterations), not by the full multi-start search"}


def compare(records: dict[str, dict]) -> str:
    """A table comparing fits of the same data (fit.json records by label): score, criteria and their
    differences from the best, cross-validated error where present. ValueError if the data differ."""
    labels = list(records)
    if len(labels) < 2:
        raise ValueError("compare: give at least two fits")
    first = records[labels[0]]
    for label in labels[1:]:
        other = records[label]
        if other["n_points"] != first["n_points"] or other.get("data") != first.get("data"):
            raise ValueError(f"compare: {label} was fitted to other data than {labels[0]} "
                             f"({other['n_points']} vs {first['n_points']} points, or other values); "
                             "criteria compare fits of the same data only")
    criteria = {label: records[label]["model_comparison"] for label in labels}
    best = {key: min(c[key] for c in criteria.values() if c[key] is not None) for key in ("aic", "bic")}
    lines = [f"{'fit':24s} {'free':>4s} {'mean z^2':>9s} {'AIC':>9s} {'dAIC':>7s} {'BIC':>9s} {'dBIC':>7s} {'CV mean z^2':>12s}"]
    for label in labels:
        c, record = criteria[label], records[label]
        cv = record.get("cross_validation")
        lines.append(f"{label[:24]:24s} {c['n_free']:4d} {record['chi2_mean']:9.4g} {c['aic']:9.4g} "
                     f"{c['aic'] - best['aic']:7.3g} {c['bic']:9.4g} {c['bic'] - best['bic']:7.3g} "
                     f"{'-' if cv is None else format(cv['chi2_mean_held_out'], '.4g'):>12s}")
    lines.append("AIC, BIC: sum z^2 plus a penalty for free parameters; lower is better, differences below ~2 do not "
                 "distinguish; CV: mean z^2 on held-out points")
    return "\n".join(lines)
