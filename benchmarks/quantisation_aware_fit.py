"""Score fitted GB2012 parameter sets under BSS-2 emulation: quantisation-aware vs float fit.

The comparison of issue 6: on Sjostrom 2001, does `ca-plast fit --hardware bss2` reach a lower
loss under hardware emulation than the float fit run on the hardware afterwards? Fit both
from the same start, then score them here:

    ca-plast fit --dataset sjostrom2001 --init cortical_slices --out fit_float
    ca-plast fit --dataset sjostrom2001 --init cortical_slices --hardware bss2 --starts 2 --steps 100 --out fit_bss2
    python benchmarks/quantisation_aware_fit.py fit_float fit_bss2

Each set (and the published cortical_slices set) is scored by mean z^2 on the 10 points with
the closed form, the float simulation and the default BSS-2 emulation (`hardware_ratios`:
hard UP/DOWN readout, `--synapses` per initial state), for every `--seeds` key: keys the fits
never saw, the same keys for every set (common random numbers).
"""

import argparse
import json
import os

import jax

jax.config.update("jax_enable_x64", True)

import equinox as eqx  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import ca_plast as cp  # noqa: E402
from fitting import chi2, load_dataset  # noqa: E402


def fitted_rule(folder: str) -> cp.GraupnerBrunel2012:
    """The rule of a `ca-plast fit` output folder: its start preset with the fitted parameters."""
    with open(os.path.join(folder, "fit.json")) as handle:
        record = json.load(handle)
    rule = cp.gb2012_preset(record["init"])
    for name, value in record["params"].items():
        owner = (lambda r: r) if name in {f.name for f in rule.__dataclass_fields__.values()} else (lambda r: r.calcium)
        rule = eqx.tree_at(lambda r, name=name, owner=owner: getattr(owner(r), name), rule, jnp.asarray(value))
    return rule


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("float_fit", help="output folder of the float fit")
    parser.add_argument("hardware_fit", help="output folder of the fit with --hardware bss2")
    parser.add_argument("--synapses", type=int, default=2000, help="synapses per initial state")
    parser.add_argument("--seeds", default="101,202", help="evaluation keys")
    args = parser.parse_args()

    dataset = load_dataset("sjostrom2001")
    data, sem = np.asarray(dataset.data), np.asarray(dataset.sem)
    candidates = {"published cortical_slices": cp.gb2012_preset("cortical_slices"),
                  "float fit, run on bss2 afterwards": fitted_rule(args.float_fit),
                  "fit through bss2 (--hardware bss2)": fitted_rule(args.hardware_fit)}
    configs = (cp.BSS2(state=None), cp.BSS2())
    seeds = [int(s) for s in args.seeds.split(",")]
    print(f"mean z^2 on {dataset.name} ({dataset.n_points} points); simulations: {args.synapses} synapses per state, "
          f"keys {seeds}")
    print(f"{'parameter set':38s} {'closed form':>12s} {'float sim':>22s} {'bss2 emulation':>22s}")
    for name, rule in candidates.items():
        closed = chi2(np.asarray(jax.vmap(cp.closed_form_ratio, in_axes=(None, 0))(rule, dataset.spikes())), data, sem)
        scores = np.array([[chi2(r, data, sem) for r in cp.hardware_ratios(
            rule, list(dataset.protocols), configs, n_synapses=args.synapses, key=jax.random.key(seed))[0]]
            for seed in seeds])
        cells = [" / ".join(f"{v:.4f}" for v in scores[:, j]) for j in range(2)]
        print(f"{name:38s} {closed:12.4f} {cells[0]:>22s} {cells[1]:>22s}")


if __name__ == "__main__":
    main()
