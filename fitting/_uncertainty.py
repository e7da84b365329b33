"""How well a fit determines its parameters: the Laplace approximation and profile likelihoods.

Likelihood. The data points are independent Gaussians with the reported s.e.m., so
`-log L = 1/2 sum z_i^2 + const = (n/2) chi2_mean`, computed with the fit's own deterministic
prediction (the density solver, or the closed form with `method="closed-form"`); with
`loss="soft_l1"` the robust loss takes the place of z^2 (a pseudo-likelihood).

Coordinates. Each free parameter is measured in `v = log x` where its lower bound is
positive (scale parameters: rates, time constants, amplitudes) and `v = x` otherwise (e.g.
`D`), the scales on which the fit spreads its starts. Intervals are computed in v and mapped
back, so they are asymmetric in x for scale parameters and never leave the positive axis.

Error scale. When the model misses the data by more than their errors allow, the reported
errors understate the scatter and intervals from them are too narrow. Every interval is
therefore widened by `s = sqrt(max(1, sum z^2 / (n - p)))` (the Birge ratio; `n` points, `p`
free parameters); `s = 1` when `n <= p`, where the residuals cannot estimate it.

Laplace approximation (`laplace`). `H`, the exact Hessian of `-log L` in v at the fitted
point (JAX, forward over reverse mode), gives the covariance `s^2 H^-1` and the interval
`v +- 1.96 sqrt(C_ii)`. Fits often free more parameters than the data determine, and then
some directions of H have (almost) no curvature, or negative curvature where the fit has
not reached a minimum: the data do not bound them, the parameter bounds do. Measured in
units of each parameter's range (the box of bounds a unit cube), every direction is
therefore given at least the curvature at which its own 95 % interval spans the whole box,
`(1.96 s)^2`; directions below it are reported as *flat*. A parameter is **identified** when
its 95 % interval lies strictly inside its bounds: the data, not the bounds, limit it; its
standard error (delta method, in the parameter's units) is reported then only. Where the
closed form is used and tau, gamma_p, gamma_d and sigma are all free, one flat direction is
exact: the closed form is invariant under (tau, gamma_p, gamma_d, sigma^2) -> k (tau,
gamma_p, gamma_d, sigma^2), so tau is unidentified by construction (the model itself is not
invariant); the record says so.

The Laplace interval is a statement about a quadratic model of the loss, so it is checked
against the model itself: at each end of each interval (the others moved along their
regression on the parameter, where the quadratic profile crosses 3.84) the loss is computed,
and an interval whose ends do not rise by 1.92-7.68 is reported as not confirmed
(`laplace_confirmed`). GB2012's thresholds make its loss piecewise smooth: where a protocol's
calcium stops crossing a threshold the loss has a kink or a wall, and local curvature says
nothing beyond it. Measured on data simulated from DP on the Sjostrom 2001 design
(`benchmarks/calibration.py`, 50 data sets, theta_p and theta_d free), the Laplace intervals
cover the truth in 68-72 % of data sets, the profile intervals in 96-100 % (closed form and
density solver).

Profile likelihood (`profiles`). Each free parameter in turn is held at values stepped away
from the fit on both sides (in v), and at each the others are fitted again (L-BFGS, warm
started from the previous point and from the quadratic model's prediction, within the
bounds). The first step is the interval's half-width with the others held (a lower bound on
the profile's); the distance then grows 1.5-2x per point until the rise
`Delta chi^2 = 2 (-log L_profile - (-log L_fit)) / s^2` passes 3.84 (the 95 % point of chi^2
with one degree of freedom) or the bound is reached. Because the loss has several valleys,
the walk does not stop at the first wall: the fit's other local optima (the best points of
its other starts) that lie beyond it are refitted with the parameter held at their own
value, and from the outermost point below the line the walk goes on. The interval is the
hull of the points below the line, its ends where the rise passes 3.84 for the last time
(interpolated linearly in sqrt(rise), walls narrowed by bisection); a side whose outermost
point (at its bound) is below the line is open. A parameter is identified when both sides
close, **flat** when no point rises to 3.84. A profile that drops below the fit (negative
rise) shows that the fit had not reached the best point; the record says so.
"""

import dataclasses
import json
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ca_plast._custom_types import Array
from ca_plast._output import write_file
from ca_plast._progress import Progress

from ._fit import INVARIANT, INVARIANT_POWERS, FitResult, Problem, lbfgs_minimise, loss_and_grad
from ._losses import LOSSES, predict
from ._panels import split_name
from ._precision import in_float64
from ._transforms import FreeParameters, to_unconstrained

