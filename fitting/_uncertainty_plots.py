"""Figures of a fit's uncertainty: profile likelihoods (profiles.png) and the Laplace corner plot (corner.png)."""

import numpy as np
from matplotlib.patches import Ellipse
from matplotlib.ticker import NullFormatter

from ca_plast._plotting import Figure

from ._fit import FitResult
from ._uncertainty import CHI2_95, Z95

# 95 % point of chi^2 with two degrees of freedom: the joint 95 % region of a pair.
CHI2_95_2D = 5.991464547107979


def _grid(n: int) -> tuple[int, int]:
    columns = min(n, 5)
    return -(-n // columns), columns


def _to_x(value, log: bool):
    return np.exp(value) if log else value


def plot_profiles(result: FitResult) -> Figure:
    """One panel per free parameter: its profile likelihood (the model refitted at each point,
    Delta chi^2 = 2 Delta(-log L) / s^2), the Laplace approximation's parabola, the 95 % line
    and the bounds."""
    uncertainty = result.uncertainty
    if uncertainty is None or uncertainty.profiles is None:
        raise ValueError("plot_profiles: the fit has no profiles; compute them with with_uncertainty(result, profile=True)")
    fitted, found = uncertainty.laplace, uncertainty.profiles
    rows, columns = _grid(len(found))
    fig = Figure(figsize=(3.1 * columns, 2.7 * rows + 0.6), layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    sd = np.sqrt(np.diag(fitted.covariance))
    for ax, (name, profile) in zip(axes, found.items()):
        i = fitted.names.index(name)
        log = fitted.coordinates[i] == "log"
        v_hat = np.log(fitted.estimate[i]) if log else fitted.estimate[i]
        lo, hi = float(fitted.lower[i]), float(fitted.upper[i])
        v_lo, v_hi = (np.log(lo), np.log(hi)) if log else (lo, hi)
        v = np.linspace(max(v_lo, v_hat - 3 * Z95 * sd[i]), min(v_hi, v_hat + 3 * Z95 * sd[i]), 200)
        ax.plot(_to_x(v, log), ((v - v_hat) / sd[i]) ** 2, color="0.55", lw=1, ls="--", label="Laplace")
        ax.plot(profile.x, profile.rise, "o-", color="C0", ms=3, lw=1.2, label="profile (model refitted)")
        ax.axhline(CHI2_95, color="C3", lw=0.8, ls=":")
        for edge in (lo, hi):
            ax.axvline(edge, color="0.3", lw=0.8)
        ax.axvline(fitted.estimate[i], color="k", lw=0.6, alpha=0.5)
        top = max(2 * CHI2_95, float(np.max(profile.rise, initial=0.0)) * 1.05)
        ax.set_ylim(min(-0.5, float(np.min(profile.rise)) - 0.5), min(top, 8 * CHI2_95))
        span = [min(profile.x.min(), profile.ci95[0]), max(profile.x.max(), profile.ci95[1])]
        log = log and span[1] > 3 * span[0]  # a log axis over less than a factor 3 only crowds its labels
        if log:
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(NullFormatter())
        pad = (np.log(span[1] / span[0]) if log else span[1] - span[0]) * 0.08 or 1.0
        ax.set_xlim(*((span[0] * np.exp(-pad), span[1] * np.exp(pad)) if log else (span[0] - pad, span[1] + pad)))
        if profile.identified:
            verdict = "identified"
        else:
            open_sides = [side for side, state in zip(("below", "above"), profile.sides) if state == "open"]
            verdict = ("flat" if profile.flat else "open " + " and ".join(open_sides)) + ": not identified"
        ax.set_title(f"{name}: {verdict}", fontsize=9, color="k" if profile.identified else "C3")
        ax.set_xlabel(name, fontsize=8)
        ax.set_ylabel("Δχ² (profile)", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in axes[len(found):]:
        ax.set_axis_off()
    axes[0].legend(frameon=False, fontsize=7)
    scale = np.sqrt(fitted.scale2)
    fig.suptitle(f"{result.dataset.name}: profile likelihoods ({result.method} prediction); 95 % where Δχ² = 3.84"
                 + ("" if scale == 1 else f", errors scaled by s = {scale:.3g}") + "; vertical lines: bounds",
                 fontsize=10)
    return fig


def plot_corner(result: FitResult) -> Figure:
    """The Laplace approximation of every pair of free parameters: joint 95 % regions (ellipses in
    the coordinates v, drawn on log axes for scale parameters) and, on the diagonal, each
    marginal (with the profile's exp(-Delta chi^2 / 2) where profiles were computed) and the
    reported 95 % interval shaded (the profile's where computed)."""
    uncertainty = result.uncertainty
    if uncertainty is None:
        raise ValueError("plot_corner: the fit has no uncertainty; compute it with with_uncertainty(result)")
    fitted, found = uncertainty.laplace, uncertainty.profiles or {}
    names, p = fitted.names, len(fitted.names)
    # The verdict the report gives: the profile's where it was computed.
    identified = [found[n].identified if n in found else bool(fitted.identified[i]) for i, n in enumerate(names)]
    log = [c == "log" for c in fitted.coordinates]
    v_hat = np.where(log, np.log(fitted.estimate), fitted.estimate)
    sd = np.sqrt(np.diag(fitted.covariance))
    v_lo = np.array([np.log(b) if is_log else b for b, is_log in zip(fitted.lower, log)])
    v_hi = np.array([np.log(b) if is_log else b for b, is_log in zip(fitted.upper, log)])
    limits = np.stack([np.maximum(v_lo, v_hat - 1.3 * Z95 * sd), np.minimum(v_hi, v_hat + 1.3 * Z95 * sd)], axis=1)
    draws = None
    if uncertainty.posterior is not None:
        flat = uncertainty.posterior.samples.reshape(-1, p)
        flat = flat[:: max(1, len(flat) // 2000)]
        draws = np.where(log, np.log(flat), flat)
    fig = Figure(figsize=(1.55 * p + 1, 1.55 * p + 0.6), layout="constrained")
    axes = fig.subplots(p, p, squeeze=False)
    for row in range(p):
        for column in range(p):
            ax = axes[row, column]
            if column > row:
                ax.set_axis_off()
                continue
            colour = "C0" if identified[column] else "C3"
            if column == row:
                v = np.linspace(limits[row, 0], limits[row, 1], 200)
                ax.plot(v, np.exp(-0.5 * ((v - v_hat[row]) / sd[row]) ** 2), color="0.4", lw=1)
                if names[row] in found:
                    profile = found[names[row]]
                    pv = np.log(profile.x) if log[row] else profile.x
                    ax.plot(pv, np.exp(-0.5 * profile.rise), "o-", color=colour, ms=2, lw=0.8)
                # The interval the report gives: the profile's where it was computed.
                interval = np.asarray(found[names[row]].ci95 if names[row] in found else fitted.ci95[row])
                ax.axvspan(*np.log(interval) if log[row] else interval, color=colour, alpha=0.12)
                if draws is not None:
                    counts, edges = np.histogram(draws[:, row], bins=30)
                    ax.stairs(counts / counts.max(), edges, color="C2", lw=0.8)
                ax.set_ylim(0, 1.1)
                ax.set_yticks([])
            else:
                cov = fitted.covariance[np.ix_([column, row], [column, row])]
                values, vectors = np.linalg.eigh(cov)
                minor, major = 2 * np.sqrt(CHI2_95_2D * np.maximum(values, 0))
                angle = np.degrees(np.arctan2(vectors[1, 1], vectors[0, 1]))  # of the major axis
                ax.add_patch(Ellipse((v_hat[column], v_hat[row]), major, minor, angle=angle, fill=False, color="C0", lw=1))
                if draws is not None:
                    ax.plot(draws[:, column], draws[:, row], ",", color="C2", alpha=0.4)
                ax.plot(v_hat[column], v_hat[row], "k.", ms=3)
                ax.set_ylim(*limits[row])
            ax.set_xlim(*limits[column])
            ax.tick_params(labelsize=6)
            if row == p - 1:
                ax.set_xlabel(names[column] + (" (log)" if log[column] else ""), fontsize=7,
                              color="k" if identified[column] else "C3")
            else:
                ax.set_xticklabels([])
            if column == 0 and row > 0:
                ax.set_ylabel(names[row] + (" (log)" if log[row] else ""), fontsize=7,
                              color="k" if identified[row] else "C3")
            elif column != row:
                ax.set_yticklabels([])
    scale = np.sqrt(fitted.scale2)
    fig.suptitle(f"{result.dataset.name}: Laplace approximation ({result.method} prediction), joint 95 % regions; "
                 "axes in log x for scale parameters;" + (" green: posterior draws (NUTS);" if draws is not None else "")
                 + "\nred: not identified (95 % interval reaches a bound; the profile's verdict where computed)"
                 + ("" if scale == 1 else f"; errors scaled by s = {scale:.3g}"), fontsize=9)
    return fig
