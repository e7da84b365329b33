"""Precision-period map of the BSS-2 emulation: how far the hardware STDP curve lies from float.

For preset DP (GB2012 Fig. 2: 60 pairs at 1 Hz) and dt = t_post - t_pre over a grid, every
configuration (state width x update period x rounding x threshold-time readout) is run
together with the float model on the same analog substrate and the same random numbers
(common random numbers), and the map reports max over dt of |ratio(hardware) - ratio(float)|
with the paired standard error of that difference. A second part shows the vanishing-update
effect with the rule's noise off (sigma = 0): mean rho of synapses starting DOWN, float vs
8-bit nearest vs 8-bit stochastic rounding, update every 0.1 ms.

    python benchmarks/precision_map.py                 # full study (~15-30 min on 2 cores)
    python benchmarks/precision_map.py --synapses 50 --dt-step 50 --pairs 10   # quick look
    python benchmarks/precision_map.py --replot        # redraw the figure from the json

Prints the table and writes benchmarks/precision_map.json and benchmarks/precision_map.png.
"""

import argparse
import json
import os
import time

import jax

jax.config.update("jax_enable_x64", True)

import equinox as eqx  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

import ca_plast as cp  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def paired_difference(rule, rho, n, configs):
    """Ratio of each configuration minus the float ratio (row 0), and its paired standard error.

    `rho`: (n_configs, n_protocols, 2n) final efficacies, the first n started DOWN. The
    change ratio is linear in U and D, so the difference is linear in the per-synapse
    differences of the transition indicators, whose sample variance gives the error. A
    synapse exactly at rho_star counts half UP, half DOWN, as in `ca_plast.hardware_ratios`.
    """
    star = float(rule.rho_star)
    beta, b = float(rule.beta), float(rule.b)
    shift = np.array([cp.tie_shift(c) for c in configs])[:, None, None]
    up = ((rho[:, :, :n] + shift > star).astype(float) + (rho[:, :, :n] - shift > star)) / 2
    down = ((rho[:, :, n:] + shift <= star).astype(float) + (rho[:, :, n:] - shift <= star)) / 2
    d_up, d_down = up[1:] - up[:1], down[1:] - down[:1]
    norm = beta + (1 - beta) * b
    diff = (b - 1) / norm * (beta * d_up.mean(-1) - (1 - beta) * d_down.mean(-1))
    var = beta**2 * d_up.var(-1, ddof=1) / n + (1 - beta) ** 2 * d_down.var(-1, ddof=1) / n
    return diff, abs(b - 1) / norm * np.sqrt(var)


def configurations(period, widths, roundings):
    configs = [cp.BSS2(state=None, period=period)]
    labels = []
    for bits in widths:
        for rounding in roundings:
            configs.append(cp.BSS2(state=cp.FixedPoint(bits, bits - 1), rounding=rounding, period=period))
            labels.append(f"{bits:2d} bit {rounding:10s} integrate")
    for rounding in roundings:
        configs.append(cp.BSS2(rounding=rounding, period=period, threshold_time="sample"))
        labels.append(f" 8 bit {rounding:10s} sample")
    return configs, labels