Z95 = 1.959963984540054  # two-sided 95 % point of the standard normal
CHI2_95 = 3.841458820694124  # 95 % point of chi^2 with one degree of freedom (= Z95^2)
# The model confirms a Laplace interval when delta chi^2 at both its ends lies in this range (3.84 / 2 to
# 3.84 x 2; 3.84 where the loss is quadratic).
CHECK_RANGE = (1.92, 7.68)
FLAT_TOLERANCE = 1e-9  # eigenvalues of H at most this fraction of the largest count as zero
# Profiles: at most this many points per side (the distance from the fit grows 1.5-2x per point,
# so a flat side reaches its bound from a first step of 1e-6 of the range), and this many L-BFGS
# iterations per point; a point's fit stops when an iteration lowers the rise by less than
# PROFILE_TOLERANCE.
PROFILE_POINTS = 36
PROFILE_ITERATIONS = 20
PROFILE_TOLERANCE = 1e-4
BISECTIONS = 3
BETTER = 0.1  # a profile point this much below the fit (delta chi^2) is reported: the fit missed the best point
PROFILE_STARTS = 4  # the fit's other local optima tried beyond a wall, per side


@dataclasses.dataclass(frozen=True)
class Likelihood:
    """`-log L` of a fit's data as a function of its free parameters in the coordinates v (module docstring).

    `free`: the free parameters and their bounds; `model`: the fitted rule (the fixed
    parameters come from it); `n`: data points; `scale2`: the error scale s^2.
    """

    free: FreeParameters
    model: eqx.Module
    problem: Problem
    n: int
    scale2: float

    @classmethod
    def of(cls, result: FitResult) -> "Likelihood":
        data = result.dataset
        free = FreeParameters(result.initial_model, result.free, result.settings["bounds"])
        # As the fit built it, so that its compiled loss and gradient serve here too.
        problem = Problem.of(data, free, result.loss, result.method, result.grid)
        n, p = data.n_points, len(result.free)
        residual = float(np.sum(((np.asarray(result.prediction) - data.data) / data.sem) ** 2))
        scale2 = max(1.0, residual / (n - p)) if n > p else 1.0
        return cls(free, result.model, problem, n, scale2)

    @property
    def is_log(self) -> np.ndarray:
        return np.asarray(self.free.is_log())

    def x_of(self, i: int, v):
        """Parameter i's value(s) at coordinate(s) v."""
        return np.exp(v) if self.is_log[i] else np.asarray(v, dtype=float)

    def to_v(self, x) -> np.ndarray:
        return np.where(self.is_log, np.log(np.maximum(x, 1e-300)), x)

    def to_x(self, v) -> np.ndarray:
        return np.where(self.is_log, np.exp(v), v)

    @property
    def v_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return self.to_v(np.asarray(self.free.lower)), self.to_v(np.asarray(self.free.upper))

    @property
    def estimate(self) -> np.ndarray:
        """The fitted values in v."""
        return self.to_v(np.asarray(list(self.free.values(self.model).values())))


@eqx.filter_jit
def _derivatives(v: Array, free: FreeParameters, model: eqx.Module, problem: Problem, n: int
                 ) -> tuple[Array, Array, Array]:
    """`-log L`, its gradient and its Hessian in v (one program: forward mode over reverse mode)."""
    is_log = jnp.asarray(free.is_log())

    def nll(v):
        x = jnp.where(is_log, jnp.exp(v), v)
        rule = free.set(model, tuple(x[i] for i in range(x.size)))
        prediction = predict(rule, problem.spikes, problem.method, problem.grid, problem.panel)
        return n / 2 * LOSSES[problem.loss](prediction, problem.data, problem.sem)

    def gradient(v):
        value, grad = jax.value_and_grad(nll)(v)
        return grad, (value, grad)

    hessian, (value, grad) = jax.jacfwd(gradient, has_aux=True)(v)
    return value, grad, hessian


