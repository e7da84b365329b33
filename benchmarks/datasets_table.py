"""The published preset and the fitted rule of every shipped data set, each scored three ways.

For every data set of `fitting.DATASETS` (default modelling), in float64:

1. fit: `fitting.fit(dataset, init, DEFAULT_FREE, method="density", seed=0)` with the
   command line's defaults (`ca-plast fit`: ten free parameters, 500 Adam steps, 20
   density iterations), starting from the data set's published preset (`dataset.reference`)
   or from "DP" where it has none; the fit's wall time is recorded;
2. score two rules, the published preset (or "DP", labelled as the starting preset) and
   the fitted rule, by mean z^2 (`fitting.chi2`) of three predictions: GB2012's closed form,
   the density solver (`ca_plast.density_ratios`, the model's expectation) and the
   event-driven simulation (`ca_plast.stdp_ratios(method="events")`, noise on,
   `fitting._report.check_synapses(dataset)` synapses per initial state, key
   `fold_in(key(seed), 1)`, as the fit report's simulated check); the largest
   |simulated - density| / s.e. over the points says whether simulation and density agree.

Progress lines go out as each data set finishes, then one Markdown table of all of them.
With `--json PATH` the results are also a resumable cache: entries already in PATH (same
settings) are loaded and skipped, and PATH is rewritten atomically after every data set,
so an interrupted run loses nothing and the next one continues where it stopped.

Usage: python benchmarks/datasets_table.py [--datasets A,B] [--steps N] [--density-steps N]
           [--synapses N] [--seed S] [--quick] [--json PATH]
--quick: sjostrom2001 only, --steps 50 --density-steps 3, 500 simulated synapses per state:
a smoke run, 51 s on 2 shared CPU cores (38 s fit, 10 s scoring, both mostly compilation).
The full default run was not timed; estimated from that smoke run and the fit command's 57 s
for Sjostrom 2001 with the default settings, scaled by the data sets' events (54,000 over the
nine sets, 36 times Sjostrom 2001's 1,510; padded batches 39 times): one to two hours on
2 CPU cores, most of it in the fits of the Wittenberg & Wang sets (the combined set alone is
40 % of the events). Use --datasets to run a part and --json to resume an interrupted run.
"""

import argparse
import json
import math
import os
import sys
import tempfile
import time

import jax

jax.config.update("jax_enable_x64", True)

import numpy as np  # noqa: E402
from ca_plast.fitting._cli import DEFAULT_FREE  # noqa: E402
from ca_plast.fitting._report import check_synapses  # noqa: E402

import ca_plast  # noqa: E402
from ca_plast import fitting  # noqa: E402

FALLBACK_INIT = "DP"
QUICK = {"datasets": ("sjostrom2001",), "steps": 50, "density_steps": 3, "synapses": 500}


def _finite(value) -> float | None:
    """A float for JSON: None for NaN or infinity."""
    value = float(value)
    return value if math.isfinite(value) else None


def score(rule, dataset, *, synapses: int, seed: int) -> dict:
    """Mean z^2 of `rule` on `dataset` by closed form, density solver and event-driven simulation."""
    spikes = dataset.spikes()
    data, sem = dataset.data, dataset.sem
    closed = np.asarray(fitting.predict(rule, spikes))
    record = {"chi2_closed_form": _finite(fitting.chi2(closed, data, sem)), "closed_form": closed.tolist()}
    try:
        density = np.asarray(ca_plast.density_ratios(rule, spikes)[0])
        record["density_error"] = None
    except ValueError as error:  # grid too narrow or too coarse for this rule: recorded, not fatal
        density = np.full(dataset.n_points, np.nan)
        record["density_error"] = str(error)
    record |= {"chi2_density": _finite(fitting.chi2(density, data, sem)),
               "density": [_finite(v) for v in density]}
    key = jax.random.fold_in(jax.random.key(seed), 1)
    ratio, ratio_sem = ca_plast.stdp_ratios(rule, list(dataset.protocols), method="events", n_synapses=synapses,
                                            key=key)
    # Points where no simulated synapse changed state (or all did) have s.e. 0: left out of the agreement.
    z = np.abs(ratio - density)[ratio_sem > 0] / ratio_sem[ratio_sem > 0]
    record |= {"chi2_simulated": _finite(fitting.chi2(ratio, data, sem)), "simulated": ratio.tolist(),
               "simulated_sem": ratio_sem.tolist(), "n_synapses_per_state": synapses,
               "max_abs_z_simulated_vs_density": _finite(np.max(z)) if z.size else None}
    return record


def run_dataset(name: str, *, steps: int | None, density_steps: int | None, synapses: int | None, seed: int) -> dict:
    """Fit one data set from its published preset (or DP) and score the preset and the fit."""
    dataset = fitting.load_dataset(name)
    init = dataset.reference or FALLBACK_INIT
    options = {key: value for key, value in (("steps", steps), ("density_steps", density_steps)) if value is not None}
    started = time.perf_counter()
    result = fitting.fit(dataset, init, DEFAULT_FREE.split(","), method="density", seed=seed, progress=False, **options)
    fit_s = time.perf_counter() - started
    n_synapses = check_synapses(dataset) if synapses is None else synapses
    preset_label = init if dataset.reference else f"{init} (starting preset)"
    rules = [(preset_label, ca_plast.gb2012_preset(init)), (f"fitted from {init}", result.model)]
    started = time.perf_counter()
    scores = [{"rule": label, **score(rule, dataset, synapses=n_synapses, seed=seed)} for label, rule in rules]
    return {"dataset": name, "modelling": dataset.modelling, "n_points": dataset.n_points, "init": init,
            "reference": dataset.reference, "fit_s": fit_s, "score_s": time.perf_counter() - started,
            "fit_steps": result.steps, "fit_stopped": result.stopped, "fit_chi2_mean": result.chi2_mean,
            "params": result.params, "rules": scores}


