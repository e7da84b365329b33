"""The `ca-plast` command line.

User mistakes print one line to stderr and exit 2; failures exit 1; Ctrl-C exits 130 with one
line saying what was written (`_signals`); no tracebacks for any of them. Every argument,
output path and size is checked before any computation. Subcommands `fit` and `stc` live with
their subsystems (`ca_plast.fitting._cli`, `ca_plast._stc_cli`), each providing
`DESCRIPTION`, `EXAMPLES`, `add_arguments(parser)` and `run(args, interrupts) -> int`; only
the command being run is imported. Compiled programs are kept between runs (`_cache`, `_programs`).
"""

import argparse
import importlib
import sys

import numpy as np

from ._arguments import (
    SEED_HELP,
    HelpFormatter,
    UsageError,
    cache_arguments,
    memory,
    output,
    seed,
    use_cache,
    write_outputs,
)
from ._limits import MAX_TICKS, simulation_bytes
from ._programs import storing_programs
from ._signals import Interrupted, Interrupts
from ._validation import set_run_time_checks


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(f"{self.prog}: {message}")


def parse_range(text: str) -> np.ndarray:
    """Parse `START:STOP:STEP` (ms, STOP included when on the grid) into an array of values."""
    parts = text.split(":")
    try:
        start, stop, step = (float(p) for p in parts)
    except ValueError:
        raise UsageError(f"--dt-range must be START:STOP:STEP in ms (e.g. -100:100:10), got {text!r}") from None
    if not all(np.isfinite([start, stop, step])) or step <= 0 or stop < start:
        raise UsageError(f"--dt-range needs STEP > 0 and STOP >= START, got {text!r}")
    points = np.floor((stop - start) / step + 1e-9) + 1
    if not points <= 10_000:
        raise UsageError(f"--dt-range {text!r} gives {points:.3g} points; at most 10000")
    return start + step * np.arange(int(points))


STDP_DESCRIPTION = """\
STDP curve of a GB2012 parameter set: the change ratio (synaptic strength after / before,
GB2012's readout) of spike pairs at each dt = t_post - t_pre, with its standard error for
simulations. Writes dt_ms,ratio,sem as CSV (standard output unless --csv)."""

STDP_EXAMPLES = """\
examples:
  ca-plast stdp --preset DP                                   # closed form, dt -100..100 ms
  ca-plast stdp --preset DP --method density --plot dp.png    # the model's exact expectation
  ca-plast stdp --preset cortical_slices --method events --trials 2000 --pairs 60 --freq 5
  ca-plast stdp --preset DP --hardware bss2 --dt-range -50:50:5 --csv bss2.csv"""


def _stdp_arguments(parser: argparse.ArgumentParser) -> None:
    from ._stdp import METHODS
    from .rules._presets import GB2012_PRESETS

    parser.add_argument("--preset", required=True, metavar="NAME",
                        help=f"GB2012 parameter set: {', '.join(GB2012_PRESETS)}")
    parser.add_argument("--dt-range", default="-100:100:10", metavar="START:STOP:STEP",
                        help="values of t_post - t_pre in ms, STOP included")
    parser.add_argument("--pairs", type=int, default=60, help="number of pairs")
    parser.add_argument("--freq", type=float, default=1.0, help="pairing frequency in Hz")
    parser.add_argument("--method", metavar="|".join(METHODS),
                        help="closed-form (GB2012's approximation), scan (time-stepped simulation), events "
                             "(event-driven simulation) or density (the model's exact expectation over its noise) "
                             "(default: closed-form; scan with --hardware bss2)")
    parser.add_argument("--trials", type=int, default=1000, help="simulated synapses per initial state (DOWN and UP)")
    parser.add_argument("--seed", type=seed, default=0, help=SEED_HELP)
    parser.add_argument("--step-ms", type=float, default=0.1,
                        help="time step in ms of the scan method (the tick of spike times for the others)")
    parser.add_argument("--hardware", default="none", metavar="none|bss2",
                        help="bss2: emulate the BrainScaleS-2 plasticity processor (with --method scan)")
    parser.add_argument("--csv", metavar="PATH", help="write dt_ms,ratio,sem to this file (default: standard output)")
    parser.add_argument("--plot", metavar="PATH", help="write the STDP curve to this image file (.png, .pdf, .svg, ...)")


