"""`ca-plast fit`: fit a GB2012 preset's parameters to shipped data sets or the user's own (CSV).

    ca-plast fit (--dataset NAME | --data FILE.csv)... --init PRESET [--free NAME,NAME,...] [--steps N] [--seed S]
                 [--method density|closed-form] [--hardware none|bss2] --out DIR [--resume | --force]
                 [--modelling M] [--starts K] [--loss L] [--density-steps N] [--refine-steps N]
                 [--uncertainty none|laplace|profile] [--mcmc N] [--cv K|loo]

`--method density` (the default) screens and fits with GB2012's closed form, then finishes in
the model itself on the density solver's exact prediction; the reported mean z^2 and the
plotted curves are then the model's. `--method closed-form` stops after the closed form
(GB2012's approximation, as GB2012 fitted). Every fit is checked by an event-driven
simulation (fit.json `simulated_check`).

Writes DIR/fit.json, DIR/fit.csv, DIR/fit.png, with the uncertainty DIR/corner.png (and
DIR/profiles.png), and DIR/checkpoint.npz (every 100 steps, at the end and on Ctrl-C;
`--resume` continues from it; the density and hardware stages have their own,
`checkpoint_density.npz` and `checkpoint_hardware.npz`, the profiles
`checkpoint_profiles.json`). Every argument is checked before anything is written; a bad one
exits with status 2 and leaves DIR untouched. A folder that already holds a fit is continued
with `--resume` or replaced with `--force` (which first deletes those files, nothing else),
never overwritten silently. A lock
(DIR/.ca-plast-fit.lock, held while the fit runs) keeps a second fit out of the folder.
Ctrl-C ends the fit with status 130 and one line saying which checkpoints hold its progress.

With `--hardware bss2` the float fit is then refined through the BSS-2 emulation
(quantisation-aware fitting, `fitting.fit`; `--refine-steps` Adam steps, checkpoint
DIR/checkpoint_hardware.npz), and the float fit and the refined rule are both scored under
the emulation: fit.json's `quantisation_aware` record holds both scores.
"""

import argparse
import contextlib
import dataclasses
import os
import tempfile
import time
from pathlib import Path

from ca_plast._arguments import SEED_HELP, UsageError, memory, seed
from ca_plast._limits import simulation_bytes
from ca_plast._output import output_target
from ca_plast._signals import Interrupts

DEFAULT_FREE = "theta_p,gamma_p,gamma_d,C_pre,C_post,tau_ca,D,tau,sigma,b"
CHECKPOINT = "checkpoint.npz"
PROFILES = "checkpoint_profiles.json"
REPORT = ("fit.json", "fit.csv", "fit.png", "corner.png", "profiles.png")
UNCERTAINTY = ("none", "laplace", "profile")
LOCK = ".ca-plast-fit.lock"
MAX_STEPS = 1_000_000
MAX_CHECK_SYNAPSES = 1_000_000


DESCRIPTION = """\
Fit the parameters of a GB2012 rule, started from a parameter set, to a shipped STDP data
set or your own (a CSV file; several at once for a joint fit) by gradient descent: screened random starts and Adam in GB2012's closed form, then
(--method density, the default) L-BFGS in the model itself, on the density solver's exact
prediction, so that the reported mean z^2 and the plotted curves are the model's. An
event-driven simulation of the fitted rule checks the result. Writes fit.json, fit.csv,
fit.png and checkpoints into --out; Ctrl-C saves, --resume continues."""

