"""Benchmark: speed, memory and accuracy of the population-density solver (`ca_plast.solve_density`).

a. Speed, in float64 (jax_enable_x64) and float32, each in its own subprocess: wall time
   after compilation (median over `--repeats` runs, `jax.block_until_ready`) and compile time
   (`eqx.filter_jit(...).lower(...).compile()`) of
   (i) the value and gradient (`eqx.filter_value_and_grad` over the whole rule) of the mean
       z^2 loss `fitting.chi2` of `density_ratio` on Sjostrom 2001 (10 protocols, 75 pairs
       each), presets cortical_slices and DP; target <= 100 ms;
   (ii) a 21-point STDP curve (dt = -100..100 ms step 10, 60 pairs at 1 Hz, preset DP),
       forward only; target <= 50 ms.
   The grid is the default `DensityGrid()` (100 cells per unit, margin 0.75, 1 drive step,
   2 events per remap).
b. Memory of reverse mode: XLA's buffer sizes of the compiled value-and-gradient program
   (`compiled.memory_analysis()`: temporaries, arguments, outputs), next to the forward-only
   loss for contrast, in MB.
c. Convergence (float64): max |ratio - reference| over the protocols of Sjostrom 2001 and of
   the DP 60-pair STDP curve at dt = +10, -10, -20 ms, presets DP and cortical_slices, for
   cells_per_unit in (25, 50, 100, 200, 400) x splitting (events_per_remap E, drive_steps K)
   in (E 2 K 1: the default; E 1 K 1; E 1 K 2; E 1 K 4); reference: cells_per_unit 800,
   E 1, K 4. Solved with `solve_density` directly (no automatic
   widening); a `*` marks settings that `check_density` rejects.
d. The closed-form limit (float64): GB2012's closed form is invariant under
   (tau, gamma_p, gamma_d, sigma^2) -> (k tau, k gamma_p, k gamma_d, k sigma^2), the model
   is not (its cubic drift slows down by k). For the GB2012 Fig. 2 presets, 60 pairs at
   1 Hz, dt = -100..100 ms step 5: max |density - closed form| at k = 1 and k = 1000
   (`density_ratios`, default grid at k = 1; at k = 1000, 400 cells per unit: the drift no
   longer spreads rho, the noise alone covers fewer than 6 cells of the default grid, which
   `check_density` refuses). Acceptance for k = 1000: <= 0.005. At k = 1000 both
   are also compared with the model without its cubic drift, solved exactly (the threshold
   drive's affine maps composed, `without_cubic`): the k -> infinity limit of the model.
   The scaling keeps gamma / tau and sigma^2 / tau, so the drive of every pairing stays the
   same; the closed form's averaging of that drive over the protocol is an approximation
   the scaling does not remove, and this column measures it.

Usage: python benchmarks/density.py [--repeats N] [--sections abcd] [--json PATH]
About 5-7 minutes on 2 CPU cores, most of it XLA compilation (every grid setting of the
convergence table compiles anew). Prints the numbers; writes JSON only with --json.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import time

PRESETS_SPEED = ("cortical_slices", "DP")
CURVE_DTS = [float(dt) for dt in range(-100, 101, 10)]
CONVERGENCE_PRESETS = ("DP", "cortical_slices")
CONVERGENCE_DTS = (10.0, -10.0, -20.0)
CELLS = (25, 50, 100, 200, 400)
SPLITTINGS = ((2, 1), (1, 1), (1, 2), (1, 4))  # (events_per_remap, drive_steps)
REFERENCE = (800, 1, 4)
FIG2_PRESETS = ("DP", "DPD", "DPDprime", "P", "D", "Dprime")
LIMIT_DTS = [float(dt) for dt in range(-100, 101, 5)]
LIMIT_K = (1.0, 1000.0)
LIMIT_CELLS = 400  # grid at k = 1000, where the noise of a protocol spreads rho over < 6 cells of the default one
TARGET_GRAD_MS, TARGET_CURVE_MS, TARGET_LIMIT = 100.0, 50.0, 0.005
MB = 2**20


def speed(dtype: str, repeats: int) -> dict:
    """Sections a and b in this process, in `dtype` (float32 or float64)."""
    import jax

    jax.config.update("jax_enable_x64", dtype == "float64")
    import equinox as eqx
    import jax.numpy as jnp
    import numpy as np

    import ca_plast
    from ca_plast import fitting

    grid = ca_plast.DensityGrid()
    dataset = fitting.load_dataset("sjostrom2001")
    spikes = dataset.spikes()
    data, sem = jnp.asarray(dataset.data), jnp.asarray(dataset.sem)

    def loss(rule, spikes, data, sem):
        return fitting.chi2(jax.vmap(lambda s: ca_plast.density_ratio(rule, s, grid))(spikes), data, sem)

    def curve(rule, spikes):
        return jax.vmap(lambda s: ca_plast.density_ratio(rule, s, grid))(spikes)

    def compiled(fun, *args):
        start = time.perf_counter()
        out = eqx.filter_jit(fun).lower(*args).compile()
        return out, time.perf_counter() - start

    def wall_ms(fun, *args) -> float:
        jax.block_until_ready(fun(*args))
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            jax.block_until_ready(fun(*args))
            times.append(time.perf_counter() - start)
        return 1e3 * float(np.median(times))

    def buffers(fun) -> dict:
        analysis = fun.compiled.memory_analysis()
        return {
            "temp_mb": analysis.temp_size_in_bytes / MB,
            "argument_mb": analysis.argument_size_in_bytes / MB,
            "output_mb": analysis.output_size_in_bytes / MB,
            "generated_code_mb": analysis.generated_code_size_in_bytes / MB,
        }

    rules = {name: ca_plast.gb2012_preset(name) for name in PRESETS_SPEED}
    first = rules[PRESETS_SPEED[0]]
    value_and_grad, grad_compile_s = compiled(eqx.filter_value_and_grad(loss), first, spikes, data, sem)
    forward, forward_compile_s = compiled(loss, first, spikes, data, sem)
    grad = {}
    for name, rule in rules.items():
        value, _ = value_and_grad(rule, spikes, data, sem)
        grad[name] = {"wall_ms": wall_ms(value_and_grad, rule, spikes, data, sem), "loss": float(value),
                      "forward_wall_ms": wall_ms(forward, rule, spikes, data, sem)}

    dp = ca_plast.gb2012_preset("DP")
    curve_spikes = ca_plast.to_spikes([ca_plast.pairs(dt, 60, 1.0) for dt in CURVE_DTS])
    curve_fun, curve_compile_s = compiled(curve, dp, curve_spikes)
    return {
        "dtype": dtype,
        "repeats": repeats,
        "grad": grad,
        "grad_compile_s": grad_compile_s,
        "forward_compile_s": forward_compile_s,
        "curve_wall_ms": wall_ms(curve_fun, dp, curve_spikes),
        "curve_compile_s": curve_compile_s,
        "memory_value_and_grad": buffers(value_and_grad),
        "memory_forward": buffers(forward),
    }


def run_speed(dtype: str, repeats: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--speed-worker", dtype, "--repeats", str(repeats)],
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"speed worker ({dtype}) failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def convergence() -> dict:
    """Section c (float64, this process)."""
    import jax
    import numpy as np

    import ca_plast
    from ca_plast import fitting

    sjostrom = fitting.load_dataset("sjostrom2001").protocols
    protocols = list(sjostrom) + [ca_plast.pairs(dt, 60, 1.0) for dt in CONVERGENCE_DTS]
    spikes = ca_plast.to_spikes(protocols, unit=1.0)
    parts = {"sjostrom2001": slice(0, len(sjostrom)), "stdp": slice(len(sjostrom), None)}
    rules = {name: ca_plast.gb2012_preset(name) for name in CONVERGENCE_PRESETS}

    def solve(grid):
        """Ratios per preset, wall time of one batch (s), and whether check_density accepts every preset."""
        fun = jax.jit(jax.vmap(lambda rule, s: ca_plast.solve_density(rule, s, grid), in_axes=(None, 0)))
        ratios, accepted, seconds = {}, True, []
        for name, rule in rules.items():
            jax.block_until_ready(fun(rule, spikes))
            start = time.perf_counter()
            solution = jax.block_until_ready(fun(rule, spikes))
            seconds.append(time.perf_counter() - start)
            ratios[name] = np.asarray(rule.change_ratio(solution.up, solution.down))
            try:
                ca_plast.check_density(solution, grid)
            except ValueError:
                accepted = False
        return ratios, float(np.mean(seconds)), accepted

    cells, merge, steps = REFERENCE
    reference, reference_s, _ = solve(ca_plast.DensityGrid(cells, drive_steps=steps, events_per_remap=merge))
    rows = []
    for cells in CELLS:
        for merge, steps in SPLITTINGS:
            ratios, seconds, accepted = solve(ca_plast.DensityGrid(cells, drive_steps=steps, events_per_remap=merge))
            errors = {f"{name}/{part}": float(np.max(np.abs(ratios[name][where] - reference[name][where])))
                      for name in rules for part, where in parts.items()}
            rows.append({"cells_per_unit": cells, "events_per_remap": merge, "drive_steps": steps,
                         "max_abs_error": errors, "wall_s_per_preset": seconds, "accepted": accepted})
    return {"reference": {"cells_per_unit": REFERENCE[0], "events_per_remap": REFERENCE[1],
                          "drive_steps": REFERENCE[2], "wall_s_per_preset": reference_s},
            "rows": rows, "protocols": [p.name or "" for p in protocols]}


def without_cubic(rule, spikes):
    """Exact change ratio of the model with its cubic drift switched off (one unbatched protocol).

    Without the cubic, rho is linear in itself: the protocol is the composition of the
    exact threshold-drive maps of its intervals (`GraupnerBrunel2012.drive`, `Affine.after`),
    one Gaussian per initial state, read off at rho_star. This is the k -> infinity limit of
    the scaling in section d, which GB2012's closed form approximates by averaging the drive.
    """
    import jax
    import jax.numpy as jnp
    from jax.scipy.special import ndtr

    import ca_plast
    from ca_plast._spikes import POST, PRE

    calcium = rule.calcium
    intervals, kinds, active = ca_plast.event_sequence(spikes, calcium.D)

    def body(carry, event):
        state, total = carry
        s, kind, act = event
        total = rule.drive(calcium.concentration(state), s).after(total)
        state = calcium.decay(state, s)
        state = jax.tree.map(lambda new, old: jnp.where(act & (kind == PRE), new, old), calcium.on_pre(state), state)
        state = jax.tree.map(lambda new, old: jnp.where(act & (kind == POST), new, old), calcium.on_post(state), state)
        return (state, total), None

    start = (calcium.init(), ca_plast.Affine.identity(jnp.zeros_like(intervals[0])))
    (_, total), _ = jax.lax.scan(body, start, (intervals, kinds, active))
    spread = jnp.sqrt(total.variance)
    up = 1 - ndtr((rule.rho_star - total.shift) / spread)
    down = ndtr((rule.rho_star - total.gain - total.shift) / spread)
    return rule.change_ratio(up, down)


def closed_form_limit() -> dict:
    """Section d (float64, this process)."""
    import equinox as eqx
    import jax
    import numpy as np

    import ca_plast
    from ca_plast import fitting

    spikes = ca_plast.to_spikes([ca_plast.pairs(dt, 60, 1.0) for dt in LIMIT_DTS], unit=1.0)
    linear = jax.jit(jax.vmap(without_cubic, in_axes=(None, 0)))

    def largest(a, b) -> dict:
        worst = int(np.argmax(np.abs(a - b)))
        return {"max_abs_diff": float(np.abs(a - b)[worst]), "at_dt": LIMIT_DTS[worst]}

    rows = []
    for name in FIG2_PRESETS:
        rule = ca_plast.gb2012_preset(name)
        row = {"preset": name}
        for k in LIMIT_K:
            scaled = eqx.tree_at(lambda r: (r.tau, r.gamma_p, r.gamma_d, r.sigma), rule,
                                 (k * rule.tau, k * rule.gamma_p, k * rule.gamma_d, np.sqrt(k) * rule.sigma))
            grid = ca_plast.DensityGrid() if k == 1 else ca_plast.DensityGrid(cells_per_unit=LIMIT_CELLS)
            density, grid = ca_plast.density_ratios(scaled, spikes, grid)
            closed = np.asarray(fitting.predict(scaled, spikes))
            row[f"k={k:g}"] = {"density_vs_closed_form": largest(density, closed), "margin": grid.margin}
            if k == LIMIT_K[-1]:
                exact = np.asarray(linear(scaled, spikes))
                row[f"k={k:g}"]["density_vs_no_cubic"] = largest(density, exact)
                row[f"k={k:g}"]["closed_form_vs_no_cubic"] = largest(closed, exact)
        rows.append(row)
    return {"rows": rows, "k": list(LIMIT_K), "acceptance_k1000": TARGET_LIMIT}


def print_speed(result: dict) -> None:
    print(f"\n[{result['dtype']}] (median of {result['repeats']} runs after compilation)")
    for name, r in result["grad"].items():
        print(f"  value+grad, Sjostrom 2001 (10 x 75 pairs), {name:>15}: {r['wall_ms']:8.1f} ms "
              f"(target <= {TARGET_GRAD_MS:g} ms; forward only {r['forward_wall_ms']:.1f} ms), mean z^2 {r['loss']:.4f}")
    print(f"  compile: value+grad {result['grad_compile_s']:.1f} s, forward {result['forward_compile_s']:.1f} s")
    print(f"  STDP curve, DP, 21 dt x 60 pairs at 1 Hz, forward: {result['curve_wall_ms']:8.1f} ms "
          f"(target <= {TARGET_CURVE_MS:g} ms), compile {result['curve_compile_s']:.1f} s")
    for label, key in (("value+grad", "memory_value_and_grad"), ("forward   ", "memory_forward")):
        m = result[key]
        print(f"  XLA buffers, {label}: temp {m['temp_mb']:.2f} MB, arguments {m['argument_mb']:.3f} MB, "
              f"outputs {m['output_mb']:.3f} MB, generated code {m['generated_code_mb']:.2f} MB")


def print_convergence(result: dict) -> None:
    ref = result["reference"]
    print(f"\nc. convergence (float64): max |ratio - reference| over protocols; reference cells_per_unit "
          f"{ref['cells_per_unit']}, events_per_remap {ref['events_per_remap']}, drive_steps {ref['drive_steps']} "
          f"({ref['wall_s_per_preset']:.2f} s per preset)")
    columns = list(result["rows"][0]["max_abs_error"])
    print(f"  {'cells':>5} {'E':>2} {'K':>2} " + " ".join(f"{c:>22}" for c in columns) + f" {'s/preset':>9}")
    for row in result["rows"]:
        flag = " " if row["accepted"] else "*"
        errors = " ".join(f"{row['max_abs_error'][c]:22.2e}" for c in columns)
        print(f"  {row['cells_per_unit']:>5} {row['events_per_remap']:>2} {row['drive_steps']:>2}{flag}{errors} "
              f"{row['wall_s_per_preset']:9.3f}")
    print("  columns: preset / protocols (sjostrom2001: its 10 points; stdp: DP 60 pairs at 1 Hz, dt +10, -10, -20 ms);"
          " * = rejected by check_density")


def print_limit(result: dict) -> None:
    k, big = result["k"], f"k={result['k'][-1]:g}"
    print("\nd. closed-form limit (float64): max |difference| over dt = -100..100 ms step 5, 60 pairs at 1 Hz, "
          f"default grid (k = 1000: {LIMIT_CELLS} cells per unit); 'no cubic' = the model without its cubic drift, exact "
          "(affine maps composed)")
    columns = [(f"k={x:g}", "density_vs_closed_form", f"density - closed form, k = {x:g}") for x in k] + [
        (big, "density_vs_no_cubic", f"density - no cubic, k = {k[-1]:g}"),
        (big, "closed_form_vs_no_cubic", f"closed form - no cubic, k = {k[-1]:g}"),
    ]
    print(f"  {'preset':>9} " + " ".join(f"{title:>35}" for _, _, title in columns))
    for row in result["rows"]:
        cells = " ".join(f"{row[at][key]['max_abs_diff']:19.4f} at dt {row[at][key]['at_dt']:+5.0f} ms"
                         for at, key, _ in columns)
        print(f"  {row['preset']:>9} {cells}")
    for key, what in (("density_vs_closed_form", "density - closed form"), ("density_vs_no_cubic", "density - no cubic"),
                      ("closed_form_vs_no_cubic", "closed form - no cubic")):
        worst = max(row[big][key]["max_abs_diff"] for row in result["rows"])
        print(f"  {big}, worst |{what}|: {worst:.4f}"
              + (f" (acceptance <= {TARGET_LIMIT:g})" if key == "density_vs_closed_form" else ""))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--speed-worker", choices=("float32", "float64"), help=argparse.SUPPRESS)
    parser.add_argument("--repeats", type=int, default=7, help="timed runs after compilation (median reported)")
    parser.add_argument("--sections", default="abcd", help="which of the sections a-d to run (a and b run together)")
    parser.add_argument("--json", metavar="PATH", help="also write the results to PATH")
    args = parser.parse_args()
    if args.speed_worker:
        print(json.dumps(speed(args.speed_worker, args.repeats)))
        return 0

    import jax

    jax.config.update("jax_enable_x64", True)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"jax {jax.__version__} on {jax.devices()[0].platform}")
    print("a./b. speed and memory, default DensityGrid() (100 cells per unit, margin 0.75, 1 drive step, "
          "2 events per remap)")
    results = {"speed": {}}
    if {"a", "b"} & set(args.sections):
        for dtype in ("float64", "float32"):
            results["speed"][dtype] = run_speed(dtype, args.repeats)
            print_speed(results["speed"][dtype])
    if "c" in args.sections:
        results["convergence"] = convergence()
        print_convergence(results["convergence"])
    if "d" in args.sections:
        results["closed_form_limit"] = closed_form_limit()
        print_limit(results["closed_form_limit"])
    if args.json:
        results["machine"] = {"processor": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
                              "jax": jax.__version__}
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=1)
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
