"""The BrainScaleS-2 emulation: fixed-point formats, rounding, the plasticity processor's
program run around the exact analog side (`_bss2` for any early-phase rule, `_stc` for
tagging and capture)."""

from ._bss2 import (
    BSS2 as BSS2,
    grid_population_ratio as grid_population_ratio,
    hardware_populations as hardware_populations,
    hardware_prediction as hardware_prediction,
    hardware_ratios as hardware_ratios,
    solve_hardware as solve_hardware,
    tie_shift as tie_shift,
)
from ._fixed_point import (
    FixedPoint as FixedPoint,
)
from ._rounding import (
    AbstractRounding as AbstractRounding,
    Floor as Floor,
    HardwareRounding as HardwareRounding,
    Nearest as Nearest,
    Stochastic as Stochastic,
    stochastic_round as stochastic_round,
    straight_through as straight_through,
)
from ._solver import (
    Hardware as Hardware,
    STCHardware as STCHardware,
)
from ._stc import (
    BSS2_STC as BSS2_STC,
    solve_stc_hardware as solve_stc_hardware,
    stc_ppu_increment as stc_ppu_increment,
    stc_weight_codes as stc_weight_codes,
)
