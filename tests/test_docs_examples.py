"""The user-rule example of the documentation (docs/rules.md) runs, and is right: against a closed form."""

import re
from pathlib import Path

import jax
import numpy as np

import ca_plast as cp

PAGE = Path(__file__).resolve().parents[1] / "docs" / "rules.md"


def _example() -> str:
    blocks = re.findall(r"```python\n(.*?)```", PAGE.read_text(), flags=re.S)
    assert blocks, f"no python block in {PAGE}"
    return blocks[0]


def _exact_ratio(protocol, calcium, eta, theta) -> float:
    """1 + eta (int c^2 - theta int c) over the protocol, c a sum of exponentials (pairwise integrals in closed form)."""
    T, tau = protocol.duration, float(calcium.tau_ca)
    arrivals = protocol.pre + float(calcium.D)
    times = np.concatenate([arrivals[arrivals < T], protocol.post])
    amplitudes = np.concatenate([np.full((arrivals < T).sum(), float(calcium.C_pre)),
                                 np.full(protocol.post.size, float(calcium.C_post))])
    i1 = np.sum(amplitudes * tau * -np.expm1(-(T - times) / tau))
    later = np.maximum(times[:, None], times[None, :])
    i2 = np.sum(amplitudes[:, None] * amplitudes[None, :] * tau / 2 * np.exp(-(2 * later - times[:, None] - times[None, :]) / tau)
                * -np.expm1(-2 * (T - later) / tau))
    return 1 + eta * (i2 - theta * i1)


def test_user_rule_example(capsys):
    assert len(_example().splitlines()) < 60
    namespace: dict = {}
    exec(compile(_example(), str(PAGE), "exec"), namespace)
    print(capsys.readouterr().out)
    rule, protocols = namespace["rule"], namespace["protocols"]
    exact = [_exact_ratio(p, rule.calcium, float(rule.eta), float(rule.theta)) for p in protocols]
    key = jax.random.key(0)
    for method in ("events", "scan"):
        ratio, _ = cp.stdp_ratios(rule, protocols, method=method, n_synapses=1, key=key)
        np.testing.assert_allclose(ratio, exact, rtol=1e-9)
    assert abs(exact[0] - 1) > 0.05 and abs(exact[1] - 1) > 0.05  # the protocols do change the weight
    chip, _ = cp.hardware_ratios(rule, protocols, namespace["chip"], n_synapses=4, key=key)
    np.testing.assert_allclose(chip, exact, atol=0.03)


def test_solve_example_of_the_solvers_page(capsys):
    """The `solve` example (docs/solvers.md) runs; its three solvers agree within Monte Carlo error."""
    page = PAGE.parent / "solvers.md"
    block = next(b for b in re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S) if "cp.solve(" in b)
    exec(compile(block, str(page), "exec"), {})
    lines = capsys.readouterr().out.splitlines()
    means = {line.split()[0]: float(line.split()[1]) for line in lines}
    assert set(means) == {"Events", "Scan", "Hardware"}
    # 100 synapses from rho = 0, noise on: the mean final rho has a standard error of about 0.05.
    assert max(means.values()) - min(means.values()) < 0.2