def _run_stdp(args, interrupts: Interrupts) -> int:
    from ._stdp import METHODS
    from .rules import _presets

    if args.preset not in _presets.GB2012_PRESETS:
        raise UsageError(f"unknown preset {args.preset!r}; valid presets: {', '.join(_presets.GB2012_PRESETS)}")
    method = args.method if args.method is not None else ("scan" if args.hardware == "bss2" else "closed-form")
    if method not in METHODS:
        raise UsageError(f"unknown --method {method!r}; valid: {', '.join(METHODS)}")
    if args.hardware not in ("none", "bss2"):
        raise UsageError(f"unknown --hardware {args.hardware!r}; valid: none, bss2")
    if args.hardware == "bss2" and method != "scan":
        raise UsageError(f"--hardware bss2 emulates a time-stepped simulation: use --method scan, not {method!r}")
    if args.pairs < 1 or args.trials < 1:
        raise UsageError(f"--pairs and --trials must be >= 1, got {args.pairs} and {args.trials}")
    if not (np.isfinite(args.freq) and args.freq > 0) or not (np.isfinite(args.step_ms) and args.step_ms > 0):
        raise UsageError(f"--freq and --step-ms must be > 0, got {args.freq} and {args.step_ms}")
    dts = parse_range(args.dt_range)
    period = 1000.0 / args.freq
    if np.max(np.abs(dts)) >= period:
        raise UsageError(f"--dt-range: every |dt| must be shorter than the pairing period {period:g} ms "
                         f"(--freq {args.freq:g} Hz), got {np.max(np.abs(dts)):g} ms")
    duration = args.pairs * period + np.max(np.abs(dts))
    if duration / args.step_ms >= MAX_TICKS:
        raise UsageError(f"{args.pairs} pairs at --freq {args.freq:g} Hz last {duration:.3g} ms, more than "
                         f"{MAX_TICKS} steps of --step-ms {args.step_ms:g} ms; lower --pairs or raise --freq or --step-ms")
    simulated = method in ("scan", "events")
    memory(simulation_bytes(method, dts.size, 2 * args.pairs, args.trials if simulated else 0),
           f"{dts.size} protocols of {args.pairs} pairs" + (f" with {args.trials} trials" if simulated else ""),
           "lower " + ("--trials, " if simulated else "") + "--pairs or the number of --dt-range points")
    csv = output("-" if args.csv is None else args.csv, "--csv")
    plot = output(args.plot, "--plot", plot=True)

    from ._programs import seed_key
    from ._protocols import pairs
    from ._stdp import stdp_ratios
    from .hardware._bss2 import BSS2

    hardware = BSS2() if args.hardware == "bss2" else None
    rule = _presets.gb2012_preset(args.preset)
    protocols = [pairs(float(dt), args.pairs, args.freq) for dt in dts]
    ratio, sem = stdp_ratios(
        rule, protocols, method=method, n_synapses=args.trials, key=seed_key(args.seed), step=args.step_ms,
        hardware=hardware, progress=True,
    )
    if hardware is not None:
        chip_s = hardware.hardware_time(sum(p.duration for p in protocols)) / 1000
        print(f"bss2: {hardware.precision} {hardware.rounding} rounding, update every {hardware.period:g} ms; "
              f"{chip_s:.3g} s of chip time for these protocols ({hardware.speedup:g}x biological)", file=sys.stderr)
    table = "\n".join(["dt_ms,ratio,sem"] + [f"{dt:g},{r:.6f},{e:.6f}" for dt, r, e in zip(dts, ratio, sem)]) + "\n"
    figure = None
    if plot is not None:
        from ._plotting import figure_bytes, plot_stdp

        title = f"{args.preset}: {args.pairs} pairs at {args.freq:g} Hz ({method}{', bss2' if hardware else ''})"
        figure = figure_bytes(plot_stdp(dts, ratio, sem, title=title), plot.given)
    write_outputs(interrupts, "ca-plast stdp", [(csv, table.encode()), (plot, figure)])
    return 0