@dataclasses.dataclass(frozen=True)
class Laplace:
    """The Laplace approximation at a fit (module docstring). Arrays are indexed like `names`.

    `coordinates`: "log" or "linear" per parameter; `estimate`: fitted values (parameter
    units); `lower`, `upper`: bounds; `nll`, `gradient`, `hessian`: `-log L` and its
    derivatives in v; `scale2`: the error scale s^2; `covariance`: in v, flat directions
    bounded by the box; `eigenvalues`, `eigenvectors` (columns): of H in units of the bounds
    (`H_ij span_i span_j`); `flat`: indices of the directions bounded by the box more than by
    the data; `interval_v`, `ci95`: 95 % intervals in v and in parameter units (clipped to
    the bounds); `identified`; `se`: standard errors in parameter units (NaN where
    unidentified); `correlation`; `notes`: what the report must say; `check`: per parameter,
    delta chi^2 of the model itself at the two ends of the interval, where the quadratic
    model puts 3.84 (None at an end clipped to a bound).
    """

    names: tuple[str, ...]
    coordinates: tuple[str, ...]
    estimate: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    nll: float
    gradient: np.ndarray
    hessian: np.ndarray
    scale2: float
    covariance: np.ndarray
    eigenvalues: np.ndarray
    eigenvectors: np.ndarray
    flat: tuple[int, ...]
    interval_v: np.ndarray
    ci95: np.ndarray
    identified: np.ndarray
    se: np.ndarray
    correlation: np.ndarray
    notes: tuple[str, ...]
    check: tuple[tuple[float | None, float | None], ...] = ()


def _invariance_direction(likelihood: Likelihood) -> np.ndarray | None:
    """The closed form's invariance (tau, gamma_p, gamma_d, sigma^2) -> k (...) as a unit vector in v, where all four are free on log scales."""
    bases = [split_name(name)[0] for name in likelihood.free.names]  # tau, or tau[panel]: all panels scale together
    scaled = [b in INVARIANT for b in bases]
    if not set(INVARIANT) <= set(bases) or not all(likelihood.is_log[scaled]):
        return None
    direction = np.array([INVARIANT_POWERS[b] if s else 0.0 for b, s in zip(bases, scaled)])
    return direction / np.linalg.norm(direction)


@in_float64
def laplace(result: FitResult) -> Laplace:
    """The Laplace approximation of `result`'s likelihood at its fitted parameters (module docstring)."""
    likelihood = Likelihood.of(result)
    names = likelihood.free.names
    v = likelihood.estimate
    value, grad, hessian = (np.asarray(a) for a in _derivatives(jnp.asarray(v), likelihood.free, likelihood.model,
                                                                   likelihood.problem, likelihood.n))
    hessian = (hessian + hessian.T) / 2
    lower, upper = likelihood.v_bounds
    span = upper - lower
    # In units of each parameter's range (w = v / span), where the box of bounds is a unit cube.
    eigenvalues, eigenvectors = np.linalg.eigh(hessian * np.outer(span, span))
    floor = Z95**2 * likelihood.scale2
    flat = tuple(int(j) for j in np.flatnonzero(eigenvalues < floor))
    covariance_w = likelihood.scale2 * (eigenvectors / np.maximum(eigenvalues, floor)) @ eigenvectors.T
    covariance = covariance_w * np.outer(span, span)
    half = Z95 * np.sqrt(np.diag(covariance))
    low, high = v - half, v + half
    margin = 1e-9 * span
    identified = (low > lower + margin) & (high < upper - margin)
    interval_v = np.stack([np.maximum(low, lower), np.minimum(high, upper)], axis=1)
    x = likelihood.to_x(v)
    se = np.where(identified, np.sqrt(np.diag(covariance)) * np.where(likelihood.is_log, x, 1.0), np.nan)
    sd = np.sqrt(np.diag(covariance))
    correlation = covariance / np.outer(sd, sd)
    notes = []
    if eigenvalues[0] < -FLAT_TOLERANCE * np.max(np.abs(eigenvalues)):
        notes.append(f"the loss curves downward along {int(np.sum(eigenvalues < 0))} direction(s) (smallest eigenvalue "
                     f"{eigenvalues[0]:.3g} in units of the bounds): the fit has not reached a minimum there")
    if flat:
        notes.append(f"{len(flat)} direction(s) are bounded by the parameter bounds more than by the data (curvature "
                     f"below {floor:.3g} in units of the bounds); along them the interval spans the bounds")
    invariance = _invariance_direction(likelihood)
    if invariance is not None:
        if result.method == "closed-form":
            in_w = invariance / span
            alignment = float(np.max(np.abs((in_w / np.linalg.norm(in_w)) @ eigenvectors[:, list(flat)]), initial=0.0))
            notes.append("the closed form is invariant under (tau, gamma_p, gamma_d, sigma^2) -> k (tau, gamma_p, gamma_d, "
                         f"sigma^2): tau is unidentified by construction (a flat direction aligns with it to "
                         f"{alignment:.4f}); the model itself is not invariant: fit with method 'density'")
        else:
            notes.append(f"along the closed form's invariance (tau, gamma_p, gamma_d, sigma^2) -> k (...) the model's "
                         f"-log L has curvature {float(invariance @ hessian @ invariance):.3g} per (log k)^2")
    if likelihood.scale2 > 1:
        notes.append(f"intervals widened by s = {np.sqrt(likelihood.scale2):.3g}: the model misses the data by more than "
                     f"their errors (sum z^2 / (n - p) = {likelihood.scale2:.3g})")
    check = _check_ends(likelihood, v, covariance, interval_v)
    unconfirmed = [n for n, ends in zip(names, check) if not all(e is None or CHECK_RANGE[0] <= e <= CHECK_RANGE[1]
                                                               for e in ends)]
    if unconfirmed:
        notes.append(f"the model does not confirm the Laplace interval of {', '.join(unconfirmed)}: at its ends delta "
                     f"chi^2 is not within {CHECK_RANGE[0]:g}-{CHECK_RANGE[1]:g} of 3.84 (the loss is not quadratic "
                     "there); the profile likelihood gives the model's interval")
    return Laplace(
        names=names, coordinates=tuple("log" if log else "linear" for log in likelihood.is_log), estimate=x,
        lower=np.asarray(likelihood.free.lower), upper=np.asarray(likelihood.free.upper), nll=float(value),
        gradient=grad, hessian=hessian, scale2=likelihood.scale2, covariance=covariance, eigenvalues=eigenvalues,
        eigenvectors=eigenvectors, flat=flat, interval_v=interval_v, ci95=likelihood.to_x(interval_v.T).T,
        identified=identified, se=se, correlation=correlation, notes=tuple(notes), check=tuple(check))


