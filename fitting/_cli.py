"""`ca-plast fit`: fit a GB2012 preset's parameters to a shipped data set (DESIGN.md section 8).

    ca-plast fit --dataset NAME --init PRESET [--free NAME,NAME,...] [--steps N] [--seed S]
                 [--method density|closed-form] [--hardware none|bss2] --out DIR [--resume]
                 [--modelling M] [--starts K] [--loss L] [--density-steps N] [--refine-steps N]

`--method density` (the default) screens and fits with GB2012's closed form, then finishes in
the model itself on the density solver's exact prediction; the reported mean z^2 and the
plotted curves are then the model's. `--method closed-form` stops after the closed form
(GB2012's approximation, as GB2012 fitted). Every fit is checked by an event-driven
simulation (fit.json `simulated_check`).

Writes DIR/fit.json, DIR/fit.csv, DIR/fit.png, and DIR/checkpoint.npz (every 100 steps,
at the end and on Ctrl-C; `--resume` continues from it). Every argument is checked before
anything is written; a bad one exits with status 2 and leaves DIR untouched.

With `--hardware bss2` the float fit is then refined through the BSS-2 emulation
(quantisation-aware fitting, `fitting.fit`; `--refine-steps` Adam steps, checkpoint
DIR/checkpoint_hardware.npz), and the float fit and the refined rule are both scored under
the emulation: fit.json's `quantisation_aware` record holds both scores.
"""

import argparse
import os
import sys
import tempfile
from pathlib import Path

DEFAULT_FREE = "theta_p,gamma_p,gamma_d,C_pre,C_post,tau_ca,D,tau,sigma,b"
CHECKPOINT = "checkpoint.npz"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", required=True, help="data set name (e.g. sjostrom2001)")
    parser.add_argument("--init", required=True, help="GB2012 preset to start from (e.g. DP, cortical_slices)")
    parser.add_argument("--free", default=DEFAULT_FREE,
                        help=f"comma-separated parameters to fit, the rest stay at the preset (default {DEFAULT_FREE})")
    parser.add_argument("--steps", type=int, default=None,
                        help="most Adam steps of the closed-form stage in all (default 500 with --method density, "
                             "1000 with closed-form)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the screened random starts (default 0)")
    parser.add_argument("--method", default="density",
                        help="density (default: finish in the model itself) or closed-form (GB2012's approximation only)")
    parser.add_argument("--density-steps", type=int, default=20,
                        help="with --method density: most L-BFGS iterations of the density stage (default 20)")
    parser.add_argument("--hardware", default="none", help="none or bss2")
    parser.add_argument("--out", required=True, help="output folder for fit.json, fit.csv, fit.png and the checkpoint")
    parser.add_argument("--resume", action="store_true", help="continue from DIR/checkpoint.npz")
    parser.add_argument("--modelling", help="how the data set's protocols are modelled (default: the data set's first)")
    parser.add_argument("--starts", type=int, default=32, help="starts optimised in parallel (default 32)")
    parser.add_argument("--loss", default="chi2", help="chi2 (mean z^2, default) or soft_l1 (robust)")
    parser.add_argument("--refine-steps", type=int, default=None,
                        help="with --hardware bss2: steps of the refinement through the emulation (default 60)")


