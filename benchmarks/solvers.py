"""Benchmark: scan solver vs event-driven solver vs closed form vs Brian2 (cython), on one workload, in one run.

Workload (issues 2 and 3, the Brian2 comparison): preset DP, 21 dt values from -100 to +100 ms,
100 synapses per dt (50 starting DOWN, 50 UP), 60 pairs at 1 Hz, noise on, scan step 0.1 ms.
Each measurement runs in its own subprocess so that its peak memory is its own. For each
solver the script prints and writes to benchmarks/solvers.json:

- compile time (trace + lower + XLA compile, `jax.jit(...).lower(...).compile()`),
- wall time after compilation (median and min over repeats, `block_until_ready`),
- peak memory: the process's peak resident set size above its level before compilation
  (`resource.getrusage(...).ru_maxrss`, includes the compiler) and XLA's buffer estimate of
  the compiled program (`compiled.memory_analysis()`: arguments + outputs + temporaries),
- synapse-seconds of biology per wall second, scan steps or events per second.

Then the cost scaling of the event solver: 60 pairs at 1 Hz vs 0.1 Hz (10 x the simulated
time, the same spikes) and 30..240 pairs at 1 Hz, with the scan solver's 0.1 Hz cost for
contrast on a reduced batch (3 dt values; reported per protocol).

Brian2 (cython target) is measured side by side on the same workload and machine, with the
model and machinery of benchmarks/startup.py (`brian2_worker`, run in Brian2's own virtual
environment, --brian2-venv, default ~/.cache/ca_plast/brian2-venv, made on first use): 50
synapses starting DOWN and 50 UP per dt, 21 dt, 60 pairs at 1 Hz, Euler-Maruyama step 0.1 ms.
Its `run()` is timed with a fresh code cache (cold, compiles) and again with that cache
(warm); the speed-up printed is Brian2's warm run() over the scan solver's median wall time
after compilation (warm with warm). Correctness: Brian2's change ratios agree with the scan
solver's within 3 combined standard errors + 0.02 at every dt (max |z| printed); the script
exits 1 when they do not.

Usage: python benchmarks/solvers.py [--x64] [--repeats N] [--no-scan-slow] [--only-scan]
                                    [--no-brian2] [--brian2-venv DIR] [--brian2-seed N]
--only-scan measures the scan solver (and Brian2 unless --no-brian2) only, for a quick
before/after comparison, and writes benchmarks/solvers_only_scan.json instead.
Float32 (JAX's default, as the CLI runs) unless --x64 (Brian2 always computes in float64).
"""

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "solvers.json")
OUT_ONLY_SCAN = os.path.join(HERE, "solvers_only_scan.json")
SYNAPSES_PER_DT = 100
PAIRS, FREQ, STEP_MS = 60, 1.0, 0.1
DTS = [float(dt) for dt in range(-100, 101, 10)]


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def worker(config: dict) -> dict:
    """One measurement in this process: build, compile, run, time, memory."""
    import jax

    if config["x64"]:
        jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    import numpy as np

    import ca_plast as cp

    rule = cp.gb2012_preset("DP")
    dts = config["dts"]
    protocols = [cp.pairs(dt, config["pairs"], config["freq"]) for dt in dts]
    spikes = cp.to_spikes(protocols, unit=config["step"])
    keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.key(0), i))(jnp.arange(len(dts)))
    n = SYNAPSES_PER_DT // 2
    solver = config["solver"]
    if solver == "events":
        def run(rule, spikes, keys):
            return jax.vmap(lambda s, k: cp.events_ratio(rule, s, n, key=k))(spikes, keys)
    elif solver == "scan":
        # As stdp_ratios runs it: vmap over protocols, the scan's default grid of 100 steps (10 ms).
        def run(rule, spikes, keys):
            return jax.vmap(lambda s, k: cp.scan_ratio(rule, s, n, key=k))(spikes, keys)
    else:
        def run(rule, spikes, keys):
            return jax.vmap(cp.closed_form_ratio, in_axes=(None, 0))(rule, spikes), None

    rss_before = _rss_mb()
    start = time.perf_counter()
    compiled = jax.jit(run).lower(rule, spikes, keys).compile()
    compile_s = time.perf_counter() - start
    analysis = compiled.memory_analysis()
    xla_mb = None
    if analysis is not None:
        xla_mb = (analysis.argument_size_in_bytes + analysis.output_size_in_bytes + analysis.temp_size_in_bytes) / 2**20
    times = []
    for _ in range(config["repeats"]):
        start = time.perf_counter()
        jax.block_until_ready(compiled(rule, spikes, keys))
        times.append(time.perf_counter() - start)
    ratio, sem = compiled(rule, spikes, keys)
    wall = float(np.median(times))
    duration_s = config["pairs"] * 1.0 / config["freq"]
    n_events = int(sum(p.pre.size + p.post.size + 1 for p in protocols))  # pre arrivals, post spikes, end
    n_steps = int(len(dts) * spikes.n_ticks)
    synapse_seconds = len(dts) * SYNAPSES_PER_DT * duration_s
    return {
        **{k: config[k] for k in ("solver", "pairs", "freq", "step")},
        "n_dt": len(dts),
        "synapses_per_dt": SYNAPSES_PER_DT if solver != "closed-form" else None,
        "compile_s": compile_s,
        "wall_s_median": wall,
        "wall_s_min": float(min(times)),
        "repeats": len(times),
        "peak_rss_increase_mb": _rss_mb() - rss_before,
        "xla_buffers_mb": xla_mb,
        "synapse_seconds_per_wall_s": synapse_seconds / wall if solver != "closed-form" else None,
        "events": n_events,
        "events_per_s": n_events / wall,
        "scan_steps": n_steps if solver == "scan" else None,
        "scan_steps_per_s": n_steps / wall if solver == "scan" else None,
        "ratio_at_dt": {f"{dt:g}": float(r) for dt, r in zip(dts, np.asarray(ratio))},
        "sem_at_dt": None if sem is None else {f"{dt:g}": float(e) for dt, e in zip(dts, np.asarray(sem))},
    }


