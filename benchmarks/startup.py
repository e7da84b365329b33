"""Benchmark: start-up of the `ca-plast` command line (compilation cache cold and warm) vs Brian2, in one run.

Workload (the Brian2 comparison of issues 2 and 3): preset DP, 21 dt = t_post - t_pre from
-100 to +100 ms in steps of 10, 60 pairs at 1 Hz (`ca_plast.pairs`: protocol of 60 s, pair k
at k s, the earlier spike of each pair at k s), 100 synapses starting DOWN (rho = 0) and 100
starting UP (rho = 1) per dt (4200 in all), noise on, readout GB2012's change ratio.

1. ca_plast, whole process (`subprocess`, `time.perf_counter` around it):
   `ca-plast stdp --preset DP --method events --trials 100 --csv OUT.csv`. Each round makes a
   fresh, empty cache folder (CA_PLAST_CACHE_DIR): its first run compiles every program and
   fills the folder (JAX's cache and the stored executables of the batched solver and the
   keys), the --repeats runs after it load them (warm cache). --rounds rounds;
   medians of first and of later runs, ratio later / first (target <= 0.40). One run with
   --no-cache for reference, and `python -c "import ca_plast._cli"` (the import floor: what
   any run pays before it computes). Every run must write the same CSV (same seed).
2. Brian2 2.x, cython target (C++ generated, compiled with the machine's compiler), the same
   workload, in its own virtual environment (--brian2-venv, default
   ~/.cache/ca_plast/brian2-venv, created with `pip install brian2` on first use). Model
   (`brian2_worker`): one calcium trace per dt (c, linear, exact exponential decay; a
   presynaptic spike adds C_pre after the synaptic delay D, a postsynaptic spike adds
   C_post), 200 synapses per dt reading it as a linked variable, and

       drho/dt = [-rho (1 - rho)(rho_star - rho) + gamma_p (1 - rho) H(c - theta_p)
                  - gamma_d rho H(c - theta_d)] / tau + sigma sqrt((H(c - theta_p) + H(c - theta_d)) / tau) xi

   (ca_plast's `_early_phase` equation; H(x) = [x > 0]), Euler-Maruyama (`method='euler'`: the
   noise is additive for Brian2, its amplitude depends on c, not on rho) with a 0.1 ms step,
   spikes delivered before the state update of their step, run for the protocol's duration
   (60 s; arrivals after it are dropped, as in ca_plast). Parameters come from
   `ca_plast.gb2012_preset('DP')` as JSON. Timed as a whole process and its `run()` alone,
   with a fresh code cache (cold, compiles) and again with that cache (warm): compare warm
   with warm.
3. Correctness: Brian2's change ratios agree with the ca_plast CSV (events method, same
   workload) within 3 combined standard errors + 0.02 at every dt; prints max |z|.

Usage: python benchmarks/startup.py [--rounds N] [--repeats N] [--quick] [--no-brian2] [--brian2-venv DIR]
Writes benchmarks/startup.json. The timings are whole-process wall times on this machine:
the load average is printed with them.
"""

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "startup.json")
TRIALS = 100  # per initial state: 100 DOWN + 100 UP per dt
PAIRS, FREQ, STEP_MS = 60, 1.0, 0.1
DT_RANGE, QUICK_DT_RANGE = "-100:100:10", "-20:20:10"
# brian2 2.9.0 calls np.ndarray.ptp, which NumPy 2.4 removed.
BRIAN2_REQUIREMENTS = ["brian2", "numpy<2.4"]
TARGET_RATIO, TARGET_SPEEDUP = 0.40, 15.0


# ---------------------------------------------------------------------------------------------
# Brian2 side: runs in the Brian2 virtual environment, imports nothing from ca_plast.

