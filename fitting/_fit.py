"""Gradient fit of a rule's parameters to a data set: multi-start Adam, checkpoints, resume.

The loss landscape of GB2012 over its ten calcium and rate parameters is rugged: plateaus
where no protocol crosses a threshold (zero gradient), saturated transitions, narrow
valleys. One gradient descent from one start finds a local minimum; many starts in
parallel find the good ones. A fit therefore

1. screens a pool of candidate starts (half spread evenly over the bounds, half scattered
   around the initial preset) with one batched loss evaluation, and keeps the initial
   preset plus the best `n_starts - 1` candidates;
2. runs Adam on all starts at once (`jax.vmap` inside one `eqx.filter_jit` step that is
   traced once per problem), with an exponentially decaying learning rate that does not
   depend on the number of steps (so a resumed fit continues the same schedule);
3. keeps the best point each start has visited, stops when the best loss over all starts
   has not improved by a relative `tol` for `patience` steps, and returns the best start.

A checkpoint (the whole optimiser state) is written atomically every `checkpoint_every`
steps and on interruption; `resume=True` continues from it and reproduces the
uninterrupted fit exactly.

The closed form (GB2012) screens starts fast, but it is an approximation: it averages the
drive over the protocol and neglects the bistable drift, and it is exactly invariant under
(tau, gamma_p, gamma_d, sigma^2) -> (k tau, k gamma_p, k gamma_d, k sigma^2), so it cannot
see tau, while the model can. With `method="density"` (the default) the fit therefore
finishes in the model itself, on the density solver's deterministic prediction
(`ca_plast.solve_density`), in a second stage (`_fit_density`):

4. the closed-form winner is moved along that invariance (k in `SCALES`, where all four
   parameters are free and the scaled values lie inside their bounds; the closed form is
   the same for every k, the model is not), and the k whose density loss is lowest is kept,
   unless the initial rule's density loss is lower still: then the stage starts from it
   (a closed-form optimum far from the model can be worse in it than the start);
5. L-BFGS minimises the density loss from there (directions from optax's
   `scale_by_lbfgs`, step lengths from a backtracking line search on the host around one
   compiled value and gradient): the loss is deterministic and smooth, where Adam's fixed
   steps overshoot its narrow valleys. Every accepted step lowers the loss. At most
   `density_steps` iterations, stopping early when three iterations gain less than a
   relative `tol` or no step lowers it. Its checkpoint is `checkpoint` with `_density`
   added to the name. The grid is settled first on the starting rule
   (`ca_plast.density_ratios`: widened, or one event per remap, where the data set needs it).

The reported `chi2_mean` and predictions are then the density solver's, checked for mass
leaving its grid (`ca_plast.density_ratios`).

Quantisation-aware fitting (`hardware=`, a `ca_plast.BSS2` configuration) adds a second
stage, as quantisation-aware training of neural networks fine-tunes a float model: the float
fit above is refined through the hardware emulation itself (`refine_on_hardware`: Adam on
`ca_plast.hardware_prediction`, straight-through gradients through the rounding and the
CADC, fresh random numbers every step, the average of the second half of the iterates kept).
The emulation differs from the closed form the first stage fits in two ways: quantisation,
and the simulated model itself (the closed form neglects the bistable drift during a
protocol, which matters when the protocol is long compared with `tau`). The float fit and
the refined rule are then scored under the emulation on random numbers neither stage saw
(hard UP/DOWN readout, `Refinement.validation_synapses` synapses per state); the better
one is the result, and both scores are reported.
"""

import dataclasses
import functools
import hashlib
import importlib.metadata
import io
import json
import platform
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar, cast

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

import ca_plast
from ca_plast import GraupnerBrunel2012, Spikes
from ca_plast._custom_types import Array, Key, PyTree
from ca_plast._limits import check_memory, check_seed, simulation_bytes
from ca_plast._output import write_file
from ca_plast._progress import Progress
from ca_plast._spikes import without_ticks
from ca_plast._validation import whole_number

from ._datasets import Dataset
from ._losses import LOSSES, METHODS, checked_prediction, chi2, density_prediction, predict
from ._panels import PanelRule, split_name
from ._precision import in_float64, to_float64
from ._transforms import FreeParameters

CHECKPOINT_FORMAT = 2  # 2: a kind and a checksum in every file
CHECKPOINT_KIND = "ca_plast fit checkpoint"
# Default Adam steps of the closed-form stage by method. Measured on Sjostrom 2001 from DP: 500
# steps then 20 density iterations score 0.048 (0.051 simulated) against 0.044 (0.049) after
# 1000, in 57 s instead of 73 s of the whole command.
CLOSED_FORM_STEPS = {"density": 500, "closed-form": 1000, "events": 1000}
# Random streams of a quantisation-aware fit, folded into `jax.random.key(seed)`; the
# screening of starts splits the key itself.
_TRAINING_STREAM = 2**31 - 1
_VALIDATION_STREAM = 2**31 - 2


class Problem(eqx.Module):
    """What one start minimises: the loss of the rule's prediction of a data set.

    Predictions by `method` ("closed-form", "density" on `grid`, or "events") when `hardware` is None, or the hardware emulation's
    (`ca_plast.hardware_prediction` with `n_synapses` per initial state and the `key` the
    objective is given). `panel`: each protocol's panel (used where the rule is a `PanelRule`).
    """

    spikes: Spikes
    data: Array
    sem: Array
    free: FreeParameters
    loss: str = eqx.field(static=True)
    hardware: ca_plast.BSS2 | None = None
    n_synapses: int = eqx.field(static=True, default=0)
    method: str = eqx.field(static=True, default="closed-form")
    grid: ca_plast.DensityGrid = ca_plast.DensityGrid()
    panel: tuple[str, ...] | None = eqx.field(static=True, default=None)

    @classmethod
    def of(cls, dataset: Dataset, free: FreeParameters, loss: str, method: str = "closed-form",
           grid: ca_plast.DensityGrid = ca_plast.DensityGrid()) -> "Problem":
        """The problem of fitting `free` to `dataset` by `method` (protocol durations dropped: one compiled
        loss and gradient serves every fit of data sets of the same shape)."""
        return cls(without_ticks(dataset.spikes()), jnp.asarray(dataset.data, dtype=float),
                   jnp.asarray(dataset.sem, dtype=float), free, loss, method=method, grid=grid, panel=dataset.panel)

    def objective(self, u: PyTree, static: PyTree, key: Key | None = None) -> Array:
        rule = self.free.combine(u, static)
        if self.hardware is None:
            model = predict(rule, self.spikes, self.method, self.grid, self.panel)
        else:
            if key is None:
                raise ValueError("Problem.objective: the hardware emulation's loss needs a key")
            # A hardware problem holds a plain GB2012 rule: fit refuses separate parameters (a PanelRule) with hardware=.
            model = ca_plast.hardware_prediction(cast(GraupnerBrunel2012, rule), self.spikes, self.hardware, key=key,
                                                 n_synapses=self.n_synapses)
        return LOSSES[self.loss](model, self.data, self.sem)