def _check_ends(likelihood: Likelihood, v: np.ndarray, covariance: np.ndarray, interval_v: np.ndarray
                ) -> list[tuple[float | None, float | None]]:
    """Delta chi^2 of the model at each end of each Laplace interval: the point where the quadratic model's
    profile crosses 3.84 (the others moved along their regression on the parameter, `C[:, i] / C_ii`)."""
    free, problem = likelihood.free, likelihood.problem
    u_hat, static = free.split(likelihood.model)
    loss_hat = float(loss_and_grad(u_hat, static, problem)[0])
    lower, upper = likelihood.v_bounds
    found = []
    for i in range(v.size):
        ends = []
        for end in interval_v[i]:
            point = v + covariance[:, i] / covariance[i, i] * (end - v[i])
            if not (lower[i] < end < upper[i]) or np.any(point <= lower) or np.any(point >= upper):
                ends.append(None)
                continue
            rule = free.with_values(likelihood.model, dict(zip(free.names, likelihood.to_x(point))))
            loss = float(loss_and_grad(free.split(rule)[0], static, problem)[0])
            ends.append(likelihood.n * (loss - loss_hat) / likelihood.scale2)
        found.append(tuple(ends))
    return found


@dataclasses.dataclass(frozen=True)
class Profile:
    """The profile likelihood of one free parameter (module docstring).

    `x`: the parameter's values visited, ascending, the fit's among them; `rise`: Delta chi^2
    there; `ci95`: the likelihood-ratio interval (a bound where that side is open); `sides`:
    "closed" or "open" (below, above); `identified`: both closed; `flat`: no point rises to
    3.84; `evaluations`: loss-and-gradient evaluations spent; `disjoint`: the points below the
    line are not contiguous (the interval is their hull: the likelihood has several valleys).
    """

    name: str
    x: np.ndarray
    rise: np.ndarray
    ci95: tuple[float, float]
    sides: tuple[str, str]
    identified: bool
    flat: bool
    evaluations: int
    disjoint: bool = False


