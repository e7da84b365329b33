"""Benchmark: are a fit's 95 % intervals honest? Coverage on data sets simulated from a known rule.

Each data set is the Sjostrom 2001 design (its 10 protocols and reported s.e.m.) with the
measurements replaced by the true rule's prediction in the model itself (the density
solver) plus independent Gaussian noise of the reported size (`fitting.simulated`, seeds
0, 1, ...). Each is fitted like a user's data (`fitting.fit`, method "density": screened
starts and Adam in the closed form, then L-BFGS on the density solver) from a start that
differs from the truth (the free parameters scaled by 1.3 / 0.7 alternately), and its
uncertainty computed (`fitting.with_uncertainty`: the Laplace approximation, and with
--profile the profile likelihoods).

Reported per free parameter:
- how often it is identified (Laplace; profile);
- coverage: the fraction of data sets, among those where it is identified, whose 95 %
  interval contains the true value (Laplace; profile), with its Wilson 95 % interval
  (target 88-99 %);
- agreement of identification with the profile: unidentified (Laplace) against the profile
  being open (reaching a bound) or flat.

The truth is the DP preset; the free parameters are theta_p, theta_d and sigma (identified
by these protocols) and tau (the closed form cannot see it; the model can, weakly), so both
verdicts occur. With `--method closed-form` the data are made and fitted by GB2012's closed
form instead (seconds per data set): a check of the statistics alone, where the closed form
is the model. Results go to benchmarks/calibration_METHOD.json, rewritten atomically after
every data set; a later run with the same settings continues where it stopped.

With `--mcmc N` each data set also gets N posterior draws per chain (NUTS), whose 2.5-97.5 %
interval is scored over all data sets (a Bayesian interval has no "identified" verdict).

Usage: python benchmarks/calibration.py [--sets 50] [--profile] [--mcmc N] [--method density|closed-form]
                                        [--free NAME,...] [--out FILE]
"""

import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TRUTH = "DP"
DATASET = "sjostrom2001"
FREE = "theta_p,theta_d,sigma,tau"
TARGET = (0.88, 0.99)


