"""GPU check and benchmark: correctness on the accelerator, then throughput at GPU-sized batches.

Run on a machine with a GPU (`python benchmarks/gpu.py`); on a CPU-only machine it runs the
same checks on the CPU. Prints numbers and writes benchmarks/gpu.json.

Checks (float32, JAX's default on the accelerator):
- closed form, preset DP, 60 pairs at 1 Hz: 1.221 / 0.882 at dt = +10 / -10 ms (GB2012 authors);
- event solver, noise off, on the accelerator vs on the CPU backend: max |rho difference|;
- closed-form grid (9 presets x 201 dt values) sharded over all accelerator devices vs the CPU.
Throughput: the event solver on 21 dt x N synapses (N = 100 ... 10^5), noise on, 60 pairs at
1 Hz; the closed-form grid; wall times after compilation (median of repeats).
"""

import json
import os
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

import ca_plast as cp

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "gpu.json")
DTS = [float(dt) for dt in range(-100, 101, 10)]


def timed(fn, *args, repeats=5):
    """(compile + first run s, median s of `repeats` runs after it)."""
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return first, statistics.median(times)


def main() -> None:
    accelerator = jax.devices()[0]
    cpu = jax.devices("cpu")[0]
    report = {"device": str(accelerator), "devices": len(jax.devices()), "jax": jax.__version__}
    print(f"devices: {jax.devices()}")
    rule = cp.gb2012_preset("DP")

    ratios = [float(cp.closed_form_ratio(rule, cp.to_spikes(cp.pairs(dt, 60, 1.0)))) for dt in (10.0, -10.0)]
    report["closed_form_dp"] = ratios
    print(f"closed form DP at +10 / -10 ms: {ratios[0]:.4f} / {ratios[1]:.4f} (authors: 1.221 / 0.882)")
    assert abs(ratios[0] - 1.221) <= 0.003 and abs(ratios[1] - 0.882) <= 0.003

    protocols = [cp.pairs(dt, 60, 1.0) for dt in DTS]
    spikes = cp.to_spikes(protocols)
    deterministic = jax.jit(jax.vmap(lambda s: cp.solve_events(rule, s, jnp.array([0.2, 0.5, 0.8])).rho))
    on_accelerator = np.asarray(deterministic(spikes))
    with jax.default_device(cpu):
        on_cpu = np.asarray(jax.jit(jax.vmap(lambda s: cp.solve_events(rule, s, jnp.array([0.2, 0.5, 0.8])).rho))(
            jax.device_put(spikes, cpu)))
    report["events_accelerator_vs_cpu_max_abs"] = float(np.max(np.abs(on_accelerator - on_cpu)))
    print(f"event solver, noise off, accelerator vs CPU: max |rho diff| = {report['events_accelerator_vs_cpu_max_abs']:.2e}")

    presets = cp.stack([cp.gb2012_preset(name) for name in cp.GB2012_PRESETS])
    grid_spikes = cp.to_spikes([cp.pairs(dt, 60, 1.0) for dt in np.linspace(-100, 100, 201)])
    grid = np.asarray(cp.closed_form_grid(presets, grid_spikes))
    with jax.default_device(cpu):
        grid_cpu = np.asarray(cp.closed_form_grid(jax.device_put(presets, cpu), jax.device_put(grid_spikes, cpu),
                                                  mesh=cp.device_mesh([cpu])))
    report["grid_accelerator_vs_cpu_max_abs"] = float(np.max(np.abs(grid - grid_cpu)))
    first, median = timed(lambda r, s: cp.closed_form_grid(r, s), presets, grid_spikes)
    report["grid_9x201"] = {"first_s": first, "median_s": median}
    print(f"closed-form grid 9 x 201: max |accelerator - CPU| = {report['grid_accelerator_vs_cpu_max_abs']:.2e}, "
          f"{median * 1e3:.2f} ms after compilation")

    report["events"] = []
    for n in (100, 1_000, 10_000, 100_000):
        keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.key(0), i))(jnp.arange(len(DTS)))
        run = jax.jit(jax.vmap(lambda s, k: cp.events_ratio(rule, s, n // 2, key=k)))
        first, median = timed(run, spikes, keys)
        ratio, sem = run(spikes, keys)
        closed = np.asarray(jax.vmap(cp.closed_form_ratio, in_axes=(None, 0))(rule, spikes))
        z = (np.asarray(ratio) - closed) / np.maximum(np.asarray(sem), 1e-12)
        synapse_s = len(DTS) * n * 60.0
        row = {"synapses_per_dt": n, "compile_and_first_s": first, "median_s": median,
               "synapse_s_per_wall_s": synapse_s / median, "max_abs_z_vs_closed_form": float(np.max(np.abs(z)))}
        report["events"].append(row)
        print(f"events, 21 dt x {n:>6} synapses: {median * 1e3:8.2f} ms after compilation "
              f"(first call {first:.2f} s), {synapse_s / median:.3g} synapse-s/s, max |z| vs closed form {row['max_abs_z_vs_closed_form']:.2f}")

    with open(OUT, "w") as handle:
        json.dump(report, handle, indent=1)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
