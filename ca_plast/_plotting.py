"""Matplotlib figures: STDP curves and calcium / efficacy traces.

Figures are `Figure`s: matplotlib figures built without pyplot (no global state, no display
needed) that show themselves as images in Jupyter; save them with `fig.savefig(path)`.
"""

import io
import os

import matplotlib.figure
import numpy as np


class Figure(matplotlib.figure.Figure):
    """A `matplotlib.figure.Figure` that Jupyter shows as an image (`_repr_png_`).

    Figures made without pyplot are not known to Jupyter's matplotlib integration, which
    would show only `<Figure size ... with N Axes>`; this one renders itself instead.
    """

    def _repr_png_(self) -> bytes:
        buffer = io.BytesIO()
        self.savefig(buffer, format="png", dpi=100)
        return buffer.getvalue()


def figure_bytes(figure: Figure, path: str, dpi: int = 120) -> bytes:
    """`figure` rendered in the format named by the extension of `path` (e.g. `.png`, `.pdf`)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format=os.path.splitext(path)[1].lstrip(".").lower(), dpi=dpi)
    return buffer.getvalue()


def plot_stdp(dts, ratio, sem=None, *, data=None, title: str = "", label: str = "model") -> Figure:
    """STDP curve: change ratio against dt = t_post - t_pre (ms), with optional data points.

    `sem`: error band of a simulated curve (zeros or None for the closed form). `data`:
    optional `(dt_ms, ratio, sem)` arrays of experimental points, drawn with error bars.
    """
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.add_subplot()
    dts, ratio = np.asarray(dts), np.asarray(ratio)
    ax.axhline(1.0, color="0.6", lw=0.8)
    ax.axvline(0.0, color="0.6", lw=0.8)
    ax.plot(dts, ratio, "o-", color="C0", ms=3, label=label)
    if sem is not None and np.any(np.asarray(sem) > 0):
        ax.fill_between(dts, ratio - 2 * np.asarray(sem), ratio + 2 * np.asarray(sem), color="C0", alpha=0.25, lw=0,
                        label="±2 s.e.m.")
    if data is not None:
        ax.errorbar(*(np.asarray(x) for x in data[:2]), yerr=np.asarray(data[2]), fmt="s", color="k", ms=4,
                    capsize=2, label="data")
    ax.set_xlabel("Δt = t_post − t_pre (ms)")
    ax.set_ylabel("change in synaptic strength (after / before)")
    ax.set_title(title)
    ax.legend(frameon=False)
    return fig


def plot_traces(ts, c, rho, *, theta_p: float, theta_d: float, title: str = "") -> Figure:
    """Calcium (with both thresholds) and efficacy rho against time (ms) for one protocol."""
    fig = Figure(figsize=(7, 5), layout="constrained")
    ax_c, ax_rho = fig.subplots(2, 1, sharex=True)
    ts = np.asarray(ts)
    ax_c.plot(ts, np.asarray(c), color="C1", lw=1)
    ax_c.axhline(theta_p, color="C3", ls="--", lw=1, label="θ_p")
    ax_c.axhline(theta_d, color="C0", ls="--", lw=1, label="θ_d")
    ax_c.set_ylabel("calcium c")
    ax_c.legend(frameon=False, loc="upper right")
    ax_c.set_title(title)
    rho = np.asarray(rho)
    ax_rho.plot(ts, rho.reshape(ts.size, -1), lw=1)
    ax_rho.set_ylabel("efficacy ρ")
    ax_rho.set_xlabel("time (ms)")
    return fig
