"""Which parameters of a rule are fitted, and the bounded transforms the optimiser works through.

A fit moves only the *free* parameters, chosen by name; the rest stay at the initial
preset. The split is an `eqx.partition` of the rule with a boolean filter, and the free
part is stored as unconstrained values `u` (one per free leaf, same tree shape), mapped
into the parameter's bounds by a sigmoid:

    x = lower + (upper - lower) sigmoid(u)                       lower <= 0 (e.g. D)
    x = exp(log lower + (log upper - log lower) sigmoid(u))      lower > 0 (scale parameters)

so the optimiser sees unconstrained leaves and every value it can reach is admissible
(positive, inside the bounds). Scale parameters move on a log scale, which is also how
their plausible ranges are spread.
"""

import dataclasses
from collections.abc import Mapping, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ca_plast import AbstractRule, GraupnerBrunel2012
from ca_plast._custom_types import Array, Key, PyTree

from ._panels import PanelRule, split_name, walk

# Bounds in the project's units (time in ms, calcium in units of theta_d). Calcium and rate
# parameters as in BluePyOpt's GB2012 example (tau_ca 1-100 ms, C_pre 0.1-20, C_post 0.1-50,
# gamma_p, gamma_d 5-5000, sigma 0.35-70.7, tau 2.5-2500 s, D 0-50 ms, b 1-100); thresholds
# within a decade either side of theta_d = 1, which spans every published GB2012 set.
DEFAULT_BOUNDS: dict[str, tuple[float, float]] = {
    "theta_p": (0.1, 10.0),
    "theta_d": (0.1, 10.0),
    "gamma_p": (5.0, 5000.0),
    "gamma_d": (5.0, 5000.0),
    "tau": (2.5e3, 2.5e6),
    "sigma": (0.35, 70.7),
    "b": (1.0, 100.0),
    "rho_star": (0.0, 1.0),
    "beta": (0.0, 1.0),
    "C_pre": (0.1, 20.0),
    "C_post": (0.1, 50.0),
    "tau_ca": (1.0, 100.0),
    "D": (0.0, 50.0),
    "nl": (1.0, 10.0),
}

# Values exactly on a bound map to u = -+logit(_EDGE) instead of -+inf.
_EDGE = 1e-6


def _scaled(x, lower: float):
    return jnp.log(x) if lower > 0 else x


def to_bounded(u: Array, lower: float, upper: float) -> Array:
    """Map an unconstrained value into `[lower, upper]` (log scale when lower > 0)."""
    lo, hi = _scaled(lower, lower), _scaled(upper, lower)
    v = lo + (hi - lo) * jax.nn.sigmoid(u)
    # The clip only removes rounding past a bound (exp(log upper) may exceed upper by an ulp).
    return jnp.clip(jnp.exp(v) if lower > 0 else v, lower, upper)


def to_unconstrained(x: Array, lower: float, upper: float) -> Array:
    """Inverse of `to_bounded`; values on (or numerically past) a bound are pulled just inside."""
    lo, hi = _scaled(lower, lower), _scaled(upper, lower)
    fraction = jnp.clip((_scaled(x, lower) - lo) / (hi - lo), _EDGE, 1 - _EDGE)
    return jnp.log(fraction) - jnp.log1p(-fraction)


def _array_fields(module) -> list[str]:
    return [f.name for f in dataclasses.fields(module) if eqx.is_array(getattr(module, f.name))]


def _calcium_fields(model: eqx.Module) -> list[str]:
    calcium = getattr(model, "calcium", None)
    return _array_fields(calcium) if isinstance(calcium, eqx.Module) else []


def parameter_values(model: AbstractRule | PanelRule) -> dict[str, float]:
    """Every scalar parameter of a rule and of its calcium model, by field name (rule units); of a
    `PanelRule`, its separate parameters once per panel (`C_pre[panel]`)."""
    if isinstance(model, PanelRule):
        return model.parameter_values(parameter_values(model.shared))
    values = {name: getattr(model, name) for name in _array_fields(model)}
    values.update({name: getattr(model.calcium, name) for name in _calcium_fields(model)})
    return {name: float(np.asarray(v)) for name, v in values.items() if np.ndim(v) == 0}


def _resolve(model: AbstractRule | PanelRule, name: str) -> tuple[str | int, ...]:
    """The path of a parameter: `theta_p` -> ('theta_p',), `C_pre` -> ('calcium', 'C_pre'); in a
    `PanelRule`, `C_pre[panel]` -> ('values', j, g) and a shared one -> ('shared', ...)."""
    if isinstance(model, PanelRule):
        base, panel = split_name(name)
        if panel is None:
            path = _resolve(model.shared, name)
            if path in model.paths:
                raise ValueError(f"{name!r} is separate per panel: free it as {', '.join(model.names()[:2])}, ...")
            return ("shared", *path)
        if base not in model.separate:
            raise ValueError(f"unknown free parameter {name!r}: {base!r} is not separate per panel "
                             f"(separate: {', '.join(model.separate)})")
        if panel not in model.panels:
            raise ValueError(f"unknown free parameter {name!r}: no panel {panel!r}; panels: {', '.join(model.panels)}")
        return ("values", model.separate.index(base), model.panels.index(panel))
    top, inner = _array_fields(model), _calcium_fields(model)
    path = tuple(name.split("."))
    if len(path) == 1:
        if name in top:
            return path
        if name in inner:
            return ("calcium", name)
    elif path[:1] == ("calcium",) and len(path) == 2 and path[1] in inner:
        return path
    owner = type(model).__name__ + (f" and its calcium ({type(model.calcium).__name__})" if inner else "")
    raise ValueError(f"unknown free parameter {name!r}: not a parameter field of {owner}; "
                     f"valid names: {', '.join(top + inner)}")


