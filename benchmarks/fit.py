"""Benchmark: how fast and how well `fitting.fit` fits GB2012 to experimental STDP data.

Fits (float64, closed-form predictions, as `ca-plast fit` runs):

1. the main job: Sjostrom 2001 (10 points, 75 regular pairs per point), start DP, ten free
   parameters (theta_p, gamma_p, gamma_d, C_pre, C_post, tau_ca, D, tau, sigma, b;
   theta_d = 1), the defaults of `ca-plast fit` (32 starts, up to 1000 Adam steps);
   reported: wall and CPU time to the first step, time until the best mean z^2 is <= 0.52
   (the published cortical-slices fit) and <= 0.15, final mean z^2, time per step;
2. the same with the experiment's train structure (modelling "trains");
3. thresholds only, from cortical_slices with theta_p, theta_d moved 30 % up;
4. Wittenberg & Wang 2006, pairs and bursts together (75 per-cell points), start
   hippocampal_slices, the same ten free parameters, fewer starts and steps
   (`--ww-starts`, `--ww-steps`), next to the hippocampal_slices set's loss.

Prints the numbers and writes benchmarks/fit.json. A gradient-free reference for scale:
BluePyOpt's GB2012 example runs a genetic algorithm with 100 x 200 = 20,000 evaluations.

Usage: python benchmarks/fit.py [--quick] [--ww-starts N] [--ww-steps N]
"""

import argparse
import json
import os
import time

import jax

jax.config.update("jax_enable_x64", True)

import equinox as eqx  # noqa: E402
import numpy as np  # noqa: E402

import ca_plast  # noqa: E402
from ca_plast import fitting  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fit.json")
TEN = ["theta_p", "gamma_p", "gamma_d", "C_pre", "C_post", "tau_ca", "D", "tau", "sigma", "b"]


def _first_time(result: fitting.FitResult, level: float) -> float | None:
    hit = np.flatnonzero(result.history[-result.elapsed.size:] <= level)
    return float(result.elapsed[hit[0]]) if hit.size else None


def run(name: str, dataset, init, free, **settings) -> dict:
    cpu = time.process_time()
    result = fitting.fit(dataset, init, free, **settings)
    cpu = time.process_time() - cpu
    record = fitting.summary(result)
    steps_s = np.diff(result.elapsed)
    row = {
        "dataset": dataset.name,
        "modelling": dataset.modelling,
        "n_points": dataset.n_points,
        "init": init if isinstance(init, str) else "custom",
        "free": list(free),
        "n_starts": result.n_starts,
        "steps": result.steps,
        "stopped": result.stopped,
        "chi2_initial": result.chi2_initial,
        "chi2_final": result.chi2_mean,
        "reference": record["reference"],
        "wall_s": result.wall_s,
        "cpu_s": cpu,
        "first_step_s": float(result.elapsed[0]),
        "per_step_ms": 1000 * float(np.median(steps_s)) if steps_s.size else None,
        "reached_0.52_s": _first_time(result, 0.52),
        "reached_0.15_s": _first_time(result, 0.15),
        "params": result.params,
    }
    reference = row["reference"]
    print(f"{name}: {dataset.name} ({dataset.modelling}, {dataset.n_points} points), {len(free)} free, "
          f"{result.n_starts} starts: mean z^2 {result.chi2_initial:.4g} -> {result.chi2_mean:.4g} "
          f"in {result.steps} steps ({result.stopped})"
          + (f"; {reference['preset']} scores {reference['chi2_mean']:.4g}" if reference else ""))
    print(f"    wall {result.wall_s:.1f} s (cpu {cpu:.1f} s), first step after {row['first_step_s']:.1f} s, "
          f"{row['per_step_ms']:.1f} ms/step; <= 0.52 after {row['reached_0.52_s']} s, "
          f"<= 0.15 after {row['reached_0.15_s']} s", flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer starts and steps (a smoke run)")
    parser.add_argument("--ww-starts", type=int, default=8)
    parser.add_argument("--ww-steps", type=int, default=300)
    args = parser.parse_args()
    main_job = dict(n_starts=8, steps=200) if args.quick else {}
    sjostrom = fitting.load_dataset("sjostrom2001")
    rows = {"main_job": run("main job", sjostrom, "DP", TEN, **main_job)}
    rows["trains"] = run("trains", fitting.load_dataset("sjostrom2001", "trains"), "DP", TEN, **main_job)
    published = ca_plast.gb2012_preset("cortical_slices")
    moved = eqx.tree_at(lambda m: (m.theta_p, m.theta_d), published, (published.theta_p * 1.3, published.theta_d * 1.3))
    rows["thresholds"] = run("thresholds only", sjostrom, moved, ["theta_p", "theta_d"], n_starts=4, steps=300)
    ww = dict(n_starts=2, steps=20) if args.quick else dict(n_starts=args.ww_starts, steps=args.ww_steps)
    rows["wittenberg_wang"] = run("Wittenberg & Wang", fitting.load_dataset("wittenberg_wang2006"),
                                  "hippocampal_slices", TEN, **ww)
    rows["versions"] = fitting.versions()
    rows["cpu_count"] = os.cpu_count()
    with open(OUT, "w") as handle:
        json.dump(rows, handle, indent=2)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