class _State(eqx.Module):
    """Optimiser state of all starts (leading axis of every leaf: the start)."""

    u: PyTree
    opt_state: PyTree
    best_u: PyTree
    best_loss: Array


def _select(mask: Array, new: Array, old: Array) -> Array:
    return jnp.where(mask.reshape(mask.shape + (1,) * (new.ndim - 1)), new, old)


@eqx.filter_jit
@eqx.debug.assert_max_traces(max_traces=None)
def _step(state: _State, static: PyTree, problem: Problem, optimizer) -> tuple[_State, Array]:
    """One Adam step of every start; returns the new state and each start's loss before the step."""

    def one(u, opt_state):
        loss, grad = jax.value_and_grad(problem.objective)(u, static)
        updates, opt_state = optimizer.update(grad, opt_state, u)
        return optax.apply_updates(u, updates), opt_state, loss

    u, opt_state, loss = jax.vmap(one)(state.u, state.opt_state)
    better = loss < state.best_loss
    best_u = jax.tree.map(functools.partial(_select, better), state.u, state.best_u)
    return _State(u, opt_state, best_u, jnp.where(better, loss, state.best_loss)), loss


@functools.cache
def _optimizer(learning_rate: float, halving_steps: float, floor: float) -> optax.GradientTransformation:
    """Adam with `learning_rate` halving every `halving_steps` steps down to `floor` (cached: one object per setting;
    `halving_steps` inf: constant)."""
    # optax annotates transition_steps as int; any positive number works, and inf (a constant rate) is used here.
    schedule = optax.exponential_decay(learning_rate, transition_steps=halving_steps,  # pyright: ignore[reportArgumentType]
                                       decay_rate=0.5, end_value=floor * learning_rate)
    return optax.chain(optax.zero_nans(), optax.adam(schedule))


@dataclasses.dataclass(frozen=True)
class Refinement:
    """Settings of the quantisation-aware stage of `fit(..., hardware=...)`.

    `steps` Adam steps with a constant `learning_rate` (unconstrained units) on the loss of
    `ca_plast.hardware_prediction` with `synapses` synapses per initial state and fresh
    random numbers at every step (a stochastic gradient: no fixed draw to over-fit); the
    refined rule is the mean of the iterates of the second half. `validation_synapses`:
    synapses per initial state when the float fit and the refined rule are scored. The
    defaults take about 4 min on two CPU cores for Sjostrom 2001 (75 pairs per protocol).
    """

    steps: int = 60
    synapses: int = 256
    learning_rate: float = 0.02
    validation_synapses: int = 2000

    def __post_init__(self):
        for name in ("steps", "synapses", "validation_synapses"):
            whole_number("fit", f"refinement {name}", getattr(self, name), 1)
        _check_positive("refinement learning_rate", self.learning_rate)

    @property
    def averaged_from(self) -> int:
        """First step whose iterate enters the average."""
        return self.steps // 2


class _Refining(eqx.Module):
    """State of the quantisation-aware stage: one start, and the sum of the iterates averaged so far."""

    u: PyTree
    opt_state: PyTree
    total: PyTree


@eqx.filter_jit
def _refine_step(state: _Refining, static: PyTree, problem: Problem, optimizer, key, keep: Array
                 ) -> tuple[_Refining, Array]:
    """One Adam step on the emulation's loss with the random numbers of `key`; adds the new iterate to the average if `keep`."""
    loss, grad = jax.value_and_grad(problem.objective)(state.u, static, key)
    updates, opt_state = optimizer.update(grad, state.opt_state, state.u)
    u = optax.apply_updates(state.u, updates)
    total = jax.tree.map(lambda t, x: t + jnp.where(keep, x, 0.0), state.total, u)
    return _Refining(u, opt_state, total), loss


@dataclasses.dataclass(frozen=True)
class FitResult:
    """Outcome of `fit`.

    `initial` / `params`: free parameters before and after, by name (rule units: ms,
    calcium in units of theta_d); `initial_model` / `model`: the whole rules (`fitting.PanelRule`s
    where parameters are separate per data set, `fit(separate=...)`). `chi2_mean`,
    `chi2_initial`: mean z^2 of the fitted and the initial rule; `prediction`,
    `initial_prediction`: their change ratios per data point. `history`: the lowest loss
    over all starts at each step; `start_losses`: the best loss each start reached.
    `start_points`: the best point each start reached in the closed-form stage (free
    parameters by name; other local optima, which the profile likelihoods try as starts).
    `elapsed`: seconds since this call began at the end of each of its steps (the last
    `len(elapsed)` entries of `history`). `steps`: optimisation steps done (over all
    resumed runs); `stopped`: "converged" (early stopping) or "steps" (step limit).
    `wall_s`: wall time of this call; `wall_s_total`: over all resumed runs.

    `method`: the prediction `chi2_mean`, `chi2_initial` and the predictions come from
    ("density" or "closed-form"); `density`: the record of the density stage (the
    closed-form fit it started from and its scores, the invariance scan, the grid, the loss
    per step), or None; `grid`: the density grid the predictions used (settled by the
    density stage). `uncertainty`: None, or what `with_uncertainty` found (a
    `fitting.Uncertainty`: Laplace approximation, profile likelihoods). `cross_validation`:
    None, or the record of `fitting.cross_validate` (set with `dataclasses.replace`).

    A fit through hardware emulation (`hardware=`) reports `chi2_mean`, `chi2_initial`
    and the predictions under the emulation (validation draws, hard readout), and in
    `hardware` its record: the configuration, the float fit's and the refined rule's
    scores under the emulation, which one was kept, both parameter sets, the
    refinement's settings and its training loss per step.
    """

    dataset: Dataset
    init_name: str | None
    free: tuple[str, ...]
    initial_model: GraupnerBrunel2012 | PanelRule
    model: GraupnerBrunel2012 | PanelRule
    initial: dict[str, float]
    params: dict[str, float]
    loss: str
    chi2_mean: float
    chi2_initial: float
    prediction: np.ndarray
    initial_prediction: np.ndarray
    history: np.ndarray
    elapsed: np.ndarray
    start_losses: np.ndarray
    steps: int
    stopped: str
    n_starts: int
    seed: int
    settings: dict
    wall_s: float
    wall_s_total: float
    hardware: dict | None = None
    method: str = "closed-form"
    density: dict | None = None
    grid: ca_plast.DensityGrid = ca_plast.DensityGrid()
    uncertainty: Any = None
    cross_validation: dict | None = None
    start_points: tuple[dict[str, float], ...] = ()


