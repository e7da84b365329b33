"""Posterior samples of a fit's free parameters by NUTS (blackjax; `with_uncertainty(..., samples=N)`, `--mcmc N`).

Posterior. The likelihood is the one the intervals use (`fitting._uncertainty`: independent
Gaussian errors, the fit's deterministic prediction, divided by the error scale s^2), and
the prior is uniform over the bounds in the coordinates v (log x for scale parameters, x
otherwise): the bounds are the only prior knowledge a fit states.

Sampling. NUTS runs in the fit's unconstrained coordinates u (`x = bounded sigmoid of u`,
`fitting.FreeParameters`), where the uniform prior in v has the logistic density
`sigmoid(u) sigmoid(-u)`, so that no draw leaves the bounds and the sampler never meets a
wall of the prior. Each chain starts at the fit (chains after the first a little away from
it), adapts its step size and diagonal mass matrix with blackjax's window adaptation for
`warmup` steps, then draws `samples`. Reported per parameter: the posterior median and the
2.5-97.5 % interval, mean and standard deviation, the effective sample size and, with two
chains or more, the potential scale reduction R-hat (blackjax.diagnostics); overall: the
acceptance rate, the number of divergent transitions and the mean number of integration
steps. Divergences or R-hat > 1.01 mean the chains have not explored the posterior (GB2012's
thresholds give it walls and several valleys): the record says so.

blackjax is an optional dependency (`pip install 'ca_plast[mcmc]'`), imported only here.
"""

import dataclasses
from typing import TYPE_CHECKING, cast

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ca_plast._custom_types import Array, PyTree
from ca_plast._progress import Progress
from ca_plast._validation import whole_number

from ._fit import FitResult, Problem
from ._transforms import FreeParameters, to_bounded

if TYPE_CHECKING:  # blackjax is optional and imported where it is used (`_blackjax`)
    from blackjax.mcmc.hmc import HMCState
    from blackjax.mcmc.nuts import NUTSInfo

# Chains after the first start this far from the fit (unit normal in u, times this).
JITTER = 0.1


@dataclasses.dataclass(frozen=True)
class Posterior:
    """NUTS draws of the free parameters (module docstring).

    `samples`: shape (chains, draws, parameters), in the parameters' units, columns in the
    order of `names`; `divergent`: per draw; `acceptance`, `steps`: mean acceptance rate and
    integration steps per draw; `ess`, `rhat`: per parameter (R-hat NaN with one chain);
    `settings`: draws, warm-up, chains, seed.
    """

    names: tuple[str, ...]
    samples: np.ndarray
    divergent: np.ndarray
    acceptance: float
    steps: float
    ess: np.ndarray
    rhat: np.ndarray
    settings: dict

    def record(self) -> dict:
        """fit.json's `posterior`: per parameter median, ci95, mean, sd, ess, rhat, and the diagnostics."""
        flat = self.samples.reshape(-1, len(self.names))
        per_parameter = {}
        for i, name in enumerate(self.names):
            lo, median, hi = np.percentile(flat[:, i], [2.5, 50, 97.5])
            per_parameter[name] = {"median": float(median), "ci95": [float(lo), float(hi)], "mean": float(flat[:, i].mean()),
                                   "sd": float(flat[:, i].std(ddof=1)), "ess": float(self.ess[i]),
                                   "rhat": None if not np.isfinite(self.rhat[i]) else float(self.rhat[i])}
        divergences = int(self.divergent.sum())
        notes = []
        if divergences:
            notes.append(f"{divergences} divergent transitions: the sampler met regions it could not integrate (walls of "
                         "the loss); intervals may miss parts of the posterior")
        if np.any(self.rhat > 1.01):
            notes.append("R-hat above 1.01: the chains disagree, they have not explored the posterior; draw more")
        return {"parameters": per_parameter,
                "diagnostics": {"divergent": divergences, "acceptance": self.acceptance, "steps_per_draw": self.steps},
                "settings": self.settings, "notes": notes,
                "method": "NUTS (blackjax) in the fit's unconstrained coordinates, window adaptation; prior uniform over "
                          "the bounds in log x (scale parameters) or x; likelihood divided by the error scale s^2"}


def _blackjax():
    try:
        import blackjax
    except ImportError:
        raise ImportError("posterior samples need blackjax: pip install 'ca_plast[mcmc]' (or pip install blackjax)") from None
    return blackjax