def brian2_worker(config: dict) -> dict:
    """The workload in Brian2 (cython target); returns timings, U, D, ratio and sem per dt."""
    start_process = config["process_started"]
    t0 = time.perf_counter()
    import brian2
    import numpy as np
    from brian2 import Network, NeuronGroup, SpikeGeneratorGroup, Synapses, defaultclock, linked_var, ms, prefs, seed

    import_s = time.perf_counter() - t0
    prefs.codegen.target = config["target"]
    if config["target"] == "cython":
        prefs.codegen.runtime.cython.cache_dir = config["cache_dir"]
    defaultclock.dt = config["step_ms"] * ms
    seed(config["seed"])
    p = config["params"]
    protocols = config["protocols"]  # [{"pre": [...], "post": [...], "duration": ms}], one per dt
    n_dt, n = len(protocols), config["trials"]
    duration = protocols[0]["duration"]
    assert all(q["duration"] == duration for q in protocols)
    namespace = {
        "tau_ca": p["tau_ca"] * ms, "C_pre": p["C_pre"], "C_post": p["C_post"],
        "theta_p": p["theta_p"], "theta_d": p["theta_d"], "gamma_p": p["gamma_p"], "gamma_d": p["gamma_d"],
        "tau": p["tau"] * ms, "sigma": p["sigma"], "rho_star": p["rho_star"],
    }
    t1 = time.perf_counter()
    calcium = NeuronGroup(n_dt, "dc/dt = -c / tau_ca : 1", method="exact", namespace=namespace, order=1, name="calcium")
    synapses = NeuronGroup(
        n_dt * 2 * n,
        """
        hp = int(c > theta_p) : 1
        hd = int(c > theta_d) : 1
        drho/dt = (-rho * (1 - rho) * (rho_star - rho) + gamma_p * (1 - rho) * hp - gamma_d * rho * hd) / tau
                  + sigma * sqrt((hp + hd) / tau) * xi : 1
        c : 1 (linked)
        """,
        method="euler", namespace=namespace, order=0, name="synapses",
    )
    synapses.c = linked_var(calcium, "c", index=np.repeat(np.arange(n_dt), 2 * n))
    # Synapses 0..n-1 of each dt start DOWN, n..2n-1 UP.
    synapses.rho = np.tile(np.repeat([0.0, 1.0], n), n_dt)

    def generator(side):
        index = np.concatenate([np.full(len(q[side]), i) for i, q in enumerate(protocols)])
        times = np.concatenate([np.asarray(q[side], float) for q in protocols])
        return SpikeGeneratorGroup(n_dt, index, times * ms, name=f"{side}_generator")

    pre, post = generator("pre"), generator("post")
    on_pre = Synapses(pre, calcium, on_pre="c_post += C_pre", delay=p["D"] * ms, namespace=namespace, name="pre_arrivals")
    on_pre.connect(j="i")
    on_post = Synapses(post, calcium, on_pre="c_post += C_post", namespace=namespace, name="post_spikes")
    on_post.connect(j="i")
    net = Network(calcium, synapses, pre, post, on_pre, on_post)
    # Spikes of a step (and delayed arrivals due in it) reach the calcium before the state
    # update of that step: rho over [t, t + dt] sees calcium just after an event at t, as in
    # the event-driven solver.
    net.schedule = ["start", "thresholds", "synapses", "groups", "resets", "end"]
    setup_s = time.perf_counter() - t1
    t2 = time.perf_counter()
    net.run(duration * ms)
    run_s = time.perf_counter() - t2
    rho = np.asarray(synapses.rho[:]).reshape(n_dt, 2, n)
    up = np.mean(rho[:, 0, :] > p["rho_star"], axis=1)  # P(DOWN -> UP)
    down = np.mean(rho[:, 1, :] <= p["rho_star"], axis=1)  # P(UP -> DOWN)
    beta, b = p["beta"], p["b"]
    after = beta * (1 - up) + (1 - beta) * down + b * (beta * up + (1 - beta) * (1 - down))
    norm = beta + (1 - beta) * b
    sem = abs(b - 1) / norm * np.sqrt(beta**2 * up * (1 - up) / n + (1 - beta) ** 2 * down * (1 - down) / n)
    return {
        "brian2": brian2.__version__, "numpy": np.__version__, "target": config["target"],
        "import_s": import_s, "setup_s": setup_s, "run_s": run_s,
        "in_process_s": time.perf_counter() - start_process,
        "up": up.tolist(), "down": down.tolist(), "ratio": (after / norm).tolist(), "sem": sem.tolist(),
        "rho_final": rho.reshape(n_dt, -1).tolist() if config.get("return_rho") else None,
    }