def versions() -> dict[str, str]:
    """Versions of Python and the packages a fit depends on."""
    found = {"python": platform.python_version(), "ca_plast": ca_plast.__version__}
    for package in ("jax", "jaxlib", "equinox", "optax", "numpy"):
        found[package] = importlib.metadata.version(package)
    return found


def _check_positive(name: str, value) -> float:
    if not (np.isfinite(value) and value > 0):
        raise ValueError(f"fit: {name} must be a finite number > 0, got {value!r}")
    return float(value)


def _fresh_state(u: PyTree, optimizer, dtype) -> _State:
    best_loss = jnp.asarray(np.full(jax.tree.leaves(u)[0].shape[:1], np.inf), dtype=dtype)
    return _State(u, jax.vmap(optimizer.init)(u), u, best_loss)


def _initial_starts(u0: PyTree, static: PyTree, problem: Problem, optimizer, n_starts: int, pool_factor: int,
                    *, key) -> PyTree:
    """The initial rule plus the `n_starts - 1` best of `pool_factor * (n_starts - 1)` screened candidates.

    Half the candidates are spread evenly over the bounds, half scattered around the initial
    rule (unit logistic noise in unconstrained space). They are scored in batches of
    `n_starts` by the training step itself (its loss is taken before the update), so
    screening needs no compilation of its own.
    """
    one = jax.tree.map(lambda x: x[None], u0)
    if n_starts == 1:
        return one
    n_batches = -(-pool_factor * (n_starts - 1) // n_starts)
    n_pool = n_batches * n_starts
    k_even, k_near = jax.random.split(key)
    n_even = n_pool // 2
    even = problem.free.sample(u0, n_even, key=k_even)
    near = jax.tree.map(lambda x, z: x + z, u0, problem.free.sample(u0, n_pool - n_even, key=k_near))
    pool = jax.tree.map(lambda a, b: jnp.concatenate([a, b]), even, near)
    losses = []
    for i in range(n_batches):
        batch = jax.tree.map(lambda x: x[i * n_starts:(i + 1) * n_starts], pool)
        losses.append(np.asarray(_step(_fresh_state(batch, optimizer, problem.data.dtype), static, problem, optimizer)[1]))
    losses = np.concatenate(losses)
    keep = np.argsort(np.where(np.isnan(losses), np.inf, losses), kind="stable")[: n_starts - 1]
    return jax.tree.map(lambda a, b: jnp.concatenate([a, b[keep]]), one, pool)


def checkpoint_files(checkpoint: Path) -> tuple[Path, Path, Path]:
    """The files of a fit with `checkpoint`: its own, the density stage's and the hardware stage's."""
    checkpoint = Path(checkpoint)
    density, hardware = (checkpoint.with_name(f"{checkpoint.stem}_{stage}{checkpoint.suffix}")
                          for stage in ("density", "hardware"))
    return checkpoint, density, hardware


def _checksum(arrays: Mapping[str, np.ndarray]) -> str:
    """SHA-256 of the named arrays (names, dtypes, shapes and bytes, in name order)."""
    digest = hashlib.sha256()
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}:{array.dtype.str}:{array.shape}:".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def _save_checkpoint(path: Path, state: eqx.Module, history: list[float], wall_s: float, meta: dict) -> None:
    arrays = {f"leaf{i}": np.asarray(x) for i, x in enumerate(jax.tree.leaves(state))}
    arrays["history"] = np.asarray(history, dtype=np.float64)
    arrays["wall_s"] = np.asarray(wall_s)
    arrays["meta"] = np.asarray(json.dumps(meta, sort_keys=True))
    arrays["kind"] = np.asarray(CHECKPOINT_KIND)
    arrays["checksum"] = np.asarray(_checksum(arrays))
    buffer = io.BytesIO()
    # numpy's stub matches **arrays against savez's allow_pickle: bool; no key here is named so.
    np.savez(buffer, **arrays)  # pyright: ignore[reportArgumentType]
    write_file(path, buffer.getvalue())


_Checkpointed = TypeVar("_Checkpointed", bound=eqx.Module)  # the optimiser state of a stage: _State, _Quasi, _Refining


