"""Published GB2012 parameter sets, converted to the project's units (ms).

Source file: `ca_plast/data/gb_parameter_sets.csv` (copied from the project's shared data,
provenance in its header and `source` column): the six sets of GB2012 Fig. 2 (DP, DPD,
DPD', P, D, D') and the three fits of the GB2012 supplement (hippocampal slices, cortical
slices, hippocampal cultures), all as coded in M. Graupner's public model code
(CalciumBasedPlasticityModel, commit 0d5b62b). Times there are in s; here in ms.
"""

import csv
import functools
from importlib import resources

from .._calcium import LinearCalcium
from ._gb2012 import GraupnerBrunel2012

_ROWS = {
    "DP": "DP",
    "DPD": "DPD",
    "DPDprime": "DPDprime",
    "P": "P",
    "D": "D",
    "Dprime": "Dprime",
    "hippocampal_slices": "hippocampal slices",
    "cortical_slices": "cortical slices",
    "hippocampal_cultures": "hippocampal cultures",
}

GB2012_PRESETS = tuple(_ROWS)


@functools.cache
def _table() -> dict[str, dict[str, str]]:
    text = resources.files("ca_plast").joinpath("data/gb_parameter_sets.csv").read_text()
    lines = [line for line in text.splitlines() if not line.startswith("#")]
    return {row["name"]: row for row in csv.DictReader(lines)}


def preset_source(name: str) -> str:
    """Where the preset's numbers come from (the `source` and `notes` columns of the data file)."""
    row = _table()[_ROWS[_check_name(name)]]
    return f"{row['source']}; {row['notes']}"


def _check_name(name: str) -> str:
    if name not in _ROWS:
        raise ValueError(f"unknown preset {name!r}; valid presets: {', '.join(GB2012_PRESETS)}")
    return name


def gb2012_preset(name: str) -> GraupnerBrunel2012:
    """The GB2012 rule with a published parameter set (the names of GB2012 Table S1 and its figures; `GB2012_PRESETS` lists them).

    Calcium is `LinearCalcium`; times are converted from s to ms.
    """
    row = _table()[_ROWS[_check_name(name)]]
    value = lambda key: float(row[key])  # noqa: E731
    ms = lambda key: 1000.0 * value(key)  # noqa: E731
    calcium = LinearCalcium(C_pre=value("Cpre"), C_post=value("Cpost"), tau_ca=ms("tauCa_s"), D=ms("D_s"))
    return GraupnerBrunel2012(
        calcium=calcium,
        theta_p=value("thetaP"),
        theta_d=value("thetaD"),
        gamma_p=value("gammaP"),
        gamma_d=value("gammaD"),
        tau=ms("tau_s"),
        sigma=value("sigma"),
        rho_star=value("rhoStar"),
        beta=value("beta"),
        b=value("b"),
    )
