"""Benchmark: synaptic tagging and capture over 8 h, multi-timescale solver, on this machine's CPU.

Workload (issue 5): the model authors' single-synapse set-up (`luboeinski_tetzlaff2021`,
leaky integrate-and-fire postsynaptic neuron), Poisson STET, 10 min settling period, then 8 h
after the onset, plasticity noise on, records every 30 s (as `ca-plast stc`). BSS-2 runs
one 8 h protocol in 28.8 s (1000x biological time). Each measurement runs in its own
subprocess so that its peak memory is its own. Printed and written to benchmarks/stc.json:

- one trial and 100 batched trials: compile time (`lower().compile()` of the batched solver),
  wall time after compilation (median and min over repeats), peak resident memory above the
  level before compilation and XLA's buffer estimate, scan iterations (events + spare
  iterations for neuron spikes) against the 0.2 ms steps a fine-step scan would take;
- the same 100 trials without the neuron (postsynaptic spikes from the protocol: none);
- the published outcomes: 100 Poisson trials of each of STET, WTET, SLFS, WLFS (neuron on):
  mean and s.d. of w at 7 h after the onset (% of h0), outcome counts, trials with protein
  synthesis, mean lowest h, and the wall time of each batch;
- the plain fine-step (0.2 ms) reference scan over 1 h of STET, for contrast.

Usage: python benchmarks/stc.py [--x64] [--repeats N]. Float32 (JAX's default, as the CLI
runs) unless --x64.
"""

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "stc.json")
SETTLE_MS = 600_000.0


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def worker(config: dict) -> dict:
    import jax

    if config["x64"]:
        jax.config.update("jax_enable_x64", True)
    import numpy as np

    import ca_plast as cp
    from ca_plast._stc_simulate import _batched

    rule = cp.luboeinski_tetzlaff2021()
    neuron = cp.LeakyIntegrateAndFire() if config["neuron"] else None
    kind = config["kind"]
    if kind == "fine":
        proto = cp.stc_protocol("STET", hours=1.0, settle=0.0, poisson=True, seed=0)
        spikes = cp.to_spikes(proto, unit=0.2)
        fine = jax.jit(lambda sp: cp.solve_stc_fine(rule, sp, record_every=30_000.0))
        before = _rss_mb()
        start = time.perf_counter()
        compiled = fine.lower(spikes).compile()
        compile_s = time.perf_counter() - start
        start = time.perf_counter()
        jax.block_until_ready(compiled(spikes))
        run_s = time.perf_counter() - start
        return {"compile_s": compile_s, "run_s": run_s, "steps": int(spikes.n_ticks),
                "ns_per_step": 1e9 * run_s / spikes.n_ticks, "peak_rss_mb": _rss_mb() - before}

    names = config["protocols"]
    trials = config["trials"]
    protocols = [p for name in names for p in cp.stc_protocols(name, trials, seed=1, poisson=True, settle=SETTLE_MS)]
    spikes = cp.to_spikes(protocols, unit=1.0)
    keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.key(0), i))(np.arange(len(protocols)))
    args = (rule, neuron, spikes, keys, 30_000.0, 64, False)  # False: one synapse per trial
    before = _rss_mb()
    start = time.perf_counter()
    compiled = _batched.lower(*args).compile()
    compile_s = time.perf_counter() - start
    memory = compiled.compiled.memory_analysis()  # equinox's wrapper around jax's Compiled
    times = []
    for _ in range(config["repeats"]):
        start = time.perf_counter()
        solution = jax.block_until_ready(compiled(*args))
        times.append(time.perf_counter() - start)
    out = {
        "trials": len(protocols),
        "compile_s": compile_s,
        "run_s_median": float(np.median(times)),
        "run_s_min": float(np.min(times)),
        "peak_rss_mb": _rss_mb() - before,
        "events_per_trial_max": int(2 * spikes.pre_tick.shape[-1] + spikes.n_ticks // 30_000 + 1),
        "fine_steps_per_trial": int(round((SETTLE_MS + 8 * cp._stc_protocols.MS_PER_HOUR) / 0.2)),
        "post_spikes_mean": float(np.mean(np.asarray(solution.n_post))),
        "unprocessed_events": int(np.sum(np.asarray(solution.n_late))),
    }
    if memory is not None:
        out["xla_buffers_mb"] = (memory.argument_size_in_bytes + memory.output_size_in_bytes
                                 + memory.temp_size_in_bytes) / 2**20
    if config.get("outcomes"):
        h0 = float(rule.h0)
        ts = np.asarray(solution.ts[0])
        at_7h = int(np.flatnonzero(np.isclose(ts, SETTLE_MS + 7 * cp._stc_protocols.MS_PER_HOUR))[0])
        w = 100 * np.asarray(solution.h + rule.h0 * solution.z)[:, at_7h] / h0
        codes = np.asarray(cp.classify_outcome(rule, solution.state.z, solution.stats.h_max, solution.stats.h_min))
        protein = np.asarray(solution.stats.time_pro) > 0
        h_min = 100 * np.asarray(solution.stats.h_min) / h0
        out["outcomes"] = {}
        for i, name in enumerate(names):
            part = slice(i * trials, (i + 1) * trials)
            counts = np.bincount(codes[part], minlength=len(cp.OUTCOMES))
            out["outcomes"][name] = {
                "w_at_7h_mean_pct": float(w[part].mean()),
                "w_at_7h_sd_pct": float(w[part].std()),
                "outcomes": {cp.OUTCOMES[k]: int(n) for k, n in enumerate(counts) if n},
                "trials_with_protein": int(protein[part].sum()),
                "lowest_h_mean_pct": float(h_min[part].mean()),
            }
    return out


def _run(config: dict) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--worker", json.dumps(config)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--x64", action="store_true")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--worker")
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return
    base = {"x64": args.x64, "repeats": args.repeats}
    results = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
        "dtype": "float64" if args.x64 else "float32",
        "bss2_s_per_8h_run": 28.8,
    }
    runs = {
        "stet_1_trial": {"kind": "batch", "protocols": ["STET"], "trials": 1, "neuron": True},
        "stet_100_trials": {"kind": "batch", "protocols": ["STET"], "trials": 100, "neuron": True},
        "stet_100_trials_no_neuron": {"kind": "batch", "protocols": ["STET"], "trials": 100, "neuron": False},
    }
    for label, config in runs.items():
        r = _run({**base, **config})
        results[label] = r
        print(f"{label}: compile {r['compile_s']:.1f} s, run {r['run_s_median']:.3f} s (min {r['run_s_min']:.3f}), "
              f"peak RSS +{r['peak_rss_mb']:.0f} MB, XLA buffers {r.get('xla_buffers_mb', float('nan')):.1f} MB, "
              f"<= {r['events_per_trial_max']} events vs {r['fine_steps_per_trial']:.3g} fine steps per trial, "
              f"{r['post_spikes_mean']:.2f} post spikes per trial", flush=True)
    outcomes = {}
    for name in ("STET", "WTET", "SLFS", "WLFS"):
        r = _run({**base, "kind": "batch", "protocols": [name], "trials": 100, "neuron": True, "outcomes": True,
                  "repeats": 1})
        o = r["outcomes"][name]
        o["run_s"], o["compile_s"] = r["run_s_median"], r["compile_s"]
        outcomes[name] = o
        print(f"{name}, 100 Poisson trials: w at 7 h {o['w_at_7h_mean_pct']:.1f} % (s.d. {o['w_at_7h_sd_pct']:.1f}), "
              f"outcomes {o['outcomes']}, with protein {o['trials_with_protein']}, lowest h {o['lowest_h_mean_pct']:.1f} %, "
              f"run {o['run_s']:.2f} s (compile {o['compile_s']:.1f} s)", flush=True)
    results["outcomes_100_trials"] = outcomes
    fine = _run({**base, "kind": "fine", "neuron": False})
    results["fine_step_reference_1h_stet"] = fine
    print(f"fine-step reference, 1 h STET, no neuron: {fine['steps']} steps in {fine['run_s']:.1f} s "
          f"({fine['ns_per_step']:.0f} ns per step), compile {fine['compile_s']:.1f} s", flush=True)
    with open(OUT, "w") as handle:
        json.dump(results, handle, indent=2)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