def measure(solver: str, *, pairs: int = PAIRS, freq: float = FREQ, dts=DTS, repeats: int, x64: bool) -> dict:
    config = {"solver": solver, "pairs": pairs, "freq": freq, "step": STEP_MS, "dts": list(dts), "repeats": repeats,
              "x64": x64}
    out = subprocess.run([sys.executable, __file__, "--worker", json.dumps(config)], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"worker {config} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _line(r: dict) -> str:
    parts = [f"{r['solver']:>11}", f"{r['pairs']:>3} pairs at {r['freq']:g} Hz x {r['n_dt']} dt",
             f"wall {r['wall_s_median'] * 1e3:9.2f} ms (min {r['wall_s_min'] * 1e3:.2f})",
             f"compile {r['compile_s']:6.2f} s", f"peak RSS +{r['peak_rss_increase_mb']:.0f} MB"]
    if r["xla_buffers_mb"] is not None:
        parts.append(f"XLA buffers {r['xla_buffers_mb']:.2f} MB")
    if r["synapse_seconds_per_wall_s"] is not None:
        parts.append(f"{r['synapse_seconds_per_wall_s']:.3g} synapse-s/s")
    parts.append(f"{r['events_per_s']:.3g} events/s")
    if r["scan_steps_per_s"] is not None:
        parts.append(f"{r['scan_steps_per_s']:.3g} steps/s")
    return " | ".join(parts)


def _startup():
    """benchmarks/startup.py as a module: its Brian2 model and machinery, one copy for both benchmarks."""
    if HERE not in sys.path:
        sys.path.insert(0, HERE)
    import startup

    return startup


def measure_brian2(venv: str | None, seed: int) -> dict:
    """Brian2 (cython target) on the workload of `measure`, cold then warm, with startup.py's model and machinery."""
    from ca_plast._cache import user_cache_folder

    startup = _startup()
    if (startup.PAIRS, startup.FREQ, startup.STEP_MS) != (PAIRS, FREQ, STEP_MS):
        raise SystemExit(f"solvers.py: startup.py's workload ({startup.PAIRS} pairs at {startup.FREQ} Hz, step "
                         f"{startup.STEP_MS} ms) is not this one ({PAIRS} pairs at {FREQ} Hz, step {STEP_MS} ms)")
    venv = venv or str(user_cache_folder() / "brian2-venv")
    python = startup.brian2_python(venv)
    params, protocols = startup.workload(DTS)
    trials = SYNAPSES_PER_DT // 2  # per initial state: 50 DOWN + 50 UP per dt, as the scan solver runs
    with tempfile.TemporaryDirectory(prefix="ca_plast_solvers_") as work:
        config = {"target": "cython", "cache_dir": os.path.join(work, "brian2-cache"), "step_ms": STEP_MS,
                  "seed": seed, "params": params, "protocols": protocols, "trials": trials, "work": work}
        print("\nBrian2 (cython target), same workload:", flush=True)
        cold = startup.measure_brian2(python, config, "cold")
        warm = startup.measure_brian2(python, config, "warm")
    return {"venv": venv, "target": "cython", "seed": seed, "trials_per_state": trials, "step_ms": STEP_MS,
            "params": params, "cold": cold, "warm": warm, "cold_warm_identical": cold["ratio"] == warm["ratio"]}


def compare_with_scan(scan: dict, brian2: dict) -> dict:
    """Brian2's warm-run ratios vs the scan solver's: startup.compare (3 combined sem + 0.02 at every dt, max |z|)."""
    import numpy as np

    keys = [f"{dt:g}" for dt in DTS]
    curve = {"dt": np.asarray(DTS), "ratio": np.asarray([scan["ratio_at_dt"][k] for k in keys]),
             "sem": np.asarray([scan["sem_at_dt"][k] for k in keys])}
    print("\nchange ratios, scan solver (column ca_plast) vs Brian2:", end="")
    return _startup().compare(curve, brian2["warm"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--x64", action="store_true", help="float64 instead of JAX's default float32")
    parser.add_argument("--repeats", type=int, default=20, help="timed runs of the fast solvers (scan: at most 3)")
    parser.add_argument("--no-scan-slow", action="store_true", help="skip the scan solver at 0.1 Hz")
    parser.add_argument("--only-scan", action="store_true",
                        help="the scan solver (and Brian2 unless --no-brian2) only: no events, closed form or scaling;"
                             f" writes {os.path.basename(OUT_ONLY_SCAN)}")
    parser.add_argument("--no-brian2", action="store_true", help="skip the Brian2 measurement")
    parser.add_argument("--brian2-venv", default=None, metavar="DIR",
                        help="Brian2's virtual environment, made on first use (default: ~/.cache/ca_plast/brian2-venv)")
    parser.add_argument("--brian2-seed", type=int, default=1, help="Brian2's random seed")
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return 0

    import jax

    common = {"x64": args.x64}
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load average "
          f"{[round(x, 2) for x in os.getloadavg()]}, "
          f"jax {jax.__version__} on {jax.devices()[0].platform}, {'float64' if args.x64 else 'float32'}")
    print(f"workload: preset DP, {len(DTS)} dt x {SYNAPSES_PER_DT} synapses (50 DOWN + 50 UP), {PAIRS} pairs at "
          f"{FREQ:g} Hz, noise on, scan step {STEP_MS} ms")
    results = {"scan": measure("scan", repeats=min(3, args.repeats), **common)}
    if not args.only_scan:
        results["events"] = measure("events", repeats=args.repeats, **common)
        results["closed-form"] = measure("closed-form", repeats=args.repeats, **common)
    for r in results.values():
        print(_line(r))
    scan = results["scan"]
    print(f"\nscan solver (issue 2 benchmark): wall {scan['wall_s_median']:.2f} s after compilation, "
          f"compile {scan['compile_s']:.2f} s, {scan['synapse_seconds_per_wall_s']:.3g} synapse-seconds per wall second")
    if not args.only_scan:
        events = results["events"]
        print(f"event solver (issue 3): wall {events['wall_s_median'] * 1e3:.1f} ms after compilation "
              f"(target < 100 ms), compile {events['compile_s']:.2f} s, "
              f"{events['synapse_seconds_per_wall_s']:.3g} synapse-seconds per wall second, "
              f"{scan['wall_s_median'] / events['wall_s_median']:.0f}x faster than scan")
        z = [abs(events["ratio_at_dt"][k] - results["closed-form"]["ratio_at_dt"][k]) / events["sem_at_dt"][k]
             for k in events["ratio_at_dt"] if events["sem_at_dt"][k] > 0]
        print(f"  events vs closed form: max |ratio difference| / sem = {max(z):.2f} over the {len(z)} dt with sem > 0")

    agree = True
    if not args.no_brian2:
        brian2 = measure_brian2(args.brian2_venv, args.brian2_seed)
        brian2["agreement"] = compare_with_scan(scan, brian2)
        warm, cold = brian2["warm"], brian2["cold"]
        speedup = warm["run_s"] / scan["wall_s_median"]
        brian2["speedup_scan_over_brian2_warm_run"] = speedup
        results["brian2"] = brian2
        results["speedup_scan_over_brian2_warm_run"] = speedup
        print(f"\nBrian2 {warm['brian2']} (cython), {len(DTS)} dt x {brian2['trials_per_state']} DOWN + "
              f"{brian2['trials_per_state']} UP synapses, step {STEP_MS} ms:")
        print(f"  run() warm (code cache reused) {warm['run_s']:7.2f} s   (whole process {warm['process_s']:.2f} s)")
        print(f"  run() cold (compiles)          {cold['run_s']:7.2f} s   (whole process {cold['process_s']:.2f} s)")
        print(f"  scan solver wall (median)      {scan['wall_s_median']:7.2f} s   (after compilation, "
              f"compile {scan['compile_s']:.2f} s)")
        print(f"scan solver is {speedup:.1f}x faster than Brian2 (cython)  (Brian2 warm run() / scan wall median)")
        if not args.only_scan:
            events_speedup = warm["run_s"] / results["events"]["wall_s_median"]
            brian2["speedup_events_over_brian2_warm_run"] = events_speedup
            print(f"event solver is {events_speedup:.0f}x faster than Brian2 (cython)  "
                  "(Brian2 warm run() / event wall median)")
        agreement = brian2["agreement"]
        agree = agreement["agree"]
        print(f"Brian2 vs scan solver change ratios: max |z| {agreement['max_abs_z']:.2f}, "
              f"{'agree' if agree else 'DISAGREE at dt ' + str(agreement['mismatched_dt'])}"
              " (3 combined sem + 0.02 at every dt)")

    if not args.only_scan:
        events = results["events"]
        print(f"\ncost vs spikes and vs simulated time (event solver, {len(DTS)} dt x {SYNAPSES_PER_DT} synapses):")
        scaling = [measure("events", pairs=pairs, freq=freq, repeats=args.repeats, **common)
                   for pairs, freq in ((60, 0.1), (30, 1.0), (120, 1.0), (240, 1.0))]
        scaling.insert(0, events)
        for r in scaling:
            print(_line(r))
        slow = scaling[1]
        print(f"60 pairs at 0.1 Hz (600 s) vs 1 Hz (60 s): event solver wall x{slow['wall_s_median'] / events['wall_s_median']:.2f}"
              " for 10 x the simulated time, same spikes")
        results["events_scaling"] = scaling
        if not args.no_scan_slow:
            reduced = [-10.0, 10.0, 20.0]
            scan_fast = measure("scan", dts=reduced, repeats=1, **common)
            scan_slow = measure("scan", freq=0.1, dts=reduced, repeats=1, **common)
            for r in (scan_fast, scan_slow):
                print(_line(r))
            print(f"scan solver, same 3 protocols: 0.1 Hz vs 1 Hz wall x{scan_slow['wall_s_median'] / scan_fast['wall_s_median']:.1f}")
            results["scan_scaling"] = [scan_fast, scan_slow]
    results["machine"] = {"processor": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
                          "jax": jax.__version__, "dtype": "float64" if args.x64 else "float32",
                          "brian2": results.get("brian2", {}).get("warm", {}).get("brian2"),
                          "load_average_end": [round(x, 2) for x in os.getloadavg()]}
    out = OUT_ONLY_SCAN if args.only_scan else OUT
    with open(out, "w") as handle:
        json.dump(results, handle, indent=1)
    print(f"\nwrote {out}")
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(main())
