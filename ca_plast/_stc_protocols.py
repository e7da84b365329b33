"""The four classic late-phase induction protocols: STET, WTET, SLFS, WLFS (presynaptic stimulation).

As in Luboeinski & Tetzlaff (2021) and the authors' single-synapse reference code
(`arbor_2N1S`; stimulus windows relative to the stimulus onset):

- STET, strong tetanus: 3 trains of 1 s at 100 Hz, 10 min apart (late-LTP);
- WTET, weak tetanus: 1 train of 0.2 s at 100 Hz (early-LTP only);
- SLFS, strong low-frequency stimulation: 900 bursts of 3 pulses at 20 Hz (150 ms windows),
  each followed by a 1 s pause (late-LTD);
- WLFS, weak low-frequency stimulation: 900 s at 1 Hz (early-LTD only).

Regular pulses sit at `window start + k / rate`. Poisson pulses, as in the reference code,
fire in each `dt` step of a window with probability `rate dt` (a Poisson train on the
0.2 ms grid). The stimulus starts after a settling period `settle` and `hours` are simulated
after its onset; pulses past the end are dropped.
"""

import numpy as np

from ._protocols import Protocol
from ._validation import whole_number

STC_PROTOCOLS = ("STET", "WTET", "SLFS", "WLFS")
MS_PER_HOUR = 3_600_000.0

# Window starts after the onset (ms), window length (ms), pulse rate (Hz).
_WINDOWS = {
    "STET": (600_000.0 * np.arange(3), 1000.0, 100.0),
    "WTET": (np.zeros(1), 200.0, 100.0),
    "SLFS": (1150.0 * np.arange(900), 150.0, 20.0),
    "WLFS": (np.zeros(1), 900_000.0, 1.0),
}


def check_protocol_name(name: str) -> str:
    """The protocol's name, or ValueError listing the valid names."""
    if name not in _WINDOWS:
        raise ValueError(f"unknown STC protocol {name!r}; valid protocols: {', '.join(STC_PROTOCOLS)}")
    return name


def stc_protocol(
    name: str,
    *,
    hours: float = 8.0,
    settle: float = 600_000.0,
    poisson: bool = False,
    seed: int | np.random.SeedSequence | None = None,
    dt: float = 0.2,
) -> Protocol:
    """Presynaptic spike times of one STC protocol (no postsynaptic spikes are imposed).

    `hours`: simulated time after the stimulus onset (h, > 0); `settle`: settling period
    before the onset (ms, >= 0), so the onset is at `settle` and the duration
    `settle + hours * 3.6e6` ms. `poisson`: Poisson pulses (needs `seed`) instead of regular
    ones; `dt`: their time grid (ms).
    """
    starts, length, rate = _WINDOWS[check_protocol_name(name)]
    if not (np.isfinite(hours) and hours > 0):
        raise ValueError(f"{name}: hours (simulated after the onset) must be a finite number > 0, got {hours!r}")
    if not (np.isfinite(settle) and settle >= 0):
        raise ValueError(f"{name}: settle (settling period before the onset) must be a finite number of ms >= 0, got {settle!r}")
    if not (np.isfinite(dt) and dt > 0):
        raise ValueError(f"{name}: dt (the Poisson time grid) must be a finite number of ms > 0, got {dt!r}")
    if poisson:
        if seed is None:
            raise ValueError(f"{name}: Poisson pulses need a seed")
        rng = np.random.default_rng(seed)
        steps = int(round(length / dt))
        times = [start + dt * np.flatnonzero(rng.random(steps) < rate * dt / 1000.0) for start in starts]
    else:
        pulses = int(round(length * rate / 1000.0))
        times = [start + 1000.0 / rate * np.arange(pulses) for start in starts]
    duration = settle + hours * MS_PER_HOUR
    pre = settle + np.concatenate(times)
    kind = "Poisson" if poisson else "regular"
    return Protocol(pre=pre[pre < duration], post=np.zeros(0), duration=duration, name=f"{name} ({kind})")


def stc_protocols(name: str, trials: int, *, seed: int = 0, poisson: bool = False, **kwargs) -> list[Protocol]:
    """`trials` protocols of one kind; Poisson trials get independent streams spawned from `seed`.

    Keyword arguments go to `stc_protocol`.
    """
    trials = whole_number(None, "trials", trials)
    if not poisson:
        return [stc_protocol(name, poisson=False, **kwargs)] * int(trials)
    seeds = np.random.SeedSequence(seed).spawn(int(trials))
    return [stc_protocol(name, poisson=True, seed=s, **kwargs) for s in seeds]
