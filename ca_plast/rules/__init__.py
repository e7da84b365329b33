"""Plasticity rules: the interface every solver needs (`AbstractRule`), the published rules
(GB2012 with its parameter sets, Shouval et al. 2002, Luboeinski & Tetzlaff 2021) and the
affine maps their solutions are made of."""

from ._abstract import (
    AbstractRule as AbstractRule,
)
from ._affine import (
    Affine as Affine,
    threshold_drive as threshold_drive,
)
from ._gb2012 import (
    GraupnerBrunel2012 as GraupnerBrunel2012,
    bistable_flow as bistable_flow,
    population_ratio as population_ratio,
)
from ._lt2021 import (
    OUTCOMES as OUTCOMES,
    LuboeinskiTetzlaff2021 as LuboeinskiTetzlaff2021,
    STCState as STCState,
    STCStats as STCStats,
    classify_outcome as classify_outcome,
    luboeinski_tetzlaff2021 as luboeinski_tetzlaff2021,
)
from ._presets import (
    GB2012_PRESETS as GB2012_PRESETS,
    gb2012_preset as gb2012_preset,
    preset_source as preset_source,
)
from ._shouval2002 import (
    Shouval2002 as Shouval2002,
)
