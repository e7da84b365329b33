"""Study: synaptic tagging and capture on emulated BSS-2, precision x rounding x PPU update period.

The question of the multi-timescale plasticity paper (arXiv:2412.02515): the late-phase
changes of p and z per PPU update (alpha P / tau_p ~ 3e-6 at P = 10 ms) are far below the
resolution of an 8-bit (1/128) or 16-bit (1/32768) state; under nearest rounding they vanish,
under stochastic rounding they survive in expectation. The early phase needs update periods
short against its 0.35 s time constant above theta_p.

Workload: the `ca-plast stc` set-up (`luboeinski_tetzlaff2021`, leaky integrate-and-fire
neuron, noise on), regular pulses, 10 min settling, then `--hours` after the onset (default 4:
the late phase of STET and SLFS is well under way), `--trials` trials per protocol, all four
protocols in one batch. Float: `solve_stc` (exact event-driven). Hardware: `solve_stc_hardware`
with 8- and 16-bit states, nearest and stochastic rounding, update periods `--periods`; and
the float PPU program (`state=None`: same explicit step per period, exact arithmetic) per period.

Criterion for a configuration to match float: for all four protocols, the mean final w (% of
h0) is within max(3 standard errors of the difference, 5 % of h0) of the float mean, and the
trial-to-trial standard deviation of w is at most twice float's plus 2 % of h0 (rounding noise
must not swamp single trials). The
default STC configuration (`BSS2_STC`) is the cheapest that matches: longest period first,
then fewest bits, then nearest before stochastic rounding.

Prints a table, the cost of each emulation against float (wall time after compilation on this
CPU) and the emulated chip time, and writes benchmarks/stc_hardware.json.

Usage: python benchmarks/stc_hardware.py [--trials N] [--hours H] [--periods 1,10,100] [--float32]
"""

