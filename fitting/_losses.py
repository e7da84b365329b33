"""Model predictions for a data set and the losses that compare them with the data.

Residuals are measured in units of the reported error, `z = (model - data) / sem`.
`chi2` is the mean of z^2 (the figure of merit quoted for GB2012 fits: the cortical-slices
set scores 0.52 on the 10 Sjostrom 2001 points); `soft_l1` is a robust variant that
grows like z^2 for small residuals and like 2|z| for outliers (as in SciPy's
`least_squares(loss="soft_l1")`), so a few odd cells do not dominate a per-cell fit.
"""

from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ca_plast import (
    AbstractRule,
    DensityGrid,
    GraupnerBrunel2012,
    Spikes,
    closed_form_ratio,
    density_ratio,
    density_ratios,
    solve_events,
)
from ca_plast._custom_types import Array, Float
from ca_plast._spikes import without_ticks

from ._panels import PanelRule

METHODS = ("density", "closed-form", "events")


def predict(rule: AbstractRule | PanelRule, spikes: Spikes, method: str = "closed-form",
            grid: DensityGrid = DensityGrid(), panel: Sequence[str] | None = None) -> Float[Array, " n"]:
    """Change ratio (after / before) of every protocol of a batched `Spikes` (jit-compiled, differentiable).

    `method`: "density" (the model's own expectation over its noise, `ca_plast.solve_density`
    on `grid`), "closed-form" (GB2012's analytic approximation: drive averaged over the
    protocol, bistable drift neglected; close to the model only when the protocol is much
    shorter than `tau` and each pairing moves rho little) or "events" (any rule,
    `ca_plast.AbstractRule`: the event solver with noise off on one synapse per initial
    state of `rule.initial_population`, read out by `rule.readout`; the model's own
    prediction for a rule without noise, not for GB2012 with sigma > 0). `panel`: each protocol's panel,
    needed (and only used) when `rule` is a `fitting.PanelRule`: each protocol is then
    solved with its panel's rule, in the same one program.
    Under hardware emulation: `ca_plast.hardware_prediction` (smooth, for fitting) and
    `ca_plast.hardware_ratios` (hard readout, for scoring). One compiled program serves
    protocols of every duration (`without_ticks`).
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; valid methods: {', '.join(METHODS)}")
    rule, axis = _per_protocol(rule, panel)
    return _predict(rule, without_ticks(spikes), method, grid, axis)


def checked_prediction(rule: GraupnerBrunel2012 | PanelRule, spikes: Spikes, method: str,
                       grid: DensityGrid = DensityGrid(), panel: Sequence[str] | None = None) -> np.ndarray:
    """The change ratio of every protocol by `method`, as a fit reports it: "density" through
    `ca_plast.density_ratios` (checked: the grid widens or refines where mass would leave it or
    the noise is too narrow for it), the others through `predict`. `panel` as for `predict`."""
    if method == "density":
        return density_prediction(rule, spikes, grid, panel)[0]
    return np.asarray(predict(rule, spikes, method, panel=panel))


def density_prediction(rule: GraupnerBrunel2012 | PanelRule, spikes: Spikes, grid: DensityGrid = DensityGrid(),
                       panel: Sequence[str] | None = None) -> tuple[np.ndarray, DensityGrid]:
    """`ca_plast.density_ratios` of a rule or a `PanelRule` (`panel` as for `predict`): the checked change
    ratios and the grid they needed."""
    rule, axis = _per_protocol(rule, panel)
    return density_ratios(rule, spikes, grid, rule_per_protocol=axis == 0)


def _per_protocol(rule, panel: Sequence[str] | None) -> tuple[GraupnerBrunel2012, int | None]:
    """The rule and its vmap axis: a `PanelRule` becomes one rule per protocol (axis 0)."""
    if not isinstance(rule, PanelRule):
        return rule, None
    if panel is None:
        raise ValueError("a PanelRule predicts protocols of known panels: pass panel= (each protocol's panel)")
    return rule.per_point(panel), 0


@eqx.filter_jit
def _predict(rule: GraupnerBrunel2012, spikes: Spikes, method: str, grid: DensityGrid, rule_axis: int | None
             ) -> Float[Array, " n"]:
    if method == "density":
        return jax.vmap(density_ratio, in_axes=(rule_axis, 0, None))(rule, spikes, grid)
    if method == "events":
        return jax.vmap(deterministic_ratio, in_axes=(rule_axis, 0))(rule, spikes)
    return jax.vmap(closed_form_ratio, in_axes=(rule_axis, 0))(rule, spikes)


def deterministic_ratio(rule: AbstractRule, spikes: Spikes) -> Array:
    """Change ratio of one protocol by the event solver with noise off, one synapse per initial state."""
    w = solve_events(rule, spikes, rule.initial_population(1, spikes.pre_offset.dtype), key=None).rho
    return rule.readout(w)[0]


def z_scores(model: Array | np.ndarray, data: Array | np.ndarray, sem: Array | np.ndarray) -> Array | np.ndarray:
    """Residuals in units of the reported errors, `(model - data) / sem`."""
    return (model - data) / sem


def chi2(model: Array | np.ndarray, data: Array | np.ndarray, sem: Array | np.ndarray) -> Array:
    """Mean squared z-score, `mean(((model - data) / sem)^2)`."""
    return jnp.mean(z_scores(model, data, sem) ** 2)


def soft_l1(model: Array | np.ndarray, data: Array | np.ndarray, sem: Array | np.ndarray) -> Array:
    """Robust mean of `2 (sqrt(1 + z^2) - 1)`: ~z^2 for |z| << 1, ~2|z| for |z| >> 1."""
    z = z_scores(model, data, sem)
    return jnp.mean(2 * (jnp.sqrt(1 + z**2) - 1))


LOSSES = {"chi2": chi2, "soft_l1": soft_l1}
