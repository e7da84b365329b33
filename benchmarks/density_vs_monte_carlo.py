"""Benchmark: the density solver against event-driven Monte Carlo on every shipped protocol.

For every protocol of every shipped data set (`fitting.DATASETS`, every modelling in
`fitting.modellings`), the change ratio from the density solver
(`ca_plast.stdp_ratios(..., method="density")`, default grid, widened automatically) is
compared with the event-driven simulation (`method="events"`, `--synapses` synapses per
initial state) for: the data set's reference preset (`dataset.reference`, where there is
one), preset DP, and the fitted rules of `--fitted PATH` (JSON
`{"name": {"init": "DP", "params": {"theta_p": ..., ...}}}`; skipped if not given or absent;
an entry with `"dataset": "bipoo1998"` is compared on that data set only, one with
`"dataset": "sjostrom2001/cortical_slices"` on that modelling only).
A protocol passes when |density - MC| <= 3 s.e. + 0.002 (s.e. of the MC ratio). Protocols are
de-duplicated per rule: one already compared for that rule (an identical protocol of an
earlier data set or modelling, or a repeated point) is not run again, so the combined
wittenberg_wang2006 set adds nothing to its three parts.

Monte Carlo noise: key `jax.random.key(--seed)`, folded with the data set's and the chunk's
index; `stdp_ratios` folds in the protocol's index inside the chunk. Rules of one data set
share their keys (common random numbers). Protocols run in chunks of `--chunk`, sorted by
their number of spikes (memory about chunk x synapses x 160 bytes).

Mass conservation: the final `cdf[:, -1]` is 1 by construction, and so is the sum of the cell
masses `diff(cdf)` (it telescopes to cdf[-1] - cdf[0]; the solver also resets the last edge
to 1 after every remap and convolution), so the mass defect before folding is not measurable
from the public API. Reported instead, from `solve_density` on the default grid (no
widening) over each rule's protocols: the range of `escaped` (folded-back mass; signed, it
carries the rounding of the FFT convolution, which can make it negative),
the most negative cell mass, and max |1 - sum(diff(cdf))| (zero up to rounding, as a check).

Everything runs in float64, so that neither solver's rounding enters the comparison (in
float32 the density solver's mass bookkeeping alone carries the FFT's rounding, `escaped`
~ 1e-6 to 1e-5 over a Sjostrom protocol, and U near 0 can come out slightly negative).

Usage: python benchmarks/density_vs_monte_carlo.py [--synapses N] [--seed S] [--datasets A,B]
           [--fitted PATH] [--chunk N] [--quick] [--json PATH]
--quick: Sjostrom 2001 only (both modellings), 2000 synapses per state: under a minute.
The full default run (all data sets, 10^5 synapses per state: 263 comparisons) took 30 minutes on
2 shared CPU cores (the simulation is 95 % of it); with `--fitted` holding every data set's fitted
rule, each restricted to its data set, 495 comparisons in 45 minutes. Use --datasets to run a part.
"""

import argparse
import json
import os
import sys
import time

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import ca_plast  # noqa: E402
from ca_plast import fitting  # noqa: E402

SE_FACTOR, SLACK = 3.0, 0.002


def _key(protocol: ca_plast.Protocol) -> tuple:
    return protocol.pre.tobytes(), protocol.post.tobytes(), protocol.duration


def load_fitted(path: str | None) -> dict:
    """Rules from a JSON file of fitted parameter sets (`{"name": {"init": preset, "params": {...}}}`).

    Returns `{name: (rule, dataset)}`, `dataset` None where the entry names none.
    """
    if path is None:
        return {}
    if not os.path.exists(path):
        print(f"--fitted {path}: no such file, no fitted rules compared")
        return {}
    with open(path) as handle:
        entries = json.load(handle)
    rules = {}
    for name, entry in entries.items():
        init = ca_plast.gb2012_preset(entry["init"])
        params = {key: float(value) for key, value in entry["params"].items()}
        initial = fitting.parameter_values(init)
        # Bounds only gate the initial values here; any that contain both the preset's and the fitted values do.
        bounds = {k: (min(initial[k], v) - 1.0, max(initial[k], v) + 1.0) for k, v in params.items()}
        rule = fitting.FreeParameters(init, list(params), bounds=bounds).with_values(init, params)
        rules[name] = rule, entry.get("dataset")
    return rules


def _applies(dataset: str | None, label: str) -> bool:
    """Whether a fitted rule restricted to `dataset` (None: every one) is compared on case `label`."""
    return dataset is None or dataset in (label, label.split("/")[0])