def wilson(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion k / n."""
    if n == 0:
        return (float("nan"), float("nan"))
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * ((p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5) / (1 + z * z / n)
    return (centre - half, centre + half)


def one_set(seed: int, free: list[str], profile: bool, steps: int, density_steps: int, method: str, mcmc: int) -> dict:
    import equinox as eqx
    import numpy as np

    import ca_plast
    from ca_plast import fitting

    truth = ca_plast.gb2012_preset(TRUTH)
    data = fitting.simulated(fitting.load_dataset(DATASET), truth, seed=seed, method=method)
    values = fitting.FreeParameters(truth, free).values(truth)
    start = eqx.tree_at(lambda r: tuple(getattr(r, n) for n in free), truth,
                        tuple(np.asarray(values[n] * (1.3 if i % 2 == 0 else 0.7)) for i, n in enumerate(free)))
    started = time.monotonic()
    result = fitting.fit(data, start, free, steps=steps, density_steps=density_steps, n_starts=16, seed=seed,
                         method=method)
    result = fitting.with_uncertainty(result, profile=profile, samples=mcmc, seed=seed)
    per_parameter, details = result.uncertainty.record()
    return {"seed": seed, "chi2_mean": result.chi2_mean, "truth": values, "uncertainty": per_parameter,
            "notes": details["notes"], "wall_s": time.monotonic() - started}


def summarise(sets: list[dict], free: list[str]) -> dict:
    table = {}
    for name in free:
        entries = [s["uncertainty"][name] for s in sets]
        truth = sets[0]["truth"][name]
        row = {"n": len(entries)}
        if "posterior_ci95" in entries[0]:
            covered = sum(e["posterior_ci95"][0] <= truth <= e["posterior_ci95"][1] for e in entries)
            row["posterior"] = {"covered": covered, "coverage": covered / len(entries),
                                "coverage_wilson95": wilson(covered, len(entries))}
        for source in ("laplace", "profile"):
            if source == "profile" and entries[0]["source"] != "profile":
                continue
            ci = "laplace_ci95" if source == "laplace" and entries[0]["source"] == "profile" else "ci95"
            flag = "laplace_identified" if source == "laplace" and entries[0]["source"] == "profile" else "identified"
            identified = [e for e in entries if e[flag]]
            covered = sum(e[ci][0] <= truth <= e[ci][1] for e in identified)
            if source == "laplace":
                confirmed = [e for e in identified if e["laplace_confirmed"]]
                row["laplace_confirmed"] = {"n": len(confirmed),
                                            "covered": sum(e[ci][0] <= truth <= e[ci][1] for e in confirmed)}
            row[source] = {"identified": len(identified), "covered": covered,
                           "coverage": covered / len(identified) if identified else None,
                           "coverage_wilson95": wilson(covered, len(identified)),
                           "covered_all": sum(e[ci][0] <= truth <= e[ci][1] for e in entries)}
        if entries[0]["source"] == "profile":
            row["laplace_vs_profile"] = {
                "both_identified": sum(e["laplace_identified"] and e["identified"] for e in entries),
                "both_unidentified": sum(not e["laplace_identified"] and not e["identified"] for e in entries),
                "laplace_only": sum(e["laplace_identified"] and not e["identified"] for e in entries),
                "profile_only": sum(not e["laplace_identified"] and e["identified"] for e in entries),
                "unidentified_profile_flat": sum(e["profile_flat"] for e in entries if not e["identified"]),
            }
        table[name] = row
    return table


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", type=int, default=50)
    parser.add_argument("--profile", action="store_true", help="also the profile likelihoods (minutes per set)")
    parser.add_argument("--free", default=FREE)
    parser.add_argument("--steps", type=int, default=300, help="Adam steps of the closed-form stage")
    parser.add_argument("--density-steps", type=int, default=30, help="L-BFGS iterations in the model")
    parser.add_argument("--mcmc", type=int, default=0, help="also N posterior draws per chain (NUTS, blackjax)")
    parser.add_argument("--method", default="density", help="density (the model) or closed-form (data made and fitted "
                        "by GB2012's approximation: a check of the statistics alone, in seconds per data set)")
    parser.add_argument("--out", default=None, help="default benchmarks/calibration_METHOD.json")
    args = parser.parse_args()
    import jax

    jax.config.update("jax_enable_x64", True)
    from ca_plast._output import write_file

    free = args.free.split(",")
    args.out = args.out or os.path.join(HERE, f"calibration_{args.method.replace('-', '_')}.json")
    settings = {"truth": TRUTH, "dataset": DATASET, "free": free, "profile": args.profile, "steps": args.steps,
                "density_steps": args.density_steps, "method": args.method, **({"mcmc": args.mcmc} if args.mcmc else {})}
    record = {"settings": settings, "sets": []}
    if os.path.exists(args.out):
        stored = json.load(open(args.out))
        if stored.get("settings") == settings:
            record = stored
            print(f"continuing: {len(record['sets'])} data sets already in {args.out}", flush=True)
    done = {s["seed"] for s in record["sets"]}
    for seed in range(args.sets):
        if seed in done:
            continue
        entry = one_set(seed, free, args.profile, args.steps, args.density_steps, args.method, args.mcmc)
        record["sets"].append(entry)
        record["summary"] = summarise(record["sets"], free)
        write_file(args.out, (json.dumps(record, indent=1) + "\n").encode())
        flags = " ".join(f"{n}:{'+' if e['identified'] else '-'}" for n, e in entry["uncertainty"].items())
        print(f"set {seed + 1}/{args.sets}: mean z^2 {entry['chi2_mean']:.3g}, {flags}, {entry['wall_s']:.0f} s", flush=True)
    record["summary"] = summarise(record["sets"], free)
    write_file(args.out, (json.dumps(record, indent=1) + "\n").encode())
    print(f"\n{len(record['sets'])} data sets simulated from {TRUTH} on the {DATASET} design; target coverage "
          f"{TARGET[0]:.0%}-{TARGET[1]:.0%} of identified cases")
    for name, row in record["summary"].items():
        for source in ("laplace", "profile"):
            if source in row:
                r = row[source]
                coverage = "n/a" if r["coverage"] is None else \
                    f"{r['coverage']:.1%} (Wilson 95 % {r['coverage_wilson95'][0]:.1%}-{r['coverage_wilson95'][1]:.1%})"
                print(f"  {name:8s} {source:8s}: identified {r['identified']}/{row['n']}, covers the truth {r['covered']}: "
                      f"{coverage}")
        if "posterior" in row:
            r = row["posterior"]
            print(f"  {name:8s} posterior (NUTS), all sets: covers the truth {r['covered']}/{row['n']}: {r['coverage']:.1%} "
                  f"(Wilson 95 % {r['coverage_wilson95'][0]:.1%}-{r['coverage_wilson95'][1]:.1%})")
        if "laplace_confirmed" in row:
            confirmed = row["laplace_confirmed"]
            print(f"  {name:8s} laplace, confirmed by the model at both ends: {confirmed['n']} sets, covers the truth "
                  f"{confirmed['covered']}")
        if "laplace_vs_profile" in row:
            print(f"  {name:8s} laplace vs profile: {row['laplace_vs_profile']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
