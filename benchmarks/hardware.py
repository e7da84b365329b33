"""Benchmark: cost of the BSS-2 hardware layer against the float scan solver.

Workload (the foundation workload of benchmarks/solvers.py): preset DP, 21 dt values from
-100 to +100 ms, 100 synapses per dt (50 starting DOWN, 50 UP), 60 pairs at 1 Hz, noise on,
solver step 0.1 ms. Measured, each as the first call (trace + compile + run) and the best of
`--repeats` further calls (run only, results on the host):

- float: `stdp_ratios(method="scan")`;
- bss2 default (8-bit, stochastic rounding, update every 10 ms, integrated threshold times):
  calcium is stepped once per update period, so it is cheaper than the float scan;
- bss2 with an update every 0.1 ms (8-bit and 16-bit), the same steps as the float scan
  plus the processor's update and rounding at every step: the overhead proper;
- the float model and the 8-bit default run together (common random numbers), as the
  precision study does.

Also printed: the emulated chip's own wall time for the workload (1000x acceleration).
Float32 (JAX's default, as the command line runs) unless --x64. Writes benchmarks/hardware.json.

    python benchmarks/hardware.py [--x64] [--repeats N]
"""

import argparse
import json
import os
import platform
import time

import jax

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "hardware.json")
DTS = [float(dt) for dt in range(-100, 101, 10)]
SYNAPSES_PER_STATE = 50


def timed(fn, repeats):
    start = time.perf_counter()
    fn()
    first = time.perf_counter() - start
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - start)
    return first, min(runs)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--x64", action="store_true")
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    if args.x64:
        jax.config.update("jax_enable_x64", True)
    import ca_plast as cp

    rule = cp.gb2012_preset("DP")
    protocols = [cp.pairs(dt, 60, 1.0) for dt in DTS]
    key = jax.random.key(0)
    n = SYNAPSES_PER_STATE
    cases = {
        "float scan (0.1 ms steps)": lambda: cp.stdp_ratios(rule, protocols, method="scan", n_synapses=n, key=key),
        "bss2 default (8 bit, 10 ms)": lambda: cp.hardware_ratios(rule, protocols, cp.BSS2(), n_synapses=n, key=key),
        "bss2 8 bit, 0.1 ms updates": lambda: cp.hardware_ratios(rule, protocols, cp.BSS2(period=0.1), n_synapses=n,
                                                                 key=key),
        "bss2 16 bit, 0.1 ms updates": lambda: cp.hardware_ratios(
            rule, protocols, cp.BSS2(state=cp.FixedPoint(16, 15), period=0.1), n_synapses=n, key=key),
        "float + bss2 default together": lambda: cp.hardware_ratios(
            rule, protocols, (cp.BSS2(state=None), cp.BSS2()), n_synapses=n, key=key),
    }
    results = {"workload": f"DP, {len(DTS)} dt x {2 * n} synapses, 60 pairs at 1 Hz, step 0.1 ms",
               "dtype": "float64" if args.x64 else "float32", "machine": platform.processor() or platform.machine(),
               "cpu_count": os.cpu_count(), "jax": jax.__version__, "cases": {}}
    print(f"{results['workload']}, {results['dtype']}, {os.cpu_count()} CPUs")
    print(f"{'case':32s} {'first call (s)':>15s} {'run (s)':>9s} {'vs float':>9s}")
    base = None
    for name, fn in cases.items():
        first, run = timed(fn, args.repeats)
        base = run if base is None else base
        results["cases"][name] = {"first_call_s": first, "run_s": run, "relative_to_float": run / base}
        print(f"{name:32s} {first:15.2f} {run:9.2f} {run / base:9.2f}")
    chip_s = cp.BSS2().hardware_time(sum(p.duration for p in protocols)) / 1000
    results["chip_wall_s"] = chip_s
    print(f"emulated chip wall time for the workload: {chip_s:.2f} s (1000x acceleration, all protocols in sequence)")
    with open(OUT, "w") as handle:
        json.dump(results, handle, indent=1)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
