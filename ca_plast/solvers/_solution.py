"""The one result type of the early-phase solvers (`solve`, `solve_events`, `solve_scan`, `solve_hardware`)."""

import equinox as eqx

from .._custom_types import Array, Float


class Solution(eqx.Module):
    """Result of an early-phase solver for one protocol.

    `rho`: final efficacies (shape of `rho0`); `calcium`: calcium state at the protocol's end;
    `time_p`, `time_d`: total time (ms) calcium spent above the rule's two thresholds (theta_p
    and theta_d for GB2012); `ts` (ms), `c`, `rho_trace`: values at the record times and at the
    protocol's end (left limits: a spike exactly at a record time shows in the next record), or
    None when no records were asked for. `ScanSolution` and `EventSolution` are this class.
    """

    rho: Array
    calcium: object
    time_p: Array
    time_d: Array
    ts: Float[Array, " n_records"] | None = None
    c: Float[Array, " n_records"] | None = None
    rho_trace: Array | None = None
