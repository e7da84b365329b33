"""ca_plast.fitting: experimental STDP data sets, losses and the optax fit loop for ca_plast rules.

The source folder is `fitting/`; it is installed as the sub-package `ca_plast.fitting`
(`from ca_plast import fitting`), never as a top-level `fitting`, a name another PyPI
distribution installs.
"""

from typing import TYPE_CHECKING

if __name__ != "ca_plast.fitting":
    raise ImportError(f"import this package as ca_plast.fitting (`from ca_plast import fitting`), not as {__name__!r}")

from ._comparison import (
    compare as compare,
    cross_validate as cross_validate,
    information_criteria as information_criteria,
)
from ._datasets import (
    DATASETS as DATASETS,
    Dataset as Dataset,
    combine as combine,
    joint as joint,
    load_dataset as load_dataset,
    modellings as modellings,
)
from ._fit import (
    FitResult as FitResult,
    Refinement as Refinement,
    fit as fit,
    hardware_predictions as hardware_predictions,
    refine_on_hardware as refine_on_hardware,
    versions as versions,
)
from ._losses import LOSSES as LOSSES, chi2 as chi2, predict as predict, soft_l1 as soft_l1, z_scores as z_scores
from ._panels import PanelRule as PanelRule
from ._posterior import Posterior as Posterior, sample_posterior as sample_posterior
from ._synthetic import simulated as simulated
from ._transforms import (
    DEFAULT_BOUNDS as DEFAULT_BOUNDS,
    FreeParameters as FreeParameters,
    parameter_values as parameter_values,
    to_bounded as to_bounded,
    to_unconstrained as to_unconstrained,
)
from ._uncertainty import (
    Laplace as Laplace,
    Profile as Profile,
    Uncertainty as Uncertainty,
    laplace as laplace,
    profiles as profiles,
    with_uncertainty as with_uncertainty,
)

if TYPE_CHECKING:
    from ._report import plot_fit as plot_fit, summary as summary, write_report as write_report
    from ._uncertainty_plots import plot_corner as plot_corner, plot_profiles as plot_profiles


def __getattr__(name: str):
    # The report draws with matplotlib (about a second to load): loaded on first use.
    if name in ("plot_fit", "summary", "write_report"):
        from . import _report

        return getattr(_report, name)
    if name in ("plot_corner", "plot_profiles"):
        from . import _uncertainty_plots

        return getattr(_uncertainty_plots, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