def _load_checkpoint(path: Path, like: _Checkpointed, meta: dict) -> tuple[_Checkpointed, list[float], float]:
    """The state, loss history and wall time of the checkpoint `path`, validated (ValueError, one
    line, unless it is a complete checkpoint of this very fit)."""
    fresh = "delete it (on the command line: --force) to start afresh"
    try:
        with open(path, "rb") as handle, np.load(handle, allow_pickle=False) as stored:
            arrays = {name: stored[name] for name in stored.files}
    except Exception as error:  # np.load raises many types on a truncated or foreign file
        raise ValueError(f"checkpoint {path} cannot be read ({type(error).__name__}): it is truncated, corrupt or "
                         f"not a ca_plast fit checkpoint; {fresh}") from None
    if arrays.get("kind", np.asarray("")).ndim != 0 or str(arrays.get("kind")) != CHECKPOINT_KIND:
        raise ValueError(f"checkpoint {path} is not a ca_plast fit checkpoint (or one from a version before "
                         f"checkpoint format {CHECKPOINT_FORMAT}); {fresh}")
    checksum = str(arrays.pop("checksum", ""))
    if checksum != _checksum(arrays):
        raise ValueError(f"checkpoint {path} is corrupt: its checksum does not match its content; {fresh}")
    saved = json.loads(str(arrays["meta"]))
    for key in sorted(set(saved) | set(meta)):
        if saved.get(key) != meta.get(key):
            raise ValueError(f"checkpoint {path} belongs to a different fit: {key} was {saved.get(key)!r}, "
                             f"now {meta.get(key)!r}")
    leaves, treedef = jax.tree.flatten(like)
    stored_leaves = [arrays.get(f"leaf{i}") for i in range(len(leaves))]
    if any(s is None or s.shape != np.shape(x) for s, x in zip(stored_leaves, leaves)) or f"leaf{len(leaves)}" in arrays:
        raise ValueError(f"checkpoint {path} does not hold this fit's optimiser state; {fresh}")
    loaded = [jnp.asarray(s, dtype=jnp.result_type(x)) for s, x in zip(stored_leaves, leaves)]
    return jax.tree.unflatten(treedef, loaded), [float(v) for v in arrays["history"]], float(arrays["wall_s"])


def _run_saving(step, more, save, every: int) -> None:
    """Call `step()` (which returns the number of steps done) while `more()`; `save()` every
    `every` steps, at the end, and on interruption, which is then raised again."""
    try:
        while more():
            if step() % every == 0:
                save()
    except KeyboardInterrupt:
        save()
        raise
    save()


def _track(value: float, best: float, since: int, tol: float) -> tuple[float, int]:
    """Early-stopping bookkeeping: the best loss so far and the steps since it last improved by a relative `tol`."""
    if value < best and (not np.isfinite(best) or value < best - tol * abs(best)):
        return value, 0
    return best, since + 1