class FreeParameters(eqx.Module):
    """The free parameters of a rule (by name) and their bounds.

    `names`: as given (`theta_p`, `C_pre`, ... or dotted `calcium.C_pre`); `paths`: their
    attribute paths in the rule; `lower`, `upper`: bounds in the rule's units. Everything
    is static: the same choice of parameters compiles once.
    """

    names: tuple[str, ...] = eqx.field(static=True)
    paths: tuple[tuple[str | int, ...], ...] = eqx.field(static=True)
    lower: tuple[float, ...] = eqx.field(static=True)
    upper: tuple[float, ...] = eqx.field(static=True)

    def __init__(self, model: AbstractRule | PanelRule, names: Sequence[str],
                 bounds: Mapping[str, tuple[float, float]] | None = None):
        """Free `names` of `model`, bounded by `bounds` (per name; default `DEFAULT_BOUNDS`).

        Raises ValueError for an empty or repeated choice, a name that is not a parameter
        field of the rule or its calcium, missing or invalid bounds, or an initial value
        outside its bounds.
        """
        names = tuple(names)
        if not names:
            raise ValueError("no free parameters: choose at least one, e.g. ('theta_p', 'theta_d')")
        paths = tuple(_resolve(model, name) for name in names)
        if len(set(paths)) != len(paths):
            raise ValueError(f"free parameters must not repeat, got {', '.join(names)}")
        table = {**DEFAULT_BOUNDS, **(bounds or {})}
        lower, upper = [], []
        for name, path in zip(names, paths):
            base = split_name(name)[0]  # the bounds of C_pre serve C_pre[panel] too
            key = next((k for k in (name, base, base.split(".")[-1]) if k in table), None)
            if key is None:
                raise ValueError(f"no bounds for free parameter {name!r}; pass bounds={{{name!r}: (lower, upper)}}")
            lo, hi = (float(v) for v in table[key])
            if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
                raise ValueError(f"bounds of {name!r} must be finite with lower < upper, got ({lo}, {hi})")
            value = np.asarray(walk(model, path))
            if np.any(value < lo) or np.any(value > hi):
                raise ValueError(f"initial {name} = {value} lies outside its bounds [{lo:g}, {hi:g}]; "
                                 "choose another start or pass wider bounds")
            lower.append(lo)
            upper.append(hi)
        self.names, self.paths = names, paths
        self.lower, self.upper = tuple(lower), tuple(upper)

    def get(self, tree) -> tuple:
        """The free leaves of `tree` (a rule, or a tree of its shape such as `u`), in the order of `names`."""
        return tuple(walk(tree, path) for path in self.paths)

    def set(self, tree, leaves: Sequence) -> PyTree:
        """`tree` with its free leaves replaced by `leaves` (in the order of `names`)."""
        return eqx.tree_at(self.get, tree, replace=tuple(leaves))

    def is_log(self) -> tuple[bool, ...]:
        """Per free parameter: whether it moves on a log scale (lower bound > 0), as `to_bounded` maps it."""
        return tuple(lo > 0 for lo in self.lower)

    def filter_spec(self, model: eqx.Module) -> PyTree[bool]:
        """Boolean tree of the rule's shape, True at the free leaves (for `eqx.partition`)."""
        spec = jax.tree.map(lambda _: False, model)
        return eqx.tree_at(self.get, spec, replace=(True,) * len(self.names))

    def split(self, model: eqx.Module) -> tuple[PyTree, PyTree]:
        """`(u, static)`: the free leaves as unconstrained values, and the fixed rest of the rule."""
        free, static = eqx.partition(model, self.filter_spec(model))
        u = tuple(to_unconstrained(x, lo, hi) for x, lo, hi in zip(self.get(free), self.lower, self.upper))
        return eqx.tree_at(self.get, free, replace=u), static

    def combine(self, u: PyTree, static: PyTree) -> GraupnerBrunel2012 | PanelRule:
        """The rule with the free leaves mapped back from unconstrained `u` into their bounds."""
        x = tuple(to_bounded(v, lo, hi) for v, lo, hi in zip(self.get(u), self.lower, self.upper))
        return eqx.combine(eqx.tree_at(self.get, u, replace=x), static)

    def values(self, model: eqx.Module) -> dict[str, float]:
        """The free parameters' values in `model`, by name (rule units)."""
        return {name: float(np.asarray(x)) for name, x in zip(self.names, self.get(model))}

    def with_values(self, model: eqx.Module, values: Mapping[str, float]) -> eqx.Module:
        """`model` with the free parameters set to `values` (by name, as `values` returns them)."""
        return eqx.tree_at(self.get, model, replace=tuple(jnp.asarray(values[name]) for name in self.names))

    def sample(self, u: PyTree, n: int, *, key: Key) -> PyTree:
        """`n` random points (leading axis) spread evenly over the bounds (log-evenly for scale parameters).

        A uniform position inside the bounds is a logistic variate in unconstrained space.
        """
        leaves, treedef = jax.tree.flatten(u)
        keys = jax.random.split(key, len(leaves))
        draws = [jax.random.logistic(k, (n,) + jnp.shape(x), dtype=jnp.result_type(x)) for k, x in zip(keys, leaves)]
        return jax.tree.unflatten(treedef, draws)