def cases(names) -> list:
    """(label, dataset) for every modelling of every data set in `names`."""
    out = []
    for name in names:
        for modelling in fitting.modellings(name):
            label = name if len(fitting.modellings(name)) == 1 else f"{name}/{modelling}"
            out.append((label, fitting.load_dataset(name, modelling)))
    return out


def compare(rule, protocols, labels, *, synapses: int, chunk: int, key) -> dict:
    """Density and Monte Carlo ratios of `protocols` (chunks sorted by size); per-protocol rows."""
    order = sorted(range(len(protocols)), key=lambda i: protocols[i].n_spikes)
    density, mc, sem = (np.full(len(protocols), np.nan) for _ in range(3))
    errors = []
    density_s = mc_s = 0.0
    for c, start in enumerate(range(0, len(order), chunk)):
        where = order[start:start + chunk]
        part = [protocols[i] for i in where]
        t = time.perf_counter()
        try:
            density[where], _ = ca_plast.stdp_ratios(rule, part, method="density")
        except ValueError as error:
            errors.append(str(error))
        density_s += time.perf_counter() - t
        t = time.perf_counter()
        mc[where], sem[where] = ca_plast.stdp_ratios(rule, part, method="events", n_synapses=synapses,
                                                     key=jax.random.fold_in(key, c))
        mc_s += time.perf_counter() - t
    diff = np.abs(density - mc)
    passed = diff <= SE_FACTOR * sem + SLACK
    # No s.e. where no simulated synapse changed state (or all did): there only the slack applies.
    z = [float(d / e) if e > 0 else None for d, e in zip(diff, sem)]
    return {
        "rows": [{"label": labels[i], "density": float(density[i]), "mc": float(mc[i]), "sem": float(sem[i]),
                  "abs_diff": float(diff[i]), "diff_in_se": z[i], "passed": bool(passed[i])}
                 for i in range(len(protocols))],
        "errors": errors, "density_s": density_s, "mc_s": mc_s,
    }


def _worst(rows: list, field: str) -> dict | None:
    """The row with the largest `field` (None values skipped; NaN, a failed density solve, counts as largest)."""
    rows = [r for r in rows if r[field] is not None]
    return max(rows, key=lambda r: np.nan_to_num(r[field], nan=np.inf)) if rows else None


def _in_se(row: dict | None) -> str:
    return "no s.e. > 0" if row is None else f"worst {row['diff_in_se']:.2f} s.e. ({row['label']})"