@in_float64
def fit(
    dataset: Dataset,
    init: GraupnerBrunel2012 | PanelRule | str,
    free: Sequence[str],
    *,
    steps: int | None = None,
    n_starts: int = 32,
    seed: int = 0,
    learning_rate: float = 0.05,
    halving_steps: float = 300.0,
    loss: str = "chi2",
    bounds: Mapping[str, tuple[float, float]] | None = None,
    patience: int = 100,
    tol: float = 1e-4,
    pool_factor: int = 16,
    checkpoint: str | Path | None = None,
    checkpoint_every: int = 100,
    resume: bool = False,
    progress: bool = False,
    hardware: ca_plast.BSS2 | None = None,
    refinement: Refinement = Refinement(),
    method: str = "density",
    density_steps: int = 20,
    grid: ca_plast.DensityGrid = ca_plast.DensityGrid(),
    separate: Sequence[str] = (),
) -> FitResult:
    """Fit the `free` parameters of a GB2012 rule to `dataset` (module docstring).

    `init`: the starting rule, or a preset name (`ca_plast.GB2012_PRESETS`); parameters
    not in `free` stay at its values. `free`: names of fields of the rule or of its
    calcium model (`theta_p`, `gamma_d`, `C_pre`, `tau_ca`, `D`, ...), bounded by
    `bounds` (default `DEFAULT_BOUNDS`). `steps`: the most Adam steps of the closed-form
    stage in all (including those of a resumed checkpoint; default `CLOSED_FORM_STEPS`:
    1000 with method "closed-form", 500 with "density", whose second stage finishes the
    fit). `n_starts`: starts optimised in parallel, the first
    being `init` itself; the others are the best of `pool_factor * (n_starts - 1)`
    screened candidates drawn with `seed`. `learning_rate`: Adam's initial rate in
    unconstrained units, halving every `halving_steps` steps down to 1 % of it. `loss`:
    "chi2" (mean z^2) or "soft_l1" (robust). Early stopping after `patience` steps
    without a relative improvement of `tol`. `checkpoint`: file written atomically every
    `checkpoint_every` steps, at the end and on interruption, with a checksum;
    `resume=True` continues from it (ValueError unless it is a complete checkpoint of a fit
    with the same settings). `progress`: draw a progress bar on stderr.
    `hardware`: a `ca_plast.BSS2` configuration: after the float fit, refine it through
    the BSS-2 emulation (quantisation-aware fitting, module doc) with the settings
    `refinement`; its checkpoint is `checkpoint` with `_hardware` added to the name.
    `BSS2(state=None)` refines in the float simulation instead (the same model without
    quantisation), for data whose protocols outlast `tau` and so defeat the closed form.
    `method`: "density" (closed-form screening and fit, then the density stage on `grid`,
    at most `density_steps` L-BFGS iterations; the result is the model's) or
    "closed-form" (GB2012's approximation only, as GB2012 fitted).
    `separate`: free parameters that take one value per panel of `dataset` (each data set of
    a joint fit, `fitting.joint`): the fitted rule is then a `fitting.PanelRule`, and each of
    them becomes one free parameter per panel, `name[panel]` (in `free`, `params`, the
    intervals). Not with `hardware`.
    The fit computes in float64 whatever JAX's global setting (its float leaves of `init`
    cast to float64), as the command line does, so both give the same fit.
    """
    started = time.monotonic()
    if isinstance(init, str):
        init_name, init = init, ca_plast.gb2012_preset(init)
    else:
        init_name = None
    if not isinstance(init, ca_plast.AbstractRule | PanelRule):
        raise ValueError(f"fit: init must be a rule (ca_plast.AbstractRule), a PanelRule or a preset name, "
                         f"got {type(init).__name__}")
    if method in ("density", "closed-form") and not isinstance(init.shared if isinstance(init, PanelRule) else init,
                                                                 GraupnerBrunel2012):
        raise ValueError(f"fit: method {method!r} is GB2012's; fit a {type(init).__name__} with method 'events'")
    init = to_float64(init)  # the fit runs in float64 (`_precision`)
    if loss not in LOSSES:
        raise ValueError(f"fit: unknown loss {loss!r}; valid losses: {', '.join(LOSSES)}")
    if method not in METHODS:
        raise ValueError(f"fit: unknown method {method!r}; valid methods: {', '.join(METHODS)}")
    if not isinstance(grid, ca_plast.DensityGrid):
        raise ValueError(f"fit: grid must be a ca_plast.DensityGrid, got {grid!r}")
    density_steps = whole_number("fit", "density_steps", density_steps, 1)
    steps = whole_number("fit", "steps", CLOSED_FORM_STEPS[method] if steps is None else steps, 1)
    n_starts = whole_number("fit", "n_starts", n_starts, 1)
    patience = whole_number("fit", "patience", patience, 1)
    pool_factor = whole_number("fit", "pool_factor", pool_factor, 1)
    checkpoint_every = whole_number("fit", "checkpoint_every", checkpoint_every, 1)
    learning_rate = _check_positive("learning_rate", learning_rate)
    halving_steps = _check_positive("halving_steps", halving_steps)
    tol = float(tol)
    if not (np.isfinite(tol) and tol >= 0):
        raise ValueError(f"fit: tol must be a finite number >= 0, got {tol!r}")
    seed = check_seed("fit", seed)
    separate = tuple(separate) or (init.separate if isinstance(init, PanelRule) else ())
    free_parameters = FreeParameters(init.shared if isinstance(init, PanelRule) else init, free, bounds)
    if separate:
        if hardware is not None:
            raise ValueError("fit: separate parameters are not supported with hardware= (the emulation runs one rule); "
                             "fit the float model, or share every parameter")
        init, free_parameters = separate_per_panel(init, free_parameters, separate, dataset, bounds)
    checkpoint = None if checkpoint is None else Path(checkpoint)
    if resume and (checkpoint is None or not checkpoint.exists()):
        raise ValueError(f"fit: nothing to resume: no checkpoint at {checkpoint}")

    if hardware is not None and not isinstance(hardware, ca_plast.BSS2):
        raise ValueError(f"fit: hardware must be None or a ca_plast.BSS2 configuration, got {hardware!r}")
    if not isinstance(refinement, Refinement):
        raise ValueError(f"fit: refinement must be a Refinement, got {refinement!r}")
    n_spikes = max(p.n_spikes for p in dataset.protocols)
    check_memory(simulation_bytes("closed-form", n_starts * dataset.n_points, n_spikes, 0),
                 f"fit ({n_starts} starts on {dataset.n_points} protocols of up to {n_spikes} spikes)", "use fewer n_starts")
    # The Adam stage's prediction: the closed form for GB2012 (the density stage finishes a density fit).
    problem = Problem.of(dataset, free_parameters, loss, "events" if method == "events" else "closed-form")
    optimizer = _optimizer(learning_rate, halving_steps, 0.01)
    u0, static = free_parameters.split(init)
    settings = {
        "n_starts": n_starts, "seed": seed, "learning_rate": learning_rate, "halving_steps": halving_steps,
        "patience": patience, "tol": tol, "pool_factor": pool_factor, "optimizer": "adam", "separate": list(separate),
        "bounds": {n: [lo, hi] for n, lo, hi in zip(free_parameters.names, free_parameters.lower, free_parameters.upper)},
    }
    meta = {
        "format": CHECKPOINT_FORMAT, "dataset": dataset.name, "modelling": dataset.modelling,
        "data": [float(v) for v in dataset.data], "sem": [float(v) for v in dataset.sem],
        "free": list(free_parameters.names), "loss": loss, "hardware": None if hardware is None else repr(hardware),
        "init": {k: float(np.asarray(v)) for k, v in zip(*_leaves_by_path(init))},
        **settings,
    }

    if resume:
        u = jax.tree.map(lambda x: jnp.broadcast_to(x, (n_starts,) + x.shape), u0)
    else:
        u = _initial_starts(u0, static, problem, optimizer, n_starts, pool_factor, key=jax.random.key(seed))
    state = _fresh_state(u, optimizer, problem.data.dtype)
    history: list[float] = []
    elapsed: list[float] = []
    wall_before = 0.0
    if resume:
        assert checkpoint is not None  # resume without a checkpoint was refused above
        state, history, wall_before = _load_checkpoint(checkpoint, state, meta)

    best, since = np.inf, 0
    for value in history:
        best, since = _track(value, best, since, tol)
    bar = Progress(progress, steps, f"fit {dataset.name}", "best loss", unit="step")

    def save():
        if checkpoint is not None:
            _save_checkpoint(checkpoint, state, history, wall_before + time.monotonic() - started, meta)

    def step() -> int:
        nonlocal state, best, since
        state, losses = _step(state, static, problem, optimizer)
        value = float(np.min(np.asarray(losses)))
        history.append(value)
        elapsed.append(time.monotonic() - started)
        best, since = _track(value, best, since, tol)
        bar.update(len(history), best)
        return len(history)

    _run_saving(step, lambda: len(history) < steps and since < patience, save, checkpoint_every)
    bar.update(len(history), best, final=True)

    winner = int(np.argmin(np.asarray(state.best_loss)))
    model = free_parameters.combine(jax.tree.map(lambda x: x[winner], state.best_u), static)
    data, sem = problem.data, problem.sem
    record, density, prediction = None, None, None
    if method == "density":
        model, density, grid, prediction = _fit_density(
            model, init, problem, steps=density_steps, tol=tol, grid=grid, progress=progress, checkpoint_every=checkpoint_every, resume=resume, meta=meta,
            checkpoint=None if checkpoint is None else checkpoint_files(checkpoint)[1])
    if hardware is None:
        initial_prediction = checked_prediction(init, dataset.spikes(), method, grid, dataset.panel)
        if prediction is None:
            prediction = checked_prediction(model, dataset.spikes(), method, grid, dataset.panel)
    else:
        # Neither is a PanelRule: separate parameters were refused with hardware= above.
        assert not isinstance(init, PanelRule) and not isinstance(model, PanelRule)
        model, prediction, initial_prediction, record = _refine_and_keep_better(
            dataset, init, model, free_parameters, hardware, refinement, loss=loss, seed=seed, progress=progress,
            checkpoint=None if checkpoint is None else checkpoint_files(checkpoint)[2],
            checkpoint_every=checkpoint_every, resume=resume)
    wall = time.monotonic() - started
    return FitResult(
        dataset=dataset,
        init_name=init_name,
        free=free_parameters.names,
        initial_model=init,
        model=model,
        initial=free_parameters.values(init),
        params=free_parameters.values(model),
        loss=loss,
        chi2_mean=float(chi2(prediction, data, sem)),
        chi2_initial=float(chi2(initial_prediction, data, sem)),
        prediction=prediction,
        initial_prediction=initial_prediction,
        history=np.asarray(history),
        elapsed=np.asarray(elapsed),
        start_losses=np.asarray(state.best_loss),
        start_points=tuple(free_parameters.values(free_parameters.combine(jax.tree.map(lambda x: x[i], state.best_u), static))
                           for i in range(n_starts)),
        steps=len(history),
        stopped="converged" if since >= patience else "steps",
        n_starts=n_starts,
        seed=seed,
        settings=settings,
        wall_s=wall,
        wall_s_total=wall_before + wall,
        hardware=record,
        method=method,
        density=density,
        grid=grid,
    )


