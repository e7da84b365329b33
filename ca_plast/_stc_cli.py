"""`ca-plast stc`: the four late-phase protocols on one synapse.

    ca-plast stc --protocol STET|WTET|SLFS|WLFS [--hours H] [--trials N] [--poisson] [--seed S]
                 [--hardware none|bss2] [--csv PATH] [--plot PATH]

The model authors' single-synapse set-up: the protocol drives the presynaptic neuron, the
postsynaptic neuron is the leaky integrate-and-fire neuron driven by the synapse, the rule
is `luboeinski_tetzlaff2021()`. `--hours` are simulated after the stimulus onset, which
follows a 10 min settling period. Writes `t_h,h_pct,z_pct,w_pct,p` (means over trials,
every 30 s; t_h in hours after the onset, negative during the settling period) to `--csv`
or stdout, and one line with the outcome of the trials to stderr. `--hardware bss2` solves
the plasticity on the emulated BSS-2 chip (`solve_stc_hardware` with `BSS2_STC`).
"""

import argparse
import sys

import numpy as np

from ._arguments import SEED_HELP, UsageError, memory, output, seed, write_outputs
from ._limits import MAX_TICKS, stc_bytes
from ._signals import Interrupts
from ._stc_protocols import MS_PER_HOUR, STC_PROTOCOLS, stc_protocol

SETTLE_MS = 600_000.0
RECORD_EVERY_MS = 30_000.0


DESCRIPTION = """\
Synaptic tagging and capture (Luboeinski & Tetzlaff 2021) on one synapse onto a leaky
integrate-and-fire neuron: strong or weak tetanus or low-frequency stimulation (STET, WTET,
SLFS, WLFS), followed for hours. Writes t_h,h_pct,z_pct,w_pct,p (means over trials every
30 s; t_h in hours after the stimulus onset, negative during the 10 min settling period)
as CSV (standard output unless --csv), and the outcome of the trials to stderr."""

EXAMPLES = """\
examples:
  ca-plast stc --protocol STET                         # early-phase LTP consolidated into late-phase LTP
  ca-plast stc --protocol WTET --hours 4 --plot wtet.png
  ca-plast stc --protocol SLFS --poisson --trials 200 --seed 3 --csv slfs.csv
  ca-plast stc --protocol STET --hardware bss2 --trials 20"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--protocol", required=True, metavar="|".join(STC_PROTOCOLS),
                        help="strong/weak tetanus (STET, WTET) or strong/weak low-frequency stimulation (SLFS, WLFS)")
    parser.add_argument("--hours", type=float, default=8.0, help="hours simulated after the stimulus onset")
    parser.add_argument("--trials", type=int, default=100, help="number of trials")
    parser.add_argument("--poisson", action="store_true", help="Poisson instead of regular pulses")
    parser.add_argument("--seed", type=seed, default=0, help=SEED_HELP + "; drives the plasticity noise and the Poisson pulses")
    parser.add_argument("--hardware", default="none", metavar="none|bss2",
                        help="bss2: solve the plasticity on the emulated BrainScaleS-2 chip")
    parser.add_argument("--csv", metavar="PATH", help="write t_h,h_pct,z_pct,w_pct,p to this file (default: standard output)")
    parser.add_argument("--plot", metavar="PATH",
                        help="write h, z, w and p against time to this image file (.png, .pdf, .svg, ...)")


MAX_HOURS = (MAX_TICKS * 1.0 - SETTLE_MS) / MS_PER_HOUR  # ticks of 1 ms (simulate_stc's default unit)


def _check(args) -> str:
    protocol = args.protocol.upper()
    if protocol not in STC_PROTOCOLS:
        raise UsageError(f"unknown --protocol {args.protocol!r}; valid: {', '.join(STC_PROTOCOLS)}")
    if not (np.isfinite(args.hours) and 0 < args.hours <= MAX_HOURS):
        raise UsageError(f"--hours must be > 0 and at most {MAX_HOURS:.0f} (ticks of 1 ms must fit 32-bit integers), "
                         f"got {args.hours}")
    if args.trials < 1:
        raise UsageError(f"--trials must be >= 1, got {args.trials}")
    if args.hardware not in ("none", "bss2"):
        raise UsageError(f"unknown --hardware {args.hardware!r}; valid: none, bss2")
    pulses = stc_protocol(protocol, hours=args.hours, settle=SETTLE_MS).pre.size
    records = int((SETTLE_MS + args.hours * MS_PER_HOUR) // RECORD_EVERY_MS) + 1
    memory(stc_bytes(args.trials, 2 * pulses, records), f"{args.trials} trials of {args.hours:g} h",
           "lower --trials or --hours")
    return protocol


def run(args, interrupts: Interrupts) -> int:
    protocol = _check(args)
    csv = output("-" if args.csv is None else args.csv, "--csv")
    plot = output(args.plot, "--plot", plot=True)
    from ._lif import LeakyIntegrateAndFire
    from ._programs import seed_key
    from ._stc_plotting import stc_percentages
    from ._stc_protocols import stc_protocols
    from ._stc_simulate import simulate_stc
    from .hardware._stc import BSS2_STC
    from .rules._lt2021 import OUTCOMES, classify_outcome, luboeinski_tetzlaff2021

    rule = luboeinski_tetzlaff2021()
    protocols = stc_protocols(protocol, args.trials, seed=args.seed, poisson=args.poisson, hours=args.hours,
                              settle=SETTLE_MS)
    hardware = BSS2_STC if args.hardware == "bss2" else None
    solution = simulate_stc(rule, protocols, key=seed_key(args.seed), neuron=LeakyIntegrateAndFire(),
                            record_every=RECORD_EVERY_MS, hardware=hardware, progress=True)
    # Record k is at k * RECORD_EVERY_MS (exact in float64 here, whatever the device precision).
    t_h = (RECORD_EVERY_MS * np.arange(solution.h.shape[-1]) - SETTLE_MS) / MS_PER_HOUR
    traces = stc_percentages(rule.h0, solution.h, solution.p, solution.z)
    columns = [traces[name].mean(axis=0) for name in ("h_pct", "z_pct", "w_pct", "p")]
    lines = ["t_h,h_pct,z_pct,w_pct,p"] + [
        f"{t:.6g},{h:.4f},{z:.4f},{w:.4f},{p:.6f}" for t, h, z, w, p in zip(t_h, *columns)
    ]
    outcomes = np.asarray(classify_outcome(rule, solution.state.z, solution.stats.h_max, solution.stats.h_min))
    counts = ", ".join(f"{OUTCOMES[i]} {n}" for i, n in enumerate(np.bincount(outcomes, minlength=len(OUTCOMES))) if n)
    kind = "Poisson" if args.poisson else "regular"
    on = "" if hardware is None else (
        f" on emulated BSS-2 ({hardware.precision} {hardware.rounding} rounding, PPU update every "
        f"{hardware.period:g} ms; {hardware.hardware_time(protocols[0].duration) / 1000:.3g} s of chip time per trial)")
    print(f"{protocol} ({kind}), {args.trials} trials, {args.hours:g} h after onset{on}: {counts}; "
          f"final w {columns[2][-1]:.1f} % of h0", file=sys.stderr)
    figure = None
    if plot is not None:
        from ._plotting import figure_bytes
        from ._stc_plotting import plot_stc

        figure = figure_bytes(plot_stc(t_h, traces, title=f"{protocol} ({kind}), {args.trials} trials"), plot.given)
    write_outputs(interrupts, "ca-plast stc", [(csv, ("\n".join(lines) + "\n").encode()), (plot, figure)])
    return 0
