"""Sizes checked before a run: memory it will allocate, ticks that must fit 32-bit integers, seeds.

A run that would not fit is refused up front, with the estimate, the limit and what to change,
instead of allocating until the process dies. The estimates are upper bounds measured from
XLA's memory analysis of the compiled solvers (arguments, outputs and temporaries) with a
factor of about two to spare: per protocol about 40 bytes per spike (spike arrays and event
streams; 128 counted), per simulated synapse about 40 bytes in the event solver (96 counted),
and the density solver's grid about 25 kB per protocol (64 KiB counted).
"""

import numbers
import os

MAX_TICKS = 2**31 - 1  # ticks are int32
MAX_SEED = 2**32 - 1
BYTES_PER_SPIKE = 128
BYTES_PER_SYNAPSE = 96
BYTES_PER_DENSITY = 64 * 1024
BYTES_PER_RECORD = 64
GIB = 2.0**30


def memory_limit() -> tuple[float, str]:
    """The bytes a run may allocate and where that figure comes from.

    Half of this machine's physical memory on the CPU; 90 % of the memory of the default
    device on an accelerator.
    """
    import jax

    device = jax.devices()[0]
    if device.platform != "cpu":
        stats = device.memory_stats() or {}
        if "bytes_limit" in stats:
            return 0.9 * stats["bytes_limit"], f"90 % of the {device.platform.upper()}'s memory"
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return float("inf"), "no limit known"
    return 0.5 * total, "half of this machine's memory"


def simulation_bytes(method: str, n_protocols: int, n_spikes: int, n_synapses: int) -> float:
    """Estimated bytes of `stdp_ratios(..., method)` over `n_protocols` protocols of at most
    `n_spikes` spikes each, simulating `n_synapses` synapses per initial state."""
    total = float(BYTES_PER_SPIKE) * n_protocols * n_spikes
    if method == "density":
        total += BYTES_PER_DENSITY * n_protocols
    elif method in ("events", "scan"):
        # Every protocol's synapses at once (the scan maps over protocols and needs less,
        # hardware emulation batches them all).
        total += BYTES_PER_SYNAPSE * n_protocols * 2.0 * n_synapses
    return total


def stc_bytes(n_trials: int, n_spikes: int, n_records: float) -> float:
    """Estimated bytes of `simulate_stc` over `n_trials` trials of `n_spikes` spikes and `n_records` records."""
    return float(n_trials) * (BYTES_PER_SPIKE * n_spikes + BYTES_PER_RECORD * n_records + BYTES_PER_DENSITY)


def check_memory(n_bytes: float, what: str, change: str) -> None:
    """Raise ValueError if `n_bytes` exceed `memory_limit()`, naming `what` would allocate them and `change`."""
    limit, source = memory_limit()
    if n_bytes > limit:
        raise ValueError(f"{what} would allocate about {n_bytes / GIB:.3g} GiB, more than the {limit / GIB:.3g} GiB "
                         f"allowed ({source}); {change}")


def check_seed(owner: str, seed) -> int:
    """`seed` as an int, or ValueError unless it is a whole number from 0 to 2**32 - 1."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= int(seed) <= MAX_SEED:
        raise ValueError(f"{owner}: seed must be a whole number from 0 to {MAX_SEED}, got {seed!r}")
    return int(seed)