def load_cache(path: str | None, settings: dict) -> dict:
    """Entries of a previous run with the same settings from `path` (none if there is no such file)."""
    if path is None or not os.path.exists(path):
        return {}
    with open(path) as handle:
        stored = json.load(handle)
    if stored.get("settings") != settings:
        print(f"{path}: written with other settings ({stored.get('settings')}); starting afresh")
        return {}
    return stored.get("datasets", {})


def write_cache(path: str, settings: dict, entries: dict) -> None:
    """Write `entries` to `path` atomically (a temporary file in the same folder, then `os.replace`)."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    text = json.dumps({"settings": settings, "versions": fitting.versions(), "datasets": entries}, indent=1)
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=".datasets_table.", suffix=".json")
    try:
        with os.fdopen(handle, "w") as out:
            out.write(text + "\n")
        os.chmod(temporary, 0o644)  # mkstemp creates it private
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def _number(value) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def markdown(entries: list[dict]) -> str:
    """One row per (data set, rule): the three mean z^2 and the simulation's agreement with the density solver."""
    lines = ["| data set | points | rule | closed form | density | simulated (N synapses/state) "
             "| max \\|sim - density\\| / s.e. |",
             "|---|---:|---|---:|---:|---:|---:|"]
    for entry in entries:
        for rule in entry["rules"]:
            z = rule["max_abs_z_simulated_vs_density"]
            lines.append(f"| {entry['dataset']} | {entry['n_points']} | {rule['rule']} "
                         f"| {_number(rule['chi2_closed_form'])} | {_number(rule['chi2_density'])} "
                         f"| {_number(rule['chi2_simulated'])} ({rule['n_synapses_per_state']}) "
                         f"| {'n/a' if z is None else f'{z:.3g}'} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", help="comma-separated data set names (default: all of fitting.DATASETS)")
    parser.add_argument("--steps", type=int, help="Adam steps of the closed-form stage (default: the fit's)")
    parser.add_argument("--density-steps", type=int, help="L-BFGS iterations of the density stage (default: the fit's)")
    parser.add_argument("--synapses", type=int,
                        help="simulated synapses per initial state (default: the fit report's, by data set)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the fit and (folded with 1) of the simulation")
    parser.add_argument("--quick", action="store_true", help="sjostrom2001, 50 steps, 3 density steps, 500 synapses")
    parser.add_argument("--json", metavar="PATH", help="write the results to PATH (and resume from it)")
    args = parser.parse_args()
    names = fitting.DATASETS if args.datasets is None else tuple(n.strip() for n in args.datasets.split(","))
    steps, density_steps, synapses = args.steps, args.density_steps, args.synapses
    if args.quick:
        names = names if args.datasets else QUICK["datasets"]
        steps, density_steps, synapses = QUICK["steps"], QUICK["density_steps"], QUICK["synapses"]
    unknown = [n for n in names if n not in fitting.DATASETS]
    if unknown:
        parser.error(f"unknown data set(s) {', '.join(unknown)}; valid: {', '.join(fitting.DATASETS)}")
    settings = {"steps": steps, "density_steps": density_steps, "synapses": synapses, "seed": args.seed,
                "free": DEFAULT_FREE}

    print(f"published preset and fitted rule per data set (free {DEFAULT_FREE}; steps {steps or 'default'}, "
          f"density steps {density_steps or 'default'}, seed {args.seed}), float64, jax {jax.__version__} "
          f"on {jax.devices()[0].platform}")
    started = time.perf_counter()
    entries = load_cache(args.json, settings)
    for name in names:
        if name in entries:
            print(f"{name:>28}: from {args.json} (fit {entries[name]['fit_s']:.0f} s)")
            continue
        entry = run_dataset(name, steps=steps, density_steps=density_steps, synapses=synapses, seed=args.seed)
        entries[name] = entry
        fitted = entry["rules"][1]
        print(f"{name:>28}: {entry['n_points']:3d} points, fit from {entry['init']} {entry['fit_s']:.0f} s "
              f"({entry['fit_steps']} steps, {entry['fit_stopped']}), scoring {entry['score_s']:.0f} s; "
              f"fitted mean z^2 {_number(fitted['chi2_density'])} (density)", flush=True)
        for rule in entry["rules"]:
            if rule["density_error"]:
                print(f"{'':>30}{rule['rule']}: density solver failed: {rule['density_error']}")
        if args.json:
            write_cache(args.json, settings, entries)
    print(f"\n{markdown([entries[n] for n in names])}")
    print(f"\n{time.perf_counter() - started:.0f} s in all")
    if args.json:
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
