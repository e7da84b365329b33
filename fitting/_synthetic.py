"""Synthetic data sets: a rule's own prediction plus Gaussian noise of the reported size.

They have a known truth, which is what checks of a fit and of its uncertainty need: a fit
should recover the rule that generated the data, and its 95 % intervals should contain the
true values in 95 % of such data sets (`benchmarks/calibration.py`).
"""

import dataclasses

import numpy as np

from ca_plast import DensityGrid, GraupnerBrunel2012

from ._datasets import Dataset
from ._losses import checked_prediction
from ._panels import PanelRule
from ._precision import in_float64, to_float64


@in_float64
def simulated(dataset: Dataset, rule: GraupnerBrunel2012 | PanelRule, *, seed: int, method: str = "density",
              grid: DensityGrid = DensityGrid()) -> Dataset:
    """`dataset` with its measurements replaced by `rule`'s change ratios (by `method`, as a fit
    predicts them; a `PanelRule` gives each panel its own) plus independent Gaussian noise with the
    data set's s.e.m. (NumPy generator seeded with `seed`); protocols, errors and labels are kept,
    the name gets `(simulated)`."""
    truth = checked_prediction(to_float64(rule), dataset.spikes(), method, grid, dataset.panel)
    noise = dataset.sem * np.random.default_rng(seed).standard_normal(dataset.n_points)
    return dataclasses.replace(dataset, name=f"{dataset.name} (simulated)", data=truth + noise, reference=None)
