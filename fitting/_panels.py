"""Parameters separate per panel: a rule some of whose parameters take one value per data set.

A joint fit (several data sets, each one *panel* of the plot) shares every parameter by
default. Some parameters describe the preparation rather than the plasticity rule: the
calcium amplitudes `C_pre` and `C_post` depend on the slice, the temperature and the
extracellular calcium of each laboratory (GB2012 fitted a whole parameter set per data set). A `PanelRule`
holds one rule with those parameters made separate: each of them has one value per panel,
and the rule of panel g is the shared rule with panel g's values.

To the fit a separate parameter is several scalar parameters, named `name[panel]`
(`C_pre[wittenberg_wang2006_pairs]`), each with the bounds of `name`: the optimiser, the
intervals, the profiles, the posterior and cross-validation see one parameter per value.
A prediction of several protocols (`fitting.predict(..., panel=...)`) solves each protocol
with its panel's rule, all in one batched program (`per_point`).
"""

import functools
from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ca_plast import GraupnerBrunel2012
from ca_plast._custom_types import Array


def walk(tree, path: Sequence[str | int]):
    """The node of `tree` at `path`: attribute names, or indices into tuples."""
    return functools.reduce(lambda node, key: node[key] if isinstance(key, int) else getattr(node, key), path, tree)


def split_name(name: str) -> tuple[str, str | None]:
    """`"C_pre[pairs]"` -> `("C_pre", "pairs")`; a name without a panel -> `(name, None)`."""
    if name.endswith("]") and "[" in name:
        base, panel = name[:-1].split("[", 1)
        return base, panel
    return name, None


class PanelRule(eqx.Module):
    """A rule whose parameters `separate` take one value per panel (module docstring).

    `shared`: the rule (its own values of the separate parameters are not used);
    `values[j][g]`: separate parameter j in panel g; `separate`: their names, `paths`: their
    attribute paths in the rule (`("calcium", "C_pre")`); `panels`: the panels' names, in order.
    """

    shared: GraupnerBrunel2012
    values: tuple[tuple[Array, ...], ...]
    separate: tuple[str, ...] = eqx.field(static=True)
    paths: tuple[tuple[str, ...], ...] = eqx.field(static=True)
    panels: tuple[str, ...] = eqx.field(static=True)

    def __init__(self, rule: GraupnerBrunel2012, separate: Sequence[str], paths: Sequence[tuple[str, ...]],
                 panels: Sequence[str], values: Sequence[Sequence] | None = None):
        """`rule` with the parameters `separate` (at attribute `paths`) made separate per panel of `panels`,
        each starting at the rule's value unless `values` (per parameter, per panel) are given."""
        panels, separate, paths = tuple(panels), tuple(separate), tuple(tuple(p) for p in paths)
        if len(panels) < 2 or len(set(panels)) != len(panels):
            raise ValueError(f"separate parameters need at least two distinct panels (data sets), got {list(panels)}")
        if not separate or len(set(paths)) != len(paths) or len(paths) != len(separate):
            raise ValueError(f"separate parameters must be named once each, got {list(separate)}")
        if values is None:
            values = [[walk(rule, path)] * len(panels) for path in paths]
        self.shared, self.separate, self.paths, self.panels = rule, separate, paths, panels
        self.values = tuple(tuple(jnp.asarray(v) for v in row) for row in values)

    def names(self) -> tuple[str, ...]:
        """The scalar parameters the separate ones become, `name[panel]`, parameter by parameter."""
        return tuple(f"{name}[{panel}]" for name in self.separate for panel in self.panels)

    def index(self, panel: Sequence[str]) -> np.ndarray:
        """The position in `panels` of each entry of `panel` (per protocol); ValueError for an unknown panel."""
        unknown = sorted(set(panel) - set(self.panels))
        if unknown:
            raise ValueError(f"panel {unknown[0]!r} has no values of the separate parameters "
                             f"({', '.join(self.separate)}); panels: {', '.join(self.panels)}")
        return np.array([self.panels.index(p) for p in panel], dtype=int)

    def of(self, panel: str) -> GraupnerBrunel2012:
        """The rule of one panel: the shared rule with that panel's values."""
        g = int(self.index([panel])[0])
        return eqx.tree_at(self._where, self.shared, tuple(row[g] for row in self.values))

    def per_point(self, panel: Sequence[str]) -> GraupnerBrunel2012:
        """One rule per protocol, batched: every leaf with a leading axis of `len(panel)`, the separate
        parameters at each protocol's panel's value (for `jax.vmap` over protocols and rules together)."""
        index = self.index(panel)
        batched = jax.tree.map(lambda x: jnp.broadcast_to(x, (index.size,) + jnp.shape(x)), self.shared)
        return eqx.tree_at(self._where, batched, tuple(jnp.stack(row)[index] for row in self.values))

    def parameter_values(self, shared: dict[str, float]) -> dict[str, float]:
        """`shared` (the shared rule's parameters by name) with each separate parameter replaced by its
        values per panel, `name[panel]`."""
        values = {name: v for name, v in shared.items() if name not in {path[-1] for path in self.paths}}
        for name, row in zip(self.separate, self.values):
            values.update({f"{name}[{panel}]": float(np.asarray(v)) for panel, v in zip(self.panels, row)})
        return values

    def _where(self, rule: GraupnerBrunel2012) -> tuple:
        return tuple(walk(rule, path) for path in self.paths)


def by_panel(model, panel: Sequence[str]) -> list[tuple[GraupnerBrunel2012, np.ndarray]]:
    """The rule of each group of protocols (`panel`: each protocol's panel) with the protocols' positions:
    one group of all for a plain rule, one per panel for a `PanelRule`."""
    if not isinstance(model, PanelRule):
        return [(model, np.arange(len(panel)))]
    return [(model.of(p), np.flatnonzero([q == p for q in panel])) for p in dict.fromkeys(panel)]