# Sub-commands living with their subsystems: module and one-line summary. Only the command
# being run is imported (the fit's loads optax and the fitting package).
_DELEGATED = {
    "fit": ("ca_plast.fitting._cli", "fit a GB2012 rule's parameters to a data set"),
    "compare": ("ca_plast.fitting._compare_cli", "compare fits of the same data (AIC, BIC, cross-validation)"),
    "stc": ("ca_plast._stc_cli", "late-phase plasticity (synaptic tagging and capture) of one synapse"),
}


def _join_ranges(argv: list[str]) -> list[str]:
    """Let `--dt-range -100:100:10` through: argparse would read a value starting with '-' as an option."""
    out = []
    for arg in argv:
        if out and out[-1] == "--dt-range" and arg.startswith("-"):
            out[-1] = f"--dt-range={arg}"
        else:
            out.append(arg)
    return out


def build_parser(selected: str | None = None) -> argparse.ArgumentParser:
    """The `ca-plast` parser; with `selected`, only that sub-command's arguments are built
    (the others are listed, not imported)."""
    from . import __version__

    parser = _Parser(prog="ca-plast", formatter_class=HelpFormatter,
                     description="Calcium-based synaptic plasticity in JAX: STDP curves, fits to data, "
                                 "synaptic tagging and capture.",
                     epilog="`ca-plast COMMAND --help` describes each command, with examples.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser, metavar="COMMAND")
    stdp = commands.add_parser("stdp", help="STDP curve of a GB2012 parameter set", description=STDP_DESCRIPTION,
                               epilog=STDP_EXAMPLES, formatter_class=HelpFormatter)
    _stdp_arguments(stdp)
    cache_arguments(stdp)
    for name, (module, summary) in _DELEGATED.items():
        if selected not in (None, name):
            commands.add_parser(name, help=summary)
            continue
        try:
            imported = importlib.import_module(module)
        except ModuleNotFoundError as error:
            if error.name != module:
                raise
            commands.add_parser(name, help="not available in this installation").set_defaults(unavailable=True)
            continue
        sub = commands.add_parser(name, help=summary, description=imported.DESCRIPTION,
                                  epilog=imported.EXAMPLES, formatter_class=HelpFormatter)
        imported.add_arguments(sub)
        cache_arguments(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run `ca-plast` with `argv` (default: the process's arguments) and return the exit status.

    Without `argv` (the console script), Ctrl-C ends the process itself with status 130
    (`_signals`); with `argv`, it returns 130.
    """
    interrupts = Interrupts("ca-plast: interrupted; nothing written", exit_process=argv is None)
    command = None
    with interrupts.installed():
        try:
            arguments = _join_ranges(sys.argv[1:] if argv is None else argv)
            parser = build_parser(next((a for a in arguments if not a.startswith("-")), None))
            args, extra = parser.parse_known_args(arguments)
            if getattr(args, "unavailable", False):
                raise UsageError(f"ca-plast {args.command}: not available yet in this version")
            if extra:
                parser.error(f"unrecognized arguments: {' '.join(extra)}")
            command = args.command
            interrupts.message = f"ca-plast {command}: interrupted; nothing written"
            cache = use_cache(args)
            if argv is None:
                # The console script checks every value before anything is traced, so its programs
                # need no run-time checks, whose host callbacks would keep them out of the cache.
                set_run_time_checks(False)
            with storing_programs(cache):
                if args.command == "stdp":
                    return _run_stdp(args, interrupts)
                return importlib.import_module(_DELEGATED[args.command][0]).run(args, interrupts)
        except UsageError as error:
            message = str(error)
            print(message if message.startswith("ca-plast") else f"{_prefix(command)}: {message}", file=sys.stderr)
            return 2
        except Interrupted as interrupted:
            print(interrupted, file=sys.stderr)
            return 130
        except (ValueError, OSError) as error:
            print(f"{_prefix(command)}: error: {error}", file=sys.stderr)
            return 2 if isinstance(error, ValueError) else 1


def _prefix(command: str | None) -> str:
    return "ca-plast" if command is None else f"ca-plast {command}"


if __name__ == "__main__":
    sys.exit(main())
