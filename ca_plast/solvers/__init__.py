"""Solvers: one event loop (`_loop`) drives the time-stepped scan, the exact event-driven,
the closed-form and the population-density solvers of the early phase; `_stc` solves
synaptic tagging and capture over hours (multi-timescale, and its fine-step reference)."""

from ._closed_form import (
    closed_form_ratio as closed_form_ratio,
    duration as duration,
    time_above_thresholds as time_above_thresholds,
    transition_probabilities as transition_probabilities,
)
from ._density import (
    MAX_LAG as MAX_LAG,
    DensityGrid as DensityGrid,
    DensitySolution as DensitySolution,
    check_density as check_density,
    density_ratio as density_ratio,
    density_ratios as density_ratios,
    solve_density as solve_density,
)
from ._events import (
    EventSolution as EventSolution,
    solve_events as solve_events,
)
from ._scan import (
    ScanSolution as ScanSolution,
    solve_scan as solve_scan,
)
from ._solution import (
    Solution as Solution,
)
from ._solver import (
    AbstractSolver as AbstractSolver,
    Events as Events,
    Scan as Scan,
    solve as solve,
)
from ._stc import (
    AbstractSTCSolver as AbstractSTCSolver,
    STCEvents as STCEvents,
    STCFine as STCFine,
    STCSolution as STCSolution,
    solve_stc as solve_stc,
    solve_stc_fine as solve_stc_fine,
)