import argparse
import json
import os
import platform
import time

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "stc_hardware.json")
SETTLE_MS = 600_000.0
PROTOCOLS = ("STET", "WTET", "SLFS", "WLFS")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--hours", type=float, default=4.0)
    parser.add_argument("--periods", default="1,10,100", help="PPU update periods (ms), comma-separated")
    parser.add_argument("--float32", action="store_true", help="run in float32 (default float64)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import jax

    if not args.float32:
        jax.config.update("jax_enable_x64", True)
    import numpy as np

    import ca_plast as cp
    from ca_plast._stc_simulate import _batched

    rule = cp.luboeinski_tetzlaff2021()
    h0 = float(rule.h0)
    neuron = cp.LeakyIntegrateAndFire()
    protocols = [p for name in PROTOCOLS for p in cp.stc_protocols(name, args.trials, hours=args.hours, settle=SETTLE_MS)]
    key = jax.random.key(args.seed)
    periods = [float(x) for x in args.periods.split(",")]

    spikes = cp.to_spikes(protocols, unit=1.0)
    keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(np.arange(len(protocols)))

    def run(hardware):
        # simulate_stc's batched solver, compiled first so that the wall time is the run's alone.
        batch = (rule, neuron, spikes, keys, 30_000.0, 64, False, hardware)
        compiled = _batched.lower(*batch).compile()
        start = time.perf_counter()
        solution = jax.block_until_ready(compiled(*batch))
        wall = time.perf_counter() - start
        if np.any(np.asarray(solution.n_late)):
            raise RuntimeError("the neuron fired more than 64 times in a trial; raise max_post_spikes")
        w = 100 * np.asarray(rule.weight(solution.state)) / h0
        z = np.asarray(solution.state.z)
        p = np.asarray(solution.state.p)
        h_top, h_bottom = (100 * np.asarray(x) / h0 for x in (solution.stats.h_max, solution.stats.h_min))
        codes = np.asarray(cp.classify_outcome(rule, solution.state.z, solution.stats.h_max, solution.stats.h_min))
        out = {"wall_s": wall}
        for i, name in enumerate(PROTOCOLS):
            part = slice(i * args.trials, (i + 1) * args.trials)
            out[name] = {
                "w_mean_pct": float(w[part].mean()),
                "w_sem_pct": float(w[part].std(ddof=1) / np.sqrt(args.trials)),
                "w_sd_pct": float(w[part].std(ddof=1)),
                "h_max_mean_pct": float(h_top[part].mean()),
                "h_min_mean_pct": float(h_bottom[part].mean()),
                "outcomes": {cp.OUTCOMES[j]: int(n) for j, n in enumerate(np.bincount(codes[part], minlength=7)) if n},
                "z_mean": float(z[part].mean()),
                "z_sem": float(z[part].std(ddof=1) / np.sqrt(args.trials)),
                "p_mean": float(p[part].mean()),
                "n_post_mean": float(np.asarray(solution.n_post)[part].mean()),
            }
        return out

    rows = {"float (solve_stc)": run(None)}
    reference = rows["float (solve_stc)"]
    configs = {}
    for period in periods:
        configs[f"float PPU, {period:g} ms"] = cp.BSS2(state=None, period=period)
        for bits in (8, 16):
            for rounding in ("nearest", "stochastic"):
                configs[f"{bits}-bit {rounding}, {period:g} ms"] = cp.BSS2(
                    state=cp.FixedPoint(bits, bits - 1), rounding=rounding, period=period)
    for label, hardware in configs.items():
        rows[label] = run(hardware)
        print(f"  ran {label}: {rows[label]['wall_s']:.1f} s", flush=True)

    def matches(row):
        ok = True
        for name in PROTOCOLS:
            diff = row[name]["w_mean_pct"] - reference[name]["w_mean_pct"]
            sem = np.hypot(row[name]["w_sem_pct"], reference[name]["w_sem_pct"])
            row[name]["w_diff_pct"] = float(diff)
            row[name]["w_diff_sem_pct"] = float(sem)
            spread = row[name]["w_sd_pct"] <= 2 * reference[name]["w_sd_pct"] + 2.0
            ok &= bool(abs(diff) <= max(3 * sem, 5.0)) and bool(spread)
        return ok

    header = f"{'configuration':<26}" + "".join(f"{name + ' w%':>16}{'z':>8}" for name in PROTOCOLS) + f"{'match':>7}{'cost':>8}"
    print(f"\nMean final w (% of h0, +- s.e.) and z, {args.trials} trials per protocol, "
          f"{args.hours:g} h after onset; cost = wall time / float's")
    print(header)
    choice = None
    order = []
    for label, row in rows.items():
        row["matches_float"] = True if label.startswith("float (") else matches(row)
        row["cost_vs_float"] = row["wall_s"] / reference["wall_s"]
        cells = "".join(f"{row[n]['w_mean_pct']:>10.1f}+-{row[n]['w_sem_pct']:<4.1f}{row[n]['z_mean']:>8.3f}" for n in PROTOCOLS)
        print(f"{label:<26}{cells}{'yes' if row['matches_float'] else 'no':>7}{row['cost_vs_float']:>8.1f}")
        if label in configs and configs[label].state is not None:
            hw = configs[label]
            order.append(((-hw.period, hw.state.total_bits, str(hw.rounding) != "nearest"), label))
    for _, label in sorted(order):
        if rows[label]["matches_float"]:
            choice = label
            break
    duration = SETTLE_MS + args.hours * cp._stc_protocols.MS_PER_HOUR
    chip_s = cp.BSS2().hardware_time(duration) / 1000
    print("\nMean extremes of h (% of h0, max / min) and outcomes:")
    for label, row in rows.items():
        print(f"{label:<26}" + "".join(f"{n:>6} {row[n]['h_max_mean_pct']:6.1f}/{row[n]['h_min_mean_pct']:5.1f} "
                                         f"{row[n]['outcomes']}" for n in PROTOCOLS))
    print(f"\nCheapest configuration matching float (all four protocols: |mean w - float| <= max(3 s.e., 5 % of h0), "
          f"s.d. of w <= 2 float's + 2 % of h0): {choice}")
    print(f"Emulated chip time per trial: {chip_s:.3g} s ({duration / 3.6e6:.3g} h of biological time at 1000x)")
    result = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
        "dtype": "float32" if args.float32 else "float64",
        "trials_per_protocol": args.trials,
        "hours_after_onset": args.hours,
        "settle_ms": SETTLE_MS,
        "criterion": "all four protocols: |mean w - float| <= max(3 s.e. of the difference, 5 % of h0) and "
                     "s.d. of w over trials <= 2 float's + 2 % of h0",
        "choice": choice,
        "chip_s_per_trial": chip_s,
        "rows": rows,
    }
    with open(OUT, "w") as f:
        json.dump(result, f, indent=2)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