def vanishing(rule, n, pairs, key):
    """Mean rho (noise off) of n synapses starting DOWN at dt = +10 ms: float, 8-bit nearest, 8-bit stochastic."""
    quiet = eqx.tree_at(lambda r: r.sigma, rule, jnp.asarray(0.0))
    spikes = cp.to_spikes(cp.pairs(10.0, pairs, 1.0), unit=0.1)
    configs = (cp.BSS2(state=None, period=0.1), cp.BSS2(rounding="nearest", period=0.1), cp.BSS2(period=0.1))
    run = eqx.filter_jit(lambda sp, k: cp.solve_hardware(quiet, sp, jnp.zeros(n), hardware=configs, key=k,
                                                         record_every=1000))
    solutions = run(spikes, key)
    return np.asarray(solutions[0].ts), [np.asarray(s.rho_trace).mean(-1) for s in solutions]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--synapses", type=int, default=300, help="synapses per initial state (DOWN and UP)")
    parser.add_argument("--dt-step", type=float, default=10.0, help="dt grid step in ms over -100..100")
    parser.add_argument("--pairs", type=int, default=60)
    parser.add_argument("--periods", default="0.1,1,10", help="update periods in ms")
    parser.add_argument("--widths", default="8,12,16", help="state widths in bits")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=os.path.join(HERE, "precision_map"), help="output path without extension")
    parser.add_argument("--replot", action="store_true", help="only redraw the figure from OUT.json")
    args = parser.parse_args()
    if args.replot:
        with open(args.out + ".json") as handle:
            figure(json.load(handle)).savefig(args.out + ".png", dpi=110)
        return

    rule = cp.gb2012_preset("DP")
    dts = np.arange(-100.0, 100.0 + 1e-9, args.dt_step)
    protocols = [cp.pairs(float(dt), args.pairs, 1.0) for dt in dts]
    periods = [float(p) for p in args.periods.split(",")]
    widths = [int(w) for w in args.widths.split(",")]
    roundings = ("nearest", "stochastic")
    key = jax.random.key(args.seed)
    n = args.synapses

    results = {"preset": "DP", "pairs": args.pairs, "synapses_per_state": n, "dt_ms": dts.tolist(), "periods_ms": periods,
               "closed_form": cp.stdp_ratios(rule, protocols)[0].tolist(), "float": {}, "map": {}}
    for period in periods:
        configs, labels = configurations(period, widths, roundings)
        start = time.perf_counter()
        rho = cp.hardware_populations(rule, protocols, configs, n_synapses=n, key=key)
        wall = time.perf_counter() - start
        ratio = np.asarray(jax.vmap(lambda r: cp.population_ratio(rule, r[:n], r[n:])[0])(jnp.asarray(rho[0])))
        diff, diff_sem = paired_difference(rule, rho, n, configs)
        ratio = np.concatenate([ratio[None], ratio + diff])
        results["float"][str(period)] = ratio[0].tolist()
        print(f"period {period:g} ms: {len(configs)} configurations x {len(dts)} protocols in {wall:.0f} s")
        for label, r, d, e in zip(labels, ratio[1:], diff, diff_sem):
            i = int(np.argmax(np.abs(d)))
            results["map"][f"{label.split()[0]}|{label.split()[2]}|{label.split()[3]}|{period:g}"] = {
                "max_abs_diff": float(abs(d[i])), "at_dt": float(dts[i]), "paired_sem": float(e[i]),
                "ratio": r.tolist(), "diff": d.tolist(), "diff_sem": e.tolist()}

    print(f"\nmax over dt of |ratio(hardware) - ratio(float)|, preset DP, {args.pairs} pairs at 1 Hz"
          f" (paired s.e. at the maximum; {n} synapses per state)")
    print(f"{'configuration':34s}" + "".join(f"{f'{p:g} ms':>18s}" for p in periods))
    labels = configurations(1.0, widths, roundings)[1]
    for label in labels:
        bits, _, rounding, readout = label.split()
        cells = []
        for period in periods:
            entry = results["map"][f"{bits}|{rounding}|{readout}|{period:g}"]
            cells.append(f"{entry['max_abs_diff']:.3f} ({entry['paired_sem']:.3f})")
        print(f"{label:34s}" + "".join(f"{c:>18s}" for c in cells))

    ts, traces = vanishing(rule, n, args.pairs, jax.random.fold_in(key, 7))
    results["vanishing"] = {"t_ms": ts.tolist(), "float": traces[0].tolist(), "nearest8": traces[1].tolist(),
                            "stochastic8": traces[2].tolist()}
    print(f"\nnoise off, dt = +10 ms, update every 0.1 ms: mean final rho of {n} DOWN synapses: "
          f"float {traces[0][-1]:.4f}, 8-bit nearest {traces[1][-1]:.4f}, 8-bit stochastic {traces[2][-1]:.4f}")

    with open(args.out + ".json", "w") as handle:
        json.dump(results, handle, indent=1)
    figure(results).savefig(args.out + ".png", dpi=110)
    print(f"wrote {args.out}.json and {args.out}.png")


def figure(results):
    """The map, the STDP curves at the shortest and longest period, and the vanishing-update traces."""
    periods, dts = results["periods_ms"], np.asarray(results["dt_ms"])
    keys = list(dict.fromkeys(k.rsplit("|", 1)[0] for k in results["map"]))  # width|rounding|readout
    labels = [f"{w} bit {r} {o}" for w, r, o in (k.split("|") for k in keys)]
    fig = Figure(figsize=(13, 8), layout="constrained")
    axes = fig.subplots(2, 2)
    ax = axes[0, 0]
    grid = np.array([[results["map"][f"{k}|{p:g}"]["max_abs_diff"] for p in periods] for k in keys])
    image = ax.imshow(grid, cmap="viridis", aspect="auto", vmin=0)
    ax.set_xticks(range(len(periods)), [f"{p:g} ms" for p in periods])
    ax.set_yticks(range(len(labels)), labels)
    for (i, j), value in np.ndenumerate(grid):
        ax.text(j, i, f"{value:.3f}", ha="center", va="center", color="w" if value < grid.max() / 2 else "k", fontsize=8)
    fig.colorbar(image, ax=ax, label="max |ratio(hw) - ratio(float)|")
    ax.set_title("precision-period map (DP, noise on)")
    for ax, period in zip((axes[0, 1], axes[1, 0]), (min(periods), max(periods))):
        ax.axhline(1, color="0.7", lw=0.8)
        ax.plot(dts, results["float"][str(period)], "k-", lw=2, label="float")
        for key, label in zip(keys, labels):
            if key.endswith("integrate"):
                ax.plot(dts, results["map"][f"{key}|{period:g}"]["ratio"], "-", lw=1, label=label.rsplit(" ", 1)[0])
        ax.set_title(f"STDP curves, update period {period:g} ms")
        ax.set_xlabel("dt = t_post - t_pre (ms)")
        ax.set_ylabel("change ratio")
        ax.legend(fontsize=7, frameon=False)
    ax = axes[1, 1]
    van = results["vanishing"]
    for name, style in (("float", "k-"), ("nearest8", "C3--"), ("stochastic8", "C0-")):
        ax.plot(np.asarray(van["t_ms"]) / 1000, van[name], style, label=name)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("mean rho of DOWN synapses")
    ax.set_title("vanishing updates (noise off, dt = +10 ms, 0.1 ms updates)")
    ax.legend(frameon=False)
    return fig


if __name__ == "__main__":
    main()
