"""ca_plast: differentiable calcium-based synaptic plasticity in JAX."""

from typing import TYPE_CHECKING

from . import _signals

_signals.guard_console_start()  # before JAX is imported: Ctrl-C in the command line's start-up exits cleanly

from ._calcium import (
    AbstractCalcium as AbstractCalcium,
    CoincidenceCalcium as CoincidenceCalcium,
    LinearCalcium as LinearCalcium,
    NonlinearCalcium as NonlinearCalcium,
    time_above as time_above,
)
from ._grid import (
    closed_form_grid as closed_form_grid,
    device_mesh as device_mesh,
    map_sharded as map_sharded,
    shard_batch as shard_batch,
    stack as stack,
)
from ._lif import LeakyIntegrateAndFire as LeakyIntegrateAndFire, LIFState as LIFState
from ._protocols import (
    Protocol as Protocol,
    burst as burst,
    pairs as pairs,
    poisson as poisson,
    quadruplet as quadruplet,
    random_pairs as random_pairs,
    repeated as repeated,
    trains as trains,
    triplet as triplet,
)
from ._spikes import Spikes as Spikes, event_sequence as event_sequence, to_spikes as to_spikes
from ._stc_protocols import (
    MS_PER_HOUR as MS_PER_HOUR,
    STC_PROTOCOLS as STC_PROTOCOLS,
    stc_protocol as stc_protocol,
    stc_protocols as stc_protocols,
)
from ._stc_simulate import simulate_stc as simulate_stc
from ._stdp import (
    METHODS as METHODS,
    AbstractPrediction as AbstractPrediction,
    ClosedForm as ClosedForm,
    Density as Density,
    events_ratio as events_ratio,
    scan_ratio as scan_ratio,
    stdp_ratios as stdp_ratios,
)
from ._validation import Bound as Bound, check_fields as check_fields
from .hardware import (
    BSS2 as BSS2,
    BSS2_STC as BSS2_STC,
    AbstractRounding as AbstractRounding,
    FixedPoint as FixedPoint,
    Floor as Floor,
    Hardware as Hardware,
    HardwareRounding as HardwareRounding,
    Nearest as Nearest,
    STCHardware as STCHardware,
    Stochastic as Stochastic,
    grid_population_ratio as grid_population_ratio,
    hardware_populations as hardware_populations,
    hardware_prediction as hardware_prediction,
    hardware_ratios as hardware_ratios,
    solve_hardware as solve_hardware,
    solve_stc_hardware as solve_stc_hardware,
    stc_ppu_increment as stc_ppu_increment,
    stc_weight_codes as stc_weight_codes,
    stochastic_round as stochastic_round,
    straight_through as straight_through,
    tie_shift as tie_shift,
)
from .rules import (
    GB2012_PRESETS as GB2012_PRESETS,
    OUTCOMES as OUTCOMES,
    AbstractRule as AbstractRule,
    Affine as Affine,
    GraupnerBrunel2012 as GraupnerBrunel2012,
    LuboeinskiTetzlaff2021 as LuboeinskiTetzlaff2021,
    Shouval2002 as Shouval2002,
    STCState as STCState,
    STCStats as STCStats,
    bistable_flow as bistable_flow,
    classify_outcome as classify_outcome,
    gb2012_preset as gb2012_preset,
    luboeinski_tetzlaff2021 as luboeinski_tetzlaff2021,
    population_ratio as population_ratio,
    preset_source as preset_source,
    threshold_drive as threshold_drive,
)
from .solvers import (
    MAX_LAG as MAX_LAG,
    AbstractSolver as AbstractSolver,
    AbstractSTCSolver as AbstractSTCSolver,
    DensityGrid as DensityGrid,
    DensitySolution as DensitySolution,
    Events as Events,
    EventSolution as EventSolution,
    Scan as Scan,
    ScanSolution as ScanSolution,
    Solution as Solution,
    STCEvents as STCEvents,
    STCFine as STCFine,
    STCSolution as STCSolution,
    check_density as check_density,
    closed_form_ratio as closed_form_ratio,
    density_ratio as density_ratio,
    density_ratios as density_ratios,
    duration as duration,
    solve as solve,
    solve_density as solve_density,
    solve_events as solve_events,
    solve_scan as solve_scan,
    solve_stc as solve_stc,
    solve_stc_fine as solve_stc_fine,
    time_above_thresholds as time_above_thresholds,
    transition_probabilities as transition_probabilities,
)

__version__ = "0.1.0"

# Plotting loads matplotlib (about a second): on first use, so that commands and programs
# that draw nothing start faster.
_LAZY = {"Figure": "_plotting", "plot_stdp": "_plotting", "plot_traces": "_plotting",
         "plot_stc": "_stc_plotting", "stc_percentages": "_stc_plotting"}

if TYPE_CHECKING:
    from ._plotting import Figure as Figure, plot_stdp as plot_stdp, plot_traces as plot_traces
    from ._stc_plotting import plot_stc as plot_stc, stc_percentages as stc_percentages


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