def separate_per_panel(init: GraupnerBrunel2012 | PanelRule, free: FreeParameters, separate: tuple[str, ...],
                        dataset: Dataset, bounds: Mapping[str, tuple[float, float]] | None
                        ) -> tuple[PanelRule, FreeParameters]:
    """`init` as a `PanelRule` with `separate` per panel of `dataset` (a `PanelRule` given as `init`: checked to
    be one), and the free parameters with each separate one replaced, in place, by one per panel (`name[panel]`)."""
    unknown = [name for name in separate if name not in free.names]
    if unknown or len(set(separate)) != len(separate):
        raise ValueError(f"fit: separate parameters must be free parameters, named once each; got {', '.join(separate)} "
                         f"(free: {', '.join(free.names)})")
    panels = tuple(dict.fromkeys(dataset.panel))
    if len(panels) < 2:
        raise ValueError(f"fit: separate parameters take one value per data set of a joint fit, and {dataset.name!r} is one "
                         f"(one panel); fit several data sets together (fitting.joint, --dataset A --dataset B)")
    if isinstance(init, PanelRule):
        if (init.separate, init.panels) != (separate, panels):
            raise ValueError(f"fit: init has {', '.join(init.separate)} separate per panel {', '.join(init.panels)}; "
                             f"this fit asks for {', '.join(separate)} per panel {', '.join(panels)}")
        model = init
    else:
        # Paths into a plain rule are attribute names (integer indices occur only inside a PanelRule).
        paths = [cast(tuple[str, ...], free.paths[free.names.index(name)]) for name in separate]
        model = PanelRule(init, separate, paths, panels)
    names = [n for name in free.names
             for n in ([f"{name}[{panel}]" for panel in panels] if name in separate else [name])]
    return model, FreeParameters(model, names, bounds)


# Factors k of the closed form's invariance (tau, gamma_p, gamma_d, sigma^2) -> k (...) tried by the density stage.
SCALES = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0)
INVARIANT = ("tau", "gamma_p", "gamma_d", "sigma")
INVARIANT_POWERS = {"tau": 1.0, "gamma_p": 1.0, "gamma_d": 1.0, "sigma": 0.5}  # each scales by k to this power


def rescaled(rule: GraupnerBrunel2012 | PanelRule, k: float) -> GraupnerBrunel2012 | PanelRule:
    """`rule` with tau, gamma_p, gamma_d scaled by `k` and sigma by sqrt(k): the same GB2012 closed form, another model
    (in a `PanelRule`, the shared values and every panel's)."""
    if isinstance(rule, PanelRule):
        values = [[v * k ** INVARIANT_POWERS[path[-1]] for v in row] if path[-1] in INVARIANT else row
                  for path, row in zip(rule.paths, rule.values)]
        return PanelRule(_rescaled_rule(rule.shared, k), rule.separate, rule.paths, rule.panels, values)
    return _rescaled_rule(rule, k)


def _rescaled_rule(rule: GraupnerBrunel2012, k: float) -> GraupnerBrunel2012:
    return eqx.tree_at(lambda r: tuple(getattr(r, n) for n in INVARIANT), rule,
                       tuple(getattr(rule, n) * k ** INVARIANT_POWERS[n] for n in INVARIANT))


class _Quasi(eqx.Module):
    """State of the density stage: the point and the L-BFGS state."""

    u: PyTree
    opt_state: PyTree


@functools.cache
def _lbfgs() -> optax.GradientTransformation:
    return optax.scale_by_lbfgs()


def lbfgs_start(u: PyTree, memory: _Quasi | None = None) -> _Quasi:
    """The L-BFGS state at `u` (for `lbfgs_iteration`): with an empty memory, or with that of the state `memory`."""
    return _Quasi(u, _lbfgs().init(u) if memory is None else memory.opt_state)


@eqx.filter_jit
def loss_and_grad(u: PyTree, static: PyTree, problem: Problem) -> tuple[Array, PyTree]:
    return jax.value_and_grad(problem.objective)(u, static)


@eqx.filter_jit
def _lbfgs_direction(grad: PyTree, state: _Quasi) -> tuple[PyTree, PyTree, Array]:
    """The L-BFGS direction at `state.u` (memory updated with the last step), its new state, and grad . direction."""
    direction, opt_state = _lbfgs().update(grad, state.opt_state, state.u)
    return direction, opt_state, jnp.asarray(optax.tree.vdot(grad, direction))


# Backtracking line search of the density stage: sufficient decrease (Armijo) with this constant,
# step halved at most this many times.
ARMIJO = 1e-4
BACKTRACKS = 12


