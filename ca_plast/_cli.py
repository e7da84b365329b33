"""The `ca-plast` command line (contract: DESIGN.md section 8).

User mistakes print one line to stderr and exit 2; failures exit 1; no tracebacks for either.
Subcommands `fit` and `stc` live with their subsystems (`fitting._cli`, `ca_plast._stc_cli`),
each providing `add_arguments(parser)` and `run(args) -> int`.
"""

import argparse
import importlib
import sys

import numpy as np


class UsageError(Exception):
    """A bad argument: reported on stderr with exit status 2."""


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
    n = int(np.floor((stop - start) / step + 1e-9)) + 1
    if n > 10_000:
        raise UsageError(f"--dt-range {text!r} gives {n} points; at most 10000")
    return start + step * np.arange(n)


def _stdp_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", required=True, help="GB2012 parameter set (e.g. DP, cortical_slices)")
    parser.add_argument("--dt-range", default="-100:100:10", help="START:STOP:STEP of t_post - t_pre in ms")
    parser.add_argument("--pairs", type=int, default=60, help="number of pairs (default 60)")
    parser.add_argument("--freq", type=float, default=1.0, help="pairing frequency in Hz (default 1)")
    parser.add_argument("--method", help="closed-form (GB2012's approximation), scan, events (simulations) or density "
                                         "(the model's exact expectation) (default: closed-form; scan with --hardware bss2)")
    parser.add_argument("--trials", type=int, default=1000, help="synapses per state (DOWN and UP) for simulations")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--step-ms", type=float, default=0.1, help="solver step in ms (scan)")
    parser.add_argument("--hardware", default="none", help="none or bss2")
    parser.add_argument("--csv", help="write dt_ms,ratio,sem to this file")
    parser.add_argument("--plot", help="write the STDP curve to this image file")


def _run_stdp(args) -> int:
    import jax

    from . import _presets, _stdp
    from ._bss2 import BSS2
    from ._plotting import plot_stdp
    from ._protocols import pairs

    if args.preset not in _presets.GB2012_PRESETS:
        raise UsageError(f"unknown preset {args.preset!r}; valid presets: {', '.join(_presets.GB2012_PRESETS)}")
    method = args.method or ("scan" if args.hardware == "bss2" else "closed-form")
    if method not in _stdp.METHODS:
        raise UsageError(f"unknown --method {method!r}; valid: {', '.join(_stdp.METHODS)}")
    if args.hardware not in ("none", "bss2"):
        raise UsageError(f"unknown --hardware {args.hardware!r}; valid: none, bss2")
    if args.hardware == "bss2" and method != "scan":
        raise UsageError(f"--hardware bss2 emulates a time-stepped simulation: use --method scan, not {method!r}")
    hardware = BSS2() if args.hardware == "bss2" else None
    if args.pairs < 1 or args.trials < 1:
        raise UsageError(f"--pairs and --trials must be >= 1, got {args.pairs} and {args.trials}")
    if not (np.isfinite(args.freq) and args.freq > 0) or not (np.isfinite(args.step_ms) and args.step_ms > 0):
        raise UsageError(f"--freq and --step-ms must be > 0, got {args.freq} and {args.step_ms}")
    dts = parse_range(args.dt_range)
    rule = _presets.gb2012_preset(args.preset)
    try:
        protocols = [pairs(float(dt), args.pairs, args.freq) for dt in dts]
    except ValueError as error:
        raise UsageError(str(error)) from None
    ratio, sem = _stdp.stdp_ratios(
        rule, protocols, method=method, n_synapses=args.trials, key=jax.random.key(args.seed), step=args.step_ms,
        hardware=hardware,
    )
    if hardware is not None:
        chip_s = hardware.hardware_time(sum(p.duration for p in protocols)) / 1000
        print(f"bss2: {hardware.state.total_bits}-bit {hardware.rounding} rounding, update every {hardware.period:g} ms; "
              f"{chip_s:.3g} s of chip time for these protocols ({hardware.speedup:g}x biological)", file=sys.stderr)
    lines = ["dt_ms,ratio,sem"] + [f"{dt:g},{r:.6f},{e:.6f}" for dt, r, e in zip(dts, ratio, sem)]
    if args.csv:
        _write_atomic(args.csv, "\n".join(lines) + "\n")
    else:
        print("\n".join(lines))
    if args.plot:
        title = f"{args.preset}: {args.pairs} pairs at {args.freq:g} Hz ({method}{', bss2' if hardware else ''})"
        plot_stdp(dts, ratio, sem, title=title).savefig(args.plot, dpi=120)
    return 0


def _write_atomic(path: str, text: str) -> None:
    import os
    import tempfile

    folder = os.path.dirname(os.path.abspath(path))
    with tempfile.NamedTemporaryFile("w", dir=folder, delete=False, suffix=".tmp") as handle:
        handle.write(text)
    os.replace(handle.name, path)


_DELEGATED = {"fit": "fitting._cli", "stc": "ca_plast._stc_cli"}


def _join_ranges(argv: list[str]) -> list[str]:
    """Let `--dt-range -100:100:10` through: argparse would read a value starting with '-' as an option."""
    out = []
    for arg in argv:
        if out and out[-1] == "--dt-range" and arg.startswith("-"):
            out[-1] = f"--dt-range={arg}"
        else:
            out.append(arg)
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="ca-plast", description="Calcium-based synaptic plasticity in JAX")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _stdp_arguments(commands.add_parser("stdp", help="STDP curve of a GB2012 preset"))
    for name, module in _DELEGATED.items():
        sub = commands.add_parser(name, help=f"see `ca-plast {name} --help`")
        try:
            importlib.import_module(module).add_arguments(sub)
        except ModuleNotFoundError as error:
            if error.name != module:
                raise
            sub.set_defaults(unavailable=True)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        parser = build_parser()
        args, extra = parser.parse_known_args(_join_ranges(sys.argv[1:] if argv is None else argv))
        if getattr(args, "unavailable", False):
            raise UsageError(f"ca-plast {args.command}: not available yet in this version")
        if extra:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        if args.command == "stdp":
            return _run_stdp(args)
        return importlib.import_module(_DELEGATED[args.command]).run(args)
    except UsageError as error:
        print(error, file=sys.stderr)
        return 2
    except (ValueError, OSError) as error:
        print(f"ca-plast: error: {error}", file=sys.stderr)
        return 2 if isinstance(error, ValueError) else 1


if __name__ == "__main__":
    sys.exit(main())