# ---------------------------------------------------------------------------------------------
# ca_plast side: the measuring process (the ca_plast virtual environment).

def _run(cmd: list[str], env: dict | None = None) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {out.returncode}:\n{out.stderr[-3000:]}")
    return seconds, out


def _ca_plast_executable() -> str:
    beside = os.path.join(os.path.dirname(sys.executable), "ca-plast")
    found = beside if os.path.exists(beside) else shutil.which("ca-plast")
    if found is None:
        raise SystemExit("startup.py: no ca-plast console script beside this Python or on PATH; pip install -e .")
    return found


def _folder_size(folder: str) -> tuple[int, int]:
    files = [os.path.join(root, f) for root, _, names in os.walk(folder) for f in names]
    return len(files), sum(os.path.getsize(f) for f in files)


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def measure_ca_plast(dt_range: str, rounds: int, repeats: int, work: str) -> dict:
    """First (empty cache folder) and later (warm) whole-process runs, one --no-cache run, the import floor."""
    exe = _ca_plast_executable()
    base = [exe, "stdp", "--preset", "DP", "--method", "events", "--trials", str(TRIALS), "--dt-range", dt_range]
    first, later, csvs, entries = [], [], set(), []
    reference_csv = None
    for r in range(rounds):
        folder = tempfile.mkdtemp(prefix="cache-", dir=work)
        env = {**os.environ, "CA_PLAST_CACHE_DIR": folder}
        for k in range(1 + repeats):
            csv = os.path.join(work, f"ca_plast_{r}_{k}.csv")
            seconds, _ = _run(base + ["--csv", csv], env)
            (first if k == 0 else later).append(seconds)
            with open(csv) as handle:
                csvs.add(handle.read())
            reference_csv = reference_csv or csv
            if k == 0:
                entries.append(_folder_size(folder))
            print(f"  round {r + 1}/{rounds} {'first (empty cache)' if k == 0 else 'warm cache'}: {seconds:6.2f} s"
                  f"  load {_load()}", flush=True)
    csv = os.path.join(work, "ca_plast_nocache.csv")
    no_cache, _ = _run(base + ["--csv", csv, "--no-cache"])
    with open(csv) as handle:
        csvs.add(handle.read())
    print(f"  --no-cache: {no_cache:6.2f} s  load {_load()}", flush=True)
    imports = [_run([sys.executable, "-c", "import ca_plast._cli"])[0] for _ in range(3)]
    print(f"  import ca_plast._cli: {', '.join(f'{s:.2f}' for s in imports)} s  load {_load()}", flush=True)
    return {
        "command": " ".join(["ca-plast"] + base[1:] + ["--csv", "OUT.csv"]),
        "first_s": first, "later_s": later, "no_cache_s": no_cache, "import_s": imports,
        "first_median_s": statistics.median(first), "later_median_s": statistics.median(later),
        "import_median_s": statistics.median(imports),
        "ratio_later_over_first": statistics.median(later) / statistics.median(first),
        "cache_entries_after_first_run": [n for n, _ in entries],
        "cache_bytes_after_first_run": [size for _, size in entries],
        "identical_csv_all_runs": len(csvs) == 1,
        "csv": reference_csv,
    }