class _Profiler:
    """Walks the profiles of one fit: the compiled loss and gradient in the fit's coordinates u, with one parameter held."""

    def __init__(self, result: FitResult, fitted: Laplace | None):
        self.likelihood = likelihood = Likelihood.of(result)
        self.free, self.problem = likelihood.free, likelihood.problem
        self.u_hat, self.static = self.free.split(likelihood.model)
        self.fitted = fitted
        self.loss_hat = float(loss_and_grad(self.u_hat, self.static, self.problem)[0])
        self.evaluations = 0
        # The fit's other local optima (distinct, best first): starts for the profile beyond a wall.
        fitted_values = np.asarray(list(self.free.values(likelihood.model).values()))
        others, seen = [], [fitted_values]
        for k in np.argsort(np.asarray(result.start_losses), kind="stable"):
            if k >= len(result.start_points) or len(others) == PROFILE_STARTS:
                break
            values = np.asarray([result.start_points[k][n] for n in self.free.names])
            if all(np.max(np.abs(np.log(np.abs(values) + 1e-12) - np.log(np.abs(s) + 1e-12))) > 1e-3 for s in seen):
                seen.append(values)
                others.append(self.free.split(self.free.with_values(likelihood.model, result.start_points[k]))[0])
        self.others = others

    def rise(self, loss: float) -> float:
        return self.likelihood.n * (loss - self.loss_hat) / self.likelihood.scale2

    def evaluate(self, u, held: int):
        """The loss and its gradient with the held parameter's component zeroed (so L-BFGS never moves it)."""
        self.evaluations += 1
        value, grad = loss_and_grad(u, self.static, self.problem)
        leaves = list(self.free.get(grad))
        leaves[held] = jnp.zeros_like(leaves[held])
        return value, self.free.set(grad, leaves)

    def at(self, u, held: int, v: float):
        """`u` with the held parameter at v (in the coordinates v)."""
        i, x = held, float(self.likelihood.x_of(held, v))
        leaves = list(self.free.get(u))
        leaves[i] = to_unconstrained(jnp.asarray(x, dtype=leaves[i].dtype), self.free.lower[i], self.free.upper[i])
        return self.free.set(u, leaves)

    def predicted(self, held: int, v: float):
        """The quadratic model's best point with the held parameter at v (the others shifted by -H_oo^+ H_oi dv)."""
        fitted = self.fitted
        assert fitted is not None  # `point` calls this only with the Laplace approximation
        v0 = self.likelihood.estimate
        others = [k for k in range(v0.size) if k != held]
        shift = -np.linalg.pinv(fitted.hessian[np.ix_(others, others)]) @ fitted.hessian[others, held] * (v - v0[held])
        target = v0.copy()
        target[others] += shift
        target[held] = v
        lower, upper = self.likelihood.v_bounds
        x = self.likelihood.to_x(np.clip(target, lower, upper))
        return self.free.split(self.free.with_values(self.likelihood.model, dict(zip(self.free.names, x))))[0]

    def optimise(self, u, held: int, memory):
        """Fit the other parameters from `u` (the held one fixed), with the L-BFGS memory of the
        previous point (`memory`, or None); returns the L-BFGS state at the point and its loss."""
        state, value, _ = lbfgs_minimise(u, lambda w: self.evaluate(w, held), iterations=PROFILE_ITERATIONS, memory=memory,
                                         converged=lambda old, new: self.rise(old) - self.rise(new) < PROFILE_TOLERANCE)
        return state, value

    def bisect(self, held: int, below: tuple[float, float], above: tuple[float, float], state) -> list[tuple[float, float]]:
        """Points that narrow a crossing of the 95 % line where the profile jumps (a wall: the rise goes from
        below 3.84 to more than twice it between two points), by bisection, at most BISECTIONS of them;
        each refitted from the state of the nearest point below the line (`state`: that of `below`)."""
        points = []
        for _ in range(BISECTIONS):
            if above[1] <= 2 * CHI2_95:
                break
            v = (below[0] + above[0]) / 2
            trial, loss = self.optimise(self.at(self.u_hat if state is None else state.u, held, v), held, state)
            point = (v, self.rise(loss))
            points.append(point)
            if point[1] < CHI2_95:
                below, state = point, trial
            else:
                above = point
        return points

    def point(self, held: int, v: float, state, extra=()):
        """The profile at v: the others refitted from the best of the previous point's state, the quadratic
        model's prediction and `extra` starts (all with the held parameter at v). Returns (state, rise)."""
        starts = [self.at(self.u_hat if state is None else state.u, held, v), *(self.at(u, held, v) for u in extra)]
        if self.fitted is not None:
            starts.append(self.at(self.predicted(held, v), held, v))
        scored = [(float(self.evaluate(s, held)[0]), k) for k, s in enumerate(starts)]
        state, loss = self.optimise(starts[min(scored)[1]], held, state)
        return state, self.rise(loss)

    def walk(self, held: int, direction: int, v: float, state, step: float) -> list[tuple[float, float, object]]:
        """(v, rise, state) of points from v outward until the rise passes 3.84 or the bound is reached."""
        lower, upper = self.likelihood.v_bounds
        v0, edge = self.likelihood.estimate[held], (lower if direction < 0 else upper)[held]
        span = upper[held] - lower[held]
        points = []
        for _ in range(PROFILE_POINTS):
            if (edge - v) * direction <= 1e-9 * span:
                break
            v = v + direction * step
            last = (edge - v) * direction <= 0
            v = edge if last else v
            state, rise = self.point(held, v, state)
            points.append((v, rise, state))
            if rise >= CHI2_95 or last:
                break
            # The distance from the fit grows by 1.5-2x per point, aiming at the 95 % line as a parabola would.
            step = abs(v - v0) * (np.clip(np.sqrt(1.1 * CHI2_95 / max(rise, 1e-6)), 1.5, 2.0) - 1)
        return points

    def side(self, held: int, direction: int) -> list[tuple[float, float]]:
        """(v, rise) of the points of one side (module docstring): walking outward from the fit until the
        rise passes 3.84 or the bound is reached; then the fit's other local optima (`start_points`)
        beyond that point, each refitted with the held parameter at its own value; from the outermost
        point below the line, walking on; and bisection of the outermost crossing where it is a wall."""
        lower, upper = self.likelihood.v_bounds
        v0 = self.likelihood.estimate[held]
        span = upper[held] - lower[held]
        # First step: the interval's half-width with the others held, a lower bound on the profile's.
        curvature = 0.0 if self.fitted is None else self.fitted.hessian[held, held]
        step = Z95 * np.sqrt(self.likelihood.scale2 / curvature) if curvature > 0 else span / 8
        points = self.walk(held, direction, v0, None, float(np.clip(step, span * 1e-6, span / 4)))
        reached = points[-1][0] if points else v0
        for u in self.others:
            x = self.free.values(self.free.combine(u, self.static))[self.free.names[held]]
            v = float(np.log(x) if self.likelihood.is_log[held] else x)
            if (v - reached) * direction > 1e-9 * span:
                state, rise = self.point(held, v, None, extra=(u,))
                points.append((v, rise, state))
        points.sort(key=lambda p: (p[0] - v0) * direction)
        below = [k for k, p in enumerate(points) if p[1] < CHI2_95]
        if below and below[-1] == len(points) - 1:
            v, _, state = points[-1]
            points += self.walk(held, direction, v, state, max(abs(v - v0) / 2, span * 1e-6))
        outer = below[-1] if below else -1
        if outer + 1 < len(points) and points[outer + 1][1] >= CHI2_95:
            inner = (v0, 0.0) if outer < 0 else points[outer][:2]
            points += [(*p, None) for p in self.bisect(held, inner, points[outer + 1][:2],
                                                       None if outer < 0 else points[outer][2])]
        return [(v, rise) for v, rise, _ in points]