EXAMPLES = """\
examples:
  ca-plast fit --dataset sjostrom2001 --init DP --out results/sjostrom
  ca-plast fit --dataset bipoo1998 --init hippocampal_slices --free theta_p,theta_d,sigma --out results/bipoo
  ca-plast fit --dataset sjostrom2001 --init DP --out results/sjostrom --resume     # after Ctrl-C
  ca-plast fit --data mylab.csv --init DP --out results/mylab     # rows like: pairs,10,60,1,1.21,0.05
  ca-plast fit --dataset wittenberg_wang2006_pairs --data mylab.csv --init hippocampal_slices --out results/joint
  ca-plast fit --dataset wittenberg_wang2006 --init hippocampal_slices --method closed-form --steps 300 --out results/ww"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ca_plast.rules._presets import GB2012_PRESETS

    from ._datasets import DATASETS
    from ._losses import LOSSES, METHODS

    parser.add_argument("--dataset", action="append", metavar="NAME",
                        help=f"shipped data set: {', '.join(DATASETS)} (repeat, or add --data, for a joint fit)")
    parser.add_argument("--data", action="append", metavar="FILE.csv",
                        help="your own data: a CSV file, one row per measurement with its protocol "
                             "(columns protocol,dt_ms,n_pairs,freq_hz,ratio,sem for spike pairs; the documentation's "
                             "fitting page lists every protocol) (repeat for a joint fit)")
    parser.add_argument("--init", required=True, metavar="PRESET",
                        help=f"GB2012 parameter set to start from: {', '.join(GB2012_PRESETS)}")
    parser.add_argument("--free", default=DEFAULT_FREE, metavar="NAME,...",
                        help="comma-separated parameters to fit; the others stay at the preset's values")
    parser.add_argument("--separate", default="", metavar="NAME,...",
                        help="comma-separated free parameters that take one value per data set of a joint fit (e.g. "
                             "C_pre,C_post: calcium amplitudes per preparation), reported as NAME[data set]; the others "
                             "are shared")
    parser.add_argument("--steps", type=int, default=None,
                        help="most Adam steps of the closed-form stage in all (default 500 with --method density, "
                             "1000 with closed-form)")
    parser.add_argument("--seed", type=seed, default=0, help=SEED_HELP + "; draws the screened random starts")
    parser.add_argument("--method", default="density", metavar="|".join(METHODS),
                        help="density (finish in the model itself) or closed-form (GB2012's approximation only)")
    parser.add_argument("--density-steps", type=int, default=20,
                        help="with --method density: most L-BFGS iterations of the density stage")
    parser.add_argument("--hardware", default="none", metavar="none|bss2",
                        help="bss2: then refine the fit through the BrainScaleS-2 emulation (quantisation-aware)")
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="output folder for fit.json, fit.csv, fit.png and the checkpoints")
    parser.add_argument("--resume", action="store_true", help="continue the fit in DIR from its checkpoints")
    parser.add_argument("--force", action="store_true",
                        help="replace the fit already in DIR (deletes its fit.*, corner.png, profiles.png and checkpoint* files first)")
    parser.add_argument("--modelling", metavar="NAME",
                        help="how the data set's protocols are modelled, where it has several (e.g. sjostrom2001: "
                             "regular, trains) (default: the data set's first)")
    parser.add_argument("--starts", type=int, default=32, help="starts optimised in parallel")
    parser.add_argument("--loss", default="chi2", metavar="|".join(LOSSES),
                        help="chi2 (mean z^2) or soft_l1 (robust to outliers)")
    parser.add_argument("--uncertainty", default="profile", metavar="|".join(UNCERTAINTY),
                        help="profile: 95 %% intervals and identifiability from the profile likelihood of every free "
                             "parameter (the others refitted at each point, in the model; minutes), with the Laplace "
                             "approximation beside them; laplace: the Laplace approximation only (the Hessian at the fit; "
                             "seconds, but local: its intervals under-cover where the loss has kinks); none: skip")
    parser.add_argument("--mcmc", type=int, default=0, metavar="N",
                        help="also N posterior draws per chain (two chains) by NUTS in the model (needs blackjax: pip install "
                             "'ca_plast[mcmc]'); slow with the density solver (about a gradient per integration step)")
    parser.add_argument("--check-synapses", type=int, default=None, metavar="N",
                        help="synapses per initial state of the simulated check of the fit (default: 10000, fewer for "
                             "large data sets, at least 2000); fewer make a quicker, coarser check")
    parser.add_argument("--cv", default=None, metavar="K|loo",
                        help="also cross-validate: K folds (or loo, leave one point out), each refitted in the model "
                             "from the fit and scored on its held-out points (fit.json cross_validation; compare fits "
                             "with ca-plast compare)")
    parser.add_argument("--refine-steps", type=int, default=None,
                        help="with --hardware bss2: steps of the refinement through the emulation (default 60)")


def _output_folder(text: str) -> Path:
    """The output folder, created if needed and checked writable (UsageError otherwise)."""
    out = Path(text)
    if out.exists() and not out.is_dir():
        raise UsageError(f"ca-plast fit: --out {text!r} exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as error:
        raise UsageError(f"ca-plast fit: --out {text!r}: cannot write there ({error.strerror or error})") from None
    return out


@contextlib.contextmanager
def _lock(out: Path):
    """Hold DIR/.ca-plast-fit.lock inside the block (an advisory lock, released by the system
    if the process dies), or UsageError if another fit holds it."""
    try:
        import fcntl
    except ImportError:  # no advisory locks on this platform
        yield
        return
    with open(out / LOCK, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise UsageError(f"ca-plast fit: another fit ({holder}) is running in --out {str(out)!r}; "
                             f"wait for it to end or choose another folder") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}\n")
        handle.flush()
        yield


def _fit_files(out: Path) -> list[Path]:
    """The files a fit writes into `out`: checkpoints, then the report."""
    from ._fit import checkpoint_files

    return [*checkpoint_files(out / CHECKPOINT), out / PROFILES, *(out / name for name in REPORT)]


def _interrupted(out: Path, since: float, resumed: bool) -> str:
    """A true line about what an interrupted fit left in `out`."""
    saved = [str(path) for path in _fit_files(out)[:4] if path.exists() and path.stat().st_mtime >= since]
    if saved:
        return f"ca-plast fit: interrupted; progress saved in {', '.join(saved)}; continue with --resume"
    if resumed:
        return "ca-plast fit: interrupted before new progress was saved; the checkpoints are as they were; " \
               "continue with --resume"
    return f"ca-plast fit: interrupted before the first checkpoint was written (screening starts); nothing to resume in {out}"


def run(args, interrupts: Interrupts) -> int:
    import jax

    jax.config.update("jax_enable_x64", True)

    import ca_plast

    from ._datasets import DATASETS, Dataset, joint, load_dataset, modellings
    from ._fit import Refinement, separate_per_panel
    from ._losses import LOSSES, METHODS
    from ._transforms import FreeParameters

    if args.hardware not in ("none", "bss2"):
        raise UsageError(f"unknown --hardware {args.hardware!r}; valid: none, bss2")
    if args.method not in METHODS:
        raise UsageError(f"unknown --method {args.method!r}; valid: {', '.join(METHODS)}")
    if args.uncertainty not in UNCERTAINTY:
        raise UsageError(f"unknown --uncertainty {args.uncertainty!r}; valid: {', '.join(UNCERTAINTY)}")
    if args.check_synapses is not None and not 1 <= args.check_synapses <= MAX_CHECK_SYNAPSES:
        raise UsageError(f"ca-plast fit: --check-synapses must be a whole number from 1 to {MAX_CHECK_SYNAPSES}, "
                         f"got {args.check_synapses}")
    if args.mcmc:
        if not 1 <= args.mcmc <= MAX_STEPS or args.uncertainty == "none":
            raise UsageError(f"ca-plast fit: --mcmc needs a number of draws from 1 to {MAX_STEPS} and --uncertainty "
                             f"laplace or profile, got {args.mcmc} with --uncertainty {args.uncertainty}")
        try:
            import blackjax  # noqa: F401
        except ImportError:
            raise UsageError("ca-plast fit: --mcmc needs blackjax: pip install 'ca_plast[mcmc]'") from None
    names, files = args.dataset or [], args.data or []
    if not names and not files:
        raise UsageError("ca-plast fit: give --dataset NAME or --data FILE.csv (either may repeat, for a joint fit)")
    for name in names:
        if name not in DATASETS:
            raise UsageError(f"unknown data set {name!r}; valid data sets: {', '.join(DATASETS)}")
    repeated = [x for i, x in enumerate(names + files) if x in (names + files)[:i]]
    if repeated:
        raise UsageError(f"ca-plast fit: {repeated[0]!r} is given twice; give each data set once")
    if args.modelling is not None and (len(names) != 1 or files):
        raise UsageError("ca-plast fit: --modelling applies to a single --dataset; joint fits use each data set's "
                         "default modelling")
    if args.init not in ca_plast.GB2012_PRESETS:
        raise UsageError(f"unknown preset {args.init!r}; valid presets: {', '.join(ca_plast.GB2012_PRESETS)}")
    if args.modelling is not None and args.modelling not in modellings(names[0]):
        raise UsageError(f"unknown --modelling {args.modelling!r} of {names[0]}; "
                         f"valid: {', '.join(modellings(names[0]))}")
    if args.loss not in LOSSES:
        raise UsageError(f"unknown --loss {args.loss!r}; valid: {', '.join(LOSSES)}")
    for option, value, most in (("--steps", args.steps, MAX_STEPS), ("--density-steps", args.density_steps, MAX_STEPS),
                                ("--starts", args.starts, None)):
        if value is not None and (value < 1 or (most is not None and value > most)):
            raise UsageError(f"ca-plast fit: {option} must be >= 1" + (f" and <= {most}" if most else "") + f", got {value}")
    if args.resume and args.force:
        raise UsageError("ca-plast fit: --resume continues the fit in --out, --force replaces it; give one of them")
    if args.refine_steps is not None and (args.hardware == "none" or not 1 <= args.refine_steps <= MAX_STEPS):
        raise UsageError(f"--refine-steps needs --hardware bss2 and a value from 1 to {MAX_STEPS}, got {args.refine_steps} "
                         f"with --hardware {args.hardware}")
    refinement = Refinement() if args.refine_steps is None else Refinement(steps=args.refine_steps)
    free = [name.strip() for name in args.free.split(",")]
    separate = tuple(name.strip() for name in args.separate.split(",") if name.strip())
    if separate and args.hardware != "none":
        raise UsageError(f"ca-plast fit: --separate needs --hardware none (the emulation runs one rule), got {args.hardware}")
    init = ca_plast.gb2012_preset(args.init)
    try:
        free_parameters = FreeParameters(init, free)
        parts = [load_dataset(name, args.modelling) for name in names] + [Dataset.from_csv(path) for path in files]
        dataset = parts[0] if len(parts) == 1 else joint(parts)
        if separate:
            separate_per_panel(init, free_parameters, separate, dataset, None)
    except ValueError as error:
        raise UsageError(f"ca-plast fit: {str(error).removeprefix('fit: ')}") from None
    folds = _folds(args.cv, dataset.n_points)
    n_spikes = max(p.n_spikes for p in dataset.protocols)
    memory(simulation_bytes("closed-form", args.starts * dataset.n_points, n_spikes, 0),
           f"--starts {args.starts} on {dataset.n_points} protocols of up to {n_spikes} spikes", "lower --starts")
    if not args.out:
        raise UsageError("ca-plast fit: --out is empty; give a folder")
    checkpoint = Path(args.out) / CHECKPOINT
    if args.resume and not checkpoint.is_file():
        raise UsageError(f"ca-plast fit: --resume: no checkpoint {checkpoint} to continue from")
    out = _output_folder(args.out)
    started = time.time()
    with _lock(out):
        result, record = _fit_and_report(args, interrupts, out, checkpoint, dataset, free, separate, refinement, folds)

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
    for name, scores in (record["per_dataset"] or {}).items():
        published = "" if reference is None or "per_dataset" not in reference else \
            f"; published set {reference['preset']}: {reference['per_dataset'][name]:.4g}"
        print(f"  {name} ({scores['n_points']} points): mean z^2 {scores['chi2_mean_initial']:.4g} -> "
              f"{scores['chi2_mean']:.4g}{published}")
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
    for line in _uncertainty_lines(record):
        print(line)
    criteria, cv = record["model_comparison"], record["cross_validation"]
    print(f"model comparison: AIC {criteria['aic']:.4g}, BIC {criteria['bic']:.4g} ({criteria['n_free']} free, "
          f"{criteria['n_points']} points)" + ("" if cv is None else f"; {cv['folds']}-fold cross-validated mean z^2 "
                                               f"{cv['chi2_mean_held_out']:.4g} on held-out points") +
          "; compare fits with ca-plast compare")
    written = [name for name in REPORT[1:] if (out / name).exists() and (out / name).stat().st_mtime >= started]
    print(f"wrote {os.path.join(out, 'fit.json')}, {', '.join(written)}")
    return 0


def _fit_and_report(args, interrupts: Interrupts, out: Path, checkpoint: Path, dataset, free, separate, refinement, folds):
    """The fit into the locked folder `out` (existing results checked first) and its report."""
    import ca_plast

    from ._comparison import cross_validate
    from ._fit import fit
    from ._report import write_report
    from ._uncertainty import with_uncertainty

    existing = [path for path in _fit_files(out) if path.exists()]
    if existing and not (args.resume or args.force):
        raise UsageError(f"ca-plast fit: --out {args.out!r} already holds a fit ({', '.join(p.name for p in existing)}); "
                         f"continue it with --resume or replace it with --force")
    for path in _fit_files(out):
        try:
            output_target(str(path), "--out", stdout=False)
        except ValueError as error:
            raise UsageError(f"ca-plast fit: {error}") from None
    if args.force:
        for path in existing:
            path.unlink()
    started = time.time()
    try:
        with interrupts.raising():
            result = fit(dataset, args.init, free, steps=args.steps, n_starts=args.starts, seed=args.seed,
                         loss=args.loss, checkpoint=checkpoint, resume=args.resume, progress=True,
                         hardware=ca_plast.BSS2() if args.hardware == "bss2" else None, refinement=refinement,
                         method=args.method, density_steps=args.density_steps, separate=separate)
            interrupts.check()
            if args.uncertainty != "none" and result.hardware is None:
                result = with_uncertainty(result, profile=args.uncertainty == "profile", samples=args.mcmc,
                                          seed=args.seed, progress=True, checkpoint=out / PROFILES)
                interrupts.check()
            if folds is not None and result.hardware is None:
                result = dataclasses.replace(result, cross_validation=cross_validate(result, folds, progress=True))
                interrupts.check()
    except KeyboardInterrupt:
        interrupts.stop(_interrupted(out, started, args.resume))
    except ValueError as error:
        raise UsageError(f"ca-plast fit: {str(error).removeprefix('fit: ')}") from None
    try:
        with interrupts.raising():
            return result, write_report(result, out, hardware=args.hardware, check_synapses=args.check_synapses)
    except KeyboardInterrupt:
        interrupts.stop(f"ca-plast fit: interrupted while writing the report; the finished fit is in {checkpoint}: "
                        f"run the same command with --resume to write fit.json, fit.csv and fit.png")


def _density_start(stage: dict) -> str:
    """Where the density stage started: the closed-form fit moved by k, or the initial rule."""
    if stage["scale_chosen"] is None:
        return (f"started from the initial rule instead (mean z^2 {stage['initial_rule_density_loss']:.4g} in the "
                f"model, lower than the closed-form fit at every k)")
    return f"moved along the closed form's invariance by k = {stage['scale_chosen']:g}"


def _uncertainty_lines(record: dict) -> list[str]:
    """The summary of fit.json's uncertainty: one line per free parameter, then the notes."""
    found, details = record["uncertainty"], record["uncertainty_details"]
    if found is None:
        return [f"uncertainty: {details['notes'][0]}"]
    source = "profile likelihood (the model refitted)" if any(e["source"] == "profile" for e in found.values()) \
        else "Laplace approximation"
    lines = [f"uncertainty, 95 % intervals from the {source} (fit.json 'uncertainty'):"]
    for name, entry in found.items():
        lo, hi = entry["ci95"]
        bounds = entry["bounds"]
        ends = [f"{lo:.4g}" + (" (bound)" if lo <= bounds[0] * (1 + 1e-9) + 1e-12 else ""),
                f"{hi:.4g}" + (" (bound)" if hi >= bounds[1] * (1 - 1e-9) else "")]
        se = "" if entry["se"] is None else f", s.e. {entry['se']:.3g}"
        verdict = "identified" if entry["identified"] else "NOT identified (the interval reaches a bound)"
        if entry["source"] == "laplace" and not entry["laplace_confirmed"]:
            verdict += "; the model does not confirm this interval"
        if "posterior_ci95" in entry:
            verdict += f"; posterior 95 % [{entry['posterior_ci95'][0]:.4g}, {entry['posterior_ci95'][1]:.4g}]"
        lines.append(f"  {name} = {entry['value']:.4g}, 95 % [{ends[0]}, {ends[1]}]{se}: {verdict}")
    lines += [f"  note: {note}" for note in details["notes"]]
    if source == "Laplace approximation":
        lines.append("  Laplace intervals are local (a quadratic model of the loss at the fit); GB2012's thresholds make the "
                     "loss piecewise smooth: --uncertainty profile refits the model for each interval")
    return lines


def _folds(text: str | None, n_points: int) -> int | None:
    """The number of folds of --cv (None: no cross-validation; loo: one per point)."""
    if text is None:
        return None
    folds = n_points if text == "loo" else int(text) if text.isdigit() else None
    if folds is None or not 2 <= folds <= n_points:
        raise UsageError(f"ca-plast fit: --cv must be loo or a whole number of folds from 2 to {n_points} (the data "
                         f"points), got {text!r}")
    return folds