def brian2_python(venv: str) -> str:
    """The Brian2 environment's Python: made (`python -m venv`, `pip install brian2`) on first use, reused after."""
    python = os.path.join(venv, "bin", "python")
    check = [python, "-c", "import brian2, Cython; print(brian2.__version__)"]
    if os.path.exists(python) and subprocess.run(check, capture_output=True).returncode == 0:
        print(f"Brian2 environment: {venv} (reused)")
        return python
    print(f"Brian2 environment: creating {venv} (pip install {' '.join(BRIAN2_REQUIREMENTS)}) ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    subprocess.run([python, "-m", "pip", "install", "-q", *BRIAN2_REQUIREMENTS], check=True)
    subprocess.run(check, check=True)
    return python


def measure_brian2(python: str, config: dict, label: str) -> dict:
    """One Brian2 worker process, timed whole; its own timings and results come back as JSON."""
    path = os.path.join(config["work"], f"brian2_{label}.json")
    with open(path, "w") as handle:
        json.dump(config, handle)
    seconds, out = _run([python, os.path.abspath(__file__), "--brian2-worker", path])
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["process_s"] = seconds
    print(f"  Brian2 {label}: whole process {seconds:6.2f} s, run() {result['run_s']:6.2f} s, "
          f"import {result['import_s']:.2f} s  load {_load()}", flush=True)
    return result


def workload(dts) -> tuple[dict, list[dict]]:
    """Preset DP's parameters (ms, float32 values rounded to 7 digits) and the protocols, from ca_plast."""
    import ca_plast as cp

    rule = cp.gb2012_preset("DP")

    def value(x):
        return float(f"{float(x):.7g}")

    params = {k: value(getattr(rule.calcium, k)) for k in ("tau_ca", "C_pre", "C_post", "D")}
    params.update({k: value(getattr(rule, k)) for k in
                   ("theta_p", "theta_d", "gamma_p", "gamma_d", "tau", "sigma", "rho_star", "beta", "b")})
    protocols = []
    for dt in dts:
        p = cp.pairs(float(dt), PAIRS, FREQ)
        protocols.append({"dt": float(dt), "pre": p.pre.tolist(), "post": p.post.tolist(), "duration": p.duration})
    return params, protocols


def read_csv(path: str) -> dict:
    import numpy as np

    data = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)
    return {"dt": data[:, 0], "ratio": data[:, 1], "sem": data[:, 2]}