def _crossing(v0: float, points: list[tuple[float, float]]) -> float | None:
    """Where the rise passes 3.84 for the last time on one side (its points ordered outward from the fit,
    whose rise is 0 at v0), linear in sqrt(rise); None where the outermost point is below the line (open)."""
    below = [k for k, (_, rise) in enumerate(points) if rise < CHI2_95]
    outer = below[-1] if below else -1
    if outer + 1 == len(points):
        return None
    (v_in, rise_in), (v_out, rise_out) = (v0, 0.0) if outer < 0 else points[outer], points[outer + 1]
    a, b = np.sqrt(max(rise_in, 0.0)), np.sqrt(rise_out)
    return float(v_in + (v_out - v_in) * (np.sqrt(CHI2_95) - a) / (b - a))


def _disjoint(rise: np.ndarray) -> bool:
    """Whether the points below the 95 % line are separated by points above it."""
    inside = np.flatnonzero(rise < CHI2_95)
    return bool(np.any(rise[inside[0]:inside[-1] + 1] >= CHI2_95))


@in_float64
def profiles(result: FitResult, fitted: Laplace | None = None, *, names=None, progress: bool = False,
             done: dict[str, Profile] | None = None, save=None) -> dict[str, Profile]:
    """The profile likelihood of every free parameter (or of `names`) of `result` (module docstring).

    `fitted`: the fit's `laplace` record (computed here unless given); its curvature sets
    the first step (the half-width of the interval with the others held, a lower bound on
    the profile's) and its quadratic model predicts the others at each step, a second start
    beside the previous step's point. `progress`: a bar on stderr. `done`: profiles already
    computed (kept, not recomputed); `save(profiles)` is called after each parameter.
    """
    fitted = laplace(result) if fitted is None else fitted
    profiler = _Profiler(result, fitted)
    likelihood = profiler.likelihood
    names = likelihood.free.names if names is None else tuple(names)
    for name in names:
        if name not in likelihood.free.names:
            raise ValueError(f"profiles: {name!r} is not a free parameter of this fit; free: {', '.join(likelihood.free.names)}")
    bar = Progress(progress, len(names), "profile likelihoods (refitting the others at each point)", unit="parameter")
    found = {}
    for count, name in enumerate(names, 1):
        if done is not None and name in done:
            found[name] = done[name]
            bar.update(count)
            continue
        held = likelihood.free.names.index(name)
        before = profiler.evaluations
        v0 = likelihood.estimate[held]
        below, above = (sorted(profiler.side(held, d), key=lambda p: abs(p[0] - v0)) for d in (-1, 1))
        ends = [_crossing(v0, below), _crossing(v0, above)]
        lower, upper = likelihood.v_bounds
        v = np.array([p[0] for p in below[::-1]] + [v0] + [p[0] for p in above])
        rise = np.array([p[1] for p in below[::-1]] + [0.0] + [p[1] for p in above])
        ci_v = (lower[held] if ends[0] is None else ends[0], upper[held] if ends[1] is None else ends[1])
        x, ci = likelihood.x_of(held, v), likelihood.x_of(held, np.asarray(ci_v))
        found[name] = Profile(name=name, x=x, rise=rise, ci95=(float(ci[0]), float(ci[1])),
                              sides=("open" if ends[0] is None else "closed", "open" if ends[1] is None else "closed"),
                              identified=all(e is not None for e in ends), flat=bool(np.max(rise) < CHI2_95),
                              evaluations=profiler.evaluations - before, disjoint=_disjoint(rise))
        if save is not None:
            save(found)
        bar.update(count)
    bar.update(len(names), final=True)
    return found


