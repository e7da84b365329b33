"""Score a quantisation-aware fit on Sjostrom 2001: the float fit vs the rule refined through BSS-2 emulation.

The comparison of issue 6: does `ca-plast fit --hardware bss2` reach a lower loss under
hardware emulation than the float fit run on the hardware afterwards? The fit records both
parameter sets (fit.json, `quantisation_aware`); this script scores them, and the published
cortical_slices set, on random numbers the fit never saw:

    ca-plast fit --dataset sjostrom2001 --init DP --hardware bss2 --out fit_bss2
    python benchmarks/quantisation_aware_fit.py fit_bss2

Each set is scored by mean z^2 on the 10 points with the closed form, the float simulation
(`BSS2(state=None)`: the same model without quantisation) and the default BSS-2 emulation
(`hardware_ratios`: hard UP/DOWN readout, `--synapses` per initial state), for every key in
`--seeds` (the same keys for every set: common random numbers). Writes the table to
benchmarks/quantisation_aware_fit.json.
"""

import argparse
import json
import os

import jax

jax.config.update("jax_enable_x64", True)

import numpy as np  # noqa: E402
from ca_plast.fitting import FreeParameters, chi2, load_dataset, predict  # noqa: E402

import ca_plast as cp  # noqa: E402


def with_params(preset: str, params: dict) -> cp.GraupnerBrunel2012:
    """Preset `preset` with the fitted parameters `params` (by name, as fit.json records them)."""
    rule = cp.gb2012_preset(preset)
    return FreeParameters(rule, list(params)).with_values(rule, params)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("fit", help="output folder of `ca-plast fit --hardware bss2`")
    parser.add_argument("--synapses", type=int, default=2000, help="synapses per initial state")
    parser.add_argument("--seeds", default="101,202,303", help="evaluation keys")
    args = parser.parse_args()

    with open(os.path.join(args.fit, "fit.json")) as handle:
        record = json.load(handle)
    qat = record["quantisation_aware"]
    dataset = load_dataset(record["dataset"], record["modelling"])
    data, sem = np.asarray(dataset.data), np.asarray(dataset.sem)
    candidates = {"published cortical_slices": cp.gb2012_preset("cortical_slices"),
                  "float fit, run on bss2 afterwards": with_params(record["init"], qat["float_fit_params"]),
                  "refined through bss2 (quantisation-aware)": with_params(record["init"], qat["refined_params"])}
    configs = (cp.BSS2(state=None), cp.BSS2())
    seeds = [int(s) for s in args.seeds.split(",")]
    print(f"mean z^2 on {dataset.name} ({dataset.n_points} points); simulations: {args.synapses} synapses per state, "
          f"keys {seeds}; fit: {args.fit} (wall {record['wall_s']:.0f} s)")
    print(f"{'parameter set':42s} {'closed form':>11s} {'float simulation':>26s} {'bss2 emulation':>26s} {'mean':>7s}")
    table = {}
    for name, rule in candidates.items():
        closed = float(chi2(np.asarray(predict(rule, dataset.spikes())), data, sem))
        scores = np.array([[chi2(r, data, sem) for r in cp.hardware_ratios(
            rule, list(dataset.protocols), configs, n_synapses=args.synapses, key=jax.random.key(seed))[0]]
            for seed in seeds])
        cells = [" / ".join(f"{v:.3f}" for v in scores[:, j]) for j in range(2)]
        print(f"{name:42s} {closed:11.4f} {cells[0]:>26s} {cells[1]:>26s} {scores[:, 1].mean():7.4f}")
        table[name] = {"closed_form": closed, "float_simulation": scores[:, 0].tolist(), "bss2": scores[:, 1].tolist()}
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "quantisation_aware_fit.json")
    with open(out, "w") as handle:
        json.dump({"fit": qat, "seeds": seeds, "synapses": args.synapses, "scores": table}, handle, indent=2)


if __name__ == "__main__":
    main()