def compare(ca: dict, b2: dict) -> dict:
    import numpy as np

    diff = np.asarray(b2["ratio"]) - ca["ratio"]
    se = np.sqrt(np.asarray(b2["sem"]) ** 2 + ca["sem"] ** 2)
    ok = np.abs(diff) <= 3 * se + 0.02
    z = np.where(se > 0, diff / np.where(se > 0, se, 1.0), np.where(diff == 0, 0.0, np.inf))
    print(f"\n{'dt ms':>6} {'ca_plast':>17} {'Brian2':>17} {'z':>6}")
    for i, dt in enumerate(ca["dt"]):
        print(f"{dt:6g} {ca['ratio'][i]:8.3f} +- {ca['sem'][i]:5.3f} {b2['ratio'][i]:8.3f} +- {b2['sem'][i]:5.3f}"
              f" {z[i]:6.2f}{'' if ok[i] else '  MISMATCH'}")
    return {"agree": bool(ok.all()), "max_abs_z": float(np.max(np.abs(z))), "z": z.tolist(),
            "mismatched_dt": ca["dt"][~ok].tolist()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--brian2-worker", help=argparse.SUPPRESS)
    parser.add_argument("--rounds", type=int, default=3, help="fresh cache folders (first run + --repeats warm runs each)")
    parser.add_argument("--repeats", type=int, default=3, help="warm-cache runs after each first run")
    parser.add_argument("--quick", action="store_true", help=f"smoke run: dt {QUICK_DT_RANGE}, 1 round of 1 warm run")
    parser.add_argument("--no-brian2", action="store_true", help="ca_plast only")
    parser.add_argument("--brian2-venv", default=None, metavar="DIR",
                        help="Brian2's virtual environment, made on first use (default: ~/.cache/ca_plast/brian2-venv)")
    parser.add_argument("--brian2-seed", type=int, default=1, help="Brian2's random seed")
    args = parser.parse_args()
    if args.brian2_worker:
        started = time.perf_counter()
        with open(args.brian2_worker) as handle:
            config = json.load(handle)
        config["process_started"] = started
        print(json.dumps(brian2_worker(config)))
        return 0

    import jax

    from ca_plast._cache import user_cache_folder
    from ca_plast._cli import parse_range

    dt_range = QUICK_DT_RANGE if args.quick else DT_RANGE
    rounds, repeats = (1, 1) if args.quick else (args.rounds, args.repeats)
    dts = parse_range(dt_range)
    venv = args.brian2_venv or str(user_cache_folder() / "brian2-venv")
    print(f"machine: {platform.platform()}, {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"load average {_load()}; jax {jax.__version__} on {jax.devices()[0].platform}")
    print(f"workload: preset DP, {dts.size} dt ({dt_range} ms) x {TRIALS} DOWN + {TRIALS} UP synapses, "
          f"{PAIRS} pairs at {FREQ:g} Hz, noise on, Brian2 step {STEP_MS} ms")
    results: dict = {"workload": {"preset": "DP", "dt_ms": dts.tolist(), "trials_per_state": TRIALS, "pairs": PAIRS,
                                  "freq_hz": FREQ, "brian2_step_ms": STEP_MS},
                     "load_average_start": _load()}
    with tempfile.TemporaryDirectory(prefix="ca_plast_startup_") as work:
        print("\nca_plast command line:")
        ca = measure_ca_plast(dt_range, rounds, repeats, work)
        ca_curve = read_csv(ca["csv"])
        ca["csv"] = {k: v.tolist() for k, v in ca_curve.items()}
        results["ca_plast"] = ca
        if not args.no_brian2:
            python = brian2_python(venv)
            params, protocols = workload(dts)
            config = {"target": "cython", "cache_dir": os.path.join(work, "brian2-cache"), "step_ms": STEP_MS,
                      "seed": args.brian2_seed, "params": params, "protocols": protocols, "trials": TRIALS,
                      "work": work}
            print("\nBrian2 (cython target):")
            cold = measure_brian2(python, config, "cold")
            warm = measure_brian2(python, config, "warm")
            agreement = compare(ca_curve, warm)
            results["brian2"] = {"venv": venv, "params": params, "cold": cold, "warm": warm,
                                 "cold_warm_identical": cold["ratio"] == warm["ratio"], "agreement": agreement}
    results["load_average_end"] = _load()
    results["machine"] = {"cpus": os.cpu_count(), "platform": platform.platform(),
                          "processor": platform.processor() or platform.machine(), "python": platform.python_version(),
                          "jax": jax.__version__, "brian2": results.get("brian2", {}).get("warm", {}).get("brian2")}

    print("\nsummary (whole-process wall time, median):")
    print(f"  ca-plast first run (empty cache)   {ca['first_median_s']:7.2f} s")
    print(f"  ca-plast second run (warm cache)   {ca['later_median_s']:7.2f} s   (import floor {ca['import_median_s']:.2f} s,"
          f" --no-cache {ca['no_cache_s']:.2f} s)")
    ratio = ca["ratio_later_over_first"]
    print(f"  ratio second / first               {ratio:7.2f}     target <= {TARGET_RATIO:.2f}: "
          f"{'met' if ratio <= TARGET_RATIO else 'NOT met'}")
    print(f"  identical CSV in every run: {ca['identical_csv_all_runs']}")
    if "brian2" in results:
        b2 = results["brian2"]
        speedup = b2["warm"]["process_s"] / ca["later_median_s"]
        b2["speedup_ca_plast_second_over_brian2_warm"] = speedup
        b2["speedup_vs_run_only"] = b2["warm"]["run_s"] / ca["later_median_s"]
        print(f"  Brian2 cython, cold (compiles)     {b2['cold']['process_s']:7.2f} s   (run() {b2['cold']['run_s']:.2f} s)")
        print(f"  Brian2 cython, warm whole process  {b2['warm']['process_s']:7.2f} s")
        print(f"  Brian2 cython, warm run() only     {b2['warm']['run_s']:7.2f} s")
        print(f"  speed-up ca-plast second run vs Brian2 warm process {speedup:6.1f}x   target >= {TARGET_SPEEDUP:g}x: "
              f"{'met' if speedup >= TARGET_SPEEDUP else 'NOT met'}  (vs run() only {b2['speedup_vs_run_only']:.1f}x)")
        agreement = b2["agreement"]
        print(f"  Brian2 vs ca_plast change ratios: max |z| {agreement['max_abs_z']:.2f}, "
              f"{'agree' if agreement['agree'] else 'DISAGREE at dt ' + str(agreement['mismatched_dt'])}"
              " (3 combined sem + 0.02 at every dt)")
    print(f"  load average: start {results['load_average_start']}, end {results['load_average_end']}"
          f" on {os.cpu_count()} CPUs")
    with open(OUT, "w") as handle:
        json.dump(results, handle, indent=1)
    print(f"\nwrote {OUT}")
    return 0 if results.get("brian2", {}).get("agreement", {}).get("agree", True) else 1


if __name__ == "__main__":
    sys.exit(main())