def _number(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def record(fitted: Laplace, found: dict[str, Profile] | None = None) -> tuple[dict, dict]:
    """fit.json's `uncertainty` (per parameter: value, se, ci95, identified, ...) and `uncertainty_details`.

    With profiles, `ci95`, `identified` and `se` are the profile's (the model refitted; `se` the
    interval's half-width in v over 1.96, delta method), and `laplace_se`, `laplace_ci95`,
    `laplace_identified` keep the quadratic approximation's.
    """
    per_parameter = {}
    for i, name in enumerate(fitted.names):
        ends = fitted.check[i] if fitted.check else (None, None)
        entry = {"value": float(fitted.estimate[i]), "se": _number(fitted.se[i]),
                 "ci95": [float(v) for v in fitted.ci95[i]], "identified": bool(fitted.identified[i]),
                 "laplace_check": [None if e is None else float(e) for e in ends],
                 "laplace_confirmed": all(e is None or CHECK_RANGE[0] <= e <= CHECK_RANGE[1] for e in ends),
                 "coordinates": fitted.coordinates[i], "bounds": [float(fitted.lower[i]), float(fitted.upper[i])],
                 "source": "laplace"}
        if found is not None and name in found:
            profile = found[name]
            entry.update({"ci95": list(profile.ci95), "identified": profile.identified, "source": "profile",
                          "profile_sides": list(profile.sides), "profile_flat": profile.flat,
                          "profile_disjoint": profile.disjoint,
                          "laplace_se": entry["se"], "laplace_ci95": [float(v) for v in fitted.ci95[i]],
                          "laplace_identified": bool(fitted.identified[i])})
            # The profile interval's half-width in v over 1.96, in the parameter's units (delta method).
            log = fitted.coordinates[i] == "log"
            lo, hi = np.log(profile.ci95) if log else profile.ci95
            entry["se"] = float((hi - lo) / (2 * Z95) * (fitted.estimate[i] if log else 1.0)) if profile.identified else None
        per_parameter[name] = entry
    details = {
        "likelihood": "independent Gaussian errors (the reported s.e.m.); -log L = n/2 x mean loss",
        "coordinates": "log x for parameters with a positive lower bound, x otherwise; intervals computed there",
        "error_scale": float(np.sqrt(fitted.scale2)),
        "nll": fitted.nll,
        "gradient_v": [float(g) for g in fitted.gradient],
        "hessian_eigenvalues": [float(e) for e in fitted.eigenvalues],
        "flat_directions": [{name: float(fitted.eigenvectors[i, j]) for i, name in enumerate(fitted.names)}
                            for j in fitted.flat],
        "correlation": {"names": list(fitted.names),
                        "matrix": [[_number(c) for c in row] for row in fitted.correlation]},
        "notes": list(fitted.notes),
    }
    for name, profile in (found or {}).items():
        k = int(np.argmin(profile.rise))
        if profile.rise[k] < -BETTER:
            details["notes"].append(f"the profile of {name} found a loss lower than the fit's (delta chi^2 "
                                    f"{profile.rise[k]:.3g} at {name} = {profile.x[k]:.4g}): the fit did not reach the "
                                    "best point; fit again from there or with more starts")
        if profile.disjoint:
            details["notes"].append(f"the profile of {name} has several valleys below the 95 % line; its interval is "
                                    "their hull")
    if found is not None:
        details["profiles"] = {name: {"x": [float(v) for v in p.x], "rise": [float(r) for r in p.rise],
                                      "evaluations": p.evaluations} for name, p in found.items()}
    return per_parameter, details


PROFILES_KIND = "ca_plast profile likelihoods"


@dataclasses.dataclass(frozen=True)
class Uncertainty:
    """What `with_uncertainty` adds to a fit: its `laplace` approximation and, if asked, its `profiles`
    and `posterior` samples (a `fitting.Posterior`)."""

    laplace: Laplace
    profiles: dict[str, Profile] | None = None
    posterior: Any = None

    def record(self) -> tuple[dict, dict]:
        """fit.json's `uncertainty` and `uncertainty_details` (`record`; with posterior samples, each
        parameter's `posterior_median` and `posterior_ci95`, and `uncertainty_details.posterior`)."""
        per_parameter, details = record(self.laplace, self.profiles)
        if self.posterior is not None:
            posterior = self.posterior.record()
            for name, entry in per_parameter.items():
                entry["posterior_median"] = posterior["parameters"][name]["median"]
                entry["posterior_ci95"] = posterior["parameters"][name]["ci95"]
            details["posterior"] = posterior
            details["notes"] += posterior["notes"]
        return per_parameter, details


def _profiles_meta(result: FitResult) -> dict:
    return {"kind": PROFILES_KIND, "dataset": result.dataset.name, "data": [float(v) for v in result.dataset.data],
            "sem": [float(v) for v in result.dataset.sem], "params": result.params, "free": list(result.free),
            "bounds": result.settings["bounds"], "loss": result.loss, "method": result.method, "grid": repr(result.grid),
            "points": PROFILE_POINTS, "iterations": PROFILE_ITERATIONS}


def _load_profiles(path: Path, meta: dict) -> dict[str, Profile]:
    """The profiles stored in `path` for the fit described by `meta`; none if the file is missing, unreadable or of another fit."""
    try:
        stored = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(stored, dict) or stored.get("meta") != meta:
        return {}
    return {name: Profile(name=name, x=np.asarray(p["x"]), rise=np.asarray(p["rise"]), ci95=tuple(p["ci95"]),
                          sides=tuple(p["sides"]), identified=p["identified"], flat=p["flat"], evaluations=p["evaluations"],
                          disjoint=p["disjoint"])
            for name, p in stored["profiles"].items()}


def _save_profiles(path: Path, meta: dict, found: dict[str, Profile]) -> None:
    profiles = {name: {"x": [float(v) for v in p.x], "rise": [float(r) for r in p.rise], "ci95": list(p.ci95),
                       "sides": list(p.sides), "identified": p.identified, "flat": p.flat, "evaluations": p.evaluations,
                       "disjoint": p.disjoint}
                for name, p in found.items()}
    write_file(path, (json.dumps({"meta": meta, "profiles": profiles}) + "\n").encode())


def with_uncertainty(result: FitResult, *, profile: bool = False, samples: int = 0, progress: bool = False,
                     checkpoint: str | Path | None = None, seed: int = 0) -> FitResult:
    """`result` with its `uncertainty`: the Laplace approximation and, with `profile=True`, the profile likelihoods.

    `samples` > 0: also that many posterior draws per chain by NUTS (`fitting.sample_posterior`,
    two chains, `seed`; needs blackjax). All use the fit's deterministic prediction
    (`result.method`). `checkpoint`: a file that
    keeps each finished profile (written atomically after each parameter); a later call for
    the same fit continues from it. Fits through hardware emulation are refused (their loss
    is stochastic: no Hessian, no profile).
    """
    if result.hardware is not None:
        raise ValueError("with_uncertainty: a fit through hardware emulation has a stochastic loss (no Hessian or profile); "
                         "assess the float fit instead")
    fitted = laplace(result)
    found = None
    if profile:
        meta, path = _profiles_meta(result), None if checkpoint is None else Path(checkpoint)
        done = {} if path is None else _load_profiles(path, meta)
        found = profiles(result, fitted, progress=progress, done=done,
                         save=None if path is None else lambda found: _save_profiles(path, meta, found))
    posterior = None
    if samples:
        from ._posterior import sample_posterior

        posterior = sample_posterior(result, samples=samples, warmup=max(200, samples // 2), seed=seed, progress=progress)
    return dataclasses.replace(result, uncertainty=Uncertainty(fitted, found, posterior))