class _Target(eqx.Module):
    """The log posterior density in the fit's unconstrained coordinates (module docstring), as a module:
    the compiled warm-up and draws then serve every chain and every call on a problem of the same shape."""

    free: FreeParameters
    u_hat: PyTree
    static: PyTree
    problem: Problem
    weight: float

    def __call__(self, position: Array) -> Array:
        u = self.free.set(self.u_hat, tuple(position[i] for i in range(position.size)))
        prior = jnp.sum(jax.nn.log_sigmoid(position) + jax.nn.log_sigmoid(-position))
        return -self.weight * self.problem.objective(u, self.static) + prior


@eqx.filter_jit
def _warmup(target: _Target, key: Array, position: Array, steps: int):
    """Window adaptation from `position`: the last state and the adapted step size and mass matrix."""
    blackjax = _blackjax()
    adaptation = blackjax.window_adaptation(blackjax.nuts, target)
    # blackjax's RunFn protocol omits the num_steps its window adaptation's run takes.
    return adaptation.run(key, position, num_steps=steps)[0]  # pyright: ignore[reportCallIssue]


@eqx.filter_jit
def _draws(target: _Target, state, keys: Array, parameters: dict):
    """One NUTS draw per key from `state`: the last state, and per draw its position, divergence,
    acceptance rate and integration steps."""
    kernel = _blackjax().nuts(target, **parameters).step

    def one(state, key):
        # blackjax types a step's result as bare NamedTuples; NUTS's are an HMCState and a NUTSInfo.
        state, info = cast("tuple[HMCState, NUTSInfo]", kernel(key, state))
        return state, (state.position, info.is_divergent, info.acceptance_rate, info.num_integration_steps)
    return jax.lax.scan(one, state, keys)


def sample_posterior(result: FitResult, *, samples: int = 1000, warmup: int = 500, chains: int = 2, seed: int = 0,
                     progress: bool = False) -> Posterior:
    """`samples` NUTS draws per chain from the posterior of `result`'s free parameters (module docstring)."""
    from ._uncertainty import Likelihood

    blackjax = _blackjax()
    for name, value, least in (("samples", samples, 1), ("warmup", warmup, 1), ("chains", chains, 1)):
        whole_number("sample_posterior", name, value, least)
    if result.hardware is not None:
        raise ValueError("sample_posterior: a fit through hardware emulation has a stochastic loss; sample the float fit")
    likelihood = Likelihood.of(result)
    free, problem = likelihood.free, likelihood.problem
    u_hat, static = free.split(likelihood.model)
    target = _Target(free, u_hat, static, problem, likelihood.n / 2 / likelihood.scale2)
    start = jnp.stack([jnp.asarray(v, dtype=float) for v in free.get(u_hat)])
    key = jax.random.key(seed)
    draws, divergent, acceptance, steps = [], [], [], []
    bar = Progress(progress, chains * 10, f"posterior samples (NUTS, {chains} chain(s), {warmup} warm-up + {samples} draws)",
                   unit="tenth")
    for chain in range(chains):
        key, k_start, k_warm, k_draw = jax.random.split(key, 4)
        position = start if chain == 0 else start + JITTER * jax.random.normal(k_start, start.shape, start.dtype)
        state, parameters = _warmup(target, k_warm, position, int(warmup))
        keys = jax.random.split(k_draw, int(samples))
        parts = []
        for k, part in enumerate(np.array_split(np.arange(int(samples)), 10)):
            if part.size:
                state, out = _draws(target, state, keys[part[0]:part[-1] + 1], parameters)
                parts.append(jax.tree.map(np.asarray, out))
            bar.update(chain * 10 + k + 1)
        positions, div, acc, n_steps = (np.concatenate(p) for p in zip(*parts))
        draws.append(positions)
        divergent.append(div)
        acceptance.append(acc)
        steps.append(n_steps)
    bar.update(chains * 10, final=True)
    u = np.stack(draws)  # (chains, draws, parameters)
    x = np.stack([np.asarray(to_bounded(jnp.asarray(u[..., i]), lo, hi)) for i, (lo, hi) in
                  enumerate(zip(free.lower, free.upper))], axis=-1)
    ess = np.asarray(blackjax.diagnostics.effective_sample_size(jnp.asarray(x), chain_axis=0, sample_axis=1))
    rhat = (np.asarray(blackjax.diagnostics.potential_scale_reduction(jnp.asarray(x), chain_axis=0, sample_axis=1))
            if chains > 1 else np.full(len(free.names), np.nan))
    return Posterior(names=free.names, samples=x, divergent=np.stack(divergent), acceptance=float(np.mean(acceptance)),
                     steps=float(np.mean(steps)), ess=ess, rhat=rhat,
                     settings={"samples": int(samples), "warmup": int(warmup), "chains": int(chains), "seed": seed})