def _output_folder(text: str, usage_error) -> Path:
    """The output folder, created if needed and checked writable (UsageError otherwise)."""
    out = Path(text)
    if out.exists() and not out.is_dir():
        raise usage_error(f"--out {text!r} exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as error:
        raise usage_error(f"--out {text!r}: cannot write there ({error.strerror or error})") from None
    return out


def run(args) -> int:
    import jax

    jax.config.update("jax_enable_x64", True)

    import ca_plast
    from ca_plast._cli import UsageError

    from ._datasets import DATASETS, load_dataset, modellings
    from ._fit import Refinement, fit
    from ._losses import LOSSES, METHODS
    from ._report import write_report
    from ._transforms import FreeParameters

    if args.hardware not in ("none", "bss2"):
        raise UsageError(f"unknown --hardware {args.hardware!r}; valid: none, bss2")
    if args.method not in METHODS:
        raise UsageError(f"unknown --method {args.method!r}; valid: {', '.join(METHODS)}")
    if args.density_steps < 1:
        raise UsageError(f"--density-steps must be >= 1, got {args.density_steps}")
    if args.dataset not in DATASETS:
        raise UsageError(f"unknown data set {args.dataset!r}; valid data sets: {', '.join(DATASETS)}")
    if args.init not in ca_plast.GB2012_PRESETS:
        raise UsageError(f"unknown preset {args.init!r}; valid presets: {', '.join(ca_plast.GB2012_PRESETS)}")
    if args.modelling is not None and args.modelling not in modellings(args.dataset):
        raise UsageError(f"unknown --modelling {args.modelling!r} of {args.dataset}; "
                         f"valid: {', '.join(modellings(args.dataset))}")
    if args.loss not in LOSSES:
        raise UsageError(f"unknown --loss {args.loss!r}; valid: {', '.join(LOSSES)}")
    if (args.steps is not None and args.steps < 1) or args.starts < 1 or args.seed < 0:
        raise UsageError(f"--steps and --starts must be >= 1 and --seed >= 0, got {args.steps}, {args.starts}, {args.seed}")
    if args.refine_steps is not None and (args.hardware == "none" or args.refine_steps < 1):
        raise UsageError(f"--refine-steps needs --hardware bss2 and a value >= 1, got {args.refine_steps} "
                         f"with --hardware {args.hardware}")
    refinement = Refinement() if args.refine_steps is None else Refinement(steps=args.refine_steps)
    free = [name.strip() for name in args.free.split(",")]
    init = ca_plast.gb2012_preset(args.init)
    try:
        FreeParameters(init, free)
        dataset = load_dataset(args.dataset, args.modelling)
    except ValueError as error:
        raise UsageError(f"ca-plast fit: {error}") from None
    checkpoint = Path(args.out) / CHECKPOINT
    if args.resume and not checkpoint.is_file():
        raise UsageError(f"--resume: no checkpoint {checkpoint} to continue from")
    out = _output_folder(args.out, UsageError)

    try:
        result = fit(dataset, args.init, free, steps=args.steps, n_starts=args.starts, seed=args.seed, loss=args.loss,
                     checkpoint=checkpoint, resume=args.resume, progress=True,
                     hardware=ca_plast.BSS2() if args.hardware == "bss2" else None, refinement=refinement,
                     method=args.method, density_steps=args.density_steps)
    except KeyboardInterrupt:
        print(f"ca-plast fit: interrupted; the checkpoint {checkpoint} holds the progress, continue with --resume",
              file=sys.stderr)
        return 130
    except ValueError as error:
        raise UsageError(f"ca-plast fit: {error}") from None
    record = write_report(result, out, hardware=args.hardware)

    reference = record["reference"]
    measured = f"{result.method} prediction" if result.hardware is None else f"under {args.hardware} emulation"
    print(f"{dataset.name} ({dataset.modelling}, {dataset.n_points} points), start {args.init}: "
          f"mean z^2 ({measured}) {result.chi2_initial:.4g} -> {result.chi2_mean:.4g} after {result.steps} steps "
          f"({'converged' if result.stopped == 'converged' else 'step limit reached'}), {result.wall_s:.1f} s")
    if result.density is not None:
        stage = result.density
        print(f"  closed-form fit: mean z^2 {stage['closed_form_fit']['chi2_closed_form']:.4g} in the closed form, "
              f"{stage['closed_form_fit']['chi2_density']:.4g} in the model (density solver); "
              f"{_density_start(stage)}, then {stage['steps']} L-BFGS iterations in the model")
    if reference is not None:
        scores = f"mean z^2 {reference['chi2_mean']:.4g} ({reference['method']})"
        if "chi2_mean_closed_form" in reference:
            scores += f", {reference['chi2_mean_closed_form']:.4g} (closed form)"
        print(f"published set {reference['preset']} on the same points: {scores}")
    check = record["simulated_check"]
    agreement = check["agreement"]
    print(f"simulated check of the fitted rule (event solver, {check['n_synapses_per_state']} synapses per state, "
          f"unseen key): mean z^2 {check['chi2_mean']:.4g}; against the {agreement['against']} prediction: "
          f"max |z| {agreement['max_abs_z']:.2f} s.e. ({'agrees' if agreement['within_3_se'] else 'DISAGREES'} within 3 s.e.)")
    if result.hardware is None and result.method == "closed-form" and check["chi2_mean"] > result.chi2_mean + 0.2:
        print("  the closed form this fit minimises neglects the bistable drift during a protocol, which matters when "
              "a protocol lasts longer than tau; fit in the model itself with --method density")
    if result.hardware is not None:
        scores = result.hardware
        print(f"under {args.hardware} emulation (validation draws): float fit {scores['float_fit_chi2']:.4g}, "
              f"refined through the emulation {scores['refined_chi2']:.4g}; kept the {scores['kept']}")
    print("fitted: " + ", ".join(f"{k} = {v:.6g}" for k, v in result.params.items()))
    print(f"wrote {os.path.join(out, 'fit.json')}, fit.csv, fit.png")
    return 0


def _density_start(stage: dict) -> str:
    """Where the density stage started: the closed-form fit moved by k, or the initial rule."""
    if stage["scale_chosen"] is None:
        return (f"started from the initial rule instead (mean z^2 {stage['initial_rule_density_loss']:.4g} in the "
                f"model, lower than the closed-form fit at every k)")
    return f"moved along the closed form's invariance by k = {stage['scale_chosen']:g}"