def lbfgs_iteration(state: _Quasi, value: float, grad: PyTree, evaluate
                    ) -> tuple[_Quasi, float, PyTree] | None:
    """One L-BFGS iteration from `state.u` (loss `value`, gradient `grad`; `evaluate(u)` gives
    both at another point), or None if no step decreases the loss.

    The direction comes from optax's two-loop recursion; the step length from a backtracking
    line search on the host around one compiled value-and-gradient (a compiled zoom line
    search embeds the density solver several times and took 37 s to compile). Where the
    memory gives no descent direction (a step with negative curvature), it is reset.
    """
    direction, opt_state, slope = _lbfgs_direction(grad, state)
    if not float(slope) > 0:
        direction, opt_state, slope = _lbfgs_direction(grad, lbfgs_start(state.u))
    step = 1.0
    for _ in range(BACKTRACKS):
        trial = jax.tree.map(lambda x, d: x - step * d, state.u, direction)
        trial_value, trial_grad = evaluate(trial)
        if float(trial_value) <= value - ARMIJO * step * float(slope):
            return _Quasi(trial, opt_state), float(trial_value), trial_grad
        step /= 2
    return None


def lbfgs_minimise(u: PyTree, evaluate, *, iterations: int, converged, memory: _Quasi | None = None
                   ) -> tuple[_Quasi, float, int]:
    """At most `iterations` L-BFGS iterations (`lbfgs_iteration`) from `u`, where `evaluate(u)` gives the loss
    and its gradient; with the memory of the state `memory` if given. Stops early when no step decreases the
    loss or `converged(old, new)` says an iteration's gain was too small. Returns the last state, its loss
    and the iterations run."""
    value, grad = evaluate(u)
    state, value, steps = lbfgs_start(u, memory), float(value), 0
    for steps in range(1, iterations + 1):
        done = lbfgs_iteration(state, value, grad, evaluate)
        if done is None:
            break
        state, new, grad = done
        value, old = new, value
        if converged(old, new):
            break
    return state, value, steps


def _fit_density(start: GraupnerBrunel2012 | PanelRule, initial: GraupnerBrunel2012 | PanelRule, problem: Problem, *,
                 steps: int, tol: float, grid: ca_plast.DensityGrid, progress: bool, checkpoint: Path | None,
                 checkpoint_every: int, resume: bool, meta: dict
                 ) -> tuple[GraupnerBrunel2012 | PanelRule, dict, ca_plast.DensityGrid, np.ndarray]:
    """The density stage of `fit` (module docstring, items 4-5).

    Returns the fitted rule, its record, the grid used (settled on the starting rule by
    `ca_plast.density_ratios`: widened or one event per remap where the data set needs it;
    checked again on the fitted rule) and the fitted rule's prediction on it.
    """
    free = problem.free
    start_prediction, grid = density_prediction(start, problem.spikes, grid, problem.panel)
    density_problem = dataclasses.replace(problem, method="density", grid=grid)
    candidates = {1.0: start}
    bases = [split_name(name)[0] for name in free.names]  # tau, or tau[panel] where separate
    scaled = [i for i, base in enumerate(bases) if base in INVARIANT]
    if set(INVARIANT) <= set(bases):
        for k in SCALES[1:]:
            values = free.get(rescaled(start, k))
            if all(free.lower[i] <= float(values[i]) <= free.upper[i] for i in scaled):
                candidates[k] = rescaled(start, k)
    static = free.split(start)[1]
    # One after the other through the compiled value and gradient the iterations use (no second compilation).
    evaluated: dict[float | None, tuple[PyTree, Array, PyTree]] = {
        k: (free.split(rule)[0], *loss_and_grad(free.split(rule)[0], static, density_problem))
        for k, rule in candidates.items()}
    scan = {k: float(value) for k, (_, value, _) in evaluated.items()}
    best_k = min(scan, key=lambda k: scan[k] if np.isfinite(scan[k]) else np.inf)
    # The initial rule competes too: a closed-form fit far from the model can be worse in it than the start.
    initial_u = free.split(initial)[0]
    initial_value, initial_grad = loss_and_grad(initial_u, static, density_problem)
    if float(initial_value) < scan[best_k]:
        best_k, evaluated[None] = None, (initial_u, initial_value, initial_grad)
    u0 = evaluated[best_k][0]

    state = lbfgs_start(u0)
    stage_meta = {**meta, "stage": "density", "start": free.values(start), "grid": repr(grid),
                  "optimizer": "lbfgs-backtracking"}
    history: list[float] = []
    if resume and checkpoint is not None and checkpoint.exists():
        state, history, _ = _load_checkpoint(checkpoint, state, stage_meta)
    first_value, grad = loss_and_grad(state.u, static, density_problem) if history else evaluated[best_k][1:]
    value, stuck = float(first_value), False
    bar = Progress(progress, steps, "fit in the model (density solver, L-BFGS)", "loss", unit="step")
    started = time.monotonic()

    def save():
        if checkpoint is not None:
            _save_checkpoint(checkpoint, state, history, time.monotonic() - started, stage_meta)

    def stalled() -> bool:
        """No step decreases the loss, or no relative improvement of `tol` over the last three iterations."""
        return stuck or len(history) > 3 and history[-4] - min(history[-3:]) <= tol * abs(history[-4])

    def step() -> int:
        nonlocal state, value, grad, stuck
        done = lbfgs_iteration(state, value, grad, lambda u: loss_and_grad(u, static, density_problem))
        if done is None:
            stuck = True
            return len(history)
        state, value, grad = done
        history.append(value)
        bar.update(len(history), value)
        return len(history)

    _run_saving(step, lambda: len(history) < steps and not stalled(), save, checkpoint_every)
    bar.update(len(history), value, final=True)
    model = free.combine(state.u, static)
    prediction, used = density_prediction(model, problem.spikes, grid, problem.panel)
    record = {
        "closed_form_fit": {
            "params": free.values(start),
            "chi2_closed_form": float(chi2(predict(start, problem.spikes, panel=problem.panel), problem.data, problem.sem)),
            "chi2_density": float(chi2(start_prediction, problem.data, problem.sem)),
        },
        "invariance_scan": {f"{k:g}": v for k, v in scan.items()},
        "invariance_scan_loss": problem.loss,
        "scale_chosen": best_k,
        "initial_rule_density_loss": float(initial_value),
        "started_from": "closed-form fit" if best_k is not None else "initial rule",
        "grid": {"cells_per_unit": used.cells_per_unit, "margin": used.margin, "drive_steps": used.drive_steps,
                 "events_per_remap": used.events_per_remap},
        "optimizer": "L-BFGS (optax.scale_by_lbfgs, backtracking Armijo line search)",
        "steps": len(history),
        "stopped": "converged" if stalled() else "steps",
        "history": history,
    }
    return model, record, used, prediction