def mass_report(rules: dict, protocols: list, owned: dict) -> dict:
    """Escaped and negative mass from `solve_density` (default grid) over each rule's protocols.

    All `protocols` are solved in one batch for every rule (one compilation); `owned[name]`
    holds the indices of the protocols rule `name` was compared on.
    """
    grid = ca_plast.DensityGrid()
    spikes = ca_plast.to_spikes(protocols)
    solve = jax.jit(jax.vmap(lambda rule, s: ca_plast.solve_density(rule, s, grid), in_axes=(None, 0)))
    report = {}
    for name, rule in rules.items():
        mine = np.array(sorted(owned[name]))
        solution = solve(rule, spikes)
        mass = jnp.diff(solution.cdf, axis=-1)
        report[name] = {
            "protocols": int(mine.size),
            "max_escaped": float(np.max(np.asarray(solution.escaped)[mine])),
            "min_escaped": float(np.min(np.asarray(solution.escaped)[mine])),
            "min_cell_mass": float(np.min(np.asarray(mass)[mine])),
            "max_total_mass_defect": float(np.max(np.abs(1 - np.asarray(jnp.sum(mass, axis=-1)))[mine])),
        }
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--synapses", type=int, default=100_000, help="simulated synapses per initial state (DOWN, UP)")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--datasets", help="comma-separated data set names (default: all of fitting.DATASETS)")
    parser.add_argument("--fitted", metavar="PATH", help="JSON file of fitted rules to compare too")
    parser.add_argument("--chunk", type=int, default=32, help="protocols per simulation batch")
    parser.add_argument("--quick", action="store_true", help="Sjostrom 2001 only, 2000 synapses (a smoke run)")
    parser.add_argument("--json", metavar="PATH", help="also write the per-protocol results to PATH")
    args = parser.parse_args()
    names = fitting.DATASETS if args.datasets is None else tuple(n.strip() for n in args.datasets.split(","))
    synapses = args.synapses
    if args.quick:
        names = names if args.datasets else ("sjostrom2001",)
        synapses = 2000
    fitted = load_fitted(args.fitted)

    print(f"density (default grid, auto-widened) vs event-driven Monte Carlo ({synapses} synapses per state, "
          f"seed {args.seed}), float64, jax {jax.__version__} on {jax.devices()[0].platform}")
    print(f"criterion per protocol: |density - MC| <= {SE_FACTOR:g} s.e. + {SLACK:g}")
    started = time.perf_counter()
    base = jax.random.key(args.seed)
    catalogue: list[ca_plast.Protocol] = []  # every distinct protocol, once
    index_of: dict[tuple, int] = {}
    done: dict[str, set[int]] = {}  # rule -> catalogue indices compared
    rules: dict[str, ca_plast.GraupnerBrunel2012] = {}
    results = []
    for number, (label, dataset) in enumerate(cases(names)):
        chosen = ([dataset.reference] if dataset.reference else []) + (["DP"] if dataset.reference != "DP" else [])
        lineup = {name: ca_plast.gb2012_preset(name) for name in chosen}
        lineup |= {name: rule for name, (rule, only) in fitted.items() if _applies(only, label)}
        indices = []
        for protocol in dataset.protocols:
            if _key(protocol) not in index_of:
                index_of[_key(protocol)] = len(catalogue)
                catalogue.append(protocol)
            indices.append(index_of[_key(protocol)])
        for name, rule in lineup.items():
            rules.setdefault(name, rule)
            seen = done.setdefault(name, set())
            new = []
            for point, i in enumerate(indices):
                if i not in seen:
                    seen.add(i)
                    new.append(point)
            head = f"{label:>36} {name:>20}:"
            if not new:
                print(f"{head} all {dataset.n_points} protocols already compared for this rule")
                continue
            t = time.perf_counter()
            out = compare(rule, [dataset.protocols[i] for i in new], [dataset.labels[i] for i in new],
                          synapses=synapses, chunk=args.chunk, key=jax.random.fold_in(base, number))
            rows = out["rows"]
            worst, worst_z = _worst(rows, "abs_diff"), _worst(rows, "diff_in_se")
            n_pass = sum(r["passed"] for r in rows)
            print(f"{head} {len(rows):3d} protocols, {n_pass:3d} pass, worst |diff| {worst['abs_diff']:.4f} "
                  f"({worst['label']}), {_in_se(worst_z)}; "
                  f"density {out['density_s']:.1f} s, MC {out['mc_s']:.1f} s (with compilation)")
            for error in out["errors"]:
                print(f"{'':>58} density failed: {error}")
            results.append({"dataset": label, "rule": name, "seconds": time.perf_counter() - t, **out})

    rows = [(r["dataset"], r["rule"], row) for r in results for row in r["rows"]]
    failed = [(d, n, row) for d, n, row in rows if not row["passed"]]
    if rows:
        tagged = [{**row, "label": f"{d}, {n}, {row['label']}"} for d, n, row in rows]
        worst = _worst(tagged, "abs_diff")
        print(f"\nsummary: {len(rows)} (data set, rule, protocol) comparisons, {len(rows) - len(failed)} pass; "
              f"worst |diff| {worst['abs_diff']:.4f} ({worst['label']}); {_in_se(_worst(tagged, 'diff_in_se'))}; "
              f"{time.perf_counter() - started:.0f} s")
    for d, n, row in failed:
        z = "s.e. 0" if row["diff_in_se"] is None else f"{row['diff_in_se']:.2f} s.e."
        print(f"  FAIL {d}, {n}, {row['label']}: density {row['density']:.4f}, MC {row['mc']:.4f} "
              f"+- {row['sem']:.4f}, |diff| {row['abs_diff']:.4f} = {z}")

    mass = mass_report(rules, catalogue, done)
    print("\nmass (solve_density, default grid, no widening; the total is 1 by construction, see the docstring):")
    for name, m in mass.items():
        print(f"  {name:>20}: {m['protocols']:3d} protocols, escaped {m['min_escaped']:.2e} .. {m['max_escaped']:.2e}, "
              f"most negative cell mass {m['min_cell_mass']:.2e}, max |1 - sum(cell masses)| "
              f"{m['max_total_mass_defect']:.2e}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"synapses": synapses, "seed": args.seed, "datasets": list(names), "comparisons": results,
                       "mass": mass}, handle, indent=1)
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
