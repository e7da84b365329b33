"""Matplotlib figure of STC runs: weights and protein against time, mean and spread over trials.

As in the model authors' figures (Luboeinski & Tetzlaff 2021, Fig. 2): early weight h,
late weight z and total weight w in % of h0, protein amount p, against time in hours after
the stimulus onset. Built with `matplotlib.figure.Figure` (no pyplot state; shown as an image in Jupyter).
"""

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # matplotlib is loaded by plot_stc, not by the percentages the CSV needs
    from ._plotting import Figure

_CURVES = (("w_pct", "total w", "C3"), ("h_pct", "early h", "C0"), ("z_pct", "late (1 + z)", "C2"))


def stc_percentages(h0, h, p, z) -> dict[str, np.ndarray]:
    """Per-trial traces in the units of the plots and of `ca-plast stc`'s CSV.

    `h`, `p`, `z`: arrays (..., times); returns `h_pct` = 100 h / h0, `z_pct` = 100 (1 + z),
    `w_pct` = 100 (h + h0 z) / h0 and `p`.
    """
    h0, h, p, z = (np.asarray(x, np.float64) for x in (h0, h, p, z))
    return {"h_pct": 100 * h / h0, "z_pct": 100 * (1 + z), "w_pct": 100 * (h + h0 * z) / h0, "p": p}


def plot_stc(t_h, traces: dict[str, np.ndarray], *, title: str = "") -> "Figure":
    """h, z, w (% of h0) and p against time (h after onset): mean line and +-1 s.d. band.

    `t_h`: times (n,); `traces`: `stc_percentages` output, each (trials, n) or (n,).
    """
    from ._plotting import Figure

    fig = Figure(figsize=(7, 5), layout="constrained")
    ax_w, ax_p = fig.subplots(2, 1, sharex=True, height_ratios=(2, 1))
    t_h = np.asarray(t_h)

    def band(ax, values, label, color):
        values = np.atleast_2d(np.asarray(values))
        mean, spread = values.mean(axis=0), values.std(axis=0)
        ax.plot(t_h, mean, color=color, lw=1.5, label=label)
        if values.shape[0] > 1:
            ax.fill_between(t_h, mean - spread, mean + spread, color=color, alpha=0.2, lw=0)

    ax_w.axhline(100.0, color="0.6", lw=0.8)
    for key, label, color in _CURVES:
        band(ax_w, traces[key], label, color)
    ax_w.set_ylabel("weight (% of h0)")
    ax_w.legend(frameon=False, loc="best")
    ax_w.set_title(title)
    band(ax_p, traces["p"], "protein p", "C4")
    ax_p.set_ylabel("protein p")
    ax_p.set_xlabel("time after stimulus onset (h)")
    for ax in (ax_w, ax_p):
        ax.axvline(0.0, color="0.6", lw=0.8, ls=":")
    return fig
