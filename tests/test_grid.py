"""Grids sharded over devices equal the unsharded vmap and a Python loop."""

import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

import ca_plast as cp


def _grid():
    rules = [cp.gb2012_preset(name) for name in ("DP", "DPD", "cortical_slices")]
    protocols = [cp.pairs(dt, 60, 1.0) for dt in (-50.0, -20.0, -10.0, 10.0, 20.0)]
    return rules, protocols


def test_closed_form_grid_equals_loop():
    rules, protocols = _grid()
    grid = cp.closed_form_grid(cp.stack(rules), cp.to_spikes(protocols))
    loop = [[cp.closed_form_ratio(r, cp.to_spikes(p)) for p in protocols] for r in rules]
    np.testing.assert_allclose(grid, loop, rtol=1e-12)


def test_mismatched_batch_sizes_are_rejected():
    rules, protocols = _grid()
    spikes = cp.to_spikes(protocols)
    bad = jax.tree.map(lambda x: x[:2] if x.ndim and x.shape[0] == 5 and x.ndim == 1 else x, spikes)
    with pytest.raises(ValueError, match="same leading"):
        cp.map_sharded(lambda s: cp.closed_form_ratio(rules[0], s), bad)


SCRIPT = textwrap.dedent(
    """
    import jax
    jax.config.update("jax_enable_x64", True)
    import numpy as np
    import ca_plast as cp

    assert len(jax.devices()) == 8, jax.devices()
    rules = cp.stack([cp.gb2012_preset(n) for n in ("DP", "DPD", "P")])
    protocols = [cp.pairs(dt, 60, 1.0) for dt in range(-30, 31, 10)]      # 3 x 7 = 21 grid points
    spikes = cp.to_spikes(protocols)
    sharded, n = cp.shard_batch(spikes, cp.device_mesh())
    assert n == 7 and len(sharded.pre_tick.sharding.device_set) == 8
    grid = cp.closed_form_grid(rules, spikes)
    single = cp.closed_form_grid(rules, spikes, mesh=cp.device_mesh(jax.devices()[:1]))
    np.testing.assert_allclose(grid, single, rtol=1e-12)
    print("ok", grid.shape)
    """
)


def test_sharded_over_eight_cpu_devices_equals_one_device():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "ok (3, 7)" in done.stdout