def _refine_and_keep_better(dataset: Dataset, init: GraupnerBrunel2012, model: GraupnerBrunel2012,
                            free_parameters: FreeParameters, hardware: ca_plast.BSS2, refinement: Refinement,
                            **settings):
    """The quantisation-aware stage of `fit`: refine the float fit `model`, score the initial rule, the float
    fit and the refined rule under the emulation on validation draws, and keep the better fit.

    Returns the kept rule, its predictions, the initial rule's, and the record for `FitResult.hardware`.
    """
    seed = settings["seed"]
    refined, losses = refine_on_hardware(dataset, model, free_parameters, hardware, refinement, **settings)
    validation = jax.random.fold_in(jax.random.key(seed), _VALIDATION_STREAM)
    initial_prediction, float_prediction, refined_prediction = hardware_predictions(
        [init, model, refined], dataset, hardware, n_synapses=refinement.validation_synapses, key=validation)
    float_chi2, refined_chi2 = (float(chi2(p, dataset.data, dataset.sem)) for p in (float_prediction, refined_prediction))
    keep_refined = refined_chi2 <= float_chi2
    record = {
        "config": repr(hardware),
        "float_fit_chi2": float_chi2,
        "refined_chi2": refined_chi2,
        "kept": "refined" if keep_refined else "float fit",
        "float_fit_params": free_parameters.values(model),
        "refined_params": free_parameters.values(refined),
        "refinement": dataclasses.asdict(refinement),
        "validation": f"hard UP/DOWN readout, {refinement.validation_synapses} synapses per state, "
                      f"key fold_in(key({seed}), {_VALIDATION_STREAM})",
        "history": losses,
    }
    if keep_refined:
        return refined, refined_prediction, initial_prediction, record
    return model, float_prediction, initial_prediction, record


def hardware_predictions(rules: Sequence[GraupnerBrunel2012], dataset: Dataset, hardware: ca_plast.BSS2, *,
                         n_synapses: int, key) -> list[np.ndarray]:
    """Change ratio of every data point under the emulation (hard readout, `ca_plast.hardware_ratios`) for each rule.

    All rules see the same random numbers (`key`), so their scores differ by the rules only.
    """
    return [ca_plast.hardware_ratios(rule, list(dataset.protocols), hardware, n_synapses=n_synapses, key=key)[0]
            for rule in rules]


def refine_on_hardware(
    dataset: Dataset,
    start: GraupnerBrunel2012,
    free: FreeParameters,
    hardware: ca_plast.BSS2,
    refinement: Refinement,
    *,
    loss: str = "chi2",
    seed: int = 0,
    checkpoint: Path | None = None,
    checkpoint_every: int = 100,
    resume: bool = False,
    progress: bool = False,
) -> tuple[GraupnerBrunel2012, list[float]]:
    """Refine the `free` parameters of `start` through the hardware emulation; returns the rule and the loss per step.

    Adam (constant rate) on `loss` of `ca_plast.hardware_prediction`, whose gradients pass
    the rounding and the CADC by the straight-through estimator. Step i uses the random
    numbers of `fold_in(fold_in(key(seed), 2^31 - 1), i)`: each step a fresh draw, so the
    refinement follows the gradient of the expected loss instead of fitting one draw's
    noise; the result is the mean of the iterates from step `refinement.averaged_from` on
    (Polyak-Ruppert averaging, which removes most of the remaining noise of the iterates).
    `checkpoint`: written atomically every `checkpoint_every` steps, at the end and on
    interruption; `resume=True` continues from it (when it exists) exactly.
    """
    u0, static = free.split(start)
    problem = Problem(dataset.spikes(unit=hardware.period), jnp.asarray(dataset.data, dtype=float),
                       jnp.asarray(dataset.sem, dtype=float), free, loss, hardware, refinement.synapses)
    optimizer = _optimizer(refinement.learning_rate, np.inf, 1.0)
    state = _Refining(u0, optimizer.init(u0), jax.tree.map(jnp.zeros_like, u0))
    meta = {"format": CHECKPOINT_FORMAT, "stage": "hardware", "dataset": dataset.name, "modelling": dataset.modelling,
            "free": list(free.names), "start": free.values(start), "hardware": repr(hardware), "loss": loss, "seed": seed,
            **dataclasses.asdict(refinement)}
    history: list[float] = []
    if resume and checkpoint is not None and checkpoint.exists():
        state, history, _ = _load_checkpoint(checkpoint, state, meta)
    training = jax.random.fold_in(jax.random.key(seed), _TRAINING_STREAM)
    bar = Progress(progress, refinement.steps, f"refine through {type(hardware).__name__} emulation",
                    "mean loss of the last 10 steps", unit="step")
    started = time.monotonic()

    def save():
        if checkpoint is not None:
            _save_checkpoint(checkpoint, state, history, time.monotonic() - started, meta)

    def step() -> int:
        nonlocal state
        i = len(history)
        state, value = _refine_step(state, static, problem, optimizer, jax.random.fold_in(training, i),
                                    jnp.asarray(i >= refinement.averaged_from))
        history.append(float(value))
        bar.update(len(history), float(np.mean(history[-10:])))
        return len(history)

    _run_saving(step, lambda: len(history) < refinement.steps, save, checkpoint_every)
    count = refinement.steps - refinement.averaged_from
    refined = free.combine(jax.tree.map(lambda t: t / count, state.total), static)
    return cast(GraupnerBrunel2012, refined), history  # `start` recombined: a GraupnerBrunel2012


def _leaves_by_path(model: eqx.Module) -> tuple[list[str], list]:
    paths, leaves = zip(*jax.tree_util.tree_flatten_with_path(model)[0])
    return [jax.tree_util.keystr(p, simple=True, separator=".") for p in paths], list(leaves)
